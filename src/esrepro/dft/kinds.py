"""The product kinds the engine computes, and how the farm and its workers handle each.

The farm, the cache and the worker are shared; a kind says how to key, load, serialise and
compute its product. "ground-state" is the original product (`DFTSettings` ->
`DFTProduct`), whose cache keys, task files and failure records are exactly as before; "bands"
is the band-structure product (`esrepro.dft.band_product`), "gw" VAE-GW's G0W0 product
(`esrepro.dft.gw_product`), "gw-wavefunctions" its local wavefunction grids
(`esrepro.dft.wavefunction_product`) and "gw-path-wavefunctions" the same grids along Γ–K–M–Γ
(`esrepro.dft.path_wavefunctions`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from ase import Atoms

from esrepro.dft.band_product import (
    BANDS,
    BandProduct,
    BandSettings,
    band_cache_key,
    band_versions,
)
from esrepro.dft.gw_product import GW, GWProduct, GWSettings, gw_cache_key, gw_versions
from esrepro.dft.path_wavefunctions import (
    PATH_WAVEFUNCTIONS,
    PathSettings,
    PathWavefunctionProduct,
    path_cache_key,
    path_versions,
)
from esrepro.dft.product import DFTProduct
from esrepro.dft.settings import DFTSettings, cache_key, code_versions
from esrepro.dft.wavefunction_product import (
    WAVEFUNCTIONS,
    WavefunctionProduct,
    WavefunctionSettings,
    wavefunction_cache_key,
    wavefunction_versions,
)

GROUND_STATE = "ground-state"


@dataclass(frozen=True)
class ProductKind:
    name: str
    settings_type: type
    key: Callable[[Atoms, Any], str]
    load: Callable[[Path], Any]
    settings_from_dict: Callable[[Mapping[str, Any]], Any]
    #: "module:function" computing the product in a worker: (atoms, settings, txt) -> product
    runner: str
    #: The code versions its cache keys hold (recorded with failures)
    versions: Callable[[], dict[str, str]]

    def run(self, atoms: Atoms, settings: Any, txt: str | None) -> Any:
        module, function = self.runner.split(":")
        return getattr(import_module(module), function)(atoms, settings, txt=txt)


KINDS: dict[str, ProductKind] = {
    GROUND_STATE: ProductKind(
        GROUND_STATE, DFTSettings, cache_key, DFTProduct.load, lambda d: DFTSettings(**d),
        "esrepro.dft.gpaw_engine:run_gpaw", code_versions,
    ),
    BANDS: ProductKind(
        BANDS, BandSettings, band_cache_key, BandProduct.load, BandSettings.from_dict,
        "esrepro.dft.band_engine:run_gpaw_bands", band_versions,
    ),
    GW: ProductKind(
        GW, GWSettings, gw_cache_key, GWProduct.load, GWSettings.from_dict,
        "esrepro.dft.gw_engine:run_gpaw_gw", gw_versions,
    ),
    WAVEFUNCTIONS: ProductKind(
        WAVEFUNCTIONS, WavefunctionSettings, wavefunction_cache_key, WavefunctionProduct.load,
        WavefunctionSettings.from_dict, "esrepro.dft.wavefunction_product:run_wavefunction_export",
        wavefunction_versions,
    ),
    PATH_WAVEFUNCTIONS: ProductKind(
        PATH_WAVEFUNCTIONS, PathSettings, path_cache_key, PathWavefunctionProduct.load,
        PathSettings.from_dict, "esrepro.dft.path_wavefunctions:run_path_export", path_versions,
    ),
}


def kind_of(settings: Any) -> ProductKind:
    """The kind whose settings type `settings` is."""
    for kind in KINDS.values():
        if isinstance(settings, kind.settings_type):
            return kind
    raise TypeError(f"no DFT product kind takes settings of type {type(settings).__name__}")


def kind_named(name: str | None) -> ProductKind:
    """The kind called `name` (None: the ground state, as task files before kinds existed)."""
    try:
        return KINDS[name or GROUND_STATE]
    except KeyError:
        raise ValueError(f"unknown DFT product kind {name!r}; known: {sorted(KINDS)}") from None
