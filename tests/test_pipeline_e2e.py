"""End-to-end smoke run of the DOSnp pipeline on a tiny profile, the way a user drives it.

A temporary git clone of the working tree gets tiny params (4 two-atom materials, 2 epochs),
then: `dvc repro` builds every artifact; a second `dvc repro` does nothing; `dvc exp run -S
model.pooling=max` retrains without re-running DFT; `dvc metrics diff` and `dvc exp show` work.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.gpaw]

SCHEMA_MODELS = ("dosnp", "lrlidg", "linear")


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    # Stage commands call `python`: make it this interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("ESREPRO_ROOT", None)
    # `dvc exp run` commits experiment refs: a bare CI machine may have no git identity.
    for var in ("GIT_AUTHOR", "GIT_COMMITTER"):
        env.setdefault(f"{var}_NAME", "esrepro-ci")
        env.setdefault(f"{var}_EMAIL", "ci@example.org")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory, repo_root: Path, mirror_dir: Path) -> Path:
    """A git clone of the working tree (tracked + untracked, not ignored) with tiny params."""
    repo = tmp_path_factory.mktemp("repo")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=repo_root, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        src = repo_root / name
        if src.is_file() and not name.startswith(("reports/", "dvc.lock")):
            dest = repo / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["fetch"]["mirror"] = str(mirror_dir)
    params["dft"]["cache"] = "data/dft-cache"  # git-ignored, like the real cache
    params["dft"]["seed_caches"] = []
    params["dosnp"].update(n_materials=4, max_sites=2, subset_seed=1)
    params["dosnp"]["train"].update(max_epochs=2, batch_size=2, patience=0)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.email=ci@example.org", "-c", "user.name=ci", "commit", "-qm", "tiny"],
    ):
        subprocess.run(cmd, cwd=repo, check=True)
    return repo


@pytest.fixture(scope="module")
def first_repro(tiny_repo: Path) -> str:
    return _run(["dvc", "repro"], tiny_repo)


def test_repro_builds_every_artifact(tiny_repo: Path, first_repro: str) -> None:
    metrics = json.loads((tiny_repo / "reports/dosnp/metrics.json").read_text())
    assert metrics["n_materials"] == 4
    assert metrics["n_dft_failed"] + metrics["dosnp"]["train"]["n"] + metrics["dosnp"]["test"]["n"] == 4
    for model in SCHEMA_MODELS:
        for split in ("train", "test"):
            assert set(metrics[model][split]) >= {"mae", "rmse", "r2", "n"}
    assert metrics["gpaw_vs_ecalj_lda_gap_mae"] >= 0
    html = tiny_repo / "reports/dosnp/dosnp.html"
    assert html.stat().st_size > 10_000
    figures = sorted(p.name for p in (tiny_repo / "reports/dosnp/figures").glob("*.png"))
    assert {"fig2_lda_vs_qsgw.png", "fig4_parity_histograms.png", "fig5_low_energy_zoom.png",
            "validation_gpaw_vs_ecalj.png"} <= set(figures)
    lock = yaml.safe_load((tiny_repo / "dvc.lock").read_text())
    assert {"dosnp_fetch", "dosnp_dft", "dosnp_featurize", "dosnp_train", "dosnp_evaluate",
            "dosnp_report"} <= set(lock["stages"])


def test_second_repro_does_nothing(tiny_repo: Path, first_repro: str) -> None:
    output = _run(["dvc", "repro"], tiny_repo)
    assert "Running stage" not in output, output


def test_experiment_changes_pooling_without_dft(tiny_repo: Path, first_repro: str) -> None:
    _run(["git", "add", "-A"], tiny_repo)
    _run(["git", "-c", "user.email=ci@example.org", "-c", "user.name=ci", "commit", "-qm", "lock"], tiny_repo)
    output = _run(["dvc", "exp", "run", "-S", "model.pooling=max"], tiny_repo)
    assert "Running stage 'dosnp_train'" in output
    assert "Running stage 'dosnp_dft'" not in output
    assert "Running stage 'dosnp_fetch'" not in output
    shown = _run(["dvc", "exp", "show", "--json"], tiny_repo)
    assert "max" in shown
    diff = _run(["dvc", "params", "diff", "--json"], tiny_repo)
    assert json.loads(diff) is not None
    _run(["dvc", "metrics", "diff"], tiny_repo)
