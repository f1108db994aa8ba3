"""|ψ_nk(r)|² of pseudo wavefunctions on VAE-GW's fixed grid: 40 z-slices × 28 × 28 in-plane.

The paper's input is the modulus squared of a Kohn–Sham state on 40 × 28 × 28 points of the
unit cell; the released code divides each state by its maximum (`data / max(data)` in
`NN_multiple_GW.py`), and so does `scaled`. The grid here:

- in-plane: the 28 × 28 fractional points (i/28, j/28) of the cell's first two vectors, so
  every material has the same image size whatever its lattice constant;
- along z: 40 slices spanning a fixed window of `z_window` Å centred on the layer (midway
  between its lowest and highest atom), at the slice centres z0 - W/2 + (k + 1/2) W/40 (no
  slice on the mid-plane). The window, not the cell, sets the slices, so the vacuum of the
  calculation does not change the input (docs/notes/vae-gw-dft.md measures how little).

Values are exact point values of the plane-wave expansion: the periodic part u_nk on GPAW's
grid is Fourier transformed and the sum over its plane waves is evaluated at the sample points
(separable in the three fractional directions), so no interpolation error enters a state.
Densities (the charge density and the "super states") are sums of |u|² on GPAW's grid,
symmetrised over the point group as GPAW symmetrises its density, and evaluated the same way;
like GPAW's own density, |u|² on that grid is slightly aliased.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GridSpec:
    """The sample grid: `n_z` slices over `z_window` Å around the layer, `n_xy` × `n_xy`
    in-plane."""

    n_z: int = 40
    n_xy: int = 28
    z_window: float = 12.0

    def z_offsets(self) -> np.ndarray:
        """Slice positions (Å) relative to the layer's centre, (n_z,)."""
        step = self.z_window / self.n_z
        return -self.z_window / 2 + (np.arange(self.n_z) + 0.5) * step

    def in_plane(self) -> np.ndarray:
        """Fractional in-plane coordinates of the points along each cell vector, (n_xy,)."""
        return np.arange(self.n_xy) / self.n_xy


def layer_centre(positions: np.ndarray) -> float:
    """z (Å) midway between the lowest and highest atom."""
    z = np.asarray(positions)[:, 2]
    return float((z.min() + z.max()) / 2)


def sample_z(cell: np.ndarray, positions: np.ndarray, spec: GridSpec) -> np.ndarray:
    """Absolute z (Å) of the slices; the window must lie inside the cell (error otherwise)."""
    height = float(np.asarray(cell)[2, 2])
    z = layer_centre(positions) + spec.z_offsets()
    if z.min() < 0 or z.max() > height:
        raise ValueError(
            f"the {spec.z_window:g} Å window of the wavefunction grid does not fit in the cell "
            f"(height {height:.2f} Å around a layer at z = {layer_centre(positions):.2f} Å); "
            "use more vacuum or a smaller z_window"
        )
    return z


def _phases(frequencies: np.ndarray, points: np.ndarray) -> np.ndarray:
    """exp(2πi m x) for integer frequencies m and fractional points x: (n_points, n_freq)."""
    return np.exp(2j * np.pi * np.outer(points, frequencies))


class GridSampler:
    """Evaluates band-limited periodic functions given on GPAW's grid at the sample points."""

    def __init__(self, grid_shape: Sequence[int], cell: np.ndarray, positions: np.ndarray,
                 spec: GridSpec) -> None:
        self.shape = tuple(int(n) for n in grid_shape)
        self.spec = spec
        self.z = sample_z(cell, positions, spec)
        frac_z = self.z / float(np.asarray(cell)[2, 2])
        uv = spec.in_plane()
        freqs = [np.fft.fftfreq(n, 1.0 / n) for n in self.shape]
        self._e1 = _phases(freqs[0], uv)  # (n_xy, N1)
        self._e2 = _phases(freqs[1], uv)  # (n_xy, N2)
        self._ez = _phases(freqs[2], frac_z)  # (n_z, N3)

    def evaluate(self, values: np.ndarray) -> np.ndarray:
        """f at the sample points, (n_z, n_xy, n_xy), for f given on the grid (N1, N2, N3)."""
        values = np.asarray(values)
        if values.shape != self.shape:
            raise ValueError(f"grid values of shape {values.shape}, expected {self.shape}")
        coefficients = np.fft.fftn(values) / values.size
        # Σ_abc Ez[k,c] E1[i,a] E2[j,b] C[a,b,c], one fractional direction at a time.
        out = np.einsum("abc,kc->kab", coefficients, self._ez, optimize=True)
        out = np.einsum("kab,ia->kib", out, self._e1, optimize=True)
        return np.einsum("kib,jb->kij", out, self._e2, optimize=True)

    def modulus_squared(self, periodic_part: np.ndarray) -> np.ndarray:
        """|ψ|² at the sample points from the periodic part u_nk on the grid (|ψ| = |u|)."""
        return np.abs(self.evaluate(periodic_part)) ** 2

    def density(self, grid_density: np.ndarray) -> np.ndarray:
        """A real density given on the grid, at the sample points."""
        return self.evaluate(grid_density).real


def scaled(values: np.ndarray) -> tuple[np.ndarray, float]:
    """(values / max, max): each state divided by its maximum, as the paper's code does."""
    peak = float(np.max(values))
    if not peak > 0:
        raise ValueError("cannot scale a state whose maximum is not positive")
    return values / peak, peak


def degenerate_groups(energies: np.ndarray, tolerance: float) -> list[np.ndarray]:
    """Indices of runs of sorted `energies` whose neighbours lie within `tolerance` (eV)."""
    energies = np.asarray(energies)
    order = np.argsort(energies, kind="stable")
    groups: list[list[int]] = [[int(order[0])]] if len(order) else []
    for previous, current in zip(order[:-1], order[1:], strict=True):
        if energies[current] - energies[previous] <= tolerance:
            groups[-1].append(int(current))
        else:
            groups.append([int(current)])
    return [np.array(g) for g in groups]
