"""VAE-GW training: the Delta GW filter, the metrics' definitions, seeded fits that learn a known
signal better than the mean, and a killed fit that resumes to the weights of an unbroken one."""

from __future__ import annotations

from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score

from esrepro.papers.vae_gw.model import VAE, GWNetConfig, GWNetwork, VAEConfig
from esrepro.papers.vae_gw.train import (
    GWTrainParams,
    VAETrainParams,
    code_reported_error,
    encode_latents,
    filter_delta_gw,
    fit_gw,
    fit_lattice_code,
    fit_vae,
    mae,
    predict_gw,
    reconstruct,
    reconstruction_r2,
    rmse,
    vae_loss,
)
from esrepro.training import FIT_RESULT_FILE, load_network


def _blobs(n: int, seed: int, slices: int = 4, grid: int = 28) -> torch.Tensor:
    """States from two hidden factors: a Gaussian's in-plane width and the slice it peaks on;
    scaled to a maximum of 1 as the paper's inputs."""
    gen = torch.Generator().manual_seed(seed)
    width = 2 + 3 * torch.rand(n, generator=gen)
    z0 = torch.rand(n, generator=gen) * (slices - 1)
    d = torch.arange(grid).float() - grid / 2
    r2 = d[None, :, None] ** 2 + d[None, None, :] ** 2
    plane = torch.exp(-r2 / (2 * width[:, None, None] ** 2))
    profile = torch.exp(-(torch.arange(slices).float()[None] - z0[:, None]) ** 2)
    x = profile[:, :, None, None] * plane[:, None]
    return x / x.amax(dim=(1, 2, 3), keepdim=True)


def _gw_data(n: int, seed: int, cfg: GWNetConfig) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, GWNetwork(cfg).input_size, generator=gen)
    y = 0.8 + 0.5 * x[:, 0] - 0.4 * x[:, 1] * x[:, 2] + torch.tanh(2 * x[:, 3])
    return x, y + 0.02 * torch.randn(n, generator=gen)


GW_CONFIG = GWNetConfig(inputs="eq3", state_latent=2, aux_latent=1, n_super=1, hidden=(32, 16))


def _gw_params(max_epochs: int, **kw) -> GWTrainParams:
    values = dict(max_epochs=max_epochs, patience=None, batch_size=32, lr=0.05, momentum=0.9,
                  start_at_mean=True, standardize_inputs=True, seed=0, accelerator="cpu",
                  devices=1)
    return GWTrainParams(**{**values, **kw})


def test_delta_gw_filter_counts_what_it_drops() -> None:
    e_dft = np.zeros(8)
    e_gw = np.array([-6.0, -5.0, -4.99, 0.0, 4.69, 4.7, 9.0, np.nan])
    kept = filter_delta_gw(e_gw, e_dft)
    assert kept.keep.tolist() == [False, False, True, True, True, False, False, False]
    assert (kept.n_total, kept.n_missing, kept.n_out_of_window, kept.n_dropped) == (8, 1, 4, 5)
    shifted = filter_delta_gw(e_gw + 3.0, e_dft + 3.0)  # the window is on the difference
    assert shifted.keep.tolist() == kept.keep.tolist()
    with pytest.raises(ValueError, match="differ in shape"):
        filter_delta_gw(np.zeros(3), np.zeros(4))


def test_metrics_are_the_codes_definitions() -> None:
    gen = np.random.default_rng(0)
    data = gen.random((5, 3, 4, 4))
    recon = data + 0.1 * gen.standard_normal(data.shape)
    # Pooled over every voxel, variance about the grand mean: sklearn's R^2 of the flat arrays.
    assert reconstruction_r2(recon, data) == pytest.approx(r2_score(data.ravel(), recon.ravel()))
    per_state = reconstruction_r2(recon, data, per_state=True)
    expected = [r2_score(d.ravel(), r.ravel()) for d, r in zip(data, recon, strict=True)]
    assert per_state == pytest.approx(expected)
    pred, target = np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.0, 1.0])
    assert mae(pred, target) == pytest.approx(4 / 3)
    assert rmse(pred, target) == pytest.approx(np.sqrt(10 / 3))
    # "GW MAE" of the code: mean of sqrt(epoch MSE) over the last epochs.
    assert code_reported_error([100.0, 0.04, 0.01], last=2) == pytest.approx(0.15)
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)
    x = torch.zeros(2, 1, 2, 2)
    loss, sse, kl = vae_loss(x + 0.5, x, mu, logvar, beta=2.0)
    assert (float(sse), float(kl), float(loss)) == (1.0, 0.0, 1.0)  # per state: 4 * 0.25
    _, _, kl = vae_loss(x, x, mu + 1.0, logvar, beta=1.0)
    assert float(kl) == pytest.approx(1.5)  # 0.5 * sum(mu^2) per state


