"""Paper-target check: bars, must_beat, dvc.lock / provenance hash gates, reference snapshots.

The fixture repository declares its reference committed (what the snapshot tests need); tests of
a repository without a reference declare it pending (``make_repo(..., reference="pending")``).
"""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from esrepro.cli import app
from esrepro.targets import (
    InputError,
    SnapshotError,
    TargetsError,
    check_paper,
    file_md5,
    load_targets,
    read_dvc_lock,
    read_json,
    recorded_md5,
    run_check_targets,
    snapshot_reference,
)

PAPER = "toy"
METRICS_REL = f"reports/{PAPER}/metrics.json"

TARGETS = {
    "papers": {
        PAPER: {
            "title": "A toy paper",
            "reference": {"status": "committed"},
            "data_scale": {"paper": {"n_materials": 100, "split": "80/20"}},
            "targets": [
                {
                    "name": "model_test_mae",
                    "metric": "model.test.mae",
                    "paper": 0.25,
                    "bar": {"max": 0.35},
                    "must_beat": ["linear.test.mae", "lrlidg.test.mae"],
                    "unit": "eV",
                    "definition": "test MAE",
                    "where": "Fig. 4",
                },
                {
                    "name": "validation",
                    "metric": "validation_mae",
                    "paper": None,
                    "bar": {"max": 0.15},
                    "unit": "eV",
                    "definition": "GPAW vs ecalj",
                    "where": "ours",
                },
                {
                    "name": "scale",
                    "metric": "n_materials",
                    "paper": 100,
                    "bar": {"min": 90},
                    "scope": "reference",
                    "unit": "materials",
                    "definition": "materials",
                    "where": "Sec. II",
                },
                {
                    "name": "baseline",
                    "metric": "linear.test.mae",
                    "paper": None,
                    "bar": None,
                    "unit": "eV",
                    "definition": "linear",
                    "where": "ours",
                },
            ],
        }
    }
}

GOOD_METRICS = {
    "n_materials": 20,
    "validation_mae": 0.09,
    "model": {"train": {"mae": 0.2}, "test": {"mae": 0.3}},
    "linear": {"test": {"mae": 0.6}},
    "lrlidg": {"test": {"mae": 0.5}},
}


def _quiet() -> Console:
    return Console(file=open("/dev/null", "w"), width=200)  # noqa: SIM115 - closed with process


def _write_lock(root: Path, entries: dict[str, str]) -> None:
    """dvc.lock with one stage writing each ``path -> md5`` (the shape DVC 3 writes)."""
    lock = {
        "schema": "2.0",
        "stages": {
            f"{PAPER}_evaluate": {
                "cmd": "python stages/evaluate.py",
                "outs": [
                    {"path": p, "hash": "md5", "md5": md5, "size": 1} for p, md5 in entries.items()
                ],
            },
            "other_stage": {"cmd": "true", "outs": [{"path": "data/x", "md5": "0" * 32}]},
        },
    }
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))


def make_repo(
    tmp_path: Path, metrics: dict | None = None, *, lock: bool = True, reference: str = "committed"
) -> Path:
    """A fake repository: targets file, params, metrics, figures, report and dvc.lock.

    ``reference`` is the status the targets file declares ("pending" gets a reason).
    """
    root = tmp_path / "repo"
    report = root / "reports" / PAPER
    (report / "figures").mkdir(parents=True)
    targets = copy.deepcopy(TARGETS)
    targets["papers"][PAPER]["reference"] = (
        {"status": "pending", "reason": "waits for the toy DFT"}
        if reference == "pending"
        else {"status": reference}
    )
    (root / "reports" / "paper_targets.yaml").write_text(yaml.safe_dump(targets))
    (root / "params.yaml").write_text("model:\n  pooling: mean+max\n")
    metrics_file = root / METRICS_REL
    metrics_file.write_text(json.dumps(metrics or GOOD_METRICS, indent=2, sort_keys=True) + "\n")
    (report / "figures" / "fig1.png").write_bytes(b"\x89PNG fake")
    (report / f"{PAPER}.html").write_text("<html></html>")
    (report / "predictions.csv").write_text("material_id,pred\nmp-1,1.0\n")
    if lock:
        _write_lock(root, {METRICS_REL: file_md5(metrics_file)})
    return root


