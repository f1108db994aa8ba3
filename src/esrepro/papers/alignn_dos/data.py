"""Graph datasets of the ALIGNN-DOS pipeline: built once by the featurize stage, then batched.

Each structure becomes a record of plain tensors (crystal graph, line graph, node features), so
a whole dataset is one ``torch.save`` file that loads with ``weights_only=True`` and training
never rebuilds neighbour lists. For the network a record becomes a
:class:`~esrepro.graphs.CrystalGraph` (a PyG ``Data``), batched by PyG's ``Batch`` and
``DataLoader``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from ase import Atoms
from torch import Tensor
from torch.utils.data import Dataset
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from esrepro.graphs import CrystalGraph, line_graph, periodic_knn_graph
from esrepro.papers.alignn_dos.model import atom_feature_matrix


def graph_record(atoms: Atoms, k: int = 16, cutoff: float = 8.0) -> dict[str, Any]:
    """Crystal graph (k nearest periodic neighbours), its line graph and the node features."""
    graph = periodic_knn_graph(atoms, k=k, cutoff=cutoff)
    lg_edge_index, cos_angle = line_graph(graph)
    return {
        "graph": graph.to_dict(),
        "lg_edge_index": lg_edge_index,
        "cos_angle": cos_angle,
        "node_features": atom_feature_matrix(atoms.numbers),
    }


def graph_data(record: dict[str, Any], target: Tensor | None = None) -> CrystalGraph:
    """The model input of one record: its crystal graph with node features and line graph.

    ``target`` (``(d,)``) becomes ``y`` of shape ``(1, d)``, so a batch stacks it to ``(B, d)``.
    """
    graph = CrystalGraph.from_dict(record["graph"])
    graph.x = record["node_features"].float()
    graph.lg_edge_index = record["lg_edge_index"]
    graph.cos_angle = record["cos_angle"]
    if target is not None:
        graph.y = target.float().unsqueeze(0)
    return graph


def collate_records(records: Sequence[dict[str, Any]]) -> Batch:
    """One PyG ``Batch`` of graph records (line graphs reused, not recomputed)."""
    return Batch.from_data_list([graph_data(r) for r in records])


class GraphTargetDataset(Dataset):
    """Rows ``rows`` of graph records with a ``(n, d)`` target matrix (DOS or latent codes);
    item ``i`` is a :class:`~esrepro.graphs.CrystalGraph` with its target row as ``y``."""

    def __init__(
        self, records: Sequence[dict[str, Any]], targets: Tensor, rows: Sequence[int]
    ) -> None:
        if len(records) != targets.shape[0]:
            raise ValueError(f"{len(records)} graphs but {targets.shape[0]} targets")
        self.graphs = [graph_data(records[r], targets[r]) for r in rows]

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> CrystalGraph:
        return self.graphs[i]


def graph_loader(
    records: Sequence[dict[str, Any]], targets: Tensor, rows: Sequence[int], batch_size: int,
    seed: int | None = None,
) -> DataLoader:
    """PyG ``DataLoader`` over rows ``rows``: shuffled by a generator seeded with ``seed``, in
    order when ``seed`` is ``None``."""
    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    return DataLoader(GraphTargetDataset(records, targets, rows), batch_size=batch_size,
                      shuffle=seed is not None, generator=generator)
