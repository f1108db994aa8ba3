"""Test helpers shared by the tests: the symmetry checks live in :mod:`esrepro.testing`."""

import time

import numpy as np
import pytest

from esrepro.dft.band_product import BandProduct
from esrepro.dft.gw_product import GWProduct, GWSettings
from esrepro.kpath import ContinuousKPath
from esrepro.testing import assert_permutation_invariant, permute_atoms_within_graphs

__all__ = [
    "assert_permutation_invariant",
    "permute_atoms_within_graphs",
    "synthetic_band_product",
    "synthetic_gw_product",
    "wait_for",
]


def wait_for(what: str, check, timeout_s: float = 120.0, every_s: float = 0.1):
    """Poll `check()` until it returns something truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")


def _line_path() -> ContinuousKPath:
    """Γ -> X and back: one unique segment walked twice, the second time reversed."""
    return ContinuousKPath(
        rec_lattice=2 * np.pi * np.eye(3) / 4.0,
        points={"Γ": np.zeros(3), "X": np.array([0.5, 0.0, 0.0])},
        segments=(("Γ", "X"),),
        steps=((0, False), (0, True)),
    )


def synthetic_band_product(
    vb_top: float, cb_bottom: float, fermi: float, hob: int = 5
) -> BandProduct:
    """Six bands on Γ-X: band HOB peaks at X (vb_top), band HOB+1 has its minimum at Γ."""
    path = _line_path()
    [k] = path.segment_kpoints(40.0)
    t = k[:, 0] / 0.5  # 0 at Γ, 1 at X
    vb = vb_top - 1.0 + 1.0 * t**2
    cb = cb_bottom + 2.0 * t**2
    bands = np.stack([vb - 3, vb - 2, vb, cb, cb + 2, cb + 3], axis=1)
    n_scf = 4
    return BandProduct(
        numbers=np.array([14]), cell=4.0 * np.eye(3), positions=np.zeros((1, 3)),
        kpoints=k, segment_offsets=np.array([0, len(k)]), eigenvalues=bands,
        band_start=hob - 2, hob=hob, fermi_level=fermi, n_electrons=12.0,
        scf_eigenvalues=np.zeros((n_scf, 6)), scf_occupations=np.zeros((n_scf, 6)),
        scf_k_weights=np.full(n_scf, 1 / n_scf), kpath=path, meta={"note": "synthetic"},
    )


def synthetic_gw_product(gap: float = 1.5, n_k: int = 3, below: int = 2, above: int = 2,
                         n_ref: int = 13) -> GWProduct:
    """A GW product of made-up numbers: flat bands 1 eV apart around a gap of `gap` eV, GW
    pushing valence bands down by 0.3 eV and conduction bands up by 0.5 eV."""
    offsets = np.arange(-below, above)
    e_dft = np.tile(np.where(offsets < 0, offsets + 1.0, offsets + gap), (n_k, 1)).astype(float)
    e_dft += 0.1 * np.arange(n_k)[:, None]
    shift = np.where(offsets < 0, -0.3, 0.5)
    n_window = below + above
    character = np.zeros((n_k, n_window, 4))
    character[..., 1], character[..., 2] = 0.4, 0.6
    return GWProduct(
        numbers=np.array([42, 16, 16]), cell=np.diag([3.18, 3.18, 18.1]),
        positions=np.array([[0.0, 0.0, 9.05], [1.59, 0.92, 10.6], [1.59, 0.92, 7.5]]),
        kpoints=np.array([[0.0, 0.0, 0.0], [1 / 3, 0.0, 0.0], [1 / 3, 1 / 3, 0.0]])[:n_k],
        k_weights=np.full(n_k, 1 / n_k), band_start=n_ref - below, n_ref=n_ref,
        e_dft=e_dft, e_gw=e_dft + shift, z=np.full((n_k, n_window), 0.8),
        occupations=np.tile((offsets < 0).astype(float), (n_k, 1)),
        sigma=np.full((n_k, n_window), -1.0), vxc=np.full((n_k, n_window), -10.0),
        exx=np.full((n_k, n_window), -9.0), orbital_character=character,
        fermi_level=gap / 2, n_electrons=2.0 * n_ref, gap_dft=gap, gap_gw=gap + 0.8,
        vacuum_level=4.5,
        meta={"settings": GWSettings().to_dict(), "versions": {"gpaw": "26.7.0",
              "gpaw-data": "1.2.1", "product_format": "gw-1"}, "is_metal": False},
    )
