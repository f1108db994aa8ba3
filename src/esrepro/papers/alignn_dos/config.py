"""ALIGNN-DOS's stage configs: frozen, typed views of params.yaml group ``alignn_dos`` (plus the
shared ``model.pooling``, ``fetch.mirror``, ``dft`` and the DOSnp table's commit), parsed once
when a stage starts. No field has a default: the values live in params.yaml only.
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
    mirror_param,
    pooling_param,
    table_commit_param,
)
from esrepro.typed_config import param

#: Training spectra: the shared DFT engine on the DOSnp structures, or JARVIS's edos_pdos.
Source = Literal["gpaw", "jarvis"]
#: Energy zero of the DOS grid (:data:`esrepro.spectra.REFERENCES`; a test keeps them equal).
Reference = Literal["midgap", "vbm", "fermi"]
#: :data:`esrepro.papers.alignn_dos.model.ORDERS` and ``LINKS`` (a test keeps them equal).
Order = Literal["pair-triplet", "triplet-pair"]
Link = Literal["identity", "log", "logit"]
#: Which ALIGNN widths train: ``ours`` (narrow, CPU-feasible) or ``paper`` (the reference
#: ALIGNNConfig's, for GPU runs).
Preset = Literal["ours", "paper"]


@dataclass(frozen=True)
class JarvisParams:
    """The figshare ``edos_pdos`` file and its sha256 pin (jarvis-tools publishes none)."""

    url: str
    sha256: str | None


@dataclass(frozen=True)
class FetchConfig:
    """``alignn_dos_fetch``: the training structures (selected as DOSnp selects) or JARVIS's."""

    source: Source
    selection: Selection = param(inline=True)
    jarvis: JarvisParams
    table_commit: str = table_commit_param(at="dosnp.table_commit")
    mirror: Path | None = mirror_param()


@dataclass(frozen=True)
class DFTConfig:
    """``alignn_dos_dft``: the shared DFT settings; no DFT with ``source: jarvis``."""

    source: Source
    dft: DFTParams = param(at="dft")

    def as_params(self) -> dict[str, Any]:
        """The ``dft`` mapping of :func:`esrepro.dft.stage.run_dft_stage`."""
        return self.dft.as_params()


@dataclass(frozen=True)
class DOSGrid:
    """Target DOS: ``n_bins`` of ``spacing_ev`` from ``emin_ev`` relative to ``reference``,
    Gaussian ``sigma_ev``."""

    emin_ev: float
    spacing_ev: float = param(above=0.0)
    n_bins: int = param(minimum=2)
    sigma_ev: float = param(above=0.0)
    reference: Reference


@dataclass(frozen=True)
class GraphParams:
    """``k`` nearest periodic neighbours, searched from ``cutoff`` (A) outwards."""

    k: int = param(minimum=1)
    cutoff: float = param(above=0.0)


@dataclass(frozen=True)
class SplitParams:
    val_fraction: float = param(minimum=0.0)
    test_fraction: float = param(minimum=0.0)
    seed: int


@dataclass(frozen=True)
class FeaturizeConfig:
    """``alignn_dos_featurize``: DOS targets, graphs and the train/val/test split."""

    source: Source
    dos: DOSGrid
    graph: GraphParams
    split: SplitParams


@dataclass(frozen=True)
class AutoencoderParams:
    """One DOS autoencoder per latent size (encoder ``widths``, mirrored decoder) and its fit."""

    latents: tuple[int, ...] = param(minimum=1)
    widths: tuple[int, ...] = param(minimum=1)
    seed: int
    max_epochs: int = param(minimum=1)
    batch_size: int = param(minimum=1)
    lr: float = param(above=0.0)
    weight_decay: float = param(minimum=0.0)
    patience: int | None = param(minimum=0)  # 0 or null: no early stopping
    accelerator: str
    devices: int | str = param(check=expect_devices)


@dataclass(frozen=True)
class AutoencoderConfig:
    """``alignn_dos_autoencoder``."""

    autoencoder: AutoencoderParams


@dataclass(frozen=True)
class Widths:
    """ALIGNN's embedding and hidden widths."""

    embedding_features: int = param(minimum=1)
    hidden_features: int = param(minimum=1)


@dataclass(frozen=True)
class PresetWidths:
    """The widths of each :data:`Preset`: ``ours`` and the reference ``paper`` widths."""

    ours: Widths
    paper: Widths


@dataclass(frozen=True)
class ModelParams:
    """The ALIGNN architecture (``esrepro.papers.alignn_dos.model.ALIGNN``'s arguments;
    ``output_features`` and ``pooling`` are added per model). The embedding and hidden widths
    are those of ``preset`` (``widths.ours`` or ``widths.paper``)."""

    alignn_layers: int = param(minimum=0)
    gcn_layers: int = param(minimum=0)
    edge_input_features: int = param(minimum=1)
    triplet_input_features: int = param(minimum=1)
    preset: Preset
    widths: PresetWidths
    fc_layers: int = param(minimum=1)
    order: Order
    link: Link

    def alignn_kwargs(self, preset: Preset | None = None) -> dict[str, Any]:
        """ALIGNN's constructor arguments (all but ``output_features`` and ``pooling``) with the
        widths of ``preset`` (default: the configured one)."""
        widths: Widths = getattr(self.widths, preset or self.preset)
        return {
            "alignn_layers": self.alignn_layers,
            "gcn_layers": self.gcn_layers,
            "edge_input_features": self.edge_input_features,
            "triplet_input_features": self.triplet_input_features,
            "embedding_features": widths.embedding_features,
            "hidden_features": widths.hidden_features,
            "fc_layers": self.fc_layers,
            "order": self.order,
            "link": self.link,
        }


@dataclass(frozen=True)
class TrainParams:
    seed: int
    max_epochs: int = param(minimum=1)
    batch_size: int = param(minimum=1)
    lr: float = param(above=0.0)
    weight_decay: float = param(minimum=0.0)
    patience: int | None = param(minimum=0)  # 0 or null: no early stopping
    accelerator: str
    devices: int | str = param(check=expect_devices)


@dataclass(frozen=True)
class TrainConfig:
    """``alignn_dos_train``: D-ALIGNN and one AE-ALIGNN per latent size."""

    pooling: Pooling = pooling_param("alignn_dos")
    model: ModelParams
    train: TrainParams
    latents: tuple[int, ...] = param(at="alignn_dos.autoencoder.latents", minimum=1)


@dataclass(frozen=True)
class EvaluateConfig:
    """``alignn_dos_evaluate``: which models exist, the Fig. 6 gap read-out threshold, and the
    architecture (to count the parameters of both width presets)."""

    source: Source
    model: ModelParams = param(at="alignn_dos.model")
    pooling: Pooling = pooling_param("alignn_dos")
    latents: tuple[int, ...] = param(at="alignn_dos.autoencoder.latents", minimum=1)
    gap_threshold: float = param(at="alignn_dos.dos.gap_threshold", minimum=0.0)
