"""VAE-GW's registry entry: its stages, what each reads and writes, and the params DVC tracks."""

from __future__ import annotations

from esrepro.papers.vae_gw import config
from esrepro.registry import TARGETS_CODE, Paper, Stage, metric, report, shown_runs

RUN = "esrepro.papers.vae_gw.pipeline"
RAW = "data/vae_gw/raw"
DFT = "data/vae_gw/dft"
WAVEFUNCTIONS = "data/vae_gw/wavefunctions"
FEATURES = "data/vae_gw/features"
VAE = "data/vae_gw/vae"
GW = "data/vae_gw/gw"
PATH = "data/vae_gw/path"
K_DISTANCE = "data/vae_gw/k_distance"
TRAJECTORY = "data/vae_gw/trajectory"
FITS = "data/vae_gw/fits"
REPORTS = "reports/vae_gw"
NOTEBOOK = "src/esrepro/notebooks/vae_gw.ipynb"

PAPER = Paper(
    name="vae_gw",
    notebook=NOTEBOOK,
    models=(VAE, GW, K_DISTANCE),
    stages=(
        Stage(
            "structures", f"{RUN}:stage_structures", config.StructuresConfig,
            outputs={"raw": RAW},
            params=("vae_gw.n_materials", "vae_gw.subset_seed"),
        ),
        Stage(
            "dft", f"{RUN}:stage_dft", config.DFTConfig,
            inputs={"raw": RAW},
            outputs={"dft": DFT},
            params=("vae_gw.dft",),
            code=("src/esrepro/dft",),  # workers run it in subprocesses
        ),
        Stage(
            "wavefunctions", f"{RUN}:stage_wavefunctions", config.WavefunctionsConfig,
            inputs={"dft": DFT},
            outputs={"wavefunctions": WAVEFUNCTIONS},
            params=("vae_gw.dft", "vae_gw.wavefunctions"),
            code=("src/esrepro/dft",),
        ),
        Stage(
            "path", f"{RUN}:stage_path", config.PathConfig,
            inputs={"dft": DFT},
            outputs={"path": PATH},
            params=("vae_gw.dft", "vae_gw.wavefunctions", "vae_gw.path"),
            code=("src/esrepro/dft",),
        ),
        Stage(
            "featurize", f"{RUN}:stage_featurize", None,
            inputs={"raw": RAW, "dft": DFT, "wavefunctions": WAVEFUNCTIONS},
            outputs={"features": FEATURES},
        ),
        Stage(
            "vae", f"{RUN}:stage_vae", config.VAEConfig,
            inputs={"features": FEATURES},
            outputs={"vae": VAE},
            scratch={"fits": FITS},
            params=("vae_gw.vae",),
        ),
        Stage(
            "train", f"{RUN}:stage_train", config.TrainConfig,
            inputs={"features": FEATURES, "vae": VAE},
            outputs={"gw": GW},
            scratch={"fits": FITS},
            params=("vae_gw.gw", "vae_gw.split"),
        ),
        Stage(
            "k_distance", f"{RUN}:stage_k_distance", config.KDistanceConfig,
            inputs={"dft": DFT, "features": FEATURES, "vae": VAE},
            outputs={"k_distance": K_DISTANCE},
            scratch={"fits": FITS},
            params=("vae_gw.k_distance", "vae_gw.gw", "vae_gw.split"),
        ),
        Stage(
            "trajectory", f"{RUN}:stage_trajectory", config.TrajectoryConfig,
            inputs={"path": PATH, "vae": VAE},
            outputs={"trajectory": TRAJECTORY},
            params=("vae_gw.path",),
        ),
        Stage(
            "evaluate", f"{RUN}:stage_evaluate", None,
            inputs={"dft": DFT, "features": FEATURES, "vae": VAE, "gw": GW,
                    "k_distance": K_DISTANCE, "trajectory": TRAJECTORY},
            outputs={"metrics": metric(f"{REPORTS}/metrics.json"),
                     "predictions": report(f"{REPORTS}/predictions.npz")},
        ),
        Stage(
            "report", f"{RUN}:stage_report", None,
            inputs={"notebook": NOTEBOOK,
                    "predictions": f"{REPORTS}/predictions.npz",
                    "metrics": f"{REPORTS}/metrics.json"},
            outputs={"html": report(f"{REPORTS}/vae_gw.html"),
                     "executed": report(f"{REPORTS}/vae_gw.ipynb"),
                     "figures": report(f"{REPORTS}/figures")},
            reads=shown_runs("vae_gw", "partial"),
            code=(TARGETS_CODE,),
        ),
    ),
)
