"""Check every committed run of a paper against the bars declared for its scope.

A paper's committed runs are the default-profile ``reports/<paper>/metrics.json``, the interim
``reports/<paper>/partial/`` snapshot and the paper-scale ``reports/<paper>/reference/`` snapshot
(each present or not), plus any other snapshot folder (e.g. ``scale_run_kpt1/``), which is kept
for the record and checked for integrity only. :func:`check_paper` fails a paper when

* a committed metrics file differs from the hash recorded for it (integrity): the default run's
  ``*metrics.json`` against ``dvc.lock``, a snapshot's against the dvc.lock entries stored in its
  ``provenance.json``. Numbers must come from the pipeline, never be typed in; a metrics file
  without a recorded hash fails too;
* a bar or a ``must_beat`` comparison does not hold on a run its target's ``scope`` gates
  (``any``: every run; ``reference``: the reference run; ``report``: none), or the metric is
  missing there;
* the reference run is missing while ``reference.status`` is ``committed``, or present while it
  says ``pending`` (the file must tell the truth). A pending reference is one note with its
  reason.

Claims (:mod:`~esrepro.targets.claims`) are judged on the compared run: the reference when
committed, else ``partial/``, else the default run. They never gate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esrepro.metrics import MIN_RESOLVING_SAMPLES
from esrepro.strict_io import read_json
from esrepro.targets.lock import file_md5, read_dvc_lock, recorded_md5
from esrepro.targets.schema import RUNS, PaperTargets, Target

#: Returned by :func:`get_node` for a path that is not in the metrics.
MISSING: Any = object()


def get_node(metrics: Mapping[str, Any], dotted: str) -> Any:
    """Whatever sits at ``a.b.c`` in nested mappings, or :data:`MISSING`.

    Keys may themselves hold dots (``d_alignn.test.frac_mae_lt_0.02``): at each level the
    longest run of parts that is a key is taken.
    """
    parts = dotted.split(".")
    node: Any = metrics
    while parts:
        if not isinstance(node, Mapping):
            return MISSING
        for n in range(len(parts), 0, -1):
            key = ".".join(parts[:n])
            if key in node:
                node, parts = node[key], parts[n:]
                break
        else:
            return MISSING
    return node


def as_number(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (absent, null, NaN, a bool, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def get_metric(metrics: Mapping[str, Any], dotted: str) -> float | None:
    """Value at ``a.b.c`` in nested mappings as float; None when absent, null or non-finite."""
    return as_number(get_node(metrics, dotted))


@dataclass
class Row:
    """One line of the comparison table: one target on one run."""

    target: Target
    ours: float | None
    ratio: float | None
    verdict: str
    failed: bool
    detail: str = ""
    run: str = "default"


@dataclass
class RunCheck:
    """One committed run: where its metrics are, its integrity and its table rows."""

    run: str  # "default", "partial", "reference", or another snapshot's folder name
    metrics_file: Path | None
    rows: list[Row] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    scale_value: float | None = None
    #: Metrics files whose md5 matched the recorded one.
    verified: list[str] = field(default_factory=list)
    #: A snapshot kept for the record (not default/partial/reference): integrity only.
    integrity_only: bool = False
    metrics: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_gated(self) -> int:
        """Rows whose bar or must_beat gated this run."""
        return sum(1 for r in self.rows if r.verdict in ("ok", "REGRESSION", "MISSING"))


@dataclass
class PaperCheck:
    """Outcome of checking one paper: its runs, gate failures, warnings, notes and claims."""

    paper: str
    runs: list[RunCheck] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: One line per pending reference or stale run, with its reason.
    notes: list[str] = field(default_factory=list)
    reference_pending: bool = False
    #: Committed runs declared stale (checked for integrity only until re-taken).
    stale_runs: list[str] = field(default_factory=list)
    #: Our data scale: ``data_scale.ours.metric`` (default ``n_materials``) and the paper's.
    scale_metric: str = "n_materials"
    paper_scale: float | None = None
    #: Claim results (:class:`~esrepro.targets.claims.ClaimResult`), on :attr:`compared`.
    claims: list[Any] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no gate failed."""
        return not self.failures

    @property
    def rows(self) -> list[Row]:
        """Every run's rows."""
        return [row for run in self.runs for row in run.rows]

    @property
    def compared(self) -> RunCheck | None:
        """The largest run: reference, else partial, else default. Each claim is judged on the
    largest run whose metrics hold its record (:func:`~esrepro.targets.claims.judge_on_runs`)."""
        by_name = {r.run: r for r in self.runs if not r.integrity_only and r.metrics_file}
        return next((by_name[n] for n in reversed(RUNS) if n in by_name), None)

    @property
    def source(self) -> str:
        """Name of the compared run ("" when there is none)."""
        return self.compared.run if self.compared else ""

    @property
    def metrics_file(self) -> Path | None:
        """Metrics file of the compared run."""
        return self.compared.metrics_file if self.compared else None

    @property
    def scale_value(self) -> float | None:
        """Our data scale on the compared run."""
        return self.compared.scale_value if self.compared else None

    def run(self, name: str) -> RunCheck | None:
        """The run called ``name``, if committed."""
        return next((r for r in self.runs if r.run == name), None)


