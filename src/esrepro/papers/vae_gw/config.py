"""VAE-GW's stage configs: frozen, typed views of params.yaml group ``vae_gw`` (plus the shared
``dft`` group's cache, seeds and farm), parsed once when a stage starts. No field has a default:
the values live in params.yaml only. The training blocks (:class:`VAETrain`, :class:`GWTrain`)
have the fields of :mod:`esrepro.papers.vae_gw.train`'s ``VAETrainParams`` and
``GWTrainParams`` (a test keeps them equal): declared here so that reading params imports no
torch, and the DFT stages' code dependencies do not include the training code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from esrepro.checks import expect_devices
from esrepro.errors import ConfigError
from esrepro.plain_json import plain_json
from esrepro.typed_config import param

#: The released GW pipeline's plain VAE (CPU default) or the paper's Table-1 VAE.
VAEKind = Literal["plain", "table1"]
#: The GW network's inputs: the released code's 203 numbers, or the paper's eq. 3.
GWInputs = Literal["code", "eq3"]


@dataclass(frozen=True)
class StructuresConfig:
    """``vae_gw_structures``: a prefix of the seeded order of the 2D set
    (:func:`esrepro.papers.vae_gw.structures.select_materials`; the held-out TMDs first)."""

    n_materials: int = param(minimum=0)  # 0: all 156
    subset_seed: int


@dataclass(frozen=True)
class DFTConfig:
    """``vae_gw_dft``: the G0W0 products' settings (``vae_gw.dft``, every key in their cache
    key; :class:`esrepro.dft.gw_product.GWSettings`) and the shared cache, seeds and farm."""

    settings: Mapping[str, Any] = param(at="vae_gw.dft")
    cache: str = param(at="dft.cache")
    seed_caches: tuple[str, ...] = param(at="dft.seed_caches")
    farm: Mapping[str, Any] = param(at="dft.farm")

    def as_params(self) -> dict[str, Any]:
        """The ``dft`` mapping of :func:`esrepro.dft.stage.run_gw_stage`."""
        return plain_json({"cache": self.cache, "seed_caches": self.seed_caches,
                           "farm": self.farm})


@dataclass(frozen=True)
class WavefunctionsConfig:
    """``vae_gw_wavefunctions``: the export settings (``vae_gw.wavefunctions``) on top of the
    GW products' ground state (``vae_gw.dft``), and the shared cache and farm. The products are
    local (never in a seed), so no seed cache is read."""

    settings: Mapping[str, Any] = param(at="vae_gw.wavefunctions")
    gw_settings: Mapping[str, Any] = param(at="vae_gw.dft")
    cache: str = param(at="dft.cache")
    farm: Mapping[str, Any] = param(at="dft.farm")

    def as_params(self) -> dict[str, Any]:
        return plain_json({"cache": self.cache, "seed_caches": (), "farm": self.farm})


@dataclass(frozen=True)
class VAETrain:
    """Adam on eq. 1 (``beta``: the KL weight; the code's 1.0, lr 1e-3)."""

    max_epochs: int = param(minimum=1)
    patience: int | None = param(minimum=0)  # 0 or null: no early stopping
    batch_size: int = param(minimum=1)
    lr: float = param(above=0.0)
    beta: float = param(minimum=0.0)
    start_at_mean: bool
    seed: int
    accelerator: str
    devices: int | str = param(check=expect_devices)


@dataclass(frozen=True)
class GWTrain:
    """SGD on the MSE of ΔGW (the code: lr 1e-3, momentum 0, batch 600, 58,000 epochs)."""

    max_epochs: int = param(minimum=1)
    patience: int | None = param(minimum=0)
    batch_size: int = param(minimum=1)
    lr: float = param(above=0.0)
    momentum: float = param(minimum=0.0)
    start_at_mean: bool
    standardize_inputs: bool
    seed: int
    accelerator: str
    devices: int | str = param(check=expect_devices)


def _below_one(value: float, label: str) -> None:
    if value >= 1:
        raise ConfigError(f"params.yaml {label}: must be < 1, got {value}")


@dataclass(frozen=True)
class SplitParams:
    """The GW splits, seeded and independent of row order: ``state_test_fraction`` of the GW
    states at random (the paper's split), ``material_test_fraction`` of the trainable materials
    (the split by material); ``val_fraction`` of each training set's states stop the fits
    early. The held-out TMDs are in neither split's training set."""

    seed: int
    state_test_fraction: float = param(above=0.0)
    material_test_fraction: float = param(above=0.0)
    val_fraction: float = param(minimum=0.0)

    def __post_init__(self) -> None:
        for name in ("state_test_fraction", "material_test_fraction", "val_fraction"):
            _below_one(getattr(self, name), f"vae_gw.split.{name}")


@dataclass(frozen=True)
class VAESplit:
    """The VAE's states: ``holdout_materials`` trainable materials never seen by the VAE (the
    paper keeps 30 of 302 out), then ``test_fraction`` of the other states at random (the
    paper's 10%) and ``val_fraction`` for early stopping."""

    seed: int
    holdout_materials: int = param(minimum=0)
    test_fraction: float = param(above=0.0)
    val_fraction: float = param(minimum=0.0)

    def __post_init__(self) -> None:
        _below_one(self.test_fraction, "vae_gw.vae.split.test_fraction")
        _below_one(self.val_fraction, "vae_gw.vae.split.val_fraction")


@dataclass(frozen=True)
class VAEParams:
    """The VAEs: ``kind`` of the state VAE (``plain`` or ``table1``) and its latent size; the
    charge-density and super-state VAEs are ``plain`` with ``aux_hidden`` and ``aux_latent``
    (the code's (24, 8) and 10); all share ``train``."""

    kind: VAEKind
    latent: int = param(minimum=1)
    aux_latent: int = param(minimum=1)
    aux_hidden: tuple[int, ...] = param()
    split: VAESplit
    train: VAETrain

    def __post_init__(self) -> None:
        if len(self.aux_hidden) != 2 or min(self.aux_hidden) < 1:
            raise ConfigError("params.yaml vae_gw.vae.aux_hidden: expected two channel counts "
                              f">= 1, got {list(self.aux_hidden)}")


@dataclass(frozen=True)
class VAEConfig:
    """``vae_gw_vae``."""

    vae: VAEParams


@dataclass(frozen=True)
class GWParams:
    """The GW network: its ``inputs`` (``code`` or ``eq3``), hidden widths and training;
    ``ablations``: input groups (``state``, ``super``, ``density``, ``super_2``, ...) each left
    out of one more network on the state split (Fig. 2f)."""

    inputs: GWInputs
    hidden: tuple[int, ...] = param()
    ablations: tuple[str, ...] = param()
    train: GWTrain

    def __post_init__(self) -> None:
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError("params.yaml vae_gw.gw.hidden: expected widths >= 1, got "
                              f"{list(self.hidden)}")


@dataclass(frozen=True)
class TrainConfig:
    """``vae_gw_train``: the GW network and the baselines under both splits."""

    gw: GWParams
    split: SplitParams


@dataclass(frozen=True)
class PathParams:
    """Fig. 3a-b: the band ``band_offset`` (from the gap: -1 the highest valence band) of
    ``materials`` (hexagonal, held out of VAE training) along Γ–K–M–Γ: ``n_kpoints`` states on
    the latent trajectory, and ``n_generated`` states decoded along K → M, each compared with
    the DFT state at its k; ``eigenvalue_bands`` (valence, conduction) bands around the gap
    keep their PBE eigenvalues at every path k-point (Fig. 3b's band structure)."""

    materials: tuple[str, ...] = param()
    n_kpoints: int = param(minimum=4)  # Γ, K, M, Γ at least
    n_generated: int = param(minimum=2)
    band_offset: int
    eigenvalue_bands: tuple[int, ...] = param()

    def __post_init__(self) -> None:
        if not self.materials:
            raise ConfigError("params.yaml vae_gw.path.materials: name at least one material")
        bands = self.eigenvalue_bands
        if len(bands) != 2 or bands[0] < 1 or bands[1] < 0:
            raise ConfigError("params.yaml vae_gw.path.eigenvalue_bands: expected [valence, "
                              f"conduction] with at least one valence band, got {list(bands)}")


@dataclass(frozen=True)
class PathConfig(WavefunctionsConfig):
    """``vae_gw_path``: the path export (:class:`esrepro.dft.path_wavefunctions.PathSettings`)
    on the grid export's ground state and grid (the fields of :class:`WavefunctionsConfig`),
    with the shared cache and farm (local product: no seed is read)."""

    path: PathParams


@dataclass(frozen=True)
class KDistanceParams:
    """Fig. 3c: the GW network trained on the states of one k-point only, at Γ and at
    ``finite_k`` (fractional; ``finite_label`` names it), its MAE against the distance from
    that k-point, in bins of ``bin_width`` Å⁻¹."""

    finite_k: tuple[float, ...] = param()
    finite_label: str
    bin_width: float = param(above=0.0)

    def __post_init__(self) -> None:
        if len(self.finite_k) != 2:
            raise ConfigError("params.yaml vae_gw.k_distance.finite_k: expected two fractional "
                              f"coordinates, got {list(self.finite_k)}")
        if not self.finite_label or self.finite_label.lower() == "gamma":
            raise ConfigError("params.yaml vae_gw.k_distance.finite_label: a name other than "
                              f"gamma, got {self.finite_label!r}")


@dataclass(frozen=True)
class KDistanceConfig:
    """``vae_gw_k_distance``: the GW network (``vae_gw.gw``) and the validation fraction and
    seed of ``vae_gw.split``."""

    k_distance: KDistanceParams
    gw: GWParams
    split: SplitParams


@dataclass(frozen=True)
class TrajectoryConfig:
    """``vae_gw_trajectory``: encodes and generates the path states (``vae_gw.path``)."""

    path: PathParams
