"""Claims: strict schema, the four verdicts, the compared run, README's table and its drift check.

Comparison records are made by the real :func:`esrepro.metrics.paired_comparison`, so a change
of its record shape breaks these tests rather than passing them with hand-written records.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from esrepro.cli import app
from esrepro.metrics import paired_comparison
from esrepro.targets import (
    Claim,
    TargetsError,
    judge_claim,
    load_targets,
    paper_vs_ours,
    run_claims,
)
from esrepro.targets.readme import BEGIN, END
from test_targets import GOOD_METRICS, METRICS_REL, PAPER, TARGETS_REL, _write_targets
from test_targets_gate import _repo, _rerun

BASE = np.random.default_rng(0).uniform(0.5, 1.5, size=200)  # a model's per-sample errors
ALTERNATING = np.where(np.arange(BASE.size) % 2, 1.0, -1.0)  # mean exactly 0


def _record(shift: float, spread: float = 0.01) -> dict:
    """Paired record of "model" (errors BASE) against "baseline", whose errors differ by
    ``shift`` on average and by ``±spread`` sample to sample (as stored in metrics.json)."""
    other = BASE + shift + spread * ALTERNATING
    return json.loads(json.dumps(paired_comparison(BASE, other, names=("model", "baseline"))))


def _comparison(expect: str = "model") -> Claim:
    return Claim("c", "model beats baseline", "Fig. 1", comparison="cmp", expect=expect)


def _metric(holds_if: dict, interval: str | None = None) -> Claim:
    return Claim("m", "ratio about 3", "Sec. 5", metric="ratio", holds_if=holds_if,
                 interval=interval)


# --------------------------------------------------------------------------------------------
# verdicts


def test_comparison_holds_when_the_expected_model_wins_resolved() -> None:
    record = _record(0.2)
    result = judge_claim(_comparison(), {"cmp": record})
    assert result.verdict == "holds"
    lo, hi = record["ci95"]
    assert hi < 0
    assert result.ours == (
        f"model {BASE.mean():.3g} vs baseline {BASE.mean() + 0.2:.3g}; diff -0.2 "
        f"[{lo:.3g}, {hi:.3g}], n=200"
    )


def test_comparison_fails_when_the_other_model_wins_resolved() -> None:
    assert judge_claim(_comparison("baseline"), {"cmp": _record(0.2)}).verdict == "fails"
    assert judge_claim(_comparison(), {"cmp": _record(-0.2)}).verdict == "fails"


def test_comparison_not_resolved_when_the_interval_includes_zero() -> None:
    record = _record(0.0, spread=0.3)
    assert record["winner"] is None and record["ci95"][0] < 0 < record["ci95"][1]
    result = judge_claim(_comparison(), {"cmp": record})
    assert result.verdict == "not resolved"


@pytest.mark.parametrize(
    ("metrics", "detail"),
    [
        ({}, "cmp not in the metrics"),
        ({"cmp": 0.3}, "cmp is not a paired comparison record"),
        ({"cmp": {"a": "model", "b": "baseline"}}, "cmp is not a paired comparison record"),
        ({"cmp": {"a": "x", "b": "y", "winner": "x"}}, "expect 'model' is neither model of cmp"),
    ],
)
def test_comparison_missing(metrics: dict, detail: str) -> None:
    result = judge_claim(_comparison(), metrics)
    assert result.verdict == "missing" and result.detail.startswith(detail)


@pytest.mark.parametrize(
    ("value", "holds_if", "verdict"),
    [
        (3.2, {"min": 3.0}, "holds"),
        (3.0, {"min": 3.0}, "holds"),  # inclusive
        (1.3, {"min": 3.0}, "fails"),
        (2.5, {"min": 1.5, "max": 2.4}, "fails"),
        (2.0, {"min": 1.5, "max": 2.4}, "holds"),
    ],
)
def test_metric_claim(value: float, holds_if: dict, verdict: str) -> None:
    assert judge_claim(_metric(holds_if), {"ratio": value}).verdict == verdict


@pytest.mark.parametrize(
    ("interval", "verdict"),
    [([3.1, 3.6], "holds"), ([1.0, 2.9], "fails"), ([2.5, 3.5], "not resolved")],
)
def test_metric_claim_with_interval(interval: list, verdict: str) -> None:
    metrics = {"ratio": 3.2, "ratio_ci95": interval}
    result = judge_claim(_metric({"min": 3.0}, "ratio_ci95"), metrics)
    assert result.verdict == verdict
    assert result.ours == f"3.2 [{interval[0]:.3g}, {interval[1]:.3g}]"


@pytest.mark.parametrize(
    "metrics", [{}, {"ratio": None}, {"ratio": 3.2}, {"ratio": 3.2, "ratio_ci95": [None, 4]}]
)
def test_metric_claim_missing(metrics: dict) -> None:
    result = judge_claim(_metric({"min": 3.0}, "ratio_ci95"), metrics)
    assert result.verdict == "missing"


# --------------------------------------------------------------------------------------------
# schema

CLAIM = {"id": "c1", "statement": "model beats linear", "where": "Fig. 4",
         "metric": "model.test.mae", "holds_if": {"max": 0.5}}


def _set_claims(root: Path, claims) -> None:
    _write_targets(root, lambda doc: doc["papers"][PAPER].update(claims=claims))


def test_claims_are_read(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    comparison = {"id": "c2", "statement": "s", "where": "w", "comparison": "cmp",
                  "expect": "model", "note": "ours: toy data"}
    _set_claims(root, [CLAIM, comparison])
    claims = load_targets(root / TARGETS_REL)[PAPER].claims
    assert claims[0] == Claim("c1", "model beats linear", "Fig. 4", metric="model.test.mae",
                              holds_if={"max": 0.5})
    assert claims[1].comparison == "cmp" and claims[1].note == "ours: toy data"


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ("abc", r"papers\.toy: 'claims' must be a list"),
        ([{**CLAIM, "statment": "x"}], r"claims\[0\] \(c1\): unknown key 'statment' "
                                       r"\(did you mean 'statement'\?"),
        ([{**CLAIM, "comparison": "cmp"}], r"\(c1\): a claim needs exactly one of"),
        ([{k: v for k, v in CLAIM.items() if k != "metric"}], r"\(c1\): a claim needs exactly"),
        ([{"id": "c", "statement": "s", "where": "w", "comparison": "cmp"}],
         r"claims\[0\] \(c\): missing key 'expect'"),
        ([{k: v for k, v in CLAIM.items() if k != "holds_if"}], r"\(c1\): missing key 'holds_if'"),
        ([{**CLAIM, "holds_if": {"mn": 1}}], r"\(c1\): holds_if must be null or a mapping"),
        ([{**CLAIM, "holds_if": {"min": "3"}}], r"\(c1\): holds_if values must be numbers"),
        ([{**CLAIM, "holds_if": None}], r"\(c1\): holds_if must be a mapping"),
        ([{**CLAIM, "expect": "model"}], r"\(c1\): 'expect' belongs to a 'comparison' claim"),
        ([{"id": "c", "statement": "s", "where": "w", "comparison": "cmp", "expect": "m",
           "interval": "x"}], r"\(c\): 'interval' belongs to a 'metric' claim"),
        ([{**CLAIM, "statement": ""}], r"\(c1\): statement must be a non-empty string"),
        ([CLAIM, CLAIM], r"papers\.toy: duplicate claim id\(s\) \['c1'\]"),
        (["c1"], r"claims\[0\]: expected a mapping"),
    ],
)
def test_malformed_claims_are_rejected(tmp_path: Path, claims, message: str) -> None:
    root = _repo(tmp_path)
    _set_claims(root, claims)
    with pytest.raises(TargetsError, match=message) as info:
        load_targets(root / TARGETS_REL)
    assert str(root / TARGETS_REL) in str(info.value)  # names the file


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (None, r"papers\.toy: missing key 'reference'"),
        ("committed", r"papers\.toy\.reference: expected \{status: committed\}"),
        ({"status": "done"}, r"reference: status must be one of \('committed', 'pending'\)"),
        ({"status": "pending"}, r"papers\.toy\.reference: missing key 'reason'"),
        ({"status": "pending", "reason": " "}, r"reason must be a non-empty string"),
        ({"status": "committed", "why": "x"}, r"reference: unknown key 'why'"),
    ],
)
def test_malformed_reference_is_rejected(tmp_path: Path, reference, message: str) -> None:
    root = _repo(tmp_path)

    def edit(doc: dict) -> None:
        entry = doc["papers"][PAPER]
        entry.pop("reference")
        if reference is not None:
            entry["reference"] = reference

    _write_targets(root, edit)
    with pytest.raises(TargetsError, match=message):
        load_targets(root / TARGETS_REL)


# --------------------------------------------------------------------------------------------
# the compared run, printing, never gating


def _claims_output(root: Path) -> tuple[int, str]:
    from esrepro.targets import run_check_targets

    out = io.StringIO()
    code = run_check_targets(root=root, console=Console(file=out, width=1000))
    return code, out.getvalue()


def test_claims_are_judged_on_the_partial_run_when_there_is_no_reference(tmp_path: Path) -> None:
    partial = {**GOOD_METRICS, "cmp": _record(0.2)}  # only the partial run has the record
    root = _repo(tmp_path, partial=partial)
    _set_claims(root, [{"id": "c", "statement": "model wins", "where": "Fig. 4",
                        "comparison": "cmp", "expect": "model"}])
    code, output = _claims_output(root)
    assert code == 0, output
    assert "toy claims, each on the largest run holding its record" in output
    assert "partial" in output.split("toy claims")[1]
    assert "holds (model wins, resolved)" in output


def test_a_claim_falls_back_to_the_largest_run_that_holds_its_record(tmp_path: Path) -> None:
    from esrepro.metrics import paired_comparison
    from esrepro.targets.claims import judge_on_runs
    from esrepro.targets.schema import Claim

    claim = Claim(id="c", statement="s", where="w", comparison="cmp", expect="a")
    rng = np.random.default_rng(0)
    base = rng.uniform(1, 2, 20)
    runs = [("reference", {}), ("partial", {"cmp": paired_comparison(base, base + 0.1)}),
            ("default", {"cmp": paired_comparison(base + 0.1, base)})]
    (result,) = judge_on_runs([claim], runs)
    assert (result.run, result.verdict) == ("partial", "holds")  # not the older default's
    (missing,) = judge_on_runs([claim], [("reference", {}), ("default", {})])
    assert (missing.run, missing.verdict) == ("reference", "missing")


def test_failing_and_missing_claims_never_gate(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    _set_claims(root, [
        {**CLAIM, "holds_if": {"max": 0.1}},  # 0.3 > 0.1: fails
        {**CLAIM, "id": "c2", "metric": "not.there"},
    ])
    code, output = _claims_output(root)
    assert code == 0, output
    assert "fails (needs ≤ 0.1)" in output and "missing (not.there not in the metrics)" in output


# --------------------------------------------------------------------------------------------
# README table and paper_vs_ours


def _readme_repo(tmp_path: Path) -> Path:
    root = _repo(tmp_path)
    _set_claims(root, [CLAIM])
    (root / "README.md").write_text(f"# toy\n\n## What reproduces\n\n{BEGIN}\n{END}\n\n## More\n")
    return root


def test_readme_table_is_written_between_the_markers(tmp_path: Path) -> None:
    root = _readme_repo(tmp_path)
    quiet = Console(file=io.StringIO())
    assert run_claims(root=root, check=True, console=quiet) == 1  # empty table: stale
    assert run_claims(root=root, write=True, console=quiet) == 0
    text = (root / "README.md").read_text()
    assert text.startswith("# toy\n\n## What reproduces\n\n" + BEGIN + "\n| paper | claim |")
    assert text.endswith(f"{END}\n\n## More\n")
    row = "| toy | model beats linear [c1] | Fig. 4 | default | 0.3 | holds (needs ≤ 0.5) |"
    assert row in text
    assert "1 claim(s): 1 holds, 0 fails, 0 not resolved, 0 missing." in text
    assert run_claims(root=root, check=True, console=quiet) == 0
    assert run_claims(root=root, write=True, console=quiet) == 0
    assert (root / "README.md").read_text() == text  # idempotent


def test_readme_drift_is_detected(tmp_path: Path) -> None:
    root = _readme_repo(tmp_path)
    quiet = Console(file=io.StringIO())
    run_claims(root=root, write=True, console=quiet)
    _rerun(root, {**GOOD_METRICS, "model": {"test": {"mae": 0.6}}})  # the claim now fails
    result = CliRunner().invoke(app, ["claims", "--check", "--root", str(root)])
    assert result.exit_code == 1 and "the claims table is stale" in result.output
    assert CliRunner().invoke(app, ["claims", "--write", "--root", str(root)]).exit_code == 0
    assert "fails (needs ≤ 0.5)" in (root / "README.md").read_text()
    assert CliRunner().invoke(app, ["claims", "--check", "--root", str(root)]).exit_code == 0


def test_readme_without_markers_cannot_be_checked(tmp_path: Path) -> None:
    root = _readme_repo(tmp_path)
    (root / "README.md").write_text("# toy\n")
    out = io.StringIO()
    assert run_claims(root=root, check=True, console=Console(file=out, width=300)) == 2
    assert f"{root / 'README.md'}: expected one line" in out.getvalue()


def test_repository_readme_claims_table_is_current(repo_root: Path) -> None:
    """README.md's "What reproduces" table is what `esrepro claims --write` writes."""
    out = io.StringIO()
    code = run_claims(root=repo_root, check=True, console=Console(file=out, width=300))
    assert code == 0, out.getvalue()


def test_paper_vs_ours_is_markdown_of_one_paper(tmp_path: Path) -> None:
    root = _repo(tmp_path, partial={**GOOD_METRICS, "n_materials": 95})
    _set_claims(root, [CLAIM])
    # Inside a pipeline run dvc.lock lags behind: paper_vs_ours shows numbers, not hashes.
    (root / METRICS_REL).write_text(json.dumps({**GOOD_METRICS, "n_materials": 21}))
    text = paper_vs_ours(PAPER, root)
    assert text.startswith("**A toy paper**\n\n| run | metric | unit | paper value | ours |")
    assert "| default | n_materials | materials | 100 | 21 | 0.210 |" in text
    assert "| partial |  |  |  | 95 | 0.950 |" in text
    assert "Reference run pending: waits for the toy DFT" in text
    assert "Claims of the paper, each judged on the largest run whose metrics hold" in text
    assert "| model beats linear [c1] | Fig. 4 | partial | 0.3 | holds (needs ≤ 0.5) |" in text
    assert "md5" not in text
    with pytest.raises(KeyError, match="no paper 'nope'"):
        paper_vs_ours("nope", root)
