"""Physical quantities derived from a density of states (DFT or predicted), with units stated.

Implements Appendix A of Aryanpour & Sadeghi (LDOS paper, eqs. 16-25) and the normalised
error of its eq. 15, for any structural DOS ``D(ε)``:

* ``energies``: a uniform, strictly increasing 1-D grid in **eV** (any reference: Fermi level,
  vacuum, VBM, ...; every absolute energy returned, μ and the band energy, is on that same
  reference, so a DFT and a predicted DOS must share the grid's zero to be compared).
* ``dos``: **states/eV per structure, spin-summed** (both spin channels included, so a filled
  non-degenerate band holds 2 electrons), either one spectrum of shape ``(n_grid,)`` or a batch
  of shape ``(n_structures, n_grid)``. Every function accepts both; batch inputs give one value
  (or one row) per structure. Negative values (which an ML prediction may contain) are
  accepted but then the electron count need not be monotonic in μ (see :func:`fermi_energy`).
* temperatures enter as ``kT`` in **eV** (k_B T), except :func:`heat_capacity` which takes ``T``
  in **kelvin** because it differentiates with respect to it.

Integrals over energy use the trapezoidal rule on the grid, i.e. the exact integral of the
piecewise-linear interpolant for integrands known at grid points. For the smooth Fermi-Dirac
factors this rule is spectrally accurate (error ~ exp(-2π² kT / Δε)), so a grid spacing Δε up
to about kT is enough; a finer grid is only needed to resolve structure in D itself. For
Δε > kT the thermal window is under-resolved: :func:`heat_capacity` and
:func:`susceptibility` then emit a ``RuntimeWarning`` (μ and ε_B degrade more gently). At
``kT == 0`` the integrals up to μ are done exactly on the piecewise-linear interpolant of the
integrand (a partial last cell), so μ and the band energy vary continuously with the input.
Energies outside the grid carry no states.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

__all__ = [
    "K_B_EV_PER_K",
    "DEFAULT_KT_EV",
    "DEFAULT_T_K",
    "DEFAULT_HBAR_OMEGA_EV",
    "fermi_dirac",
    "fermi_energy",
    "band_energy",
    "dos_at_fermi",
    "heat_capacity",
    "susceptibility",
    "absorption",
    "derived_properties",
    "normalized_loss",
    "normalized_scalar_loss",
]

#: Boltzmann constant in eV/K (CODATA 2018, exact in the SI).
K_B_EV_PER_K = 8.617333262e-5
#: Default temperature (K) and smearing kT = k_B x 300 K (eV) of :func:`derived_properties`.
DEFAULT_T_K = 300.0
DEFAULT_KT_EV = K_B_EV_PER_K * DEFAULT_T_K
#: Default photon-energy grid (eV) of :func:`derived_properties`: 0 to 10 eV in 0.05 eV steps.
DEFAULT_HBAR_OMEGA_EV = np.linspace(0.0, 10.0, 201)

#: Electron-count tolerance (states) defining the flat region of N(μ) in a gap.
DEFAULT_COUNT_TOL = 1e-9
# brentq absolute tolerance on μ (eV): far below any physical scale, well above round-off.
_MU_XTOL = 1e-12
# Relative tolerance on the grid spacing when checking that the grid is uniform; linspace and
# arange grids deviate by ~1e-12 relative, a genuinely non-uniform grid by far more.
_UNIFORM_RTOL = 1e-6


# --------------------------------------------------------------------------- input checks


def _check_energies(energies: np.ndarray) -> tuple[np.ndarray, float]:
    e = np.asarray(energies, dtype=np.float64)
    if e.ndim != 1:
        raise ValueError(f"energies must be a 1-D grid, got shape {e.shape}")
    if e.shape[0] < 3:
        raise ValueError(f"energies needs at least 3 grid points, got {e.shape[0]}")
    if not np.all(np.isfinite(e)):
        raise ValueError("energies contains non-finite values (nan or inf)")
    steps = np.diff(e)
    h = float((e[-1] - e[0]) / (e.shape[0] - 1))
    if h <= 0 or np.any(steps <= 0):
        raise ValueError("energies must be strictly increasing")
    dev = float(np.max(np.abs(steps - h)))
    if dev > _UNIFORM_RTOL * h:
        raise ValueError(
            f"energies must be a uniform grid: steps range from {steps.min():.6g} to "
            f"{steps.max():.6g} eV (mean {h:.6g} eV)"
        )
    return e, h


def _check_inputs(
    dos: np.ndarray, energies: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Validate ``(dos, energies)``; return ``(dos_2d, energies, spacing, was_1d)``."""
    e, h = _check_energies(energies)
    d = np.asarray(dos, dtype=np.float64)
    if d.ndim not in (1, 2):
        raise ValueError(
            f"dos must have shape (n_grid,) or (n_structures, n_grid), got shape {d.shape}"
        )
    if d.shape[-1] != e.shape[0]:
        raise ValueError(
            f"dos has {d.shape[-1]} energy points along its last axis but energies has "
            f"{e.shape[0]} (dos shape {d.shape})"
        )
    if d.ndim == 2 and d.shape[0] == 0:
        raise ValueError("dos batch is empty (shape (0, n_grid))")
    if not np.all(np.isfinite(d)):
        raise ValueError("dos contains non-finite values (nan or inf)")
    return np.atleast_2d(d), e, h, d.ndim == 1


