"""Each paper's model learns: on a small synthetic task whose target is a known function of the
input, the library's own model and training path beat the mean predictor on held-out samples.

These tests fail when a model cannot learn (a broken gradient path, a target/input mix-up, a
pooling that drops the signal, a training loop that never updates the weights), which the
shape and invariance tests elsewhere cannot see. Every task is seeded and trains in seconds on
a CPU; the margins below are far from the values observed, so they are not tuned to one machine.
(LDOS's kernel ridge has its own synthetic learnability tests in tests/test_ldos_krr.py.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase.build import bulk

from esrepro.papers.alignn_dos.data import graph_record
from esrepro.papers.alignn_dos.model import ALIGNN, atom_features
from esrepro.papers.alignn_dos.train import predict_dos
from esrepro.papers.alignn_dos.train import run_train as alignn_run_train
from esrepro.papers.dosnp.model import N_CHANNELS, N_GRID
from esrepro.papers.dosnp.train import predict_gaps, train_dosnp
from esrepro.splits import random_split_labels
from esrepro.training import load_network
from params_helpers import stage_config


def _mae(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred) - np.asarray(target))))


# ---------------------------------------------------------------- DOSnp


def _dosnp_task(n: int = 48, seed: int = 0) -> dict[str, object]:
    """Materials of 1-3 atoms whose QSGW correction is set by their PDOS.

    Each atom carries one peak of height ``a`` (uniform in [0.2, 2] states/eV, the same in its
    16 channels) on the 1,000-point grid; the correction ``qsgw - lda`` is ``0.5 + 1.5 x`` the
    mean ``a`` of the material's atoms (a mean over atoms, which DOSnp's mean+max pooling can
    represent). The LDA gaps are random
    and independent of the PDOS, so the residual is learnable only from the PDOS.
    """
    rng = np.random.default_rng(seed)
    grid = np.linspace(-1.5 * 13.605693, 1.0 * 13.605693, N_GRID)
    peak = np.exp(-((grid + 3.0) ** 2) / (2 * 0.5**2))
    n_atoms = rng.integers(1, 4, n)
    ptr = np.concatenate([[0], np.cumsum(n_atoms)])
    heights = rng.uniform(0.2, 2.0, int(ptr[-1]))
    pdos = np.zeros((int(ptr[-1]), N_CHANNELS, N_GRID), dtype=np.float32)
    pdos[:] = heights[:, None, None] * peak[None, None, :]
    residual = np.array([0.5 + 1.5 * heights[ptr[i] : ptr[i + 1]].mean() for i in range(n)])
    lda = rng.uniform(0.5, 5.0, n)
    ids = [f"mp-{i}" for i in range(n)]
    return {
        "material_ids": ids,
        "formulas": ["X"] * n,
        "pdos": torch.from_numpy(pdos).to(torch.float16),
        "atom_ptr": torch.from_numpy(ptr),
        "lda_gap_table": torch.tensor(lda, dtype=torch.float32),
        "qsgw_gap": torch.tensor(lda + residual, dtype=torch.float32),
        "gpaw_gap": torch.tensor(lda, dtype=torch.float32),
        "energy_grid": torch.from_numpy(grid),
        "n_atoms": torch.from_numpy(n_atoms),
        "split": random_split_labels(ids, 0.25, seed=seed),
    }


def test_dosnp_beats_the_mean_predictor_on_a_learnable_task(tmp_path: Path) -> None:
    feats = _dosnp_task()
    split = feats["split"]
    train = [i for i, s in enumerate(split) if s == "train"]
    test = [i for i, s in enumerate(split) if s == "test"]
    # The default profile's network and loss (params.yaml); a shorter fit (one network, 30 epochs
    # of smaller batches at a higher rate, every training row fitted) so that it takes seconds.
    cfg = stage_config(
        "dosnp", "train",
        dosnp__train__max_epochs=30, dosnp__train__batch_size=8, dosnp__train__lr=3e-3,
        dosnp__train__val_fraction=0.0, dosnp__train__ensemble=1, dosnp__train__patience=0,
        dosnp__train__accelerator="cpu",
    )  # fmt: skip
    model, _ = train_dosnp(feats, train, cfg, tmp_path / "dvclive")
    qsgw = feats["qsgw_gap"].double().numpy()
    pred = predict_gaps(model, feats, test, batch_size=16)
    # The mean predictor of the gap correction: LDA gap + mean training residual.
    lda = feats["lda_gap_table"].double().numpy()
    mean_residual = float(np.mean(qsgw[train] - lda[train]))
    mae_model = _mae(pred, qsgw[test])
    mae_mean = _mae(lda[test] + mean_residual, qsgw[test])
    assert mae_mean > 0.3  # the task has signal to learn (residual spread ~0.8 eV)
    # Observed: 0.13 vs 0.51 eV (training seeds 1 and 2: 0.19 and 0.08).
    assert mae_mean > 0.01  # the task has signal to learn
    # Observed: 0.0064 vs 0.018 states/eV (training seed 1: 0.0076).
    assert mae_model < 0.6 * mae_mean, (mae_model, mae_mean)


# ---------------------------------------------------------------- ALIGNN-DOS (D-ALIGNN)

ALIGNN_GRID = np.arange(300) * 0.05 - 5.0  # params.yaml alignn_dos.dos: 300 bins from -5 eV


CATIONS = ("Li", "Na", "K", "Mg", "Ca", "Zn", "Ga", "Al")
ANIONS = ("F", "Cl", "Br", "O", "S", "N", "P", "As")


def _alignn_task(n: int = 40, seed: int = 0) -> dict[str, object]:
    """Two-atom rock-salt cells AB (A, B drawn from eight cations and eight anions) with a random
    lattice constant in [4.2, 6.4] A.

    The DOS mixes two fixed bands (normalised Gaussians at -2 and +3 eV, σ = 0.7 eV) with the
    weight ``w = 0.15 + 0.22 |X_A - X_B|`` (ionicity: the electronegativity difference, one of
    ALIGNN's node features), from 0.19 (GaAs) to 0.85 (KF), so the target is a known function of
    the node features. The lattice constant is a nuisance the target does not depend on.
    """
    rng = np.random.default_rng(seed)

    def band(centre: float) -> np.ndarray:
        return np.exp(-((ALIGNN_GRID - centre) ** 2) / (2 * 0.7**2)) / (np.sqrt(2 * np.pi) * 0.7)

    records, dos = [], []
    for _ in range(n):
        a, b = str(rng.choice(CATIONS)), str(rng.choice(ANIONS))
        w = 0.15 + 0.22 * abs(atom_features(a)[0] - atom_features(b)[0])
        records.append(graph_record(bulk(f"{a}{b}", "rocksalt", a=rng.uniform(4.2, 6.4))))
        dos.append(w * band(-2.0) + (1.0 - w) * band(3.0))
    ids = [f"x-{i}" for i in range(n)]
    return {
        "material_ids": ids,
        "graphs": records,
        "dos": torch.tensor(np.array(dos), dtype=torch.float32),
        "split": random_split_labels(ids, 0.25, seed=seed),
    }


def test_d_alignn_beats_the_mean_spectrum_on_a_learnable_task(tmp_path: Path) -> None:
    feats = _alignn_task()
    features = tmp_path / "dataset.pt"
    torch.save(feats, features)
    # The default profile's architecture and fit (params.yaml: lr, batch size, 4 ALIGNN + 4 GCN
    # layers); D-ALIGNN only (no autoencoder latents), 30 epochs without early stopping, CPU.
    cfg = stage_config(
        "alignn_dos", "train",
        alignn_dos__autoencoder__latents=[], alignn_dos__train__max_epochs=30,
        alignn_dos__train__patience=0, alignn_dos__train__accelerator="cpu",
    )  # fmt: skip
    paths = alignn_run_train(features, tmp_path / "ae", cfg, tmp_path / "model", tmp_path / "live")
    assert set(paths) == {"d_alignn"}
    model, _ = load_network(paths["d_alignn"], ALIGNN)
    split = feats["split"]
    train = [i for i, s in enumerate(split) if s == "train"]
    test = [i for i, s in enumerate(split) if s == "test"]
    dos = feats["dos"].double().numpy()
    pred = predict_dos(model, [feats["graphs"][i] for i in test])
    mae_model = _mae(pred, dos[test])
    mae_mean = _mae(np.broadcast_to(dos[train].mean(0), dos[test].shape), dos[test])
    assert mae_mean > 0.01  # the task has signal to learn
    # Observed: 0.0064 vs 0.018 states/eV (training seed 1: 0.0076).
    assert mae_model < 0.6 * mae_mean, (mae_model, mae_mean)
