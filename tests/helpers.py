"""Test helpers shared by model tests (in the spirit of e3nn's ``assert_equivariant``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def permute_atoms_within_graphs(
    x: Tensor, index: Tensor, generator: torch.Generator, interleave: bool = False
) -> tuple[Tensor, Tensor]:
    """Randomly reorder the atoms of every graph (rows of ``x`` and ``index`` move together).

    With ``interleave=False`` each graph's atoms stay in one contiguous block (the layout
    ``collate_pdos`` produces); with ``interleave=True`` the rows of all graphs are shuffled
    together, which pooling must tolerate as well.
    """
    if interleave:
        perm = torch.randperm(x.shape[0], generator=generator)
    else:
        blocks = []
        for g in torch.unique(index, sorted=True):
            rows = torch.nonzero(index == g).flatten()
            blocks.append(rows[torch.randperm(rows.numel(), generator=generator)])
        perm = torch.cat(blocks)
    return x[perm], index[perm]


def assert_permutation_invariant(
    model: Callable[[Tensor, Tensor, int], Tensor],
    x: Tensor,
    index: Tensor,
    n_graphs: int,
    *,
    n_trials: int = 3,
    seed: int = 0,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> Tensor:
    """Assert ``model(x, index, n_graphs)`` does not change when atoms are reordered.

    Tries ``n_trials`` random reorderings within graphs plus one interleaved shuffle and returns
    the reference output. The model should be in eval mode (dropout breaks the comparison).
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ref = model(x, index, n_graphs)
        for trial in range(n_trials + 1):
            xp, ip = permute_atoms_within_graphs(x, index, gen, interleave=trial == n_trials)
            out = model(xp, ip, n_graphs)
            max_err = (out - ref).abs().max().item()
            assert torch.allclose(out, ref, atol=atol, rtol=rtol), (
                f"output changed under atom permutation (trial {trial}, max |diff| {max_err:.3g})"
            )
    return ref