def _check_kt(kT: float, name: str = "kT") -> float:
    k = float(kT)
    if not math.isfinite(k) or k < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {kT!r}")
    return k


def _per_structure(value: float | np.ndarray, n: int, name: str) -> np.ndarray:
    """Broadcast a scalar or length-``n`` array to shape ``(n,)``."""
    v = np.asarray(value, dtype=np.float64)
    if v.ndim == 0:
        v = np.full(n, float(v))
    elif v.shape != (n,):
        raise ValueError(
            f"{name} must be a scalar or have one value per structure (shape ({n},)), "
            f"got shape {v.shape}"
        )
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return v


def _out(values: np.ndarray, was_1d: bool) -> float | np.ndarray:
    return float(values[0]) if was_1d else values


def _trapz(y: np.ndarray, h: float) -> np.ndarray:
    return np.trapezoid(y, dx=h, axis=-1)


def _integral_below(g: np.ndarray, energies: np.ndarray, h: float, upper: np.ndarray) -> np.ndarray:
    """Exact ``∫_{e_0}^{upper} g_lin(ε) dε`` per row, ``g_lin`` the piecewise-linear interpolant.

    ``g`` has shape ``(n, n_grid)`` and ``upper`` shape ``(n,)``; 0 below the grid, the full
    trapezoidal integral above it.
    """
    cum = np.concatenate(
        [np.zeros((g.shape[0], 1)), np.cumsum(0.5 * h * (g[:, 1:] + g[:, :-1]), axis=1)], axis=1
    )
    j = np.clip(np.floor((upper - energies[0]) / h).astype(np.int64), 0, energies.shape[0] - 2)
    t = np.clip(upper - energies[j], 0.0, h)
    rows = np.arange(g.shape[0])
    g0, g1 = g[rows, j], g[rows, j + 1]
    return cum[rows, j] + g0 * t + (g1 - g0) * t * t / (2.0 * h)


def _interp_rows(d: np.ndarray, energies: np.ndarray, h: float, x: np.ndarray) -> np.ndarray:
    """Linear interpolation of each row of ``d`` at points ``x`` (same for all rows); 0 outside."""
    pos = (x - energies[0]) / h
    j = np.clip(np.floor(pos).astype(np.int64), 0, energies.shape[0] - 2)
    t = np.clip(pos - j, 0.0, 1.0)
    inside = (x >= energies[0] - 1e-9 * h) & (x <= energies[-1] + 1e-9 * h)
    vals = d[..., j] * (1.0 - t) + d[..., j + 1] * t
    return np.where(inside, vals, 0.0)


# --------------------------------------------------------------------------- occupations


