"""Bandformer (Gong et al., v1): a graph Transformer encoder and a graph2seq decoder that reads
a band structure along a k-path, on torch_geometric.

Paper v1 (the defaults, ``encoder: biased``, ``memory: pooled``, ``target:
center_dispersion``, ``omega: paper``):

* **Encoder** (Methods, eq. 1, Fig. 1d). Node features (``features.py``) are embedded to
  ``d_model``; bond lengths get a Gaussian expansion (``n_gaussians`` centres on
  ``[0, cutoff]``, width the spacing) embedded to ``e_ij`` in R^d. Each layer computes
  ``q, k, v = W_q x, W_k x, W_v x`` (no bias) and per head the logit
  ``q_i . k_j / sqrt(d_head) + m_ij`` with ``m_ij = W_e e_ij``, softmax over the neighbours j
  of i, then ``x_i <- x_i + LayerNorm(sum_j alpha_ij v_j)`` (heads concatenated) and the
  feed-forward block of Fig. 1(d) in the same residual + LayerNorm form. The paper's
  ``m = W_e e`` is a d-vector added to a scalar; we read it as Graphormer's spatial-encoding
  bias, which the paper cites: one scalar per head (``W_e``: d -> n_heads). The crystal
  feature is the sum of the final node states (``x^L = sum_i x_i^L``).
* **Decoder** (eqs. 2-3, Fig. 1e). A k-point's initial feature is ``exp(j 2 pi omega_n k_c)``
  for its three Cartesian coordinates ``k_c`` (A^-1, 2 pi convention) and
  ``omega_n = 10^(-n/(dim-1))``, ``n = 0..dim-1``, ``dim = d_model/6``, written as cos and
  sin (per coordinate ``[cos(omega_0..), sin(omega_0..)]``, d_model numbers). Then
  ``decoder_layers`` pre-norm Transformer decoder layers (self-attention over the k-points,
  graph2seq cross-attention to the encoder output, feed-forward), a LayerNorm and MLP heads.
* **Targets.** The paper predicts band centres (mean over k) and dispersions (E - centre).
  Here a per-k-point head gives raw values whose mean over k is subtracted (so a dispersion
  is zero-mean by construction) and a centre head reads the k-averaged decoder state;
  ``energies = centres + dispersions``.

The public code (qmatyanlab/Bandformer, ``nn/``: a later version of the method) as options:

* ``encoder: gatv2``: its ``GATConvEncoderLayer``: ``LayerNorm(GATv2Conv(x, e))`` with
  ``residual=True`` (a projected skip), self-loops, edge features embedded to 64 numbers; no
  feed-forward block. Not followed: its final ``BatchNorm1d`` over the nodes of a batch (it
  couples the crystals of a batch) and its ``Embedding(Z) * sqrt(d)`` node input (we embed the
  configured node features instead).
* ``memory: nodes``: cross-attention to every node state (padding-masked per crystal) instead
  of the pooled crystal feature.
* ``target: rfft``: its ``DecoderFFT``: the decoder's queries are the first ``rfft_modes``
  coefficients of the rFFT along the path of the k-point encodings (``norm="ortho"``, real
  and imaginary parts projected 2d -> d, plus a sinusoidal encoding of the mode index); two
  MLP heads give the real and imaginary parts of the bands' rFFT coefficients
  (``norm="forward"``, so coefficient 0 is the centre; its imaginary part is fixed to 0), and
  the energies are their inverse rFFT (modes beyond ``rfft_modes`` are zero). The code keeps
  all 65 modes of 128 k-points; ``rfft_modes`` may truncate.
* ``omega: code``: its ``ReciprocalPositionalEncoding``: ``omega_n = 100^(-n/(dim-1))``
  (1 -> 0.01) instead of eq. 3's 1 -> 0.1. Its additional sinusoidal encoding of the k-point
  index is not used for k-point queries: the k-point encoding already identifies a k-point, and
  the Eulerian path's repeated segments should give identical energies.
* ``size: code_published``: its ``configs/train.yaml`` sizes: d_model 768, 6 heads, 6 encoder
  and 6 decoder layers, feed-forward width 2 d = 1536 (``dim_feedforward=int(d_model * 2)``).
  With the code's options (gatv2, nodes, rfft with 65 modes) this counts 55.86M parameters;
  the code's own network, the published "~55M", counts 55.34M: the difference is our node
  embedding MLP for its ``Embedding(100, 768)``, its final BatchNorm, its 41 Gaussians and our
  ``band_offset`` (tests/test_bandformer_model.py pins it). The paper-v1 options at this size
  (biased encoder with its feed-forward blocks, center_dispersion) count 68.6M.

The decoder layers are torch's ``TransformerDecoderLayer`` with ``norm_first=True`` and ReLU
(as the code); the MLP heads use GELU (as the code's ``MLP``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import GATv2Conv, global_add_pool
from torch_geometric.utils import scatter, softmax, to_dense_batch

from esrepro.papers.bandformer.config import (
    CODE_PUBLISHED,
    Encoder,
    Memory,
    ModelParams,
    Omega,
    Size,
    Target,
    shape_problem,
)

__all__ = [
    "CODE_PUBLISHED",
    "BandOutput",
    "Bandformer",
    "BandformerConfig",
    "BiasedGraphAttention",
    "GaussianExpansion",
    "network_config",
    "ReciprocalPositionalEncoding",
    "kpoint_frequencies",
    "n_parameters",
    "rfft_coefficients",
]

#: Edge embedding width of the ``gatv2`` encoder (the code's ``d_edge=64``).
GATV2_EDGE_DIM = 64


@dataclass(frozen=True)
class BandformerConfig:
    """Everything that builds a :class:`Bandformer` (its model file records it).

    ``node_features``: input node feature width; ``n_bands``: bands predicted (paper: 6);
    ``cutoff``: the graph's cutoff (A), the range of the Gaussian expansion. The other fields
    are those of :class:`~esrepro.papers.bandformer.config.ModelParams` with its ``size``
    applied (:func:`network_config`).
    """

    node_features: int
    n_bands: int
    encoder: Encoder = "biased"
    memory: Memory = "pooled"
    target: Target = "center_dispersion"
    omega: Omega = "paper"
    d_model: int = 96
    n_heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    ffn_dim: int = 192
    dropout: float = 0.0
    n_gaussians: int = 40
    rfft_modes: int = 33
    cutoff: float = 8.0

    def __post_init__(self) -> None:
        choices = {"encoder": Encoder, "memory": Memory, "target": Target, "omega": Omega}
        for name, kind in choices.items():
            if getattr(self, name) not in kind.__args__:
                raise ValueError(f"{name} {getattr(self, name)!r}: expected one of {kind.__args__}")
        problem = shape_problem(self.d_model, self.n_heads)
        if problem:
            raise ValueError(problem)
        for name in ("node_features", "n_bands", "encoder_layers", "decoder_layers", "ffn_dim",
                     "rfft_modes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_gaussians < 2 or self.cutoff <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(
                f"need n_gaussians >= 2, cutoff > 0, 0 <= dropout < 1: got {self.n_gaussians}, "
                f"{self.cutoff}, {self.dropout}"
            )


def network_config(
    params: ModelParams, n_bands: int, node_features: int, cutoff: float = 8.0,
    size: Size | None = None,
) -> BandformerConfig:
    """The network's config from the ``bandformer.model`` block for ``n_bands`` bands and
    ``node_features`` input features, at ``size`` (default: the configured one)."""
    values = {f.name: getattr(params, f.name) for f in fields(params) if f.name != "size"}
    if (size or params.size) == "code_published":
        values.update(CODE_PUBLISHED)
    return BandformerConfig(
        node_features=int(node_features), n_bands=int(n_bands), cutoff=float(cutoff), **values
    )


class BandOutput(NamedTuple):
    """A forward pass: ``energies`` ``(B, n_k, N)`` = ``centres`` ``(B, N)`` (mean over k) +
    ``dispersions`` ``(B, n_k, N)`` (zero-mean over k); with ``target: rfft`` also the
    predicted ``coefficients`` ``(B, rfft_modes, N)`` (complex), else ``None``."""

    energies: Tensor
    centres: Tensor
    dispersions: Tensor
    coefficients: Tensor | None


def n_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def rfft_coefficients(bands: Tensor, modes: int) -> Tensor:
    """The first ``modes`` rFFT coefficients along k (dim 1) of ``bands`` ``(B, n_k, N)``,
    ``norm="forward"`` (coefficient 0 is the mean over k): complex ``(B, modes, N)``."""
    return torch.fft.rfft(bands, dim=1, norm="forward")[:, :modes]


def kpoint_frequencies(d_model: int, omega: Omega = "paper") -> Tensor:
    """``omega_n``, ``n = 0..dim-1``, ``dim = d_model/6``: eq. 3 (``10^(-n/(dim-1))``, 1 ->
    0.1) or the public code's (``100^(-n/(dim-1))``, 1 -> 0.01)."""
    dim = d_model // 6
    decades = {"paper": 1.0, "code": 2.0}[omega]
    n = torch.arange(dim, dtype=torch.float64)
    return (10.0 ** (-decades * n / (dim - 1))).float()


