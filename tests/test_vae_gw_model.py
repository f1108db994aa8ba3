"""VAE-GW networks: Table 1's layer counts, the released code's networks, and the symmetry of the
Table-1 encoder (exact rot90 invariance, invariance to even in-plane shifts only)."""

from __future__ import annotations

import pytest
import torch

from esrepro.papers.vae_gw.model import (
    PAPER_GW_PARAMETERS,
    PAPER_TABLE1,
    VAE,
    GWNetConfig,
    GWNetwork,
    RotationalConv2d,
    VAEConfig,
    assemble_inputs,
    choose_rotation,
    input_layout,
    n_parameters,
    parameter_table,
)
from esrepro.testing import (
    assert_rot90_equivariant,
    assert_rot90_invariant,
    assert_shift_invariant,
)
from esrepro.training import load_model, save_model


@pytest.fixture(scope="module")
def table1() -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(kind="table1")).eval()


@pytest.fixture(scope="module")
def table1_f64(table1: VAE) -> VAE:
    torch.manual_seed(0)
    vae = VAE(VAEConfig(kind="table1")).eval().double()
    vae.load_state_dict(table1.state_dict())
    return vae


def _states(n: int, dtype=torch.float32, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 40, 28, 28, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_table1_vae_has_the_papers_layer_counts(table1: VAE) -> None:
    assert parameter_table(table1) == PAPER_TABLE1
    assert n_parameters(table1) == 1_132_288


def test_plain_vae_has_the_released_codes_counts() -> None:
    plain = VAE(VAEConfig(kind="plain"))
    assert parameter_table(plain) == {
        "Conv2d-1": 21_660, "ReLU-2": 0, "MaxPool2d-3": 0, "Conv2d-4": 17_312, "ReLU-5": 0,
        "MaxPool2d-6": 0, "Flatten-7": 0, "Linear-8": 94_140, "Linear-9": 48_608, "ReLU-10": 0,
        "Unflatten-11": 0, "ConvTranspose2d-12": 17_340, "ReLU-13": 0, "ConvTranspose2d-14": 9_640,
        "Sigmoid-15": 0,
    }
    assert n_parameters(plain) == 208_700
    # The code's charge-density and super-state VAEs (Autoencoder_charge / _super).
    assert n_parameters(VAE(VAEConfig(kind="plain", hidden=(24, 8), latent=10))) == 28_204


def test_gw_network_counts_and_the_papers_13801() -> None:
    code = GWNetwork(GWNetConfig(inputs="code"))
    assert code.input_size == 203
    assert parameter_table(code) == {
        "Linear-1": 24_480, "ReLU-2": 0, "Linear-3": 9_680, "ReLU-4": 0, "Linear-5": 81
    }
    assert n_parameters(code) == 34_241
    eq3 = GWNetwork(GWNetConfig(inputs="eq3"))
    assert [w for _, w in input_layout(eq3.config)] == [1, 60, 20, 20, 20, 20]
    assert n_parameters(eq3) == 26_801
    # Each input adds 120 weights with these hidden widths (120, 80): no input width reaches
    # the paper's count.
    assert (n_parameters(code) - PAPER_GW_PARAMETERS) % 120 != 0

@pytest.mark.parametrize("kind", ["table1", "plain"])
def test_vae_round_trips_the_28x28_grid(kind: str) -> None:
    torch.manual_seed(0)
    vae = VAE(VAEConfig(kind=kind))
    x = _states(2)
    recon, mu, logvar = vae.train()(x)
    assert recon.shape == x.shape and mu.shape == logvar.shape == (2, 30)
    assert float(recon.detach().min()) >= 0 and float(recon.detach().max()) <= 1
    (recon.sum() + mu.sum()).backward()
    assert all(p.grad is not None for p in vae.parameters())
    assert vae.decode(mu.detach()).shape == x.shape


def test_table1_encoder_is_exactly_rot90_invariant(table1: VAE) -> None:
    x = _states(3)
    with torch.no_grad():
        assert_rot90_invariant(table1.encode, x)  # mu and log sigma^2, bit for bit
        # The reconstruction comes back in the input's frame.
        assert_rot90_equivariant(lambda t: table1(t)[0], x)
        assert_rot90_equivariant(table1.encoder[0], x)
        reference = table1.encode(x)
    # With autograd the layer convolves only the chosen rotation again: as invariant, and the
    # same latent to rounding.
    assert_rot90_invariant(table1.encode, x)
    torch.testing.assert_close(table1.encode(x), reference, atol=1e-5, rtol=1e-5)


def test_rot90_invariance_holds_for_symmetric_inputs(table1: VAE) -> None:
    x = _states(2)
    c2 = x + torch.rot90(x, 2, (-2, -1))  # rotations 0 and 2 give the same maps: a tie
    c4 = sum(torch.rot90(x, k, (-2, -1)) for k in range(4))
    with torch.no_grad():
        for sym in (c2, c4, torch.zeros_like(x)):
            assert_rot90_invariant(table1.encode, sym)


def test_rotation_choice_depends_on_content_not_order() -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.randint(0, 5, (6,), generator=gen).float()
    # Four candidates with equal sums (permutations of the same integers): the sum ties.
    cands = torch.stack([base, base.flip(0), base.roll(1), base.roll(2)])[:, None]
    chosen = cands[int(choose_rotation(cands)[0]), 0]
    for shift in range(1, 4):  # a rotated input relabels the candidates cyclically
        relabelled = cands.roll(-shift, dims=0)
        assert torch.equal(relabelled[int(choose_rotation(relabelled)[0]), 0], chosen)
    assert torch.equal(chosen, max((c[0] for c in cands), key=lambda t: t.tolist()))


def test_even_shifts_leave_mu_invariant_odd_shifts_do_not(table1_f64: VAE) -> None:
    x = _states(2, torch.float64)
    with torch.no_grad():
        # MaxPool 2x2/stride 2 commutes with even rolls only; GAP sums in another order.
        assert_shift_invariant(table1_f64.encode, x, [(2, 0), (0, 2), (4, 26), (14, 8)],
                               atol=1e-12, rtol=1e-10)
        for shift in [(1, 0), (0, 1), (3, 2)]:
            with pytest.raises(AssertionError):
                assert_shift_invariant(table1_f64.encode, x, [shift], atol=1e-6, rtol=1e-6)
        # Rotation and an even shift together.
        moved = torch.roll(torch.rot90(x, 1, (-2, -1)), (6, 2), dims=(-2, -1))
        torch.testing.assert_close(table1_f64.encode(moved), table1_f64.encode(x),
                                   atol=1e-12, rtol=1e-10)


def test_a_supercell_has_the_latent_of_its_cell(table1_f64: VAE) -> None:
    x = _states(2, torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(table1_f64.encode(x.repeat(1, 1, 2, 2)), table1_f64.encode(x),
                                   atol=1e-12, rtol=1e-10)


def test_the_plain_vae_is_not_invariant_and_the_helpers_say_so() -> None:
    torch.manual_seed(0)
    plain = VAE(VAEConfig(kind="plain")).eval()
    x = _states(2)
    with torch.no_grad():
        with pytest.raises(AssertionError, match="rot90 k=1"):
            assert_rot90_invariant(plain.encode, x)
        with pytest.raises(AssertionError, match="shift"):
            assert_shift_invariant(plain.encode, x, [(2, 0)], atol=1e-6, rtol=1e-6)


def test_bad_inputs_are_named() -> None:
    vae = VAE(VAEConfig(kind="table1", channels=4))
    with pytest.raises(ValueError, match="square"):
        vae.encode(torch.rand(1, 40, 28, 30))
    with pytest.raises(ValueError, match="slices"):
        vae.encode(torch.rand(1, 20, 28, 28))
    with pytest.raises(ValueError, match="28 x 28 grid"):
        VAE(VAEConfig(kind="plain")).encode(torch.rand(1, 40, 40, 40))
    with pytest.raises(ValueError, match="odd"):
        RotationalConv2d(4, 4, kernel_size=2)
    with pytest.raises(ValueError, match="kind"):
        VAEConfig(kind="rotational")


def test_inputs_assemble_in_layout_order_and_ablate() -> None:
    cfg = GWNetConfig(inputs="eq3", n_super=2)
    n = 4
    parts = {name: torch.full((n, w), float(i)) for i, (name, w) in enumerate(input_layout(cfg))}
    parts["e_dft"] = torch.arange(n, dtype=torch.float32)  # (N,) is accepted for width 1
    x = assemble_inputs(cfg, parts)
    assert x.shape == (n, 1 + 60 + 20 + 20 + 20)
    assert torch.equal(x[:, 0], torch.arange(n, dtype=torch.float32))
    ablated = GWNetConfig(inputs="eq3", n_super=2, ablate=("super_2",))
    assert [name for name, _ in input_layout(ablated)] == ["e_dft", "state", "super_1", "density_1"]
    assert GWNetwork(ablated).input_size == 101
    assert [n for n, _ in input_layout(GWNetConfig(ablate=("super", "state")))] == [
        "max_density", "e_dft", "lattice_code", "density_1", "density_2", "density_3", "density_4"
    ]
    with pytest.raises(ValueError, match="no such input"):
        GWNetConfig(ablate=("wavefunction",))
    with pytest.raises(ValueError, match="missing 'state'"):
        assemble_inputs(cfg, {k: v for k, v in parts.items() if k != "state"})
    with pytest.raises(ValueError, match="'density_1'"):
        assemble_inputs(cfg, {**parts, "density_1": torch.zeros(n, 3)})


def test_networks_rebuild_from_their_model_files(tmp_path) -> None:
    torch.manual_seed(0)
    for net in (VAE(VAEConfig(kind="table1", channels=8)),
                GWNetwork(GWNetConfig(inputs="eq3", ablate=("super_3",)))):
        path = save_model(tmp_path / "net.pt", net)
        again = load_model(path)
        assert type(again) is type(net) and again.config == net.config
        for key, value in net.state_dict().items():
            assert torch.equal(again.state_dict()[key], value)
