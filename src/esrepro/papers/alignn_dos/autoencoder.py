"""The DOS autoencoder of the ALIGNN-DOS paper (Sec. 4 iii, Fig. 3).

Encoder: fully connected layers of decreasing width, each followed by ReLU, down to the latent
vector. Decoder: the mirror image, ReLU everywhere except a sigmoid on the output, which bounds
the reconstructed (per-electron normalized) DOS to [0, 1]. Trained with MSE on the training
spectra. The paper's figure with the layer widths did not survive in our copy of the text, so
the widths are a param (``alignn_dos.autoencoder.widths``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn


class DOSAutoencoder(nn.Module):
    """``n_bins -> widths... -> latent -> reversed(widths)... -> n_bins`` (sigmoid output)."""

    def __init__(
        self, n_bins: int = 300, latent: int = 12, widths: Sequence[int] = (256, 128, 64)
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if latent < 1 or any(w < 1 for w in widths):
            raise ValueError(
                f"latent and widths must be positive, got latent={latent}, widths={widths}"
            )
        self._hparams: dict[str, Any] = {
            "n_bins": int(n_bins), "latent": int(latent), "widths": widths
        }
        sizes = [int(n_bins), *widths, int(latent)]
        enc: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            enc += [nn.Linear(a, b), nn.ReLU()]
        dec: list[nn.Module] = []
        back = sizes[::-1]
        for i, (a, b) in enumerate(zip(back[:-1], back[1:], strict=True)):
            dec += [nn.Linear(a, b), nn.Sigmoid() if i == len(back) - 2 else nn.ReLU()]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def encode(self, dos: Tensor) -> Tensor:
        """``(n, n_bins) -> (n, latent)``."""
        return self.encoder(dos)

    def decode(self, latent: Tensor) -> Tensor:
        """``(n, latent) -> (n, n_bins)`` in [0, 1]."""
        return self.decoder(latent)

    def forward(self, dos: Tensor) -> Tensor:
        return self.decode(self.encode(dos))

    def hparams_dict(self) -> dict[str, Any]:
        """Constructor arguments, stored in model files to rebuild the network."""
        return dict(self._hparams)