class ReciprocalPositionalEncoding(nn.Module):
    """Eqs. 2-3: ``(..., 3)`` k-points (A^-1) -> ``(..., d_model)``; per coordinate c the
    block ``[cos(2 pi omega_n k_c), sin(2 pi omega_n k_c)]`` over ``n = 0..dim-1``."""

    def __init__(self, d_model: int, omega: Omega = "paper") -> None:
        super().__init__()
        self.register_buffer("omega", kpoint_frequencies(d_model, omega), persistent=False)

    def forward(self, k: Tensor) -> Tensor:
        phase = 2 * math.pi * k[..., None] * self.omega  # (..., 3, dim)
        return torch.cat([phase.cos(), phase.sin()], dim=-1).flatten(-2)


def sinusoidal_encoding(length: int, d_model: int) -> Tensor:
    """Vaswani et al.'s position encoding ``(length, d_model)`` (sin on even, cos on odd)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(1e4) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class GaussianExpansion(nn.Module):
    """``exp(-((d - mu_m) / w)^2)`` for ``n`` centres ``mu_m`` on ``[0, cutoff]``, width
    ``w`` their spacing (CGCNN/SchNet's expansion, as the paper cites)."""

    def __init__(self, n: int, cutoff: float) -> None:
        super().__init__()
        self.register_buffer("centres", torch.linspace(0.0, cutoff, n), persistent=False)
        self.width = cutoff / (n - 1)

    def forward(self, distance: Tensor) -> Tensor:
        return torch.exp(-(((distance[:, None] - self.centres) / self.width) ** 2))


def _mlp(d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_out)
    )


