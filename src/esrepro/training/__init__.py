"""Shared PyTorch Lightning engine of every paper's train stage.

One job per module: :mod:`~esrepro.training.trainer` builds the seeded ``Trainer`` (device
checks, checkpoints, early stopping, DVCLive curves), :mod:`~esrepro.training.model_files`
writes and rebuilds self-describing model files, :mod:`~esrepro.training.resumable` runs fits
that resume after a kill.
"""

from esrepro.training.model_files import (
    FORMAT_VERSION,
    MODEL_FORMAT,
    SavedModel,
    load_model,
    load_network,
    read_model_file,
    read_torch_file,
    save_model,
    state_dict_digest,
)
from esrepro.training.resumable import (
    FIT_RESULT_FILE,
    FitResult,
    RandomStateCheckpoint,
    fit_module,
    run_key,
)
from esrepro.training.trainer import (
    EpochDVCLiveLogger,
    make_dvclive_logger,
    make_trainer,
    resolve_accelerator,
)

__all__ = [
    "FIT_RESULT_FILE",
    "FORMAT_VERSION",
    "MODEL_FORMAT",
    "EpochDVCLiveLogger",
    "FitResult",
    "RandomStateCheckpoint",
    "SavedModel",
    "fit_module",
    "load_model",
    "load_network",
    "make_dvclive_logger",
    "make_trainer",
    "read_model_file",
    "read_torch_file",
    "resolve_accelerator",
    "run_key",
    "save_model",
    "state_dict_digest",
]
