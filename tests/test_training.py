"""Shared Lightning engine and the DOSnp train/evaluate entry points on a synthetic file."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from ase.build import bulk

import esrepro.papers.dosnp.train as dosnp_train
from esrepro import training
from esrepro.errors import ConfigError
from esrepro.metrics import regression_metrics, write_json
from esrepro.papers.dosnp.data import PDOSGraphDataset, collate_pdos
from esrepro.papers.dosnp.model import load_dosnp
from esrepro.papers.dosnp.train import PREDICTION_COLUMNS, run_evaluate, run_train
from esrepro.registry import get_paper
from esrepro.splits import kfold_labels, random_split_labels
from esrepro.training import read_model_file, resolve_accelerator
from params_helpers import repo_params

N_MATERIALS = 12
FORMULAS = ["Si", "C", "Ge", "GaAs", "AlP", "ZnS", "NaCl", "MgO", "LiF", "KCl", "CsCl", "Ar"]


def _structures() -> dict[str, object]:
    specs = [
        ("Si", "diamond", 5.43), ("C", "diamond", 3.57), ("Ge", "diamond", 5.66),
        ("GaAs", "zincblende", 5.65), ("AlP", "zincblende", 5.46), ("ZnS", "zincblende", 5.41),
        ("NaCl", "rocksalt", 5.64), ("MgO", "rocksalt", 4.21), ("LiF", "rocksalt", 4.03),
        ("KCl", "rocksalt", 6.29), ("CsCl", "cesiumchloride", 4.12), ("Ar", "fcc", 5.26),
    ]  # fmt: skip
    return {f"mp-{i}": bulk(f, s, a=a) for i, (f, s, a) in enumerate(specs)}


def write_synthetic_features(path: Path) -> dict[str, object]:
    """A features file with the featurize stage's schema: 12 materials, 1-2 atoms each."""
    structures = _structures()
    ids = list(structures)
    n_atoms = torch.tensor([len(structures[i]) for i in ids])
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(n_atoms, 0)])
    gen = torch.Generator().manual_seed(0)
    grid = torch.linspace(-1.5 * 13.605693, 1.0 * 13.605693, 1000)
    lda = torch.linspace(0.2, 8.0, N_MATERIALS)
    # Gaussian "bands" below/above a gap so the PDOS looks vaguely physical.
    pdos = torch.zeros(int(ptr[-1]), 16, 1000)
    for m in range(N_MATERIALS):
        for a in range(int(ptr[m]), int(ptr[m + 1])):
            w = torch.rand(16, 1, generator=gen)
            pdos[a] = w * (torch.exp(-((grid + 2.0) ** 2)) + torch.exp(-((grid - lda[m] - 1) ** 2)))
    feats = {
        "material_ids": ids,
        "formulas": FORMULAS,
        "pdos": pdos.to(torch.float16),
        "atom_ptr": ptr,
        "lda_gap_table": lda.to(torch.float32),
        "qsgw_gap": (1.25 * lda + 0.5).to(torch.float32),
        "gpaw_gap": (lda - 0.05).to(torch.float32),
        "energy_grid": grid,
        "n_atoms": n_atoms,
        "split": random_split_labels(ids, 0.25, seed=1),
        "meta": {"source": "synthetic test file", "n_grid": 1000},
    }
    torch.save(feats, path)
    return feats


def _params(**train_overrides: object) -> dict[str, object]:
    """params.yaml with a small, fast DOSnp fit (one network, 2 epochs, CPU)."""
    train = {
        "seed": 0, "max_epochs": 2, "batch_size": 4, "lr": 1e-3, "weight_decay": 1e-2,
        "patience": 5, "monitor": "val_mae", "val_fraction": 0.25, "loss": "mse", "ensemble": 1,
        "accelerator": "cpu", "devices": 1,
    }  # fmt: skip
    train.update(train_overrides)
    return repo_params(
        model__pooling="mean+max",
        dosnp__model={"dropout": 0.3, "hidden": 100, "input_scale": 1.0},
        dosnp__train=train,
        dosnp__split={"test_fraction": 0.25, "seed": 1},
        dosnp__lrlidg={"rank_tol": 1e-8, "max_descriptors_per_sample": [0.2, 1.0],
                       "inner_folds": 3, "inner_seed": 0},
    )


