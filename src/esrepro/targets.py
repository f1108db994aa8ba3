"""Compare a paper's metrics with the numbers it reports, and guard their provenance.

``reports/paper_targets.yaml`` records, per paper, every number we compare against: the metric
path into the paper's metrics JSON, the paper's value (``null`` when the paper only shows a
figure), the bar that must hold, the unit, the metric's definition, where in the paper it comes
from and the data scale. :func:`run_check_targets` prints paper / ours / ratio / bar / verdict
per metric and returns a non-zero exit code when

* a bar or a ``must_beat`` comparison does not hold (a regression), or
* a committed metrics file differs from the hash recorded for it: ``reports/<paper>/metrics.json``
  against ``dvc.lock``, ``reports/<paper>/reference/metrics.json`` against the dvc.lock entries
  stored in ``reference/provenance.json``. Numbers must come from the pipeline, never be typed in;
  a metrics file without a recorded hash fails too.

The compared metrics are those of the committed paper-scale reference run
(``reports/<paper>/reference/metrics.json``) when present, else the default-profile
``reports/<paper>/metrics.json``. :func:`snapshot_reference` makes a reference run out of the
current pipeline outputs.

Every input is validated, and a malformed one (YAML or JSON syntax, a wrong shape, an unknown
key) raises :class:`InputError` naming the file, so the command can tell "cannot check" (exit
code 2) from a regression (exit code 1) instead of dying with a traceback.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import json
import math
import os
import platform
import posixpath
import re
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from esrepro.config import repo_root

#: Location of the targets file, relative to the repository root.
TARGETS_FILE = Path("reports") / "paper_targets.yaml"
#: Allowed values of a target's ``scope``.
SCOPES = ("any", "reference", "report")
#: The keys a target entry may have (the header of ``paper_targets.yaml`` documents them). Any
#: other key is a typo: ``must_bet`` would otherwise drop the must_beat gate without a word.
TARGET_KEYS = (
    "name", "metric", "paper", "bar", "must_beat", "scope", "unit", "definition", "where", "note"
)
#: The keys of a paper's entry, of its ``data_scale`` and of ``data_scale.ours``.
PAPER_KEYS = ("title", "source", "data_scale", "targets")
DATA_SCALE_KEYS = ("paper", "ours")
DATA_SCALE_OURS_KEYS = ("metric", "note")
#: What a snapshot folder (``--name``) or a paper may be called: one plain path component, so
#: it can neither be the report folder itself (".") nor point outside it ("..", "a/b").
_SIMPLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class InputError(ValueError):
    """An input (targets file, metrics, provenance.json, dvc.lock) is unreadable or malformed.

    The message names the file. ``check-targets`` answers it with exit code 2 ("cannot check"),
    which a regression (exit code 1) never gets.
    """


class TargetsError(InputError):
    """``paper_targets.yaml`` is malformed, or names an unknown paper."""


class SnapshotError(RuntimeError):
    """A reference snapshot cannot be taken (missing outputs, or outputs not from the pipeline)."""


# --------------------------------------------------------------------------------------------
# reading inputs


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one).

    A second ``bar:`` in a target would otherwise replace the first without a word.
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                # Keys merged in with "<<" may legitimately be overridden: only the mapping's
                # own keys must be unique.
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable key: the base class reports it
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first at line {first.start_mark.line + 1})",
                        key_node.start_mark,
                    )
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _read_text(path: Path, error: type[InputError]) -> str:
    """``path`` as UTF-8 text; ``error`` naming the file when it is unreadable or binary."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise error(f"{path}: cannot read it ({err.strerror or err})") from err