def _check(root: Path, **kw: bool):
    return check_paper(load_targets(root / "reports" / "paper_targets.yaml")[PAPER], root, **kw)


def test_matching_hashes_pass(tmp_path: Path) -> None:
    root = make_repo(tmp_path, reference="pending")
    check = _check(root)
    assert check.ok, check.failures
    assert check.source == "default"
    assert check.notes == ["toy: reference run pending: waits for the toy DFT"]
    verdicts = {r.target.name: r.verdict for r in check.rows}
    assert verdicts["model_test_mae"] == "ok"
    assert verdicts["baseline"] == "info"
    # n_materials is a paper-scale bar: reported but not gated for the default profile.
    assert verdicts["scale"] == "not gated: would fail"
    ratio = next(r.ratio for r in check.rows if r.target.name == "model_test_mae")
    assert ratio == pytest.approx(0.3 / 0.25)
    assert run_check_targets(root=root, console=_quiet()) == 0


def test_hand_edited_metrics_fail(tmp_path: Path) -> None:
    root = make_repo(tmp_path, reference="pending")
    path = root / METRICS_REL
    edited = json.loads(path.read_text())
    edited["model"]["test"]["mae"] = 0.1  # a better number typed in by hand
    path.write_text(json.dumps(edited, indent=2, sort_keys=True) + "\n")
    check = _check(root)
    assert not check.ok
    assert any("differs from" in f and "dvc.lock" in f for f in check.failures)
    assert run_check_targets(root=root, console=_quiet()) == 1


def test_bar_violation_fails(tmp_path: Path) -> None:
    metrics = {**GOOD_METRICS, "validation_mae": 0.2}
    check = _check(make_repo(tmp_path, metrics, reference="pending"))
    assert not check.ok
    row = next(r for r in check.rows if r.target.name == "validation")
    assert row.verdict == "REGRESSION" and row.failed
    assert "max 0.15" in row.detail


def test_must_beat_violation_fails(tmp_path: Path) -> None:
    # Under the 0.35 bar but worse than the LRLIDG baseline (0.25): still a regression.
    metrics = {**GOOD_METRICS, "lrlidg": {"test": {"mae": 0.25}}}
    check = _check(make_repo(tmp_path, metrics, reference="pending"))
    assert not check.ok
    row = next(r for r in check.rows if r.target.name == "model_test_mae")
    assert row.verdict == "REGRESSION"
    assert "lrlidg.test.mae" in row.detail


def test_missing_metric_with_bar_fails(tmp_path: Path) -> None:
    metrics = {k: v for k, v in GOOD_METRICS.items() if k != "validation_mae"}
    check = _check(make_repo(tmp_path, metrics, reference="pending"))
    assert not check.ok
    assert next(r for r in check.rows if r.target.name == "validation").verdict == "MISSING"


def test_missing_dvc_lock_entry_fails(tmp_path: Path) -> None:
    root = make_repo(tmp_path, lock=False, reference="pending")
    assert any("dvc.lock" in f for f in _check(root).failures)  # no dvc.lock at all
    _write_lock(root, {"reports/toy/other.json": "0" * 32})  # dvc.lock without the file
    check = _check(root)
    assert not check.ok
    assert any("no output 'reports/toy/metrics.json'" in f for f in check.failures)


