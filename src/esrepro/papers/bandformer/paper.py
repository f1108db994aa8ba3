"""Bandformer's registry entry: its stages, what each reads and writes, and the params DVC
tracks."""

from __future__ import annotations

from esrepro.papers.bandformer import config
from esrepro.registry import TARGETS_CODE, Paper, Stage, metric, report, shown_runs

RUN = "esrepro.papers.bandformer.pipeline"
RAW = "data/bandformer/raw"
DFT = "data/bandformer/dft"
FEATURES = "data/bandformer/features"
MODEL = "data/bandformer/model"
FITS = "data/bandformer/fits"
REPORTS = "reports/bandformer"
NOTEBOOK = "src/esrepro/notebooks/bandformer.ipynb"

PAPER = Paper(
    name="bandformer",
    notebook=NOTEBOOK,
    models=(MODEL,),
    stages=(
        Stage(
            "fetch", f"{RUN}:stage_fetch", config.FetchConfig,
            outputs={"raw": RAW},
            params=("dosnp.table_commit", "bandformer.n_materials", "bandformer.max_sites",
                    "bandformer.subset_seed"),
        ),
        Stage(
            "dft", f"{RUN}:stage_dft", config.DFTConfig,
            inputs={"raw": RAW},
            outputs={"dft": DFT},
            params=("bandformer.dft",),
            code=("src/esrepro/dft",),  # workers run it in subprocesses
        ),
        Stage(
            "featurize", f"{RUN}:stage_featurize", config.FeaturizeConfig,
            inputs={"raw": RAW, "dft": DFT},
            outputs={"features": FEATURES},
            params=("bandformer.dft.bands_below", "bandformer.dft.bands_above",
                    "bandformer.bands", "bandformer.graph", "bandformer.node_features",
                    "bandformer.split"),
        ),
        Stage(
            "train", f"{RUN}:stage_train", config.TrainConfig,
            inputs={"features": FEATURES},
            outputs={"model": MODEL, "training": report(f"{REPORTS}/training")},
            scratch={"fits": FITS},
            params=("bandformer.model", "bandformer.train", "bandformer.graph.cutoff"),
        ),
        Stage(
            "evaluate", f"{RUN}:stage_evaluate", None,
            inputs={"dft_summary": f"{DFT}/summary.csv", "features": FEATURES, "model": MODEL},
            outputs={"metrics": metric(f"{REPORTS}/metrics.json"),
                     "predictions": report(f"{REPORTS}/predictions.npz")},
        ),
        Stage(
            "report", f"{RUN}:stage_report", None,
            inputs={"notebook": NOTEBOOK,
                    "predictions": f"{REPORTS}/predictions.npz",
                    "metrics": f"{REPORTS}/metrics.json",
                    "training": f"{REPORTS}/training"},
            outputs={"html": report(f"{REPORTS}/bandformer.html"),
                     "executed": report(f"{REPORTS}/bandformer.ipynb"),
                     "figures": report(f"{REPORTS}/figures")},
            reads=shown_runs("bandformer", "partial"),
            code=(TARGETS_CODE,),
        ),
    ),
    plots=(
        {"Bandformer learning curves": {
            "template": "linear", "x": "step",
            "y": {f"{REPORTS}/training/plots/metrics/train/loss.tsv": "loss",
                  f"{REPORTS}/training/plots/metrics/val/loss.tsv": "loss"},
        }},
    ),
)
