"""DOS-derived properties on model densities of states with closed-form answers.

Complements tests/test_dos_properties.py (constant, free-electron and two-box DOS) with:

* a Gaussian band: ε_F for a given electron count, band energy and D(ε_F) at T = 0 from the
  normal distribution's closed forms; Sommerfeld heat capacity γT with
  γ = π² k_B² D(ε_F) / 3, and its next order at half filling;
* a quadratic DOS ``D = a + b (ε - μ)²``, for which the Sommerfeld series terminates, so the
  susceptibility, heat capacity, band energy and μ(T) are exact at any temperature;
* a flat band with both edges inside the grid;
* :func:`derived_properties` on the half-filled Gaussian: each value against its closed form.

Expected values are computed here from the formulas in the docstrings, never from the module.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import ndtri
from scipy.stats import norm

from esrepro.dos_properties import (
    K_B_EV_PER_K,
    band_energy,
    derived_properties,
    dos_at_fermi,
    fermi_energy,
    heat_capacity,
    susceptibility,
)

PI2 = math.pi**2

# Gaussian band holding N_G states (spin-summed) centred at C_G with standard deviation S_G:
# D(ε) = N_G φ((ε - C_G)/S_G) / S_G. At T = 0 with n electrons, z_F = (ε_F - C_G)/S_G = Φ⁻¹(n/N_G),
# ε_B = N_G (C_G Φ(z_F) - S_G φ(z_F)) and D(ε_F) = N_G φ(z_F) / S_G.
E_G = np.linspace(-9.0, 11.0, 10001)  # h = 2 meV < k_B x 300 K; ±10 σ around the centre
N_G, C_G, S_G = 4.0, 1.0, 1.0
D_G = N_G * norm.pdf((E_G - C_G) / S_G) / S_G


def _gaussian_fermi_level(n: float) -> float:
    return C_G + S_G * float(ndtri(n / N_G))


@pytest.mark.parametrize("n", [0.4, 2.0, 3.1])
def test_gaussian_band_zero_temperature_closed_forms(n: float) -> None:
    z = float(ndtri(n / N_G))
    mu = fermi_energy(D_G, E_G, n, 0.0)
    # The piecewise-linear integral of a smooth DOS is off by O(h² D') ~ 1e-6 states: ~1e-6 eV.
    assert mu == pytest.approx(C_G + S_G * z, abs=1e-5)
    assert dos_at_fermi(D_G, E_G, C_G + S_G * z) == pytest.approx(
        N_G * norm.pdf(z) / S_G, rel=1e-6
    )
    expected_eb = N_G * (C_G * norm.cdf(z) - S_G * norm.pdf(z))
    assert band_energy(D_G, E_G, C_G + S_G * z, 0.0) == pytest.approx(expected_eb, abs=1e-5)


@pytest.mark.parametrize("n", [1.2, 2.0, 3.1])
def test_gaussian_band_heat_capacity_is_sommerfeld_gamma_t(n: float) -> None:
    t = 300.0
    d_f = N_G * norm.pdf(float(ndtri(n / N_G))) / S_G
    gamma = PI2 * K_B_EV_PER_K**2 * d_f / 3  # eV/K² per structure
    # heat_capacity returns C/k_B. Corrections are O((k_B T / σ)²) ≈ 7e-4 x (a few): 1 %.
    assert heat_capacity(D_G, E_G, t, n) * K_B_EV_PER_K == pytest.approx(gamma * t, rel=1e-2)


def test_half_filled_gaussian_heat_capacity_to_second_order() -> None:
    # Symmetric DOS at half filling: μ = C_G at every T, and
    # C/k_B = D0 [π² kT/3 - (7π⁴/30) kT³/σ² + O(kT⁵/σ⁴)] (D'' = -D0/σ² in the Sommerfeld series).
    # The kT³ term is 4.6e-3 relative at 300 K, the next one 2e-5: a 1e-4 tolerance tells
    # them apart.
    kt = K_B_EV_PER_K * 300.0
    d0 = N_G * norm.pdf(0.0) / S_G
    assert fermi_energy(D_G, E_G, N_G / 2, kt) == pytest.approx(C_G, abs=1e-9)
    expected = d0 * (PI2 * kt / 3 - 7 * PI2**2 * kt**3 / (30 * S_G**2))
    got = heat_capacity(D_G, E_G, 300.0, N_G / 2)
    assert got == pytest.approx(expected, rel=1e-4)
    assert got != pytest.approx(d0 * PI2 * kt / 3, rel=1e-3)  # the leading term alone is off


# Quadratic DOS D(ε) = A_Q + B_Q (ε - M_Q)² on a grid symmetric about M_Q. With x = ε - M_Q the
# Sommerfeld series of ∫ g(x) (-∂f/∂x) dx terminates for a polynomial g:
#   ∫ x² (-f') = π² kT²/3,   ∫ x⁴ (-f') = 7 π⁴ kT⁴/15,
# so χ = A + B π² kT²/3 and (μ fixed at M_Q by symmetry) C/k_B = A π² kT/3 + 7 B π⁴ kT³/15.
A_Q, B_Q, M_Q, L_Q = 1.0, 0.5, 0.0, 6.0
E_Q = np.linspace(M_Q - L_Q, M_Q + L_Q, 12001)  # h = 1 meV
D_Q = A_Q + B_Q * (E_Q - M_Q) ** 2
# Electrons filling the lower half exactly (x D_Q is odd, so μ = M_Q at every T).
N_Q = float(np.trapezoid(D_Q[E_Q <= M_Q], E_Q[E_Q <= M_Q]))


@pytest.mark.parametrize("kt", [0.0, 0.05, 0.2])
def test_quadratic_dos_fermi_level_stays_at_the_symmetry_point(kt: float) -> None:
    assert fermi_energy(D_Q, E_Q, N_Q, kt) == pytest.approx(M_Q, abs=1e-8)


@pytest.mark.parametrize("kt", [0.05, 0.2])
def test_quadratic_dos_susceptibility_is_exact_sommerfeld(kt: float) -> None:
    expected = A_Q + B_Q * PI2 * kt**2 / 3
    assert susceptibility(D_Q, E_Q, M_Q, kt) == pytest.approx(expected, rel=1e-9)
    # kT -> 0 is D(μ) itself.
    assert susceptibility(D_Q, E_Q, M_Q, 0.0) == pytest.approx(A_Q, rel=1e-12)


@pytest.mark.parametrize("t", [300.0, 2000.0])
def test_quadratic_dos_heat_capacity_is_exact_sommerfeld(t: float) -> None:
    kt = K_B_EV_PER_K * t
    expected = A_Q * PI2 * kt / 3 + 7 * B_Q * PI2**2 * kt**3 / 15
    assert heat_capacity(D_Q, E_Q, t, N_Q) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("kt", [0.05, 0.2])
def test_quadratic_dos_band_energy_is_exact_sommerfeld(kt: float) -> None:
    # g(x) = x D(x) = A x + B x³: g'(0) = A, g'''(0) = 6 B, and
    # ∫ g (f - θ) dx = (π²/6) kT² g'(0) + (7π⁴/360) kT⁴ g'''(0), exactly.
    e0 = band_energy(D_Q, E_Q, M_Q, 0.0)
    expected = PI2 / 6 * kt**2 * A_Q + 7 * PI2**2 / 360 * kt**4 * 6 * B_Q
    # The kT = 0 integral on the piecewise-linear interpolant differs from the exact one by
    # ~h² B L²/12 ≈ 1.5e-6 eV; the thermal integral is spectrally accurate.
    assert band_energy(D_Q, E_Q, M_Q, kt) - e0 == pytest.approx(expected, abs=1e-5)


def test_flat_band_with_edges_inside_the_grid() -> None:
    # D = D0 on [E0, E1], zero elsewhere; n electrons fill it up to ε_F = E0 + n/D0 at T = 0,
    # with band energy D0 (ε_F² - E0²)/2 and D(ε_F) = D0.
    e = np.linspace(-8.0, 8.0, 16001)  # h = 1 meV; the box edges lie on grid points
    d0, e0, e1 = 1.5, -4.0, 2.0
    dos = np.where((e >= e0 - 5e-4) & (e <= e1 + 5e-4), d0, 0.0)
    n = 5.0
    ef = e0 + n / d0
    # The grid's box edge ramps over one cell (h/2 of extra width at the lower edge, half
    # the states of that cell): ε_F moves by ≤ h/2, ε_B by ≤ D0 |E0| h.
    assert fermi_energy(dos, e, n, 0.0) == pytest.approx(ef, abs=1e-3)
    assert dos_at_fermi(dos, e, ef) == pytest.approx(d0, rel=1e-12)
    assert band_energy(dos, e, ef, 0.0) == pytest.approx(d0 * (ef**2 - e0**2) / 2, abs=1e-2)
    # A half-filled flat band far from its edges (>> kT) has C/k_B = (π²/3) kT D0 exactly.
    mid = 0.5 * d0 * (e1 - e0)
    kt = K_B_EV_PER_K * 300.0
    assert heat_capacity(dos, e, 300.0, mid) == pytest.approx(PI2 / 3 * kt * d0, rel=1e-6)


def test_derived_properties_values_on_a_half_filled_gaussian() -> None:
    # Each quantity at (kT, T) = (k_B x 300 K, 300 K) against its Sommerfeld expansion about
    # the centre (μ = C_G by symmetry; D'' = -D0/σ², D'''' = 3 D0/σ⁴); the neglected orders are
    # below 1e-7 relative (band energy: (31π⁶/15120) kT⁶ g⁽⁵⁾ ≈ 1.4e-8 eV). Absorption is
    # tested in tests/test_dos_properties.py.
    kt = K_B_EV_PER_K * 300.0
    d0 = N_G * norm.pdf(0.0) / S_G
    props = derived_properties(D_G, E_G, N_G / 2, kT=kt, T=300.0)
    assert props["fermi_energy"] == pytest.approx(C_G, abs=1e-9)
    assert props["dos_at_fermi"] == pytest.approx(d0, rel=1e-6)
    chi = d0 * (1 - PI2 * kt**2 / (6 * S_G**2) + 7 * PI2**2 * kt**4 / (120 * S_G**4))
    assert props["susceptibility"] == pytest.approx(chi, rel=1e-7)
    # ε_B = N C Φ(0) - N σ φ(0) plus the Sommerfeld terms of g(ε) = ε D(ε) about μ = C:
    # g'(C) = D0 + C D'(C) = D0 and g'''(C) = 3 D''(C) + C D'''(C) = -3 D0/σ².
    eb0 = N_G * (C_G * 0.5 - S_G * norm.pdf(0.0))
    eb = eb0 + PI2 / 6 * kt**2 * d0 - 7 * PI2**2 / 360 * kt**4 * 3 * d0 / S_G**2
    assert props["band_energy"] == pytest.approx(eb, abs=1e-7)
    assert props["band_energy"] != pytest.approx(eb0, abs=1e-5)  # the thermal terms matter
    c = d0 * (PI2 * kt / 3 - 7 * PI2**2 * kt**3 / (30 * S_G**2))
    assert props["heat_capacity"] == pytest.approx(c, rel=1e-4)