def test_snapshot_round_trip_passes(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {**GOOD_METRICS, "n_materials": 95})
    provenance_path = snapshot_reference(PAPER, root=root, wall_time_s=1234.5)
    ref = root / "reports" / PAPER / "reference"
    for name in ("metrics.json", "figures/fig1.png", f"{PAPER}.html", "predictions.csv"):
        assert (ref / name).is_file(), name
    provenance = json.loads(provenance_path.read_text())
    assert provenance["wall_time_s"] == 1234.5
    assert provenance["params"] == {"model": {"pooling": "mean+max"}}
    assert set(provenance["dvc_lock"]) == {f"{PAPER}_evaluate"}
    assert provenance["machine"]["cpu_count"] >= 1
    assert provenance["created"].endswith("Z")
    assert "git_commit" in provenance
    stage_md5 = recorded_md5(provenance["dvc_lock"], METRICS_REL)
    assert stage_md5 is not None and stage_md5[1] == file_md5(ref / "metrics.json")

    check = _check(root)
    assert check.ok, check.failures
    assert check.source == "reference" and not check.warnings and not check.notes
    # At reference scope the paper-scale bar is gated (95 >= 90 holds).
    ref_rows = check.run("reference").rows
    assert next(r for r in ref_rows if r.target.name == "scale").verdict == "ok"

    # Editing the committed reference by hand breaks the provenance hash.
    (ref / "metrics.json").write_text((ref / "metrics.json").read_text().replace("0.3", "0.2"))
    check = _check(root)
    assert any("provenance.json" in f and "differs" in f for f in check.failures)


