"""ALIGNN (Choudhary & DeCost 2021) on torch_geometric, as used by the ALIGNN-DOS paper.

Layer for layer this is the reference ``usnistgov/alignn`` ``alignn/models/alignn.py``
(``ALIGNNConfig`` defaults: 4 ALIGNN layers, 4 gated-GCN layers, 80 RBF bond-length bins on
0..8 A, 40 RBF bond-angle-cosine bins on -1..1, embedding 64, hidden 256), with DGL message
passing replaced by PyG ``MessagePassing`` over a ``Batch`` of
:class:`esrepro.graphs.CrystalGraph` (crystal graph and line graph in one object) and the readout
by PyG global pooling. With ``fc_layers=1`` and ``pooling="mean"`` the parameter set is exactly
the reference's for the same configuration.

Choices where the paper and the reference differ (all constructor arguments):

* **FC head.** The paper (Sec. 3, Fig. 2e) connects the averaged node vector to "four FC
  layers"; the reference ``ALIGNN`` has a single ``Linear(hidden, output)``. We follow the
  paper: ``fc_layers=4`` = three ``Linear(., fc_features) + SiLU`` layers and the output
  ``Linear``. Widths are not given in the paper; we keep ``hidden_features`` (256) and SiLU,
  ALIGNN's activation. No BatchNorm in the head: the paper does not mention one, and BatchNorm
  on pooled per-structure vectors would couple the structures of a batch (and fail on a
  one-structure batch in training). ``fc_layers=1`` gives the reference head.
* **Update order inside an ALIGNN layer.** The reference code used by the paper updates the
  crystal graph first and feeds the resulting bond messages to the line-graph update
  (``order="pair-triplet"``, our default); the paper's prose (Eqs. 1-3) describes the line
  graph first (``order="triplet-pair"``, the name a later reference variant uses for it).
* **Node features.** The reference uses 92 one-hot CGCNN features; the paper uses five
  chemical attributes per atom (:func:`atom_features`), hence ``atom_input_features=5``.
"""

from __future__ import annotations

import math
import warnings
from functools import cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from esrepro.pooling import POOLING_MODES, pool_atoms, pooled_dim

__all__ = [
    "ALIGNN",
    "ALIGNNConv",
    "ATOM_FEATURE_NAMES",
    "EdgeGatedGraphConv",
    "MLPLayer",
    "RBFExpansion",
    "atom_feature_matrix",
    "atom_features",
    "valence_electrons",
]

ORDERS: tuple[str, ...] = ("pair-triplet", "triplet-pair")
LINKS: tuple[str, ...] = ("identity", "log", "logit")

#: Column order of :func:`atom_features` (units: Pauling, eV, electrons, eV, A).
ATOM_FEATURE_NAMES: tuple[str, ...] = (
    "electronegativity",
    "electron_affinity",
    "valence_electrons",
    "first_ionization_energy",
    "atomic_radius",
)

# Pauling electronegativity does not exist for He, Ne and Ar (no stable compounds). We fall
# back to the Allen (spectroscopic) scale, which is calibrated to Pauling values and continuous
# with pymatgen's Pauling values of Kr (3.00 vs Allen 2.97) and Xe (2.60 vs 2.58).
_ALLEN_ELECTRONEGATIVITY: dict[str, float] = {"He": 4.160, "Ne": 4.787, "Ar": 3.242}

_NOBLE_GAS_Z: tuple[int, ...] = (2, 10, 18, 36, 54, 86, 118)


