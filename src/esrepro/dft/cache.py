"""Content-addressed store of per-material DFT products.

Layout (the "engine cache format", also used by read-only seed directories such as
``../shared/dft-cache`` and inside the archives of the shipped seed ``seeds/``)::

    <root>/<key[:2]>/<key>.npz          product (see esrepro.dft.product)
    <root>/<key[:2]>/<key>.failed.json  recorded failure with its reason

`key` is `esrepro.dft.settings.cache_key(atoms, settings)`: the canonical structure, every
DFT setting and the GPAW / PAW-setup versions. Writes are atomic, so an interrupted run leaves
only complete entries and a re-run computes just what is missing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from esrepro.dft.product import DFTProduct
from esrepro.dft.seeds import is_shipped_seed, unpacked_seed_dirs

log = logging.getLogger(__name__)


class DFTCache:
    """A writable cache directory in front of zero or more read-only seeds.

    A seed is a plain cache directory, or a shipped seed (a directory holding the manifest of
    packed archives, `esrepro.dft.seeds`): its archives are verified against the manifest and
    unpacked once outside the repository, and a damaged or missing one raises `SeedError`
    naming it. Seeds are consulted in the order given, after the writable cache.

    Damaged entries (a truncated product, an unreadable failure record) are never deleted:
    lookups with ``repair=True`` move them aside in the writable cache
    (``<name>.damaged-<timestamp>``, so the material is computed again) and skip them in seeds,
    with a warning naming the file either way.
    """

    def __init__(self, root: str | Path, seeds: Iterable[str | Path] = ()) -> None:
        self.root = Path(root)
        self.seeds: list[Path] = []
        for seed in map(Path, seeds):
            if is_shipped_seed(seed):
                self.seeds.extend(unpacked_seed_dirs(seed))
            elif seed.is_dir():
                self.seeds.append(seed)
            else:
                # Not an error: a shared seed such as ../shared/dft-cache may appear later.
                log.warning(
                    "DFT seed cache %s %s; ignored", seed,
                    "is not a directory" if seed.exists() else "does not exist (yet)",
                )

    @staticmethod
    def _relative(key: str, suffix: str) -> Path:
        return Path(key[:2]) / f"{key}{suffix}"

    def product_path(self, key: str) -> Path:
        """Where this cache writes the product for `key`."""
        return self.root / self._relative(key, ".npz")

    def failure_path(self, key: str) -> Path:
        return self.root / self._relative(key, ".failed.json")

    def _candidates(self, key: str, suffix: str) -> list[tuple[Path, str]]:
        """(path, origin) where an entry for `key` may lie: own cache first, then the seeds."""
        relative = self._relative(key, suffix)
        return [(self.root / relative, "cache")] + [
            (seed / relative, f"seed:{seed}") for seed in self.seeds
        ]

    def find_product(
        self, key: str, *, repair: bool = False, load: Callable[[Path], Any] = DFTProduct.load
    ) -> tuple[Path, str] | None:
        """(path, origin) of a stored product, origin "cache" or "seed:<dir>"; None if absent.

        With `repair`, each candidate is loaded first (milliseconds for a product) and a
        damaged one is set aside or skipped (see the class docstring), so that a truncated file
        is recomputed instead of being reported as cached and failing a later stage. Without
        it (status queries) nothing is read but the directory. `load` reads the product kind
        the key belongs to (`esrepro.dft.kinds`); the ground-state product by default.
        """
        for path, origin in self._candidates(key, ".npz"):
            if not path.is_file():
                continue
            if repair:
                try:
                    load(path)
                except ValueError as err:
                    self._reject(path, origin, str(err), set_aside=True)
                    continue
            return path, origin
        return None

    def find_failure(self, key: str, *, repair: bool = False) -> dict[str, Any] | None:
        """The recorded failure for `key` (own cache first, then seeds), or None.

        A record that is not a JSON object with a string "reason" (empty, truncated, `{}`) is
        skipped with a warning, and with `repair` moved aside in the writable cache.
        """
        for path, origin in self._candidates(key, ".failed.json"):
            if not path.is_file():
                continue
            info, problem = read_failure(path)
            if info is not None:
                return info
            self._reject(path, origin, problem, set_aside=repair)
        return None

    def _reject(self, path: Path, origin: str, problem: str, *, set_aside: bool) -> None:
        """Warn about a damaged entry; move it aside when it is ours and `set_aside`."""
        if origin != "cache":
            log.warning("damaged entry %s in read-only DFT seed cache ignored: %s", path, problem)
        elif not set_aside:
            log.warning("damaged DFT cache entry %s ignored: %s", path, problem)
        else:
            aside = _set_aside(path)
            where = f"moved to {aside.name}" if aside else "could not be moved aside"
            log.warning(
                "damaged DFT cache entry %s (%s) %s; the material will be computed again",
                path, problem, where,
            )

    def record_failure(self, key: str, info: dict[str, Any]) -> None:
        path = self.failure_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info, indent=1, sort_keys=True))
        tmp.replace(path)

    def clear_failure(self, key: str) -> None:
        self.failure_path(key).unlink(missing_ok=True)


def read_failure(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(record, "") for a readable failure record, else (None, what is wrong with it)."""
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"unreadable failure record: {type(err).__name__}: {err}"
    if not isinstance(info, dict) or not isinstance(info.get("reason"), str):
        return None, "failure record without a 'reason'"
    return info, ""


def _set_aside(path: Path) -> Path | None:
    """Rename `path` to ``<name>.damaged-<timestamp>`` beside it (never delete: the bytes may
    still tell what went wrong); None if the rename failed (the recomputation overwrites it)."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():  # two damaged copies within a second
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
        n += 1
    try:
        path.rename(target)
    except OSError as err:
        log.warning("could not move damaged DFT cache entry %s aside: %s", path, err)
        return None
    return target
