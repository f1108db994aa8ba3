"""Training and evaluation of the ALIGNN-DOS models (entry points of its DVC stages).

Models (``MODEL_KEYS``): ``d_alignn`` predicts the 300-bin DOS directly; ``ae_alignn_<L>``
predicts the L-dimensional autoencoder code of the DOS, decoded by the frozen decoder of the
autoencoder trained on the same training spectra (paper Sec. 4-5: ALIGNN's output is the
latent target, the decoder recovers the DOS); ``mean_baseline`` predicts the mean training
spectrum for every structure (paper Sec. 5).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from torch_geometric.data import Batch

from esrepro.fetch import sha256_of
from esrepro.metrics import (
    paired_comparison,
    per_spectrum_errors,
    ratio_interval,
    spectrum_metrics,
    write_json,
)
from esrepro.papers.alignn_dos.autoencoder import DOSAutoencoder
from esrepro.papers.alignn_dos.config import (
    AutoencoderParams,
    EvaluateConfig,
    TrainConfig,
    TrainParams,
)
from esrepro.papers.alignn_dos.data import collate_records, graph_loader
from esrepro.papers.alignn_dos.model import ALIGNN
from esrepro.plain_json import plain_json
from esrepro.training import fit_module, load_network, run_key, save_model, state_dict_digest

log = logging.getLogger(__name__)


def model_keys(latents: Sequence[int]) -> list[str]:
    """``d_alignn``, then ``ae_alignn_<L>`` for each latent size."""
    return ["d_alignn", *[f"ae_alignn_{int(n)}" for n in latents]]


def rows_of(split: Sequence[str], name: str) -> list[int]:
    return [i for i, s in enumerate(split) if s == name]


# --------------------------------------------------------------------------- Lightning modules


class AutoencoderModule(lightning.LightningModule):
    """MSE reconstruction of DOS spectra; ``val_mae`` in states/eV/electron."""

    def __init__(
        self, n_bins: int, latent: int, widths: Sequence[int], lr: float, weight_decay: float,
        mean_spectrum: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["mean_spectrum"])
        self.net = DOSAutoencoder(n_bins, latent, widths)
        if mean_spectrum is not None:
            # Start from the mean training spectrum (sigmoid(bias)) instead of 0.5 everywhere:
            # per-electron DOS values are ~0.03, far out on the sigmoid, and small sets would
            # otherwise stop early near a flat output.
            with torch.no_grad():
                self.net.decoder[-2].bias.copy_(torch.logit(mean_spectrum.clamp(1e-4, 1 - 1e-4)))

    def _step(self, batch: Sequence[Tensor], stage: str) -> Tensor:
        (dos,) = batch
        recon = self.net(dos)
        loss = nn.functional.mse_loss(recon, dos)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=dos.shape[0])
        if stage == "val":
            self.log("val_mae", (recon - dos).abs().mean(), on_epoch=True, batch_size=dos.shape[0])
        return loss

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )


class ALIGNNModule(lightning.LightningModule):
    """ALIGNN regressing a target matrix (DOS bins or autoencoder codes) with MSE.

    With a ``decoder`` (frozen, not a parameter of the optimizer) ``val_mae`` compares the
    decoded prediction with the decoded target code (the autoencoder's reconstruction), so
    every model's validation curve is in states/eV/electron.
    """

    def __init__(
        self, alignn: dict[str, Any], lr: float, weight_decay: float,
        decoder: nn.Module | None = None, mean_target: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["decoder", "mean_target"])
        self.model = ALIGNN(**alignn)
        self.decoder = decoder
        if decoder is not None:
            decoder.requires_grad_(False)
        if mean_target is not None and alignn["link"] == "identity":
            # Start at the mean-spectrum baseline and learn deviations from it (as DOSnp starts
            # from the mean gap correction).
            with torch.no_grad():
                self.model.fc[-1].bias.copy_(mean_target)

    def forward(self, batch: Batch) -> Tensor:
        return self.model(batch)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = nn.functional.mse_loss(self(batch), batch.y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch.num_graphs)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        out, target = self(batch), batch.y
        n = batch.num_graphs
        self.log("val_loss", nn.functional.mse_loss(out, target), on_epoch=True, batch_size=n)
        if self.decoder is not None:
            out, target = self.decoder(out), self.decoder(target)
        self.log("val_mae", (out - target).abs().mean(), on_epoch=True, batch_size=n)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


# --------------------------------------------------------------------------- stages


def _fit_kwargs(tcfg: AutoencoderParams | TrainParams) -> dict[str, Any]:
    return {
        "max_epochs": tcfg.max_epochs,
        "accelerator": tcfg.accelerator,
        "devices": tcfg.devices,
        "seed": tcfg.seed,
        "patience": tcfg.patience,
    }


def _resume_dir(resume_root: Path | None, name: str, parts: Mapping[str, Any]) -> Path | None:
    """``resume_root/<name>-<run key>``: a fit's checkpoint directory, keyed by ``parts``
    (parameters, the features file's digest, ...) and the code of this paper's models and
    training."""
    if resume_root is None:
        return None
    from esrepro import graphs, pooling, training
    from esrepro.papers.alignn_dos import autoencoder, data, model

    sources = (graphs, pooling, training, autoencoder, data, model, Path(__file__))
    return Path(resume_root) / f"{name}-{run_key(parts, sources=sources)}"


def _features_digest(features_path: Path, resume_root: Path | None) -> str | None:
    """The features file's sha256, computed once per stage (it keys every fit's directory)."""
    return None if resume_root is None else sha256_of(features_path)


def run_autoencoders(
    features_path: Path, cfg: AutoencoderParams, out_dir: Path, dvclive_root: Path,
    resume_root: Path | None = None,
) -> dict[int, Path]:
    """Train one autoencoder per latent size on the training spectra; ``out_dir/ae_<L>.pt``.

    With ``resume_root`` each fit keeps its checkpoints there (keyed by data, parameters and
    code), so an interrupted stage resumes and finished latent sizes are not trained again.
    """
    feats = torch.load(features_path, weights_only=True)
    dos = feats["dos"].float()
    train, val = rows_of(feats["split"], "train"), rows_of(feats["split"], "val")
    if not train:
        raise ValueError(f"{features_path}: no structures in the 'train' split")
    out_dir.mkdir(parents=True, exist_ok=True)
    features = _features_digest(features_path, resume_root)
    paths = {}
    plain = plain_json(cfg)
    for latent in cfg.latents:
        loader = DataLoader(TensorDataset(dos[train]), batch_size=cfg.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(cfg.seed))
        val_loader = DataLoader(TensorDataset(dos[val]), batch_size=cfg.batch_size) if val else None
        module, fit = fit_module(
            lambda latent=latent: AutoencoderModule(dos.shape[1], latent, list(cfg.widths), cfg.lr,
                                                    cfg.weight_decay, dos[train].mean(0)),
            loader, val_loader, dvclive_dir=dvclive_root / f"latent_{latent}", **_fit_kwargs(cfg),
            resume_dir=_resume_dir(resume_root, f"ae_{latent}",
                                   {"autoencoder": plain, "latent": latent, "features": features}),
        )
        net: DOSAutoencoder = module.net
        paths[latent] = save_model(
            out_dir / f"ae_{latent}.pt", net,
            {"paper": "alignn_dos", "model": f"autoencoder_{latent}",
             "training": {**plain, **fit.__dict__}, "n_train": len(train), "n_val": len(val)},
        )
        log.info("autoencoder latent %d: %s %s after %d epochs",
                 latent, fit.monitor, fit.best_score, fit.epochs_run)
    return paths


def load_autoencoder(autoencoder_dir: Path, model_key: str) -> DOSAutoencoder:
    """The autoencoder an ``ae_alignn_<L>`` model decodes with (``ae_<L>.pt``), in eval mode."""
    latent = model_key.rsplit("_", 1)[1]
    return load_network(autoencoder_dir / f"ae_{latent}.pt", DOSAutoencoder)[0]


def alignn_config(cfg: TrainConfig, output_features: int) -> dict[str, Any]:
    """ALIGNN constructor arguments from ``alignn_dos.model`` (the widths of its ``preset``) and
    the shared ``model.pooling``."""
    return {
        **cfg.model.alignn_kwargs(), "output_features": int(output_features),
        "pooling": cfg.pooling,
    }


def n_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def model_size(cfg: EvaluateConfig, n_bins: int, trained: ALIGNN) -> dict[str, Any]:
    """D-ALIGNN's parameter count as trained and at each width preset, the reference (paper)
    widths' counted by building that model, so every ratio to the paper can say how much
    smaller ours is."""
    counts = {
        preset: n_parameters(ALIGNN(
            **cfg.model.alignn_kwargs(preset), output_features=n_bins, pooling=cfg.pooling
        ))
        for preset in ("ours", "paper")
    }
    return {
        "preset": cfg.model.preset,
        "d_alignn_parameters": n_parameters(trained),
        "d_alignn_parameters_ours": counts["ours"],
        "d_alignn_parameters_paper_widths": counts["paper"],
        "paper_widths_over_trained": counts["paper"] / n_parameters(trained),
    }


def run_train(
    features_path: Path, autoencoder_dir: Path, cfg: TrainConfig, out_dir: Path, dvclive_root: Path,
    resume_root: Path | None = None,
) -> dict[str, Path]:
    """Train D-ALIGNN and one AE-ALIGNN per latent size; ``out_dir/<model key>.pt``.

    With ``resume_root`` each fit keeps its checkpoints there (keyed by data, parameters, the
    autoencoder's weights and code), so an interrupted stage resumes at its last epoch and
    finished models are not trained again.
    """
    feats = torch.load(features_path, weights_only=True)
    tcfg = cfg.train
    plain = plain_json(tcfg)
    records, dos = feats["graphs"], feats["dos"].float()
    train, val = rows_of(feats["split"], "train"), rows_of(feats["split"], "val")
    if not train:
        raise ValueError(f"{features_path}: no structures in the 'train' split")
    out_dir.mkdir(parents=True, exist_ok=True)
    features = _features_digest(features_path, resume_root)
    batch_size = tcfg.batch_size
    paths = {}
    for key in model_keys(cfg.latents):
        decoder, target, ae_weights = None, dos, None
        if key != "d_alignn":
            ae = load_autoencoder(autoencoder_dir, key)
            decoder, ae_weights = ae.decoder, state_dict_digest(ae.state_dict())
            with torch.no_grad():
                target = ae.encode(dos)
        loader = graph_loader(records, target, train, batch_size, seed=tcfg.seed)
        val_loader = graph_loader(records, target, val, batch_size) if val else None
        config = alignn_config(cfg, target.shape[1])
        module, fit = fit_module(
            lambda config=config, decoder=decoder, target=target: ALIGNNModule(
                config, tcfg.lr, tcfg.weight_decay, decoder, target[train].mean(0)),
            loader, val_loader, dvclive_dir=dvclive_root / key, **_fit_kwargs(tcfg),
            resume_dir=_resume_dir(resume_root, key, {
                "train": plain, "model": config, "autoencoder_weights": ae_weights,
                "features": features,
            }),
        )
        model: ALIGNN = module.model
        paths[key] = save_model(
            out_dir / f"{key}.pt", model,
            {"paper": "alignn_dos", "model": key,
             "target": (
                 "DOS per valence electron (300 bins)" if decoder is None
                 else f"autoencoder code ({key})"
             ),
             "training": {**plain, **fit.__dict__}, "n_train": len(train), "n_val": len(val),
             "features_meta": feats.get("meta", {})},
        )
        log.info("%s: %s %s after %d epochs on %s",
                 key, fit.monitor, fit.best_score, fit.epochs_run, fit.device)
    return paths


@torch.no_grad()
def predict_dos(model: ALIGNN, records: Sequence[dict[str, Any]], decoder: nn.Module | None = None,
                batch_size: int = 64) -> np.ndarray:
    """Predicted DOS ``(n, n_bins)`` of graph records (decoded when ``decoder`` is given)."""
    out = []
    for start in range(0, len(records), batch_size):
        y = model(collate_records(records[start:start + batch_size]))
        out.append(decoder(y) if decoder is not None else y)
    n_bins = (
        decoder[-2].out_features if decoder is not None
        else model.hparams_dict()["output_features"]
    )
    return torch.cat(out).numpy() if out else np.zeros((0, n_bins), dtype=np.float32)


def comparisons(test_err: Mapping[str, np.ndarray], latents: Sequence[int]) -> dict[str, Any]:
    """The paper's "which is better" statements as paired records over the same test spectra
    (``esrepro.metrics.paired_comparison`` of per-spectrum MAEs): every model against the mean
    baseline (Sec. 5), D-ALIGNN against AE-ALIGNN 12 (Sec. 5, Fig. 5), and the Table 1 trend
    between consecutive latent sizes (``ae_alignn_<larger>_vs_ae_alignn_<smaller>``)."""
    def pair(a: str, b: str) -> dict[str, Any]:
        return paired_comparison(test_err[a], test_err[b], names=(a, b))

    records = {f"{key}_vs_mean_baseline": pair(key, "mean_baseline") for key in model_keys(latents)}
    sizes = sorted(int(n) for n in latents)
    if 12 in sizes:
        records["d_alignn_vs_ae_alignn_12"] = pair("d_alignn", "ae_alignn_12")
    for small, large in zip(sizes[:-1], sizes[1:], strict=True):
        records[f"ae_alignn_{large}_vs_ae_alignn_{small}"] = pair(
            f"ae_alignn_{large}", f"ae_alignn_{small}"
        )
    return records


def run_evaluate(
    features_path: Path, autoencoder_dir: Path, model_dir: Path, cfg: EvaluateConfig,
    metrics_path: Path, predictions_path: Path, extra: Mapping[str, Any],
) -> dict[str, Any]:
    """Metrics of every model on train/val/test and on the external JARVIS spectra.

    Writes the metrics JSON and an ``.npz`` of the test and external predictions (the report's
    input; train/val predictions are left out to keep the committed file small). ``n_used``
    counts the structures the models saw (train + val + test, after DFT failures and
    exclusions); ``extra`` holds the stage's counts before them (``n_materials``: selected).
    ``comparisons`` pairs every model with the mean baseline over the test spectra;
    ``model_size`` gives D-ALIGNN's parameter count as trained and at the paper's widths.
    """
    feats = torch.load(features_path, weights_only=True)
    latents = cfg.latents
    dos = feats["dos"].numpy().astype(np.float64)
    split = list(feats["split"])
    ext = feats["external"]
    ext_dos = ext["dos"].numpy().astype(np.float64)
    train, test = rows_of(split, "train"), rows_of(split, "test")
    preds: dict[str, np.ndarray] = {}
    ext_preds: dict[str, np.ndarray] = {}
    metrics: dict[str, Any] = {**extra, "n_used": len(split)}
    recon: dict[str, float] = {}
    for key in model_keys(latents):
        model, _ = load_network(model_dir / f"{key}.pt", ALIGNN)
        if key == "d_alignn":
            metrics["model_size"] = model_size(cfg, dos.shape[1], model)
        decoder = None
        if key != "d_alignn":
            ae = load_autoencoder(autoencoder_dir, key)
            decoder = ae.decoder
            with torch.no_grad():
                rec = ae(torch.from_numpy(dos[test]).float()).numpy()
            recon[key.rsplit("_", 1)[1]] = spectrum_metrics(dos[test], rec)["mae"]
        preds[key] = predict_dos(model, feats["graphs"], decoder)
        ext_preds[key] = predict_dos(model, ext["graphs"], decoder)
    mean_spectrum = dos[train].mean(axis=0)
    preds["mean_baseline"] = np.broadcast_to(mean_spectrum, dos.shape)
    ext_preds["mean_baseline"] = np.broadcast_to(mean_spectrum, ext_dos.shape)
    for key, pred in preds.items():
        metrics[key] = {
            name: spectrum_metrics(dos[rows_of(split, name)], pred[rows_of(split, name)])
            for name in ("train", "val", "test")
        }
    metrics["autoencoder_reconstruction_mae"] = recon
    d_mae, base_mae = metrics["d_alignn"]["test"]["mae"], metrics["mean_baseline"]["test"]["mae"]
    metrics["baseline_over_d_alignn_test_mae"] = base_mae / d_mae if d_mae > 0 else float("nan")
    test_err = {k: per_spectrum_errors(dos[test], pred[test])["mae"] for k, pred in preds.items()}
    metrics["baseline_over_d_alignn_test_mae_ci95"] = ratio_interval(
        test_err["mean_baseline"], test_err["d_alignn"]
    )
    metrics["comparisons"] = comparisons(test_err, latents)
    metrics["jarvis_external"] = {
        key: spectrum_metrics(ext_dos, pred) for key, pred in ext_preds.items()
    }
    write_json(metrics_path, metrics)

    n_ext = ext_dos.shape[0]
    arrays = {
        "energies": feats["energies"].numpy(),
        "material_ids": np.array(
            [feats["material_ids"][i] for i in test] + list(ext["ids"]), dtype=str
        ),
        "formulas": np.array(
            [feats["formulas"][i] for i in test] + list(ext["formulas"]), dtype=str
        ),
        "split": np.array(["test"] * len(test) + ["external"] * n_ext, dtype=str),
        "target": np.concatenate([dos[test], ext_dos]).astype(np.float32),
        "gap_threshold": np.float64(cfg.gap_threshold),
    }
    for key in preds:
        arrays[f"pred_{key}"] = np.concatenate(
            [preds[key][test], ext_preds[key]]
        ).astype(np.float32)
    predictions_path.parent.mkdir(parents=True, exist_ok=True)
    with open(predictions_path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return metrics
