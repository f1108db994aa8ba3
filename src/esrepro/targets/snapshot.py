"""Reference snapshots: the pipeline's current outputs of a paper, kept with their provenance.

:func:`snapshot_reference` copies a paper's metrics, figures, report and predictions into
``reports/<paper>/<name>/`` with ``provenance.json`` (git commit, params, the paper's dvc.lock
entries, wall time, DFT cost, machine); the target check compares the copy with those entries.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from esrepro.config import repo_root
from esrepro.provenance import git_commit, machine, utc_timestamp
from esrepro.strict_io import InputError, read_json, read_yaml
from esrepro.targets.check import check_hash, get_metric, other_metrics_files
from esrepro.targets.lock import file_md5, paper_stages, read_dvc_lock
from esrepro.targets.render import fmt_value
from esrepro.targets.schema import TARGETS_FILE, load_targets

#: What a snapshot folder (``--name``) or a paper may be called: one plain path component, so
#: it can neither be the report folder itself (".") nor point outside it ("..", "a/b").
_SIMPLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class SnapshotError(RuntimeError):
    """A reference snapshot cannot be taken (missing outputs, or outputs not from the pipeline)."""


def _check_simple_name(value: str, what: str) -> None:
    """Raise unless ``value`` is one plain folder name (no "", ".", "..", separators)."""
    if not _SIMPLE_NAME.fullmatch(value):
        raise SnapshotError(
            f"{what} must be a plain folder name (letters, digits, '.', '_', '-'; not starting "
            f"with '.' or '-'), not {value!r}"
        )


def _scale_metric(root: Path, paper: str) -> str:
    """The paper's ``data_scale.ours.metric`` from the targets file; ``n_materials`` failing that.

    Only used to describe snapshots in messages, so a missing or broken targets file is no error.
    """
    try:
        targets = load_targets(root / TARGETS_FILE)[paper]
    except (InputError, KeyError):
        return "n_materials"
    return str((targets.data_scale.get("ours") or {}).get("metric") or "n_materials")


def _describe_snapshot(folder: Path, scale_metric: str) -> str:
    """What an existing snapshot holds, from its provenance.json and metrics.json, best effort."""
    parts: list[str] = []
    try:
        provenance = read_json(folder / "provenance.json")
    except InputError as err:
        parts.append(f"provenance.json unreadable: {err}")
    else:
        if provenance.get("created"):
            parts.append(f"created {provenance['created']}")
        if provenance.get("git_commit"):
            parts.append(f"at commit {str(provenance['git_commit'])[:10]}")
        if isinstance(provenance.get("wall_time_s"), int | float):
            parts.append(f"wall time {provenance['wall_time_s']:g} s")
    try:
        scale = get_metric(read_json(folder / "metrics.json"), scale_metric)
    except InputError:
        scale = None
    if scale is not None:
        parts.append(f"{scale_metric} {fmt_value(scale)}")
    return ", ".join(parts) or "no provenance"


def snapshot_reference(
    paper: str,
    *,
    root: Path | None = None,
    wall_time_s: float | None = None,
    name: str = "reference",
    force: bool = False,
) -> Path:
    """Copy the pipeline's current outputs of ``paper`` into ``reports/<paper>/<name>/``.

    ``name`` is "reference" for the paper-scale run the check compares with; any other name
    (e.g. "partial" for an interim subset of a paper-scale run) is kept for the record only. It
    must be a plain folder name: "." would make the snapshot the report folder itself.

    Copies ``metrics.json`` (and any other ``*metrics.json``, e.g. cross-validation),
    ``figures/*.png``, ``<paper>.html``, the prediction files and whatever else its report stage
    reads (learning curves; inputs from outside ``reports/<paper>/`` under ``inputs/``, so
    :func:`esrepro.report_snapshots.render_snapshot` can render it again), the trained models
    the registry names (under ``models/<output folder>/``) and writes
    ``provenance.json``: git commit, params.yaml, the dvc.lock
    entries of the paper's stages (their recorded md5 of ``metrics.json`` is what the check
    compares the copy with), wall time, the DFT cost measured from the run's products
    (``dft_cost``: core-hours, seconds per material, hosts; see esrepro.dft.cost), machine and
    a UTC timestamp. Refuses when
    ``metrics.json`` does not match dvc.lock, so a hand-edited file is never blessed.

    An existing ``reports/<paper>/<name>/`` is never overwritten unless ``force``: the default
    name would otherwise let a default-profile run replace a paper-scale reference that took
    hours. Even with ``force`` only an earlier snapshot (a folder with provenance.json) is
    replaced, never e.g. ``figures/``. The snapshot is written to a temporary folder beside the
    target and renamed into place, so a crash never leaves a half-written one: at worst the
    previous snapshot is left as ``.<name>.old-*`` (between the two renames).

    Returns:
        The path of ``provenance.json``.
    """
    root = Path(root) if root is not None else repo_root()
    _check_simple_name(paper, "the paper")
    _check_simple_name(name, "the snapshot name (--name)")
    rel_metrics = f"reports/{paper}/metrics.json"
    report_dir = root / "reports" / paper
    metrics = root / rel_metrics
    if not metrics.is_file():
        raise SnapshotError(f"{rel_metrics} does not exist; run the pipeline first")
    lock = read_dvc_lock(root)
    if lock is None:
        raise SnapshotError(f"{root / 'dvc.lock'} does not exist; run the pipeline first")
    failures: list[str] = []
    check_hash(metrics, rel_metrics, lock, "dvc.lock", failures)
    if failures:
        raise SnapshotError("; ".join(failures))

    ref = report_dir / name
    rel_ref = f"reports/{paper}/{name}"
    if ref.exists() or ref.is_symlink():
        if not ref.is_dir() or ref.is_symlink() or not (ref / "provenance.json").is_file():
            raise SnapshotError(
                f"{rel_ref} exists and is not a snapshot (no provenance.json); choose another "
                "--name, or remove it by hand if it is a broken snapshot"
            )
        if not force:
            scale_metric = _scale_metric(root, paper)
            try:
                new_scale = fmt_value(get_metric(read_json(metrics), scale_metric))
            except InputError:
                new_scale = "—"
            raise SnapshotError(
                f"{rel_ref} already exists ({_describe_snapshot(ref, scale_metric)}); the "
                f"current outputs have {scale_metric} {new_scale}. Pass --force to replace it, "
                "or choose another --name"
            )

    # Read every input before writing anything.
    params_path = root / "params.yaml"
    params = read_yaml(params_path) if params_path.is_file() else None
    cost = _run_dft_cost(root, paper)

    # Built beside the target (same file system, so the renames below are atomic), hidden, and
    # named so that a leftover from a crash says what it is.
    tmp = report_dir / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        copies: list[tuple[Path, str]] = [(metrics, "metrics.json")]
        copies += [
            (p, f"figures/{p.name}") for p in sorted((report_dir / "figures").glob("*.png"))
        ]
        # Prediction files (e.g. predictions.csv, cv_predictions.csv), like the metrics files,
        # by pattern: a stage that adds one needs no change here.
        extra = [report_dir / f"{paper}.html", *other_metrics_files(report_dir)]
        extra += sorted(report_dir.glob("*predictions.csv"))
        extra += sorted(report_dir.glob("*predictions.npz"))
        copies += [(p, p.name) for p in extra if p.is_file()]
        copies += _render_inputs(root, paper, report_dir, {rel for _, rel in copies})
        copies += _model_files(root, paper)
        files: dict[str, str] = {}
        for src, rel in copies:
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            files[rel] = file_md5(dst)
        provenance = {
            "paper": paper,
            "snapshot": name,
            "created": utc_timestamp(),
            "git_commit": git_commit(root),
            "wall_time_s": wall_time_s,
            "dft_cost": cost,
            "machine": machine(),
            "params": params,
            "dvc_lock": paper_stages(lock, paper),
            "files": files,
        }
        (tmp / "provenance.json").write_text(
            json.dumps(provenance, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        _swap_into_place(tmp, ref)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ref / "provenance.json"


#: Where a snapshot keeps the report-stage inputs that live outside ``reports/<paper>/`` (e.g.
#: DOSnp's DFT summary under data/), as ``inputs/<argument name><suffix>``.
SNAPSHOT_INPUTS = "inputs"


def _render_inputs(
    root: Path, paper: str, report_dir: Path, taken: set[str]
) -> list[tuple[Path, str]]:
    """What re-rendering the snapshot's report needs beyond the copies already ``taken``: every
    input of the paper's report stage (learning curves, DFT summary, ...) and the executed
    notebook, as (source file, path in the snapshot). Empty for a paper without a registry entry.
    """
    from esrepro.registry import get_paper

    try:
        stage = get_paper(paper).stage("report")
    except (KeyError, ValueError):
        return []
    wanted: list[tuple[Path, str]] = []
    for arg, rel in stage.inputs.items():
        path = root / rel
        if arg == "notebook" or not path.exists():
            continue
        if path.is_relative_to(report_dir):
            inside = path.relative_to(report_dir)
            for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
                if file.is_file():
                    wanted.append((file, (inside / file.relative_to(path)).as_posix()
                                   if path.is_dir() else inside.as_posix()))
        elif path.is_file():
            wanted.append((path, f"{SNAPSHOT_INPUTS}/{arg}{path.suffix}"))
    executed = stage.outputs.get("executed")
    if executed is not None and (root / executed.path).is_file():
        wanted.append((root / executed.path, Path(executed.path).name))
    return [(src, rel) for src, rel in wanted if rel not in taken]


def _model_files(root: Path, paper: str) -> list[tuple[Path, str]]:
    """The paper's trained models (registry ``models``) as (source file, path in the snapshot):
    ``models/<name of the output>/<file>``. Empty for a paper without a registry entry.

    Raises:
        SnapshotError: a declared model output does not exist (the pipeline has not run).
    """
    from esrepro.registry import get_paper

    try:
        declared = get_paper(paper).models
    except (KeyError, ValueError):
        return []
    files: list[tuple[Path, str]] = []
    for rel in declared:
        path = root / rel
        if not path.exists():
            raise SnapshotError(f"{rel} (trained models of {paper}) does not exist; run the "
                                "pipeline first")
        if path.is_dir():
            files += [(f, f"models/{path.name}/{f.relative_to(path).as_posix()}")
                      for f in sorted(path.rglob("*")) if f.is_file()]
        else:
            files.append((path, f"models/{path.name}"))
    return files


def _run_dft_cost(root: Path, paper: str) -> dict[str, Any] | None:
    """DFT cost of the run from its products (``data/<paper>/dft/products/*.npz``); None if none.

    Measured from the products, it holds for a run resumed over several segments or fed by a
    seed cache, where ``--wall-time-s`` of the last segment would not (esrepro.dft.cost).
    """
    products = list((root / "data" / paper / "dft" / "products").glob("*.npz"))
    if not products:
        return None
    # Imported here: esrepro.dft loads GPAW's settings (~0.6 s) that check-targets never needs.
    from esrepro.dft.cost import dft_cost

    try:
        return dft_cost(products)
    except ValueError as err:
        raise SnapshotError(f"cannot measure the DFT cost: {err}") from err


def _swap_into_place(new: Path, target: Path) -> None:
    """Rename the finished folder ``new`` to ``target``, replacing an existing ``target``.

    POSIX cannot rename a folder over a non-empty one, so the old one is first renamed aside
    and removed only once the new one is in place; if that second rename fails it is put back.
    """
    if not target.exists():
        new.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