def _cfg(params: dict[str, object], stage: str = "train") -> object:
    """The typed config of DOSnp's ``stage`` from ``params``, as the stage runner parses it."""
    return get_paper("dosnp").parse(params)[stage]


def test_gpu_requested_without_cuda_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("gpu", "cuda", "GPU"):
        with pytest.raises(RuntimeError, match="cuda.is_available"):
            resolve_accelerator(name)
    assert resolve_accelerator("auto") == "cpu"
    assert resolve_accelerator("cpu") == "cpu"
    with pytest.raises(ValueError, match="tpu"):
        resolve_accelerator("tpu")


def test_splits_are_deterministic_and_order_independent() -> None:
    ids = [f"mp-{i}" for i in range(100)]
    labels = random_split_labels(ids, 0.2, seed=3)
    assert labels.count("test") == 20
    assert labels == random_split_labels(ids, 0.2, seed=3)
    shuffled = ids[::-1]
    relabel = dict(zip(shuffled, random_split_labels(shuffled, 0.2, seed=3), strict=True))
    assert [relabel[i] for i in ids] == labels
    assert labels != random_split_labels(ids, 0.2, seed=4)
    folds = kfold_labels(ids, 5, seed=0)
    assert sorted(folds.count(k) for k in range(5)) == [20] * 5


def test_collate_builds_atom_index(tmp_path: Path) -> None:
    feats = write_synthetic_features(tmp_path / "f.pt")
    ds = PDOSGraphDataset(feats, [0, 6, 10])
    batch = collate_pdos([ds[i] for i in range(3)])
    n_atoms = [int(feats["n_atoms"][r]) for r in (0, 6, 10)]
    assert batch["pdos"].shape == (sum(n_atoms), 16, 1000)
    assert batch["pdos"].dtype == torch.float32
    assert batch["atom_index"].tolist() == sum(([g] * n for g, n in enumerate(n_atoms)), [])
    assert batch["n_graphs"] == 3 and batch["row"].tolist() == [0, 6, 10]


