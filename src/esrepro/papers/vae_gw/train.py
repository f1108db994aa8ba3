"""Training of the VAE-GW networks (seeded, resumable Lightning fits of ``esrepro.training``) and
their metrics.

**VAE** (:func:`fit_vae`): Adam, loss per state ``sum over voxels (x_hat - x)^2 + beta * KL``
averaged over the batch (eq. 1; the code's ``loss_function`` sums over the batch instead, a
constant factor Adam hardly sees); the kept weights are those of the best ``val_loss`` epoch,
with early stopping. Validation decodes z = mu (the model's eval mode). ``start_at_mean`` (not
in the code) starts the last layer's bias at the logit of each slice's mean training intensity:
max-scaled moduli are mostly near 0, far from the sigmoid's initial 0.5, and small runs
otherwise sit at the mean image for many epochs.

**GW network** (:func:`fit_gw`), as ``NN_multiple_GW.py``: plain SGD (lr 1e-3, no momentum),
batches of 600, MSE on Delta GW = E_GW - E_DFT, after keeping only ``-5 < Delta GW < 4.7`` eV
(:func:`filter_delta_gw`). Two options the code does not have: ``start_at_mean`` starts the
output bias at the mean training correction (the mean baseline; the code trains 58,000 epochs
from a random bias) and ``standardize_inputs`` scales each input to zero mean and unit variance
on the training set (stored in the network).

**Metrics.** :func:`reconstruction_r2` is the code's ``1 - MSE(output, data) / np.var(data)``:
a pooled R^2 over every voxel of every state, the variance about the grand mean; with
``per_state`` the same over each state's voxels (the paper's R^2 of single MoS2 states, Fig. 2b).
:func:`mae` and :func:`rmse` are per state. The code's "GW MAE" (:func:`code_reported_error`)
is ``np.mean(np.sqrt(test_error[-1000:]))``, the mean over the last 1,000 epochs of the square
root of the epoch's test MSE: an RMSE, not an MAE, so the paper's 0.06/0.11 eV compare with our
RMSE.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from esrepro.papers.vae_gw.config import GWTrain, VAETrain
from esrepro.papers.vae_gw.model import (
    VAE,
    GWNetConfig,
    GWNetwork,
    LatticeAutoencoder,
    VAEConfig,
    n_parameters,
)
from esrepro.plain_json import plain_json
from esrepro.training import FitResult, fit_module, run_key, save_model

log = logging.getLogger(__name__)

__all__ = [
    "DELTA_GW_WINDOW",
    "DeltaGWFilter",
    "GWModule",
    "GWTrainParams",
    "VAEModule",
    "VAETrainParams",
    "code_reported_error",
    "encode_latents",
    "filter_delta_gw",
    "fit_gw",
    "fit_lattice_code",
    "fit_vae",
    "mae",
    "predict_gw",
    "reconstruct",
    "reconstruction_r2",
    "rmse",
    "tensor_digest",
    "vae_loss",
]

#: ``NN_multiple_GW.py`` keeps only states with ``-5 < E_GW - E_DFT < 4.7`` (eV).
DELTA_GW_WINDOW: tuple[float, float] = (-5.0, 4.7)


# --------------------------------------------------------------------------- params


# The training params are the typed config's (one definition, checked where params are read).
VAETrainParams = VAETrain
GWTrainParams = GWTrain


# --------------------------------------------------------------------------- targets, metrics


@dataclass(frozen=True)
class DeltaGWFilter:
    """Which states :func:`filter_delta_gw` keeps: ``keep`` (bool per state), states without a
    GW energy (``n_missing``: non-finite) and outside the window (``n_out_of_window``)."""

    keep: np.ndarray
    n_total: int
    n_missing: int
    n_out_of_window: int

    @property
    def n_dropped(self) -> int:
        return self.n_total - int(self.keep.sum())


def filter_delta_gw(
    e_gw: np.ndarray, e_dft: np.ndarray, window: tuple[float, float] = DELTA_GW_WINDOW
) -> DeltaGWFilter:
    """The code's target filter: keep ``low < E_GW - E_DFT < high`` (strict), drop states with
    a non-finite energy (the code's files mark them -1000 and drop them in the same line)."""
    e_gw, e_dft = np.asarray(e_gw, dtype=np.float64), np.asarray(e_dft, dtype=np.float64)
    if e_gw.shape != e_dft.shape:
        raise ValueError(f"E_GW {e_gw.shape} and E_DFT {e_dft.shape} differ in shape")
    low, high = window
    delta = e_gw - e_dft
    present = np.isfinite(delta)
    inside = np.zeros_like(present)
    inside[present] = (delta[present] > low) & (delta[present] < high)
    return DeltaGWFilter(keep=inside, n_total=int(delta.size), n_missing=int((~present).sum()),
                         n_out_of_window=int((present & ~inside).sum()))


def reconstruction_r2(recon: Tensor | np.ndarray, data: Tensor | np.ndarray,
                      per_state: bool = False) -> float | np.ndarray:
    """The code's R^2 ``1 - mean((recon - data)^2) / var(data)`` over all voxels of all states
    (population variance about the grand mean); ``per_state``: one value per state over its own
    voxels, ``(N,)``."""
    r = np.asarray(recon, dtype=np.float64)
    d = np.asarray(data, dtype=np.float64)
    if r.shape != d.shape:
        raise ValueError(f"reconstruction {r.shape} and data {d.shape} differ in shape")
    if per_state:
        r, d = r.reshape(r.shape[0], -1), d.reshape(d.shape[0], -1)
        return 1.0 - ((r - d) ** 2).mean(axis=1) / d.var(axis=1)
    return float(1.0 - ((r - d) ** 2).mean() / d.var())


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.abs(np.asarray(pred, np.float64) - np.asarray(target, np.float64)).mean())


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    """Root mean squared error."""
    diff = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
    return float(np.sqrt((diff**2).mean()))


