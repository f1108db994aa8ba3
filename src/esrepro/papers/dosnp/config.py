"""DOSnp's stage configs: frozen, typed views of params.yaml group ``dosnp`` (plus the shared
``model.pooling``, ``fetch.mirror`` and ``dft``), parsed once when a stage starts.

The values live in params.yaml only: no field has a default, so nothing below the stage
boundary can disagree with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from esrepro.checks import expect_devices
from esrepro.config import (
    DFTParams,
    Pooling,
    Selection,
    StructureSource,
    mirror_param,
    pooling_param,
    table_commit_param,
)
from esrepro.errors import ConfigError
from esrepro.typed_config import param

#: Validation metrics that may select DOSnp's checkpoint (both logged every epoch). MSE on a
#: small validation set is ruled by its one or two largest QSGW corrections, so it stops on a
#: near-constant model while the MAE (the reported metric) is still falling.
Monitor = Literal["val_mae", "val_loss"]
Loss = Literal["mse", "l1"]
PDOSSource = Literal["gpaw", "ecalj"]


@dataclass(frozen=True)
class FetchConfig:
    """``dosnp_fetch``: the pinned table, the selection and where structures come from."""

    table_commit: str = table_commit_param()
    selection: Selection = param(inline=True)
    structure_source: StructureSource
    mirror: Path | None = mirror_param()


@dataclass(frozen=True)
class DFTConfig:
    """``dosnp_dft``: the shared DFT settings (the content-addressed cache key)."""

    dft: DFTParams = param(at="dft")

    def as_params(self) -> dict[str, Any]:
        """The ``dft`` mapping of :func:`esrepro.dft.stage.run_dft_stage`."""
        return self.dft.as_params()


@dataclass(frozen=True)
class FeatureGrid:
    """PDOS grid [E_F + emin_ry, E_F + emax_ry] (Ry) of ``n_points``, Gaussian ``sigma_ev``."""

    emin_ry: float
    emax_ry: float
    n_points: int = param(minimum=2)
    sigma_ev: float = param(above=0.0)


@dataclass(frozen=True)
class SplitParams:
    test_fraction: float = param(minimum=0.0)
    seed: int


@dataclass(frozen=True)
class FeaturizeConfig:
    """``dosnp_featurize``: PDOS source, grid and the train/test split."""

    pdos_source: PDOSSource
    ecalj_pdos_dir: str | None
    ecalj_ext: str | None
    features: FeatureGrid
    split: SplitParams

    def __post_init__(self) -> None:
        if self.pdos_source == "ecalj" and not self.ecalj_pdos_dir:
            raise ConfigError(
                "params.yaml dosnp.pdos_source is 'ecalj' but dosnp.ecalj_pdos_dir is not set: "
                "point it to a directory holding <mp-id>/dos.isp*.site*.<ext> files"
            )


@dataclass(frozen=True)
class ModelParams:
    """DOSnp's architecture (paper Table III): dropout after pooling, FC width, input scale."""

    dropout: float = param(minimum=0.0)
    hidden: int = param(minimum=1)
    input_scale: float = param(above=0.0)


@dataclass(frozen=True)
class TrainParams:
    """How DOSnp is fitted (see :func:`esrepro.papers.dosnp.train.train_dosnp`)."""

    seed: int
    max_epochs: int = param(minimum=1)
    batch_size: int = param(minimum=1)
    lr: float = param(above=0.0)
    weight_decay: float = param(minimum=0.0)
    patience: int | None = param(minimum=0)  # 0 or null: no early stopping
    monitor: Monitor
    val_fraction: float = param(minimum=0.0)
    loss: Loss
    ensemble: int = param(minimum=1)
    accelerator: str
    devices: int | str = param(check=expect_devices)


@dataclass(frozen=True)
class TrainConfig:
    """``dosnp_train``: pooling, architecture and fit."""

    pooling: Pooling = pooling_param("dosnp")
    model: ModelParams
    train: TrainParams


@dataclass(frozen=True)
class LRLIDGParams:
    """LRLIDG's pivot tolerance and its descriptor cap: the candidate caps (descriptors per
    training sample), one of which inner ``inner_folds``-fold CV on the training rows picks
    (:func:`esrepro.papers.dosnp.baselines.choose_descriptor_cap`)."""

    rank_tol: float = param(above=0.0)
    max_descriptors_per_sample: tuple[float, ...] = param(above=0.0)
    inner_folds: int = param(minimum=2)
    inner_seed: int

    def __post_init__(self) -> None:
        if not self.max_descriptors_per_sample:
            raise ConfigError(
                "params.yaml dosnp.lrlidg.max_descriptors_per_sample: give one or more candidate "
                "caps (descriptors per training sample), e.g. [0.1, 0.2, 0.3]"
            )


@dataclass(frozen=True)
class EvaluateConfig:
    """``dosnp_evaluate``: the LRLIDG baseline and the batch size of predictions."""

    lrlidg: LRLIDGParams
    batch_size: int = param(at="dosnp.train.batch_size", minimum=1)


@dataclass(frozen=True)
class CVParams:
    folds: int = param(minimum=0)  # 0: cross-validation off
    seed: int


@dataclass(frozen=True)
class CVConfig:
    """``dosnp_cv``: DOSnp fitted as the train stage fits it, the baselines, and the folds."""

    fit: TrainConfig = param(inline=True)
    lrlidg: LRLIDGParams
    cv: CVParams
