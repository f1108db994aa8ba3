"""The ALIGNN-DOS pipeline, one function per DVC stage (declared in ``...alignn_dos.paper``).

    fetch -> dft -> featurize -> autoencoder -> train -> evaluate -> report

Training data (``alignn_dos.source``): ``gpaw``, the DOS of the shared DFT engine's products
for the DOSnp structure set (the same content-addressed cache as DOSnp, so a structure both
papers use costs one SCF); or ``jarvis``, the 55k JARVIS-DFT ``edos_pdos`` spectra (the paper's
data; needs network access and a sha256 pin). Either way, ALIGNN's own repository's 50 real
JARVIS spectra are an external test set.

Each function takes its stage's typed config (``esrepro.papers.alignn_dos.config``) and the
paths the registry entry declares; imports a single stage needs stay inside its function, so
each stage's code dependencies (``dvc.yaml``) are what it actually runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from esrepro.papers.alignn_dos.config import (
    AutoencoderConfig,
    DFTConfig,
    EvaluateConfig,
    FeaturizeConfig,
    FetchConfig,
    TrainConfig,
)

log = logging.getLogger(__name__)


def stage_fetch(cfg: FetchConfig, *, raw: Path, downloads: Path) -> None:
    """Structures of the training set (and the JARVIS targets when the source is jarvis), plus
    the 50 external JARVIS spectra, into ``raw``; ``downloads`` keeps the JARVIS zip."""
    from esrepro.jarvis import fetch_alignn_samples, fetch_edos_pdos, read_edos_pdos
    from esrepro.selection import fetch_structure_files, fetch_table, select_materials
    from esrepro.structures import formula

    fetch_alignn_samples(cfg.mirror, raw / "external")
    structures = raw / "structures"
    structures.mkdir(parents=True, exist_ok=True)
    if cfg.source == "gpaw":
        # The DOSnp table's structures, selected exactly as DOSnp selects them, so the default
        # profiles of both papers share every DFT product.
        table = fetch_table(cfg.table_commit, cfg.mirror)
        selected = select_materials(table, cfg.selection)
        fetch_structure_files(selected["mp_id"], cfg.mirror, structures)
        selected = selected.rename(columns={"mp_id": "material_id", "material_id": "mp_number"})
        selected[["material_id", "formula", "nsites"]].to_csv(raw / "selected.csv", index=False)
    else:
        path = fetch_edos_pdos(
            cfg.jarvis.url, cfg.jarvis.sha256, cfg.mirror, downloads / "edos_pdos.zip"
        )
        records = read_edos_pdos(path)
        order = np.random.default_rng(cfg.selection.subset_seed).permutation(len(records))
        max_sites, n_materials = cfg.selection.max_sites, cfg.selection.n_materials
        rows, targets = [], []
        for i in order:
            rec = records[int(i)]
            if max_sites and len(rec["atoms"]) > max_sites:
                continue
            rec["atoms"].write(structures / f"{rec['jid']}.vasp", format="vasp", direct=True)
            rows.append({
                "material_id": rec["jid"], "formula": formula(rec["atoms"]),
                "nsites": len(rec["atoms"]),
            })
            targets.append(rec["edos_up"])
            if n_materials and len(rows) == n_materials:
                break
        pd.DataFrame(rows).to_csv(raw / "selected.csv", index=False)
        np.save(raw / "jarvis_dos.npy", np.asarray(targets, dtype=np.float32))
    log.info("fetched %d training structures", len(pd.read_csv(raw / "selected.csv")))


def load_selected(raw: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    from esrepro.structures import read_structure

    selected = pd.read_csv(raw / "selected.csv")
    return selected, {
        m: read_structure(raw / "structures" / f"{m}.vasp") for m in selected["material_id"]
    }


def stage_dft(cfg: DFTConfig, *, raw: Path, dft: Path) -> None:
    """GPAW products of every training structure (cache first); a summary with failure reasons.

    With ``source: jarvis`` the targets are JARVIS's own spectra and no DFT runs.
    """
    from esrepro.dft.stage import run_dft_stage

    selected, structures = load_selected(raw)
    dft.mkdir(parents=True, exist_ok=True)
    if cfg.source == "jarvis":
        summary = selected.assign(status="jarvis", reason="", cache_key="")
    else:
        records = {r.material_id: r for r in run_dft_stage(structures, cfg.as_params(), dft)}
        summary = selected.assign(
            status=[records[m].status for m in selected["material_id"]],
            reason=[records[m].reason for m in selected["material_id"]],
            cache_key=[records[m].cache_key for m in selected["material_id"]],
        )
    summary.to_csv(dft / "summary.csv", index=False)


def stage_featurize(cfg: FeaturizeConfig, *, raw: Path, dft: Path, features: Path) -> None:
    """Graphs (16-NN crystal graph + line graph), DOS targets and the 70/10/20 split.

    A product whose bands do not cover the DOS grid is left out with its reason in
    ``excluded.csv``, never silently.
    """
    import torch

    from esrepro.dft.product import DFTProduct
    from esrepro.jarvis import read_alignn_samples
    from esrepro.papers.alignn_dos.data import graph_record
    from esrepro.spectra import dos_per_electron, energy_grid
    from esrepro.splits import train_val_test_labels
    from esrepro.structures import formula

    dcfg, gcfg = cfg.dos, cfg.graph
    grid = energy_grid(
        dcfg.emin_ev, dcfg.emin_ev + dcfg.spacing_ev * (dcfg.n_bins - 1), dcfg.n_bins
    )
    selected, structures = load_selected(raw)
    summary = pd.read_csv(dft / "summary.csv", keep_default_na=False)
    jarvis_dos = np.load(raw / "jarvis_dos.npy") if cfg.source == "jarvis" else None
    ids, formulas, graphs, targets, excluded = [], [], [], [], []
    for row_index, row in summary.iterrows():
        material_id = row["material_id"]
        if row["status"] == "failed":
            excluded.append({"material_id": material_id, "reason": f"DFT failed: {row['reason']}"})
            continue
        if jarvis_dos is not None:
            dos = jarvis_dos[row_index]
        else:
            product = DFTProduct.load(dft / "products" / f"{material_id}.npz")
            try:
                dos = dos_per_electron(product, grid, dcfg.sigma_ev, dcfg.reference, per_spin=True)
            except ValueError as err:
                excluded.append({"material_id": material_id, "reason": str(err)})
                continue
        atoms = structures[material_id]
        ids.append(material_id)
        formulas.append(formula(atoms))
        graphs.append(graph_record(atoms, k=gcfg.k, cutoff=gcfg.cutoff))
        targets.append(np.asarray(dos, dtype=np.float32))
    split = cfg.split
    external = read_alignn_samples(raw / "external" / "id_prop.csv")
    dataset = {
        "material_ids": ids,
        "formulas": formulas,
        "graphs": graphs,
        "dos": torch.from_numpy(np.stack(targets)) if targets else torch.zeros((0, len(grid))),
        "energies": torch.from_numpy(grid),
        "split": train_val_test_labels(ids, split.val_fraction, split.test_fraction, split.seed),
        "external": {
            "ids": [r["jid"] for r in external],
            "formulas": [formula(r["atoms"]) for r in external],
            "graphs": [graph_record(r["atoms"], k=gcfg.k, cutoff=gcfg.cutoff) for r in external],
            "dos": torch.from_numpy(np.stack([r["edos_up"] for r in external]).astype(np.float32)),
        },
        "meta": {
            "source": cfg.source,
            "units": "states/eV/valence electron in one spin channel (JARVIS edos_up convention)",
            "energy_reference": dcfg.reference,
            "sigma_ev": dcfg.sigma_ev,
        },
    }
    features.mkdir(parents=True, exist_ok=True)
    torch.save(dataset, features / "dataset.pt")
    pd.DataFrame(excluded, columns=["material_id", "reason"]).to_csv(
        features / "excluded.csv", index=False
    )
    log.info(
        "featurized %d structures (%d excluded) and %d external spectra",
        len(ids), len(excluded), len(external),
    )


def stage_autoencoder(
    cfg: AutoencoderConfig, *, features: Path, autoencoder: Path, training: Path, fits: Path
) -> None:
    """One DOS autoencoder per latent size (``autoencoder/ae_<L>.pt``), curves in ``training``."""
    from esrepro.papers.alignn_dos.train import run_autoencoders

    run_autoencoders(
        features / "dataset.pt", cfg.autoencoder, autoencoder, training, resume_root=fits
    )


def stage_train(
    cfg: TrainConfig, *, features: Path, autoencoder: Path, model: Path, training: Path, fits: Path
) -> None:
    """D-ALIGNN and every AE-ALIGNN (``model/<key>.pt``), curves in ``training``."""
    from esrepro.papers.alignn_dos.train import run_train

    run_train(features / "dataset.pt", autoencoder, cfg, model, training, resume_root=fits)


def stage_evaluate(
    cfg: EvaluateConfig, *, dft_summary: Path, features: Path, autoencoder: Path, model: Path,
    metrics: Path, predictions: Path,
) -> None:
    """Metrics of every model (and the mean-spectrum baseline) on the splits and JARVIS's 50."""
    from esrepro.papers.alignn_dos.train import run_evaluate

    summary = pd.read_csv(dft_summary, keep_default_na=False)
    excluded = pd.read_csv(features / "excluded.csv")
    # n_materials: selected; run_evaluate adds n_used (after DFT failures and exclusions).
    extra = {
        "source": cfg.source,
        "n_materials": int(len(summary)),
        "n_dft_failed": int((summary["status"] == "failed").sum()),
        "n_excluded": int(len(excluded)),
    }
    run_evaluate(features / "dataset.pt", autoencoder, model, cfg, metrics, predictions, extra)


def stage_report(
    *, notebook: Path, predictions: Path, metrics: Path, training: Path, html: Path,
    executed: Path, figures: Path,
) -> None:
    """The paper's figures and tables: ``notebook`` executed into ``executed`` and ``html``."""
    from esrepro.reports import render_report

    render_report(
        notebook, html, executed,
        {
            "predictions_npz": predictions,
            "metrics_json": metrics,
            "figures_dir": figures,
            "dvclive_dir": training / "models",
        },
    )