def evaluate(target: Target, metrics: Mapping[str, Any], run: str) -> Row:
    """One target on one run's metrics: value, ratio to the paper, verdict."""
    ours = get_metric(metrics, target.metric)
    ratio = ours / target.paper if ours is not None and target.paper else None
    gated = target.gated(run)
    problems: list[str] = []
    notes: list[str] = []  # shortfalls the paired record does not resolve: shown, not failed
    if target.bar or target.must_beat:
        if ours is None:
            problems.append(f"{target.metric} missing from the metrics")
        else:
            if target.bar and "max" in target.bar and not ours <= target.bar["max"]:
                problems.append(f"{ours:.4g} > max {target.bar['max']:g}")
            if target.bar and "min" in target.bar and not ours >= target.bar["min"]:
                problems.append(f"{ours:.4g} < min {target.bar['min']:g}")
            for other in target.must_beat:
                theirs = get_metric(metrics, other)
                if theirs is None:
                    problems.append(f"cannot compare: {other} missing")
                elif not ours < theirs:
                    lost = f"does not beat {other} ({ours:.4g} ≥ {theirs:.4g})"
                    within_noise = _within_noise(metrics, target.resolved_by)
                    if within_noise is None:
                        problems.append(lost)
                    else:
                        notes.append(f"{lost}, {within_noise}")
    if not (target.bar or target.must_beat):
        verdict, failed = "info", False
    elif not gated:
        # Bars of another scope do not gate this run; say how it would fare.
        verdict = "not gated: " + ("would fail" if problems else "would pass")
        failed = False
    elif problems:
        verdict, failed = ("MISSING" if ours is None else "REGRESSION"), True
    elif notes:
        verdict, failed = "ok (within noise)", False
    else:
        verdict, failed = "ok", False
    return Row(target, ours, ratio, verdict, failed, "; ".join(problems + notes), run)


def _within_noise(metrics: Mapping[str, Any], record_path: str | None) -> str | None:
    """Why a lost point comparison does not count, or None when it does.

    It does not count when the paired record at ``record_path`` resolves no winner; it counts
    when the record names the other model, or when there is no path or no such record.
    """
    if record_path is None:
        return None
    record = get_node(metrics, record_path)
    if not isinstance(record, Mapping) or "winner" not in record:
        return None
    if record["winner"] is not None:
        return None
    n = as_number(record.get("n"))
    if n is not None and n < MIN_RESOLVING_SAMPLES:
        # Under two samples the interval is null in the JSON: there is none to print.
        return f"not resolved: {n:g} held-out samples, fewer than {MIN_RESOLVING_SAMPLES}"
    lo, hi = record.get("ci95", [math.nan, math.nan])
    return f"not resolved: 95% interval of the difference [{lo:.3g}, {hi:.3g}] includes 0"


def check_hash(
    file: Path,
    rel: str,
    lock: Mapping[str, Any] | None,
    lock_name: str,
    failures: list[str],
    label: str | None = None,
) -> bool:
    """Append a failure unless ``file`` has the md5 ``lock`` records for output path ``rel``.

    ``label`` names the checked file in messages when it is a copy (a snapshot) of the output
    recorded under ``rel``. Returns whether the hash matched.
    """
    label = label or rel
    found = recorded_md5(lock, rel)
    if found is None:
        failures.append(
            f"{label}: no output {rel!r} in {lock_name}; metrics must come from the pipeline"
        )
        return False
    stage, md5 = found
    actual = file_md5(file)
    if actual != md5:
        failures.append(
            f"{label}: md5 {actual} differs from {md5} recorded for {rel} by stage {stage!r} "
            f"in {lock_name} (edited by hand, or not produced by the pipeline)"
        )
        return False
    return True


def other_metrics_files(directory: Path) -> list[Path]:
    """Metrics files beside ``metrics.json`` (e.g. ``cv_metrics.json``): hash-gated the same way."""
    return sorted(p for p in directory.glob("*metrics.json") if p.name != "metrics.json")


def _paper_scale(targets: PaperTargets) -> float | None:
    """The paper's data scale: the first number under ``data_scale.paper``."""
    paper = (targets.data_scale or {}).get("paper") or {}
    return next((as_number(v) for v in paper.values() if as_number(v) is not None), None)


def _check_default_integrity(targets: PaperTargets, root: Path, run: RunCheck) -> None:
    lock = read_dvc_lock(root)
    if lock is None:
        run.failures.append(f"{targets.metrics_rel} exists but {root / 'dvc.lock'} does not")
        return
    folder = root / targets.run_dir_rel("default")
    for file in (folder / "metrics.json", *other_metrics_files(folder)):
        rel = f"reports/{targets.paper}/{file.name}"
        if check_hash(file, rel, lock, "dvc.lock", run.failures):
            run.verified.append(rel)


