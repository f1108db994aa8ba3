"""Resumable fits: Lightning training that survives a killed stage.

Paper-scale fits run for hours on a workstation, longer than a batch job or a login session may
live, so :func:`fit_module` can keep its Lightning checkpoints in a persistent directory keyed by
everything the fit depends on (:func:`run_key`): a killed stage resumes at its last finished
epoch, with the random streams restored, and a fit that already finished is not repeated.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from esrepro.training.trainer import make_trainer

log = logging.getLogger(__name__)

#: In a resume directory: the finished fit (best weights + :class:`FitResult`).
FIT_RESULT_FILE = "fit.pt"


@dataclass
class FitResult:
    """What a :func:`fit_module` run did (for model-file metadata)."""

    monitor: str
    best_score: float | None
    epochs_run: int
    device: str


def run_key(
    parts: Mapping[str, Any],
    files: Iterable[str | Path] = (),
    sources: Iterable[ModuleType | str | Path] = (),
) -> str:
    """16-hex digest of everything a training run's result depends on.

    ``parts``: parameters and other plain values (JSON, keys sorted); ``files``: data files,
    hashed by content (a caller keying several runs on one large file can hash it once with
    :func:`esrepro.fetch.sha256_of` and pass the digest in ``parts``); ``sources``: modules,
    packages (every module in them) or source files whose code shapes the result, so that a
    code change starts a fresh run instead of resuming a stale one.
    """
    from esrepro.fetch import sha256_of

    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for f in files:
        digest.update(sha256_of(f).encode())
    for src in sources:
        for path in _source_files(src):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _source_files(src: ModuleType | str | Path) -> list[Path]:
    """The files holding ``src``'s code: a package's ``__init__.py`` alone would miss the rest."""
    if not isinstance(src, ModuleType):
        return [Path(src)]
    if hasattr(src, "__path__"):
        return sorted(p for folder in src.__path__ for p in Path(folder).rglob("*.py"))
    return [Path(src.__file__)]


class RandomStateCheckpoint(Callback):
    """Carries the random streams through a checkpoint, so a resumed fit equals an unbroken one.

    Lightning restores weights, optimizer, epoch and callback states, but not the generators:
    without this, dropout masks and the shuffling order after a resume would repeat those of
    epoch 0. Saved: torch's, numpy's and Python's global states and the state of each
    ``generators`` entry (the data loaders' shuffling generators).
    """

    def __init__(self, generators: Sequence[torch.Generator] = ()) -> None:
        self.generators = list(generators)

    def state_dict(self) -> dict[str, Any]:
        # The legacy global state: seed_everything seeds it, and code may draw from it.
        kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
        return {
            "torch": torch.get_rng_state(),
            "numpy": (kind, torch.from_numpy(np.asarray(keys).copy()), pos, has_gauss, cached),
            "python": random.getstate(),
            "generators": [g.get_state() for g in self.generators],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        kind, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))  # noqa: NPY002
        random.setstate(state_dict["python"])
        saved = state_dict["generators"]
        if len(saved) != len(self.generators):
            raise ValueError(
                f"checkpoint holds {len(saved)} data-loader generator states, this fit has "
                f"{len(self.generators)}"
            )
        for gen, st in zip(self.generators, saved, strict=True):
            gen.set_state(st)


def _loader_generators(loader: Any) -> list[torch.Generator]:
    """The shuffling generator of a DataLoader (its own, or its sampler's), if it has one."""
    gens = []
    for owner in (loader, getattr(loader, "sampler", None)):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g in gens):
            gens.append(gen)
    return gens


def _readable_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or ``None`` (with a warning) if it is missing or truncated."""
    if not path.is_file():
        return None
    try:
        # Our own file in our own scratch directory (it holds optimizer and RNG objects).
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a kill during the write leaves a truncated zip
        log.warning(
            "%s is unreadable (%s: %s); starting this fit afresh", path, type(exc).__name__, exc
        )
        return None


def _trim_curves(dvclive_dir: Path, last_step: int) -> None:
    """Drop DVCLive curve rows past ``last_step``: epochs logged after the checkpoint a fit
    resumes from are run again and would otherwise appear twice."""
    for tsv in (dvclive_dir / "plots" / "metrics").rglob("*.tsv"):
        with tsv.open(newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
        if not rows:
            continue
        step_col = rows[0].index("step") if "step" in rows[0] else None
        if step_col is None:
            continue
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[step_col]) <= last_step]
        if len(kept) != len(rows):
            with tsv.open("w", newline="") as fh:
                csv.writer(fh, delimiter="\t", lineterminator="\n").writerows(kept)


def _copy_curves(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)


def fit_module(
    build_module: Callable[[], Any],
    train_loader: Any,
    val_loader: Any | None,
    *,
    max_epochs: int,
    accelerator: str = "auto",
    devices: int | str = 1,
    seed: int = 0,
    dvclive_dir: Path,
    patience: int | None = None,
    monitor: str | None = None,
    resume_dir: Path | None = None,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, FitResult]:
    """Train a LightningModule and return it with the weights of its best epoch, on the CPU.

    ``build_module`` is called after :func:`make_trainer` has seeded every generator, so the
    initial weights depend on ``seed`` alone. ``monitor`` defaults to ``val_loss`` with a
    validation loader and ``train_loss`` without.

    Without ``resume_dir`` the checkpoints live in a temporary directory: a stage's declared
    outputs are the model files its caller writes, not Lightning's. With ``resume_dir`` (a
    directory the caller keys by everything the fit depends on, see :func:`run_key`), the
    checkpoints and curves are kept there: after a kill the next call resumes from the last
    finished epoch (weights, optimizer, early-stopping and random states), and once the fit has
    finished (``resume_dir/fit.pt``) a call returns its result without training. Curves are
    copied to ``dvclive_dir`` either way.
    """
    monitor = monitor or ("val_loss" if val_loader is not None else "train_loss")
    patience = None if patience in (None, 0) else int(patience)
    dvclive_dir = Path(dvclive_dir)
    if resume_dir is None:
        with tempfile.TemporaryDirectory(prefix="esrepro-train-") as scratch:
            return _fit(
                build_module, train_loader, val_loader, max_epochs=max_epochs,
                accelerator=accelerator, devices=devices, seed=seed, out_dir=Path(scratch),
                curves=dvclive_dir, patience=patience, monitor=monitor, callbacks=callbacks,
                resumable=False, resume=None,
            )

    resume_dir = Path(resume_dir)
    curves = resume_dir / "dvclive"
    finished = resume_dir / FIT_RESULT_FILE
    if finished.is_file():
        saved = torch.load(finished, map_location="cpu", weights_only=True)
        module = build_module()
        module.load_state_dict(saved["state_dict"])
        _copy_curves(curves, dvclive_dir)
        log.info("reusing the finished fit in %s", resume_dir)
        return module.cpu(), FitResult(**saved["result"])

    last = resume_dir / "checkpoints" / "last.ckpt"
    state = _readable_checkpoint(last)
    if state is None:
        shutil.rmtree(resume_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(curves, ignore_errors=True)
    else:
        # Lightning stores the index of the epoch the checkpoint was taken in; curves are
        # logged at step = epoch + 1.
        _trim_curves(curves, int(state["epoch"]) + 1)
        log.info("resuming the fit in %s after epoch %d", resume_dir, int(state["epoch"]) + 1)
        del state
    module, result = _fit(
        build_module, train_loader, val_loader, max_epochs=max_epochs, accelerator=accelerator,
        devices=devices, seed=seed, out_dir=resume_dir, curves=curves, patience=patience,
        monitor=monitor, callbacks=callbacks, resumable=True,
        resume=last if last.is_file() else None,
    )
    tmp = finished.with_name(finished.name + ".tmp")
    torch.save({"state_dict": module.state_dict(), "result": asdict(result)}, tmp)
    tmp.replace(finished)
    # The finished fit is all a re-run needs; the checkpoints (with optimizer state) can go.
    shutil.rmtree(resume_dir / "checkpoints", ignore_errors=True)
    _copy_curves(curves, dvclive_dir)
    return module, result


def _fit(
    build_module: Callable[[], Any],
    train_loader: Any,
    val_loader: Any | None,
    *,
    max_epochs: int,
    accelerator: str,
    devices: int | str,
    seed: int,
    out_dir: Path,
    curves: Path,
    patience: int | None,
    monitor: str,
    callbacks: Sequence[Any],
    resumable: bool,
    resume: Path | None,
) -> tuple[Any, FitResult]:
    """One Lightning fit in ``out_dir``; ``resumable`` writes ``last.ckpt`` (with the random
    states) every epoch, ``resume`` continues from such a checkpoint."""
    if resumable:
        callbacks = [RandomStateCheckpoint(_loader_generators(train_loader)), *callbacks]
    trainer, checkpoint = make_trainer(
        max_epochs=max_epochs, accelerator=accelerator, devices=devices, seed=seed,
        out_dir=out_dir, dvclive_dir=curves, patience=patience, monitor=monitor,
        callbacks=callbacks, save_last=resumable, resume_curves=resume is not None,
    )
    module = build_module()
    with warnings.catch_warnings():
        # Resuming means the checkpoint directory is not empty; that is the point.
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
        trainer.fit(
            module, train_dataloaders=train_loader, val_dataloaders=val_loader,
            ckpt_path=None if resume is None else str(resume), weights_only=False,
        )
    if checkpoint.best_model_path:
        # Our own checkpoint, written by this fit (or the run it resumed).
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)
        module.load_state_dict(state["state_dict"])
    best = checkpoint.best_model_score
    result = FitResult(
        monitor=monitor,
        best_score=None if best is None else float(best),
        epochs_run=int(trainer.current_epoch),
        device=str(trainer.strategy.root_device),
    )
    return module.cpu(), result
