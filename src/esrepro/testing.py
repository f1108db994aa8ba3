"""Reusable symmetry checks for structure-level models (as ``e3nn.util.test`` is for equivariance).

A model that predicts one vector per structure must not depend on how the structure's atoms are
numbered. Two input layouts:

* atoms of all structures concatenated, with a structure index per atom (DOSnp):
  :func:`permute_atoms_within_graphs` and :func:`assert_permutation_invariant`;
* a PyG ``Batch`` of :class:`esrepro.graphs.CrystalGraph` (ALIGNN): :func:`permute_graph`
  renumbers atoms, bonds and bond pairs (remapping every index that refers to them) and
  :func:`assert_graph_permutation_invariant` checks the per-graph output.

Models of fields on a periodic in-plane grid ``(..., n, n)`` (VAE-GW's wavefunction moduli) must
not depend on the choice of cell vectors or origin: :func:`assert_rot90_invariant`,
:func:`assert_rot90_equivariant` and :func:`assert_shift_invariant` (``torch.roll``) compare a
function's outputs exactly (``atol = rtol = 0``: bit for bit) or within tolerances.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data

__all__ = [
    "assert_graph_permutation_invariant",
    "assert_permutation_invariant",
    "assert_rot90_equivariant",
    "assert_rot90_invariant",
    "assert_shift_invariant",
    "permute_atoms_within_graphs",
    "permute_graph",
]

#: Attributes of a :class:`esrepro.graphs.CrystalGraph` (or a ``Batch`` of them) with one row
#: per atom, per bond (edge) and per bond pair (line-graph edge); others are per graph.
NODE_KEYS = ("x", "numbers", "batch")
EDGE_KEYS = ("edge_len", "edge_vec", "image")
TRIPLET_KEYS = ("cos_angle",)


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


def _inverse(perm: Tensor) -> Tensor:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    return inv


def permute_graph(graph: Data, generator: torch.Generator) -> Data:
    """A copy of ``graph`` with atoms, bonds and line-graph edges in a random order.

    ``edge_index`` is remapped to the new atom numbers and ``lg_edge_index`` to the new bond
    numbers. In a ``Batch`` atoms are shuffled across graphs (``batch`` stays their graph
    label, no longer sorted), so pooling must not assume contiguous graphs.
    """
    out = graph.clone()
    node_perm = torch.randperm(graph.num_nodes, generator=generator)  # new p = old perm[p]
    edge_perm = torch.randperm(graph.num_edges, generator=generator)
    for key in NODE_KEYS:
        if graph.get(key) is not None:
            out[key] = graph[key][node_perm]
    for key in EDGE_KEYS:
        if graph.get(key) is not None:
            out[key] = graph[key][edge_perm]
    out.edge_index = _inverse(node_perm)[graph.edge_index[:, edge_perm]]
    if graph.get("lg_edge_index") is not None:
        lg_perm = torch.randperm(graph.lg_edge_index.shape[1], generator=generator)
        out.lg_edge_index = _inverse(edge_perm)[graph.lg_edge_index[:, lg_perm]]
        for key in TRIPLET_KEYS:
            if graph.get(key) is not None:
                out[key] = graph[key][lg_perm]
    return out


def assert_graph_permutation_invariant(
    model: Callable[[Data], Tensor], graph: Data, *, trials: int = 2, seed: int = 0,
    atol: float = 1e-6, rtol: float = 1e-6,
) -> None:
    """Assert ``model(permute_graph(graph))`` equals ``model(graph)`` for ``trials`` random
    renumberings (``torch.testing.assert_close`` tolerances). Call it under ``no_grad`` and with
    the model in eval mode when BatchNorm statistics should not change between calls."""
    reference = model(graph)
    generator = torch.Generator().manual_seed(seed)
    for trial in range(trials):
        torch.testing.assert_close(
            model(permute_graph(graph, generator)), reference, atol=atol, rtol=rtol,
            msg=lambda m, trial=trial: f"output changed under renumbering {trial}: {m}",
        )


def _as_tuple(out: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    return (out,) if isinstance(out, Tensor) else tuple(out)


def _assert_same(
    got: Tensor | Sequence[Tensor], want: Tensor | Sequence[Tensor], atol: float, rtol: float,
    what: str,
) -> None:
    """``got`` equals ``want`` output by output: bit for bit when ``atol == rtol == 0``."""
    got, want = _as_tuple(got), _as_tuple(want)
    assert len(got) == len(want), f"{what}: {len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, (
            f"{what}: output {i} has shape {tuple(g.shape)}, not {tuple(w.shape)}"
        )
        if atol == 0 and rtol == 0:
            diff = (g.double() - w.double()).abs().max().item() if g.numel() else 0.0
            assert torch.equal(g, w), f"{what}: output {i} differs (max |diff| {diff:.3g})"
        else:
            torch.testing.assert_close(
                g, w, atol=atol, rtol=rtol, msg=lambda m, i=i: f"{what}: output {i}: {m}"
            )


def assert_rot90_invariant(
    fn: Callable[[Tensor], Tensor | Sequence[Tensor]], x: Tensor, *, ks: Sequence[int] = (1, 2, 3),
    atol: float = 0.0, rtol: float = 0.0,
) -> None:
    """Assert ``fn(rot90(x, k))`` equals ``fn(x)`` for each ``k`` (rotation of the last two
    dims). ``fn`` returns a tensor or a tuple of tensors; call it in eval mode and under
    ``no_grad`` when it samples or keeps statistics."""
    reference = fn(x)
    for k in ks:
        _assert_same(fn(torch.rot90(x, k, (-2, -1))), reference, atol, rtol, f"rot90 k={k}")


def assert_rot90_equivariant(
    fn: Callable[[Tensor], Tensor | Sequence[Tensor]], x: Tensor, *, ks: Sequence[int] = (1, 2, 3),
    atol: float = 0.0, rtol: float = 0.0,
) -> None:
    """Assert ``fn(rot90(x, k))`` equals ``rot90(fn(x), k)`` (every output's last two dims)."""
    reference = _as_tuple(fn(x))
    for k in ks:
        rotated = tuple(torch.rot90(r, k, (-2, -1)) for r in reference)
        _assert_same(fn(torch.rot90(x, k, (-2, -1))), rotated, atol, rtol, f"rot90 k={k}")


def assert_shift_invariant(
    fn: Callable[[Tensor], Tensor | Sequence[Tensor]], x: Tensor,
    shifts: Sequence[tuple[int, int]], *, atol: float = 0.0, rtol: float = 0.0,
) -> None:
    """Assert ``fn(roll(x, shift))`` equals ``fn(x)`` for each periodic in-plane ``shift``
    ``(s1, s2)`` of the last two dims (a move of the cell's origin by whole grid steps)."""
    reference = fn(x)
    for shift in shifts:
        moved = torch.roll(x, tuple(int(s) for s in shift), dims=(-2, -1))
        _assert_same(fn(moved), reference, atol, rtol, f"shift {tuple(shift)}")