def fermi_dirac(
    energies: float | np.ndarray, mu: float | np.ndarray, kT: float
) -> float | np.ndarray:
    """Fermi-Dirac occupation ``f(ε) = 1 / (1 + exp((ε - μ) / kT))`` (paper eq. 17).

    ``energies`` and ``mu`` in eV (broadcast against each other), ``kT`` = k_B T in eV.
    ``kT == 0`` gives the step function: 1 below μ, 0 above, and 0.5 at ε == μ exactly.
    Evaluated with the logistic function, so large |ε - μ| / kT neither overflows nor warns.
    Returns a dimensionless occupation in [0, 1] (a float for scalar inputs).
    """
    k = _check_kt(kT)
    e = np.asarray(energies, dtype=np.float64)
    m = np.asarray(mu, dtype=np.float64)
    if k == 0.0:
        f = np.where(e < m, 1.0, np.where(e > m, 0.0, 0.5))
    else:
        f = expit((m - e) / k)
    return float(f) if np.ndim(f) == 0 else f


def _warn_if_underresolved(h: float, kT: float, what: str) -> None:
    if h > kT:
        warnings.warn(
            f"{what}: grid spacing {h:.3g} eV exceeds kT = {kT:.3g} eV, so the thermal window "
            "-df/de is under-resolved and the trapezoid integral is unreliable; use a finer "
            "grid or a higher temperature",
            RuntimeWarning,
            stacklevel=3,
        )


def _minus_dfde(energies: np.ndarray, mu: np.ndarray, kT: float) -> np.ndarray:
    """``-∂f/∂ε = f (1 - f) / kT`` in 1/eV, for ``kT > 0``; ``mu`` broadcast against energies."""
    x = (energies - mu) / kT
    return expit(x) * expit(-x) / kT


# --------------------------------------------------------------------------- Fermi level


def _electron_count_fn(
    d: np.ndarray, energies: np.ndarray, h: float, kT: float
) -> Callable[[float], float]:
    """N(μ) = ∫ D f dε (eq. 16) for one spectrum ``d``, in states (electrons)."""
    if kT == 0.0:
        g = d[np.newaxis, :]

        def count0(mu: float) -> float:
            return float(_integral_below(g, energies, h, np.array([mu]))[0])

        return count0

    def count(mu: float) -> float:
        return float(_trapz(d * expit((mu - energies) / kT), h))

    return count


def _solve_mu(
    d: np.ndarray, energies: np.ndarray, h: float, n: float, kT: float, count_tol: float
) -> float:
    total = float(_trapz(d, h))
    if not (0.0 < n < total):
        raise ValueError(
            f"n_electrons={n:g} cannot be reached on the grid: the DOS integrates to "
            f"{total:.6g} states over [{energies[0]:g}, {energies[-1]:g}] eV, and μ needs "
            f"0 < n_electrons < {total:.6g}"
        )
    count = _electron_count_fn(d, energies, h, kT)
    tol = min(count_tol, 0.5 * n, 0.5 * (total - n))
    lo_target, hi_target = n - tol, n + tol
    lo, hi = float(energies[0]), float(energies[-1])
    if kT > 0.0:
        # Fermi tails reach beyond the grid: widen until N(lo) < n - tol and N(hi) > n + tol.
        step = (hi - lo) + 50.0 * kT
        lo, hi = lo - 50.0 * kT, hi + 50.0 * kT
        for _ in range(100):
            if count(lo) < lo_target:
                break
            lo -= step
        else:
            raise ValueError(f"could not bracket μ below for n_electrons={n:g}, kT={kT:g} eV")
        for _ in range(100):
            if count(hi) > hi_target:
                break
            hi += step
        else:
            raise ValueError(f"could not bracket μ above for n_electrons={n:g}, kT={kT:g} eV")
    mu_minus = brentq(lambda m: count(m) - lo_target, lo, hi, xtol=_MU_XTOL, maxiter=500)
    mu_plus = brentq(lambda m: count(m) - hi_target, lo, hi, xtol=_MU_XTOL, maxiter=500)
    return 0.5 * (float(mu_minus) + float(mu_plus))


