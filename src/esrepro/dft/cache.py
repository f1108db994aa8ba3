"""Content-addressed store of per-material DFT products.

Layout (the "engine cache format", also used by read-only seed directories such as
``../shared/dft-cache``)::

    <root>/<key[:2]>/<key>.npz          product (see esrepro.dft.product)
    <root>/<key[:2]>/<key>.failed.json  recorded failure with its reason

`key` is `esrepro.dft.settings.cache_key(atoms, settings)`: the canonical structure, every
DFT setting and the GPAW / PAW-setup versions. Writes are atomic, so an interrupted run leaves
only complete entries and a re-run computes just what is missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class DFTCache:
    """A writable cache directory in front of zero or more read-only seed directories."""

    def __init__(self, root: str | Path, seeds: Iterable[str | Path] = ()) -> None:
        self.root = Path(root)
        self.seeds = [Path(s) for s in seeds if Path(s).is_dir()]

    @staticmethod
    def _relative(key: str, suffix: str) -> Path:
        return Path(key[:2]) / f"{key}{suffix}"

    def product_path(self, key: str) -> Path:
        """Where this cache writes the product for `key`."""
        return self.root / self._relative(key, ".npz")

    def failure_path(self, key: str) -> Path:
        return self.root / self._relative(key, ".failed.json")

    def find_product(self, key: str) -> tuple[Path, str] | None:
        """(path, origin) of a stored product, origin "cache" or "seed:<dir>"; None if absent."""
        own = self.product_path(key)
        if own.is_file():
            return own, "cache"
        for seed in self.seeds:
            candidate = seed / self._relative(key, ".npz")
            if candidate.is_file():
                return candidate, f"seed:{seed}"
        return None

    def find_failure(self, key: str) -> dict[str, Any] | None:
        """The recorded failure for `key` (own cache first, then seeds), or None."""
        for base in [self.root, *self.seeds]:
            path = base / self._relative(key, ".failed.json")
            if path.is_file():
                return json.loads(path.read_text())
        return None

    def record_failure(self, key: str, info: dict[str, Any]) -> None:
        path = self.failure_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info, indent=1, sort_keys=True))
        tmp.replace(path)

    def clear_failure(self, key: str) -> None:
        self.failure_path(key).unlink(missing_ok=True)
