"""What ``dvc.lock`` records: the md5 of each stage output, and the stages of a paper.

The target check and the reference snapshot compare committed metrics files with these hashes,
so a number can only come from the pipeline, never be typed in.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esrepro.strict_io import InputError, read_yaml


def file_md5(path: str | Path) -> str:
    """Plain md5 of the file's bytes: what DVC 3 records for a file output."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def norm_path(path: str) -> str:
    """``path`` as dvc.lock spells it: forward slashes, no "." or ".." parts."""
    return posixpath.normpath(str(path).replace("\\", "/"))


def lock_stages(lock: Mapping[str, Any] | None) -> dict[str, Any]:
    """The stage entries of a dvc.lock document, or of a provenance's ``dvc_lock``.

    Accepts both the full dvc.lock shape (``{"schema": ..., "stages": {...}}``) and the bare
    ``{stage: entry}`` mapping a snapshot stores.
    """
    if not isinstance(lock, Mapping):
        return {}
    stages = lock.get("stages")
    if isinstance(stages, Mapping) and all(isinstance(v, Mapping) for v in stages.values()):
        return dict(stages)
    return {k: v for k, v in lock.items() if isinstance(v, Mapping)}


def recorded_md5(lock: Mapping[str, Any] | None, out_path: str) -> tuple[str, str] | None:
    """``(stage, md5)`` of the output whose path equals ``out_path`` (relative), or None."""
    want = norm_path(out_path)
    for stage, entry in lock_stages(lock).items():
        for out in entry.get("outs") or []:
            if not isinstance(out, Mapping) or not out.get("md5"):
                continue
            if norm_path(out.get("path", "")) == want:
                return stage, str(out["md5"])
    return None


def read_dvc_lock(root: Path) -> dict[str, Any] | None:
    """``<root>/dvc.lock`` parsed, or None when the file does not exist.

    Raises :class:`InputError` naming dvc.lock when it is not valid YAML (e.g. a merge
    conflict) or not a mapping.
    """
    path = Path(root) / "dvc.lock"
    if not path.is_file():
        return None
    doc = read_yaml(path) or {}
    if not isinstance(doc, Mapping):
        raise InputError(f"{path}: expected a mapping of stages, found {type(doc).__name__}")
    return dict(doc)


def paper_stages(lock: Mapping[str, Any] | None, paper: str) -> dict[str, Any]:
    """The dvc.lock entries of ``paper``'s stages, as a snapshot records them.

    A paper's stages are those its registry entry declares, or writing under
    ``reports/<paper>/`` (the latter keeps the entry holding metrics.json even if the stage is
    named differently).
    """
    from esrepro.registry import get_paper, paper_names

    declared = set(get_paper(paper).dvc_stage_names()) if paper in paper_names() else set()
    prefix = f"reports/{paper}/"
    return {
        stage: entry
        for stage, entry in lock_stages(lock).items()
        if stage in declared
        or any(
            isinstance(o, Mapping) and norm_path(o.get("path", "")).startswith(prefix)
            for o in entry.get("outs") or []
        )
    }