def _read_yaml(
    path: Path,
    *,
    error: type[InputError] = InputError,
    loader: type[yaml.SafeLoader] = yaml.SafeLoader,
) -> Any:
    """``path`` parsed as YAML; ``error`` naming the file and line when it is not valid YAML."""
    text = _read_text(path, error)
    try:
        return yaml.load(text, Loader=loader)  # a SafeLoader (sub)class: no arbitrary objects
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None)
        if isinstance(err, yaml.reader.ReaderError):  # e.g. a NUL byte: only a char offset
            where = f"line {text.count(chr(10), 0, err.position) + 1}"
            problem = f"unacceptable character #x{err.character:04x}: {err.reason}"
        elif mark is not None and problem:
            where = f"line {mark.line + 1}, column {mark.column + 1}"
            context = getattr(err, "context", None)
            problem = f"{problem} ({context})" if context else problem
        else:
            where, problem = "", " ".join(str(err).split())
        raise error(f"{path}{', ' + where if where else ''}: invalid YAML: {problem}") from err


def read_json(path: str | Path) -> dict[str, Any]:
    """``path`` parsed as a JSON object, else :class:`InputError` naming the file.

    Every JSON file the check reads (metrics, provenance) is an object; a truncated or
    merge-conflicted one must say which file it is, not raise a bare JSONDecodeError.
    """
    path = Path(path)
    text = _read_text(path, InputError)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from err
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object, found {type(doc).__name__}")
    return doc


# --------------------------------------------------------------------------------------------
# targets file


@dataclass(frozen=True)
class Target:
    """One number compared against the paper (see the header of ``paper_targets.yaml``)."""

    name: str
    metric: str
    paper: float | None
    bar: Mapping[str, float] | None
    unit: str
    definition: str
    where: str
    must_beat: tuple[str, ...] = ()
    scope: str = "any"
    note: str = ""

    def gated(self, source: str) -> bool:
        """Whether the bar and ``must_beat`` gate metrics from ``source`` ("reference"/"default")."""
        return self.scope == "any" or (self.scope == "reference" and source == "reference")


@dataclass(frozen=True)
class PaperTargets:
    """All targets of one paper plus where its metrics live."""

    paper: str
    title: str
    data_scale: Mapping[str, Any]
    targets: tuple[Target, ...]

    @property
    def metrics_rel(self) -> str:
        """The default-profile metrics file, relative to the root (as dvc.lock records it)."""
        return f"reports/{self.paper}/metrics.json"

    @property
    def reference_rel(self) -> str:
        """The reference-run directory, relative to the root."""
        return f"reports/{self.paper}/reference"


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise TargetsError(f"{where}: missing key {key!r}")
    return mapping[key]


def _reject_unknown_keys(mapping: Mapping[Any, Any], allowed: Sequence[str], where: str) -> None:
    """Raise naming the first key of ``mapping`` outside ``allowed`` (and the nearest allowed)."""
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise TargetsError(
                f"{where}: unknown key {key!r} ({hint}allowed: {', '.join(allowed)})"
            )


def _parse_data_scale(raw: Any, where: str) -> dict[str, Any]:
    """Validate ``data_scale``: ``{paper: {...}, ours: {metric: <path>, note: ...}}``."""
    where = f"{where}.data_scale"
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise TargetsError(
            f"{where}: expected a mapping with 'paper' and/or 'ours', not {raw!r:.80}"
        )
    _reject_unknown_keys(raw, DATA_SCALE_KEYS, where)
    for key in DATA_SCALE_KEYS:
        value = raw.get(key)
        if value is not None and not isinstance(value, Mapping):
            raise TargetsError(f"{where}.{key}: expected a mapping, not {value!r:.80}")
    ours = raw.get("ours") or {}
    _reject_unknown_keys(ours, DATA_SCALE_OURS_KEYS, f"{where}.ours")
    metric = ours.get("metric")
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise TargetsError(f"{where}.ours.metric: expected a metric path, not {metric!r:.80}")
    return {str(k): dict(v) for k, v in raw.items() if v is not None}


def _parse_bar(raw: Any, where: str) -> dict[str, float] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not raw or set(raw) - {"max", "min"}:
        raise TargetsError(f"{where}: bar must be null or a mapping with 'max' and/or 'min'")
    try:
        return {str(k): float(v) for k, v in raw.items()}
    except (TypeError, ValueError) as err:
        raise TargetsError(f"{where}: bar values must be numbers ({raw!r})") from err