def _check_snapshot_integrity(targets: PaperTargets, root: Path, run: RunCheck) -> None:
    rel_dir = targets.run_dir_rel(run.run)
    folder = root / rel_dir
    prov_path = folder / "provenance.json"
    if not prov_path.is_file():
        run.failures.append(f"{rel_dir}/metrics.json has no provenance.json")
        return
    provenance = read_json(prov_path)
    # The snapshot records the pipeline's paths of the files it copied.
    for file in (folder / "metrics.json", *other_metrics_files(folder)):
        label = f"{rel_dir}/{file.name}"
        if check_hash(
            file,
            f"reports/{targets.paper}/{file.name}",
            provenance.get("dvc_lock"),
            f"{rel_dir}/provenance.json",
            run.failures,
            label=label,
        ):
            run.verified.append(label)


def _snapshot_folders(targets: PaperTargets, root: Path) -> list[str]:
    """Snapshot folders under ``reports/<paper>/`` other than partial/ and reference/."""
    folder = root / targets.run_dir_rel("default")
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_dir() and p.name not in RUNS and (p / "provenance.json").is_file()
    )


def check_run(
    targets: PaperTargets, root: Path, run_name: str, *, verify_hashes: bool = True
) -> RunCheck | None:
    """Check one run of ``targets.paper``; None when that run is not committed.

    Raises :class:`InputError` when dvc.lock, a provenance.json or the metrics file cannot be
    parsed.
    """
    rel_dir = targets.run_dir_rel(run_name)
    metrics_file = root / rel_dir / "metrics.json"
    if not metrics_file.is_file():
        return None
    run = RunCheck(
        run_name, metrics_file,
        integrity_only=run_name not in RUNS or run_name in targets.stale_runs,
    )
    if not verify_hashes:
        pass
    elif run_name == "default":
        _check_default_integrity(targets, root, run)
    else:
        _check_snapshot_integrity(targets, root, run)
    if run.integrity_only:
        return run
    run.metrics = read_json(metrics_file)
    run.scale_value = get_metric(run.metrics, targets.scale_metric)
    for target in targets.targets:
        row = evaluate(target, run.metrics, run_name)
        run.rows.append(row)
        if row.failed:
            run.failures.append(f"{target.name} ({target.metric}): {row.detail}")
    return run


def check_paper(
    targets: PaperTargets, root: Path, *, verify_hashes: bool = True
) -> PaperCheck:
    """Check every committed run of one paper, its reference status, then judge its claims.

    ``verify_hashes=False`` skips the integrity gate (for showing numbers inside a pipeline
    run, before dvc.lock records them).

    Raises :class:`InputError` when dvc.lock, a provenance.json or a metrics file cannot be
    parsed.
    """
    from esrepro.targets.claims import judge_on_runs

    root = Path(root)
    check = PaperCheck(
        paper=targets.paper, scale_metric=targets.scale_metric, paper_scale=_paper_scale(targets)
    )
    for name in (*RUNS, *_snapshot_folders(targets, root)):
        run = check_run(targets, root, name, verify_hashes=verify_hashes)
        if run is None:
            if name in ("partial", "reference") and (root / targets.run_dir_rel(name)).is_dir():
                check.failures.append(f"{targets.run_dir_rel(name)}/ has no metrics.json")
            continue
        check.runs.append(run)
        check.failures += [f"{name} run: {f}" for f in run.failures]

    for name, reason in targets.stale_runs.items():
        if check.run(name) is None:
            check.failures.append(
                f"paper_targets.yaml declares the {name} run stale, but "
                f"{targets.run_dir_rel(name)}/metrics.json does not exist: drop the entry"
            )
        else:
            check.stale_runs.append(name)
            check.notes.append(
                f"{targets.paper}: {name} run checked for integrity only until re-taken: {reason}"
            )
    if check.run("default") is None:
        check.failures.append(
            f"no default-profile metrics: {targets.metrics_rel} does not exist (run the pipeline)"
        )
    reference = targets.reference
    committed = check.run("reference") is not None
    if reference.status == "committed" and not committed:
        check.failures.append(
            f"no reference run: {targets.reference_rel}/metrics.json does not exist, yet "
            "paper_targets.yaml says reference: {status: committed} (snapshot it with "
            "`esrepro snapshot-reference`, or declare it pending with the reason)"
        )
    elif reference.status == "pending" and committed:
        check.failures.append(
            f"{targets.reference_rel}/ is committed but paper_targets.yaml says the reference "
            "is pending: set reference: {status: committed}"
        )
    elif reference.status == "pending":
        check.reference_pending = True
        check.notes.append(f"{targets.paper}: reference run pending: {reference.reason}")

    by_name = {r.run: r for r in check.runs if not r.integrity_only and r.metrics_file}
    runs = [(n, by_name[n].metrics) for n in reversed(RUNS) if n in by_name]
    if runs:
        check.claims = judge_on_runs(targets.claims, runs)
    return check
