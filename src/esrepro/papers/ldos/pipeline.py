"""The LDOS-locality pipeline (Aryanpour & Sadeghi), one function per DVC stage.

    structures -> dft -> featurize -> learn -> evaluate -> report

Sets (``ldos.sets``): ``si`` (mirrored real silicon configurations plus generated diamond,
beta-tin and liquid-like cells), ``c``, ``sic`` and ``snsse`` (generated, seeded). Each set is
learned on its own, as in the paper. DFT: GPAW LCAO through the shared engine and cache
(``ldos.dft`` overrides ``dft.settings``), per-atom LDOS from Mulliken weights, so the atoms'
LDOS add up to the structural DOS exactly (paper eq. 7).
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from esrepro.config import resolve_path
from esrepro.dft.product import DFTProduct
from esrepro.dft.stage import run_dft_stage
from esrepro.structures import read_structure

log = logging.getLogger(__name__)

RAW = Path("data/ldos/structures")
DFT = Path("data/ldos/dft")
FEATURES = Path("data/ldos/features")
MODELS = Path("data/ldos/models")
REPORTS = Path("reports/ldos")
#: Which generated sets feed which learning set.
SET_MEMBERS = {"si": ("si_diamond", "si_beta_tin", "si_liquid"), "c": ("carbon",), "sic": ("sic",),
               "snsse": ("snsse",)}


def dft_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The shared ``dft`` params with ``ldos.dft`` overriding its settings (LCAO for this paper)."""
    dft = dict(params["dft"])
    dft["settings"] = {**dict(dft["settings"]), **dict(params["ldos"].get("dft", {}))}
    return dft


def stage_structures(params: dict[str, Any]) -> None:
    """Every configuration of every set as extxyz (data/ldos/structures/<set>/<id>.extxyz) and a
    provenance table (which file/frame, or which generator/seed/parameters)."""
    from esrepro.papers.ldos.structures import (
        deduplicate,
        fetch_silicon_sets,
        generated_sets,
        provenance_table,
    )

    cfg = params["ldos"]
    max_atoms = int(cfg.get("max_atoms") or 0)
    mirrored = fetch_silicon_sets(params, resolve_path("data/downloads/ldos"))
    mirrored, dropped = deduplicate(mirrored)
    chosen: dict[str, list] = {"si": []}
    for name, n in (cfg.get("mirrored_si") or {}).items():
        if name not in mirrored:
            raise KeyError(f"params.yaml ldos.mirrored_si: no mirrored set {name!r}; known: {sorted(mirrored)}")
        frames = [a for a in mirrored[name] if not max_atoms or len(a) <= max_atoms]
        chosen["si"] += frames[: int(n)] if int(n) else frames
    generated = generated_sets(cfg.get("generated") or {}, int(cfg["seed"]))
    for set_name, members in SET_MEMBERS.items():
        for member in members:
            chosen.setdefault(set_name, []).extend(generated.get(member, []))
    out = resolve_path(RAW)
    rows = []
    for set_name, structures in chosen.items():
        (out / set_name).mkdir(parents=True, exist_ok=True)
        table = provenance_table({set_name: structures})
        for index, (atoms, row) in enumerate(zip(structures, table, strict=True)):
            structure_id = f"{set_name}-{index:04d}"
            atoms.write(out / set_name / f"{structure_id}.extxyz", format="extxyz")
            rows.append({"structure_id": structure_id, **row, "params": row.get("params", "")})
    pd.DataFrame(rows).to_csv(out / "provenance.csv", index=False)
    log.info("LDOS sets: %s (%d duplicates dropped)", {k: len(v) for k, v in chosen.items()}, len(dropped))


def load_structures() -> tuple[pd.DataFrame, dict[str, Any]]:
    table = pd.read_csv(resolve_path(RAW) / "provenance.csv", keep_default_na=False)
    return table, {
        sid: read_structure(resolve_path(RAW) / s / f"{sid}.extxyz") for sid, s in zip(table["structure_id"], table["set"], strict=True)
    }


def stage_dft(params: dict[str, Any]) -> None:
    """GPAW LCAO products of every configuration (cache first); failures recorded with reasons."""
    table, structures = load_structures()
    out = resolve_path(DFT)
    records = {
        r.material_id: r
        for r in run_dft_stage(
            structures, dft_params(params), out, settings_source="params.yaml dft.settings + ldos.dft"
        )
    }
    table.assign(
        status=[records[s].status for s in table["structure_id"]],
        reason=[records[s].reason for s in table["structure_id"]],
        cache_key=[records[s].cache_key for s in table["structure_id"]],
    ).to_csv(out / "summary.csv", index=False)


def ldos_grid(cfg: Mapping[str, Any]) -> np.ndarray:
    from esrepro.spectra import energy_grid

    return energy_grid(float(cfg["emin_ev"]), float(cfg["emax_ev"]), int(cfg["n_points"]))


def compare_sigmas(cfg: Mapping[str, Any]) -> list[float]:
    """The extra Gaussian widths (eV) of ``ldos.grid.compare_sigma_ev`` (the paper compares
    k_BT = 0.1 with its 0.5 eV), without the main ``sigma_ev``."""
    main = float(cfg["sigma_ev"])
    return sorted({float(s) for s in cfg.get("compare_sigma_ev") or []} - {main})