def test_snapshot_refuses_unrecorded_metrics(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    (root / METRICS_REL).write_text('{"n_materials": 1}\n')
    with pytest.raises(SnapshotError, match="differs"):
        snapshot_reference(PAPER, root=root)
    assert not (root / "reports" / PAPER / "reference" / "provenance.json").exists()


def test_targets_file_validation(tmp_path: Path) -> None:
    bad = tmp_path / "targets.yaml"
    bad.write_text(yaml.safe_dump({"papers": {"x": {"targets": [{"name": "a", "metric": "m"}]}}}))
    with pytest.raises(TargetsError, match="missing key 'paper'"):
        load_targets(bad)
    root = make_repo(tmp_path)
    assert run_check_targets(["nope"], root=root, console=_quiet()) == 2


def test_repository_targets_file_is_valid(repo_root: Path) -> None:
    targets = load_targets(repo_root / "reports" / "paper_targets.yaml")
    dosnp = targets["dosnp"]
    by_name = {t.name: t for t in dosnp.targets}
    assert by_name["dosnp_test_mae"].bar == {"max": 0.35}
    assert set(by_name["dosnp_test_mae"].must_beat) == {"linear.test.mae", "lrlidg.test.mae"}
    assert by_name["gpaw_vs_ecalj_lda_gap_mae"].bar == {"max": 0.15}
    assert by_name["gpaw_vs_ecalj_lda_gap_mae"].scope == "any"  # the DFT check gates every run
    assert by_name["n_materials"].paper == 1516
    # The paper-scale references of DOSnp and ALIGNN-DOS wait for their DFT; LDOS's is there.
    for paper in ("dosnp", "alignn_dos"):
        assert targets[paper].reference.status == "pending"
        assert "esrepro seed status" in targets[paper].reference.reason
    assert targets["ldos"].reference.status == "committed"
    # Every ALIGNN-DOS model must beat the mean spectrum on every committed run.
    alignn = {t.metric: t for t in targets["alignn_dos"].targets}
    for model in ("d_alignn", "ae_alignn_8", "ae_alignn_12", "ae_alignn_16", "ae_alignn_20"):
        target = alignn[f"{model}.test.mae"]
        assert target.must_beat == ("mean_baseline.test.mae",) and target.scope == "any", model


def test_cli(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {**GOOD_METRICS, "n_materials": 95})
    runner = CliRunner()
    result = runner.invoke(app, ["check-targets", "--root", str(root), "--paper", PAPER])
    # Declared committed, not there yet: the gate fails and says what to do.
    assert result.exit_code == 1, result.output
    assert "model.test.mae" in result.output and "no reference run" in result.output
    result = runner.invoke(
        app, ["snapshot-reference", PAPER, "--root", str(root), "--wall-time-s", "60"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["check-targets", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "targets OK: 2 committed run(s) of 1 paper(s)" in result.output
    (root / METRICS_REL).write_text('{"n_materials": 1}\n')
    result = runner.invoke(app, ["check-targets", "--root", str(root)])
    assert result.exit_code == 1


def test_metric_paths_whose_keys_hold_dots() -> None:
    from esrepro.targets import get_metric

    metrics = {"d_alignn": {"test": {"frac_mae_lt_0.02": 0.5, "mae": 0.01}},
               "autoencoder_reconstruction_mae": {"12": 0.003}}
    assert get_metric(metrics, "d_alignn.test.frac_mae_lt_0.02") == 0.5
    assert get_metric(metrics, "d_alignn.test.mae") == 0.01
    assert get_metric(metrics, "autoencoder_reconstruction_mae.12") == 0.003
    assert get_metric(metrics, "d_alignn.test.frac_mae_lt_0.03") is None


def test_data_scale_is_read_from_the_papers_own_metric(tmp_path: Path) -> None:
    root = make_repo(tmp_path, reference="pending")
    assert (_check(root).scale_metric, _check(root).scale_value) == ("n_materials", 20.0)
    targets = yaml.safe_load((root / "reports" / "paper_targets.yaml").read_text())
    targets["papers"][PAPER]["data_scale"]["ours"] = {"metric": "model.test.mae"}
    (root / "reports" / "paper_targets.yaml").write_text(yaml.safe_dump(targets))
    check = _check(root)
    assert (check.scale_metric, check.scale_value) == ("model.test.mae", 0.3)


def test_report_scope_is_shown_but_never_gated(tmp_path: Path) -> None:
    # A reference whose n_materials misses the bar: gated at scope reference, shown at report.
    root = make_repo(tmp_path, {**GOOD_METRICS, "n_materials": 50})
    snapshot_reference(PAPER, root=root)
    assert not _check(root).ok
    targets = yaml.safe_load((root / "reports" / "paper_targets.yaml").read_text())
    scale = next(t for t in targets["papers"][PAPER]["targets"] if t["name"] == "scale")
    scale["scope"] = "report"
    (root / "reports" / "paper_targets.yaml").write_text(yaml.safe_dump(targets))
    check = _check(root)
    assert check.ok and check.source == "reference", check.failures
    ref_rows = check.run("reference").rows
    assert next(r for r in ref_rows if r.target.name == "scale").verdict == "not gated: would fail"


def test_snapshot_records_its_own_name(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    provenance = json.loads(snapshot_reference(PAPER, root=root, name="partial").read_text())
    assert provenance["snapshot"] == "partial"
    assert (root / "reports" / PAPER / "partial" / "metrics.json").is_file()


def test_other_metrics_files_are_copied_and_hash_gated(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {**GOOD_METRICS, "n_materials": 95})
    _write_targets(root, lambda doc: doc["papers"][PAPER].update(
        reference={"status": "pending", "reason": "not yet"}
    ))
    cv_rel = f"reports/{PAPER}/cv_metrics.json"
    cv_file = root / cv_rel
    cv_file.write_text('{"folds": 5, "model": {"mae": 0.4}}\n')
    # Not recorded in dvc.lock: a hand-written metrics file fails the check.
    assert any("cv_metrics.json" in f and "no output" in f for f in _check(root).failures)
    _write_lock(root, {METRICS_REL: file_md5(root / METRICS_REL), cv_rel: file_md5(cv_file)})
    assert _check(root).ok, _check(root).failures

    snapshot_reference(PAPER, root=root)
    _write_targets(root, lambda doc: doc["papers"][PAPER].update(reference={"status": "committed"}))
    ref_cv = root / "reports" / PAPER / "reference" / "cv_metrics.json"
    assert ref_cv.read_text() == cv_file.read_text()
    assert _check(root).ok, _check(root).failures
    ref_cv.write_text('{"folds": 5, "model": {"mae": 0.1}}\n')
    failures = _check(root).failures
    assert any("reference/cv_metrics.json" in f and "differs" in f for f in failures), failures


# --------------------------------------------------------------------------------------------
# malformed inputs: a clear error naming the file, and exit code 2 ("cannot check")

TARGETS_REL = Path("reports") / "paper_targets.yaml"


def _run(root: Path) -> tuple[int, str]:
    """``run_check_targets`` on a console wide enough not to fold: exit code and output."""
    out = io.StringIO()
    code = run_check_targets(root=root, console=Console(file=out, width=1000))
    return code, out.getvalue()


def _cli_exit_code(root: Path) -> int:
    """``esrepro check-targets`` exit code; it must exit, not raise."""
    result = CliRunner().invoke(app, ["check-targets", "--root", str(root)])
    assert isinstance(result.exception, SystemExit | None), result.output
    return result.exit_code


def _write_targets(root: Path, edit) -> None:
    """Rewrite the fake repository's targets file after ``edit(doc)``."""
    doc = yaml.safe_load((root / TARGETS_REL).read_text())
    edit(doc)
    (root / TARGETS_REL).write_text(yaml.safe_dump(doc, sort_keys=False))


def test_targets_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    path = root / TARGETS_REL
    lines = path.read_text().splitlines()
    lines[3] = lines[3] + " [unclosed"  # a flow sequence that never closes
    path.write_text("\n".join(lines) + "\n")
    message = f"{path}, line 5, column 20: invalid YAML: expected ',' or ']'"
    with pytest.raises(TargetsError, match=re.escape(message)):
        load_targets(path)
    code, output = _run(root)
    assert code == 2 and message in output
    assert _cli_exit_code(root) == 2


def test_binary_targets_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "paper_targets.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(TargetsError, match=r"paper_targets\.yaml: not UTF-8 text"):
        load_targets(path)
    # Valid UTF-8 but with a NUL byte: PyYAML's reader error, also named and located.
    path.write_bytes(b"papers:\n  toy:\x00\n")
    with pytest.raises(TargetsError, match=r"paper_targets\.yaml, line 2: invalid YAML: .*#x0000"):
        load_targets(path)


def test_duplicate_yaml_keys_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(
        "papers:\n"
        "  x:\n"
        "    targets:\n"
        "      - name: a\n"
        "        metric: m\n"
        "        paper: null\n"
        "        bar: {max: 0.35}\n"
        "        unit: eV\n"
        "        definition: d\n"
        "        where: w\n"
        "        bar: null\n"  # PyYAML would silently keep this one and drop the gate
    )
    with pytest.raises(
        TargetsError,
        match=r"targets\.yaml, line 11, column 9: .*duplicate key 'bar' \(first at line 7\)",
    ):
        load_targets(path)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    # Overriding a key merged in with "<<" is not a duplicate.
    path = tmp_path / "targets.yaml"
    path.write_text(
        "common: &common {paper: null, bar: null, unit: eV, definition: d, where: w}\n"
        "papers:\n"
        "  x:\n"
        "    reference: {status: committed}\n"
        "    targets:\n"
        "      - {<<: *common, name: a, metric: m, unit: meV}\n"
    )
    assert load_targets(path)["x"].targets[0].unit == "meV"


def test_unknown_target_key_is_rejected(tmp_path: Path) -> None:
    root = make_repo(tmp_path)

    def typo(doc: dict) -> None:
        target = doc["papers"][PAPER]["targets"][0]
        target["must_bet"] = target.pop("must_beat")

    _write_targets(root, typo)
    with pytest.raises(
        TargetsError,
        match=r"papers\.toy\.targets\[0\] \(model_test_mae\): unknown key 'must_bet' "
        r"\(did you mean 'must_beat'\?",
    ):
        load_targets(root / TARGETS_REL)
    code, output = _run(root)
    assert code == 2 and "targets OK" not in output
    assert "unknown key 'must_bet'" in output
    assert _cli_exit_code(root) == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda spec: spec.update(titel="x"), r"papers\.toy: unknown key 'titel'"),
        (
            lambda spec: spec["data_scale"].update(ours={"metrc": "n"}),
            r"papers\.toy\.data_scale\.ours: unknown key 'metrc'",
        ),
        (lambda spec: spec.update(targets="abc"), r"papers\.toy: 'targets' must be a non-empty"),
        (lambda spec: spec["targets"].append(""), r"papers\.toy\.targets\[4\]: expected a mapping"),
        (
            lambda spec: spec["targets"][0].update(must_beat=[1]),
            r"\(model_test_mae\): must_beat must be a list of metric paths",
        ),
        (lambda spec: spec["targets"][0].update(paper=True), r"paper must be a number or null"),
    ],
)
def test_other_malformed_entries_are_rejected(tmp_path: Path, edit, message: str) -> None:
    root = make_repo(tmp_path)
    _write_targets(root, lambda doc: edit(doc["papers"][PAPER]))
    with pytest.raises(TargetsError, match=message):
        load_targets(root / TARGETS_REL)


@pytest.mark.parametrize(
    ("data_scale", "message"),
    [
        ([1516], r"papers\.toy\.data_scale: expected a mapping with 'paper' and/or 'ours'"),
        ({"ours": 5}, r"papers\.toy\.data_scale\.ours: expected a mapping, not 5"),
        ({"paper": 1516}, r"papers\.toy\.data_scale\.paper: expected a mapping, not 1516"),
        ({"ours": {"metric": 3}}, r"papers\.toy\.data_scale\.ours\.metric: expected a metric path"),
        ({"size": 3}, r"papers\.toy\.data_scale: unknown key 'size'"),
    ],
)
def test_data_scale_shape_is_validated(tmp_path: Path, data_scale, message: str) -> None:
    root = make_repo(tmp_path)
    _write_targets(root, lambda doc: doc["papers"][PAPER].update(data_scale=data_scale))
    with pytest.raises(TargetsError, match=message):
        load_targets(root / TARGETS_REL)
    assert run_check_targets(root=root, console=_quiet()) == 2


def test_truncated_default_metrics_names_the_file(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    path = root / METRICS_REL
    path.write_text(path.read_text()[:25])
    with pytest.raises(InputError, match=rf"{re.escape(str(path))}: invalid JSON at line \d+"):
        _check(root)
    code, output = _run(root)
    assert code == 2
    assert f"cannot check 'toy': {path}: invalid JSON" in output
    assert "targets FAILED (some could not be checked)" in output
    assert _cli_exit_code(root) == 2


def test_merge_conflicted_reference_files_name_the_file(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {**GOOD_METRICS, "n_materials": 95})
    snapshot_reference(PAPER, root=root)
    ref = root / "reports" / PAPER / "reference"
    metrics, provenance = ref / "metrics.json", ref / "provenance.json"
    good = metrics.read_text()
    metrics.write_text(f"<<<<<<< HEAD\n{good}=======\n{good}>>>>>>> other\n")
    with pytest.raises(InputError, match=re.escape(f"{metrics}: invalid JSON at line 1")):
        _check(root)
    assert run_check_targets(root=root, console=_quiet()) == 2

    metrics.write_text(good)
    assert _check(root).ok
    text = provenance.read_text()
    provenance.write_text(text[: len(text) // 2])
    with pytest.raises(InputError, match=re.escape(f"{provenance}: invalid JSON")):
        _check(root)
    provenance.write_text("[1, 2]\n")
    with pytest.raises(
        InputError, match=re.escape(f"{provenance}: expected a JSON object, found list")
    ):
        _check(root)
    assert run_check_targets(root=root, console=_quiet()) == 2


def test_malformed_dvc_lock_names_dvc_lock(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    lock = root / "dvc.lock"
    lock.write_text("<<<<<<< HEAD\nschema: '2.0'\n=======\nstages: {\n>>>>>>> other\n")
    with pytest.raises(InputError, match=rf"{re.escape(str(lock))}, line \d+, column \d+: invalid"):
        read_dvc_lock(root)
    assert run_check_targets(root=root, console=_quiet()) == 2
    lock.write_text("- a\n- b\n")
    with pytest.raises(InputError, match=re.escape(f"{lock}: expected a mapping of stages, found")):
        read_dvc_lock(root)


def test_read_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_bytes(b'{"a": 1}\xff')
    with pytest.raises(InputError, match=rf"{re.escape(str(path))}: not UTF-8 text"):
        read_json(path)
    path.write_text('{"a": 1,')
    with pytest.raises(InputError, match=re.escape(f"{path}: invalid JSON at line 1, column 9")):
        read_json(path)
    path.write_text('{"a": 1}')
    assert read_json(path) == {"a": 1}
