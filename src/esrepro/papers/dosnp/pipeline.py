"""The DOSnp pipeline, one function per DVC stage (the `stages/dosnp.py` entry points call these).

    fetch -> dft -> featurize -> train -> evaluate -> report
    featurize -> cv (k-fold cross-validation of DOSnp and both baselines) -> report

Paths are fixed here (and declared in dvc.yaml); everything tunable comes from params.yaml.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from esrepro.config import count_param, resolve_path
from esrepro.dft.product import DFTProduct
from esrepro.dft.stage import run_dft_stage
from esrepro.papers.dosnp.inputs import fetch_structure_files, fetch_table
from esrepro.spectra import complete_band_range, dosnp_grid, projected_dos
from esrepro.structures import read_structure

log = logging.getLogger(__name__)

RAW = Path("data/dosnp/raw")
DFT = Path("data/dosnp/dft")
FEATURES = Path("data/dosnp/features")
MODEL = Path("data/dosnp/model")
CV_SCRATCH = Path("data/dosnp/cv-folds")  # finished folds of an interrupted CV run (not a DVC output)
FITS = Path("data/dosnp/fits")  # checkpoints of resumable train-stage fits (not a DVC output)
REPORTS = Path("reports/dosnp")


def seeded_order(material_ids: list[str], seed: int) -> list[str]:
    """The table's materials in a seeded random order.

    Shared with `scripts/warm_dft_cache.py`, which computes materials in this order, so the
    first N materials a (possibly interrupted) paper-scale run has finished are exactly the
    subset `n_materials: N, max_sites: 0` selects.
    """
    order = list(material_ids)
    random.Random(seed).shuffle(order)
    return order


def select_materials(table: pd.DataFrame, cfg: dict[str, Any], where: str = "dosnp") -> pd.DataFrame:
    """The profile's materials: the first `n_materials` of the seeded order with nsites <= max_sites.

    `n_materials: 0` (or null) keeps every row: the paper-scale run; so does `max_sites: 0`.
    `where` names the params group in errors (ALIGNN-DOS selects with its own group).
    """
    max_sites = count_param(cfg, "max_sites", where)
    n = count_param(cfg, "n_materials", where)
    ids = [f"mp-{i}" for i in table["material_id"]]
    rows = table.assign(mp_id=ids).set_index("mp_id").loc[seeded_order(ids, int(cfg.get("subset_seed", 0)))]
    if max_sites:
        rows = rows[rows["nsites"] <= max_sites]
    if n:
        rows = rows.iloc[:n]
    return rows.reset_index().sort_values("material_id").reset_index(drop=True)


def stage_fetch(params: dict[str, Any]) -> None:
    """Fetch the pinned gap table and the POSCAR of every selected material into data/dosnp/raw."""
    cfg = params["dosnp"]
    raw = resolve_path(RAW)
    table = fetch_table(params, raw / "tab_nonmag_all.csv")
    selected = select_materials(table, cfg)
    source_name = cfg.get("structure_source", "ecalj")
    if source_name == "ecalj":
        # The POSCARs ecalj_auto actually computed (spglib-refined MP structures), pinned.
        fetch_structure_files(selected["mp_id"], params, raw / "structures")
    elif source_name == "mp":
        from esrepro.materials_project import fetch_structures as fetch_mp

        energies = fetch_mp(selected["mp_id"], raw / "structures")
        # Formation energies are an LRLIDG descriptor in the paper (App. C); only MP has them.
        selected["formation_energy_per_atom"] = selected["mp_id"].map(energies)
    else:
        raise ValueError(f"dosnp.structure_source must be 'ecalj' or 'mp', got {source_name!r}")
    selected.to_csv(raw / "selected.csv", index=False)
    log.info("fetched table (%d rows) and %d structures", len(table), len(selected))


def load_selected(raw: Path | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The selected rows and their structures (ase.Atoms keyed by "mp-<id>")."""
    raw = resolve_path(raw or RAW)
    selected = pd.read_csv(raw / "selected.csv")
    structures = {m: read_structure(raw / "structures" / f"{m}.vasp") for m in selected["mp_id"]}
    return selected, structures


