"""``reports/paper_targets.yaml``: its schema, read strictly into :class:`PaperTargets`.

Per paper it records every number we compare against: the metric path into the paper's
metrics JSON, the paper's value (``null`` when the paper only shows a figure), the bar that must
hold, the unit, the metric's definition, where in the paper it comes from and the data scale.
An unknown key, a duplicated key or a wrong shape is a :class:`TargetsError` naming the file.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esrepro.strict_io import InputError, UniqueKeyLoader, read_yaml

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
    scope: str = "any"
    note: str = ""

    def gated(self, source: str) -> bool:
        """Whether the bar and ``must_beat`` gate metrics of a "reference" or "default" run."""
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
        )
    return out