def fermi_energy(
    dos: np.ndarray,
    energies: np.ndarray,
    n_electrons: float | np.ndarray,
    kT: float,
    *,
    count_tol: float = DEFAULT_COUNT_TOL,
) -> float | np.ndarray:
    """Chemical potential μ (eV) with ``∫ D(ε) f(ε; μ, kT) dε = n_electrons`` (paper eq. 16).

    ``dos`` in states/eV (spin-summed), ``energies`` in eV, ``kT`` in eV, ``n_electrons`` the
    number of electrons the DOS must hold (a scalar, or one value per structure for a batch).
    At ``kT == 0`` this is the Fermi energy ε_F, the upper limit of the occupied integral.

    The count N(μ) is solved with ``scipy.optimize.brentq`` on a bracket that is widened until
    it encloses the root, so no initial guess is needed. Which μ is returned when N(μ) is flat
    (an insulator, or any zero-DOS window at the Fermi level): μ is the midpoint of the interval
    ``[μ₋, μ₊]`` where ``N(μ₋) = n - count_tol`` and ``N(μ₊) = n + count_tol``.

    * For a metal the interval has width ~2·count_tol/D(ε_F), so this is the root itself.
    * At ``kT == 0`` in a gap it is the middle of the flat region (mid-gap).
    * At ``kT > 0`` in a gap the root is unique in exact arithmetic but the thermal carrier
      densities (~exp(-E_gap / 2kT)) may be far below floating-point resolution of the count.
      The midpoint rule still gives the intrinsic level: with band-edge densities D_v, D_c and
      Boltzmann tails, N(μ₋) = n - tol and N(μ₊) = n + tol give
      ``(μ₋ + μ₊)/2 = (E_v + E_c)/2 + (kT/2) ln(D_v/D_c)``, the exact root, whether or not the
      carrier densities are resolvable.

    Raises ``ValueError`` naming the values when ``n_electrons`` is not strictly between 0 and
    the integral of the DOS over the grid (then no μ can hold that many electrons). A DOS with
    negative values (a prediction) makes N(μ) non-monotonic; a root is still returned but it
    need not be unique. Returns a float for a 1-D ``dos``, an array ``(n_structures,)`` for a
    batch.
    """
    d2, e, h, was_1d = _check_inputs(dos, energies)
    k = _check_kt(kT)
    n = _per_structure(n_electrons, d2.shape[0], "n_electrons")
    if not (math.isfinite(count_tol) and count_tol > 0):
        raise ValueError(f"count_tol must be a finite number > 0, got {count_tol!r}")
    mu = np.array([_solve_mu(d2[i], e, h, float(n[i]), k, count_tol) for i in range(d2.shape[0])])
    return _out(mu, was_1d)


# --------------------------------------------------------------------------- energies, D(ε_F)


def band_energy(
    dos: np.ndarray, energies: np.ndarray, mu: float | np.ndarray, kT: float
) -> float | np.ndarray:
    """Band energy ``ε_B = ∫ ε D(ε) f(ε; μ, kT) dε`` in eV per structure (paper eq. 18).

    ``μ`` in eV (scalar, or one per structure for a batch), ``kT`` in eV. The result is on the
    energy reference of ``energies`` (shifting the grid by δ shifts ε_B by N·δ), so compare a
    DFT and a predicted DOS only on a common reference. ``kT == 0`` integrates ε·D exactly up to
    μ on its piecewise-linear interpolant.
    """
    d2, e, h, was_1d = _check_inputs(dos, energies)
    k = _check_kt(kT)
    m = _per_structure(mu, d2.shape[0], "mu")
    if k == 0.0:
        out = _integral_below(e * d2, e, h, m)
    else:
        out = _trapz(e * d2 * expit((m[:, None] - e) / k), h)
    return _out(out, was_1d)


def dos_at_fermi(
    dos: np.ndarray, energies: np.ndarray, mu: float | np.ndarray
) -> float | np.ndarray:
    """DOS at the Fermi level ``D(μ)`` in states/eV, linearly interpolated on the grid.

    ``μ`` in eV (scalar or one per structure); it must lie inside the grid (ValueError if not).
    """
    d2, e, h, was_1d = _check_inputs(dos, energies)
    m = _per_structure(mu, d2.shape[0], "mu")
    outside = (m < e[0]) | (m > e[-1])
    if np.any(outside):
        raise ValueError(
            f"mu={m[outside][0]:g} eV lies outside the energy grid [{e[0]:g}, {e[-1]:g}] eV"
        )
    rows = np.arange(d2.shape[0])
    pos = (m - e[0]) / h
    j = np.clip(np.floor(pos).astype(np.int64), 0, e.shape[0] - 2)
    t = np.clip(pos - j, 0.0, 1.0)
    out = d2[rows, j] * (1.0 - t) + d2[rows, j + 1] * t
    return _out(out, was_1d)


