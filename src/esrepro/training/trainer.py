"""The seeded Lightning ``Trainer`` every paper's train stage uses, and its DVCLive logger.

One factory, so seeding, device selection, checkpointing, early stopping and learning curves
behave the same in every paper.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from dvclive.lightning import DVCLiveLogger

log = logging.getLogger(__name__)

ACCELERATORS: tuple[str, ...] = ("auto", "cpu", "gpu", "cuda")


def resolve_accelerator(requested: str) -> str:
    """Map a requested accelerator to the Lightning accelerator name actually used.

    ``"auto"`` picks ``"gpu"`` when CUDA is available and ``"cpu"`` otherwise; ``"cuda"`` is an
    alias of ``"gpu"``. Asking for a GPU on a machine without CUDA raises ``RuntimeError`` at
    once, instead of Lightning failing later (or a run silently training on CPU for hours).
    """
    req = str(requested).strip().lower()
    if req not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {requested!r}; allowed: {', '.join(ACCELERATORS)}")
    cuda = torch.cuda.is_available()
    if req == "auto":
        return "gpu" if cuda else "cpu"
    if req in ("gpu", "cuda"):
        if not cuda:
            raise RuntimeError(
                f"accelerator {requested!r} requested but torch.cuda.is_available() is False "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); "
                "set the accelerator parameter to 'cpu' or 'auto'"
            )
        return "gpu"
    return "cpu"


def _describe_device(accelerator: str, devices: int | str) -> str:
    if accelerator == "gpu":
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        return f"gpu (devices={devices}; {', '.join(names)})"
    return f"cpu (devices={devices}; torch threads={torch.get_num_threads()})"


def make_trainer(
    *,
    max_epochs: int,
    accelerator: str = "auto",
    devices: int | str = 1,
    seed: int = 0,
    out_dir: Path,
    dvclive_dir: Path,
    patience: int | None = None,
    monitor: str = "val_loss",
    deterministic: bool = True,
    log_every_n_steps: int = 1,
    enable_model_summary: bool = False,
    callbacks: Sequence[Any] = (),
    save_last: bool = False,
    resume_curves: bool = False,
) -> tuple[Any, Any]:
    """Build a seeded Lightning ``Trainer`` with checkpointing, early stopping and DVCLive.

    Args:
        max_epochs: upper bound on epochs.
        accelerator: ``"auto" | "cpu" | "gpu" | "cuda"`` (see :func:`resolve_accelerator`).
        devices: passed to Lightning (``1`` keeps runs reproducible and simple).
        seed: seeds python, numpy and torch, including dataloader workers.
        out_dir: Lightning root dir; the best checkpoint is written to ``out_dir/checkpoints``.
        dvclive_dir: DVCLive output. Learning curves land in ``dvclive_dir/plots/metrics/`` as
            TSV files (columns ``step``, metric; ``step`` is the 1-based epoch) that DVC renders
            as plots, the last values in ``dvclive_dir/metrics.json`` and the module's
            hyper-parameters in ``dvclive_dir/params.yaml``. DVCLive turns Lightning's
            ``train_loss`` into ``train/loss``, so e.g. ``val_mae`` is plotted from
            ``plots/metrics/val/mae.tsv``.
        patience: epochs without improvement of ``monitor`` before stopping; ``None`` disables
            early stopping.
        monitor: logged metric (minimised) that selects the best checkpoint and drives early
            stopping.
        deterministic: ask torch for deterministic kernels (bitwise-repeatable CPU runs).
        log_every_n_steps: Lightning's logging interval for step-level metrics.
        enable_model_summary: print the layer summary table at fit start.
        callbacks: further Lightning callbacks.
        save_last: also write ``out_dir/checkpoints/last.ckpt`` after every epoch (resumable).
        resume_curves: continue the DVCLive files already in ``dvclive_dir`` instead of
            starting them afresh (a resumed fit).

    Returns:
        ``(trainer, checkpoint_callback)``; ``checkpoint_callback.best_model_path`` names the
        best checkpoint after ``trainer.fit``.
    """
    import lightning
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    acc = resolve_accelerator(accelerator)
    lightning.seed_everything(seed, workers=True)
    out_dir = Path(out_dir)
    dvclive_dir = Path(dvclive_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dvclive_dir.mkdir(parents=True, exist_ok=True)
    log.info(
        "training on %s (requested %r), seed %d", _describe_device(acc, devices), accelerator, seed
    )

    checkpoint = ModelCheckpoint(
        dirpath=out_dir / "checkpoints",
        filename="best",
        monitor=monitor,
        mode="min",
        save_top_k=1,
        # Overwrite "best.ckpt" from an earlier run instead of writing best-v1.ckpt beside it.
        enable_version_counter=False,
        save_last=save_last,
    )
    all_callbacks: list[Any] = [checkpoint, *callbacks]
    if patience is not None:
        all_callbacks.append(EarlyStopping(monitor=monitor, mode="min", patience=int(patience)))

    logger = make_dvclive_logger(dvclive_dir, resume=resume_curves)

    trainer = lightning.Trainer(
        max_epochs=int(max_epochs),
        accelerator=acc,
        devices=devices,
        deterministic=deterministic,
        logger=logger,
        callbacks=all_callbacks,
        default_root_dir=str(out_dir),
        log_every_n_steps=log_every_n_steps,
        # A progress bar in a DVC log file is thousands of carriage returns; show it only live.
        enable_progress_bar=sys.stderr.isatty(),
        enable_model_summary=enable_model_summary,
    )
    return trainer, checkpoint


def make_dvclive_logger(dvclive_dir: Path, resume: bool = False) -> Any:
    """A DVCLive Lightning logger writing to ``dvclive_dir`` that never touches the repository.

    ``resume=True`` appends to the curves already there (a resumed fit) instead of clearing them.

    ``dvcyaml=False`` / ``save_dvc_exp=False``: the pipeline's ``dvc.yaml`` declares the plots
    and metrics itself, and a training run must not create DVC experiments or git refs.
    Besides, ``dvclive.Live()`` looks up the DVC repository around the working directory and,
    when it finds a git repository without DVC (or one with no commit yet), runs ``dvc init``
    there, creating ``.dvc/`` and staging files in the git index, or fails on the empty
    repository. We therefore hand ``Live`` no repository at all; it then only writes files
    under ``dvclive_dir`` (``metrics.json``, ``params.yaml``, ``plots/metrics/*.tsv``), which is
    all the pipeline needs, inside or outside ``dvc repro``.
    """
    from unittest import mock

    import dvclive.live
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if getattr(rank_zero_only, "rank", 0) != 0:
        # Other ranks never log (DVCLiveLogger.log_metrics is rank-zero only), so they never
        # build the Live object and never write anything.
        return EpochDVCLiveLogger(
            dir=str(dvclive_dir), save_dvc_exp=False, dvcyaml=False, resume=resume
        )
    # patch.object fails loudly (AttributeError) if a future dvclive renames the hook, rather
    # than silently falling back to initialising DVC in the user's repository.
    with mock.patch.object(dvclive.live, "get_dvc_repo", return_value=None):
        live = dvclive.live.Live(
            dir=str(dvclive_dir), save_dvc_exp=False, dvcyaml=False, report=None, resume=resume
        )
    return EpochDVCLiveLogger(experiment=live)


class EpochDVCLiveLogger(DVCLiveLogger):
    """DVCLive logger whose step axis is the (1-based) epoch for epoch-level metrics.

    Lightning reports epoch-level metrics at the optimizer-step count, which depends on the
    batch size and dataset size; plotting against the epoch makes curves from different runs
    comparable. Metrics logged with an ``epoch`` entry (Lightning adds it to every epoch-level
    log call) are written at step ``epoch + 1`` (DVCLive treats step 0 as "no step given");
    other calls keep DVCLive's default behaviour.
    """

    def log_metrics(
        self, metrics: Mapping[str, Any], step: int | None = None, sync: bool | None = False
    ) -> None:
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        if epoch is not None:
            step = int(epoch) + 1
        if metrics:
            super().log_metrics(metrics, step, sync)
