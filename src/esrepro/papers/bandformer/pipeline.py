"""The Bandformer pipeline, one function per DVC stage (declared in ``...bandformer.paper``).

    fetch -> dft -> featurize -> train -> evaluate -> report

Structures: the DOSnp table's Materials Project structures, selected as DOSnp selects them
(the only MP structures available offline). Targets: the shared DFT engine's band products
(PBE SCF, then a fixed-density run on the unique segments of the continuous Latimer–Munro
path; :mod:`esrepro.dft.band_product`), resampled as the paper resamples them
(:mod:`esrepro.papers.bandformer.data`).

Each function takes its stage's typed config (``esrepro.papers.bandformer.config``) and the
paths the registry entry declares; imports a single stage needs stay inside its function, so
each stage's code dependencies (``dvc.yaml``) are what it actually runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from esrepro.papers.bandformer.config import (
    DFTConfig,
    FeaturizeConfig,
    FetchConfig,
    TrainConfig,
)

log = logging.getLogger(__name__)


def stage_fetch(cfg: FetchConfig, *, raw: Path) -> None:
    """The selected structures (POSCARs) and ``selected.csv`` into ``raw``."""
    from esrepro.selection import fetch_structure_files, fetch_table, select_materials

    structures = raw / "structures"
    structures.mkdir(parents=True, exist_ok=True)
    table = fetch_table(cfg.table_commit, cfg.mirror)
    selected = select_materials(table, cfg.selection)
    fetch_structure_files(selected["mp_id"], cfg.mirror, structures)
    selected = selected.rename(columns={"mp_id": "material_id", "material_id": "mp_number"})
    selected[["material_id", "formula", "nsites"]].to_csv(raw / "selected.csv", index=False)


def load_selected(raw: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    from esrepro.structures import read_structure

    selected = pd.read_csv(raw / "selected.csv")
    return selected, {
        m: read_structure(raw / "structures" / f"{m}.vasp") for m in selected["material_id"]
    }


def stage_dft(cfg: DFTConfig, *, raw: Path, dft: Path) -> None:
    """A band product per structure (cache and seeds first; farmed, resumable), copied to
    ``dft/products``, and ``dft/summary.csv`` with each status and failure reason."""
    from esrepro.dft.band_product import BandSettings
    from esrepro.dft.stage import run_band_stage

    settings = BandSettings.from_params(cfg.settings, source="params.yaml bandformer.dft")
    selected, structures = load_selected(raw)
    dft.mkdir(parents=True, exist_ok=True)
    records = {
        r.material_id: r for r in run_band_stage(structures, cfg.as_params(), settings, dft)
    }
    summary = selected.assign(
        status=[records[m].status for m in selected["material_id"]],
        reason=[records[m].reason for m in selected["material_id"]],
        cache_key=[records[m].cache_key for m in selected["material_id"]],
    )
    summary.to_csv(dft / "summary.csv", index=False)


def stage_featurize(cfg: FeaturizeConfig, *, raw: Path, dft: Path, features: Path) -> None:
    """Crystal graphs, resampled band targets and the fixed split into ``dataset.pt``.

    A material whose DFT failed or whose product lacks the bands asked for is left out with its
    reason in ``excluded.csv``, never silently.
    """
    import torch

    from esrepro.dft.band_product import BandProduct
    from esrepro.papers.bandformer.data import band_targets
    from esrepro.papers.bandformer.features import crystal_graph
    from esrepro.splits import train_val_test_labels
    from esrepro.structures import formula

    selected, structures = load_selected(raw)
    summary = pd.read_csv(dft / "summary.csv", keep_default_na=False)
    samples, rows, excluded = [], [], []
    for _, row in summary.iterrows():
        material_id = row["material_id"]
        if row["status"] == "failed":
            excluded.append({"material_id": material_id, "reason": f"DFT failed: {row['reason']}"})
            continue
        product = BandProduct.load(dft / "products" / f"{material_id}.npz")
        try:
            target = band_targets(
                product, cfg.n_below, cfg.n_above, cfg.bands.n_kpoints, cfg.bands.smoothing_width
            )
        except ValueError as err:
            excluded.append({"material_id": material_id, "reason": str(err)})
            continue
        atoms = structures[material_id]
        graph = crystal_graph(
            atoms, k=cfg.graph.k, cutoff=cfg.graph.cutoff, features=cfg.node_features
        )
        graph.kpoints = torch.from_numpy(target.kpoints)[None]
        graph.bands = torch.from_numpy(target.bands)[None]
        graph.is_metal = torch.tensor([target.is_metal])
        graph.gap = torch.tensor([target.gap], dtype=torch.float32)
        graph.material_id = material_id
        samples.append(graph)
        rows.append({
            "material_id": material_id,
            "formula": formula(atoms),
            "nsites": len(atoms),
            "is_metal": target.is_metal,
            "gap": target.gap,
            "gap_resampled_error": target.gap_resampled_error,
            "labels": target.labels,
            "arc": target.arc,
        })
    ids = [r["material_id"] for r in rows]
    split = train_val_test_labels(
        ids, cfg.split.val_fraction, cfg.split.test_fraction, cfg.split.seed
    )
    features.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "samples": samples,
            "materials": rows,
            "split": split,
            "meta": {
                "n_below": cfg.n_below,
                "n_above": cfg.n_above,
                "n_kpoints": cfg.bands.n_kpoints,
                "smoothing_width": cfg.bands.smoothing_width,
                "node_features": cfg.node_features,
                "energy_zero": "E_F (metals), mid-gap (non-metals)",
            },
        },
        features / "dataset.pt",
    )
    pd.DataFrame(excluded, columns=["material_id", "reason"]).to_csv(
        features / "excluded.csv", index=False
    )
    log.info("featurized %d materials (%d excluded)", len(samples), len(excluded))


def stage_train(
    cfg: TrainConfig, *, features: Path, model: Path, training: Path, fits: Path
) -> None:
    """The network on the train split, early-stopped on val (``model/bandformer.pt``); its
    learning curves in ``training``; resumable fits in ``fits``."""
    import torch

    from esrepro.papers.bandformer.features import node_feature_dim
    from esrepro.papers.bandformer.model import network_config
    from esrepro.papers.bandformer.train import train_bandformer

    dataset = torch.load(features / "dataset.pt", weights_only=False)
    samples, split, meta = dataset["samples"], dataset["split"], dataset["meta"]
    train = [s for s, part in zip(samples, split, strict=True) if part == "train"]
    val = [s for s, part in zip(samples, split, strict=True) if part == "val"]
    network = network_config(
        cfg.model, n_bands=meta["n_below"] + meta["n_above"] + 1,
        node_features=node_feature_dim(meta["node_features"]), cutoff=cfg.graph_cutoff,
    )
    train_bandformer(
        train, val, network, cfg.train, model, dvclive_dir=training, resume_root=fits,
        metadata={"node_features": meta["node_features"], "n_kpoints": meta["n_kpoints"]},
    )


def stage_evaluate(
    *, dft_summary: Path, features: Path, model: Path, metrics: Path,
    predictions: Path,
) -> None:
    """Table I metrics of the network and the mean baseline on every split, and the arrays the
    report draws (``predictions.npz``)."""
    import numpy as np
    import torch

    from esrepro.metrics import write_json
    from esrepro.papers.bandformer.evaluate import evaluation_metrics, mean_baseline
    from esrepro.papers.bandformer.train import predict_bands
    from esrepro.training.model_files import load_model

    dataset = torch.load(features / "dataset.pt", weights_only=False)
    samples, materials = dataset["samples"], dataset["materials"]
    split = np.asarray(dataset["split"])
    network = load_model(model / "bandformer.pt")
    bands_true = np.stack([s.bands[0].numpy() for s in samples])
    arrays = {
        "material_id": np.asarray([m["material_id"] for m in materials]),
        "formula": np.asarray([m["formula"] for m in materials]),
        "split": split,
        "arc": np.stack([m["arc"] for m in materials]),
        "bands_true": bands_true,
        "bands_pred": predict_bands(network, samples),
        "bands_mean": mean_baseline(bands_true[split == "train"], len(samples)),
        "is_metal": np.asarray([m["is_metal"] for m in materials]),
        "gap_dft": np.asarray([m["gap"] for m in materials]),
        "gap_resampled_error": np.asarray([m["gap_resampled_error"] for m in materials]),
        "hob_column": np.asarray(dataset["meta"]["n_below"]),
        "labels": np.asarray([m["labels"] for m in materials]),
    }
    predictions.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(predictions, **arrays)
    summary = pd.read_csv(dft_summary, keep_default_na=False)
    excluded = pd.read_csv(features / "excluded.csv")
    counts = {
        "n_materials": int(len(summary)),
        "n_dft_failed": int((summary["status"] == "failed").sum()),
        "n_excluded": int(len(excluded)),
        "n_used": int(len(samples)),
        "n_test": int((split == "test").sum()),
    }
    write_json(metrics, {**counts, **evaluation_metrics(arrays)})


def stage_report(
    *, notebook: Path, predictions: Path, metrics: Path, training: Path, html: Path,
    executed: Path, figures: Path,
) -> None:
    """Table I and Figs. 2–3: ``notebook`` executed into ``executed`` and ``html``."""
    from esrepro.reports import render_report

    render_report(
        notebook, html, executed,
        {
            "predictions_npz": predictions,
            "metrics_json": metrics,
            "figures_dir": figures,
        },
    )
