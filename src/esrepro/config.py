"""Parameters and paths: every stage reads `params.yaml` at the repository root."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from esrepro.fetch import MIRROR_ENV


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
    return path if path.is_dir() else None
