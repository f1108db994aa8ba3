"""SOAP power-spectrum descriptors of atomic environments for the LDOS paper (Sec. II.2-II.3).

Each atom ``i`` of a structure is described by the SOAP power spectrum of the neighbour density
within ``r_cut`` of it (the "cropped fragment" S_i of the paper's eq. 9), computed with DScribe's
:class:`dscribe.descriptors.SOAP` (GTO radial basis, no averaging, no compression). The power
spectrum is invariant to rotations, translations and permutations of the atoms, and it varies
smoothly as atoms cross ``r_cut``, which is what the kernel ridge models of
:mod:`esrepro.papers.ldos.krr` need. Vectors are returned unnormalized: the kernels there
normalize them (the usual SOAP kernel works on ``x / |x|``).

The feature layout depends on ``species`` (one block per species pair), so every structure of a
data set must be described with the same ``species`` list, and every atom of every structure
must belong to it: an atom of another species would otherwise be silently dropped from its
neighbours' densities (and DScribe would fail obscurely on it as a centre).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms

__all__ = ["soap_descriptors", "soap_n_features"]


def _make_soap(
    species: Sequence[str], r_cut: float, n_max: int, l_max: int, sigma: float, periodic: bool
):  # -> dscribe.descriptors.SOAP (imported lazily: DScribe's import takes seconds, via numba)
    from dscribe.descriptors import SOAP

    if len(species) == 0:
        raise ValueError("species must name at least one chemical element")
    if len(set(species)) != len(species):
        raise ValueError(f"species has duplicates: {list(species)}")
    if not r_cut > 0:
        raise ValueError(f"r_cut must be > 0 Å, got {r_cut!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 Å, got {sigma!r}")
    if int(n_max) < 1 or int(l_max) < 0:
        raise ValueError(f"need n_max >= 1 and l_max >= 0, got n_max={n_max}, l_max={l_max}")
    return SOAP(
        species=list(species),
        r_cut=float(r_cut),
        n_max=int(n_max),
        l_max=int(l_max),
        sigma=float(sigma),
        periodic=bool(periodic),
    )


def soap_n_features(
    species: Sequence[str], r_cut: float, n_max: int = 8, l_max: int = 6, sigma: float = 0.5
) -> int:
    """Length of one atom's SOAP vector for these settings (independent of the structure)."""
    return int(_make_soap(species, r_cut, n_max, l_max, sigma, False).get_number_of_features())


def soap_descriptors(
    structures: Sequence[Atoms],
    species: Sequence[str],
    r_cut: float,
    n_max: int = 8,
    l_max: int = 6,
    sigma: float = 0.5,
    periodic: bool = True,
) -> list[np.ndarray]:
    """Per-atom SOAP power spectra, one ``(n_atoms, n_features)`` float64 array per structure.

    ``species``: chemical symbols defining the feature layout (the same list for a whole data
    set). ``r_cut`` (Å): cutoff radius of the environment (the paper uses 6 Å); ``n_max`` and
    ``l_max``: radial and angular expansion orders; ``sigma`` (Å): width of the Gaussian smearing
    each neighbour contributes to the density. ``periodic=True`` uses each structure's cell and
    periodic images (the structures then need a cell); ``False`` treats them as isolated
    clusters. Rows follow the structure's atom order.

    Raises ``ValueError`` naming the offending species (and the structure's index) when a
    structure contains an element not in ``species``.
    """
    allowed = set(species)
    for index, atoms in enumerate(structures):
        unknown = sorted(set(atoms.get_chemical_symbols()) - allowed)
        if unknown:
            raise ValueError(
                f"structure {index} ({atoms.get_chemical_formula()}) contains species "
                f"{', '.join(unknown)} not in species={list(species)}"
            )
        if len(atoms) == 0:
            raise ValueError(f"structure {index} has no atoms")
    soap = _make_soap(species, r_cut, n_max, l_max, sigma, periodic)
    out: list[np.ndarray] = []
    for atoms in structures:
        # One call per structure: DScribe returns a 3-D array for a list of equal-sized
        # structures and a list otherwise; per-structure calls give one shape contract.
        d = np.asarray(soap.create(atoms), dtype=np.float64)
        out.append(d.reshape(len(atoms), -1))
    return out
