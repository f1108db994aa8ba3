"""Bandformer's targets: a band product -> the resampled bands, k-points and gap of one material.

The bands are HOB-n_below ... HOB+n_above along the continuous Latimer–Munro walk
(:func:`esrepro.bands.select_bands`: zero at E_F for metals, mid-gap for non-metals), Gaussian
smoothed and resampled to ``n_kpoints`` even arc positions. The k-points the decoder encodes are
the walk's Cartesian coordinates (Å⁻¹, 2π convention) at those positions: the walk is piecewise
straight, so linear interpolation along the arc places them exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from esrepro.bands import gap_difference, resample_bands, select_bands
from esrepro.dft.band_product import BandProduct
from esrepro.kpath import smooth_resample


@dataclass(frozen=True)
class BandTargets:
    """One material's training targets and what the report shows beside them."""

    kpoints: np.ndarray  # (n_k, 3) Cartesian Å⁻¹ of the resampled points
    arc: np.ndarray  # (n_k,) Å⁻¹ along the walk
    bands: np.ndarray  # (n_k, N) eV, smoothed and resampled
    is_metal: bool
    gap: float  # eV on the unsmoothed DFT walk (0 for metals)
    gap_resampled_error: float  # gap of `bands` minus `gap` (what resampling alone does)
    labels: str  # JSON [[label, arc position], ...]


def band_targets(
    product: BandProduct, n_below: int, n_above: int, n_kpoints: int, smoothing_width: float
) -> BandTargets:
    """The targets of `product` (ValueError when it does not hold the bands asked for)."""
    selected = select_bands(product, n_below, n_above)
    arc, bands = resample_bands(selected, n_kpoints, smoothing_width)
    walk = product.kpath.assemble(product.segment_kpoints())
    cartesian = walk @ np.asarray(product.kpath.rec_lattice, dtype=float)
    _, kpoints = smooth_resample(selected.arc, cartesian, n_kpoints, 0.0)
    resampled_gap = max(gap_difference(bands, selected.hob_column), 0.0)
    return BandTargets(
        kpoints=kpoints.astype(np.float32),
        arc=arc.astype(np.float32),
        bands=bands.astype(np.float32),
        is_metal=selected.is_metal,
        gap=float(selected.gap),
        gap_resampled_error=float(resampled_gap - selected.gap),
        labels=json.dumps([[label, round(float(x), 6)] for label, x in selected.labels]),
    )
