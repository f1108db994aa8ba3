"""The gate checks every committed run (default, partial/, reference/) against its scope's bars.

Fixture: ``test_targets.make_repo`` (targets: ``model_test_mae`` bar + must_beat and
``validation`` bar at scope any, ``scale`` at scope reference, ``baseline`` informational).
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
from rich.console import Console

from esrepro.targets import file_md5, run_check_targets, snapshot_reference
from test_targets import (
    GOOD_METRICS,
    METRICS_REL,
    PAPER,
    TARGETS_REL,
    _check,
    _write_lock,
    _write_targets,
    make_repo,
)

BIG = {**GOOD_METRICS, "n_materials": 95}  # meets the reference-scope bar (>= 90)


def _rerun(root: Path, metrics: dict) -> None:
    """New default-profile outputs and their dvc.lock entry, as ``dvc repro`` leaves them."""
    path = root / METRICS_REL
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    _write_lock(root, {METRICS_REL: file_md5(path)})


def _repo(
    tmp_path: Path,
    default: dict = GOOD_METRICS,
    *,
    partial: dict | None = None,
    reference: dict | None = None,
    status: str | None = None,
) -> Path:
    """A repository whose committed runs hold the given metrics (each snapshot taken from a
    pipeline run with those metrics); the reference status follows the reference's presence
    unless ``status`` is given."""
    root = make_repo(tmp_path, default)
    for name, metrics in (("partial", partial), ("reference", reference)):
        if metrics is not None:
            _rerun(root, metrics)
            snapshot_reference(PAPER, root=root, name=name)
    _rerun(root, default)
    status = status or ("committed" if reference is not None else "pending")
    declared = {"status": status} | ({"reason": "waits for the toy DFT"} if status == "pending"
                                     else {})
    _write_targets(root, lambda doc: doc["papers"][PAPER].update(reference=declared))
    return root


def _verdict(check, run: str, target: str) -> str:
    return next(r.verdict for r in check.run(run).rows if r.target.name == target)


def _output(root: Path, fmt: str = "rich") -> tuple[int, str]:
    out = io.StringIO()
    code = run_check_targets(root=root, console=Console(file=out, width=1000), fmt=fmt)
    return code, out.getvalue()


def test_every_committed_run_is_checked(tmp_path: Path) -> None:
    check = _check(_repo(tmp_path, partial=BIG, reference=BIG))
    assert check.ok, check.failures
    assert [r.run for r in check.runs] == ["default", "partial", "reference"]
    assert check.source == "reference"
    for run in check.runs:
        assert len(run.rows) == 4 and len(run.verified) == 1, run.run


def test_scope_any_gates_the_partial_run(tmp_path: Path) -> None:
    # The DFT validation fails on the partial run only: the gate fails, naming the run.
    root = _repo(tmp_path, partial={**GOOD_METRICS, "validation_mae": 0.2})
    check = _check(root)
    assert not check.ok
    assert check.failures == ["partial run: validation (validation_mae): 0.2 > max 0.15"]
    assert _verdict(check, "partial", "validation") == "REGRESSION"
    assert _verdict(check, "default", "validation") == "ok"
    code, output = _output(root)
    assert code == 1 and "targets FAILED: 1 gate failure(s)" in output


def test_scope_any_gates_the_default_run_beside_a_reference(tmp_path: Path) -> None:
    # A committed reference does not exempt the default run: it no longer beats LRLIDG.
    default = {**BIG, "lrlidg": {"test": {"mae": 0.25}}}
    check = _check(_repo(tmp_path, default, reference=BIG))
    assert check.failures == [
        "default run: model_test_mae (model.test.mae): does not beat lrlidg.test.mae "
        "(0.3 ≥ 0.25)"
    ]


def test_scope_reference_gates_only_the_reference_run(tmp_path: Path) -> None:
    small = GOOD_METRICS  # n_materials 20 < 90
    check = _check(_repo(tmp_path, small, partial=small, reference=small))
    assert _verdict(check, "default", "scale") == "not gated: would fail"
    assert _verdict(check, "partial", "scale") == "not gated: would fail"
    assert _verdict(check, "reference", "scale") == "REGRESSION"
    assert check.failures == ["reference run: scale (n_materials): 20 < min 90"]


def test_hand_edited_partial_fails(tmp_path: Path) -> None:
    root = _repo(tmp_path, partial=BIG)
    path = root / "reports" / PAPER / "partial" / "metrics.json"
    path.write_text(path.read_text().replace('"n_materials": 95', '"n_materials": 96'))
    failures = _check(root).failures
    assert len(failures) == 1
    assert failures[0].startswith(f"partial run: reports/{PAPER}/partial/metrics.json: md5 ")
    assert "differs" in failures[0] and "partial/provenance.json" in failures[0]


def test_partial_without_provenance_fails(tmp_path: Path) -> None:
    root = _repo(tmp_path, partial=BIG)
    (root / "reports" / PAPER / "partial" / "provenance.json").unlink()
    assert _check(root).failures == [
        f"partial run: reports/{PAPER}/partial/metrics.json has no provenance.json"
    ]


def test_pending_reference_is_one_note_and_passes(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    check = _check(root)
    assert check.ok and check.notes == ["toy: reference run pending: waits for the toy DFT"]
    code, output = _output(root)
    assert code == 0
    assert output.count("reference run pending: waits for the toy DFT") == 1
    assert "; reference pending: toy" in output


def test_missing_reference_that_is_not_pending_fails(tmp_path: Path) -> None:
    root = _repo(tmp_path, status="committed")
    check = _check(root)
    assert len(check.failures) == 1 and not check.notes
    assert check.failures[0].startswith(
        f"no reference run: reports/{PAPER}/reference/metrics.json does not exist"
    )
    assert _output(root)[0] == 1


def test_committed_reference_declared_pending_fails(tmp_path: Path) -> None:
    check = _check(_repo(tmp_path, reference=BIG, status="pending"))
    assert check.failures == [
        f"reports/{PAPER}/reference/ is committed but paper_targets.yaml says the reference "
        "is pending: set reference: {status: committed}"
    ]


def test_missing_default_metrics_fail(tmp_path: Path) -> None:
    root = _repo(tmp_path, reference=BIG)
    (root / METRICS_REL).unlink()
    check = _check(root)
    assert check.failures == [
        f"no default-profile metrics: {METRICS_REL} does not exist (run the pipeline)"
    ]
    assert check.source == "reference"  # the reference is still checked


def test_other_snapshots_are_checked_for_integrity_only(tmp_path: Path) -> None:
    # A snapshot kept for the record may miss every bar: only its hashes gate.
    root = _repo(tmp_path, partial={**GOOD_METRICS, "validation_mae": 0.5})
    (root / "reports" / PAPER / "partial").rename(root / "reports" / PAPER / "scale_run")
    check = _check(root)
    assert check.ok, check.failures
    record = check.run("scale_run")
    assert record.integrity_only and not record.rows and record.verified
    assert check.source == "default"  # claims are never judged on it
    path = root / "reports" / PAPER / "scale_run" / "metrics.json"
    path.write_text(path.read_text().replace("0.5", "0.1"))
    assert any(
        f.startswith("scale_run run: reports/toy/scale_run/metrics.json: md5") for f in
        _check(root).failures
    )


def test_table_shows_each_run_and_what_was_gated(tmp_path: Path) -> None:
    root = _repo(tmp_path, partial=BIG)
    code, output = _output(root, fmt="markdown")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0] == (
        "| paper | run | metric | unit | paper value | ours | ratio | bar | data scale | verdict |"
    )
    assert "| toy | default | model.test.mae | eV | 0.25 | 0.3 | 1.200 |" in output
    assert "|  | partial |  |  |  | 0.3 | 1.200 |  | 95 / 100 | ok |" in output
    assert "|  | partial |  |  |  | 95 | 0.950 |  | 95 / 100 | not gated: would pass |" in output
    assert "| 20 / 100 | not gated: would fail (20 < min 90) |" in output
    # The last line says what held, so a green run cannot hide that nothing was gated.
    assert lines[-1] == (
        "targets OK: 2 committed run(s) of 1 paper(s): 2 metrics file(s) match their recorded "
        "md5, 4 gated target check(s); reference pending: toy"
    )


def test_unknown_format_cannot_check(tmp_path: Path) -> None:
    assert _output(_repo(tmp_path), fmt="html")[0] == 2


def test_claims_do_not_rescue_a_failed_gate(tmp_path: Path) -> None:
    root = _repo(tmp_path, {**GOOD_METRICS, "validation_mae": 0.3})
    claim = {"id": "c", "statement": "s", "where": "w", "metric": "validation_mae",
             "holds_if": {"max": 1}}
    _write_targets(root, lambda doc: doc["papers"][PAPER].update(claims=[claim]))
    code, output = _output(root)
    assert code == 1 and "holds" in output


def test_make_test_runs_the_gate(repo_root: Path) -> None:
    """``make test`` (what .ci/run calls) runs the suite and check-targets, each able to fail it."""
    assert "make test" in (repo_root / ".ci" / "run").read_text()
    dry = subprocess.run(
        ["make", "-n", "test"], cwd=repo_root, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "python -m pytest" in dry
    assert "esrepro check-targets" in dry
    assert "esrepro claims --check" in dry
    # make stops at the first failing command: none of them may be prefixed to ignore errors.
    make_text = (repo_root / "Makefile").read_text()
    test_recipe = make_text.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "\t-" not in test_recipe and "|| true" not in test_recipe


def test_targets_file_schema_error_still_exits_2(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    _write_targets(root, lambda doc: doc["papers"][PAPER].update(reference={"status": "done"}))
    code, output = _output(root)
    assert code == 2 and "status must be one of ('committed', 'pending')" in output
    assert (root / TARGETS_REL).is_file()


def test_resolved_by_lets_only_a_resolved_loss_fail(tmp_path: Path) -> None:
    from esrepro.metrics import paired_comparison, write_json
    from esrepro.targets.check import evaluate
    from esrepro.targets.schema import Target

    target = Target(
        name="ae", metric="ae.test.mae", paper=None, bar=None, unit="u", definition="d",
        where="w", must_beat=("mean.test.mae",), resolved_by="comparisons.ae_vs_mean",
    )
    hard = np.linspace(0.01, 0.05, 12)
    noisy = hard + np.array([0.004, -0.003, 0.002, -0.001, 0.003, -0.002, 0.001, 0.0] + [0.0] * 4)
    tie = paired_comparison(noisy, hard, names=("ae", "mean"))
    assert tie["winner"] is None and noisy.mean() > hard.mean()
    metrics = {"ae": {"test": {"mae": float(noisy.mean())}},
               "mean": {"test": {"mae": float(hard.mean())}}, "comparisons": {"ae_vs_mean": tie}}
    row = evaluate(target, metrics, "default")
    assert not row.failed and row.verdict == "ok (within noise)" and "not resolved" in row.detail
    worse = paired_comparison(hard + 0.01, hard, names=("ae", "mean"))
    metrics["comparisons"]["ae_vs_mean"] = worse
    metrics["ae"]["test"]["mae"] = float(hard.mean() + 0.01)
    assert evaluate(target, metrics, "default").verdict == "REGRESSION"
    del metrics["comparisons"]  # no record: the point estimate decides
    assert evaluate(target, metrics, "default").failed
    # One held-out sample (a tiny default run): the record as metrics.json stores it has no
    # interval (null) and resolves nothing, so a lost point estimate is shown, not failed.
    write_json(
        tmp_path / "m.json", paired_comparison(hard[:1] + 0.01, hard[:1], names=("ae", "mean"))
    )
    one = json.loads((tmp_path / "m.json").read_text())
    assert one["ci95"] == [None, None] and one["winner"] is None
    metrics["comparisons"] = {"ae_vs_mean": one}
    row = evaluate(target, metrics, "default")
    assert not row.failed and row.verdict == "ok (within noise)"
    assert "1 held-out samples, fewer than 10" in row.detail


def test_a_stale_partial_run_is_checked_for_integrity_only_and_said_so(tmp_path: Path) -> None:
    root = _repo(tmp_path, partial={**GOOD_METRICS, "validation_mae": 0.2})
    assert _output(root)[0] == 1  # a failing partial run fails ...

    def declare(runs: dict) -> None:
        _write_targets(root, lambda doc: doc["papers"][PAPER].update(stale_runs=runs))

    declare({"partial": "taken before the bar existed"})
    code, output = _output(root)
    assert code == 0, output  # ... unless declared stale, which is printed
    assert "partial run checked for integrity only until re-taken" in output
    summary = output.strip().splitlines()[-1]
    assert f"stale, integrity only: {PAPER} partial" in summary
    assert "reference pending: toy" in summary  # the toy paper's reference is pending, not stale
    declare({"reference": "no such run"})
    code, output = _output(root)
    assert code == 1 and "declares the reference run stale" in output