def test_plain_vae_learns_a_two_factor_family_better_than_the_mean(tmp_path: Path) -> None:
    train, val = _blobs(256, 0), _blobs(64, 1)
    config = VAEConfig(kind="plain", in_channels=4, latent=4, hidden=(16, 16))
    params = VAETrainParams(max_epochs=20, patience=None, batch_size=32, lr=3e-3, beta=0.1,
                            start_at_mean=True, seed=0, accelerator="cpu", devices=1)
    vae, fit = fit_vae(train, val, config, params, tmp_path, name="state_vae")
    recon = reconstruct(vae, val)
    mean_image = train.mean(0).expand_as(val)
    assert reconstruction_r2(recon, val) > 0.8
    assert float((recon - val).pow(2).mean()) < 0.3 * float((mean_image - val).pow(2).mean())
    assert fit.epochs_run == 20 and fit.monitor == "val_loss"
    again, meta = load_network(tmp_path / "state_vae.pt", VAE)
    assert meta["n_train"] == 256 and meta["parameters"] > 0
    assert torch.equal(encode_latents(again, val), encode_latents(vae, val))
    assert encode_latents(vae, val).shape == (64, 8)


def test_table1_vae_trains_through_the_rotation_choice(tmp_path: Path) -> None:
    train, val = _blobs(64, 2), _blobs(16, 3)
    config = VAEConfig(kind="table1", in_channels=4, latent=4, channels=8, hidden=(8, 8))
    params = VAETrainParams(max_epochs=3, patience=None, batch_size=16, lr=3e-3, beta=0.1,
                            start_at_mean=True, seed=0, accelerator="cpu", devices=1)
    vae, fit = fit_vae(train, val, config, params, tmp_path, name="table1")
    first = vae.encoder[0].conv.weight
    assert torch.isfinite(first).all() and fit.best_score is not None
    fresh = VAE(config)
    assert not torch.equal(fresh.encoder[0].conv.weight, first)  # it was trained


def test_gw_network_learns_a_known_signal_better_than_the_mean(tmp_path: Path) -> None:
    x, y = _gw_data(1200, 0, GW_CONFIG)
    x_val, y_val = _gw_data(300, 1, GW_CONFIG)
    net, fit = fit_gw(x, y, x_val, y_val, GW_CONFIG, _gw_params(15), tmp_path)
    pred = predict_gw(net, x_val)
    mean_mae = mae(np.full(len(y_val), float(y.mean())), y_val.numpy())
    assert mae(pred, y_val.numpy()) < 0.3 * mean_mae
    assert fit.monitor == "val_loss" and fit.best_score == pytest.approx(
        rmse(pred, y_val.numpy()) ** 2, rel=1e-4)
    again, _ = load_network(tmp_path / "gw.pt", GWNetwork)
    np.testing.assert_array_equal(predict_gw(again, x_val), pred)


class _KilledAtEpoch(lightning.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated kill")


def test_a_killed_gw_fit_resumes_to_the_unbroken_weights(tmp_path: Path) -> None:
    x, y = _gw_data(300, 0, GW_CONFIG)
    x_val, y_val = _gw_data(60, 1, GW_CONFIG)
    params = _gw_params(6)
    unbroken, unbroken_fit = fit_gw(x, y, x_val, y_val, GW_CONFIG, params, tmp_path / "a")
    root = tmp_path / "resume"
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit_gw(x, y, x_val, y_val, GW_CONFIG, params, tmp_path / "b", resume_root=root,
               callbacks=[_KilledAtEpoch(3)])
    (run,) = root.iterdir()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    resumed, resumed_fit = fit_gw(x, y, x_val, y_val, GW_CONFIG, params, tmp_path / "c",
                                  resume_root=root)
    assert resumed_fit == unbroken_fit and (run / FIT_RESULT_FILE).is_file()
    for key, value in unbroken.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_lattice_code_is_seeded_and_reconstructs(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    t = torch.rand(50, 1, generator=gen)  # one hidden number behind three
    recip = torch.cat([1 + t, 2 - t, 0.5 + 0.3 * t], dim=1)
    model, code = fit_lattice_code(recip, epochs=800, seed=1)
    _, code_again = fit_lattice_code(recip, epochs=800, seed=1)
    assert torch.equal(code, code_again) and code.shape == (50,)
    with torch.no_grad():
        err = float((model(recip) - recip).pow(2).mean())
    assert err < 0.05 * float(recip.var(0).mean())
