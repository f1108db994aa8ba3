"""The DFT step of a paper's pipeline: products for a set of structures, copied into a stage output.

Every paper's `dft` stage calls :func:`run_dft_stage` with the structures it selected and the
shared `dft` params; the content-addressed cache makes a structure that two papers share (the
DOSnp and ALIGNN-DOS sets) cost one SCF. Products are copied into the stage's output
directory so that DVC hashes what downstream stages actually read.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ase import Atoms

from esrepro.config import resolve_path
from esrepro.dft.cache import DFTCache
from esrepro.dft.farm import FarmOptions, MaterialRecord, compute_products
from esrepro.dft.settings import DFTSettings

log = logging.getLogger(__name__)


def cache_from_params(dft: Mapping[str, Any]) -> DFTCache:
    """The writable cache and its read-only seeds named by the `dft` params."""
    return DFTCache(resolve_path(dft["cache"]), [resolve_path(s) for s in dft.get("seed_caches", [])])


def run_dft_stage(
    structures: Mapping[str, Atoms], dft: Mapping[str, Any], out_dir: Path
) -> list[MaterialRecord]:
    """Compute (or find) the product of every structure; copy each to ``out_dir/products/<id>.npz``.

    Failed materials are returned with their reason and no product file; the caller records
    them in its summary. Stale product copies of materials no longer selected are removed.
    """
    cache = cache_from_params(dft)
    records = compute_products(
        structures, DFTSettings.from_params(dft["settings"]), cache,
        FarmOptions.from_params(dft["farm"]), journal=cache.root / "journal.jsonl",
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