def stage_featurize(params: dict[str, Any]) -> None:
    """Per set: per-atom LDOS targets (on ``ldos.grid``: absolute, or relative to E_F), also at
    each ``compare_sigma_ev`` width, SOAP descriptors, structure split.

    Writes ``data/ldos/features/<set>.npz``-like pickles holding lists per structure.
    """
    from esrepro.papers.ldos.descriptors import soap_descriptors
    from esrepro.papers.ldos.learn import species_covering_split
    from esrepro.spectra import atom_ldos

    cfg = params["ldos"]
    grid = ldos_grid(cfg["grid"])
    sigma = float(cfg["grid"]["sigma_ev"])
    compare = compare_sigmas(cfg["grid"])
    reference = cfg["grid"].get("reference", "absolute")
    if reference not in ("absolute", "fermi"):  # a typo must not silently mean "fermi"
        raise ValueError(f"params.yaml ldos.grid.reference must be 'absolute' or 'fermi', got {reference!r}")
    absolute = reference == "absolute"
    summary = pd.read_csv(resolve_path(DFT) / "summary.csv", keep_default_na=False)
    _, structures = load_structures()
    out = resolve_path(FEATURES)
    out.mkdir(parents=True, exist_ok=True)
    for set_name, rows in summary.groupby("set", sort=True):
        ok = rows[rows["status"] != "failed"]
        ids = list(ok["structure_id"])
        if len(ids) < 3:
            # Too few to hold out a test structure and still cross-validate: the set is reported
            # by the DFT summary (with the failures' reasons), not learned.
            log.warning("LDOS set %s: only %d structures with DFT products; not learned", set_name, len(ids))
            continue
        atoms = [structures[s] for s in ids]
        ldos, fermi = [], []
        ldos_by_sigma: dict[float, list[np.ndarray]] = {s: [] for s in compare}
        for sid in ids:
            product = DFTProduct.load(resolve_path(DFT) / "products" / f"{sid}.npz")
            e_ref = 0.0 if absolute else product.fermi_level
            ldos.append(atom_ldos(product, grid, sigma, e_ref).astype(np.float32))
            for width in compare:
                ldos_by_sigma[width].append(atom_ldos(product, grid, width, e_ref).astype(np.float32))
            fermi.append(product.fermi_level if absolute else 0.0)
        species = sorted({s for a in atoms for s in a.get_chemical_symbols()})
        soap = cfg["soap"]
        descriptors = soap_descriptors(atoms, species, float(soap["r_cut"]), int(soap["n_max"]), int(soap["l_max"]), float(soap["sigma"]))
        atom_species = [a.get_chemical_symbols() for a in atoms]
        split = species_covering_split(ids, atom_species, float(cfg["learn"]["test_fraction"]), int(cfg["learn"]["split_seed"]))
        with open(out / f"{set_name}.pkl", "wb") as fh:
            pickle.dump({
                "structure_ids": ids, "atoms": atoms, "species": species,
                "atom_species": atom_species,
                "ldos": ldos, "sigma_ev": sigma, "ldos_by_sigma": ldos_by_sigma,
                "descriptors": [d.astype(np.float32) for d in descriptors],
                "fermi_levels": np.array(fermi), "energies": grid, "split": split,
                "n_failed": int((rows["status"] == "failed").sum()),
            }, fh)
        log.info("LDOS features %s: %d structures, %d environments", set_name, len(ids), sum(len(a) for a in atoms))


def _load(path: Path) -> dict[str, Any]:
    # Our own stage output (written by stage_featurize / stage_learn of this pipeline).
    with open(path, "rb") as fh:
        return pickle.load(fh)


def stage_learn(params: dict[str, Any]) -> None:
    """Per set: both strategies with 5-fold CV on the training structures, the r_cut scan and the
    learning curves; models to data/ldos/models, curves to reports/ldos/curves.json."""
    from esrepro.papers.ldos.learn import learn_set

    out = resolve_path(MODELS)
    out.mkdir(parents=True, exist_ok=True)
    curves = {}
    for path in sorted(resolve_path(FEATURES).glob("*.pkl")):
        result = learn_set(_load(path), params["ldos"])
        with open(out / path.name, "wb") as fh:
            pickle.dump({"models": result["models"], "compare_sigma": result["compare_sigma"]}, fh)
        curves[path.stem] = result["curves"]
    reports = resolve_path(REPORTS)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "curves.json").write_text(json.dumps(curves, indent=1, sort_keys=True))


def stage_evaluate(params: dict[str, Any]) -> None:
    from esrepro.papers.ldos.learn import evaluate_sets

    sets, compare = {}, {}
    for path in sorted(resolve_path(FEATURES).glob("*.pkl")):
        fitted = _load(resolve_path(MODELS) / path.name)
        sets[path.stem] = (_load(path), fitted["models"])
        compare[path.stem] = fitted["compare_sigma"]
    evaluate_sets(sets, params["ldos"], resolve_path(REPORTS) / "metrics.json", resolve_path(REPORTS) / "predictions.npz",
                  compare_sigma=compare)


def stage_report(params: dict[str, Any]) -> None:
    from esrepro.reports import render_notebook

    reports = resolve_path(REPORTS)
    render_notebook(
        resolve_path("src/esrepro/notebooks/ldos.ipynb"), reports,
        {"predictions_npz": str(reports / "predictions.npz"), "metrics_json": str(reports / "metrics.json"),
         "curves_json": str(reports / "curves.json"), "figures_dir": str(reports / "figures")},
        html_name="ldos.html",
    )


STAGES = {
    "structures": stage_structures,
    "dft": stage_dft,
    "featurize": stage_featurize,
    "learn": stage_learn,
    "evaluate": stage_evaluate,
    "report": stage_report,
}