def valence_electrons(symbol: str) -> int:
    """Number of valence electrons of an element (feature 3 of the paper).

    Rule: s-, p- and d-block elements use the group convention (groups 1-12: the group number,
    e.g. Fe 8, Cu 11, Zn 12; groups 13-18: group - 10, e.g. Ga 3, O 6, Xe 8; He 2). For the
    f-block (pymatgen's block ``"f"``: La-Yb, Ac-No) the group number (3) would hide the f
    electrons that shape the DOS near E_F, so we count all electrons outside the preceding
    noble-gas core (La 3, Ce 4, Gd 10, U 6).
    """
    from pymatgen.core.periodic_table import Element

    el = Element(symbol)
    z = int(el.Z)
    if symbol == "He":
        return 2
    if el.block == "f":
        core = max(c for c in _NOBLE_GAS_Z if c < z)
        return z - core
    group = int(el.group)
    return group if group <= 12 else group - 10


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


@cache
def _atom_features_cached(symbol: str) -> tuple[float, ...]:
    from pymatgen.core.periodic_table import Element

    el = Element(symbol)
    with warnings.catch_warnings():
        # pymatgen warns (and returns NaN/None) for missing data; the fallbacks below handle it.
        warnings.simplefilter("ignore")
        x = _finite(el.X)
        ea = _finite(el.electron_affinity)
        ies = el.ionization_energies
        ie = _finite(ies[0]) if ies else None
        radius = _finite(el.atomic_radius)
        radius_calc = _finite(el.atomic_radius_calculated)
    if x is None:
        if symbol not in _ALLEN_ELECTRONEGATIVITY:
            raise ValueError(f"{symbol}: no electronegativity in pymatgen and no fallback")
        x = _ALLEN_ELECTRONEGATIVITY[symbol]
    if ea is None:
        raise ValueError(f"{symbol}: no electron affinity in pymatgen")
    if ie is None:
        raise ValueError(f"{symbol}: no first ionization energy in pymatgen")
    # Empirical (Slater) radius; the calculated (Clementi) radius for the elements without one
    # (He, Ne, Kr, Xe, Rn). Elements with neither (At, Fr, Cm and heavier) are refused rather
    # than given an invented number.
    if radius is None:
        radius = radius_calc
    if radius is None:
        raise ValueError(f"{symbol}: no atomic radius in pymatgen (empirical or calculated)")
    return (x, ea, float(valence_electrons(symbol)), ie, radius)


def atom_features(symbol: str) -> np.ndarray:
    """The paper's five node attributes of an element, in :data:`ATOM_FEATURE_NAMES` order.

    From pymatgen ``Element``: Pauling electronegativity ``X`` (Allen value for He/Ne/Ar),
    ``electron_affinity`` (eV), :func:`valence_electrons`, ``ionization_energies[0]`` (eV) and
    ``atomic_radius`` (A; ``atomic_radius_calculated`` when missing). Raw values, not scaled:
    the atom embedding starts with a Linear + BatchNorm layer that standardizes them.

    Raises:
        ValueError: an element for which pymatgen lacks a value and no fallback is defined.
    """
    return np.asarray(_atom_features_cached(str(symbol)), dtype=np.float64)


def atom_feature_matrix(numbers: Tensor | np.ndarray | list[int]) -> Tensor:
    """``(N, 5)`` float32 node-feature matrix for atomic numbers ``numbers``."""
    from ase.data import chemical_symbols

    z = np.asarray(numbers, dtype=np.int64).reshape(-1)
    rows = {int(zi): atom_features(chemical_symbols[int(zi)]) for zi in np.unique(z)}
    if len(z) == 0:
        return torch.zeros((0, len(ATOM_FEATURE_NAMES)), dtype=torch.float32)
    return torch.from_numpy(np.stack([rows[int(zi)] for zi in z])).float()


# --------------------------------------------------------------------------- layers