def test_tiny_fit_writes_model_dvclive_and_metrics(tmp_path: Path) -> None:
    features = tmp_path / "features.pt"
    feats = write_synthetic_features(features)
    params = _params()
    model_path = run_train(features, _cfg(params), tmp_path / "model", tmp_path / "dvclive")

    assert model_path == tmp_path / "model" / "dosnp.pt"
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["dosnp.pt"]
    saved = read_model_file(model_path)
    assert saved.config["n_members"] == 1
    member = saved.config["member"]
    assert member["pooling"] == "mean+max" and member["n_outputs"] == 1
    assert saved.metadata["training"]["max_epochs"] == 2
    assert saved.metadata["data"]["n_train"] + saved.metadata["data"]["n_val"] == 9
    assert {"torch", "lightning"} <= set(saved.provenance["versions"])
    model, _ = load_dosnp(model_path)
    assert not model.training

    curves = tmp_path / "dvclive" / "plots" / "metrics"
    for split, name in (("train", "loss"), ("val", "loss"), ("val", "mae")):
        with (curves / split / f"{name}.tsv").open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        assert [int(r["step"]) for r in rows] == [1, 2], f"{split}/{name}: one point per epoch"
        assert all(math.isfinite(float(r[name])) for r in rows)
    summary = json.loads((tmp_path / "dvclive" / "metrics.json").read_text())
    assert math.isfinite(summary["val"]["loss"]) and math.isfinite(summary["train"]["loss"])

    metrics_path = tmp_path / "metrics" / "dosnp.json"
    predictions_path = tmp_path / "predictions" / "dosnp.csv"
    extra = {"n_selected": 13, "n_dft_failed": 1, "gpaw_vs_ecalj_lda_gap_mae": 0.05}
    metrics = run_evaluate(
        features, model_path, _structures(), _cfg(params, "evaluate"), metrics_path,
        predictions_path, extra,
    )
    on_disk = json.loads(metrics_path.read_text())
    assert metrics_path.read_text().endswith("}\n")
    # n_materials counts the materials used (featurized), not those selected.
    assert on_disk["n_materials"] == 12 and on_disk["n_selected"] == 13
    assert on_disk["n_dft_failed"] == 1
    assert on_disk["gpaw_vs_ecalj_lda_gap_mae"] == 0.05
    for model_name in ("dosnp", "lrlidg", "linear", "mean_baseline"):
        for split in ("train", "test"):
            m = on_disk[model_name][split]
            assert set(m) == {"mae", "rmse", "r2", "n"}
            assert math.isfinite(m["mae"]) and math.isfinite(m["rmse"])
        assert on_disk[model_name]["train"]["n"] == 9 and on_disk[model_name]["test"]["n"] == 3
    # The synthetic target is exactly linear in the LDA gap.
    assert on_disk["linear"]["test"]["mae"] < 1e-4
    assert metrics["dosnp"]["test"]["n"] == 3
    # The mean predictor: the training-set mean QSGW gap for every material.
    qsgw, split = feats["qsgw_gap"].double().numpy(), np.array(feats["split"])
    train_mean = qsgw[split == "train"].mean()
    assert on_disk["mean_baseline"]["test"]["mae"] == pytest.approx(
        np.abs(qsgw[split == "test"] - train_mean).mean(), rel=1e-5
    )
    # Every comparison pairs DOSnp with one baseline over the test materials.
    for key, other in (("dosnp_vs_lrlidg", "lrlidg"), ("dosnp_vs_linear", "linear"),
                       ("dosnp_vs_mean", "mean_baseline")):
        record = on_disk["comparisons"][key]
        assert (record["a"], record["b"], record["n"]) == ("dosnp", other, 3)
        assert record["mean_b"] == pytest.approx(on_disk[other]["test"]["mae"], rel=1e-5)
        assert record["diff"] == pytest.approx(
            on_disk["dosnp"]["test"]["mae"] - on_disk[other]["test"]["mae"], rel=1e-5, abs=1e-5
        )  # (the file keeps 6 significant digits)
    assert on_disk["lrlidg"]["max_descriptors_per_sample"] in (0.2, 1.0)
    assert set(on_disk["lrlidg"]["inner_cv_mae"]) == {"0.2", "1"}

    with predictions_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == PREDICTION_COLUMNS
    assert [r["material_id"] for r in rows] == feats["material_ids"]
    assert all(math.isfinite(float(r["pred_dosnp"])) for r in rows)


