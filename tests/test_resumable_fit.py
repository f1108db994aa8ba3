"""Resumable fits of the shared training engine: a killed fit resumes to the same weights."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import lightning
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from esrepro.training import FIT_RESULT_FILE, fit_module, run_key

MAX_EPOCHS = 5


class _Regressor(lightning.LightningModule):
    """Small MLP with dropout: its result depends on the dropout masks and the batch order."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log(
            "val_loss", nn.functional.mse_loss(self.net(x), y), on_epoch=True, batch_size=len(x)
        )

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class _KilledAtEpoch(lightning.Callback):
    """Stands in for a kill: raises when epoch ``epoch`` (0-based) starts, after the previous
    epoch's checkpoint was written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated kill")


def _data() -> tuple[TensorDataset, TensorDataset]:
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(48, 4, generator=gen)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 0.1 * torch.randn(48, 1, generator=gen)
    return TensorDataset(x[:36], y[:36]), TensorDataset(x[36:], y[36:])


def _fit(tmp_path: Path, name: str, resume_dir: Path | None, callbacks=(), train_loader=None):
    train, val = _data()
    loader = train_loader or DataLoader(
        train, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(7)
    )
    module, result = fit_module(
        _Regressor, loader, DataLoader(val, batch_size=8), max_epochs=MAX_EPOCHS, accelerator="cpu",
        seed=3, dvclive_dir=tmp_path / name, patience=None, resume_dir=resume_dir,
        callbacks=callbacks,
    )
    return module, result


def _steps(dvclive_dir: Path, curve: str) -> list[int]:
    with (dvclive_dir / "plots" / "metrics" / curve).open() as fh:
        return [int(r["step"]) for r in csv.DictReader(fh, delimiter="\t")]


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_killed_fit_resumes_to_the_weights_of_an_unbroken_fit(tmp_path: Path) -> None:
    unbroken, unbroken_result = _fit(tmp_path, "live_unbroken", None)

    resume_dir = tmp_path / "fits" / "run"
    with pytest.raises(RuntimeError, match="simulated kill"):
        _fit(tmp_path, "live_killed", resume_dir, callbacks=[_KilledAtEpoch(3)])
    assert (resume_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (resume_dir / FIT_RESULT_FILE).exists()
    assert _steps(resume_dir / "dvclive", "train/loss.tsv") == [1, 2, 3]

    resumed, resumed_result = _fit(tmp_path, "live_resumed", resume_dir)
    # Weights, optimizer, dropout masks and batch order all continue where the kill left them.
    _assert_same_weights(unbroken, resumed)
    assert resumed_result == unbroken_result
    # Every epoch appears once in the curves handed to the stage.
    assert _steps(tmp_path / "live_resumed", "train/loss.tsv") == list(range(1, MAX_EPOCHS + 1))
    assert _steps(tmp_path / "live_resumed", "val/loss.tsv") == list(range(1, MAX_EPOCHS + 1))
    assert (resume_dir / FIT_RESULT_FILE).is_file()
    assert not (resume_dir / "checkpoints").exists(), "checkpoints are dropped once the fit is done"


def test_curve_rows_logged_after_the_last_checkpoint_are_not_repeated(tmp_path: Path) -> None:
    unbroken, _ = _fit(tmp_path, "live_unbroken", None)
    resume_dir = tmp_path / "fits" / "run"
    with pytest.raises(RuntimeError):
        _fit(tmp_path, "live_killed", resume_dir, callbacks=[_KilledAtEpoch(2)])
    # A kill between logging an epoch and checkpointing it leaves a row the resumed fit redoes.
    tsv = resume_dir / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv"
    tsv.write_text(tsv.read_text() + "3\t0.5\n")
    resumed, _ = _fit(tmp_path, "live_resumed", resume_dir)
    _assert_same_weights(unbroken, resumed)
    assert _steps(tmp_path / "live_resumed", "train/loss.tsv") == list(range(1, MAX_EPOCHS + 1))


def test_finished_fit_is_returned_without_training(tmp_path: Path) -> None:
    resume_dir = tmp_path / "fits" / "run"
    first, first_result = _fit(tmp_path, "live_first", resume_dir)

    class _NeverIterated(DataLoader):
        def __iter__(self):
            raise AssertionError("a finished fit must not train again")

    train, _ = _data()
    again, again_result = _fit(
        tmp_path, "live_again", resume_dir, train_loader=_NeverIterated(train, batch_size=8)
    )
    _assert_same_weights(first, again)
    assert again_result == first_result
    assert _steps(tmp_path / "live_again", "train/loss.tsv") == list(range(1, MAX_EPOCHS + 1))


def test_truncated_checkpoint_starts_the_fit_afresh(tmp_path: Path) -> None:
    unbroken, _ = _fit(tmp_path, "live_unbroken", None)
    resume_dir = tmp_path / "fits" / "run"
    with pytest.raises(RuntimeError):
        _fit(tmp_path, "live_killed", resume_dir, callbacks=[_KilledAtEpoch(2)])
    last = resume_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:100])  # a kill in the middle of writing it
    restarted, _ = _fit(tmp_path, "live_restarted", resume_dir)
    _assert_same_weights(unbroken, restarted)
    assert _steps(tmp_path / "live_restarted", "train/loss.tsv") == list(range(1, MAX_EPOCHS + 1))


def test_run_key_changes_with_parameters_data_and_code(tmp_path: Path) -> None:
    data, code = tmp_path / "data.bin", tmp_path / "code.py"
    data.write_bytes(b"abc")
    code.write_text("x = 1\n")
    base = run_key({"lr": 1e-3, "seed": 0}, files=[data], sources=[code])
    assert base == run_key({"seed": 0, "lr": 1e-3}, files=[data], sources=[code])
    assert base != run_key({"lr": 1e-3, "seed": 1}, files=[data], sources=[code])
    data.write_bytes(b"abd")
    changed_data = run_key({"lr": 1e-3, "seed": 0}, files=[data], sources=[code])
    code.write_text("x = 2\n")
    changed_code = run_key({"lr": 1e-3, "seed": 0}, files=[data], sources=[code])
    assert len({base, changed_data, changed_code}) == 3


def test_run_key_of_a_package_covers_every_module_in_it(tmp_path: Path) -> None:
    # esrepro.training is a package: a change in training/resumable.py must start a fresh fit.
    package = tmp_path / "pkg_runkey"
    package.mkdir()
    (package / "__init__.py").write_text("from pkg_runkey.impl import f\n")
    (package / "impl.py").write_text("def f():\n    return 1\n")
    spec = importlib.util.spec_from_file_location(
        "pkg_runkey", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    module = importlib.util.module_from_spec(spec)
    before = run_key({}, sources=[module])
    (package / "impl.py").write_text("def f():\n    return 2\n")
    assert run_key({}, sources=[module]) != before
