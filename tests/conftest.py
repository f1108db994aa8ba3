"""Shared fixtures: the repository root and the local mirror of upstream files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the directory holding pyproject.toml)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def mirror_dir() -> Path:
    """The mirror of pinned upstream files: ``$ESREPRO_MIRROR`` or ``<repo>/../shared/mirror``.

    Fails (does not skip) when absent: CI always provides it, and a silent skip would hide
    that the data-dependent tests never ran.
    """
    mirror = Path(os.environ.get("ESREPRO_MIRROR") or REPO_ROOT.parent / "shared" / "mirror")
    if not (mirror / "MANIFEST.tsv").is_file():
        pytest.fail(
            f"mirror not found at {mirror} (no MANIFEST.tsv); "
            "set ESREPRO_MIRROR to the mirror directory"
        )
    return mirror