def test_trainer_never_touches_the_surrounding_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dvclive.Live() on its own runs `dvc init` (and stages files in git) when the working
    # directory is a git repository without DVC; make_trainer must prevent that.
    from dulwich.repo import Repo  # a dependency of dvc (via scmrepo): always installed

    repo = tmp_path / "repo"
    repo.mkdir()
    Repo.init(str(repo))  # an empty git repository, as right after `git init`
    monkeypatch.chdir(repo)
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    features = tmp_path / "features.pt"
    write_synthetic_features(features)
    params = _params(max_epochs=1)
    run_train(features, _cfg(params), tmp_path / "model", tmp_path / "dvclive")
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before
    assert (tmp_path / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").is_file()


def test_training_is_reproducible(tmp_path: Path) -> None:
    features = tmp_path / "features.pt"
    write_synthetic_features(features)
    params = _params(max_epochs=1, val_fraction=0.0, patience=None)
    a = read_model_file(run_train(features, _cfg(params), tmp_path / "a", tmp_path / "live_a"))
    b = read_model_file(run_train(features, _cfg(params), tmp_path / "b", tmp_path / "live_b"))
    assert a.metadata["training"]["monitor"] == "train_loss"
    for key, tensor in a.state_dict.items():
        assert torch.equal(tensor, b.state_dict[key]), key


def test_metrics_and_json_are_stable(tmp_path: Path) -> None:
    m = regression_metrics([1.0, 2.0, 3.0], [1.5, 2.0, 2.5])
    assert m["n"] == 3 and m["mae"] == pytest.approx(1 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(0.5 / 3))
    assert m["r2"] == pytest.approx(0.75)
    path = write_json(tmp_path / "a" / "m.json", {"b": 1 / 3, "a": np.float32(2.5), "c": math.nan})
    assert path.read_text() == '{\n  "a": 2.5,\n  "b": 0.333333,\n  "c": null\n}\n'
    assert math.isnan(regression_metrics([1.0], [2.0])["r2"])


@pytest.mark.parametrize(
    ("monitor", "curve"), [(None, "mae"), ("val_mae", "mae"), ("val_loss", "loss")]
)
def test_checkpoint_is_the_best_epoch_of_the_monitored_metric(
    tmp_path: Path, monitor, curve
) -> None:
    features = tmp_path / "features.pt"
    write_synthetic_features(features)
    overrides = {"max_epochs": 4} | ({} if monitor is None else {"monitor": monitor})
    saved = read_model_file(
        run_train(features, _cfg(_params(**overrides)), tmp_path / "m", tmp_path / "live")
    )
    with (tmp_path / "live" / "plots" / "metrics" / "val" / f"{curve}.tsv").open() as fh:
        values = [float(r[curve]) for r in csv.DictReader(fh, delimiter="\t")]
    assert saved.metadata["training"]["monitor"] == (monitor or "val_mae")
    # The curve at the top of the dvclive folder is member 0's.
    assert saved.metadata["training"]["best_score"][0] == pytest.approx(min(values), rel=1e-6)


def test_ensemble_members_train_with_consecutive_seeds(tmp_path: Path) -> None:
    features = tmp_path / "features.pt"
    write_synthetic_features(features)
    pair = read_model_file(run_train(
        features, _cfg(_params(max_epochs=1, ensemble=2)), tmp_path / "p", tmp_path / "lp"
    ))
    assert pair.config["n_members"] == 2
    assert pair.metadata["training"]["seeds"] == [0, 1]
    assert len(pair.metadata["training"]["epochs_run"]) == 2
    assert (
        tmp_path / "lp" / "members" / "1" / "plots" / "metrics" / "train" / "loss.tsv"
    ).is_file()
    weights = {k: v for k, v in pair.state_dict.items() if k.endswith("fc.weight")}
    assert not torch.equal(weights["members.0.fc.weight"], weights["members.1.fc.weight"])
    # Member 0 of an ensemble is the single network the same seed trains.
    single = read_model_file(
        run_train(features, _cfg(_params(max_epochs=1)), tmp_path / "s", tmp_path / "ls")
    )
    for key, tensor in single.state_dict.items():
        assert torch.equal(tensor, pair.state_dict[key]), key


def test_train_stage_killed_in_a_member_resumes_to_the_unbroken_ensemble(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    features = tmp_path / "features.pt"
    write_synthetic_features(features)
    params = _params(max_epochs=3, ensemble=2)
    unbroken = read_model_file(run_train(features, _cfg(params), tmp_path / "u", tmp_path / "lu"))

    class KilledInSecondEpoch(lightning.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch == 1:
                raise RuntimeError("simulated kill")

    calls: list[str] = []

    def fit_with_kill(*args, resume_dir, **kwargs):
        calls.append(resume_dir.name)
        callbacks = (
            [KilledInSecondEpoch()]
            if resume_dir.name == "member1" and calls.count("member1") == 1 else []
        )
        return training.fit_module(*args, resume_dir=resume_dir, callbacks=callbacks, **kwargs)

    monkeypatch.setattr(dosnp_train, "fit_module", fit_with_kill)
    fits = tmp_path / "fits"
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_train(features, _cfg(params), tmp_path / "k", tmp_path / "lk", resume_root=fits)
    (run_dir,) = fits.iterdir()
    assert (run_dir / "member0" / training.FIT_RESULT_FILE).is_file()
    assert (run_dir / "member1" / "checkpoints" / "last.ckpt").is_file()

    # The re-run reuses member 0 (no fit at all) and resumes member 1 in its second epoch.
    original_fit = lightning.Trainer.fit
    monkeypatch.setattr(lightning.Trainer, "fit", _fit_only_when_resuming(original_fit))
    resumed = read_model_file(
        run_train(features, _cfg(params), tmp_path / "r", tmp_path / "lr", resume_root=fits)
    )
    for key, tensor in unbroken.state_dict.items():
        assert torch.equal(tensor, resumed.state_dict[key]), key
    assert resumed.metadata["training"]["epochs_run"] == unbroken.metadata["training"]["epochs_run"]
    for live in (tmp_path / "lr", tmp_path / "lr" / "members" / "1"):
        with (live / "plots" / "metrics" / "train" / "loss.tsv").open() as fh:
            assert [int(r["step"]) for r in csv.DictReader(fh, delimiter="\t")] == [1, 2, 3]
    # Other parameters are another run: nothing is reused from this one.
    monkeypatch.setattr(lightning.Trainer, "fit", original_fit)
    run_train(features, _cfg(_params(max_epochs=3, ensemble=2, lr=2e-3)), tmp_path / "o",
              tmp_path / "lo", resume_root=fits)
    assert len(list(fits.iterdir())) == 2


def _fit_only_when_resuming(fit):
    """Trainer.fit that refuses to start a fit from scratch (only resumed fits may train)."""

    def guarded(self, *args, ckpt_path=None, **kwargs):
        if ckpt_path is None:
            raise AssertionError(
                "a fit was started from scratch instead of being reused or resumed"
            )
        return fit(self, *args, ckpt_path=ckpt_path, **kwargs)

    return guarded


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "three"])
def test_bad_ensemble_size_is_rejected(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^params.yaml dosnp.train.ensemble: "):
        _cfg(_params(ensemble=bad))


def test_unknown_monitor_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"^params.yaml dosnp.train.monitor: .*'val_r2'"):
        _cfg(_params(monitor="val_r2"))


def test_unreadable_features_files_name_the_path(tmp_path: Path) -> None:
    from esrepro.papers.dosnp.data import load_features

    good = tmp_path / "good.pt"
    write_synthetic_features(good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    text = tmp_path / "text.pt"
    text.write_text("material_ids,pdos\n")
    for path in (truncated, empty, text):
        with pytest.raises(ValueError, match=rf"^{path}: "):
            load_features(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_features(tmp_path / "missing.pt")
    assert len(load_features(good)["material_ids"]) == N_MATERIALS


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.update(pdos=f["pdos"][:, :8]), r"pdos must be a tensor \(total_atoms, 16"),
        (lambda f: f.update(pdos=f["pdos"].tolist()), "pdos must be a tensor .* got list"),
        (
            lambda f: f.update(energy_grid=f["energy_grid"][:-1]),
            "energy_grid has 999 points, pdos 1000",
        ),
        (lambda f: f.update(n_atoms=f["n_atoms"] + 1), "n_atoms disagrees"),
        (lambda f: f["pdos"].__setitem__((0, 0, 0), float("nan")), "NaN or infinite"),
    ],
)
def test_inconsistent_features_are_rejected(tmp_path: Path, change, message: str) -> None:
    from esrepro.papers.dosnp.data import load_features

    path = tmp_path / "features.pt"
    feats = write_synthetic_features(path)
    change(feats)
    torch.save(feats, path)
    with pytest.raises(ValueError, match=message):
        load_features(path)
