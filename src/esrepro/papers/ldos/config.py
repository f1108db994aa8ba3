"""The LDOS paper's stage configs: frozen, typed views of params.yaml group ``ldos`` (plus the
shared ``fetch.mirror`` and ``dft``), parsed once when a stage starts. No field has a default:
the values live in params.yaml only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from esrepro.checks import expect_int, expect_mapping
from esrepro.config import DFTParams, mirror_param
from esrepro.errors import ConfigError
from esrepro.typed_config import freeze, param

#: Which generated sets (``ldos.generated``) feed which learning set; ``si`` also takes the
#: mirrored real silicon (``ldos.mirrored_si``). Each learning set is learned on its own.
SET_MEMBERS: dict[str, tuple[str, ...]] = {
    "si": ("si_diamond", "si_beta_tin", "si_liquid"),
    "c": ("carbon",),
    "sic": ("sic",),
    "snsse": ("snsse",),
}
GENERATED = tuple(name for members in SET_MEMBERS.values() for name in members)
#: Sets learned together by one model, as the paper's Set C (Si, C and Si-C structures): the
#: union of the member sets' structures and of their train/test splits, SOAP over all species.
COMBINED_SETS: dict[str, tuple[str, ...]] = {"set_c": ("si", "c", "sic")}


def _counts(value: Any, label: str) -> Mapping[str, int]:
    """``{mirrored set: number of frames}`` (0 = all); the set names are checked against the
    fetched files by the structures stage."""
    counts = expect_mapping(value, label, allow_none=True) or {}
    return MappingProxyType(
        {k: expect_int(n, f"{label}.{k}", minimum=0) for k, n in counts.items()}
    )


def _generated(value: Any, label: str) -> Mapping[str, Any]:
    """``{generated set: n or {n: ..., generator keywords}}``; sizes and keywords are checked
    against the generators (``esrepro.papers.ldos.generators.generated_sets``)."""
    specs = expect_mapping(value, label, allow_none=True) or {}
    for name in specs:
        if name not in GENERATED:
            raise ConfigError(f"{label}.{name}: unknown generated set; known: {list(GENERATED)}")
    return freeze(specs)


@dataclass(frozen=True)
class StructuresConfig:
    """``ldos_structures``: the mirrored silicon frames and the seeded generated sets."""

    seed: int = param(minimum=0)
    max_atoms: int = param(minimum=0)  # mirrored frames with more atoms are left out; 0 = all
    mirrored_si: Mapping[str, int] = param(check=_counts)
    generated: Mapping[str, Any] = param(check=_generated)
    mirror: Path | None = mirror_param()


@dataclass(frozen=True)
class DFTConfig:
    """``ldos_dft``: the shared DFT settings with this paper's overrides (``ldos.dft``: LCAO)."""

    dft: DFTParams = param(at="dft")
    overrides: Mapping[str, Any] = param(at="ldos.dft")

    #: What errors about the merged settings name.
    SOURCE = "params.yaml dft.settings + ldos.dft"

    def as_params(self) -> dict[str, Any]:
        """The ``dft`` mapping of :func:`esrepro.dft.stage.run_dft_stage`, settings overridden."""
        dft = self.dft.as_params()
        dft["settings"] = {**dft["settings"], **dict(self.overrides)}
        return dft


@dataclass(frozen=True)
class GridParams:
    """The LDOS energy grid: ``absolute`` (GPAW's zero, E_F learned) or relative to ``fermi``."""

    reference: Literal["absolute", "fermi"]
    emin_ev: float
    emax_ev: float
    n_points: int = param(minimum=2)
    sigma_ev: float = param(above=0.0)
    compare_sigma_ev: tuple[float, ...] = param(above=0.0)

    def compare_sigmas(self) -> list[float]:
        """The extra Gaussian widths (eV) also learned (the paper compares k_BT = 0.1 with its
        0.5 eV), without the main ``sigma_ev``."""
        return sorted(set(self.compare_sigma_ev) - {self.sigma_ev})


@dataclass(frozen=True)
class SoapParams:
    r_cut: float = param(above=0.0)
    n_max: int = param(minimum=1)
    l_max: int = param(minimum=0)
    sigma: float = param(above=0.0)


@dataclass(frozen=True)
class FeaturizeConfig:
    """``ldos_featurize``: LDOS targets, SOAP descriptors and the structure split."""

    grid: GridParams
    soap: SoapParams
    test_fraction: float = param(at="ldos.learn.test_fraction", minimum=0.0)
    split_seed: int = param(at="ldos.learn.split_seed")


@dataclass(frozen=True)
class LearnParams:
    """Kernel ridge with k-fold CV over ``lam`` x ``zeta``; learning-curve fractions."""

    folds: int = param(minimum=2)
    lam: tuple[float, ...] = param(above=0.0)
    zeta: tuple[int, ...] = param(minimum=1)
    n_sparse: int = param(minimum=0)  # 0: exact kernel; M > 0: Nystrom with M per species
    seed: int
    curve_fractions: tuple[float, ...] = param(above=0.0)


@dataclass(frozen=True)
class LearnConfig:
    """``ldos_learn``: both strategies, the r_cut scan and the learning curves."""

    learn: LearnParams
    soap: SoapParams
    r_cut_scan: tuple[float, ...] = param(at="ldos.soap.r_cut_scan", above=0.0)


@dataclass(frozen=True)
class PropertiesParams:
    kT_ev: float = param(above=0.0)
    T_k: float = param(above=0.0)
    sets: tuple[str, ...]  # the sets whose derived properties are compared (paper Fig. 4: Set C)


@dataclass(frozen=True)
class EvaluateConfig:
    """``ldos_evaluate``: the temperatures of the derived properties."""

    properties: PropertiesParams
