"""Band selection, gap and energy zero of a band product, and its resampled form.

Bandformer's targets (issue 19): N bands around the Fermi level, HOB - n_below ... HOB + n_above
(HOB: the highest band more than half occupied at some SCF k-point). A material is a non-metal
iff min(band HOB+1) - max(band HOB) > 0 on the unsmoothed path, and that difference is its gap;
energies are measured from E_F for metals and from mid-gap for non-metals. The Gaussian
smoothing and resampling the model's targets go through (`esrepro.kpath.smooth_resample`) move
band extrema, so `resampling_gap_error` reports how much they change the gap by themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from esrepro.dft.band_product import BandProduct
from esrepro.kpath import arc_length, smooth_resample


@dataclass(frozen=True)
class SelectedBands:
    """The kept bands along the whole continuous walk, unsmoothed, relative to `zero`."""

    arc: np.ndarray  # (n_k,) Å⁻¹ along the walk
    energies: np.ndarray  # (n_k, n_bands) eV relative to `zero`
    hob_column: int  # column of the HOB in `energies`
    zero: float  # absolute eV: E_F (metal) or mid-gap (non-metal)
    gap: float  # eV, 0 for metals
    is_metal: bool
    labels: tuple[tuple[str, float], ...]  # (high-symmetry label, arc position)
    closed: bool  # the walk returns to its start (an Eulerian circuit)


def gap_difference(energies: np.ndarray, hob_column: int) -> float:
    """min(band HOB+1) - max(band HOB) over the k-points: the gap when positive."""
    return float(energies[:, hob_column + 1].min() - energies[:, hob_column].max())


def select_bands(product: BandProduct, n_below: int = 2, n_above: int = 3) -> SelectedBands:
    """Bands HOB-n_below ... HOB+n_above of `product` along its walk, with gap and zero.

    A product that does not hold those bands (a HOB below n_below, or fewer bands computed)
    is a ValueError saying which.
    """
    first = product.hob - n_below
    stop = product.hob + n_above + 1
    if first < product.band_start or stop > product.band_stop:
        raise ValueError(
            f"band product holds bands {product.band_start}..{product.band_stop - 1}, "
            f"{first}..{stop - 1} are needed (HOB {product.hob})"
        )
    columns = slice(first - product.band_start, stop - product.band_start)
    kpath = product.kpath
    walk = kpath.assemble([e[:, columns] for e in product.segment_eigenvalues()])
    arc = arc_length(kpath.assemble(product.segment_kpoints()), kpath.rec_lattice)
    difference = gap_difference(walk, n_below)
    is_metal = not difference > 0
    if is_metal:
        zero = product.fermi_level
    else:
        zero = 0.5 * (walk[:, n_below].max() + walk[:, n_below + 1].min())
    return SelectedBands(
        arc=arc,
        energies=walk - zero,
        hob_column=n_below,
        zero=float(zero),
        gap=0.0 if is_metal else difference,
        is_metal=is_metal,
        labels=tuple(kpath.label_positions()),
        closed=kpath.is_closed(),
    )


def resample_bands(
    selected: SelectedBands, n_points: int, width: float
) -> tuple[np.ndarray, np.ndarray]:
    """(arc, energies (n_points, n_bands)): Gaussian-smoothed (`width` Å⁻¹) and resampled."""
    return smooth_resample(
        selected.arc, selected.energies, n_points, width, periodic=selected.closed
    )


def resampling_gap_error(selected: SelectedBands, n_points: int, width: float) -> float:
    """Gap of the resampled bands minus the gap of the DFT path, in eV (0 gap for metals).

    The resampled gap is read as the DFT one is (min band HOB+1 - max band HOB, when
    positive), so a metal the smoothing opens a gap in shows a positive error too.
    """
    _, resampled = resample_bands(selected, n_points, width)
    return max(gap_difference(resampled, selected.hob_column), 0.0) - selected.gap