def _parse_target(raw: Any, where: str) -> Target:
    if not isinstance(raw, Mapping):
        raise TargetsError(f"{where}: expected a mapping, not {raw!r:.80}")
    name = str(_require(raw, "name", where))
    where = f"{where} ({name})"
    _reject_unknown_keys(raw, TARGET_KEYS, where)
    paper = _require(raw, "paper", where)
    if paper is not None and (isinstance(paper, bool) or not isinstance(paper, int | float)):
        raise TargetsError(f"{where}: paper must be a number or null, not {paper!r}")
    must_beat = raw.get("must_beat") or []
    if (
        isinstance(must_beat, str)
        or not isinstance(must_beat, Sequence)
        or not all(isinstance(m, str) and m for m in must_beat)
    ):
        raise TargetsError(f"{where}: must_beat must be a list of metric paths")
    scope = str(raw.get("scope", "any"))
    if scope not in SCOPES:
        raise TargetsError(f"{where}: scope must be one of {SCOPES}, not {scope!r}")
    return Target(
        name=name,
        metric=str(_require(raw, "metric", where)),
        paper=None if paper is None else float(paper),
        bar=_parse_bar(_require(raw, "bar", where), where),
        unit=str(_require(raw, "unit", where)),
        definition=str(_require(raw, "definition", where)),
        where=str(_require(raw, "where", where)),
        must_beat=tuple(str(m) for m in must_beat),
        scope=scope,
        note=str(raw.get("note") or ""),
    )


def load_targets(path: str | Path) -> dict[str, PaperTargets]:
    """Read and validate ``paper_targets.yaml``; returns paper name -> :class:`PaperTargets`."""
    path = Path(path)
    if not path.is_file():
        raise TargetsError(f"targets file not found: {path}")
    doc = _read_yaml(path, error=TargetsError, loader=_UniqueKeyLoader)
    papers = doc.get("papers") if isinstance(doc, Mapping) else None
    if not isinstance(papers, Mapping) or not papers:
        raise TargetsError(f"{path}: expected a top-level 'papers' mapping")
    out: dict[str, PaperTargets] = {}
    for paper, spec in papers.items():
        where = f"{path}: papers.{paper}"
        if not isinstance(spec, Mapping):
            raise TargetsError(f"{where}: expected a mapping")
        _reject_unknown_keys(spec, PAPER_KEYS, where)
        raw_targets = _require(spec, "targets", where)
        if isinstance(raw_targets, str) or not isinstance(raw_targets, Sequence) or not raw_targets:
            raise TargetsError(f"{where}: 'targets' must be a non-empty list")
        targets = tuple(
            _parse_target(t, f"{where}.targets[{i}]") for i, t in enumerate(raw_targets)
        )
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise TargetsError(f"{where}: duplicate target names")
        out[str(paper)] = PaperTargets(
            paper=str(paper),
            title=str(spec.get("title", paper)),
            data_scale=_parse_data_scale(spec.get("data_scale"), where),
            targets=targets,
        )
    return out


# --------------------------------------------------------------------------------------------
# hashes and metrics


