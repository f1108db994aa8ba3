"""Graph datasets of the ALIGNN-DOS pipeline: built once by the featurize stage, then batched.

Each structure becomes a record of plain tensors (crystal graph, line graph, node features), so
a whole dataset is one ``torch.save`` file that loads with ``weights_only=True`` and training
never rebuilds neighbour lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from ase import Atoms
from torch import Tensor
from torch.utils.data import Dataset

from esrepro.graphs import CrystalGraph, GraphBatch, batch_graphs, line_graph, periodic_knn_graph
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


def collate_records(records: Sequence[dict[str, Any]]) -> GraphBatch:
    """One :class:`GraphBatch` of graph records (line graphs reused, not recomputed)."""
    return batch_graphs(
        [CrystalGraph.from_dict(r["graph"]) for r in records],
        [r["node_features"] for r in records],
        [(r["lg_edge_index"], r["cos_angle"]) for r in records],
    )


class GraphTargetDataset(Dataset):
    """Rows ``rows`` of graph records with a ``(n, d)`` target matrix (DOS or latent codes)."""

    def __init__(self, records: Sequence[dict[str, Any]], targets: Tensor, rows: Sequence[int]) -> None:
        if len(records) != targets.shape[0]:
            raise ValueError(f"{len(records)} graphs but {targets.shape[0]} targets")
        self.records = records
        self.targets = targets
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[dict[str, Any], Tensor]:
        row = self.rows[i]
        return self.records[row], self.targets[row]


def collate_graph_targets(items: Sequence[tuple[dict[str, Any], Tensor]]) -> tuple[GraphBatch, Tensor]:
    """Batch of ``(record, target)`` pairs: a GraphBatch and the stacked targets."""
    return collate_records([r for r, _ in items]), torch.stack([t for _, t in items]).float()
