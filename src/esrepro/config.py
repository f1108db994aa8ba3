"""Parameters and paths: every stage reads `params.yaml` at the repository root."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from esrepro.checks import expect_int
from esrepro.fetch import MIRROR_ENV

log = logging.getLogger(__name__)


@cache
def repo_root() -> Path:
    """The repository root: `$ESREPRO_ROOT`, else the nearest parent holding `dvc.yaml`/`params.yaml`."""
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
        raise FileNotFoundError(f"params file not found: {path}")
    with open(path) as fh:
        params = yaml.safe_load(fh)
    if not isinstance(params, dict):
        raise ValueError(f"{path} must hold a mapping of parameter groups")
    return params


def mirror_dir(params: dict[str, Any]) -> Path | None:
    """The mirror to read upstream URLs from: `$ESREPRO_MIRROR`, else params `fetch.mirror`.

    A configured mirror that does not exist counts as none (then the real URLs are downloaded),
    so the same params work beside `../shared` and on a machine with internet access.
    """
    env = os.environ.get(MIRROR_ENV)
    if env is not None:
        return Path(env).expanduser() if env else None
    configured = (params.get("fetch") or {}).get("mirror")
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


def count_param(section: Mapping[str, Any], key: str, where: str) -> int:
    """A count param where 0 (or null/missing) means "no limit", e.g. `dosnp.n_materials`.

    Anything but an integer >= 0 is a ``ValueError`` naming ``params.yaml <where>.<key>``:
    a negative value would otherwise slice rows off the end (``rows[:-1]``) without a word.
    """
    value = section.get(key)
    return 0 if value is None else expect_int(value, f"params.yaml {where}.{key}", minimum=0)
