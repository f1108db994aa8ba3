"""VAE-GW networks (Hou, Wu & Qiu, Nat. Commun. 2024): the VAE of Kohn–Sham states and the
network that predicts GW corrections from its latent space. Torch only (no GPAW).

**Input.** One state is ``|psi_nk|^2`` on 40 z-slices (channels) x 28 x 28 in-plane points of
the cell's fractional grid, scaled to a maximum of 1 (the code divides each state by its max).

**VAEs** (:class:`VAE`, ``VAEConfig.kind``):

* ``table1``: the paper's Table 1, 1,132,288 parameters. Kernel sizes from the counts:
  ``40*320*k^2+320 = 115,520`` and ``320*320*k^2+320 = 921,920`` give k = 3; ``320*60+60 =
  19,260`` (one Linear to mu and log sigma^2, latent 30); ``31*1568 = 48,608`` (30 -> 32*7*7);
  ``32*60*k^2+60 = 17,340`` gives k = 3 and ``60*40*k^2+40 = 9,640`` gives k = 2.
  Shapes (strides and paddings as the released ``Vartional_autoencoder_multiple_ROT_TI_GAP.py``):
  28 -(k3, circular pad 1)-> 28 -MaxPool 2-> 14 -(k3, circular)-> 14 -GAP-> 1; decoder 7 -(k3,
  stride 2)-> 15 -(k2, stride 2)-> 30 -> nearest resize to the input's 28 x 28 (the code's
  ``nn.Upsample(size=(H, W))``, the paper's "adaptive layer"; Table 1 does not list it).
* ``plain``: what the released GW pipeline loaded (``Vartional_autoencoder_multiple_train.py``):
  Conv 40->60, pool, Conv 60->32, pool, Linear 1568->60 (zero padding, no rotation, flatten:
  no invariance), the same decoder; 208,700 parameters. Its decoder gives 30 x 30, which the
  code compared with its data directly (so its grid was 30 x 30; 28 and 30 both pool to 7 x 7):
  here both kinds end with the resize to the input grid. The code's charge-density and
  super-state VAEs are ``plain`` with ``hidden=(24, 8)`` and latent 10.

**Rotation (``table1``).** :class:`RotationalConv2d` convolves the four ``rot90`` rotations of
the input and picks, per sample, the one whose post-ReLU activation sum is largest (exact ties:
the lexicographically largest post-ReLU maps, so the pick depends on content only; equal maps:
the lowest rotation). The encoder continues in that chosen (canonical) frame, so mu and log
sigma^2 are exactly invariant to ``rot90`` of the input (bit for bit on one device: the four
candidates of a rotated input are the same tensors, relabelled); the decoder's output is rotated
back by the chosen rotation, so the reconstruction is in the input's frame (equivariant, unless
two rotations give identical maps: an input with that symmetry, whose frame is ambiguous). The
layer's own ``forward`` returns the chosen maps rotated back (``rot90``-equivariant). The
released code instead takes an elementwise max over the four pre-ReLU outputs without rotating
them back, which mixes frames per pixel. ``rot90`` of the 28 x 28 grid of a hexagonal cell's
fractional coordinates is not a lattice symmetry: it resamples the same crystal in the cell
``(-a2, a1)`` (origin moved one grid step), for a square lattice the C4 rotation, for a
hexagonal one a 60-degree instead of a 120-degree cell; the invariance is to that choice of cell
vectors. The z-slices are untouched.

**Translation (``table1``).** ``torch.roll`` of the in-plane grid by ``(s1, s2)`` moves the
cell's origin. Circular convolutions commute with any roll and GAP ignores it, but MaxPool 2 x 2
/ stride 2 only commutes with even shifts: mu is invariant to shifts with both ``s1`` and
``s2`` even (to rounding, as GAP sums in another order), not to odd ones. A 2 x 2 supercell
gives the same mu (the paper's supercell statement; GAP of a tiled map is its mean).

**GW network** (:class:`GWNetwork`, ``GWNetConfig.inputs``):

* ``code``: ``NN_multiple_GW.py``'s 203 -> 120 -> 80 -> 1 MLP (34,241 parameters). Its 203
  inputs, in order: max of the charge density (1); E_DFT (1); a code of the reciprocal lattice
  (1: its ``Autoencoder``'s 3 -> 8 -> 1 ``encoder_info`` of three reciprocal-lattice numbers,
  :class:`LatticeAutoencoder`); the state's mu and log sigma^2 (2 x 30); the charge-density
  VAE's mu and log sigma^2 of rho, rho^2, rho^3, rho^4, each scaled to max 1 (4 x 20); three
  super states' mu and log sigma^2 (3 x 20).
* ``eq3``: the paper's eq. 3, ``f(E_psi(psi_nk), E_s(super states), E_rho(rho), e_nk)``: the
  DFT energy, the state's, each super state's and the charge density's latents, the same
  hidden widths. The paper's "three fully connected layers with 13,801 parameters" cannot be
  these widths: ``(n_in + 1)*120 + 121*80 + 81 = 13,801`` has no integer ``n_in``; with the
  code's inputs and widths the count is 34,241, with eq. 3's (3 super states) 26,801.

``ablate`` drops input groups (Fig. 2f: ``state``, ``super`` or one super state ``super_2``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DECODER_GRID",
    "PAPER_GW_PARAMETERS",
    "PAPER_TABLE1",
    "GWNetConfig",
    "GWNetwork",
    "GlobalAvgPool2d",
    "LatticeAutoencoder",
    "RotationalConv2d",
    "VAE",
    "VAEConfig",
    "assemble_inputs",
    "choose_rotation",
    "input_layout",
    "n_parameters",
    "parameter_table",
    "rotate_per_sample",
]

VAEKind = Literal["table1", "plain"]
GWInputs = Literal["code", "eq3"]

#: Side of the decoder's first feature map (32 x 7 x 7 = 1568, Table 1's Linear-9).
DECODER_GRID = 7

#: Table 1 of the paper: layer (torchsummary's "type-index") -> trainable parameters.
PAPER_TABLE1: dict[str, int] = {
    "RotationalConv2d-1": 115_520, "ReLU-2": 0, "MaxPool2d-3": 0, "Conv2d-4": 921_920,
    "ReLU-5": 0, "AdaptiveAvgPool2d-6": 0, "Flatten-7": 0, "Linear-8": 19_260,
    "Linear-9": 48_608, "ReLU-10": 0, "Unflatten-11": 0, "ConvTranspose2d-12": 17_340,
    "ReLU-13": 0, "ConvTranspose2d-14": 9_640, "Sigmoid-15": 0,
}
#: The paper's count for the GW network (Methods: "three fully connected layers").
PAPER_GW_PARAMETERS = 13_801


# --------------------------------------------------------------------------- rotation


def rotate_per_sample(x: Tensor, k: Tensor) -> Tensor:
    """``rot90(x[i], k[i])`` over the last two dims of each sample ``i`` (square maps)."""
    k = k.to(device=x.device, dtype=torch.long) % 4
    rotations = torch.stack([torch.rot90(x, j, (-2, -1)) for j in range(4)])
    return rotations[k, torch.arange(x.shape[0], device=x.device)]


def _lexicographic_max(rows: Tensor) -> int:
    """Index of the lexicographically largest row of ``rows`` ``(m, D)``; the first on ties."""
    best = 0
    for i in range(1, rows.shape[0]):
        differ = torch.nonzero(rows[i] != rows[best])
        if differ.numel() and bool(rows[i, differ[0, 0]] > rows[best, differ[0, 0]]):
            best = i
    return best


def choose_rotation(activations: Tensor) -> Tensor:
    """Per sample, the candidate with the largest activation sum: ``(4, N, ...)`` -> ``(N,)``.

    ``activations`` are the post-ReLU maps of the four rotations. The sums accumulate in float64;
    exact ties go to the lexicographically largest maps, so the pick depends on the candidates'
    contents and not on their order (what makes the encoder invariant); identical maps resolve
    to the lowest index.
    """
    flat = activations.detach().flatten(2)
    sums = flat.sum(-1, dtype=torch.float64)
    tied = sums == sums.max(dim=0, keepdim=True).values
    choice = tied.to(torch.uint8).argmax(dim=0)
    for n in torch.nonzero(tied.sum(0) > 1).flatten().tolist():
        candidates = torch.nonzero(tied[:, n]).flatten()
        choice[n] = candidates[_lexicographic_max(flat[candidates, n])]
    return choice


def _check_square(x: Tensor, what: str) -> None:
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"{what}: expected (batch, slices, n, n) square in-plane grids, got {tuple(x.shape)}"
        )


class RotationalConv2d(nn.Module):
    """A circular convolution applied to the four ``rot90`` rotations of its input, keeping per
    sample the rotation with the largest post-ReLU sum (:func:`choose_rotation`).

    :meth:`canonical` returns the chosen pre-activation maps in the chosen rotation's frame and
    the rotation index (what the VAE's encoder continues with: its output is then exactly
    invariant); ``forward`` returns them rotated back into the input's frame. With autograd on,
    the choice is made without it and only the chosen rotations are convolved again (the same
    maps to rounding): the backward pass costs one convolution, not four.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-size output), got {kernel_size}")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                              padding_mode="circular")

    def candidates(self, x: Tensor) -> Tensor:
        """Pre-activation maps of ``rot90(x, k)``, ``k = 0..3``: ``(4, N, C, n, n)``, each in its
        own rotated frame. One batched convolution: a sample's maps do not depend on its row."""
        _check_square(x, "RotationalConv2d input")
        stacked = torch.cat([torch.rot90(x, k, (-2, -1)) for k in range(4)])
        return self.conv(stacked).unflatten(0, (4, x.shape[0]))

    def canonical(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The chosen rotation's pre-activation maps ``(N, C, n, n)`` in its frame, and the
        rotation ``k`` ``(N,)`` (the maps are those of ``rot90(x, k)``)."""
        if not torch.is_grad_enabled():
            candidates = self.candidates(x)
            k = choose_rotation(torch.relu(candidates))
            return candidates[k, torch.arange(x.shape[0], device=x.device)], k
        # Training: pick without autograd, then convolve only the chosen rotations with it, so
        # the backward pass costs one convolution instead of four (and four maps are not kept).
        with torch.no_grad():
            k = choose_rotation(torch.relu(self.candidates(x)))
        return self.conv(rotate_per_sample(x, k)), k

    def forward(self, x: Tensor) -> Tensor:
        maps, k = self.canonical(x)
        return rotate_per_sample(maps, -k)


class GlobalAvgPool2d(nn.Module):
    """Table 1's ``AdaptiveAvgPool2d((1, 1))`` as a mean: the CUDA backward of
    ``AdaptiveAvgPool2d`` has no deterministic implementation, and training runs deterministic."""

    table_name = "AdaptiveAvgPool2d"

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(-2, -1), keepdim=True)


# --------------------------------------------------------------------------- VAE


@dataclass(frozen=True)
class VAEConfig:
    """What builds a :class:`VAE` (its model file records it).

    ``channels``/``kernel_size``: the ``table1`` encoder's two convolutions; ``hidden``: the
    ``plain`` encoder's two convolutions, and for both kinds the decoder's, mirrored
    (``hidden[1]`` x 7 x 7 -> ``hidden[0]`` -> slices); ``grid``: the ``plain`` encoder's
    in-plane points (its Linear reads ``hidden[1] * (grid // 4)^2`` numbers; ``table1`` takes
    any even square grid).
    """

    kind: VAEKind = "table1"
    in_channels: int = 40
    latent: int = 30
    channels: int = 320
    kernel_size: int = 3
    hidden: tuple[int, int] = (60, 32)
    grid: int = 28

    def __post_init__(self) -> None:
        if self.kind not in VAEKind.__args__:
            raise ValueError(f"VAE kind {self.kind!r}: expected one of {VAEKind.__args__}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if len(self.hidden) != 2:
            raise ValueError(f"VAE hidden must hold two channel counts, got {self.hidden}")
        for name in ("in_channels", "latent", "channels", "kernel_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"VAE {name} must be >= 1, got {getattr(self, name)}")
        if min(self.hidden) < 1 or self.grid < 4:
            raise ValueError(f"VAE hidden must be >= 1 and grid >= 4, got {self.hidden}, "
                             f"{self.grid}")


def _decoder(latent: int, hidden: Sequence[int], out_channels: int) -> nn.Sequential:
    c0, c1 = hidden
    return nn.Sequential(
        nn.Linear(latent, c1 * DECODER_GRID * DECODER_GRID),
        nn.ReLU(),
        nn.Unflatten(1, (c1, DECODER_GRID, DECODER_GRID)),
        nn.ConvTranspose2d(c1, c0, kernel_size=3, stride=2),
        nn.ReLU(),
        nn.ConvTranspose2d(c0, out_channels, kernel_size=2, stride=2),
        nn.Sigmoid(),
    )


class VAE(nn.Module):
    """VAE of ``(N, slices, n, n)`` wavefunction moduli; ``forward`` returns ``(reconstruction,
    mu, logvar)``. In training mode z is sampled (reparameterisation); in eval mode z = mu, so
    evaluation is deterministic (the code samples in eval too)."""

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or VAEConfig()
        if cfg.kind == "table1":
            k, c = cfg.kernel_size, cfg.channels
            self.encoder = nn.Sequential(
                RotationalConv2d(cfg.in_channels, c, k),
                nn.ReLU(),
                nn.MaxPool2d(2, 2),
                nn.Conv2d(c, c, k, padding=k // 2, padding_mode="circular"),
                nn.ReLU(),
                GlobalAvgPool2d(),
                nn.Flatten(),
                nn.Linear(c, 2 * cfg.latent),
            )
        else:
            c0, c1 = cfg.hidden
            self.encoder = nn.Sequential(
                nn.Conv2d(cfg.in_channels, c0, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2, 2),
                nn.Conv2d(c0, c1, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2, 2),
                nn.Flatten(),
                nn.Linear(c1 * (cfg.grid // 4) ** 2, 2 * cfg.latent),
            )
        self.decoder = _decoder(cfg.latent, cfg.hidden, cfg.in_channels)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | VAEConfig) -> VAE:
        return cls(config if isinstance(config, VAEConfig) else VAEConfig(**config))

    def hparams_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def _check_input(self, x: Tensor) -> None:
        cfg = self.config
        _check_square(x, f"VAE ({cfg.kind}) input")
        if x.shape[1] != cfg.in_channels:
            raise ValueError(f"VAE input has {x.shape[1]} slices, the model {cfg.in_channels}")
        if cfg.kind == "plain" and x.shape[-1] // 4 != cfg.grid // 4:
            raise ValueError(f"plain VAE built for a {cfg.grid} x {cfg.grid} grid, got "
                             f"{x.shape[-1]} x {x.shape[-1]}")

    def encode_with_frame(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(mu, logvar, k)``; ``k`` is the rotation the ``table1`` encoder chose per sample
        (``None`` for ``plain``)."""
        self._check_input(x)
        frame = None
        if self.config.kind == "table1":
            h, frame = self.encoder[0].canonical(x)
            h = self.encoder[1:](h)
        else:
            h = self.encoder(x)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar, frame

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """mu and log sigma^2, ``(N, latent)`` each."""
        mu, logvar, _ = self.encode_with_frame(x)
        return mu, logvar

    def decode(self, z: Tensor, size: int | None = None) -> Tensor:
        """``(N, latent)`` -> ``(N, slices, size, size)`` in [0, 1] (``table1``: in the encoder's
        chosen frame); ``size`` defaults to the configured grid."""
        out = self.decoder(z)
        size = int(size or self.config.grid)
        if out.shape[-1] != size:
            out = F.interpolate(out, size=(size, size), mode="nearest")
        return out

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar, frame = self.encode_with_frame(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        recon = self.decode(z, x.shape[-1])
        if frame is not None:
            recon = rotate_per_sample(recon, -frame)
        return recon, mu, logvar


# --------------------------------------------------------------------------- GW network


@dataclass(frozen=True)
class GWNetConfig:
    """What builds a :class:`GWNetwork`: its inputs (``code`` or ``eq3``, module docstring),
    the latent sizes of the state VAE (``state_latent``) and of the charge-density and
    super-state VAEs (``aux_latent``), the number of super states and (``code``) of density
    powers, hidden widths, and input groups left out (``ablate``)."""

    inputs: GWInputs = "code"
    state_latent: int = 30
    aux_latent: int = 10
    n_super: int = 3
    n_density_powers: int = 4
    hidden: tuple[int, ...] = (120, 80)
    ablate: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.inputs not in GWInputs.__args__:
            raise ValueError(f"GW inputs {self.inputs!r}: expected one of {GWInputs.__args__}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "ablate", tuple(str(a) for a in self.ablate))
        if any(h < 1 for h in self.hidden) or min(self.state_latent, self.aux_latent) < 1:
            raise ValueError(f"GW network widths must be >= 1: hidden {self.hidden}, latents "
                             f"{self.state_latent}, {self.aux_latent}")
        if self.n_super < 0 or self.n_density_powers < 1:
            raise ValueError(f"need n_super >= 0 and n_density_powers >= 1, got {self.n_super}, "
                             f"{self.n_density_powers}")
        full = _full_layout(self)
        names = [name for name, _ in full]
        unknown = [a for a in self.ablate if not any(_in_group(n, a) for n in names)]
        if unknown:
            raise ValueError(f"GW ablate {unknown}: no such input; inputs are {names}")
        if not input_layout(self):
            raise ValueError(f"GW ablate {list(self.ablate)} leaves no input")


def _full_layout(cfg: GWNetConfig) -> list[tuple[str, int]]:
    state, aux = 2 * cfg.state_latent, 2 * cfg.aux_latent
    supers = [(f"super_{i + 1}", aux) for i in range(cfg.n_super)]
    if cfg.inputs == "code":
        return [("max_density", 1), ("e_dft", 1), ("lattice_code", 1), ("state", state),
                *[(f"density_{p + 1}", aux) for p in range(cfg.n_density_powers)], *supers]
    return [("e_dft", 1), ("state", state), *supers, ("density_1", aux)]


def _in_group(name: str, group: str) -> bool:
    return name == group or name.startswith(group + "_")


def input_layout(cfg: GWNetConfig) -> list[tuple[str, int]]:
    """The network's inputs in order, ``(name, width)``, without the ablated groups. Latent
    inputs (``state``, ``density_p`` = rho^p, ``super_i``) are mu then log sigma^2."""
    return [(n, w) for n, w in _full_layout(cfg) if not any(_in_group(n, a) for a in cfg.ablate)]


def assemble_inputs(cfg: GWNetConfig, parts: Mapping[str, Tensor]) -> Tensor:
    """``(N, input size)`` from one tensor per input of :func:`input_layout` (``(N,)`` or
    ``(N, width)``); a missing or misshapen part is a ``ValueError`` naming it."""
    columns, n = [], None
    layout = input_layout(cfg)
    for name, width in layout:
        if name not in parts:
            raise ValueError(f"GW inputs: missing {name!r} (need {[k for k, _ in layout]})")
        t = torch.as_tensor(parts[name])
        t = t.reshape(-1, 1) if t.dim() == 1 else t
        if t.dim() != 2 or t.shape[1] != width or (n is not None and t.shape[0] != n):
            raise ValueError(f"GW input {name!r}: expected ({n or 'N'}, {width}), got "
                             f"{tuple(t.shape)}")
        n = t.shape[0]
        columns.append(t.float())
    return torch.cat(columns, dim=1)


class GWNetwork(nn.Module):
    """MLP ``input -> hidden... -> 1`` (ReLU) predicting Delta GW = E_GW - E_DFT (eV) per
    state; ``forward`` returns ``(N,)``. Inputs are scaled by the buffers ``input_mean`` and
    ``input_scale`` first (identity unless :meth:`set_input_scaling`; the code scales none)."""

    def __init__(self, config: GWNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or GWNetConfig()
        layers: list[nn.Module] = []
        width = self.input_size
        self.register_buffer("input_mean", torch.zeros(width))
        self.register_buffer("input_scale", torch.ones(width))
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def set_input_scaling(self, mean: Tensor, scale: Tensor) -> None:
        """Feed ``(x - mean) / scale`` to the MLP (e.g. the training set's mean and std)."""
        with torch.no_grad():
            self.input_mean.copy_(mean.reshape(-1))
            self.input_scale.copy_(scale.reshape(-1))

    @property
    def input_size(self) -> int:
        return sum(w for _, w in input_layout(self.config))

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | GWNetConfig) -> GWNetwork:
        return cls(config if isinstance(config, GWNetConfig) else GWNetConfig(**config))

    def hparams_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"GW network expects (N, {self.input_size}) inputs, got "
                             f"{tuple(x.shape)}")
        return self.mlp((x - self.input_mean) / self.input_scale).squeeze(-1)


class LatticeAutoencoder(nn.Module):
    """The code's ``encoder_info``/``decoder_info``: three reciprocal-lattice numbers -> one
    (3 -> 8 -> 1) -> three (1 -> 8 -> 3), trained to reconstruct them; the 1-number code is the
    GW network's ``lattice_code`` input."""

    def __init__(self, n_in: int = 3, width: int = 8) -> None:
        super().__init__()
        self.n_in, self.width = int(n_in), int(width)
        self.encoder = nn.Sequential(nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, 1))
        self.decoder = nn.Sequential(nn.Linear(1, width), nn.ReLU(), nn.Linear(width, n_in))

    def hparams_dict(self) -> dict[str, Any]:
        return {"n_in": self.n_in, "width": self.width}

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


# --------------------------------------------------------------------------- counts


def n_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def _layers(module: nn.Module) -> list[nn.Module]:
    children = list(module.children())
    if not children or isinstance(module, RotationalConv2d):
        return [module]
    return [layer for child in children for layer in _layers(child)]


def parameter_table(module: nn.Module) -> dict[str, int]:
    """Trainable parameters per layer in forward order, keyed ``"<Type>-<index>"`` as
    torchsummary (and Table 1) label them; parameterless layers count 0."""
    table = {}
    for i, layer in enumerate(_layers(module), start=1):
        name = getattr(layer, "table_name", type(layer).__name__)
        table[f"{name}-{i}"] = n_parameters(layer)
    return table

