"""Training of Bandformer: loss, AdamW with linear warm-up then cosine decay, resumable fit.

Loss (paper): ``L = MAE(centre) + lambda * MAE(dispersion)`` on the band centres (mean over
k) and dispersions (E - centre); with ``target: rfft`` the public code's MSE on the real and
imaginary parts of the kept rFFT coefficients. ``val_mae`` is the band-energy MAE (eV) either
way, so curves of both targets compare.

Schedule, per optimizer step: linear warm-up over ``warmup_epochs`` epochs to ``lr``, then a
cosine decay to ``MIN_LR_FRACTION * lr`` at ``max_epochs`` (the code decays 1e-4 -> 1e-5, over
its whole run; its ``lr_decay_iters`` of 600k for 40k iterations, which never gets past the
first 7 % of the cosine, is not copied). Gradients are clipped to norm ``GRAD_CLIP_NORM`` (the
code's ``grad_clip``). Early stopping and the kept weights follow ``val_loss``.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from esrepro.papers.bandformer.config import TrainParams
from esrepro.papers.bandformer.model import (
    Bandformer,
    BandformerConfig,
    BandOutput,
    n_parameters,
    rfft_coefficients,
)
from esrepro.plain_json import plain_json
from esrepro.training import FitResult, fit_module, run_key, save_model

log = logging.getLogger(__name__)

__all__ = [
    "GRAD_CLIP_NORM",
    "MIN_LR_FRACTION",
    "MODEL_FILE",
    "BandformerModule",
    "TrainParams",
    "band_loss",
    "lr_factor",
    "predict_bands",
    "samples_digest",
    "train_bandformer",
]

#: The cosine decay ends at this fraction of ``lr`` (the code's min_lr / learning_rate).
MIN_LR_FRACTION = 0.1
#: Gradient-norm clipping (the code's ``grad_clip``).
GRAD_CLIP_NORM = 1.0
#: The model file :func:`train_bandformer` writes in its ``out_dir``.
MODEL_FILE = "bandformer.pt"


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based): ``(step + 1) /
    warmup_steps`` during warm-up, then cosine from 1 to :data:`MIN_LR_FRACTION` at
    ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


def band_loss(
    out: BandOutput, bands: Tensor, target: str, dispersion_weight: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """The training loss of ``out`` against ``bands`` ``(B, n_k, N)`` and its parts (eV)."""
    centres = bands.mean(dim=1)
    parts = {
        "centre_mae": (out.centres - centres).abs().mean(),
        "dispersion_mae": (out.dispersions - (bands - centres[:, None])).abs().mean(),
        "mae": (out.energies - bands).abs().mean(),
    }
    if target == "rfft":
        if out.coefficients is None:
            raise ValueError("target 'rfft' needs a model that predicts rFFT coefficients")
        true = rfft_coefficients(bands, out.coefficients.shape[1])
        loss = F.mse_loss(out.coefficients.real, true.real) + F.mse_loss(
            out.coefficients.imag, true.imag
        )
    else:
        loss = parts["centre_mae"] + dispersion_weight * parts["dispersion_mae"]
    return loss, parts


class BandformerModule(lightning.LightningModule):
    """Bandformer under :func:`band_loss`, AdamW and the warm-up + cosine schedule."""

    def __init__(
        self, config: Mapping[str, Any], lr: float, weight_decay: float, warmup_epochs: int,
        dispersion_weight: float, band_mean: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = Bandformer.from_config(dict(config))
        if band_mean is not None:
            # Start at the mean baseline's centres and learn deviations from them.
            with torch.no_grad():
                self.model.band_offset.copy_(torch.as_tensor(band_mean, dtype=torch.float32))

    def forward(self, batch: Data) -> BandOutput:
        return self.model(batch)

    def _step(self, batch: Data, stage: str) -> Tensor:
        loss, parts = band_loss(
            self(batch), batch.bands, self.model.config.target, self.hparams.dispersion_weight
        )
        n = int(batch.num_graphs)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=n)
        if stage == "val":
            for name, value in parts.items():
                self.log(f"val_{name}", value, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def training_step(self, batch: Data, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Data, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: Any = None,
        gradient_clip_algorithm: Any = None,
    ) -> None:
        self.clip_gradients(optimizer, gradient_clip_val=GRAD_CLIP_NORM,
                            gradient_clip_algorithm="norm")

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(total // max(int(self.trainer.max_epochs), 1), 1)
        warmup = int(hp.warmup_epochs) * per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, warmup, total)
        )
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def samples_digest(samples: Sequence[Data]) -> str:
    """sha256 of the tensors a fit reads from ``samples`` (keys its resume directory)."""
    digest = hashlib.sha256()
    for s in samples:
        for key in ("x", "edge_index", "edge_len", "kpoints", "bands"):
            digest.update(s[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _band_mean(samples: Sequence[Data]) -> list[float]:
    """Mean centre of each band over ``samples`` (the mean baseline's centres)."""
    bands = torch.cat([s.bands for s in samples]).double()
    return bands.mean(dim=(0, 1)).tolist()


def train_bandformer(
    train: Sequence[Data],
    val: Sequence[Data],
    config: BandformerConfig,
    params: TrainParams,
    out_dir: Path,
    *,
    dvclive_dir: Path | None = None,
    resume_root: Path | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[Bandformer, FitResult]:
    """Fit Bandformer on ``train`` (early stopping on ``val``) and save ``out_dir/bandformer.pt``.

    ``train``/``val``: crystal graphs with ``kpoints`` ``(1, n_k, 3)`` and ``bands``
    ``(1, n_k, N)`` (see BANDFORMER.md). Curves go to ``dvclive_dir`` (default
    ``out_dir/dvclive``). With ``resume_root`` the checkpoints live in
    ``resume_root/bandformer-<key>``, keyed by the params, the config, the samples and this
    package's code, so a killed fit resumes and a finished one is not repeated. Returns the
    network (best validation epoch, eval mode, CPU) and what the fit did.
    """
    if not train:
        raise ValueError("no training samples")
    out_dir = Path(out_dir)
    loader = DataLoader(list(train), batch_size=params.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(params.seed))
    val_loader = DataLoader(list(val), batch_size=params.batch_size) if val else None
    plain_config = asdict(config)
    band_mean = _band_mean(train)
    resume_dir = None
    if resume_root is not None:
        from esrepro import graphs, training
        from esrepro.papers.bandformer import features, model

        key = run_key(
            {"train": plain_json(params), "model": plain_config,
             "samples": samples_digest([*train, *val])},
            sources=(graphs, training, features, model, Path(__file__)),
        )
        resume_dir = Path(resume_root) / f"bandformer-{key}"
    module, fit = fit_module(
        lambda: BandformerModule(plain_config, params.lr, params.weight_decay,
                                 params.warmup_epochs, params.dispersion_weight, band_mean),
        loader, val_loader, max_epochs=params.max_epochs, accelerator=params.accelerator,
        devices=params.devices, seed=params.seed, patience=params.patience,
        dvclive_dir=Path(dvclive_dir) if dvclive_dir is not None else out_dir / "dvclive",
        resume_dir=resume_dir,
    )
    net: Bandformer = module.model.eval()
    save_model(out_dir / MODEL_FILE, net, {
        "paper": "bandformer", "training": {**plain_json(params), **asdict(fit)},
        "n_train": len(train), "n_val": len(val), "parameters": n_parameters(net),
        **dict(metadata or {}),
    })
    log.info("bandformer: %s %s after %d epochs on %s (%d parameters)",
             fit.monitor, fit.best_score, fit.epochs_run, fit.device, n_parameters(net))
    return net, fit


@torch.no_grad()
def predict_bands(model: Bandformer, samples: Sequence[Data], batch_size: int = 64) -> np.ndarray:
    """Predicted energies ``(n, n_k, N)`` (eV) of ``samples``, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    out = [
        model(Batch.from_data_list(list(samples[i:i + batch_size])).to(device)).energies.cpu()
        for i in range(0, len(samples), batch_size)
    ]
    if not out:
        return np.zeros((0, 0, model.config.n_bands), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)
