"""ALIGNN-DOS's registry entry: its stages, what each reads and writes, and the params DVC
tracks."""

from __future__ import annotations

from esrepro.papers.alignn_dos import config
from esrepro.registry import TARGETS_CODE, Paper, Stage, metric, report, shown_runs

RUN = "esrepro.papers.alignn_dos.pipeline"
RAW = "data/alignn_dos/raw"
DFT = "data/alignn_dos/dft"
FEATURES = "data/alignn_dos/features"
AUTOENCODER = "data/alignn_dos/autoencoder"
MODEL = "data/alignn_dos/model"
FITS = "data/alignn_dos/fits"
REPORTS = "reports/alignn_dos"
NOTEBOOK = "src/esrepro/notebooks/alignn_dos.ipynb"

PAPER = Paper(
    name="alignn_dos",
    notebook=NOTEBOOK,
    models=(AUTOENCODER, MODEL),
    # The default profiles select the same structures: DOSnp's DFT stage computes them first and
    # ALIGNN-DOS finds every product in the shared cache.
    after=("dosnp",),
    stages=(
        Stage(
            "fetch", f"{RUN}:stage_fetch", config.FetchConfig,
            outputs={"raw": RAW},
            scratch={"downloads": "data/downloads/jarvis"},
            params=("dosnp.table_commit", "alignn_dos.source", "alignn_dos.n_materials",
                    "alignn_dos.max_sites", "alignn_dos.subset_seed", "alignn_dos.jarvis"),
        ),
        Stage(
            "dft", f"{RUN}:stage_dft", config.DFTConfig,
            inputs={"raw": RAW},
            outputs={"dft": DFT},
            params=("dft.settings", "alignn_dos.source"),
            code=("src/esrepro/dft",),  # workers run it in subprocesses
        ),
        Stage(
            "featurize", f"{RUN}:stage_featurize", config.FeaturizeConfig,
            inputs={"raw": RAW, "dft": DFT},
            outputs={"features": FEATURES},
            params=("alignn_dos.source", "alignn_dos.dos", "alignn_dos.graph", "alignn_dos.split"),
        ),
        Stage(
            "autoencoder", f"{RUN}:stage_autoencoder", config.AutoencoderConfig,
            inputs={"features": FEATURES},
            outputs={"autoencoder": AUTOENCODER,
                     "training": report(f"{REPORTS}/training/autoencoders")},
            scratch={"fits": FITS},
            params=("alignn_dos.autoencoder",),
        ),
        Stage(
            "train", f"{RUN}:stage_train", config.TrainConfig,
            inputs={"features": FEATURES, "autoencoder": AUTOENCODER},
            outputs={"model": MODEL, "training": report(f"{REPORTS}/training/models")},
            scratch={"fits": FITS},
            params=("model.pooling", "alignn_dos.model", "alignn_dos.train",
                    "alignn_dos.autoencoder.latents"),
        ),
        Stage(
            "evaluate", f"{RUN}:stage_evaluate", config.EvaluateConfig,
            inputs={"dft_summary": f"{DFT}/summary.csv", "features": FEATURES,
                    "autoencoder": AUTOENCODER, "model": MODEL},
            outputs={"metrics": metric(f"{REPORTS}/metrics.json"),
                     "predictions": report(f"{REPORTS}/predictions.npz")},
            params=("alignn_dos.source", "alignn_dos.autoencoder.latents",
                    "alignn_dos.dos.gap_threshold", "alignn_dos.model", "model.pooling"),
        ),
        Stage(
            "report", f"{RUN}:stage_report", None,
            inputs={"notebook": NOTEBOOK,
                    "predictions": f"{REPORTS}/predictions.npz",
                    "metrics": f"{REPORTS}/metrics.json",
                    "training": f"{REPORTS}/training"},
            outputs={"html": report(f"{REPORTS}/alignn_dos.html"),
                     "executed": report(f"{REPORTS}/alignn_dos.ipynb"),
                     "figures": report(f"{REPORTS}/figures")},
            reads=shown_runs("alignn_dos", "partial"),
            code=(TARGETS_CODE,),
        ),
    ),
    plots=(
        {"ALIGNN-DOS learning curves (D-ALIGNN)": {
            "template": "linear", "x": "step",
            "y": {f"{REPORTS}/training/models/d_alignn/plots/metrics/train/loss.tsv": "loss",
                  f"{REPORTS}/training/models/d_alignn/plots/metrics/val/loss.tsv": "loss"},
        }},
    ),
)
