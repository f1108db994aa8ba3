"""benchmarks/seed_spread.py: its pieces, and an end-to-end run on a tiny synthetic DOSnp
repository (12 materials, one network, 2 epochs) with 2 seeds."""

from __future__ import annotations

import json
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from ase.io import write

from params_helpers import repo_params
from test_training import _structures, write_synthetic_features

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import seed_spread  # noqa: E402


def test_seed_offset_moves_every_seed_key_and_nothing_else() -> None:
    params = repo_params(alignn_dos__train__seed=3, alignn_dos__autoencoder__seed=5)
    keys = seed_spread.PLANS["alignn_dos"].seed_keys
    moved, seeds = seed_spread.with_seed_offset(params, keys, 200)
    assert seeds == {"alignn_dos.autoencoder.seed": 205, "alignn_dos.train.seed": 203}
    assert moved["alignn_dos"]["train"]["seed"] == 203
    assert moved["alignn_dos"]["autoencoder"]["seed"] == 205
    assert params["alignn_dos"]["train"]["seed"] == 3  # the input is not changed
    moved["alignn_dos"]["train"]["seed"] = params["alignn_dos"]["train"]["seed"]
    moved["alignn_dos"]["autoencoder"]["seed"] = params["alignn_dos"]["autoencoder"]["seed"]
    assert moved == params  # the split seeds and everything else stay as they are
    with pytest.raises(KeyError, match="dosnp.train.sead"):
        seed_spread.with_seed_offset(params, ["dosnp.train.sead"], 1)


def test_every_seed_key_is_a_param_its_stages_read() -> None:
    params = repo_params()
    for paper, plan in seed_spread.PLANS.items():
        for key in plan.seed_keys:
            assert isinstance(seed_spread.get_key(params, key), int), key
        # A renamed seed key would otherwise be set but never read: the spread would be zero.
        from esrepro.registry import get_paper

        reg = get_paper(paper)
        reads = set().union(*(reg.stage_reads(reg.stage(s), params) for s in plan.stages))
        assert set(plan.seed_keys) <= reads, (paper, plan.seed_keys)


def test_outputs_go_to_the_work_dir_and_inputs_come_from_the_workspace() -> None:
    root, out = Path("/repo"), Path("/work")
    train, evaluate = seed_spread.stage_arguments("dosnp", ("train", "evaluate"), root, out)
    assert train["features"] == root / "data/dosnp/features"
    assert train["model"] == out / "data/dosnp/model" and train["fits"] == out / "data/dosnp/fits"
    assert train["training"] == out / "reports/dosnp/training"
    # The model the evaluation reads is the one this run trained, not the committed one.
    assert evaluate["model"] == out / "data/dosnp/model"
    assert evaluate["raw"] == root / "data/dosnp/raw"
    assert evaluate["metrics"] == out / "reports/dosnp/metrics.json"


def test_headline_patterns_and_statistics(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({
        "d_alignn": {"test": {"mae": 0.02, "n": 8}}, "ae_alignn_8": {"test": {"mae": 0.03}},
        "ae_alignn_12": {"test": {"mae": 0.025}}, "flag": True, "missing": None,
    }))  # fmt: skip
    got = seed_spread.headline_metrics(
        {"metrics": path}, ["metrics:d_alignn.test.mae", "metrics:ae_alignn_*.test.mae",
                            "metrics:flag", "metrics:missing"]
    )
    assert got == {
        "metrics:d_alignn.test.mae": 0.02, "metrics:ae_alignn_8.test.mae": 0.03,
        "metrics:ae_alignn_12.test.mae": 0.025,
    }
    values = [0.418, 0.390, 0.402]
    s = seed_spread.spread(values)
    assert s["mean"] == pytest.approx(np.mean(values))
    assert s["std"] == pytest.approx(np.std(values, ddof=1))
    assert (s["min"], s["max"], s["values"]) == (0.390, 0.418, values)
    assert seed_spread.spread([0.4])["std"] is None


def _tiny_dosnp_repo(root: Path) -> None:
    """params.yaml with a 2-epoch single-network fit and the inputs of dosnp train/evaluate."""
    feats = write_synthetic_features(_mkdir(root / "data/dosnp/features") / "dataset.pt")
    structures = _structures()
    raw = _mkdir(root / "data/dosnp/raw/structures")
    for mp_id, atoms in structures.items():
        write(raw / f"{mp_id}.vasp", atoms, format="vasp")
    pd.DataFrame({"mp_id": list(structures)}).to_csv(root / "data/dosnp/raw/selected.csv")
    pd.DataFrame({
        "material_id": feats["material_ids"], "status": "computed",
        "gpaw_gap": feats["gpaw_gap"].numpy(), "lda_gap_table": feats["lda_gap_table"].numpy(),
    }).to_csv(_mkdir(root / "data/dosnp/dft") / "summary.csv", index=False)  # fmt: skip
    params = repo_params(
        dosnp__train={
            "seed": 0, "max_epochs": 2, "batch_size": 4, "lr": 1e-3, "weight_decay": 1e-4,
            "patience": 0, "monitor": "val_mae", "val_fraction": 0.25, "loss": "l1",
            "ensemble": 1, "accelerator": "cpu", "devices": 1,
        },
    )  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_two_seeds_end_to_end_without_touching_the_workspace(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    _tiny_dosnp_repo(root)
    # The "committed" metrics: what the stages write with the params' own seeds.
    first = seed_spread.measure(["dosnp"], 1, 100, root, tmp_path / "first")
    committed = tmp_path / "first/dosnp/run0/reports/dosnp/metrics.json"
    shutil.copy(committed, _mkdir(root / "reports/dosnp") / "metrics.json")
    before = _files(root)

    out = tmp_path / "spread.json"
    assert seed_spread.main([
        "--papers", "dosnp", "--seeds", "2", "--root", str(root), "--out", str(out),
    ]) == 0  # fmt: skip
    assert _files(root) == before  # nothing written into the repository

    result = json.loads(out.read_text())
    assert result["machine"]["torch_cpu_capability"] and result["machine"]["cpu_model"]
    entry = result["papers"]["dosnp"]
    assert entry["stages"] == ["train", "evaluate"]
    assert entry["seeds"] == [{"dosnp.train.seed": 0}, {"dosnp.train.seed": 100}]
    metrics = entry["metrics"]
    assert set(metrics) == {
        f"metrics:{m}.test.{s}" for m, s in (
            ("dosnp", "mae"), ("dosnp", "rmse"), ("dosnp", "r2"), ("lrlidg", "mae"),
            ("linear", "mae"),
        )
    }  # fmt: skip
    mae = metrics["metrics:dosnp.test.mae"]
    # Run 0 is the committed configuration: same machine, same numbers.
    assert mae["seed0_equals_committed"] is True
    assert mae["values"][0] == first["papers"]["dosnp"]["metrics"]["metrics:dosnp.test.mae"]["mean"]
    # Another seed trains another network; the baselines do not depend on it.
    assert mae["values"][0] != mae["values"][1]
    assert mae["std"] == pytest.approx(statistics.stdev(mae["values"])) and mae["std"] > 0
    assert metrics["metrics:linear.test.mae"]["std"] == 0.0
    assert metrics["metrics:lrlidg.test.mae"]["std"] == 0.0
    assert len(entry["wall_s"]) == 2 and set(entry["wall_s"][0]) == {"train", "evaluate"}
    assert "metrics:dosnp.test.mae" in seed_spread.table(result)