def code_reported_error(epoch_test_mse: Sequence[float], last: int = 1000) -> float:
    """The number ``NN_multiple_GW.py`` prints as "GW MAE": the mean over the last ``last``
    epochs of sqrt(test MSE of the epoch). That is an RMSE (averaged over epochs), not an MAE."""
    values = np.asarray(epoch_test_mse, dtype=np.float64)[-int(last):]
    if values.size == 0:
        raise ValueError("no epochs to average")
    return float(np.sqrt(values).mean())


def vae_loss(recon: Tensor, x: Tensor, mu: Tensor, logvar: Tensor, beta: float
             ) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 1 per state, averaged over the batch: ``(loss, reconstruction SSE, KL)``."""
    n = x.shape[0]
    sse = (recon - x).pow(2).sum() / n
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / n
    return sse + beta * kl, sse, kl


# --------------------------------------------------------------------------- Lightning modules


class _EpochErrors:
    """Sums over a validation epoch: squared and absolute errors and the count."""

    def __init__(self) -> None:
        self.sse = self.sae = 0.0
        self.n = 0

    def add(self, diff: Tensor) -> None:
        self.sse += float(diff.detach().double().pow(2).sum())
        self.sae += float(diff.detach().double().abs().sum())
        self.n += diff.numel()


class VAEModule(lightning.LightningModule):
    """A :class:`VAE` under eq. 1; logs ``val_loss``, ``val_recon_mse`` (per voxel), ``val_kl``
    and, given the validation set's voxel variance, ``val_r2`` (:func:`reconstruction_r2`)."""

    def __init__(self, config: Mapping[str, Any], lr: float, beta: float,
                 val_variance: float | None = None,
                 slice_mean: Sequence[float] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.vae = VAE.from_config(dict(config))
        if slice_mean is not None:
            with torch.no_grad():  # the last ConvTranspose2d, before the sigmoid
                mean = torch.tensor(slice_mean).clamp(1e-4, 1 - 1e-4)
                self.vae.decoder[-2].bias.copy_(torch.logit(mean))
        self._val = _EpochErrors()

    def _step(self, batch: Sequence[Tensor], stage: str) -> Tensor:
        (x,) = batch
        recon, mu, logvar = self.vae(x)
        loss, _, kl = vae_loss(recon, x, mu, logvar, self.hparams.beta)
        n = x.shape[0]
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=n)
        if stage == "val":
            self.log("val_kl", kl, on_step=False, on_epoch=True, batch_size=n)
            self._val.add(recon - x)
        return loss

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self._val = _EpochErrors()

    def on_validation_epoch_end(self) -> None:
        if self._val.n:
            mse = self._val.sse / self._val.n
            self.log("val_recon_mse", mse)
            if self.hparams.val_variance:
                self.log("val_r2", 1.0 - mse / self.hparams.val_variance)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class GWModule(lightning.LightningModule):
    """A :class:`GWNetwork` under the MSE of Delta GW with SGD; logs ``val_loss`` (MSE),
    ``val_mae`` and ``val_rmse`` over the validation set (eV)."""

    def __init__(self, config: Mapping[str, Any], lr: float, momentum: float,
                 target_mean: float | None = None,
                 input_mean: Sequence[float] | None = None,
                 input_std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = GWNetwork.from_config(dict(config))
        if input_mean is not None and input_std is not None:
            self.net.set_input_scaling(torch.tensor(input_mean), torch.tensor(input_std))
        if target_mean is not None:
            with torch.no_grad():
                self.net.mlp[-1].bias.fill_(float(target_mean))
        self._val = _EpochErrors()

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        x, y = batch
        self._val.add(self.net(x) - y)

    def on_validation_epoch_start(self) -> None:
        self._val = _EpochErrors()

    def on_validation_epoch_end(self) -> None:
        if self._val.n:
            mse = self._val.sse / self._val.n
            self.log("val_loss", mse)
            self.log("val_mae", self._val.sae / self._val.n)
            self.log("val_rmse", float(np.sqrt(mse)))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr,
                               momentum=self.hparams.momentum)


