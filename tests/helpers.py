"""Test helpers shared by model tests: the symmetry checks live in :mod:`esrepro.testing`."""

from esrepro.testing import assert_permutation_invariant, permute_atoms_within_graphs

__all__ = ["assert_permutation_invariant", "permute_atoms_within_graphs"]
