"""Where a result came from: git commit, package versions, machine, time.

Reference snapshots (:mod:`esrepro.targets.snapshot`) and model files
(:mod:`esrepro.training.model_files`) record the same facts the same way.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

#: Supplies the commit where there is no git binary or no repository (e.g. a container built
#: from a source tarball). A repository's own HEAD always wins over it.
GIT_COMMIT_ENV = "ESREPRO_GIT_COMMIT"

#: Packages whose versions shape a trained model.
TRAINING_PACKAGES = ("esrepro", "torch", "lightning", "numpy", "dvclive")


def git_commit(root: str | Path | None = None) -> str | None:
    """HEAD's commit hash in the git repository holding ``root`` (default: cwd), or None.

    Asks git itself, which resolves every ref layout (loose and packed refs, worktrees,
    symbolic refs, reftable) where reading ``.git`` by hand misses some; ``$ESREPRO_GIT_COMMIT``
    is the answer only where git cannot give one.
    """
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
            cwd=Path(root) if root is not None else None,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        out = None
    if out is not None and out.returncode == 0 and out.stdout.strip():
        return out.stdout.strip()
    return os.environ.get(GIT_COMMIT_ENV) or None


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each package (None when it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine() -> dict[str, Any]:
    """Platform, CPU count, memory and Python version of this machine."""
    memory_gib: float | None
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):
        memory_gib = None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "memory_gib": memory_gib,
    }


def utc_timestamp() -> str:
    """Now, in UTC, to the second: ``2026-11-22T10:04:00Z``."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
