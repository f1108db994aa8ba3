"""DOSnp's registry entry: its stages, what each reads and writes, and the params DVC tracks."""

from __future__ import annotations

from esrepro.papers.dosnp import config
from esrepro.registry import TARGETS_CODE, Paper, Stage, metric, report, shown_runs

RUN = "esrepro.papers.dosnp.pipeline"
RAW = "data/dosnp/raw"
DFT = "data/dosnp/dft"
FEATURES = "data/dosnp/features"
MODEL = "data/dosnp/model"
REPORTS = "reports/dosnp"
NOTEBOOK = "src/esrepro/notebooks/dosnp.ipynb"

PAPER = Paper(
    name="dosnp",
    notebook=NOTEBOOK,
    models=(MODEL,),
    stages=(
        Stage(
            "fetch", f"{RUN}:stage_fetch", config.FetchConfig,
            outputs={"raw": RAW},
            params=("dosnp.table_commit", "dosnp.n_materials", "dosnp.max_sites",
                    "dosnp.subset_seed", "dosnp.structure_source"),
        ),
        Stage(
            "dft", f"{RUN}:stage_dft", config.DFTConfig,
            inputs={"raw": RAW},
            outputs={"dft": DFT},
            params=("dft.settings",),
            code=("src/esrepro/dft",),  # workers run it in subprocesses
        ),
        Stage(
            "featurize", f"{RUN}:stage_featurize", config.FeaturizeConfig,
            inputs={"dft": DFT},
            outputs={"features": FEATURES},
            params=("dosnp.pdos_source", "dosnp.ecalj_pdos_dir", "dosnp.ecalj_ext",
                    "dosnp.features", "dosnp.split"),
        ),
        Stage(
            "train", f"{RUN}:stage_train", config.TrainConfig,
            inputs={"features": FEATURES},
            outputs={"model": MODEL, "training": report(f"{REPORTS}/training")},
            scratch={"fits": "data/dosnp/fits"},
            params=("model.pooling", "dosnp.model", "dosnp.train"),
        ),
        Stage(
            "evaluate", f"{RUN}:stage_evaluate", config.EvaluateConfig,
            inputs={"raw": RAW, "dft_summary": f"{DFT}/summary.csv", "features": FEATURES,
                    "model": MODEL},
            outputs={"metrics": metric(f"{REPORTS}/metrics.json"),
                     "predictions": report(f"{REPORTS}/predictions.csv")},
            params=("dosnp.lrlidg", "dosnp.train.batch_size"),
        ),
        Stage(
            "cv", f"{RUN}:stage_cv", config.CVConfig,
            inputs={"raw": RAW, "features": FEATURES},
            outputs={"metrics": metric(f"{REPORTS}/cv_metrics.json"),
                     "predictions": report(f"{REPORTS}/cv_predictions.csv")},
            scratch={"folds": "data/dosnp/cv-folds"},
            params=("model.pooling", "dosnp.model", "dosnp.train", "dosnp.lrlidg", "dosnp.cv"),
        ),
        Stage(
            "report", f"{RUN}:stage_report", None,
            inputs={
                "notebook": NOTEBOOK,
                "table": f"{RAW}/tab_nonmag_all.csv",
                "dft_summary": f"{DFT}/summary.csv",
                "predictions": f"{REPORTS}/predictions.csv",
                "metrics": f"{REPORTS}/metrics.json",
                "cv_metrics": f"{REPORTS}/cv_metrics.json",
                "cv_predictions": f"{REPORTS}/cv_predictions.csv",
                "training": f"{REPORTS}/training",
            },
            outputs={"html": report(f"{REPORTS}/dosnp.html"),
                     "executed": report(f"{REPORTS}/dosnp.ipynb"),
                     "figures": report(f"{REPORTS}/figures")},
            reads=shown_runs("dosnp", "partial"),
            code=(TARGETS_CODE,),
        ),
    ),
    plots=(
        {"DOSnp learning curves": {
            "template": "linear", "x": "step",
            "y": {f"{REPORTS}/training/plots/metrics/train/loss.tsv": "loss",
                  f"{REPORTS}/training/plots/metrics/val/loss.tsv": "loss"},
        }},
    ),
)
