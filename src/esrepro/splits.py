"""Deterministic random splits of material ids, shared by every paper's pipeline.

Assignments depend on the *set* of ids and a seed only, never on the order a stage listed them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _permutation_of_ids(ids: Sequence[str], seed: int) -> np.ndarray:
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ValueError("material ids must be unique to split them")
    # Permute the *sorted* ids so the assignment depends on the set of ids and the seed, not on
    # the order in which an upstream stage happened to list the materials.
    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    perm = np.random.default_rng(seed).permutation(len(ids))
    return order[perm]


def random_split_labels(ids: Sequence[str], test_fraction: float = 0.2, seed: int = 0) -> list[str]:
    """Label each id ``"train"`` or ``"test"`` at random (paper: 80/20), deterministically.

    ``round(len(ids) * test_fraction)`` ids go to the test set (at least one when the fraction
    is positive and there are two or more ids; never all of them). The result is aligned with
    ``ids`` and depends only on the set of ids and ``seed``.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1); got {test_fraction}")
    n = len(ids)
    n_test = int(round(n * test_fraction))
    if test_fraction > 0 and n >= 2:
        n_test = min(max(n_test, 1), n - 1)
    labels = ["train"] * n
    for i in _permutation_of_ids(ids, seed)[:n_test]:
        labels[int(i)] = "test"
    return labels


def kfold_labels(ids: Sequence[str], k: int = 5, seed: int = 0) -> list[int]:
    """Assign each id a fold in ``0..k-1`` (sizes differ by at most one), deterministically."""
    if k < 2 or k > len(ids):
        raise ValueError(f"k must be in [2, {len(ids)}]; got {k}")
    folds = [0] * len(ids)
    for pos, i in enumerate(_permutation_of_ids(ids, seed)):
        folds[int(i)] = pos % k
    return folds


def train_val_test_labels(
    ids: Sequence[str], val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> list[str]:
    """Label each id ``"train"``, ``"val"`` or ``"test"`` (e.g. the ALIGNN-DOS 70/10/20 split).

    The test set is drawn as :func:`random_split_labels` draws it; the validation set then
    takes ``round(n * val_fraction)`` of the remaining ids (with a derived seed).
    """
    if not (0.0 <= val_fraction and val_fraction + test_fraction < 1.0):
        raise ValueError(f"bad split fractions: val {val_fraction}, test {test_fraction}")
    labels = random_split_labels(ids, test_fraction, seed)
    rest = [i for i, label in zip(ids, labels, strict=True) if label == "train"]
    n_val = int(round(len(ids) * val_fraction))
    if n_val and len(rest) >= 2:
        n_val = min(n_val, len(rest) - 1)
        chosen = {rest[int(i)] for i in _permutation_of_ids(rest, seed + 1)[:n_val]}
        labels = ["val" if i in chosen else label for i, label in zip(ids, labels, strict=True)]
    return labels
