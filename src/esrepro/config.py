"""Parameters and paths: every stage reads `params.yaml` at the repository root.

Also the readers of the groups several papers share (``fetch.mirror``, ``model.pooling``,
``dft``) for the typed stage configs of :mod:`esrepro.typed_config`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from esrepro.checks import expect_str
from esrepro.errors import ConfigError
from esrepro.fetch import MIRROR_ENV
from esrepro.plain_json import plain_json
from esrepro.typed_config import ParamsSource, convert, param

log = logging.getLogger(__name__)


@cache
def repo_root() -> Path:
    """The repository root: `$ESREPRO_ROOT`, else the nearest parent holding
    `dvc.yaml`/`params.yaml`."""
    if os.environ.get("ESREPRO_ROOT"):
        return Path(os.environ["ESREPRO_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "params.yaml").is_file():
            return candidate
    return here


def resolve_path(path: str | Path) -> Path:
    """A path from params.yaml: relative paths are relative to the repository root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else repo_root() / path


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Read params.yaml (default: at the repository root); a missing file is a clear error."""
    path = Path(path) if path else repo_root() / "params.yaml"
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    try:
        with open(path) as fh:
            params = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must hold a mapping of parameter groups")
    return params


def mirror_dir(params: dict[str, Any]) -> Path | None:
    """The mirror to read upstream URLs from: `$ESREPRO_MIRROR`, else params `fetch.mirror`.

    A configured mirror that does not exist counts as none (then the real URLs are downloaded),
    so the same params work beside `../shared` and on a machine with internet access.
    """
    return _mirror((params.get("fetch") or {}).get("mirror"))


def _mirror(configured: Any) -> Path | None:
    env = os.environ.get(MIRROR_ENV)
    if env is not None:
        return Path(env).expanduser() if env else None
    if not configured:
        return None
    path = resolve_path(configured)
    if path.is_dir():
        return path
    _warn_missing_mirror(path)
    return None


@cache
def _warn_missing_mirror(path: Path) -> None:
    # Once per path: a stage fetches many files, one warning says it all.
    log.warning("params fetch.mirror %s does not exist: downloading the real URLs instead", path)


#: Where the DOSnp table's structures come from: the pinned ecalj_auto POSCARs (spglib-refined
#: Materials Project structures, what ecalj computed) or the Materials Project (mp-api, a key).
StructureSource = Literal["ecalj", "mp"]


@dataclass(frozen=True)
class Selection:
    """A seeded subset of the DOSnp table (:func:`esrepro.selection.select_materials`):
    ``n_materials`` (0 = all) with ``nsites <= max_sites`` (0 = no limit), in the seeded order
    of ``subset_seed``. Read from a paper's own group (``dosnp.n_materials``, ...)."""

    n_materials: int = param(minimum=0)
    max_sites: int = param(minimum=0)
    subset_seed: int = param()


def table_commit_param(at: str | None = None) -> Any:
    """A config field holding the DOSnp table's git commit (``dosnp.table_commit``)."""

    def check(value: Any, label: str) -> str:
        # An unquoted all-digit commit prefix in params.yaml arrives as an int.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return expect_str(value, label)

    return param(at=at, check=check)


#: Pooling modes of ``model.pooling`` (the modes of :data:`esrepro.pooling.POOLING_MODES`; a
#: test keeps the two equal). Spelled out here so reading params does not import torch.
Pooling = Literal["mean+max", "mean", "max", "sum"]


def pooling_param(paper: str) -> Any:
    """A config field holding ``paper``'s pooling mode from the shared ``model.pooling``.

    ``model.pooling`` is one mode for every paper (what ``dvc exp run -S model.pooling=max``
    writes) or a mapping ``{paper: mode}`` holding each paper's published default.
    """

    def read(source: ParamsSource, path: str) -> str:
        setting = source.lookup(path)
        if isinstance(setting, Mapping):
            if paper not in setting:
                raise ConfigError(
                    f"{source.label(path)}: no entry for {paper!r} (has {sorted(setting)})"
                )
            return convert(Pooling, setting[paper], source.label(f"{path}.{paper}"))
        return convert(Pooling, setting, source.label(path))

    return param(at="model.pooling", read=read)


def mirror_param() -> Any:
    """A config field holding the mirror directory of ``fetch.mirror`` (or None), resolved as
    :func:`mirror_dir` resolves it (``$ESREPRO_MIRROR`` first)."""

    def read(source: ParamsSource, path: str) -> Path | None:
        configured = source.lookup(path)
        if configured is not None and not isinstance(configured, str):
            raise ConfigError(
                f"{source.label(path)}: expected a directory or null, got {configured!r}"
            )
        return _mirror(configured)

    return param(at="fetch.mirror", read=read)


@dataclass(frozen=True)
class DFTParams:
    """The shared ``dft`` group as a DFT stage reads it.

    ``settings`` and ``farm`` stay mappings here: :func:`esrepro.dft.stage.run_dft_stage`
    parses them (``DFTSettings.from_params``, ``FarmOptions.from_params``) before any work, and
    the stage runner checks them for every stage (:func:`esrepro.stage_cli.check_shared_groups`).
    """

    cache: str
    seed_caches: tuple[str, ...]
    settings: Mapping[str, Any]
    farm: Mapping[str, Any]

    def as_params(self) -> dict[str, Any]:
        """The plain ``dft`` mapping :func:`esrepro.dft.stage.run_dft_stage` takes."""
        return plain_json(self)
