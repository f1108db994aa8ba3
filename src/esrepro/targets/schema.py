"""``reports/paper_targets.yaml``: its schema, read strictly into :class:`PaperTargets`.

Per paper it records every number we compare against: the metric path into the paper's
metrics JSON, the paper's value (``null`` when the paper only shows a figure), the bar that must
hold and on which runs (``scope``), the unit, the metric's definition, where in the paper it
comes from and the data scale; whether the paper-scale reference run is committed or pending
(``reference``); and the paper's claims (``claims``: statements judged holds / fails / not
resolved, never gating). An unknown key, a duplicated key or a wrong shape is a
:class:`TargetsError` naming the file.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esrepro.strict_io import InputError, UniqueKeyLoader, read_yaml

#: Location of the targets file, relative to the repository root.
TARGETS_FILE = Path("reports") / "paper_targets.yaml"
#: Allowed values of a target's ``scope``: which committed runs its bar and must_beat gate.
SCOPES = ("any", "reference", "report")
#: The runs a paper may have committed, in the order they are checked: the default-profile
#: ``reports/<paper>/metrics.json``, the interim ``partial/`` snapshot and the paper-scale
#: ``reference/`` snapshot.
RUNS = ("default", "partial", "reference")
#: The keys a target entry may have (the header of ``paper_targets.yaml`` documents them). Any
#: other key is a typo: ``must_bet`` would otherwise drop the must_beat gate without a word.
TARGET_KEYS = (
    "name", "metric", "paper", "bar", "must_beat", "resolved_by", "scope", "unit", "definition",
    "where", "note",
)
#: The keys of a paper's entry, of its ``data_scale`` and of ``data_scale.ours``.
PAPER_KEYS = (
    "title", "source", "reference", "stale_runs", "data_scale", "targets", "claims"
)
#: The keys of a paper's ``reference`` and its allowed statuses.
REFERENCE_KEYS = ("status", "reason")
REFERENCE_STATUSES = ("committed", "pending")
#: The keys of a claim (CLAIMS.md §2): a claim is judged on a paired comparison record
#: (``comparison`` + ``expect``) or on a number (``metric`` + ``holds_if``, optional
#: ``interval``).
CLAIM_KEYS = (
    "id", "statement", "where", "comparison", "expect", "metric", "holds_if", "interval", "note"
)
DATA_SCALE_KEYS = ("paper", "ours")
DATA_SCALE_OURS_KEYS = ("metric", "note")


class TargetsError(InputError):
    """``paper_targets.yaml`` is malformed, or names an unknown paper."""


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
    #: Path to the paired comparison record (:func:`esrepro.metrics.paired_comparison`, ours as
    #: side ``a``) of a ``must_beat``: a point estimate that does not beat fails only when the
    #: record resolves the other model as better (a small test set cannot tell noise apart).
    resolved_by: str | None = None
    scope: str = "any"
    note: str = ""

    def gated(self, run: str) -> bool:
        """Whether the bar and ``must_beat`` gate the metrics of ``run`` (one of :data:`RUNS`).

        ``any`` gates every committed run, ``reference`` only the paper-scale reference run,
        ``report`` none (always shown as "not gated: would pass/fail").
        """
        return self.scope == "any" or (self.scope == "reference" and run == "reference")


@dataclass(frozen=True)
class Reference:
    """Whether the paper-scale reference run is committed, or pending and why."""

    status: str  # "committed" or "pending"
    reason: str = ""


@dataclass(frozen=True)
class Claim:
    """A statement of the paper, judged on the largest run holding its record (never a gate)."""

    id: str
    statement: str
    where: str
    comparison: str | None = None  # path to a paired_comparison record
    expect: str | None = None  # the model the paper says wins that comparison
    metric: str | None = None  # path to a number ...
    holds_if: Mapping[str, float] | None = None  # ... that must meet {min} and/or {max}
    interval: str | None = None  # optional path to [lo, hi] of that number
    note: str = ""


@dataclass(frozen=True)
class PaperTargets:
    """All targets and claims of one paper plus where its metrics live."""

    paper: str
    title: str
    data_scale: Mapping[str, Any]
    targets: tuple[Target, ...]
    reference: Reference = Reference("committed")
    claims: tuple[Claim, ...] = ()
    #: Committed snapshots (``partial``) older than the targets they would be gated on, with
    #: why: checked for integrity only, and said so, until re-taken.
    stale_runs: Mapping[str, str] = field(default_factory=dict)

    @property
    def metrics_rel(self) -> str:
        """The default-profile metrics file, relative to the root (as dvc.lock records it)."""
        return f"reports/{self.paper}/metrics.json"

    @property
    def reference_rel(self) -> str:
        """The reference-run directory, relative to the root."""
        return f"reports/{self.paper}/reference"

    @property
    def scale_metric(self) -> str:
        """Metric path of our data scale: ``data_scale.ours.metric``, else ``n_materials``."""
        ours = (self.data_scale or {}).get("ours") or {}
        return str(ours.get("metric") or "n_materials")

    def run_dir_rel(self, run: str) -> str:
        """Folder holding ``run``'s metrics.json, relative to the root."""
        return f"reports/{self.paper}" if run == "default" else f"reports/{self.paper}/{run}"


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


