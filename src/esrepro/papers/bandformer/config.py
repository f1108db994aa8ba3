"""Bandformer's stage configs: frozen, typed views of params.yaml group ``bandformer`` (plus the
shared ``fetch.mirror``, ``dft`` and the DOSnp table's commit), parsed once when a stage starts.
No field has a default: the values live in params.yaml only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from esrepro.checks import expect_devices
from esrepro.config import Selection, mirror_param, table_commit_param
from esrepro.errors import ConfigError
from esrepro.plain_json import plain_json
from esrepro.typed_config import param

#: Node features: the paper's group, period and atomic radius, or the Z one-hot it compares.
NodeFeatures = Literal["elemental", "onehot"]
#: ``ours`` (CPU-sized widths below) or the public code's published sizes (GPU runs).
Size = Literal["ours", "code_published"]
#: Paper eq. 1 (scaled dot product + edge bias) or the public code's GATv2.
Encoder = Literal["biased", "gatv2"]
#: What the decoder attends to: the paper's sum-pooled crystal feature, or every node (code).
Memory = Literal["pooled", "nodes"]
#: Band centres + dispersions with MAE (paper) or rFFT coefficients with MSE (code).
Target = Literal["center_dispersion", "rfft"]
#: Positional-encoding frequencies: eq. 3 (paper) or 1 → 0.01 (code).
Omega = Literal["paper", "code"]


@dataclass(frozen=True)
class FetchConfig:
    """``bandformer_fetch``: the structures, selected from the DOSnp table as DOSnp selects."""

    selection: Selection = param(inline=True)
    table_commit: str = table_commit_param(at="dosnp.table_commit")
    mirror: Path | None = mirror_param()


@dataclass(frozen=True)
class DFTConfig:
    """``bandformer_dft``: the band products' settings (``bandformer.dft``, every key in their
    cache key) and the shared ``dft`` group for the cache, seeds and farm."""

    settings: Mapping[str, Any] = param(at="bandformer.dft")
    # The shared cache, seeds and farm; not `dft.settings` (the ground state's, unused here).
    cache: str = param(at="dft.cache")
    seed_caches: tuple[str, ...] = param(at="dft.seed_caches")
    farm: Mapping[str, Any] = param(at="dft.farm")

    def as_params(self) -> dict[str, Any]:
        """The ``dft`` mapping of :func:`esrepro.dft.stage.run_band_stage`."""
        return plain_json({"cache": self.cache, "seed_caches": self.seed_caches,
                           "farm": self.farm})


@dataclass(frozen=True)
class BandsParams:
    """Targets: ``n_kpoints`` resampled along the walk after a Gaussian of
    ``smoothing_width`` Å⁻¹."""

    n_kpoints: int = param(minimum=2)
    smoothing_width: float = param(minimum=0.0)


@dataclass(frozen=True)
class GraphParams:
    """``k`` nearest periodic neighbours within a hard ``cutoff`` (Å)."""

    k: int = param(minimum=1)
    cutoff: float = param(above=0.0)


@dataclass(frozen=True)
class SplitParams:
    """A fixed train/val/test split by material, seeded."""

    seed: int
    val_fraction: float = param(minimum=0.0)
    test_fraction: float = param(minimum=0.0)


@dataclass(frozen=True)
class FeaturizeConfig:
    """``bandformer_featurize``: resampled band targets, crystal graphs and the split."""

    n_below: int = param(at="bandformer.dft.bands_below", minimum=0)
    n_above: int = param(at="bandformer.dft.bands_above", minimum=1)
    bands: BandsParams
    graph: GraphParams
    node_features: NodeFeatures
    split: SplitParams


#: ``size: code_published``: the public code's ``configs/train.yaml`` (n_embd, n_head, n_layer
#: for encoder and decoder) and its decoder's ``dim_feedforward = 2 * d_model``.
CODE_PUBLISHED: dict[str, int] = {
    "d_model": 768, "n_heads": 6, "encoder_layers": 6, "decoder_layers": 6, "ffn_dim": 1536,
}


def shape_problem(d_model: int, n_heads: int) -> str | None:
    """Why ``d_model``/``n_heads`` cannot build the network, or None."""
    if d_model % 6 or d_model < 12:
        return f"d_model must be a multiple of 6 and >= 12 (eq. 3: dim = d_model/6), got {d_model}"
    if n_heads < 1 or d_model % n_heads:
        return f"d_model {d_model} is not divisible by n_heads {n_heads}"
    return None


@dataclass(frozen=True)
class ModelParams:
    """The ``bandformer.model`` block (``model.py``'s docstring describes each option);
    :func:`esrepro.papers.bandformer.model.network_config` turns it into the network's config,
    ``size: code_published`` replacing the widths and depths by :data:`CODE_PUBLISHED`."""

    size: Size
    encoder: Encoder
    memory: Memory
    target: Target
    omega: Omega
    d_model: int = param(minimum=12)
    n_heads: int = param(minimum=1)
    encoder_layers: int = param(minimum=1)
    decoder_layers: int = param(minimum=1)
    ffn_dim: int = param(minimum=1)
    dropout: float = param(minimum=0.0)
    n_gaussians: int = param(minimum=2)
    rfft_modes: int = param(minimum=1)

    def __post_init__(self) -> None:
        problem = shape_problem(self.d_model, self.n_heads)
        if problem:
            raise ConfigError(f"params.yaml bandformer.model: {problem}")
        if self.dropout >= 1:
            raise ConfigError(
                f"params.yaml bandformer.model.dropout: must be < 1, got {self.dropout}"
            )


@dataclass(frozen=True)
class TrainParams:
    """AdamW with a linear warm-up then cosine decay; early stopping on the validation loss."""

    max_epochs: int = param(minimum=1)
    patience: int | None = param(minimum=0)  # 0 or null: no early stopping
    batch_size: int = param(minimum=1)
    lr: float = param(above=0.0)
    weight_decay: float = param(minimum=0.0)
    warmup_epochs: int = param(minimum=0)
    dispersion_weight: float = param(minimum=0.0)
    seed: int
    accelerator: str
    devices: int | str = param(check=expect_devices)


@dataclass(frozen=True)
class TrainConfig:
    """``bandformer_train``."""

    model: ModelParams
    train: TrainParams
    graph_cutoff: float = param(at="bandformer.graph.cutoff", above=0.0)
