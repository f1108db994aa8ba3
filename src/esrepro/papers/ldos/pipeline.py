"""The LDOS-locality pipeline (Aryanpour & Sadeghi), one function per DVC stage (declared in
``esrepro.papers.ldos.paper``).

    structures -> dft -> featurize -> learn -> evaluate -> report

Learning sets (:data:`~esrepro.papers.ldos.config.SET_MEMBERS`): ``si`` (mirrored real silicon
configurations plus generated diamond, beta-tin and liquid-like cells), ``c``, ``sic`` and
``snsse`` (generated, seeded), each learned on its own, and ``set_c``
(:data:`~esrepro.papers.ldos.config.COMBINED_SETS`): si, c and sic learned together by one
model, as the paper's Set C. DFT: GPAW LCAO through the shared engine and cache (``ldos.dft``
overrides ``dft.settings``), per-atom LDOS from Mulliken weights, so the atoms' LDOS add up to
the structural DOS exactly (paper eq. 7).

Each function takes its stage's typed config (``esrepro.papers.ldos.config``) and the paths
the registry entry declares; imports a single stage needs stay inside its function, so each
stage's code dependencies (``dvc.yaml``) are what it actually runs.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from esrepro.papers.ldos.config import (
    SET_MEMBERS,
    DFTConfig,
    EvaluateConfig,
    FeaturizeConfig,
    LearnConfig,
    StructuresConfig,
)

log = logging.getLogger(__name__)


def provenance_table(sets: Mapping[str, Sequence[Any]]) -> list[dict]:
    """One row per structure (``ase.Atoms``) of ``sets`` for the provenance CSV.

    Columns: ``set``, ``index`` (position in the set), ``formula`` (reduced), ``n_atoms``,
    ``hash`` (:func:`~esrepro.structures.canonical_structure_hash`), ``kind``, ``source`` and
    ``frame`` (mirrored files), ``generator``, ``seed`` and ``params`` (generated sets); a column
    that does not apply is the empty string, so every row has the same keys.
    """
    from esrepro.structures import canonical_structure_hash, formula

    rows = []
    for name, structures in sets.items():
        for index, atoms in enumerate(structures):
            info = atoms.info
            rows.append(
                {
                    "set": name,
                    "index": index,
                    "formula": formula(atoms),
                    "n_atoms": len(atoms),
                    "hash": canonical_structure_hash(atoms),
                    "kind": info.get("kind", ""),
                    "source": info.get("source", ""),
                    "frame": info.get("frame", ""),
                    "generator": info.get("generator", ""),
                    "seed": info.get("seed", ""),
                    "params": info.get("params", ""),
                }
            )
    return rows


def stage_structures(cfg: StructuresConfig, *, structures: Path, downloads: Path) -> None:
    """Every configuration of every set as extxyz (``structures/<set>/<id>.extxyz``) and a
    provenance table (which file/frame, or which generator/seed/parameters); ``downloads``
    keeps the fetched upstream files."""
    from esrepro.errors import ConfigError
    from esrepro.papers.ldos.generators import generated_sets
    from esrepro.papers.ldos.silicon_sets import deduplicate, fetch_silicon_sets
    from esrepro.plain_json import plain_json

    # Generated first: a bad size or keyword stops the stage before any download.
    generated = generated_sets(
        plain_json(cfg.generated), cfg.seed, label="params.yaml ldos.generated"
    )
    mirrored, dropped = deduplicate(fetch_silicon_sets(cfg.mirror, downloads))
    chosen: dict[str, list] = {"si": []}
    for name, n in cfg.mirrored_si.items():
        if name not in mirrored:
            raise ConfigError(f"params.yaml ldos.mirrored_si.{name}: no mirrored set of that name; "
                              f"known: {sorted(mirrored)}")
        frames = [a for a in mirrored[name] if not cfg.max_atoms or len(a) <= cfg.max_atoms]
        chosen["si"] += frames[:n] if n else frames
    for set_name, members in SET_MEMBERS.items():
        for member in members:
            chosen.setdefault(set_name, []).extend(generated.get(member, []))
    rows = []
    for set_name, atoms_list in chosen.items():
        (structures / set_name).mkdir(parents=True, exist_ok=True)
        table = provenance_table({set_name: atoms_list})
        for index, (atoms, row) in enumerate(zip(atoms_list, table, strict=True)):
            structure_id = f"{set_name}-{index:04d}"
            atoms.write(structures / set_name / f"{structure_id}.extxyz", format="extxyz")
            rows.append({"structure_id": structure_id, **row, "params": row.get("params", "")})
    pd.DataFrame(rows).to_csv(structures / "provenance.csv", index=False)
    log.info(
        "LDOS sets: %s (%d duplicates dropped)", {k: len(v) for k, v in chosen.items()},
        len(dropped),
    )


def load_structures(structures: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    from esrepro.structures import read_structure

    table = pd.read_csv(structures / "provenance.csv", keep_default_na=False)
    return table, {
        sid: read_structure(structures / s / f"{sid}.extxyz")
        for sid, s in zip(table["structure_id"], table["set"], strict=True)
    }


def stage_dft(cfg: DFTConfig, *, structures: Path, dft: Path) -> None:
    """GPAW LCAO products of every configuration (cache first); failures recorded with reasons."""
    from esrepro.dft.stage import run_dft_stage

    table, atoms = load_structures(structures)
    records = {
        r.material_id: r
        for r in run_dft_stage(atoms, cfg.as_params(), dft, settings_source=cfg.SOURCE)
    }
    table.assign(
        status=[records[s].status for s in table["structure_id"]],
        reason=[records[s].reason for s in table["structure_id"]],
        cache_key=[records[s].cache_key for s in table["structure_id"]],
    ).to_csv(dft / "summary.csv", index=False)


def merge_sets(parts: Sequence[Mapping[str, Any]], descriptors: Sequence[np.ndarray]) -> dict:
    """The features of one set learned together from ``parts`` (``features/<set>.pkl`` dicts of
    one grid and smearing): their structures, targets and train/test splits concatenated in
    order (a member's test structures stay held out; every test species is still in training),
    with ``descriptors`` computed over the union of their species."""
    first = parts[0]
    for part in parts[1:]:
        if not (np.array_equal(part["energies"], first["energies"])
                and part["sigma_ev"] == first["sigma_ev"]
                and set(part["ldos_by_sigma"]) == set(first["ldos_by_sigma"])):
            raise ValueError("sets merged into one must share the energy grid and smearing")

    def concat(key: str) -> list:
        return [x for part in parts for x in part[key]]

    merged = {
        key: concat(key) for key in ("structure_ids", "atoms", "atom_species", "ldos", "split")
    }
    if len(descriptors) != len(merged["atoms"]):
        raise ValueError(f"{len(descriptors)} descriptor blocks for {len(merged['atoms'])} "
                         "structures")
    return {
        **merged,
        "species": sorted({s for part in parts for s in part["species"]}),
        "sigma_ev": first["sigma_ev"],
        "ldos_by_sigma": {
            width: [x for part in parts for x in part["ldos_by_sigma"][width]]
            for width in first["ldos_by_sigma"]
        },
        "descriptors": list(descriptors),
        "fermi_levels": np.concatenate([np.asarray(part["fermi_levels"]) for part in parts]),
        "energies": first["energies"],
        "n_failed": int(sum(part["n_failed"] for part in parts)),
    }


def stage_featurize(cfg: FeaturizeConfig, *, structures: Path, dft: Path, features: Path) -> None:
    """Per set: per-atom LDOS targets (on ``ldos.grid``: absolute, or relative to E_F), also at
    each ``compare_sigma_ev`` width, SOAP descriptors, structure split; then each combined set
    (:data:`~esrepro.papers.ldos.config.COMBINED_SETS`, the paper's Set C) from its members.

    Writes ``features/<set>.pkl`` pickles holding lists per structure.
    """
    from esrepro.dft.product import DFTProduct
    from esrepro.papers.ldos.config import COMBINED_SETS
    from esrepro.papers.ldos.descriptors import soap_descriptors
    from esrepro.papers.ldos.learn import species_covering_split
    from esrepro.spectra import atom_ldos, energy_grid

    grid_cfg = cfg.grid
    grid = energy_grid(grid_cfg.emin_ev, grid_cfg.emax_ev, grid_cfg.n_points)
    sigma = grid_cfg.sigma_ev
    compare = grid_cfg.compare_sigmas()
    absolute = grid_cfg.reference == "absolute"
    soap = cfg.soap
    summary = pd.read_csv(dft / "summary.csv", keep_default_na=False)
    _, all_atoms = load_structures(structures)
    features.mkdir(parents=True, exist_ok=True)
    built: dict[str, dict[str, Any]] = {}
    for set_name, rows in summary.groupby("set", sort=True):
        ok = rows[rows["status"] != "failed"]
        ids = list(ok["structure_id"])
        if len(ids) < 3:
            # Too few to hold out a test structure and still cross-validate: the set is reported
            # by the DFT summary (with the failures' reasons), not learned.
            log.warning(
                "LDOS set %s: only %d structures with DFT products; not learned",
                set_name, len(ids),
            )
            continue
        atoms = [all_atoms[s] for s in ids]
        ldos, fermi = [], []
        ldos_by_sigma: dict[float, list[np.ndarray]] = {s: [] for s in compare}
        for sid in ids:
            product = DFTProduct.load(dft / "products" / f"{sid}.npz")
            e_ref = 0.0 if absolute else product.fermi_level
            ldos.append(atom_ldos(product, grid, sigma, e_ref).astype(np.float32))
            for width in compare:
                ldos_by_sigma[width].append(
                    atom_ldos(product, grid, width, e_ref).astype(np.float32)
                )
            fermi.append(product.fermi_level if absolute else 0.0)
        species = sorted({s for a in atoms for s in a.get_chemical_symbols()})
        descriptors = soap_descriptors(
            atoms, species, soap.r_cut, soap.n_max, soap.l_max, soap.sigma
        )
        atom_species = [a.get_chemical_symbols() for a in atoms]
        split = species_covering_split(ids, atom_species, cfg.test_fraction, cfg.split_seed)
        built[set_name] = {
            "structure_ids": ids, "atoms": atoms, "species": species,
            "atom_species": atom_species,
            "ldos": ldos, "sigma_ev": sigma, "ldos_by_sigma": ldos_by_sigma,
            "descriptors": [d.astype(np.float32) for d in descriptors],
            "fermi_levels": np.array(fermi), "energies": grid, "split": split,
            "n_failed": int((rows["status"] == "failed").sum()),
        }
    for name, members in COMBINED_SETS.items():
        missing = [m for m in members if m not in built]
        if missing:
            log.warning("LDOS combined set %s: member sets %s not learned; left out", name, missing)
            continue
        parts = [built[m] for m in members]
        atoms = [a for part in parts for a in part["atoms"]]
        species = sorted({s for part in parts for s in part["species"]})
        descriptors = soap_descriptors(
            atoms, species, soap.r_cut, soap.n_max, soap.l_max, soap.sigma
        )
        built[name] = merge_sets(parts, [d.astype(np.float32) for d in descriptors])
    for set_name, feats in built.items():
        with open(features / f"{set_name}.pkl", "wb") as fh:
            pickle.dump(feats, fh)
        log.info(
            "LDOS features %s: %d structures, %d environments",
            set_name, len(feats["structure_ids"]), sum(len(a) for a in feats["atoms"]),
        )


def _load(path: Path) -> dict[str, Any]:
    # Our own stage output (written by stage_featurize / stage_learn of this pipeline).
    with open(path, "rb") as fh:
        return pickle.load(fh)


def stage_learn(cfg: LearnConfig, *, features: Path, models: Path, curves: Path) -> None:
    """Per set: both strategies with 5-fold CV on the training structures, the r_cut scan and the
    learning curves; models to ``models``, curves to ``curves`` (JSON)."""
    from esrepro.papers.ldos.learn import learn_set

    models.mkdir(parents=True, exist_ok=True)
    results = {}
    for path in sorted(features.glob("*.pkl")):
        result = learn_set(_load(path), cfg)
        with open(models / path.name, "wb") as fh:
            pickle.dump({"models": result["models"], "compare_sigma": result["compare_sigma"]}, fh)
        results[path.stem] = result["curves"]
    curves.parent.mkdir(parents=True, exist_ok=True)
    curves.write_text(json.dumps(results, indent=1, sort_keys=True))


def stage_evaluate(
    cfg: EvaluateConfig, *, features: Path, models: Path, metrics: Path, predictions: Path
) -> None:
    """Per-set LDOS and DOS losses of both strategies, the derived properties, the smearing
    comparison; test predictions for the report."""
    from esrepro.papers.ldos.learn import evaluate_sets

    sets, compare = {}, {}
    for path in sorted(features.glob("*.pkl")):
        fitted = _load(models / path.name)
        sets[path.stem] = (_load(path), fitted["models"])
        compare[path.stem] = fitted["compare_sigma"]
    evaluate_sets(sets, cfg.properties, metrics, predictions, compare_sigma=compare)


def stage_report(
    *, notebook: Path, predictions: Path, metrics: Path, curves: Path, html: Path, executed: Path,
    figures: Path,
) -> None:
    """The paper's figures and tables: ``notebook`` executed into ``executed`` and ``html``."""
    from esrepro.reports import render_report

    render_report(
        notebook, html, executed,
        {"predictions_npz": predictions, "metrics_json": metrics, "curves_json": curves,
         "figures_dir": figures},
    )
