"""``snapshot-reference`` safety: plain folder names only, no silent overwrite, atomic --force."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import esrepro.targets as targets
from esrepro.cli import app
from esrepro.targets import InputError, SnapshotError, file_md5, snapshot, snapshot_reference
from test_targets import GOOD_METRICS, METRICS_REL, PAPER, _write_lock, make_repo


def _tree(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (hidden ones too) -> md5: to prove nothing changed."""
    return {
        p.relative_to(directory).as_posix(): file_md5(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _rerun_pipeline(root: Path, metrics: dict) -> None:
    """New pipeline outputs: metrics.json and its dvc.lock entry, as ``dvc repro`` leaves them."""
    path = root / METRICS_REL
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    _write_lock(root, {METRICS_REL: file_md5(path)})


@pytest.mark.parametrize("name", [".", "", "..", "../x", "a/b", "a\\b", "/tmp/x", ".hidden", "-f"])
def test_names_that_are_not_plain_folders_are_refused(tmp_path: Path, name: str) -> None:
    root = make_repo(tmp_path)
    before = _tree(root)
    with pytest.raises(SnapshotError, match=r"snapshot name \(--name\) must be a plain folder"):
        snapshot_reference(PAPER, root=root, name=name)
    assert _tree(root) == before  # with "." the figures were once deleted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # nothing written beside it


def test_cli_refuses_dot_name_and_keeps_the_figures(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    args = ["snapshot-reference", PAPER, "--root", str(root), "--name", "."]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "must be a plain folder name" in result.output
    assert (root / "reports" / PAPER / "figures" / "fig1.png").is_file()


def test_paper_must_be_a_plain_name(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    with pytest.raises(SnapshotError, match=r"the paper must be a plain folder name"):
        snapshot_reference(f"../reports/{PAPER}", root=root)


def test_existing_snapshot_is_not_overwritten_without_force(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {**GOOD_METRICS, "n_materials": 95})
    snapshot_reference(PAPER, root=root, wall_time_s=3600)
    ref = root / "reports" / PAPER / "reference"
    created = json.loads((ref / "provenance.json").read_text())["created"]
    before = _tree(ref)

    _rerun_pipeline(root, GOOD_METRICS)  # a small default-profile run: n_materials 20
    with pytest.raises(SnapshotError) as info:
        snapshot_reference(PAPER, root=root)
    message = str(info.value)
    assert f"reports/{PAPER}/reference already exists (created {created}" in message
    assert "wall time 3600 s, n_materials 95)" in message
    assert "the current outputs have n_materials 20" in message
    assert "--force" in message
    assert _tree(ref) == before

    result = CliRunner().invoke(app, ["snapshot-reference", PAPER, "--root", str(root)])
    assert result.exit_code == 1 and "already exists" in result.output, result.output
    assert _tree(ref) == before


def test_force_replaces_the_snapshot_completely(tmp_path: Path) -> None:
    root = make_repo(tmp_path, {**GOOD_METRICS, "n_materials": 95})
    report = root / "reports" / PAPER
    (report / "figures" / "old.png").write_bytes(b"\x89PNG old")
    snapshot_reference(PAPER, root=root)
    (report / "figures" / "old.png").unlink()
    _rerun_pipeline(root, {**GOOD_METRICS, "n_materials": 96})

    result = CliRunner().invoke(app, ["snapshot-reference", PAPER, "--root", str(root), "--force"])
    assert result.exit_code == 0, result.output
    ref = report / "reference"
    assert json.loads((ref / "metrics.json").read_text())["n_materials"] == 96
    assert not (ref / "figures" / "old.png").exists()  # no stale figure from the old snapshot
    provenance = json.loads((ref / "provenance.json").read_text())
    assert provenance["files"] == {k: v for k, v in _tree(ref).items() if k != "provenance.json"}
    assert not [p.name for p in report.iterdir() if p.name.startswith(".")]  # no temp folders
    assert targets.check_paper(
        targets.load_targets(root / "reports" / "paper_targets.yaml")[PAPER], root
    ).ok


def test_a_crash_mid_snapshot_leaves_the_old_one_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_repo(tmp_path, {**GOOD_METRICS, "n_materials": 95})
    report = root / "reports" / PAPER
    snapshot_reference(PAPER, root=root)
    before = _tree(report / "reference")
    _rerun_pipeline(root, {**GOOD_METRICS, "n_materials": 96})

    copied: list[Path] = []

    def copy_then_crash(src: Path, dst: Path) -> None:
        if copied:
            raise OSError("disk full")
        copied.append(Path(dst))
        shutil.copyfile(src, dst)

    monkeypatch.setattr(snapshot.shutil, "copy2", copy_then_crash)
    with pytest.raises(OSError, match="disk full"):
        snapshot_reference(PAPER, root=root, force=True)
    assert copied and not copied[0].is_relative_to(report / "reference")  # wrote elsewhere
    assert _tree(report / "reference") == before
    assert not [p.name for p in report.iterdir() if p.name.startswith(".")]


def test_a_crash_on_the_first_snapshot_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_repo(tmp_path)

    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(snapshot, "machine", crash)  # after the copies, before provenance.json
    with pytest.raises(OSError, match="disk full"):
        snapshot_reference(PAPER, root=root)
    # A half-written reference/ would be checked as the paper-scale run.
    assert sorted(p.name for p in (root / "reports" / PAPER).iterdir()) == [
        "figures", "metrics.json", "predictions.csv", f"{PAPER}.html"
    ]


def test_failed_swap_puts_the_old_snapshot_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = tmp_path / "reference", tmp_path / ".reference.tmp-1"
    old.mkdir()
    (old / "provenance.json").write_text("old")
    new.mkdir()
    (new / "provenance.json").write_text("new")
    rename = Path.rename

    def failing_rename(self: Path, target: Path) -> Path:
        if self == new:
            raise OSError("rename failed")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="rename failed"):
        snapshot._swap_into_place(new, old)
    assert (old / "provenance.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".reference.tmp-1", "reference"]


def test_force_never_replaces_a_folder_that_is_not_a_snapshot(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    report = root / "reports" / PAPER
    before = _tree(report)
    for name in ("figures", "metrics.json", f"{PAPER}.html"):
        message = rf"reports/{PAPER}/{name} exists and is not a snapshot"
        with pytest.raises(SnapshotError, match=message):
            snapshot_reference(PAPER, root=root, name=name, force=True)
    assert _tree(report) == before


def test_existing_snapshot_with_broken_provenance_is_still_described(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    snapshot_reference(PAPER, root=root, name="partial")
    (root / "reports" / PAPER / "partial" / "provenance.json").write_text("{")
    message = r"reports/toy/partial already exists \(provenance\.json unreadable: .*invalid JSON"
    with pytest.raises(SnapshotError, match=message):
        snapshot_reference(PAPER, root=root, name="partial")


def test_malformed_inputs_name_the_file_and_write_nothing(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    before = _tree(root / "reports")
    (root / "params.yaml").write_text("model: {pooling: mean\n")
    with pytest.raises(InputError, match=r"params\.yaml, line \d+, column \d+: invalid YAML"):
        snapshot_reference(PAPER, root=root)
    assert _tree(root / "reports") == before
    assert sorted(p.name for p in (root / "reports" / PAPER).iterdir()) == [
        "figures", "metrics.json", "predictions.csv", f"{PAPER}.html"
    ]
    (root / "dvc.lock").write_text("stages: [\n")
    result = CliRunner().invoke(app, ["snapshot-reference", PAPER, "--root", str(root)])
    assert result.exit_code == 1
    assert "dvc.lock, line" in " ".join(result.output.split()), result.output


def test_a_snapshot_keeps_what_re_rendering_its_report_needs(tmp_path: Path) -> None:
    from esrepro.registry import get_paper

    stage = get_paper("dosnp").stage("report")
    for rel in stage.inputs.values():  # every input of the report stage, as the pipeline leaves
        path = tmp_path / rel
        if rel.endswith("training"):
            (path / "plots" / "metrics" / "train").mkdir(parents=True)
            (path / "plots" / "metrics" / "train" / "loss.tsv").write_text("step\tloss\n")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x\n")
    (tmp_path / "reports/dosnp/dosnp.ipynb").write_text("{}")
    report_dir = tmp_path / "reports" / "dosnp"
    kept = dict((rel, src) for src, rel in snapshot._render_inputs(
        tmp_path, "dosnp", report_dir, taken={"metrics.json"}
    ))
    assert "training/plots/metrics/train/loss.tsv" in kept
    assert kept["inputs/dft_summary.csv"] == tmp_path / "data/dosnp/dft/summary.csv"
    assert "inputs/table.csv" in kept and "dosnp.ipynb" in kept
    assert "metrics.json" not in kept and not any(r.startswith("inputs/notebook") for r in kept)
    assert snapshot._render_inputs(tmp_path, PAPER, report_dir, set()) == []  # unregistered


def test_a_snapshot_keeps_the_trained_models_loadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The models the registry names are copied under models/ and load as the run left them."""
    import torch

    from esrepro.papers.dosnp.model import DOSnp
    from esrepro.training.model_files import load_model, save_model, state_dict_digest

    root = make_repo(tmp_path)
    torch.manual_seed(0)
    net = DOSnp(pooling="mean", dropout=0.1, hidden=8, input_scale=1.0)
    save_model(root / "data/toy/model/toy.pt", net)
    (root / "data/toy/model/notes").mkdir()
    (root / "data/toy/model/notes/fold-0.txt").write_text("member 0\n")

    class Entry:
        models = ("data/toy/model",)

    monkeypatch.setattr("esrepro.registry.get_paper", lambda paper: Entry())
    monkeypatch.setattr(snapshot, "_render_inputs", lambda *a, **k: [])
    provenance = json.loads(snapshot_reference(PAPER, root=root).read_text())

    copied = root / f"reports/{PAPER}/reference/models/model/toy.pt"
    assert state_dict_digest(load_model(copied).state_dict()) == state_dict_digest(
        net.state_dict()
    )
    assert provenance["files"]["models/model/notes/fold-0.txt"] == file_md5(
        root / "data/toy/model/notes/fold-0.txt"
    )


def test_a_snapshot_without_its_trained_models_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_repo(tmp_path)

    class Entry:
        models = ("data/toy/model",)

    monkeypatch.setattr("esrepro.registry.get_paper", lambda paper: Entry())
    monkeypatch.setattr(snapshot, "_render_inputs", lambda *a, **k: [])
    with pytest.raises(SnapshotError, match="data/toy/model .*does not exist"):
        snapshot_reference(PAPER, root=root)
    assert not (root / f"reports/{PAPER}/reference").exists()


def test_every_paper_names_its_trained_models_or_says_why_not() -> None:
    from esrepro.registry import get_paper, paper_names

    for name in paper_names():
        paper = get_paper(name)
        assert bool(paper.models) != bool(paper.models_left_out), name


def test_models_must_be_stage_outputs() -> None:
    from esrepro.registry import Paper, Stage

    stage = Stage("train", "esrepro.x:f", None, outputs={"model": "data/p/model"})
    with pytest.raises(ValueError, match="no stage's output"):
        Paper("p", (stage,), notebook="n.ipynb", models=("data/p/other",))
