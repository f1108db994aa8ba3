"""Test helpers shared by the tests: the symmetry checks live in :mod:`esrepro.testing`."""

import time

import pytest

from esrepro.testing import assert_permutation_invariant, permute_atoms_within_graphs

__all__ = ["assert_permutation_invariant", "permute_atoms_within_graphs", "wait_for"]


def wait_for(what: str, check, timeout_s: float = 120.0, every_s: float = 0.1):
    """Poll `check()` until it returns something truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
