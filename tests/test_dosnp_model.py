"""DOSnp architecture (paper Tables III/IV) and its symmetry properties."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from esrepro.papers.dosnp.model import DOSFeaturizer, DOSnp, DOSnpEnsemble, load_dosnp
from esrepro.pooling import POOLING_MODES, pool_atoms, pooled_dim
from esrepro.training import save_model
from helpers import assert_permutation_invariant

# Table IV of the paper, transcribed independently of the module's own constant:
# (layer, output size, (filter, stride, padding)).
PAPER_TABLE_IV = [
    ("1D-CNN", (16, 498), (5, 2, 0)),
    ("Ave. pooling", (16, 249), (3, 2, 1)),
    ("1D-CNN", (16, 124), (3, 2, 0)),
    ("Ave. pooling", (16, 62), (3, 2, 1)),
    ("1D-CNN", (16, 60), (3, 1, 0)),
    ("Ave. pooling", (16, 30), (3, 2, 1)),
    ("1D-CNN", (16, 28), (3, 1, 0)),
    ("Ave. pooling", (16, 14), (3, 2, 1)),
    ("1D-CNN", (16, 12), (3, 1, 0)),
]


#: The paper's architecture (Table III; params.yaml dosnp.model): DOSnp has no defaults.
ARCH = {"dropout": 0.3, "hidden": 100, "input_scale": 1.0}

def _batch(n_atoms_per_graph: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    gen = torch.Generator().manual_seed(seed)
    n = sum(n_atoms_per_graph)
    # Non-negative like a real PDOS, so ReLU features are generically non-zero.
    pdos = torch.rand(n, 16, 1000, generator=gen) * 2.0
    index = torch.repeat_interleave(
        torch.arange(len(n_atoms_per_graph)), torch.tensor(n_atoms_per_graph)
    )
    return pdos, index, len(n_atoms_per_graph)


def _model(pooling: str, n_outputs: int = 1) -> DOSnp:
    torch.manual_seed(0)
    return DOSnp(pooling=pooling, n_outputs=n_outputs, **ARCH).eval()


def test_featurizer_matches_table_iv_layer_by_layer() -> None:
    feat = DOSFeaturizer()
    x = torch.rand(2, 16, 1000)
    rows = []
    layers = list(feat.layers)
    i = 0
    while i < len(layers):
        layer = layers[i]
        x = layer(x)
        if isinstance(layer, nn.Conv1d):
            assert isinstance(layers[i + 1], nn.ReLU), "every 1D-CNN row is conv + ReLU"
            x = layers[i + 1](x)
            i += 1
            params = (layer.kernel_size[0], layer.stride[0], layer.padding[0])
            assert (layer.in_channels, layer.out_channels) == (16, 16)
            rows.append(("1D-CNN", tuple(x.shape[1:]), params))
        elif isinstance(layer, nn.AvgPool1d):
            params = (_int(layer.kernel_size), _int(layer.stride), _int(layer.padding))
            rows.append(("Ave. pooling", tuple(x.shape[1:]), params))
        i += 1
    assert rows == PAPER_TABLE_IV
    assert feat(torch.rand(3, 16, 1000)).flatten(1).shape == (3, 192)


def _int(v: int | tuple[int, ...]) -> int:
    return v[0] if isinstance(v, tuple) else v


@pytest.mark.parametrize("pooling", POOLING_MODES)
def test_output_and_hidden_dims(pooling: str) -> None:
    model = _model(pooling)
    expected_pooled = 384 if pooling == "mean+max" else 192
    assert model.fc.in_features == expected_pooled == pooled_dim(192, pooling)
    assert model.fc.out_features == 100
    pdos, index, n = _batch([1, 3, 2])
    assert model(pdos, index, n).shape == (3, 1)


def test_effective_mass_head_has_three_outputs() -> None:
    model = _model("mean+max", n_outputs=3)
    pdos, index, n = _batch([2, 4])
    assert model(pdos, index, n).shape == (2, 3)


@pytest.mark.parametrize("pooling", POOLING_MODES)
def test_invariant_to_atom_order(pooling: str) -> None:
    pdos, index, n = _batch([1, 4, 3, 2])
    assert_permutation_invariant(_model(pooling), pdos, index, n)


def _doubled_cell(pdos: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # A 2x supercell has every atom twice with the same PDOS (per atom, so values unchanged).
    return pdos.repeat(2, 1, 1), index.repeat(2)


@pytest.mark.parametrize("pooling", ["mean", "max", "mean+max"])
def test_supercell_size_invariance(pooling: str) -> None:
    model = _model(pooling)
    pdos, index, n = _batch([2, 3, 1])
    pdos2, index2 = _doubled_cell(pdos, index)
    with torch.no_grad():
        torch.testing.assert_close(model(pdos2, index2, n), model(pdos, index, n))


def test_sum_pooling_is_not_size_invariant() -> None:
    model = _model("sum")
    pdos, index, n = _batch([2, 3, 1])
    pdos2, index2 = _doubled_cell(pdos, index)
    with torch.no_grad():
        feats = model.atom_features(pdos)
        pooled = pool_atoms(feats, index, n, "sum")
        pooled2 = pool_atoms(model.atom_features(pdos2), index2, n, "sum")
        assert pooled.abs().sum() > 0
        torch.testing.assert_close(pooled2, 2 * pooled)
        assert not torch.allclose(model(pdos2, index2, n), model(pdos, index, n), atol=1e-4)


@pytest.mark.parametrize("pooling", POOLING_MODES)
def test_prediction_independent_of_batch_companions(pooling: str) -> None:
    model = _model(pooling)
    sizes = [2, 1, 4, 3]
    pdos, index, n = _batch(sizes, seed=1)
    with torch.no_grad():
        together = model(pdos, index, n)
        start = 0
        for g, size in enumerate(sizes):
            alone = model(pdos[start : start + size], torch.zeros(size, dtype=torch.long), 1)
            torch.testing.assert_close(alone[0], together[g], atol=1e-5, rtol=1e-5)
            start += size
        # Reversing the order of materials in the batch only reorders the outputs.
        rev_sizes = sizes[::-1]
        blocks = torch.split(pdos, sizes)
        rev_pdos = torch.cat(blocks[::-1])
        rev_index = torch.repeat_interleave(torch.arange(n), torch.tensor(rev_sizes))
        torch.testing.assert_close(model(rev_pdos, rev_index, n), together.flip(0))


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_pool_atoms_matches_loop_reference(mode: str) -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(7, 5, generator=gen) - 2.0  # all-negative features: max must not return 0
    index = torch.tensor([2, 0, 2, 1, 0, 2, 1])
    out = pool_atoms(x, index, 3, mode)
    for g in range(3):
        rows = x[index == g]
        ref = {
            "mean": rows.mean(0),
            "max": rows.max(0).values,
            "sum": rows.sum(0),
            "mean+max": torch.cat([rows.mean(0), rows.max(0).values]),
        }[mode]
        torch.testing.assert_close(out[g], ref)


def test_unknown_pooling_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="attention.*mean\\+max"):
        pool_atoms(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 1, "attention")
    with pytest.raises(ValueError, match="attention"):
        DOSnp(pooling="attention", **ARCH)


def _ensemble(pooling: str, n_members: int = 3) -> DOSnpEnsemble:
    members = []
    for seed in range(n_members):
        torch.manual_seed(seed)
        members.append(DOSnp(pooling=pooling, **ARCH))
    return DOSnpEnsemble.of(members).eval()


def test_ensemble_predicts_the_mean_of_its_members() -> None:
    ensemble = _ensemble("mean+max")
    pdos, index, n = _batch([2, 1, 3])
    with torch.no_grad():
        each = [m(pdos, index, n) for m in ensemble.members]
        assert not torch.allclose(each[0], each[1]), "members start from different seeds"
        torch.testing.assert_close(ensemble(pdos, index, n), sum(each) / 3)


@pytest.mark.parametrize("pooling", ["mean", "max", "mean+max"])
def test_ensemble_invariant_to_atom_order_and_supercell_size(pooling: str) -> None:
    ensemble = _ensemble(pooling)
    pdos, index, n = _batch([1, 4, 3, 2])
    assert_permutation_invariant(ensemble, pdos, index, n)
    pdos2, index2 = _doubled_cell(pdos, index)
    with torch.no_grad():
        torch.testing.assert_close(ensemble(pdos2, index2, n), ensemble(pdos, index, n))


def test_ensemble_save_load_roundtrip(tmp_path) -> None:
    ensemble = _ensemble("max", n_members=2)
    path = save_model(tmp_path / "dosnp.pt", ensemble)
    loaded, _ = load_dosnp(path)
    assert isinstance(loaded, DOSnpEnsemble) and len(loaded.members) == 2
    assert loaded.pooling == "max" and not loaded.training
    pdos, index, n = _batch([2, 3])
    with torch.no_grad():
        torch.testing.assert_close(loaded(pdos, index, n), ensemble(pdos, index, n))


def test_single_dosnp_file_still_loads(tmp_path) -> None:
    model = _model("mean")
    path = save_model(tmp_path / "single.pt", model)
    loaded, _ = load_dosnp(path)
    assert type(loaded) is DOSnp
    pdos, index, n = _batch([2, 3])
    with torch.no_grad():
        torch.testing.assert_close(loaded(pdos, index, n), model(pdos, index, n))


def test_ensemble_rejects_mixed_architectures_and_no_members() -> None:
    with pytest.raises(ValueError, match="one architecture"):
        DOSnpEnsemble.of([DOSnp(pooling="mean", **ARCH), DOSnp(pooling="max", **ARCH)])
    with pytest.raises(ValueError, match="at least one member"):
        DOSnpEnsemble(DOSnp(pooling="mean+max", **ARCH).hparams_dict(), 0)
