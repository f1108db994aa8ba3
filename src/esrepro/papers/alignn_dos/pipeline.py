"""The ALIGNN-DOS pipeline, one function per DVC stage (`stages/alignn_dos.py` calls these).

    fetch -> dft -> featurize -> autoencoder -> train -> evaluate -> report

Training data (``alignn_dos.source``): ``gpaw``, the DOS of the shared DFT engine's products
for the DOSnp structure set (the same content-addressed cache as DOSnp, so a structure both
papers use costs one SCF); or ``jarvis``, the 55k JARVIS-DFT ``edos_pdos`` spectra (the paper's
data; needs network access and a sha256 pin). Either way, ALIGNN's own repository's 50 real
JARVIS spectra are an external test set.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from esrepro.config import count_param, resolve_path
from esrepro.dft.product import DFTProduct
from esrepro.dft.stage import run_dft_stage
from esrepro.jarvis import fetch_alignn_samples, fetch_edos_pdos, read_edos_pdos
from esrepro.papers.alignn_dos.data import graph_record
from esrepro.papers.dosnp.inputs import fetch_structure_files, fetch_table
from esrepro.papers.dosnp.pipeline import select_materials
from esrepro.spectra import dos_per_electron, energy_grid
from esrepro.splits import train_val_test_labels
from esrepro.structures import formula, read_structure

log = logging.getLogger(__name__)

RAW = Path("data/alignn_dos/raw")
DFT = Path("data/alignn_dos/dft")
FEATURES = Path("data/alignn_dos/features")
AUTOENCODER = Path("data/alignn_dos/autoencoder")
MODEL = Path("data/alignn_dos/model")
FITS = Path("data/alignn_dos/fits")  # checkpoints of resumable fits (not a DVC output)
REPORTS = Path("reports/alignn_dos")
SOURCES = ("gpaw", "jarvis")


def _source(cfg: dict[str, Any]) -> str:
    source = cfg.get("source", "gpaw")
    if source not in SOURCES:
        raise ValueError(f"params.yaml alignn_dos.source must be one of {SOURCES}, got {source!r}")
    return source


def _subset(ids: list[str], cfg: dict[str, Any]) -> list[str]:
    n = count_param(cfg, "n_materials", "alignn_dos")
    return ids[:n] if n else ids


def stage_fetch(params: dict[str, Any]) -> None:
    """Structures of the training set (and the JARVIS targets when the source is jarvis), plus
    the 50 external JARVIS spectra, into data/alignn_dos/raw."""
    cfg = params["alignn_dos"]
    max_sites = count_param(cfg, "max_sites", "alignn_dos")  # checked before any download
    n_materials = count_param(cfg, "n_materials", "alignn_dos")
    raw = resolve_path(RAW)
    fetch_alignn_samples(params, raw / "external")
    structures = raw / "structures"
    structures.mkdir(parents=True, exist_ok=True)
    if _source(cfg) == "gpaw":
        # The DOSnp table's structures, selected exactly as DOSnp selects them, so the default
        # profiles of both papers share every DFT product.
        table = fetch_table(params)
        selected = select_materials(table, cfg, where="alignn_dos")
        fetch_structure_files(selected["mp_id"], params, structures)
        selected = selected.rename(columns={"mp_id": "material_id", "material_id": "mp_number"})
        selected[["material_id", "formula", "nsites"]].to_csv(raw / "selected.csv", index=False)
    else:
        path = fetch_edos_pdos(cfg["jarvis"], params, resolve_path("data/downloads/jarvis") / "edos_pdos.zip")
        records = read_edos_pdos(path)
        order = np.random.default_rng(int(cfg.get("subset_seed", 0))).permutation(len(records))
        rows, targets = [], []
        for i in order:
            rec = records[int(i)]
            if max_sites and len(rec["atoms"]) > max_sites:
                continue
            rec["atoms"].write(structures / f"{rec['jid']}.vasp", format="vasp", direct=True)
            rows.append({"material_id": rec["jid"], "formula": formula(rec["atoms"]), "nsites": len(rec["atoms"])})
            targets.append(rec["edos_up"])
            if n_materials and len(rows) == n_materials:
                break
        pd.DataFrame(rows).to_csv(raw / "selected.csv", index=False)
        np.save(raw / "jarvis_dos.npy", np.asarray(targets, dtype=np.float32))
    log.info("fetched %d training structures", len(pd.read_csv(raw / "selected.csv")))


def load_selected() -> tuple[pd.DataFrame, dict[str, Any]]:
    raw = resolve_path(RAW)
    selected = pd.read_csv(raw / "selected.csv")
    return selected, {m: read_structure(raw / "structures" / f"{m}.vasp") for m in selected["material_id"]}


def stage_dft(params: dict[str, Any]) -> None:
    """GPAW products of every training structure (cache first); a summary with failure reasons.

    With ``source: jarvis`` the targets are JARVIS's own spectra and no DFT runs.
    """
    selected, structures = load_selected()
    out = resolve_path(DFT)
    out.mkdir(parents=True, exist_ok=True)
    if _source(params["alignn_dos"]) == "jarvis":
        summary = selected.assign(status="jarvis", reason="", cache_key="")
    else:
        records = {r.material_id: r for r in run_dft_stage(structures, params["dft"], out)}
        summary = selected.assign(
            status=[records[m].status for m in selected["material_id"]],
            reason=[records[m].reason for m in selected["material_id"]],
            cache_key=[records[m].cache_key for m in selected["material_id"]],
        )
    summary.to_csv(out / "summary.csv", index=False)


def stage_featurize(params: dict[str, Any]) -> None:
    """Graphs (16-NN crystal graph + line graph), DOS targets and the 70/10/20 split.

    A product whose bands do not cover the DOS grid is left out with its reason in
    ``excluded.csv``, never silently.
    """
    cfg = params["alignn_dos"]
    dcfg, gcfg = cfg["dos"], cfg["graph"]
    grid = energy_grid(float(dcfg["emin_ev"]), float(dcfg["emin_ev"]) + float(dcfg["spacing_ev"]) * (int(dcfg["n_bins"]) - 1),
                       int(dcfg["n_bins"]))
    selected, structures = load_selected()
    summary = pd.read_csv(resolve_path(DFT) / "summary.csv", keep_default_na=False)
    source = _source(cfg)
    jarvis_dos = np.load(resolve_path(RAW) / "jarvis_dos.npy") if source == "jarvis" else None
    ids, formulas, graphs, targets, excluded = [], [], [], [], []
    for row_index, row in summary.iterrows():
        material_id = row["material_id"]
        if row["status"] == "failed":
            excluded.append({"material_id": material_id, "reason": f"DFT failed: {row['reason']}"})
            continue
        if source == "jarvis":
            dos = jarvis_dos[row_index]
        else:
            product = DFTProduct.load(resolve_path(DFT) / "products" / f"{material_id}.npz")
            try:
                dos = dos_per_electron(product, grid, float(dcfg["sigma_ev"]), str(dcfg["reference"]), per_spin=True)
            except ValueError as err:
                excluded.append({"material_id": material_id, "reason": str(err)})
                continue
        atoms = structures[material_id]
        ids.append(material_id)
        formulas.append(formula(atoms))
        graphs.append(graph_record(atoms, k=int(gcfg["k"]), cutoff=float(gcfg["cutoff"])))
        targets.append(np.asarray(dos, dtype=np.float32))
    split = cfg["split"]
    external = fetch_alignn_samples(params, resolve_path(RAW) / "external")
    features = {
        "material_ids": ids,
        "formulas": formulas,
        "graphs": graphs,
        "dos": torch.from_numpy(np.stack(targets)) if targets else torch.zeros((0, len(grid))),
        "energies": torch.from_numpy(grid),
        "split": train_val_test_labels(ids, float(split["val_fraction"]), float(split["test_fraction"]), int(split["seed"])),
        "external": {
            "ids": [r["jid"] for r in external],
            "formulas": [formula(r["atoms"]) for r in external],
            "graphs": [graph_record(r["atoms"], k=int(gcfg["k"]), cutoff=float(gcfg["cutoff"])) for r in external],
            "dos": torch.from_numpy(np.stack([r["edos_up"] for r in external]).astype(np.float32)),
        },
        "meta": {
            "source": source,
            "units": "states/eV/valence electron in one spin channel (JARVIS edos_up convention)",
            "energy_reference": str(dcfg["reference"]),
            "sigma_ev": float(dcfg["sigma_ev"]),
        },
    }
    out = resolve_path(FEATURES)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(features, out / "dataset.pt")
    pd.DataFrame(excluded, columns=["material_id", "reason"]).to_csv(out / "excluded.csv", index=False)
    log.info("featurized %d structures (%d excluded) and %d external spectra", len(ids), len(excluded), len(external))


def stage_autoencoder(params: dict[str, Any]) -> None:
    from esrepro.papers.alignn_dos.train import run_autoencoders

    run_autoencoders(resolve_path(FEATURES) / "dataset.pt", params, resolve_path(AUTOENCODER),
                     resolve_path(REPORTS) / "training" / "autoencoders", resume_root=resolve_path(FITS))


def stage_train(params: dict[str, Any]) -> None:
    from esrepro.papers.alignn_dos.train import run_train

    run_train(resolve_path(FEATURES) / "dataset.pt", resolve_path(AUTOENCODER), params, resolve_path(MODEL),
              resolve_path(REPORTS) / "training" / "models", resume_root=resolve_path(FITS))


def stage_evaluate(params: dict[str, Any]) -> None:
    from esrepro.papers.alignn_dos.train import run_evaluate

    summary = pd.read_csv(resolve_path(DFT) / "summary.csv", keep_default_na=False)
    excluded = pd.read_csv(resolve_path(FEATURES) / "excluded.csv")
    extra = {
        "source": _source(params["alignn_dos"]),
        "n_materials": int(len(summary)),
        "n_dft_failed": int((summary["status"] == "failed").sum()),
        "n_excluded": int(len(excluded)),
    }
    reports = resolve_path(REPORTS)
    run_evaluate(resolve_path(FEATURES) / "dataset.pt", resolve_path(AUTOENCODER), resolve_path(MODEL), params,
                 reports / "metrics.json", reports / "predictions.npz", extra)


def stage_report(params: dict[str, Any]) -> None:
    from esrepro.reports import render_notebook

    reports = resolve_path(REPORTS)
    render_notebook(
        resolve_path("src/esrepro/notebooks/alignn_dos.ipynb"),
        reports,
        {
            "predictions_npz": str(reports / "predictions.npz"),
            "metrics_json": str(reports / "metrics.json"),
            "figures_dir": str(reports / "figures"),
            "dvclive_dir": str(reports / "training" / "models"),
        },
        html_name="alignn_dos.html",
    )


STAGES = {
    "fetch": stage_fetch,
    "dft": stage_dft,
    "featurize": stage_featurize,
    "autoencoder": stage_autoencoder,
    "train": stage_train,
    "evaluate": stage_evaluate,
    "report": stage_report,
}
