"""Compare a paper's metrics with the numbers it reports, behind the hash gates.

:func:`check_paper` fails a paper when

* a bar or a ``must_beat`` comparison does not hold (a regression), or
* a committed metrics file differs from the hash recorded for it: ``reports/<paper>/metrics.json``
  against ``dvc.lock``, ``reports/<paper>/reference/metrics.json`` against the dvc.lock entries
  stored in ``reference/provenance.json``. Numbers must come from the pipeline, never be typed in;
  a metrics file without a recorded hash fails too.

The compared metrics are those of the committed paper-scale reference run
(``reports/<paper>/reference/metrics.json``) when present, else the default-profile
``reports/<paper>/metrics.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esrepro.strict_io import read_json
from esrepro.targets.lock import file_md5, read_dvc_lock, recorded_md5
from esrepro.targets.schema import PaperTargets, Target


def get_metric(metrics: Mapping[str, Any], dotted: str) -> float | None:
    """Value at ``a.b.c`` in nested mappings as float; None when absent, null or non-finite.

    Keys may themselves hold dots (``d_alignn.test.frac_mae_lt_0.02``): at each level the
    longest run of parts that is a key is taken.
    """
    parts = dotted.split(".")
    node: Any = metrics
    while parts:
        if not isinstance(node, Mapping):
            return None
        for n in range(len(parts), 0, -1):
            key = ".".join(parts[:n])
            if key in node:
                node, parts = node[key], parts[n:]
                break
        else:
            return None
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    value = float(node)
    return value if math.isfinite(value) else None


@dataclass
class Row:
    """One line of the comparison table."""

    target: Target
    ours: float | None
    ratio: float | None
    verdict: str
    failed: bool
    detail: str = ""


@dataclass
class PaperCheck:
    """Outcome of checking one paper: table rows, gate failures and warnings."""

    paper: str
    source: str  # "reference" or "default": whose metrics the rows compare
    metrics_file: Path | None
    rows: list[Row] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Our data scale: ``data_scale.ours.metric`` (default ``n_materials``) and its value.
    scale_metric: str = "n_materials"
    scale_value: float | None = None

    @property
    def ok(self) -> bool:
        """True when no gate failed."""
        return not self.failures


def evaluate(target: Target, metrics: Mapping[str, Any], source: str) -> Row:
    ours = get_metric(metrics, target.metric)
    ratio = ours / target.paper if ours is not None and target.paper else None
    gated = target.gated(source)
    problems: list[str] = []
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
                    problems.append(f"does not beat {other} ({ours:.4g} ≥ {theirs:.4g})")
    if not (target.bar or target.must_beat):
        verdict, failed = "info", False
    elif not gated:
        # Paper-scale bars do not gate a small default-profile run; say how it would fare.
        verdict = "not gated: " + ("would fail" if problems else "would pass")
        failed = False
    elif problems:
        verdict, failed = ("MISSING" if ours is None else "REGRESSION"), True
    else:
        verdict, failed = "ok", False
    return Row(target, ours, ratio, verdict, failed, "; ".join(problems))


def check_hash(
    file: Path,
    rel: str,
    lock: Mapping[str, Any] | None,
    lock_name: str,
    failures: list[str],
    label: str | None = None,
) -> None:
    """Append a failure unless ``file`` has the md5 ``lock`` records for output path ``rel``.

    ``label`` names the checked file in messages when it is a copy (the reference snapshot)
    of the output recorded under ``rel``.
    """
    label = label or rel
    found = recorded_md5(lock, rel)
    if found is None:
        failures.append(
            f"{label}: no output {rel!r} in {lock_name}; metrics must come from the pipeline"
        )
        return
    stage, md5 = found
    actual = file_md5(file)
    if actual != md5:
        failures.append(
            f"{label}: md5 {actual} differs from {md5} recorded for {rel} by stage {stage!r} "
            f"in {lock_name} (edited by hand, or not produced by the pipeline)"
        )


def other_metrics_files(directory: Path) -> list[Path]:
    """Metrics files beside ``metrics.json`` (e.g. ``cv_metrics.json``): hash-gated the same way."""
    return sorted(p for p in directory.glob("*metrics.json") if p.name != "metrics.json")


def check_paper(
    targets: PaperTargets, root: Path, *, allow_missing_reference: bool = True
) -> PaperCheck:
    """Check one paper: hash gates on both metrics files, then bars on the compared metrics.

    Raises :class:`InputError` when dvc.lock, a provenance.json or the compared metrics file
    cannot be parsed.
    """
    root = Path(root)
    default_file = root / targets.metrics_rel
    ref_dir = root / targets.reference_rel
    ref_file = ref_dir / "metrics.json"
    check = PaperCheck(paper=targets.paper, source="default", metrics_file=None)

    if default_file.is_file():
        lock = read_dvc_lock(root)
        if lock is None:
            check.failures.append(f"{targets.metrics_rel} exists but {root / 'dvc.lock'} does not")
        else:
            check_hash(default_file, targets.metrics_rel, lock, "dvc.lock", check.failures)
            for extra in other_metrics_files(default_file.parent):
                rel = f"reports/{targets.paper}/{extra.name}"
                check_hash(extra, rel, lock, "dvc.lock", check.failures)

    if ref_file.is_file():
        prov_path = ref_dir / "provenance.json"
        if not prov_path.is_file():
            check.failures.append(f"{targets.reference_rel}/metrics.json has no provenance.json")
        else:
            provenance = read_json(prov_path)
            # The snapshot records the pipeline's paths of the files it copied.
            for file in (ref_file, *other_metrics_files(ref_dir)):
                check_hash(
                    file,
                    f"reports/{targets.paper}/{file.name}",
                    provenance.get("dvc_lock"),
                    f"{targets.reference_rel}/provenance.json",
                    check.failures,
                    label=f"{targets.reference_rel}/{file.name}",
                )
        check.source, check.metrics_file = "reference", ref_file
    else:
        message = (
            f"no reference run committed for {targets.paper!r} ({targets.reference_rel}/"
            "metrics.json): checking the default-profile metrics; bars scoped to the "
            "paper-scale reference are NOT gated"
        )
        (check.warnings if allow_missing_reference else check.failures).append(message)
        if default_file.is_file():
            check.metrics_file = default_file
        else:
            check.failures.append(f"no metrics to check: {targets.metrics_rel} does not exist")

    if check.metrics_file is None:
        return check
    metrics = read_json(check.metrics_file)
    ours = (targets.data_scale or {}).get("ours") or {}
    check.scale_metric = str(ours.get("metric") or "n_materials")
    check.scale_value = get_metric(metrics, check.scale_metric)
    for target in targets.targets:
        row = evaluate(target, metrics, check.source)
        check.rows.append(row)
        if row.failed:
            check.failures.append(f"{target.name} ({target.metric}): {row.detail}")
    return check