def stage_dft(params: dict[str, Any]) -> None:
    """GPAW LDA products for every selected material (cache first), with a per-material summary.

    Writes data/dosnp/dft/summary.csv (one row per material, failures with their reason) and
    products/<mp-id>.npz copies of the cached products, so downstream stages depend on content.
    """
    selected, structures = load_selected()
    out = resolve_path(DFT)
    records = run_dft_stage(structures, params["dft"], out)
    products = out / "products"
    rows = []
    table = selected.set_index("mp_id")
    for record in records:
        row = table.loc[record.material_id]
        summary = {
            "material_id": record.material_id,
            "formula": row["formula"],
            "nsites": int(row["nsites"]),
            "status": record.status,
            "reason": record.reason,
            "lda_gap_table": float(row["LDA"]),
            "qsgw_gap": float(row["2shot"]),
            "gpaw_gap": np.nan,
            "fermi_level": np.nan,
            "vbm": np.nan,
            "cbm": np.nan,
            "wall_s": record.wall_s,
            "cache_key": record.cache_key,
        }
        if record.status != "failed":
            product = DFTProduct.load(products / f"{record.material_id}.npz")
            summary.update(
                gpaw_gap=product.gap, fermi_level=product.fermi_level, vbm=product.vbm,
                cbm=product.cbm, wall_s=product.meta.get("wall_s", record.wall_s),
            )
        rows.append(summary)
    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)
    n_failed = sum(r["status"] == "failed" for r in rows)
    log.info("DFT: %d materials, %d failed (reasons in %s)", len(rows), n_failed, out / "summary.csv")


def ecalj_pdos(material_id: str, cfg: dict[str, Any], grid: np.ndarray) -> np.ndarray:
    """PDOS from ecalj files a user holds: `<ecalj_pdos_dir>/<mp-id>/dos.isp*.site*.<ext>`."""
    from esrepro.dft.ecalj import detect_extension, ecalj_pdos_tensor

    if not cfg.get("ecalj_pdos_dir"):
        raise ValueError(
            "params.yaml dosnp.pdos_source is 'ecalj' but dosnp.ecalj_pdos_dir is not set: point it "
            "to a directory holding <mp-id>/dos.isp*.site*.<ext> files"
        )
    directory = resolve_path(cfg["ecalj_pdos_dir"]) / material_id
    if not directory.is_dir():
        raise FileNotFoundError(f"no ecalj PDOS directory for {material_id}: {directory}")
    ext = cfg.get("ecalj_ext") or detect_extension(directory)
    return ecalj_pdos_tensor(directory, ext, grid)


def stage_featurize(params: dict[str, Any]) -> None:
    """PDOS tensors (16 channels x 1,000 points per atom) for every material with a product."""
    from esrepro.splits import random_split_labels

    cfg = params["dosnp"]
    feat = cfg["features"]
    grid = dosnp_grid(feat["emin_ry"], feat["emax_ry"], int(feat["n_points"]))
    summary = pd.read_csv(resolve_path(DFT) / "summary.csv")
    ok = summary[summary["status"] != "failed"].reset_index(drop=True)
    blocks, n_atoms, short = [], [], []
    for material_id in ok["material_id"]:
        if cfg["pdos_source"] == "gpaw":
            product = DFTProduct.load(resolve_path(DFT) / "products" / f"{material_id}.npz")
            # States above the product's last complete band are missing from the PDOS there.
            top = complete_band_range(product, product.reference_energy)[1]
            if top < grid[-1] + 3 * float(feat["sigma_ev"]):
                short.append(f"{material_id} (E_F{top:+.1f} eV)")
            pdos = projected_dos(product, grid, feat["sigma_ev"])
        elif cfg["pdos_source"] == "ecalj":
            pdos = ecalj_pdos(material_id, cfg, grid)
        else:
            raise ValueError(f"dosnp.pdos_source must be 'gpaw' or 'ecalj', got {cfg['pdos_source']!r}")
        blocks.append(torch.from_numpy(pdos.astype(np.float32)).to(torch.float16))
        n_atoms.append(pdos.shape[0])
    if short:
        log.warning("%d of %d materials have no bands to the top of the PDOS window (E_F%+.1f eV): %s",
                    len(short), len(ok), grid[-1], ", ".join(short))
    ids = list(ok["material_id"])
    split = cfg["split"]
    features = {
        "material_ids": ids,
        "formulas": list(ok["formula"]),
        "pdos": torch.cat(blocks) if blocks else torch.zeros((0, 16, len(grid)), dtype=torch.float16),
        "atom_ptr": torch.tensor(np.concatenate([[0], np.cumsum(n_atoms)]), dtype=torch.long),
        "n_atoms": torch.tensor(n_atoms, dtype=torch.long),
        "lda_gap_table": torch.tensor(ok["lda_gap_table"].to_numpy(), dtype=torch.float32),
        "qsgw_gap": torch.tensor(ok["qsgw_gap"].to_numpy(), dtype=torch.float32),
        "gpaw_gap": torch.tensor(ok["gpaw_gap"].to_numpy(), dtype=torch.float32),
        "energy_grid": torch.tensor(grid, dtype=torch.float32),
        "split": random_split_labels(ids, float(split["test_fraction"]), int(split["seed"])),
        "meta": {
            "pdos_source": cfg["pdos_source"],
            "sigma_ev": float(feat["sigma_ev"]),
            "units": "states/eV per atom and channel, spin-summed",
            "energy_reference": "VBM for gapped systems, else E_F",
            "bands_short_of_window": short,
        },
    }
    out = resolve_path(FEATURES)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(features, out / "dataset.pt")
    log.info("featurized %d materials (%d atoms)", len(ids), int(sum(n_atoms)))


