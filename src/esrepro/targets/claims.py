"""Judge a paper's claims on one run's metrics: holds, fails, not resolved or missing.

A claim (``claims:`` in ``reports/paper_targets.yaml``; CLAIMS.md §2) is a statement of the paper.
A *comparison* claim names a paired comparison record (:func:`esrepro.metrics.paired_comparison`)
and the model the paper says wins: it holds when that model is the resolved winner, fails when
the other one is, and is not resolved when the 95% interval of the difference straddles zero. A
*metric* claim names a number and the range ``holds_if`` it must fall in; with ``interval`` (the
path of ``[lo, hi]`` for that number) it holds when the whole interval is in range, fails when
none of it is, and is not resolved otherwise. A record or number absent from the metrics is
``missing``: a defect, shown loudly, but claims never gate CI: a claim that does not reproduce
is a result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from esrepro.metrics import MIN_RESOLVING_SAMPLES
from esrepro.targets.check import MISSING, as_number, get_node
from esrepro.targets.schema import Claim

#: The verdicts, in the order a summary lists them.
VERDICTS = ("holds", "fails", "not resolved", "missing")


@dataclass(frozen=True)
class ClaimResult:
    """A claim's verdict and the numbers it rests on (``ours``), or why it is missing."""

    claim: Claim
    verdict: str
    ours: str = ""
    detail: str = ""
    #: The run whose metrics judged it ("" until :func:`judge_on_runs` sets it).
    run: str = ""


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def range_text(holds_if: Mapping[str, float]) -> str:
    """``{min: a, max: b}`` as "≥ a and ≤ b" (a claim's holds_if, a target's bar)."""
    parts = []
    if "min" in holds_if:
        parts.append(f"≥ {holds_if['min']:g}")
    if "max" in holds_if:
        parts.append(f"≤ {holds_if['max']:g}")
    return " and ".join(parts)


def _in_range(value: float, holds_if: Mapping[str, float]) -> bool:
    return holds_if.get("min", -float("inf")) <= value <= holds_if.get("max", float("inf"))


def _judge_comparison(claim: Claim, metrics: Mapping[str, Any]) -> ClaimResult:
    record = get_node(metrics, claim.comparison or "")
    if record is MISSING:
        return ClaimResult(claim, "missing", detail=f"{claim.comparison} not in the metrics")
    if not isinstance(record, Mapping) or not {"a", "b", "winner"} <= set(record):
        return ClaimResult(
            claim, "missing", detail=f"{claim.comparison} is not a paired comparison record"
        )
    a, b, winner = record["a"], record["b"], record["winner"]
    if claim.expect not in (a, b):
        return ClaimResult(
            claim,
            "missing",
            detail=f"expect {claim.expect!r} is neither model of {claim.comparison} ({a!r}, {b!r})",
        )
    lo_hi = record.get("ci95")
    lo, hi = (
        (as_number(lo_hi[0]), as_number(lo_hi[1]))
        if isinstance(lo_hi, Sequence) and len(lo_hi) == 2
        else (None, None)
    )
    mean_a, mean_b = (_num(as_number(record.get(k))) for k in ("mean_a", "mean_b"))
    ours = (
        f"{a} {mean_a} vs {b} {mean_b}"
        f"; diff {_num(as_number(record.get('diff')))} [{_num(lo)}, {_num(hi)}]"
        f", n={record.get('n', '?')}"
    )
    if winner is None:
        n = as_number(record.get("n"))
        why = (
            f"fewer than {MIN_RESOLVING_SAMPLES} held-out samples"
            if n is not None and n < MIN_RESOLVING_SAMPLES
            else "the 95% interval includes 0"
        )
        return ClaimResult(claim, "not resolved", ours, why)
    if winner == claim.expect:
        return ClaimResult(claim, "holds", ours, f"{winner} wins, resolved")
    return ClaimResult(claim, "fails", ours, f"{winner} wins, resolved")


def _judge_metric(claim: Claim, metrics: Mapping[str, Any]) -> ClaimResult:
    holds_if = claim.holds_if or {}
    wanted = range_text(holds_if)
    value = as_number(get_node(metrics, claim.metric or ""))
    if value is None:
        return ClaimResult(claim, "missing", detail=f"{claim.metric} not in the metrics")
    if claim.interval is None:
        verdict = "holds" if _in_range(value, holds_if) else "fails"
        return ClaimResult(claim, verdict, _num(value), f"needs {wanted}")
    interval = get_node(metrics, claim.interval)
    bounds = (
        [as_number(v) for v in interval]
        if isinstance(interval, Sequence) and not isinstance(interval, str) and len(interval) == 2
        else [None, None]
    )
    if None in bounds:
        return ClaimResult(
            claim, "missing", _num(value), f"{claim.interval}: no [lo, hi] interval in the metrics"
        )
    lo, hi = sorted(bounds)  # type: ignore[type-var]
    ours = f"{_num(value)} [{_num(lo)}, {_num(hi)}]"
    if _in_range(lo, holds_if) and _in_range(hi, holds_if):
        return ClaimResult(claim, "holds", ours, f"needs {wanted}; the whole interval does")
    none_in = hi < holds_if.get("min", -float("inf")) or lo > holds_if.get("max", float("inf"))
    if none_in:
        return ClaimResult(claim, "fails", ours, f"needs {wanted}; none of the interval does")
    return ClaimResult(claim, "not resolved", ours, f"needs {wanted}; the interval straddles it")


def judge_claim(claim: Claim, metrics: Mapping[str, Any]) -> ClaimResult:
    """One claim's verdict on ``metrics`` (a run's metrics.json)."""
    if claim.comparison is not None:
        return _judge_comparison(claim, metrics)
    return _judge_metric(claim, metrics)


def evaluate_claims(claims: Sequence[Claim], metrics: Mapping[str, Any]) -> list[ClaimResult]:
    """Every claim's verdict on ``metrics``, in the file's order."""
    return [judge_claim(c, metrics) for c in claims]


def judge_on_runs(
    claims: Sequence[Claim], runs: Sequence[tuple[str, Mapping[str, Any]]]
) -> list[ClaimResult]:
    """Every claim judged on the first of ``runs`` (name, metrics; largest run first) whose
    metrics hold what the claim needs: an older snapshot without a newer record does not hide
    the claim, and the result names the run that judged it. A claim no run can judge is
    "missing" on the first run."""
    results = []
    for claim in claims:
        judged = [replace(judge_claim(claim, metrics), run=name) for name, metrics in runs]
        if judged:
            results.append(next((r for r in judged if r.verdict != "missing"), judged[0]))
    return results
