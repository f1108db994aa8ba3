"""Re-render the report of a committed snapshot (``reports/<paper>/<name>/``) from its files.

Kept apart from :mod:`esrepro.reports`, which the report stages import: DVC tracks the modules a
stage imports, and this one reaches the registry and the snapshot bookkeeping.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from esrepro.config import repo_root
from esrepro.provenance import git_commit, utc_timestamp
from esrepro.registry import get_paper
from esrepro.targets.lock import file_md5
from esrepro.targets.snapshot import SNAPSHOT_INPUTS


class SnapshotRenderError(RuntimeError):
    """A snapshot's report cannot be re-rendered from the files the snapshot holds."""


def render_snapshot(
    paper: str,
    folder: str | Path,
    *,
    root: Path | None = None,
    inputs: Mapping[str, str | Path] | None = None,
) -> Path:
    """Re-render the report of a committed snapshot (``reports/<paper>/<name>/``) in place.

    The paper's report stage runs with every path under ``reports/<paper>/`` moved into
    ``folder``: it reads the snapshot's metrics and predictions and rewrites its page, executed
    notebook and figures; provenance.json gets the new files' md5 and a ``report_rerendered``
    record. An input outside ``reports/<paper>/`` (e.g. DOSnp's DFT summary under ``data/``) is
    not in a snapshot: ``inputs`` must name the file to use for it, by the stage's argument name
    (a path given there is used as it is, even when absent: the notebooks say what they lack).

    Raises:
        SnapshotRenderError: an input is missing, naming every one; nothing is written then.
    """
    root = Path(root if root is not None else repo_root()).absolute()
    folder = Path(folder) if Path(folder).is_absolute() else root / folder
    stage = get_paper(paper).stage("report")
    reports = Path(stage.outputs["html"].path).parent  # reports/<paper>
    given = dict(inputs or {})
    unknown = sorted(set(given) - set(stage.inputs))
    if unknown:
        raise SnapshotRenderError(f"{paper} report stage has no input(s) {unknown}")

    def moved(rel: str) -> Path:
        path = Path(rel)
        return folder / path.relative_to(reports) if path.is_relative_to(reports) else root / path

    def shown(path: Path) -> Path:
        return path.relative_to(root) if path.is_relative_to(root) else path

    args: dict[str, Path] = {}
    missing: list[str] = []
    for name, rel in stage.inputs.items():
        if name in given:
            path = Path(given[name]) if Path(given[name]).is_absolute() else root / given[name]
        elif name == "notebook" or Path(rel).is_relative_to(reports):
            path = moved(rel)
        elif (folder / SNAPSHOT_INPUTS / f"{name}{Path(rel).suffix}").is_file():
            path = folder / SNAPSHOT_INPUTS / f"{name}{Path(rel).suffix}"
        else:
            missing.append(f"{name} ({rel}: outside the snapshot; pass inputs={{{name!r}: ...}})")
            continue
        if name not in given and not path.exists():
            missing.append(f"{name} ({shown(path)})")
        args[name] = path
    if missing:
        raise SnapshotRenderError(
            f"cannot re-render {shown(folder)}: missing {'; '.join(missing)}"
        )
    outputs = {name: moved(out.path) for name, out in stage.outputs.items()}
    stage.function()(**args, **outputs)

    provenance_path = folder / "provenance.json"
    if provenance_path.is_file():
        provenance = json.loads(provenance_path.read_text(encoding="utf-8"))
        files = provenance.setdefault("files", {})
        for out in outputs.values():
            for file in sorted(out.rglob("*")) if out.is_dir() else [out]:
                if file.is_file():
                    files[file.relative_to(folder).as_posix()] = file_md5(file)
        provenance["report_rerendered"] = {
            "created": utc_timestamp(), "git_commit": git_commit(root)
        }
        provenance_path.write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return outputs["html"]