# --------------------------------------------------------------------------- response functions


def heat_capacity(
    dos: np.ndarray,
    energies: np.ndarray,
    T: float,
    n_electrons: float | np.ndarray,
    *,
    count_tol: float = DEFAULT_COUNT_TOL,
) -> float | np.ndarray:
    """Electronic heat capacity ``C(T) = dε_B/dT`` at fixed electron number (paper eq. 19).

    ``T`` in kelvin, ``dos`` in states/eV, ``energies`` in eV. Returned in units of k_B per
    structure, i.e. ``C / k_B`` (dimensionless; multiply by ``K_B_EV_PER_K`` for eV/K).

    Eq. 19 writes ``∫ ε D ∂f/∂T dε``; at fixed N the chemical potential also moves with T, so
    we differentiate analytically including that correction. With ``w = -∂f/∂ε = f(1-f)/kT``
    and ``x = ε - μ(T)`` (μ re-solved by :func:`fermi_energy` at kT = k_B T):
    ``∂f/∂T = (x/T) w``, ``∂f/∂μ = w``, and dN/dT = 0 fixes
    ``dμ/dT = -∫ D x w / (T ∫ D w)``, which gives

        C / k_B = (1/kT) [ ∫ D x² w dε - (∫ D x w dε)² / ∫ D w dε ]  >= 0.

    This is the exact T-derivative of the (trapezoidal) band energy at fixed (trapezoidal)
    electron count, so it agrees with a centred finite difference of :func:`band_energy` with μ
    re-solved at T ± δT. For a smooth metallic DOS at low T it reduces to Sommerfeld's
    ``C = (π²/3) k_B² T D(ε_F)``, i.e. ``C/k_B = (π²/3) k_B T D(ε_F)``. ``T == 0`` returns 0.
    """
    d2, e, h, was_1d = _check_inputs(dos, energies)
    t = float(T)
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"T must be a finite temperature >= 0 K, got {T!r}")
    n = _per_structure(n_electrons, d2.shape[0], "n_electrons")
    if t == 0.0:
        # Validate n_electrons all the same, so a bad count fails at every temperature.
        fermi_energy(d2, e, n, 0.0, count_tol=count_tol)
        return _out(np.zeros(d2.shape[0]), was_1d)
    kt = K_B_EV_PER_K * t
    mu = np.asarray(fermi_energy(d2, e, n, kt, count_tol=count_tol))
    _warn_if_underresolved(h, kt, "heat_capacity")
    x = e - mu[:, None]
    dw = d2 * _minus_dfde(e, mu[:, None], kt)
    m0 = _trapz(dw, h)
    m1 = _trapz(dw * x, h)
    m2 = _trapz(dw * x * x, h)
    # m0 == 0 only if no state lies within ~700 kT of μ: then m1 == m2 == 0 and C = 0.
    corr = np.divide(m1 * m1, m0, out=np.zeros_like(m0), where=m0 != 0)
    return _out((m2 - corr) / kt, was_1d)


def susceptibility(
    dos: np.ndarray, energies: np.ndarray, mu: float | np.ndarray, kT: float
) -> float | np.ndarray:
    """Pauli susceptibility integral ``∫ D(ε) (-∂f/∂ε) dε`` in states/eV (paper eq. 24).

    The susceptibility is ``χ = μ_B² x`` this value, i.e. the return value is χ in units of
    μ_B² per eV per structure. ``μ`` and ``kT`` in eV. It is D(ε) averaged with the thermal
    window ``-∂f/∂ε`` (unit weight, width ~kT), so it tends to D(μ) as kT -> 0; ``kT == 0``
    returns :func:`dos_at_fermi` exactly.
    """
    k = _check_kt(kT)
    if k == 0.0:
        return dos_at_fermi(dos, energies, mu)
    d2, e, h, was_1d = _check_inputs(dos, energies)
    m = _per_structure(mu, d2.shape[0], "mu")
    _warn_if_underresolved(h, k, "susceptibility")
    out = _trapz(d2 * _minus_dfde(e, m[:, None], k), h)
    return _out(out, was_1d)


