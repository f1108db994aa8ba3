"""DOS-derived quantities (LDOS paper, Appendix A) against closed-form results.

Every expected value is computed here from physics (constant DOS, free-electron sqrt DOS,
two-box insulator, Sommerfeld expansions) or from an independent route (finite differences,
plain ``np.trapezoid`` of a hand-built integrand), never copied from the implementation.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from esrepro.dos_properties import (
    K_B_EV_PER_K,
    absorption,
    band_energy,
    derived_properties,
    dos_at_fermi,
    fermi_dirac,
    fermi_energy,
    heat_capacity,
    normalized_loss,
    normalized_scalar_loss,
    susceptibility,
)

PI2 = math.pi**2

# ---------------------------------------------------------------- model densities of states

# Constant DOS D0 on [-10, 10] eV. Far from the grid ends (>> kT) the Fermi tails are negligible
# (exp(-100) and below), so N(μ) = D0 (μ - e_min) and ε_B = D0 [(μ² - e_min²)/2 + π² kT²/6]
# exactly (the Sommerfeld series terminates for a linear integrand).
E_CONST = np.linspace(-10.0, 10.0, 4001)  # h = 0.005 eV
D0 = 0.7
MU_CONST = 1.3
N_CONST = D0 * (MU_CONST - E_CONST[0])

# Free-electron DOS D = A sqrt(ε) (ε > 0), Fermi energy E_F at T = 0.
E_SQRT = np.linspace(-1.0, 12.0, 13001)  # h = 0.001 eV
A_SQRT = 1.5
EF_SQRT = 5.0
D_SQRT = A_SQRT * np.sqrt(np.clip(E_SQRT, 0.0, None))
N_SQRT = 2.0 / 3.0 * A_SQRT * EF_SQRT**1.5
D_EF_SQRT = A_SQRT * math.sqrt(EF_SQRT)

# Insulator: valence box [-5, -1] eV of height 2, conduction box [1, 5] eV of height 1.
E_INS = np.linspace(-6.0, 6.0, 12001)  # h = 0.001 eV
H_INS = E_INS[1] - E_INS[0]
DV, DC = 2.0, 1.0
EV, EC = -1.0, 1.0
_tol = H_INS / 2
VALENCE = np.where((E_INS >= -5.0 - _tol) & (E_INS <= EV + _tol), DV, 0.0)
CONDUCTION = np.where((E_INS >= EC - _tol) & (E_INS <= 5.0 + _tol), DC, 0.0)
D_INS = VALENCE + CONDUCTION
# The valence band holds exactly the electrons: its own integral on this grid.
N_INS = float(np.trapezoid(VALENCE, E_INS))
N_COND = float(np.trapezoid(CONDUCTION, E_INS))

KT_300 = K_B_EV_PER_K * 300.0


# ---------------------------------------------------------------- Fermi-Dirac


def test_fermi_dirac_values_symmetry_and_step() -> None:
    e = np.linspace(-1.0, 1.0, 201)
    kt = 0.1
    f = fermi_dirac(e, 0.2, kt)
    np.testing.assert_allclose(f, 1.0 / (1.0 + np.exp((e - 0.2) / kt)), rtol=1e-12)
    assert fermi_dirac(0.2, 0.2, kt) == pytest.approx(0.5, abs=1e-15)
    # f(μ + x) = 1 - f(μ - x)
    np.testing.assert_allclose(fermi_dirac(0.2 + e, 0.2, kt), 1.0 - fermi_dirac(0.2 - e, 0.2, kt))
    step = fermi_dirac(np.array([-0.1, 0.2, 0.5]), 0.2, 0.0)
    np.testing.assert_array_equal(step, [1.0, 0.5, 0.0])


def test_fermi_dirac_extreme_ratios_do_not_overflow() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an exp overflow warning would fail the test
        f = fermi_dirac(np.array([-100.0, 100.0]), 0.0, 1e-4)
    np.testing.assert_array_equal(f, [1.0, 0.0])


def test_fermi_dirac_small_kt_approaches_step() -> None:
    e = np.array([-0.3, -0.01, 0.01, 0.3])
    # |ε - μ| / kT >= 10 for kT = 1e-3, so f differs from the step by < exp(-10) ≈ 5e-5.
    np.testing.assert_allclose(fermi_dirac(e, 0.0, 1e-3), fermi_dirac(e, 0.0, 0.0), atol=5e-5)


# ---------------------------------------------------------------- constant DOS (analytic)


@pytest.mark.parametrize("kt", [0.0, 0.05, 0.1])
def test_constant_dos_fermi_energy_is_analytic(kt: float) -> None:
    d = np.full_like(E_CONST, D0)
    # Trapezoid integrals of D0 f are exact here (f is flat at both grid ends), so the only
    # error is the root finder's xtol (1e-12 eV).
    assert fermi_energy(d, E_CONST, N_CONST, kt) == pytest.approx(MU_CONST, abs=1e-9)


@pytest.mark.parametrize("kt", [0.0, 0.05, 0.1])
def test_constant_dos_band_energy_is_analytic(kt: float) -> None:
    d = np.full_like(E_CONST, D0)
    expected = D0 * ((MU_CONST**2 - E_CONST[0] ** 2) / 2 + PI2 * kt**2 / 6)
    # The trapezoid of ε·D0·f is off by the Euler-Maclaurin end term D0 h²/12 ≈ 1.5e-6 eV
    # (ε f changes slope from 1 to 0 across the grid); at kT = 0 the integral is exact.
    assert band_energy(d, E_CONST, MU_CONST, kt) == pytest.approx(expected, abs=1e-5)


def test_constant_dos_susceptibility_heat_capacity_and_dos_at_fermi() -> None:
    d = np.full_like(E_CONST, D0)
    # ∫ D0 (-∂f/∂ε) dε = D0 exactly; trapezoid of the smooth window is spectrally accurate.
    assert susceptibility(d, E_CONST, MU_CONST, 0.05) == pytest.approx(D0, rel=1e-9)
    assert dos_at_fermi(d, E_CONST, MU_CONST) == pytest.approx(D0, rel=1e-12)
    for t in (100.0, 300.0, 1000.0):
        # Constant DOS: C/k_B = (π²/3) k_B T D0 holds exactly (μ does not move with T). At
        # 100 K, h/kT = 0.58 and the trapezoid error ~exp(-2π² kT/h) ≈ 1e-15.
        expected = PI2 / 3 * K_B_EV_PER_K * t * D0
        assert heat_capacity(d, E_CONST, t, N_CONST) == pytest.approx(expected, rel=1e-6)


def test_underresolved_thermal_window_warns() -> None:
    d = np.full_like(E_CONST, D0)  # h = 5e-3 eV > k_B x 10 K = 8.6e-4 eV
    with pytest.warns(RuntimeWarning, match="under-resolved"):
        heat_capacity(d, E_CONST, 10.0, N_CONST)
    with pytest.warns(RuntimeWarning, match="under-resolved"):
        susceptibility(d, E_CONST, MU_CONST, 1e-3)


# ---------------------------------------------------------------- free-electron metal


def test_sqrt_dos_fermi_energy_at_zero_temperature() -> None:
    # Integrating sqrt on a grid with h = 1e-3 eV misses ~A h^1.5 ≈ 5e-5 states near the band
    # bottom; divided by D(E_F) ≈ 3.4 states/eV that moves μ by ~1e-5 eV.
    assert fermi_energy(D_SQRT, E_SQRT, N_SQRT, 0.0) == pytest.approx(EF_SQRT, abs=1e-4)
    assert dos_at_fermi(D_SQRT, E_SQRT, EF_SQRT) == pytest.approx(D_EF_SQRT, rel=1e-6)


def test_sqrt_dos_chemical_potential_follows_sommerfeld() -> None:
    kt = 0.2
    mu0 = fermi_energy(D_SQRT, E_SQRT, N_SQRT, 0.0)
    # μ(T) = E_F - (π²/6) (kT)² D'/D = E_F - (π²/12) (kT)²/E_F at fixed N; the next term is
    # O((kT)^4/E_F^3) ≈ 1e-5 eV, below the 1e-4 eV tolerance.
    expected = mu0 - PI2 / 12 * kt**2 / EF_SQRT
    assert fermi_energy(D_SQRT, E_SQRT, N_SQRT, kt) == pytest.approx(expected, abs=1e-4)


def test_sqrt_dos_heat_capacity_is_sommerfeld() -> None:
    t = 300.0
    expected = PI2 / 3 * K_B_EV_PER_K * t * D_EF_SQRT  # C/k_B = (π²/3) k_B T D(E_F)
    # Corrections are O((kT/E_F)²) ≈ 3e-5 relative; 1e-3 leaves room for the grid.
    assert heat_capacity(D_SQRT, E_SQRT, t, N_SQRT) == pytest.approx(expected, rel=1e-3)


def test_heat_capacity_matches_finite_difference_of_band_energy() -> None:
    # Independent route: C = dε_B/dT at fixed N by a centred difference, re-solving μ at T ± δ.
    # For the sqrt DOS at 2000 K, μ(T) moves; ignoring that (∫ ε D ∂f/∂T at fixed μ) would be
    # off by ~50 %, so this checks the fixed-N correction. The O(δ²/T²) ≈ 3e-7 truncation and
    # μ round-off (~1e-12 eV) are far inside the 1e-5 tolerance.
    t, dt = 2000.0, 1.0

    def eb(temp: float) -> float:
        kt = K_B_EV_PER_K * temp
        mu = fermi_energy(D_SQRT, E_SQRT, N_SQRT, kt)
        return band_energy(D_SQRT, E_SQRT, mu, kt)

    fd = (eb(t + dt) - eb(t - dt)) / (2 * dt) / K_B_EV_PER_K
    assert heat_capacity(D_SQRT, E_SQRT, t, N_SQRT) == pytest.approx(fd, rel=1e-5)


def test_sqrt_dos_low_temperature_limits() -> None:
    mu0 = fermi_energy(D_SQRT, E_SQRT, N_SQRT, 0.0)
    eb0 = band_energy(D_SQRT, E_SQRT, mu0, 0.0)
    d_ef = dos_at_fermi(D_SQRT, E_SQRT, mu0)
    for kt in (0.05, 0.02, 0.01):
        mu = fermi_energy(D_SQRT, E_SQRT, N_SQRT, kt)
        # Fixed N: μ shift (π²/12)(kT)²/E_F <= 4e-4 eV -> vanishes as kT -> 0.
        assert mu == pytest.approx(mu0, abs=PI2 / 12 * kt**2 / EF_SQRT * 1.05 + 1e-7)
        # Fixed N: ε_B(T) - ε_B(0) = (π²/6) (kT)² D(E_F) (Sommerfeld), to 1 % (higher orders
        # are O((kT/E_F)²) and the kT = 0 quadrature differs by O(h²)).
        delta = band_energy(D_SQRT, E_SQRT, mu, kt) - eb0
        assert delta == pytest.approx(PI2 / 6 * kt**2 * d_ef, rel=1e-2)
    # χ -> D(E_F): the thermal window adds (π²/6)(kT)² D'' ≈ 1e-6 states/eV at kT = 5e-3 eV.
    assert susceptibility(D_SQRT, E_SQRT, mu0, 5e-3) == pytest.approx(d_ef, rel=1e-5)
    assert susceptibility(D_SQRT, E_SQRT, mu0, 0.0) == d_ef


# ---------------------------------------------------------------- insulator


def test_insulator_zero_temperature_fermi_level_is_mid_gap() -> None:
    mu = fermi_energy(D_INS, E_INS, N_INS, 0.0)
    # Midpoint of the flat region of N(μ): the gap spans (EV + h, EC - h) on the interpolated
    # DOS, symmetric about 0; the count tolerance moves each end by ~sqrt(2e-9 h/D) ≈ 1e-6 eV.
    assert mu == pytest.approx(0.5 * (EV + EC), abs=1e-5)


@pytest.mark.parametrize("kt", [KT_300, 0.1])
def test_insulator_finite_temperature_fermi_level_is_intrinsic(kt: float) -> None:
    # Equal numbers of holes and electrons with Boltzmann tails over constant band-edge DOS:
    # μ = (EV + EC)/2 + (kT/2) ln(DV/DC). At 300 K the carrier densities (~1e-17) are below the
    # count's round-off; at kT = 0.1 eV they are ~1e-5 and resolved directly. Neglected
    # Fermi-vs-Boltzmann terms are ~exp(-gap/2kT) relative; observed deviations are <= 1e-6 eV,
    # and 1e-5 eV still resolves the (kT/2) ln 2 shift (9e-3 and 3.5e-2 eV) a thousandfold.
    expected = 0.5 * (EV + EC) + 0.5 * kt * math.log(DV / DC)
    assert fermi_energy(D_INS, E_INS, N_INS, kt) == pytest.approx(expected, abs=1e-5)


def test_insulator_has_no_states_susceptibility_or_heat_capacity_at_fermi_level() -> None:
    mu = fermi_energy(D_INS, E_INS, N_INS, KT_300)
    assert EV < mu < EC
    assert dos_at_fermi(D_INS, E_INS, mu) == 0.0
    # Both are weighted by exp(-|ε - μ|/kT) <= exp(-38) ≈ 3e-17 at the band edges.
    assert susceptibility(D_INS, E_INS, mu, KT_300) == pytest.approx(0.0, abs=1e-12)
    assert heat_capacity(D_INS, E_INS, 300.0, N_INS) == pytest.approx(0.0, abs=1e-10)
    # Versus a metal with comparable DOS: C/k_B ≈ 0.28 at 300 K (test above).


def _box_overlap(a: float, b: float, c: float, d: float) -> float:
    return max(0.0, min(b, d) - max(a, c))


def test_insulator_absorption_gap_and_shape() -> None:
    mu = fermi_energy(D_INS, E_INS, N_INS, 0.0)
    omegas = np.arange(0.0, 11.0, 0.25)
    a0 = absorption(D_INS, E_INS, mu, 0.0, omegas)
    a300 = absorption(D_INS, E_INS, mu, KT_300, omegas)
    below = omegas < (EC - EV) - 0.05
    above = (omegas > (EC - EV) + 0.05) & (omegas < 10.0 - 0.05)
    assert a0.shape == omegas.shape
    np.testing.assert_array_equal(a0[below], 0.0)
    assert np.all(a300[below] < 1e-12)  # thermal carriers ~exp(-1 eV / kT) ≈ 1e-17
    assert np.all(a0[above] > 0) and np.all(a300[above] > 0)
    # At T = 0, A(ω) = DV DC x |[-5, -1] ∩ [1 - ω, 5 - ω]|; the box edges are smeared over one
    # grid cell by interpolation, so allow DV DC x 2h.
    expected = np.array([DV * DC * _box_overlap(-5.0, EV, EC - w, 5.0 - w) for w in omegas])
    np.testing.assert_allclose(a0, expected, atol=DV * DC * 2 * H_INS)
    np.testing.assert_allclose(a300, a0, atol=DV * DC * 2 * H_INS)


def test_absorption_vanishes_for_a_metal_only_at_zero_photon_energy() -> None:
    # At T = 0, A(0) = ∫ D² f (1 - f) = 0 (no state is both full and empty) but A(ω) ~ D² ω.
    mu0 = fermi_energy(D_SQRT, E_SQRT, N_SQRT, 0.0)
    a = absorption(D_SQRT, E_SQRT, mu0, 0.0, np.array([0.0, 0.1]))
    assert a[0] == pytest.approx(0.0, abs=D_EF_SQRT**2 * 1e-3)  # one cell at most
    assert a[1] == pytest.approx(D_EF_SQRT**2 * 0.1, rel=2e-2)  # D varies ~1 % over 0.1 eV
    with pytest.raises(ValueError, match="hbar_omega"):
        absorption(D_SQRT, E_SQRT, mu0, 0.0, np.array([-0.5, 1.0]))


def test_derived_properties_keys_and_absorption_sum_rule() -> None:
    omegas = np.linspace(0.0, 12.0, 1201)
    props = derived_properties(D_INS, E_INS, N_INS, kT=0.0, T=300.0, hbar_omega=omegas)
    assert set(props) == {
        "band_energy",
        "fermi_energy",
        "dos_at_fermi",
        "heat_capacity",
        "susceptibility",
        "absorption",
    }
    assert all(isinstance(v, float) for v in props.values())
    # ∫ A dω over all transitions at T = 0 counts every (occupied, empty) pair: N_v x N_c.
    # The ω trapezoid (step 0.01 eV) over kinks of the trapezoid-shaped A(ω) costs ~1e-4 relative.
    assert props["absorption"] == pytest.approx(N_INS * N_COND, rel=1e-3)
    # Valence box fully occupied: ε_B = DV (EV² - (-5)²)/2 plus the half-cell edge terms.
    assert props["band_energy"] == pytest.approx(float(np.trapezoid(E_INS * VALENCE, E_INS)))
    assert props["dos_at_fermi"] == 0.0
    assert props["susceptibility"] == 0.0


# ---------------------------------------------------------------- batches


def _batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    e = np.linspace(-6.0, 12.0, 9001)
    sqrt_dos = 1.5 * np.sqrt(np.clip(e, 0.0, None))
    boxes = np.where((e >= -5) & (e <= -1), 2.0, 0.0) + np.where((e >= 1) & (e <= 5), 1.0, 0.0)
    const = np.full_like(e, 0.5)
    return e, np.stack([sqrt_dos, boxes, const]), np.array([N_SQRT, 8.0, 3.0])


@pytest.mark.parametrize("kt", [0.0, 0.05])
def test_batch_matches_single_structures(kt: float) -> None:
    e, dos, n = _batch()
    mu = fermi_energy(dos, e, n, kt)
    assert isinstance(mu, np.ndarray) and mu.shape == (3,)
    omegas = np.array([0.5, 2.5, 4.0])
    batch = {
        "band": band_energy(dos, e, mu, kt),
        "dos_f": dos_at_fermi(dos, e, mu),
        "chi": susceptibility(dos, e, mu, kt),
        "c": heat_capacity(dos, e, 500.0, n),
        "abs": absorption(dos, e, mu, kt, omegas),
    }
    assert batch["abs"].shape == (3, 3)
    props = derived_properties(dos, e, n, kT=max(kt, 0.01), T=500.0, hbar_omega=omegas)
    for i in range(3):
        mu_i = fermi_energy(dos[i], e, n[i], kt)
        # Same arithmetic row by row; only summation order may differ.
        assert mu[i] == pytest.approx(mu_i, rel=1e-12, abs=1e-12)
        assert batch["band"][i] == pytest.approx(band_energy(dos[i], e, mu_i, kt), rel=1e-12)
        assert batch["dos_f"][i] == pytest.approx(dos_at_fermi(dos[i], e, mu_i), rel=1e-12)
        assert batch["chi"][i] == pytest.approx(susceptibility(dos[i], e, mu_i, kt), rel=1e-12)
        assert batch["c"][i] == pytest.approx(heat_capacity(dos[i], e, 500.0, n[i]), rel=1e-9)
        np.testing.assert_allclose(
            batch["abs"][i], absorption(dos[i], e, mu_i, kt, omegas), rtol=1e-12, atol=1e-14
        )
        single = derived_properties(dos[i], e, n[i], kT=max(kt, 0.01), T=500.0, hbar_omega=omegas)
        for key, value in single.items():
            assert props[key][i] == pytest.approx(value, rel=1e-9, abs=1e-14), key


def test_scalar_n_electrons_broadcasts_over_batch() -> None:
    e, dos, _ = _batch()
    mu = fermi_energy(dos[[0, 0]], e, N_SQRT, 0.0)
    assert mu[0] == mu[1]


# ---------------------------------------------------------------- bad inputs


def test_non_uniform_grid_is_rejected() -> None:
    e = np.concatenate([np.linspace(0.0, 1.0, 11), np.linspace(1.2, 2.0, 5)])
    with pytest.raises(ValueError, match="uniform"):
        fermi_energy(np.ones_like(e), e, 1.0, 0.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        band_energy(np.ones(5), np.linspace(1.0, 0.0, 5), 0.5, 0.0)
    with pytest.raises(ValueError, match="1-D grid"):
        susceptibility(np.ones(4), np.ones((2, 2)), 0.5, 0.1)


def test_wrong_shapes_are_rejected() -> None:
    e = np.linspace(0.0, 1.0, 11)
    with pytest.raises(ValueError, match="11"):
        fermi_energy(np.ones(10), e, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"shape \(n_grid,\) or \(n_structures, n_grid\)"):
        fermi_energy(np.ones((2, 2, 11)), e, 1.0, 0.0)
    with pytest.raises(ValueError, match="one value per structure"):
        fermi_energy(np.ones((3, 11)), e, np.array([0.5, 0.5]), 0.0)
    with pytest.raises(ValueError, match="one value per structure"):
        band_energy(np.ones((3, 11)), e, np.array([0.5, 0.5]), 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        susceptibility(np.full(11, np.nan), e, 0.5, 0.1)


def test_unreachable_electron_count_is_rejected() -> None:
    e = np.linspace(0.0, 1.0, 11)  # a DOS of 2 states/eV holds 2 electrons in total
    with pytest.raises(ValueError, match=r"n_electrons=5 cannot be reached.*integrates to 2"):
        fermi_energy(np.full(11, 2.0), e, 5.0, 0.0)
    with pytest.raises(ValueError, match="n_electrons=0 cannot be reached"):
        fermi_energy(np.full(11, 2.0), e, 0.0, 0.1)
    with pytest.raises(ValueError, match="cannot be reached"):
        heat_capacity(np.full(11, 2.0), e, 300.0, 2.0)
    with pytest.raises(ValueError, match="cannot be reached"):
        heat_capacity(np.full(11, 2.0), e, 0.0, 3.0)


def test_bad_temperatures_and_fermi_levels_are_rejected() -> None:
    e = np.linspace(0.0, 1.0, 11)
    d = np.ones(11)
    with pytest.raises(ValueError, match="kT"):
        fermi_dirac(e, 0.5, -0.1)
    with pytest.raises(ValueError, match="kT"):
        band_energy(d, e, 0.5, float("nan"))
    with pytest.raises(ValueError, match="T must be"):
        heat_capacity(d, e, -1.0, 0.5)
    with pytest.raises(ValueError, match="outside the energy grid"):
        dos_at_fermi(d, e, 1.5)


# ---------------------------------------------------------------- normalised losses (eq. 15)


def test_normalized_loss_matches_eq15_on_sines() -> None:
    e = np.linspace(0.0, 2 * math.pi, 2001)
    ref = np.stack([1.0 * np.sin(e), 3.0 * np.sin(e)])
    # <ref> = 0; σ² = <ref²> = (1² + 3²)/2 x 1/2 (mean of sin² over full periods, which the
    # trapezoid rule integrates exactly). pred = ref + 0.1 gives L = 0.1.
    sigma = math.sqrt((1.0 + 9.0) / 4)
    assert normalized_loss(ref + 0.1, ref, e) == pytest.approx(0.1 / sigma, rel=1e-9)
    assert normalized_loss(ref, ref, e) == 0.0
    # Per-energy mean 2 sin(ε): deviations ±sin(ε) -> σ² = 1/2.
    assert normalized_loss(ref + 0.1, ref, e, reference_mean="per_energy") == pytest.approx(
        0.1 * math.sqrt(2), rel=1e-9
    )


def test_normalized_loss_of_predicting_the_mean_is_one() -> None:
    rng = np.random.default_rng(0)
    e = np.linspace(-3.0, 3.0, 301)
    ref = rng.random((5, 301))
    width = e[-1] - e[0]
    mean = float(np.mean(np.trapezoid(ref, e, axis=1)) / width)
    # L² = <(<ref> - ref)²> = σ² by definition (eq. 15), so L/σ = 1.
    assert normalized_loss(np.full_like(ref, mean), ref, e) == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(ValueError, match="differ in shape"):
        normalized_loss(ref[:4], ref, e)
    with pytest.raises(ValueError, match="zero standard deviation"):
        normalized_loss(ref, np.ones_like(ref), e)
    with pytest.raises(ValueError, match="reference_mean"):
        normalized_loss(ref, ref, e, reference_mean="bogus")


def test_normalized_scalar_loss() -> None:
    ref = np.array([1.0, 2.0, 3.0, 4.0])  # population std = sqrt(1.25)
    assert normalized_scalar_loss(ref + 0.5, ref) == pytest.approx(0.5 / math.sqrt(1.25))
    assert normalized_scalar_loss(np.full(4, ref.mean()), ref) == pytest.approx(1.0)
    assert normalized_scalar_loss(ref, ref) == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        normalized_scalar_loss(ref[:3], ref)
    with pytest.raises(ValueError, match="zero standard deviation"):
        normalized_scalar_loss(ref, np.ones(4))