class RBFExpansion(nn.Module):
    """Gaussian radial-basis expansion, as reference ``alignn.models.utils.RBFExpansion``.

    ``exp(-gamma (d - c_k)^2)`` with ``bins`` centres on ``linspace(vmin, vmax)`` and, as in the
    reference (SchNet-style default), ``gamma = 1 / spacing`` (not ``1 / spacing**2``).
    """

    def __init__(self, vmin: float = 0.0, vmax: float = 8.0, bins: int = 40) -> None:
        super().__init__()
        self.vmin = float(vmin)
        self.vmax = float(vmax)
        self.bins = int(bins)
        centers = torch.linspace(self.vmin, self.vmax, self.bins)
        self.register_buffer("centers", centers)
        self.gamma = float(1.0 / np.diff(centers.numpy()).mean())

    def forward(self, distance: Tensor) -> Tensor:
        """``(E,) -> (E, bins)``."""
        return torch.exp(-self.gamma * (distance.unsqueeze(1) - self.centers) ** 2)


class MLPLayer(nn.Module):
    """Linear -> BatchNorm1d -> SiLU (reference ``MLPLayer``)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            nn.Linear(in_features, out_features),
            nn.BatchNorm1d(out_features),
            nn.SiLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(n, in) -> (n, out)``."""
        return self.layer(x)