def absorption(
    dos: np.ndarray,
    energies: np.ndarray,
    mu: float | np.ndarray,
    kT: float,
    hbar_omega: float | np.ndarray,
) -> float | np.ndarray:
    """Absorption joint DOS ``A(ω)`` in states²/eV per structure (our reading of paper eq. 25).

    ``A(ω) = ∫ D(ε) f(ε) D(ε + ħω) (1 - f(ε + ħω)) dε``

    for photon energies ``ħω >= 0`` in eV (scalar or 1-D array), ``μ`` and ``kT`` in eV: the
    number of (occupied ε, empty ε + ħω) pairs a photon of energy ħω can connect. The paper
    prints ``δ(ε - ε' - ħω)`` with ``f(ε)(1 - f(ε'))``, i.e. the occupied state ħω *above* the
    empty one; at T -> 0 that product vanishes for every ħω > 0 (no occupied state lies above an
    empty one), so it cannot be the absorption spectrum the paper (and Ben Mahmoud et al. 2020)
    describe as "initially filled and initially empty states that have an energy difference
    ħω". We therefore take the occupied state as the lower one, ε' = ε + ħω, which is the
    standard joint density of states for absorption (it is the printed formula with the sign
    of ħω flipped, i.e. the emission/absorption labels swapped).

    ``D(ε + ħω)`` is interpolated linearly on the grid and is zero beyond it. Returns an array
    ``(n_omega,)`` for a 1-D ``dos`` (a float for scalar ``hbar_omega``), ``(n_structures,
    n_omega)`` for a batch.
    """
    d2, e, h, was_1d = _check_inputs(dos, energies)
    k = _check_kt(kT)
    m = _per_structure(mu, d2.shape[0], "mu")
    w = np.asarray(hbar_omega, dtype=np.float64)
    scalar_w = w.ndim == 0
    w = np.atleast_1d(w)
    if w.ndim != 1:
        raise ValueError(f"hbar_omega must be a scalar or 1-D array of eV, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("hbar_omega must hold finite photon energies >= 0 eV")
    occ = d2 * np.asarray(fermi_dirac(e[None, :], m[:, None], k))
    out = np.empty((d2.shape[0], w.shape[0]))
    for i, omega in enumerate(w):
        shifted = e + omega
        empty = _interp_rows(d2, e, h, shifted) * (
            1.0 - np.asarray(fermi_dirac(shifted[None, :], m[:, None], k))
        )
        out[:, i] = _trapz(occ * empty, h)
    if scalar_w:
        return _out(out[:, 0], was_1d)
    return out[0] if was_1d else out


# --------------------------------------------------------------------------- summary


def derived_properties(
    dos: np.ndarray,
    energies: np.ndarray,
    n_electrons: float | np.ndarray,
    *,
    kT: float = DEFAULT_KT_EV,
    T: float = DEFAULT_T_K,
    hbar_omega: np.ndarray | None = None,
) -> dict[str, float | np.ndarray]:
    """All DOS-derived quantities of paper Appendix A, for comparing DFT and predicted DOS.

    Keys and units (floats for a 1-D ``dos``, arrays ``(n_structures,)`` for a batch):

    * ``fermi_energy``: μ (eV) from eq. 16 at smearing ``kT`` (eV), :func:`fermi_energy`;
    * ``band_energy``: eq. 18 at (μ, kT), eV per structure;
    * ``dos_at_fermi``: D(μ), states/eV;
    * ``heat_capacity``: C(T)/k_B at temperature ``T`` (K) and fixed ``n_electrons``
      (μ re-solved at k_B T), k_B per structure;
    * ``susceptibility``: eq. 24 at (μ, kT), μ_B²/eV per structure;
    * ``absorption``: scalar summary ``∫ A(ω) dω`` (trapezoid over the given ``hbar_omega``
      grid, eV; default ``DEFAULT_HBAR_OMEGA_EV`` = 0-10 eV) of :func:`absorption`, states².
      Over a grid covering every transition at kT = 0 it equals N_occupied x N_empty.
    """
    w = DEFAULT_HBAR_OMEGA_EV if hbar_omega is None else np.asarray(hbar_omega, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] < 2 or np.any(np.diff(w) <= 0):
        raise ValueError("hbar_omega must be a strictly increasing 1-D grid of at least 2 points")
    mu = fermi_energy(dos, energies, n_electrons, kT)
    a = np.asarray(absorption(dos, energies, mu, kT, w))
    return {
        "band_energy": band_energy(dos, energies, mu, kT),
        "fermi_energy": mu,
        "dos_at_fermi": dos_at_fermi(dos, energies, mu),
        "heat_capacity": heat_capacity(dos, energies, T, n_electrons),
        "susceptibility": susceptibility(dos, energies, mu, kT),
        "absorption": float(np.trapezoid(a, w)) if a.ndim == 1 else np.trapezoid(a, w, axis=-1),
    }


# --------------------------------------------------------------------------- normalised errors


def normalized_loss(
    pred: np.ndarray,
    ref: np.ndarray,
    energies: np.ndarray,
    *,
    reference_mean: str = "global",
) -> float:
    """Normalised error ``L/σ`` of spectra g(ε) (paper eq. 15), dimensionless.

    ``pred`` and ``ref`` have the same shape, ``(n_grid,)`` or ``(n_samples, n_grid)``, on the
    uniform grid ``energies`` (eV). With the paper's average over energy and samples
    ``<g> = (N ∫dε)^-1 Σ_k ∫ g_k(ε) dε`` (trapezoid over the grid, divided by its width):

        L² = <(g - g_ref)²>,   σ² = <(g_ref - <g_ref>)²>,

    so L is the RMS error integrated over energy and σ the standard deviation of the reference
    about its mean. As printed, ``<g_ref>`` is that same energy-and-sample average, a single
    number (``reference_mean="global"``, the default). ``reference_mean="per_energy"`` instead
    subtracts the sample mean at each energy, ``N^-1 Σ_k g_ref,k(ε)``, the other common reading
    (σ then measures only structure-to-structure spread; it needs n_samples >= 2).
    ``L/σ = 0`` is perfect, ``1`` is as bad as predicting the reference mean.
    """
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref differ in shape: {p.shape} vs {r.shape}")
    r2, e, h, _ = _check_inputs(r, energies)
    p2, _, _, _ = _check_inputs(p, energies)
    width = float(e[-1] - e[0])

    def avg(g: np.ndarray) -> float:
        return float(np.mean(_trapz(g, h)) / width)

    if reference_mean == "global":
        centre: float | np.ndarray = avg(r2)
    elif reference_mean == "per_energy":
        if r2.shape[0] < 2:
            raise ValueError("reference_mean='per_energy' needs at least 2 reference samples")
        centre = r2.mean(axis=0, keepdims=True)
    else:
        raise ValueError(f"reference_mean must be 'global' or 'per_energy', got {reference_mean!r}")
    sigma2 = avg((r2 - centre) ** 2)
    if sigma2 <= 0:
        raise ValueError("the reference has zero standard deviation, so L/σ is undefined")
    return math.sqrt(avg((p2 - r2) ** 2) / sigma2)


def normalized_scalar_loss(pred: np.ndarray, ref: np.ndarray) -> float:
    """Normalised error of a scalar property over structures: ``RMSE / std(ref)`` (eq. 15).

    ``pred`` and ``ref`` are 1-D arrays of per-structure values in the same units; here
    ``<.>`` is the ensemble average, so ``σ`` is the population standard deviation (ddof=0).
    Dimensionless.
    """
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if p.ndim != 1 or r.ndim != 1:
        raise ValueError(f"pred and ref must be 1-D, got shapes {p.shape} and {r.shape}")
    if p.shape != r.shape:
        raise ValueError(f"pred and ref differ in length: {p.shape[0]} vs {r.shape[0]}")
    if p.shape[0] < 2:
        raise ValueError("need at least 2 structures for a standard deviation")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(r))):
        raise ValueError("pred or ref contains non-finite values (nan or inf)")
    sigma = float(np.std(r))
    if sigma == 0:
        raise ValueError("ref has zero standard deviation, so RMSE/std(ref) is undefined")
    return math.sqrt(float(np.mean((p - r) ** 2))) / sigma