def _parse_bar(raw: Any, where: str, what: str = "bar") -> dict[str, float] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not raw or set(raw) - {"max", "min"}:
        raise TargetsError(f"{where}: {what} must be null or a mapping with 'max' and/or 'min'")
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in raw.values()):
        raise TargetsError(f"{where}: {what} values must be numbers ({dict(raw)!r})")
    return {str(k): float(v) for k, v in raw.items()}


def _text(raw: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    """A non-empty string under ``key`` (required), or "" when optional and absent/null."""
    value = raw.get(key)
    if value is None and not required:
        return ""
    if key not in raw:
        raise TargetsError(f"{where}: missing key {key!r}")
    if not isinstance(value, str) or not value.strip():
        raise TargetsError(f"{where}: {key} must be a non-empty string, not {value!r:.80}")
    return value


def _parse_reference(raw: Any, where: str) -> Reference:
    """``reference: {status: committed}`` or ``{status: pending, reason: "..."}``."""
    where = f"{where}.reference"
    if not isinstance(raw, Mapping):
        raise TargetsError(
            f"{where}: expected {{status: committed}} or {{status: pending, reason: ...}}, "
            f"not {raw!r:.80}"
        )
    _reject_unknown_keys(raw, REFERENCE_KEYS, where)
    status = raw.get("status")
    if status not in REFERENCE_STATUSES:
        raise TargetsError(f"{where}: status must be one of {REFERENCE_STATUSES}, not {status!r}")
    reason = _text(raw, "reason", where, required=status == "pending")
    return Reference(status=str(status), reason=" ".join(reason.split()))


def _parse_claim(raw: Any, where: str) -> Claim:
    if not isinstance(raw, Mapping):
        raise TargetsError(f"{where}: expected a mapping, not {raw!r:.80}")
    claim_id = _text(raw, "id", where)
    where = f"{where} ({claim_id})"
    _reject_unknown_keys(raw, CLAIM_KEYS, where)
    statement, said_where = _text(raw, "statement", where), _text(raw, "where", where)
    note = _text(raw, "note", where, required=False)
    if ("comparison" in raw) == ("metric" in raw):
        raise TargetsError(
            f"{where}: a claim needs exactly one of 'comparison' (with 'expect') or 'metric' "
            "(with 'holds_if')"
        )
    if "comparison" in raw:
        for key in ("holds_if", "interval"):
            if key in raw:
                raise TargetsError(
                    f"{where}: {key!r} belongs to a 'metric' claim, not a comparison"
                )
        return Claim(
            claim_id, statement, said_where, note=note,
            comparison=_text(raw, "comparison", where), expect=_text(raw, "expect", where),
        )
    if "expect" in raw:
        raise TargetsError(f"{where}: 'expect' belongs to a 'comparison' claim, not a metric")
    holds_if = _parse_bar(_require(raw, "holds_if", where), where, "holds_if")
    if holds_if is None:
        raise TargetsError(f"{where}: holds_if must be a mapping with 'max' and/or 'min'")
    return Claim(
        claim_id, statement, said_where, note=note,
        metric=_text(raw, "metric", where), holds_if=holds_if,
        interval=_text(raw, "interval", where, required=False) or None,
    )


def _parse_claims(raw: Any, where: str) -> tuple[Claim, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        raise TargetsError(f"{where}: 'claims' must be a list")
    claims = tuple(_parse_claim(c, f"{where}.claims[{i}]") for i, c in enumerate(raw))
    ids = [c.id for c in claims]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise TargetsError(f"{where}: duplicate claim id(s) {duplicates}")
    return claims


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
    resolved_by = raw.get("resolved_by")
    if resolved_by is not None and (not isinstance(resolved_by, str) or not must_beat):
        raise TargetsError(f"{where}: resolved_by must be a metric path and needs must_beat")
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
        resolved_by=resolved_by,
        scope=scope,
        note=str(raw.get("note") or ""),
    )


def load_targets(path: str | Path) -> dict[str, PaperTargets]:
    """Read and validate ``paper_targets.yaml``; returns paper name -> :class:`PaperTargets`."""
    path = Path(path)
    if not path.is_file():
        raise TargetsError(f"targets file not found: {path}")
    doc = read_yaml(path, error=TargetsError, loader=UniqueKeyLoader)
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
            reference=_parse_reference(_require(spec, "reference", where), where),
            claims=_parse_claims(spec.get("claims"), where),
            stale_runs=_parse_stale_runs(spec.get("stale_runs"), where),
        )
    return out


def _parse_stale_runs(raw: Any, where: str) -> dict[str, str]:
    """``stale_runs: {partial: "why"}``: snapshots gated for integrity only until re-taken."""
    if raw is None:
        return {}
    where = f"{where}.stale_runs"
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in raw.items()
    ):
        raise TargetsError(f"{where}: expected {{<run>: <reason>}}, not {raw!r:.80}")
    unknown = sorted(set(raw) - {"partial", "reference"})
    if unknown:
        raise TargetsError(f"{where}: only partial or reference may be stale, not {unknown}")
    return {k: " ".join(v.split()) for k, v in raw.items()}
