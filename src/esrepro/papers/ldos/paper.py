"""The LDOS paper's registry entry: its stages, what each reads and writes, and the params DVC
tracks."""

from __future__ import annotations

from esrepro.papers.ldos import config
from esrepro.registry import TARGETS_CODE, Paper, Stage, metric, report, shown_runs

RUN = "esrepro.papers.ldos.pipeline"
STRUCTURES = "data/ldos/structures"
DFT = "data/ldos/dft"
FEATURES = "data/ldos/features"
MODELS = "data/ldos/models"
REPORTS = "reports/ldos"
NOTEBOOK = "src/esrepro/notebooks/ldos.ipynb"

PAPER = Paper(
    name="ldos",
    notebook=NOTEBOOK,
    # Kernel ridge keeps every training environment's SOAP vector: 165 MB at reference scale.
    models_left_out=(
        "kernel ridge models hold their training descriptors (165 MB for the reference run); "
        "the fit is closed-form, and ldos_learn re-derives it from the shipped LCAO products"
    ),
    stages=(
        Stage(
            "structures", f"{RUN}:stage_structures", config.StructuresConfig,
            outputs={"structures": STRUCTURES},
            scratch={"downloads": "data/downloads/ldos"},
            params=("ldos.seed", "ldos.max_atoms", "ldos.mirrored_si", "ldos.generated"),
        ),
        Stage(
            "dft", f"{RUN}:stage_dft", config.DFTConfig,
            inputs={"structures": STRUCTURES},
            outputs={"dft": DFT},
            params=("dft.settings", "ldos.dft"),
            code=("src/esrepro/dft",),  # workers run it in subprocesses
        ),
        Stage(
            "featurize", f"{RUN}:stage_featurize", config.FeaturizeConfig,
            inputs={"structures": STRUCTURES, "dft": DFT},
            outputs={"features": FEATURES},
            params=("ldos.grid", "ldos.soap.r_cut", "ldos.soap.n_max", "ldos.soap.l_max",
                    "ldos.soap.sigma", "ldos.learn.test_fraction", "ldos.learn.split_seed"),
        ),
        Stage(
            "learn", f"{RUN}:stage_learn", config.LearnConfig,
            inputs={"features": FEATURES},
            outputs={"models": MODELS, "curves": report(f"{REPORTS}/curves.json")},
            params=("ldos.soap", "ldos.learn"),
        ),
        Stage(
            "evaluate", f"{RUN}:stage_evaluate", config.EvaluateConfig,
            inputs={"features": FEATURES, "models": MODELS},
            outputs={"metrics": metric(f"{REPORTS}/metrics.json"),
                     "predictions": report(f"{REPORTS}/predictions.npz")},
            params=("ldos.properties",),
        ),
        Stage(
            "report", f"{RUN}:stage_report", None,
            inputs={"notebook": NOTEBOOK,
                    "predictions": f"{REPORTS}/predictions.npz",
                    "metrics": f"{REPORTS}/metrics.json",
                    "curves": f"{REPORTS}/curves.json"},
            outputs={"html": report(f"{REPORTS}/ldos.html"),
                     "executed": report(f"{REPORTS}/ldos.ipynb"),
                     "figures": report(f"{REPORTS}/figures")},
            reads=shown_runs("ldos", "reference"),
            code=(TARGETS_CODE,),
        ),
    ),
)