class EdgeGatedGraphConv(MessagePassing):
    """Edge-gated graph convolution (reference ``EdgeGatedGraphConv``, arXiv:1711.07553).

    For an edge ``i -> j`` (messages flow from source ``i`` to destination ``j``)::

        m_ij  = W_sg h_i + W_dg h_j + W_eg e_ij            (src_gate, dst_gate, edge_gate)
        s_ij  = sigmoid(m_ij)
        h_j'  = W_su h_j + sum_i s_ij * W_du h_i / (sum_i s_ij + 1e-6)
        h_j  <- h_j + SiLU(BN(h_j'))       e_ij <- e_ij + SiLU(BN(m_ij))

    (``src_update`` acts on the receiving node itself and ``dst_update`` on its neighbours: the
    reference's names, kept so state dicts line up.) In PyG's terms (flow source-to-target) the
    source ``i`` is ``_j`` and the destination ``j`` is ``_i``: :meth:`edge_update` forms
    ``m``, :meth:`message` the gated neighbour terms, :meth:`aggregate` their gate-normalised sum.
    """

    def __init__(self, input_features: int, output_features: int, residual: bool = True) -> None:
        super().__init__(aggr=None)  # aggregate() below normalises by the gates
        self.residual = residual
        self.src_gate = nn.Linear(input_features, output_features)
        self.dst_gate = nn.Linear(input_features, output_features)
        self.edge_gate = nn.Linear(input_features, output_features)
        self.bn_edges = nn.BatchNorm1d(output_features)
        self.src_update = nn.Linear(input_features, output_features)
        self.dst_update = nn.Linear(input_features, output_features)
        self.bn_nodes = nn.BatchNorm1d(output_features)

    def forward(
        self, edge_index: Tensor, node_feats: Tensor, edge_feats: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Update ``(node_feats (N, F), edge_feats (E, F))`` over ``edge_index (2, E)``."""
        # The linear maps act per node, then are gathered per edge: the reference's split of
        # Linear(cat(h_i, h_j, e_ij)) into three maps, cheaper than per-edge matmuls.
        m = self.edge_updater(
            edge_index,
            gate=(self.src_gate(node_feats), self.dst_gate(node_feats)),
            edge_term=self.edge_gate(edge_feats),
        )
        sigma = torch.sigmoid(m)
        h = self.propagate(edge_index, x=self.dst_update(node_feats), sigma=sigma)
        x = F.silu(self.bn_nodes(self.src_update(node_feats) + h))
        y = F.silu(self.bn_edges(m))
        if self.residual:
            x = node_feats + x
            y = edge_feats + y
        return x, y

    def edge_update(self, gate_j: Tensor, gate_i: Tensor, edge_term: Tensor) -> Tensor:
        """Gate pre-activation ``m = W_sg h_src + W_dg h_dst + W_eg e`` of every edge."""
        return gate_j + gate_i + edge_term

    def message(self, x_j: Tensor, sigma: Tensor) -> Tensor:
        """Gated neighbour term ``s_ij * W_du h_src``."""
        return x_j * sigma

    def aggregate(self, inputs: Tensor, index: Tensor, sigma: Tensor, dim_size: int) -> Tensor:
        """Sum of the gated terms at each destination, divided by the sum of its gates."""
        total = scatter(inputs, index, dim=0, dim_size=dim_size, reduce="sum")
        norm = scatter(sigma, index, dim=0, dim_size=dim_size, reduce="sum")
        return total / (norm + 1e-6)


class ALIGNNConv(nn.Module):
    """One ALIGNN layer: edge-gated convolutions on the crystal graph and its line graph.

    ``order="pair-triplet"`` (reference code): ``x, m = node_update(g, x, y)`` then
    ``y, z = edge_update(lg, m, z)``. ``order="triplet-pair"`` (paper text):
    ``m, z = edge_update(lg, y, z)`` then ``x, y = node_update(g, x, m)``.
    """

    def __init__(self, in_features: int, out_features: int, order: str = "pair-triplet") -> None:
        super().__init__()
        if order not in ORDERS:
            raise ValueError(f"unknown order {order!r}; allowed: {', '.join(ORDERS)}")
        self.order = order
        self.node_update = EdgeGatedGraphConv(in_features, out_features)
        self.edge_update = EdgeGatedGraphConv(out_features, out_features)

    def forward(
        self, edge_index: Tensor, lg_edge_index: Tensor, x: Tensor, y: Tensor, z: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Update atom ``x (N, F)``, bond ``y (E, F)`` and angle ``z (T, F)`` features."""
        if self.order == "pair-triplet":
            x, m = self.node_update(edge_index, x, y)
            y, z = self.edge_update(lg_edge_index, m, z)
        else:
            m, z = self.edge_update(lg_edge_index, y, z)
            x, y = self.node_update(edge_index, x, m)
        return x, y, z


class ALIGNN(nn.Module):
    """Atomistic Line Graph Neural Network with a vector (DOS or latent) output.

    Args:
        atom_input_features: node-feature width (paper: 5, :func:`atom_features`).
        output_features: 300 for D-ALIGNN (300-bin DOS) or the autoencoder latent size for
            AE-ALIGNN.
        alignn_layers: ALIGNN layers (crystal + line graph updates), reference/paper 4.
        gcn_layers: further gated-GCN layers on the crystal graph only, reference 4.
        edge_input_features: RBF bins of the bond length on 0..``edge_rbf_vmax`` A.
        triplet_input_features: RBF bins of the bond-angle cosine on -1..1.
        embedding_features: width of the first embedding MLP layer of bonds and angles.
        hidden_features: width of atom, bond and angle features in all conv layers.
        fc_layers: Linear layers after pooling (paper 4; reference 1), see module docstring.
        fc_features: width of the hidden FC layers (default ``hidden_features``).
        pooling: readout, one of :data:`esrepro.pooling.POOLING_MODES` (paper: ``"mean"``).
        order: ``"pair-triplet"`` (reference code) or ``"triplet-pair"`` (paper prose).
        link: output link as the reference: ``"identity"``, ``"log"`` (apply ``exp``) or
            ``"logit"`` (apply ``sigmoid``, bounds a normalized DOS to [0, 1]).
        edge_rbf_vmax: upper end (A) of the bond-length RBF centres (reference 8.0).
    """

    def __init__(
        self,
        atom_input_features: int = 5,
        output_features: int = 300,
        alignn_layers: int = 4,
        gcn_layers: int = 4,
        edge_input_features: int = 80,
        triplet_input_features: int = 40,
        embedding_features: int = 64,
        hidden_features: int = 256,
        fc_layers: int = 4,
        fc_features: int | None = None,
        pooling: str = "mean",
        order: str = "pair-triplet",
        link: str = "identity",
        edge_rbf_vmax: float = 8.0,
    ) -> None:
        super().__init__()
        if pooling not in POOLING_MODES:
            raise ValueError(
                f"unknown pooling mode {pooling!r}; allowed modes: {', '.join(POOLING_MODES)}"
            )
        if link not in LINKS:
            raise ValueError(f"unknown link {link!r}; allowed: {', '.join(LINKS)}")
        if fc_layers < 1:
            raise ValueError(f"fc_layers must be >= 1, got {fc_layers}")
        if order not in ORDERS:
            raise ValueError(f"unknown order {order!r}; allowed: {', '.join(ORDERS)}")
        self._hparams: dict[str, Any] = {
            "atom_input_features": int(atom_input_features),
            "output_features": int(output_features),
            "alignn_layers": int(alignn_layers),
            "gcn_layers": int(gcn_layers),
            "edge_input_features": int(edge_input_features),
            "triplet_input_features": int(triplet_input_features),
            "embedding_features": int(embedding_features),
            "hidden_features": int(hidden_features),
            "fc_layers": int(fc_layers),
            "fc_features": int(fc_features if fc_features is not None else hidden_features),
            "pooling": pooling,
            "order": order,
            "link": link,
            "edge_rbf_vmax": float(edge_rbf_vmax),
        }
        self.pooling = pooling
        self.link = link
        hidden = int(hidden_features)

        self.atom_embedding = MLPLayer(atom_input_features, hidden)
        self.edge_embedding = nn.Sequential(
            RBFExpansion(vmin=0.0, vmax=edge_rbf_vmax, bins=edge_input_features),
            MLPLayer(edge_input_features, embedding_features),
            MLPLayer(embedding_features, hidden),
        )
        self.angle_embedding = nn.Sequential(
            RBFExpansion(vmin=-1.0, vmax=1.0, bins=triplet_input_features),
            MLPLayer(triplet_input_features, embedding_features),
            MLPLayer(embedding_features, hidden),
        )
        self.alignn_layers = nn.ModuleList(
            [ALIGNNConv(hidden, hidden, order=order) for _ in range(alignn_layers)]
        )
        self.gcn_layers = nn.ModuleList(
            [EdgeGatedGraphConv(hidden, hidden) for _ in range(gcn_layers)]
        )

        width = pooled_dim(hidden, pooling)
        fc_width = self._hparams["fc_features"]
        head: list[nn.Module] = []
        for _ in range(fc_layers - 1):
            head += [nn.Linear(width, fc_width), nn.SiLU()]
            width = fc_width
        head.append(nn.Linear(width, output_features))
        self.fc = nn.Sequential(*head)

    def forward(self, graph: Data) -> Tensor:
        """Predict ``(n_graphs, output_features)``.

        ``graph``: a PyG ``Batch`` of :class:`~esrepro.graphs.CrystalGraph` (or a single one)
        carrying ``x``, ``edge_index``, ``edge_len``, ``lg_edge_index`` and ``cos_angle``.
        """
        dtype = self.fc[-1].weight.dtype
        x = self.atom_embedding(graph.x.to(dtype))
        y = self.edge_embedding(graph.edge_len.to(dtype))
        edge_index = graph.edge_index
        if len(self.alignn_layers) > 0:
            z = self.angle_embedding(graph.cos_angle.to(dtype))
            for layer in self.alignn_layers:
                x, y, z = layer(edge_index, graph.lg_edge_index, x, y, z)
        for layer in self.gcn_layers:
            x, y = layer(edge_index, x, y)
        if graph.batch is None:  # a single graph
            h = pool_atoms(x, x.new_zeros(x.shape[0], dtype=torch.long), 1, self.pooling)
        else:
            h = pool_atoms(x, graph.batch, graph.num_graphs, self.pooling)
        out = self.fc(h)
        if self.link == "log":
            out = torch.exp(out)
        elif self.link == "logit":
            out = torch.sigmoid(out)
        return out

    def hparams_dict(self) -> dict[str, Any]:
        """Constructor arguments, stored in model files to rebuild the network."""
        return dict(self._hparams)