def file_md5(path: str | Path) -> str:
    """Plain md5 of the file's bytes: what DVC 3 records for a file output."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _norm(path: str) -> str:
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
    want = _norm(out_path)
    for stage, entry in lock_stages(lock).items():
        for out in entry.get("outs") or []:
            if isinstance(out, Mapping) and _norm(out.get("path", "")) == want and out.get("md5"):
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
    doc = _read_yaml(path) or {}
    if not isinstance(doc, Mapping):
        raise InputError(f"{path}: expected a mapping of stages, found {type(doc).__name__}")
    return dict(doc)


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


# --------------------------------------------------------------------------------------------
# the check


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


def _bar_text(bar: Mapping[str, float] | None) -> str:
    if not bar:
        return ""
    parts = []
    if "min" in bar:
        parts.append(f"≥ {bar['min']:g}")
    if "max" in bar:
        parts.append(f"≤ {bar['max']:g}")
    return " and ".join(parts)


def _evaluate(target: Target, metrics: Mapping[str, Any], source: str) -> Row:
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


def _check_hash(
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


def _other_metrics_files(directory: Path) -> list[Path]:
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
            _check_hash(default_file, targets.metrics_rel, lock, "dvc.lock", check.failures)
            for extra in _other_metrics_files(default_file.parent):
                rel = f"reports/{targets.paper}/{extra.name}"
                _check_hash(extra, rel, lock, "dvc.lock", check.failures)

    if ref_file.is_file():
        prov_path = ref_dir / "provenance.json"
        if not prov_path.is_file():
            check.failures.append(f"{targets.reference_rel}/metrics.json has no provenance.json")
        else:
            provenance = read_json(prov_path)
            # The snapshot records the pipeline's paths of the files it copied.
            for file in (ref_file, *_other_metrics_files(ref_dir)):
                _check_hash(
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
        row = _evaluate(target, metrics, check.source)
        check.rows.append(row)
        if row.failed:
            check.failures.append(f"{target.name} ({target.metric}): {row.detail}")
    return check


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:.0f}" if float(value).is_integer() and abs(value) >= 10 else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def render_check(
    check: PaperCheck, targets: PaperTargets, console: Console, root: Path | None = None
) -> None:
    """Print one paper's comparison table, data scale, warnings and failures."""
    shown: Path | None = check.metrics_file
    if shown is not None and root is not None and shown.is_relative_to(root):
        shown = shown.relative_to(root)
    table = Table(
        title=f"{targets.paper}: {targets.title}",
        caption=f"ours = {check.source} run ({shown})",
    )
    table.add_column("metric", overflow="fold")
    table.add_column("unit")
    for col in ("paper", "ours", "ratio"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("bar", overflow="fold")
    table.add_column("verdict", overflow="fold")
    for row in check.rows:
        t = row.target
        bar = _bar_text(t.bar)
        if t.must_beat:
            beat = "< " + ", ".join(t.must_beat)
            bar = f"{bar}; {beat}" if bar else beat
        if bar and not t.gated(check.source):
            bar += " (reference only)"
        style = "bold red" if row.failed else ("green" if row.verdict == "ok" else "dim")
        table.add_row(
            t.metric,
            t.unit,
            _fmt(t.paper),
            _fmt(row.ours),
            "—" if row.ratio is None else f"{row.ratio:.3f}",
            bar or "—",
            f"[{style}]{row.verdict}[/{style}]" + (f" ({row.detail})" if row.detail else ""),
        )
    if check.rows:
        console.print(table)
    else:
        console.print(f"[bold]{targets.paper}[/bold]: no metrics compared")
    paper_scale = (targets.data_scale.get("paper") or {}) if targets.data_scale else {}
    if check.rows:
        desc = ", ".join(f"{k} {v}" for k, v in paper_scale.items() if k not in ("where", "note"))
        console.print(
            f"data scale: paper: {desc or '—'} | ours ({check.source}): "
            f"{check.scale_metric} {_fmt(check.scale_value)}"
        )
    for warning in check.warnings:
        console.print(Panel(warning, title="WARNING", border_style="bold yellow"))
    for failure in check.failures:
        console.print(f"[bold red]FAIL[/bold red] {failure}")


def run_check_targets(
    papers: Sequence[str] | None = None,
    *,
    root: Path | None = None,
    targets_path: Path | None = None,
    allow_missing_reference: bool = True,
    console: Console | None = None,
) -> int:
    """Check the given papers (all in the targets file by default); return an exit code.

    0 when every gate holds, 1 on any regression or hash mismatch, 2 when something cannot be
    checked: the targets file is malformed or names no such paper, or a paper's dvc.lock,
    provenance.json or metrics file cannot be parsed (the other papers are still checked).
    """
    root = Path(root) if root is not None else repo_root()
    if console is None:
        # CI logs are not terminals and rich would fall back to 80 columns, folding the table
        # into an unreadable column of fragments; a fixed width keeps one row per metric.
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
    try:
        all_targets = load_targets(targets_path or root / TARGETS_FILE)
        unknown = [p for p in papers or () if p not in all_targets]
        if unknown:
            raise TargetsError(f"unknown paper(s) {unknown}; known: {sorted(all_targets)}")
    except TargetsError as err:
        console.print(f"[bold red]error:[/bold red] {err}")
        return 2
    exit_code = 0
    for paper in papers or list(all_targets):
        try:
            check = check_paper(
                all_targets[paper], root, allow_missing_reference=allow_missing_reference
            )
        except InputError as err:
            console.print(f"[bold red]error:[/bold red] cannot check {paper!r}: {err}")
            exit_code = 2  # "cannot check" outranks a regression found in another paper
            continue
        render_check(check, all_targets[paper], console, root)
        if not check.ok:
            exit_code = max(exit_code, 1)
    verdict = {
        0: "[bold green]targets OK[/bold green]",
        1: "[bold red]targets FAILED[/bold red]",
        2: "[bold red]targets FAILED (some could not be checked)[/bold red]",
    }[exit_code]
    console.print(verdict)
    return exit_code


# --------------------------------------------------------------------------------------------
# reference snapshot


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _machine() -> dict[str, Any]:
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
        parts.append(f"{scale_metric} {_fmt(scale)}")
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
    ``figures/*.png``, ``<paper>.html`` and the prediction files from
    ``reports/<paper>/`` and writes ``provenance.json``: git commit, params.yaml, the dvc.lock
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
    _check_hash(metrics, rel_metrics, lock, "dvc.lock", failures)
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
                new_scale = _fmt(get_metric(read_json(metrics), scale_metric))
            except InputError:
                new_scale = "—"
            raise SnapshotError(
                f"{rel_ref} already exists ({_describe_snapshot(ref, scale_metric)}); the "
                f"current outputs have {scale_metric} {new_scale}. Pass --force to replace it, "
                "or choose another --name"
            )

    stages = lock_stages(lock)
    prefix = f"reports/{paper}/"
    # The paper's stages: those its registry entry declares, or writing under reports/<paper>/
    # (the latter keeps the entry holding metrics.json even if the stage is named differently).
    from esrepro.registry import get_paper, paper_names

    declared = set(get_paper(paper).dvc_stage_names()) if paper in paper_names() else set()
    selected = {
        stage: entry
        for stage, entry in stages.items()
        if stage in declared
        or any(
            isinstance(o, Mapping) and _norm(o.get("path", "")).startswith(prefix)
            for o in entry.get("outs") or []
        )
    }
    # Read every input before writing anything.
    params_path = root / "params.yaml"
    params = _read_yaml(params_path) if params_path.is_file() else None
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
        extra = [report_dir / f"{paper}.html", *_other_metrics_files(report_dir)]
        extra += sorted(report_dir.glob("*predictions.csv"))
        extra += sorted(report_dir.glob("*predictions.npz"))
        copies += [(p, p.name) for p in extra if p.is_file()]
        files: dict[str, str] = {}
        for src, rel in copies:
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            files[rel] = file_md5(dst)
        provenance = {
            "paper": paper,
            "snapshot": name,
            "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "git_commit": _git_commit(root),
            "wall_time_s": wall_time_s,
            "dft_cost": cost,
            "machine": _machine(),
            "params": params,
            "dvc_lock": selected,
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


def run_snapshot_reference(
    paper: str,
    *,
    root: Path | None = None,
    wall_time_s: float | None = None,
    console: Console | None = None,
    name: str = "reference",
    force: bool = False,
) -> int:
    """CLI body of ``esrepro snapshot-reference``: snapshot and report; returns an exit code."""
    console = console or Console()
    try:
        provenance = snapshot_reference(
            paper, root=root, wall_time_s=wall_time_s, name=name, force=force
        )
        record = read_json(provenance)
    except (SnapshotError, InputError) as err:
        console.print(f"[bold red]error:[/bold red] {err}")
        return 1
    console.print(f"reference snapshot of {paper!r}: {len(record['files'])} file(s) + {provenance}")
    if record.get("dft_cost"):
        from esrepro.dft.cost import describe_cost

        console.print(describe_cost(record["dft_cost"]))
    return 0
