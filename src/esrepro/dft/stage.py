"""The DFT step of a paper's pipeline: products for a set of structures, copied into a stage output.

Every paper's `dft` stage calls :func:`run_dft_stage` with the structures it selected and the
shared `dft` params; the content-addressed cache makes a structure that two papers share (the
DOSnp and ALIGNN-DOS sets) cost one SCF. Products are copied into the stage's output
directory so that DVC hashes what downstream stages actually read.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ase import Atoms

from esrepro.checks import expect_str
from esrepro.config import resolve_path
from esrepro.dft.band_product import BANDS, BandSettings
from esrepro.dft.cache import DFTCache
from esrepro.dft.farm import FarmOptions, MaterialRecord, compute_products
from esrepro.dft.gw_product import GWSettings, gw_cache
from esrepro.dft.path_wavefunctions import PathSettings, path_wavefunction_cache
from esrepro.dft.seeds import NO_SEEDS_ENV, seeds_disabled
from esrepro.dft.settings import DFTSettings
from esrepro.dft.wavefunction_product import WavefunctionSettings, wavefunction_cache

log = logging.getLogger(__name__)


def cache_from_params(dft: Mapping[str, Any], source: str = "params.yaml dft") -> DFTCache:
    """The writable cache and its read-only seeds named by the `dft` params.

    A seed directory holding a manifest (the repository's `seeds/`) is a shipped seed: its
    archives are verified, and unpacked once (`esrepro.dft.seeds`); a damaged one is an
    error naming it. Other seeds are plain cache directories; those that do not exist are
    skipped with a warning (see `DFTCache`). With ``$ESREPRO_NO_SEEDS`` set, no seed is read.
    `seed_caches` must be a list: a bare string would otherwise be iterated character by
    character. It is not a stage parameter (only `dft.settings` is), so changing it never
    invalidates a stage: seeds hold what the engine would compute.
    """
    root = _expect_path(dft.get("cache"), f"{source}.cache")
    seeds = dft.get("seed_caches") or []
    if not isinstance(seeds, (list, tuple)):
        raise ValueError(f"{source}.seed_caches: expected a list of directories, got {seeds!r}")
    directories = [
        resolve_path(_expect_path(s, f"{source}.seed_caches[{i}]")) for i, s in enumerate(seeds)
    ]
    if seeds_disabled():
        if directories:
            log.info("DFT: $%s is set: ignoring the seeds %s", NO_SEEDS_ENV,
                     ", ".join(map(str, directories)))
        directories = []
    return DFTCache(resolve_path(root), directories)


def _expect_path(value: Any, label: str) -> str | os.PathLike:
    """A directory name from params (a Path passes too, for callers that build params)."""
    return value if isinstance(value, os.PathLike) else expect_str(value, label)


def run_dft_stage(
    structures: Mapping[str, Atoms],
    dft: Mapping[str, Any],
    out_dir: Path,
    *,
    settings_source: str = "params.yaml dft.settings",
) -> list[MaterialRecord]:
    """Compute (or find) the product of every structure; copy each to ``out_dir/products/<id>.npz``.

    Failed materials are returned with their reason and no product file; the caller records
    them in its summary. Stale product copies of materials no longer selected are removed.
    `settings_source` names ``dft["settings"]`` in errors about its values, for callers that
    merge their own overrides into it. Settings and farm options are checked before the cache
    is touched, so a typo stops the stage instead of failing every material.
    """
    settings = DFTSettings.from_params(dft["settings"], source=settings_source)
    return _run_stage(structures, settings, dft, out_dir)


def run_band_stage(
    structures: Mapping[str, Atoms],
    dft: Mapping[str, Any],
    settings: BandSettings,
    out_dir: Path,
) -> list[MaterialRecord]:
    """As `run_dft_stage`, for band-structure products (`esrepro.dft.band_product`): the
    shared `dft` params give the cache, seeds and farm; `settings` (e.g.
    ``BandSettings.from_params(params["bandformer"]["dft"])``) what is computed. The products
    live in `band_cache` of the shared cache."""
    return _run_stage(structures, settings, dft, out_dir)


def run_gw_stage(
    structures: Mapping[str, Atoms],
    dft: Mapping[str, Any],
    settings: GWSettings | WavefunctionSettings | PathSettings,
    out_dir: Path,
) -> list[MaterialRecord]:
    """As `run_band_stage`, for VAE-GW's products: `GWSettings` give G0W0 products
    (`esrepro.dft.gw_product`, in `gw_cache` of the shared cache and its seeds),
    `WavefunctionSettings` the local wavefunction grids of their relaxed structures
    (`esrepro.dft.wavefunction_product`, in the writable cache only: never shipped), and
    `PathSettings` those grids along Γ–K–M–Γ (`esrepro.dft.path_wavefunctions`, local too)."""
    return _run_stage(structures, settings, dft, out_dir)


def band_cache(cache: DFTCache) -> DFTCache:
    """Where band products live: ``<cache>/bands/`` and the ``bands/`` folders of the seeds
    (a shipped band archive unpacks there), apart from the ground-state products at a cache's
    top level."""
    return DFTCache(cache.root / BANDS, [s / BANDS for s in cache.seeds if (s / BANDS).is_dir()])


def _run_stage(
    structures: Mapping[str, Atoms],
    settings: DFTSettings | BandSettings | GWSettings | WavefunctionSettings | PathSettings,
    dft: Mapping[str, Any],
    out_dir: Path,
) -> list[MaterialRecord]:
    options = FarmOptions.from_params(dft["farm"])
    cache = cache_from_params(dft)
    if isinstance(settings, BandSettings):
        cache = band_cache(cache)
    elif isinstance(settings, GWSettings):
        cache = gw_cache(cache)
    elif isinstance(settings, WavefunctionSettings):
        cache = wavefunction_cache(cache)
    elif isinstance(settings, PathSettings):
        cache = path_wavefunction_cache(cache)
    records = compute_products(
        structures, settings, cache, options, journal=cache.root / "journal.jsonl"
    )
    products = Path(out_dir) / "products"
    if products.exists():
        shutil.rmtree(products)
    products.mkdir(parents=True)
    for record in records:
        if record.status != "failed":
            shutil.copyfile(record.product_path, products / f"{record.material_id}.npz")
    n_failed = sum(r.status == "failed" for r in records)
    log.info("DFT: %d materials, %d failed", len(records), n_failed)
    return records
