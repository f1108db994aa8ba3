"""The one stage entry point: expected errors (bad params, a missing source) are one line and
exit 1; usage errors exit 2; a bug keeps its traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from esrepro import config, fetch
from esrepro.registry import paper_names
from esrepro.stage_cli import main
from params_helpers import repo_params


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository root holding params.yaml (no mirror) for in-process runs."""
    monkeypatch.setenv("ESREPRO_ROOT", str(tmp_path))
    monkeypatch.delenv(fetch.MIRROR_ENV, raising=False)
    config.repo_root.cache_clear()
    yield tmp_path
    config.repo_root.cache_clear()


def _write_params(root: Path, **changes: object) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(repo_params(**changes)))


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_offline_fetch_without_mirror_is_one_line(
    root: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_params(root, fetch__mirror=None)

    def offline(url: str, tmp: Path, timeout: float) -> None:
        raise requests.ConnectionError(f"Failed to resolve host of {url}")

    monkeypatch.setattr(fetch, "_download", offline)
    monkeypatch.setattr(fetch, "_BACKOFF_S", 0.0)
    assert main(["dosnp", "fetch"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "could not download https://raw.githubusercontent.com/tkotani/DOSnpSupplement/" in line
    assert "Offline? Set ESREPRO_MIRROR" in line


def test_a_typo_in_params_is_one_line_naming_the_key(
    root: Path, capsys: pytest.CaptureFixture
) -> None:
    _write_params(root, dosnp__train__lsos="l1")
    assert main(["dosnp", "report"]) == 1  # any stage of the paper: the whole group is checked
    line = _one_error_line(capsys.readouterr().err)
    assert line == "error: params.yaml dosnp.train.lsos: unknown key (no dosnp stage reads it)"


def test_a_missing_params_file_is_one_line(root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["ldos", "learn"]) == 1
    assert _one_error_line(capsys.readouterr().err) == (
        f"error: params file not found: {root / 'params.yaml'}"
    )


@pytest.mark.parametrize(
    ("argv", "second_line"),
    [
        (["dosnpp", "fetch"], f"no paper 'dosnpp'; registered: {', '.join(paper_names())}"),
        (["dosnp", "fetchh"], "paper dosnp has no stage 'fetchh' (stages: ['fetch', 'dft', "
                              "'featurize', 'train', 'evaluate', 'cv', 'report'])"),
        (["dosnp"], f"papers: {', '.join(paper_names())}"),
    ],
)
def test_usage_errors_exit_2_and_list_the_choices(
    argv: list[str], second_line: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        "usage: python stages/run.py <paper> <stage>", second_line
    ]


def test_a_bug_keeps_its_traceback(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from esrepro.papers.ldos import pipeline

    _write_params(root)

    def broken(cfg, **paths):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(pipeline, "stage_structures", broken)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["ldos", "structures"])


def test_the_runner_passes_the_config_and_declared_paths(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from esrepro.papers.dosnp import pipeline
    from esrepro.papers.dosnp.config import CVConfig

    _write_params(root, dosnp__cv__folds=4)
    for inputs in ("data/dosnp/raw", "data/dosnp/features"):
        (root / inputs).mkdir(parents=True)
    seen = {}
    monkeypatch.setattr(
        pipeline, "stage_cv", lambda cfg, **paths: seen.update(cfg=cfg, paths=paths)
    )
    assert main(["dosnp", "cv"]) == 0
    assert isinstance(seen["cfg"], CVConfig) and seen["cfg"].cv.folds == 4
    assert seen["paths"] == {
        "raw": root / "data/dosnp/raw", "features": root / "data/dosnp/features",
        "metrics": root / "reports/dosnp/cv_metrics.json",
        "predictions": root / "reports/dosnp/cv_predictions.csv",
        "folds": root / "data/dosnp/cv-folds",
    }


def test_dvc_command_reports_a_missing_mirror_file_in_one_line(
    tmp_path: Path, repo_root: Path
) -> None:
    """As DVC runs it: a mirror without the pinned file stops the fetch with one line, exit 1."""
    params = repo_params(fetch__mirror=str(tmp_path / "mirror"))
    (tmp_path / "mirror").mkdir()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if k not in ("ESREPRO_ROOT", fetch.MIRROR_ENV)}
    proc = subprocess.run(
        [sys.executable, str(repo_root / "stages" / "run.py"), "ldos", "structures"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 1, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "is not in the mirror" in line and str(tmp_path / "mirror") in line


def test_a_missing_input_names_the_stage_that_writes_it(
    root: Path, capsys: pytest.CaptureFixture
) -> None:
    _write_params(root)
    assert main(["alignn_dos", "train"]) == 1
    assert _one_error_line(capsys.readouterr().err) == (
        "error: alignn_dos_train needs data/alignn_dos/features (written by alignn_dos_featurize), "
        "which does not exist: run `dvc repro alignn_dos_train`"
    )


#: DVC's part: start the stage (which arms follow_dvc and sleeps), print its pid, wait for it.
_PARENT = """
import subprocess, sys
stage = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
print(stage.pid, flush=True)
stage.wait()
"""
_STAGE = """
import time
from esrepro.stage_cli import follow_dvc
print("armed" if follow_dvc() else "not armed", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("run_by_dvc", [True, False])
def test_a_stage_run_by_dvc_dies_when_dvc_is_killed(run_by_dvc: bool) -> None:
    """SIGKILL of the parent (a killed `dvc repro`) ends a stage that DVC started; a stage run by
    hand (no DVC_STAGE) is left alone."""
    import psutil

    from helpers import wait_for

    env = {k: v for k, v in os.environ.items() if k != "DVC_STAGE"}
    if run_by_dvc:
        env["DVC_STAGE"] = "dosnp_dft"
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, _STAGE], env=env,
                              stdout=subprocess.PIPE, text=True)
    stage = psutil.Process(int(parent.stdout.readline()))
    try:
        # The stage shares the parent's stdout: its line says it has (not) armed the signal.
        assert parent.stdout.readline().strip() == ("armed" if run_by_dvc else "not armed")
        parent.kill()
        parent.wait()
        if run_by_dvc:
            wait_for("the stage to end", lambda: not stage.is_running()
                     or stage.status() == psutil.STATUS_ZOMBIE, timeout_s=30)
        else:
            with pytest.raises(psutil.TimeoutExpired):
                stage.wait(timeout=3)
    finally:
        if stage.is_running():
            stage.kill()