class BiasedGraphAttention(nn.Module):
    """Eq. 1: multi-head attention of each atom over its neighbours with an edge bias.

    ``alpha_ij^h = softmax_j(q_i^h . k_j^h / sqrt(d_head) + (W_e e_ij)_h)`` over the edges
    ``j -> i`` (``edge_index[0]`` is j, ``edge_index[1]`` is i; the crystal graph holds both
    directions of every bond); returns ``sum_j alpha_ij^h v_j^h``, heads concatenated. An atom
    without neighbours gets zeros.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.edge_bias = nn.Linear(d_model, n_heads, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        n, h, dh = x.shape[0], self.n_heads, self.d_head
        j, i = edge_index[0], edge_index[1]
        q, k, v = (lin(x).view(n, h, dh) for lin in (self.q, self.k, self.v))
        logits = (q[i] * k[j]).sum(-1) / math.sqrt(dh) + self.edge_bias(edge_attr)  # (E, H)
        alpha = self.dropout(softmax(logits, i, num_nodes=n))
        out = scatter(alpha[..., None] * v[j], i, dim=0, dim_size=n, reduce="sum")
        return out.reshape(n, h * dh)


class BiasedEncoderLayer(nn.Module):
    """Fig. 1(d): ``x + LayerNorm(attention)``, then ``x + LayerNorm(feed-forward)``."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.attn = BiasedGraphAttention(d_model, n_heads, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.ffn = _mlp(d_model, ffn_dim, d_model, dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        x = x + self.norm1(self.attn(x, edge_index, edge_attr))
        return x + self.norm2(self.ffn(x))