# --------------------------------------------------------------------------- fits


def tensor_digest(*tensors: Tensor) -> str:
    """sha256 of the tensors' shapes and values (keys a fit's resume directory)."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(str((tuple(t.shape), str(t.dtype))).encode())
        digest.update(t.numpy().reshape(-1).view(np.uint8))
    return digest.hexdigest()


def _chunks(images: Tensor, size: int = 1024):
    """Float64 views of ``images`` in chunks (a full float64 copy of a large set would not fit)."""
    for i in range(0, images.shape[0], size):
        yield images[i:i + size].double()


def _slice_mean(images: Tensor) -> Tensor:
    """Mean intensity of each slice (channel) over states and in-plane points, ``(slices,)``."""
    total = sum(chunk.sum(dim=(0, 2, 3)) for chunk in _chunks(images))
    return total / (images.shape[0] * images.shape[2] * images.shape[3])


def _voxel_variance(images: Tensor) -> float:
    """Population variance of every voxel of ``images`` (about the grand mean)."""
    n = images.numel()
    mean = sum(float(chunk.sum()) for chunk in _chunks(images)) / n
    return sum(float((chunk - mean).pow(2).sum()) for chunk in _chunks(images)) / n


def _resume_dir(resume_root: Path | None, name: str, parts: Mapping[str, Any]) -> Path | None:
    if resume_root is None:
        return None
    from esrepro import training
    from esrepro.papers.vae_gw import model

    return Path(resume_root) / f"{name}-{run_key(parts, sources=(training, model, Path(__file__)))}"


def _loader(dataset: Dataset, batch_size: int, seed: int | None) -> DataLoader:
    """Shuffled with its own seeded generator when ``seed`` is given (a training loader)."""
    if seed is None:
        return DataLoader(dataset, batch_size=batch_size)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(int(seed)))


def _fit_kwargs(params: VAETrainParams | GWTrainParams) -> dict[str, Any]:
    return {"max_epochs": params.max_epochs, "accelerator": params.accelerator,
            "devices": params.devices, "seed": params.seed, "patience": params.patience}


def fit_vae(
    train: Tensor,
    val: Tensor | None,
    config: VAEConfig,
    params: VAETrainParams,
    out_dir: Path,
    *,
    name: str = "vae",
    dvclive_dir: Path | None = None,
    resume_root: Path | None = None,
    data_digest: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
) -> tuple[VAE, FitResult]:
    """Fit a VAE on ``train`` ``(N, slices, n, n)`` (early stopping on ``val``) and save
    ``out_dir/<name>.pt``. With ``resume_root`` the checkpoints live in
    ``resume_root/<name>-<key>``, keyed by params, config, data (``data_digest``, else hashed
    here) and code, so a killed fit resumes and a finished one is not repeated."""
    if train.shape[0] == 0:
        raise ValueError(f"{name}: no training states")
    out_dir = Path(out_dir)
    val_var = _voxel_variance(val) if val is not None and len(val) else None
    slice_mean = _slice_mean(train).tolist() if params.start_at_mean else None
    resume_dir = None
    if resume_root is not None:
        digest = data_digest or tensor_digest(train, *(() if val is None else (val,)))
        resume_dir = _resume_dir(resume_root, name, {
            "train": plain_json(params), "model": asdict(config), "data": digest,
        })
    module, fit = fit_module(
        lambda: VAEModule(asdict(config), params.lr, params.beta, val_var, slice_mean),
        _loader(TensorDataset(train), params.batch_size, params.seed),
        _loader(TensorDataset(val), params.batch_size, None) if val_var is not None else None,
        dvclive_dir=Path(dvclive_dir) if dvclive_dir is not None else out_dir / "dvclive" / name,
        resume_dir=resume_dir, callbacks=callbacks, **_fit_kwargs(params),
    )
    vae: VAE = module.vae.eval()
    save_model(out_dir / f"{name}.pt", vae, {
        "paper": "vae_gw", "model": name, "training": {**plain_json(params), **asdict(fit)},
        "n_train": int(train.shape[0]), "n_val": 0 if val is None else int(val.shape[0]),
        "parameters": n_parameters(vae), **dict(metadata or {}),
    })
    log.info("%s (%s VAE, %d parameters): %s %s after %d epochs on %s", name, config.kind,
             n_parameters(vae), fit.monitor, fit.best_score, fit.epochs_run, fit.device)
    return vae, fit


def fit_gw(
    train_x: Tensor,
    train_y: Tensor,
    val_x: Tensor | None,
    val_y: Tensor | None,
    config: GWNetConfig,
    params: GWTrainParams,
    out_dir: Path,
    *,
    name: str = "gw",
    dvclive_dir: Path | None = None,
    resume_root: Path | None = None,
    metadata: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
) -> tuple[GWNetwork, FitResult]:
    """Fit the GW network on inputs ``(N, input size)`` (:func:`~.model.assemble_inputs`) and
    Delta GW ``(N,)`` (already filtered, :func:`filter_delta_gw`); early stopping on the
    validation MSE; saves ``out_dir/<name>.pt``. Resumable as :func:`fit_vae`."""
    train_x, train_y = train_x.float(), train_y.float().reshape(-1)
    if train_x.shape[0] == 0 or train_x.shape[0] != train_y.shape[0]:
        raise ValueError(f"{name}: {train_x.shape[0]} input rows, {train_y.shape[0]} targets")
    has_val = val_x is not None and val_y is not None and len(val_x) > 0
    mean = std = None
    if params.standardize_inputs:
        mean = train_x.double().mean(0)
        std = train_x.double().std(0, unbiased=False)
        mean, std = mean.tolist(), torch.where(std > 0, std, torch.ones_like(std)).tolist()
    target_mean = float(train_y.double().mean()) if params.start_at_mean else None
    resume_dir = None
    if resume_root is not None:
        arrays = (train_x, train_y) + ((val_x, val_y) if has_val else ())
        resume_dir = _resume_dir(resume_root, name, {
            "train": plain_json(params), "model": asdict(config), "data": tensor_digest(*arrays),
        })
    val_loader = None
    if has_val:
        val_loader = _loader(TensorDataset(val_x.float(), val_y.float().reshape(-1)),
                             params.batch_size, None)
    module, fit = fit_module(
        lambda: GWModule(asdict(config), params.lr, params.momentum, target_mean, mean, std),
        _loader(TensorDataset(train_x, train_y), params.batch_size, params.seed), val_loader,
        dvclive_dir=Path(dvclive_dir) if dvclive_dir is not None else out_dir / "dvclive" / name,
        resume_dir=resume_dir, callbacks=callbacks, **_fit_kwargs(params),
    )
    net: GWNetwork = module.net.eval()
    save_model(Path(out_dir) / f"{name}.pt", net, {
        "paper": "vae_gw", "model": name, "training": {**plain_json(params), **asdict(fit)},
        "n_train": int(train_x.shape[0]), "n_val": int(len(val_x)) if has_val else 0,
        "parameters": n_parameters(net), **dict(metadata or {}),
    })
    log.info("%s (%s inputs, %d parameters): %s %s after %d epochs on %s", name, config.inputs,
             n_parameters(net), fit.monitor, fit.best_score, fit.epochs_run, fit.device)
    return net, fit


def fit_lattice_code(reciprocal: Tensor, *, epochs: int = 2000, lr: float = 1e-2, seed: int = 0
                     ) -> tuple[LatticeAutoencoder, Tensor]:
    """Train the code's 3 -> 1 -> 3 :class:`~.model.LatticeAutoencoder` on ``(N, 3)``
    reciprocal-lattice numbers (full batch, Adam, MSE, seeded) and return it with the codes
    ``(N,)``."""
    x = reciprocal.float()
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LatticeAutoencoder(n_in=x.shape[1])
    finally:
        torch.random.set_rng_state(gen_state)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(int(epochs)):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), x)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return model, model.encoder(x).squeeze(-1)


# --------------------------------------------------------------------------- inference


@torch.no_grad()
def encode_latents(vae: VAE, images: Tensor, batch_size: int = 256) -> Tensor:
    """mu then log sigma^2 of each state, ``(N, 2 * latent)`` (eval mode, the network's
    device); the GW network's latent inputs."""
    vae.eval()
    device = next(vae.parameters()).device
    out = [torch.cat(vae.encode(images[i:i + batch_size].to(device)), dim=1).cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, 2 * vae.config.latent)


@torch.no_grad()
def reconstruct(vae: VAE, images: Tensor, batch_size: int = 256) -> Tensor:
    """Reconstructions from z = mu, in the input's frame (eval mode)."""
    vae.eval()
    device = next(vae.parameters()).device
    out = [vae(images[i:i + batch_size].to(device))[0].cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros_like(images)


@torch.no_grad()
def predict_gw(net: GWNetwork, inputs: Tensor, batch_size: int = 4096) -> np.ndarray:
    """Predicted Delta GW (eV), ``(N,)``."""
    net.eval()
    device = next(net.parameters()).device
    out = [net(inputs[i:i + batch_size].float().to(device)).cpu()
           for i in range(0, inputs.shape[0], batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)