def stage_train(params: dict[str, Any]) -> None:
    from esrepro.papers.dosnp.train import run_train

    run_train(
        resolve_path(FEATURES) / "dataset.pt", params, resolve_path(MODEL),
        resolve_path(REPORTS) / "training", resume_root=resolve_path(FITS),
    )


def _formation_energies(selected: pd.DataFrame) -> dict[str, float] | None:
    """Formation energies per material when the structures came from MP (an LRLIDG descriptor)."""
    if "formation_energy_per_atom" not in selected:
        return None
    return dict(zip(selected["mp_id"], selected["formation_energy_per_atom"], strict=True))


def stage_evaluate(params: dict[str, Any]) -> None:
    """Metrics of DOSnp and both baselines, plus the GPAW-vs-ecalj LDA gap validation."""
    from esrepro.papers.dosnp.train import run_evaluate

    selected, structures = load_selected()
    formation = _formation_energies(selected)
    summary = pd.read_csv(resolve_path(DFT) / "summary.csv")
    ok = summary[summary["status"] != "failed"]
    extra = {
        "n_materials": int(len(summary)),
        "n_dft_failed": int((summary["status"] == "failed").sum()),
        "gpaw_vs_ecalj_lda_gap_mae": float(np.mean(np.abs(ok["gpaw_gap"] - ok["lda_gap_table"]))),
    }
    reports = resolve_path(REPORTS)
    run_evaluate(
        resolve_path(FEATURES) / "dataset.pt", resolve_path(MODEL) / "dosnp.pt", structures, params,
        reports / "metrics.json", reports / "predictions.csv", extra,
        formation_energies=formation,
    )


def stage_cv(params: dict[str, Any]) -> None:
    """k-fold cross-validation of DOSnp and both baselines (params `dosnp.cv`)."""
    from esrepro.papers.dosnp.cv import run_cross_validation

    selected, structures = load_selected()
    reports = resolve_path(REPORTS)
    run_cross_validation(
        resolve_path(FEATURES) / "dataset.pt", structures, params,
        reports / "cv_metrics.json", reports / "cv_predictions.csv", resolve_path(CV_SCRATCH),
        formation_energies=_formation_energies(selected),
    )


def stage_report(params: dict[str, Any]) -> None:
    from esrepro.reports import render_notebook

    reports = resolve_path(REPORTS)
    render_notebook(
        resolve_path("src/esrepro/notebooks/dosnp.ipynb"),
        reports,
        {
            "table_csv": str(resolve_path(RAW) / "tab_nonmag_all.csv"),
            "dft_summary_csv": str(resolve_path(DFT) / "summary.csv"),
            "predictions_csv": str(reports / "predictions.csv"),
            "metrics_json": str(reports / "metrics.json"),
            "cv_metrics_json": str(reports / "cv_metrics.json"),
            "cv_predictions_csv": str(reports / "cv_predictions.csv"),
            "figures_dir": str(reports / "figures"),
            "dvclive_dir": str(reports / "training"),
        },
        html_name="dosnp.html",
    )


STAGES = {
    "fetch": stage_fetch,
    "dft": stage_dft,
    "featurize": stage_featurize,
    "train": stage_train,
    "evaluate": stage_evaluate,
    "cv": stage_cv,
    "report": stage_report,
}
