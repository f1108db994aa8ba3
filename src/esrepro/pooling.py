"""Permutation-invariant pooling of per-atom feature vectors into per-structure vectors.

Shared by the graph-level models (DOSnp, ALIGNN readout). Atoms of all structures in a batch are
concatenated along dim 0 and ``index[i]`` names the structure (graph) that atom ``i`` belongs to:
PyG's layout (``Batch.batch``), pooled with PyG's global pooling, whose pure-PyTorch scatter
needs no compiled extension (torch_scatter / pyg-lib).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

POOLING_MODES: tuple[str, ...] = ("mean+max", "mean", "max", "sum")


def pooling_for(params: Mapping[str, Any], paper: str) -> str:
    """The pooling mode of ``paper`` from the shared ``model.pooling`` param.

    ``model.pooling`` is either one mode for every paper (what ``dvc exp run -S
    model.pooling=max`` writes) or a mapping ``{paper: mode}`` holding each paper's published
    default (DOSnp mean+max, ALIGNN mean). A bad value is an error naming the param.
    """
    setting = params.get("model", {}).get("pooling")
    if isinstance(setting, Mapping):
        if paper not in setting:
            raise ValueError(
                f"params.yaml model.pooling has no entry for {paper!r} (has {sorted(setting)})"
            )
        mode = setting[paper]
    else:
        mode = setting
    if mode not in POOLING_MODES:
        raise ValueError(
            f"params.yaml model.pooling for {paper!r} is {mode!r}; "
            f"allowed: {', '.join(POOLING_MODES)}"
        )
    return str(mode)


def _check_mode(mode: str) -> None:
    if mode not in POOLING_MODES:
        raise ValueError(
            f"unknown pooling mode {mode!r}; allowed modes: {', '.join(POOLING_MODES)}"
        )


def pooled_dim(n_features: int, mode: str) -> int:
    """Width of the pooled vector for ``n_features`` per-atom features under ``mode``."""
    _check_mode(mode)
    return 2 * n_features if mode == "mean+max" else n_features


def pool_atoms(x: Tensor, index: Tensor, n_graphs: int, mode: str = "mean+max") -> Tensor:
    """Pool per-atom features into one vector per structure.

    Args:
        x: per-atom features, shape ``(n_atoms, F)``.
        index: structure index of each atom, ``LongTensor`` of shape ``(n_atoms,)`` with values
            in ``[0, n_graphs)``; atoms of one structure need not be contiguous.
        n_graphs: number of structures in the batch (rows of the output).
        mode: one of :data:`POOLING_MODES`. ``"mean+max"`` concatenates ``[mean, max]`` (the
            DOSnp choice: size-consistent and order-independent); ``"sum"`` is order-independent
            but grows with the number of atoms in the cell.

    Returns:
        ``(n_graphs, pooled_dim(F, mode))`` tensor.
    """
    _check_mode(mode)
    if x.dim() != 2:
        raise ValueError(f"x must have shape (n_atoms, F); got {tuple(x.shape)}")
    if index.dim() != 1 or index.shape[0] != x.shape[0]:
        raise ValueError(
            f"index must have shape ({x.shape[0]},) to match x; got {tuple(index.shape)}"
        )
    index = index.to(device=x.device, dtype=torch.long)
    # An empty structure pools to 0 in every mode (PyG's max starts from no value, not from
    # the zero it fills in, so all-negative features pool to their true maximum).
    if mode == "sum":
        return global_add_pool(x, index, n_graphs)
    if mode == "max":
        return global_max_pool(x, index, n_graphs)
    mean = global_mean_pool(x, index, n_graphs)
    if mode == "mean":
        return mean
    return torch.cat([mean, global_max_pool(x, index, n_graphs)], dim=1)
