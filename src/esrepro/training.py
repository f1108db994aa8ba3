"""Shared PyTorch Lightning engine: device checks, seeded trainer factory, model files.

Every paper's train stage goes through :func:`make_trainer`, so seeding, device selection,
checkpointing, early stopping and DVCLive learning curves behave the same everywhere, and through
:func:`save_model` / :func:`load_model`, so a model file always carries the hyper-parameters
needed to rebuild the network plus provenance metadata (in the spirit of matgl's
``save``/``load``, but as one self-contained torch file).

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
import os
import pickle
import platform
import random
import shutil
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from dvclive.lightning import DVCLiveLogger
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)

ACCELERATORS: tuple[str, ...] = ("auto", "cpu", "gpu", "cuda")

#: Format tag written into every model file; bump when the layout changes incompatibly.
MODEL_FORMAT = "esrepro-model/1"


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
        return EpochDVCLiveLogger(dir=str(dvclive_dir), save_dvc_exp=False, dvcyaml=False, resume=resume)
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


# --------------------------------------------------------------------------- model files


@dataclass
class SavedModel:
    """Contents of a model file written by :func:`save_model`."""

    state_dict: dict[str, torch.Tensor]
    hparams: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


def _package_version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def _find_git_dir(start: Path) -> Path | None:
    for d in (start, *start.parents):
        dot_git = d / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():  # worktree / submodule: ".git" holds "gitdir: <path>"
            text = dot_git.read_text(encoding="utf-8").strip()
            if text.startswith("gitdir:"):
                return (d / text.split(":", 1)[1].strip()).resolve()
    return None


def git_commit(start: Path | None = None) -> str | None:
    """Commit hash of the repository containing ``start`` (default: cwd), or ``None``.

    Reads ``.git`` files directly rather than running ``git``, so it works without a git binary
    and never touches the index. ``ESREPRO_GIT_COMMIT`` overrides (e.g. in containers without
    the ``.git`` directory).
    """
    env = os.environ.get("ESREPRO_GIT_COMMIT")
    if env:
        return env
    try:
        git_dir = _find_git_dir((start or Path.cwd()).resolve())
        if git_dir is None:
            return None
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head or None  # detached HEAD holds the hash itself
        ref = head.split(":", 1)[1].strip()
        # Worktrees keep refs in the common dir named by "commondir".
        common = git_dir
        if (git_dir / "commondir").is_file():
            common = (
                git_dir / (git_dir / "commondir").read_text(encoding="utf-8").strip()
            ).resolve()
        for base in (git_dir, common):
            if (base / ref).is_file():
                return (base / ref).read_text(encoding="utf-8").strip() or None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except OSError:
        return None
    return None


def provenance() -> dict[str, Any]:
    """Versions of the software that shaped a model, the git commit and a UTC timestamp."""
    return {
        "created_utc": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "versions": {
            name: _package_version(name)
            for name in ("esrepro", "torch", "lightning", "numpy", "dvclive")
        },
    }


def _plain(obj: Any, what: str) -> Any:
    # Model files are loaded with torch.load(weights_only=True), which refuses arbitrary
    # pickled objects; a JSON round trip guarantees only plain containers/scalars are stored
    # and fails early, at save time, with the offending key.
    try:
        return json.loads(json.dumps(obj, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serialisable: {exc}") from exc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON-serialisable")


def save_model(
    path: str | Path,
    model_state: dict[str, torch.Tensor],
    hparams: dict[str, Any],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Save weights, constructor hyper-parameters and metadata in one torch file.

    ``metadata`` (training parameters, data hashes, ...) is merged over :func:`provenance`
    (versions, git commit, timestamp). Tensors are moved to CPU so the file loads anywhere.
    The file is written to a temporary sibling and renamed, so an interrupted save never leaves
    a truncated model behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**provenance(), **(metadata or {})}
    payload = {
        "format": MODEL_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model_state.items()},
        "hparams": _plain(hparams, "hparams"),
        "metadata": _plain(meta, "metadata"),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_torch_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` of a data or model file, safely (``weights_only=True``: it cannot run code).

    A missing, empty, truncated or foreign file is a ``ValueError`` naming the path; torch's own
    messages (``PytorchStreamReader failed ...``, a bare ``EOFError``) name none.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path}: not a file written by torch.save: {exc}") from exc
        raise ValueError(
            f"{path}: holds objects other than tensors and plain python values "
            f"(str/int/float/list/dict); convert numpy arrays and paths before saving: {exc}"
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{path}: unreadable torch file (empty, truncated or not written by torch.save): "
            f"{exc or type(exc).__name__}"
        ) from exc


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> SavedModel:
    """Load a file written by :func:`save_model` (safely: ``weights_only=True``)."""
    path = Path(path)
    payload = read_torch_file(path, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{path}: not an esrepro model file (format {found!r}, expected {MODEL_FORMAT!r})"
        )
    return SavedModel(
        state_dict=payload["state_dict"],
        hparams=payload["hparams"],
        metadata=payload.get("metadata", {}),
    )


@dataclass
class FitResult:
    """What a :func:`fit_module` run did (for model-file metadata)."""

    monitor: str
    best_score: float | None
    epochs_run: int
    device: str


# --------------------------------------------------------------------------- resumable fits

#: In a resume directory: the finished fit (best weights + :class:`FitResult`).
FIT_RESULT_FILE = "fit.pt"


def state_dict_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names and values (unlike its file, free of timestamps)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def run_key(
    parts: Mapping[str, Any],
    files: Iterable[str | Path] = (),
    sources: Iterable[ModuleType | str | Path] = (),
) -> str:
    """16-hex digest of everything a training run's result depends on.

    ``parts``: parameters and other plain values (JSON, keys sorted); ``files``: data files,
    hashed by content (a caller keying several runs on one large file can hash it once with
    :func:`esrepro.fetch.sha256_of` and pass the digest in ``parts``); ``sources``: modules (or
    source files) whose code shapes the result, so that a code change starts a fresh run
    instead of resuming a stale one.
    """
    from esrepro.fetch import sha256_of

    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for f in files:
        digest.update(sha256_of(f).encode())
    for src in sources:
        path = Path(src.__file__) if isinstance(src, ModuleType) else Path(src)
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


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
        log.warning("%s is unreadable (%s: %s); starting this fit afresh", path, type(exc).__name__, exc)
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
                build_module, train_loader, val_loader, max_epochs=max_epochs, accelerator=accelerator,
                devices=devices, seed=seed, out_dir=Path(scratch), curves=dvclive_dir,
                patience=patience, monitor=monitor, callbacks=callbacks, resumable=False, resume=None,
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
        monitor=monitor, callbacks=callbacks, resumable=True, resume=last if last.is_file() else None,
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


def load_network(path: str | Path, cls: Callable[..., torch.nn.Module]) -> tuple[Any, dict[str, Any]]:
    """Rebuild ``cls(**hparams)`` from a :func:`save_model` file, with its weights, in eval mode.

    Returns the network and the file's metadata.
    """
    saved = load_model(path)
    net = cls(**saved.hparams)
    net.load_state_dict(saved.state_dict)
    return net.eval(), saved.metadata