class GATv2EncoderLayer(nn.Module):
    """The public code's encoder layer: ``LayerNorm(GATv2Conv(x, e))``, projected residual."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.conv = GATv2Conv(
            d_model, d_model // n_heads, heads=n_heads, edge_dim=GATV2_EDGE_DIM,
            dropout=dropout, residual=True,
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        return self.norm(self.conv(x, edge_index, edge_attr))


class Bandformer(nn.Module):
    """Crystal graph + k-path -> bands; see the module docstring.

    ``forward(batch)`` takes a PyG ``Batch`` (or one ``Data``) of crystal graphs with ``x``,
    ``edge_index``, ``edge_len`` and ``kpoints`` ``(B, n_k, 3)`` (A^-1) and returns a
    :class:`BandOutput`. ``band_offset`` (``(N,)``, zero at construction) is added to the
    centres: training sets it to the training set's mean centres, so the untrained network
    starts at the mean baseline.
    """

    def __init__(self, config: BandformerConfig) -> None:
        super().__init__()
        self.config = c = config
        d = c.d_model
        self.node_embed = _mlp(c.node_features, d, d)
        self.gaussians = GaussianExpansion(c.n_gaussians, c.cutoff)
        if c.encoder == "biased":
            self.edge_embed = nn.Linear(c.n_gaussians, d)
            self.encoder = nn.ModuleList(
                BiasedEncoderLayer(d, c.n_heads, c.ffn_dim, c.dropout)
                for _ in range(c.encoder_layers)
            )
        else:
            self.edge_embed = nn.Linear(c.n_gaussians, GATV2_EDGE_DIM)
            self.encoder = nn.ModuleList(
                GATv2EncoderLayer(d, c.n_heads, c.dropout) for _ in range(c.encoder_layers)
            )
        self.kpe = ReciprocalPositionalEncoding(d, c.omega)
        if c.target == "rfft":
            self.mode_proj = nn.Linear(2 * d, d)
            self.register_buffer(
                "mode_pe", sinusoidal_encoding(c.rfft_modes, d), persistent=False
            )
        self.decoder = nn.ModuleList(
            nn.TransformerDecoderLayer(
                d, c.n_heads, dim_feedforward=c.ffn_dim, dropout=c.dropout, batch_first=True,
                norm_first=True,
            )
            for _ in range(c.decoder_layers)
        )
        self.norm = nn.LayerNorm(d)
        if c.target == "rfft":
            self.real_head = _mlp(d, d // 2, c.n_bands)
            self.imag_head = _mlp(d, d // 2, c.n_bands)
        else:
            self.dispersion_head = _mlp(d, d // 2, c.n_bands)
            self.centre_head = _mlp(d, d // 2, c.n_bands)
        self.band_offset = nn.Parameter(torch.zeros(c.n_bands))

    @classmethod
    def from_config(cls, config: dict[str, Any] | BandformerConfig) -> Bandformer:
        """Rebuild from :meth:`hparams_dict` (what a model file stores)."""
        if isinstance(config, BandformerConfig):
            return cls(config)
        return cls(BandformerConfig(**config))

    def hparams_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def encode(self, data: Data) -> tuple[Tensor, Tensor]:
        """Final node states ``(n_atoms, d)`` and each atom's crystal index ``(n_atoms,)``."""
        x = self.node_embed(data.x)
        edge_attr = self.edge_embed(self.gaussians(data.edge_len))
        for layer in self.encoder:
            x = layer(x, data.edge_index, edge_attr)
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return x, batch

    def memory(self, nodes: Tensor, batch: Tensor, n_graphs: int) -> tuple[Tensor, Tensor | None]:
        """Cross-attention memory ``(B, M, d)`` and its key padding mask (``True`` = pad)."""
        if self.config.memory == "pooled":
            return global_add_pool(nodes, batch, size=n_graphs)[:, None], None
        dense, present = to_dense_batch(nodes, batch, batch_size=n_graphs)
        return dense, ~present

    def forward(self, data: Data) -> BandOutput:
        c = self.config
        kpoints = data.kpoints
        n_graphs, n_k = kpoints.shape[0], kpoints.shape[1]
        nodes, batch = self.encode(data)
        memory, pad = self.memory(nodes, batch, n_graphs)
        queries = self.kpe(kpoints)  # (B, n_k, d)
        if c.target == "rfft":
            if c.rfft_modes > n_k // 2 + 1:
                raise ValueError(
                    f"rfft_modes {c.rfft_modes} exceeds the {n_k // 2 + 1} rFFT coefficients of "
                    f"{n_k} k-points"
                )
            spectrum = torch.fft.rfft(queries, dim=1, norm="ortho")[:, : c.rfft_modes]
            queries = self.mode_proj(torch.cat([spectrum.real, spectrum.imag], -1)) + self.mode_pe
        h = queries
        for layer in self.decoder:
            h = layer(h, memory, memory_key_padding_mask=pad)
        h = self.norm(h)
        if c.target == "rfft":
            real = self.real_head(h)
            real = torch.cat([real[:, :1] + self.band_offset, real[:, 1:]], dim=1)
            imag = self.imag_head(h)
            imag = torch.cat([torch.zeros_like(imag[:, :1]), imag[:, 1:]], dim=1)
            coeffs = torch.complex(real, imag)
            full = F.pad(coeffs, (0, 0, 0, n_k // 2 + 1 - c.rfft_modes))
            energies = torch.fft.irfft(full, n=n_k, dim=1, norm="forward")
            centres = real[:, 0]
            return BandOutput(energies, centres, energies - centres[:, None], coeffs)
        raw = self.dispersion_head(h)
        dispersions = raw - raw.mean(dim=1, keepdim=True)
        centres = self.centre_head(h.mean(dim=1)) + self.band_offset
        return BandOutput(centres[:, None] + dispersions, centres, dispersions, None)

