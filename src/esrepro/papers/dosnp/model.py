"""DOSnp network (paper Sec. II.B, Tables III and IV) and its Lightning wrapper.

Input convention (see ``docs/architecture.md``): PDOS in states/eV per atom-channel,
spin-summed, 16 channels (s, p, d, f real harmonics by m), on a 1000-point grid spanning
[E_F - 1.5 Ry, E_F + 1.0 Ry]. The network predicts the residual E_g^QSGW - E_g^LDA; the band
gap prediction adds the LDA gap of the dataset table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning
import torch
from torch import Tensor, nn

from esrepro.pooling import POOLING_MODES, pool_atoms, pooled_dim

N_CHANNELS = 16
N_GRID = 1000

#: Table IV of the paper: (kind, kernel, stride, padding, expected output length).
TABLE_IV: tuple[tuple[str, int, int, int, int], ...] = (
    ("conv", 5, 2, 0, 498),
    ("avgpool", 3, 2, 1, 249),
    ("conv", 3, 2, 0, 124),
    ("avgpool", 3, 2, 1, 62),
    ("conv", 3, 1, 0, 60),
    ("avgpool", 3, 2, 1, 30),
    ("conv", 3, 1, 0, 28),
    ("avgpool", 3, 2, 1, 14),
    ("conv", 3, 1, 0, 12),
)
FEATURIZER_OUT_LEN = TABLE_IV[-1][-1]
FEATURES_PER_ATOM = N_CHANNELS * FEATURIZER_OUT_LEN  # 192


class DOSFeaturizer(nn.Module):
    """Per-atom 1D CNN of Table IV: ``(n_atoms, 16, 1000) -> (n_atoms, 16, 12)``.

    The channel count stays 16 throughout (the paper keeps the model small on purpose). Every
    "1D-CNN" row is Conv1d followed by ReLU; pooling rows are ``AvgPool1d`` with PyTorch's
    default ``count_include_pad=True``.
    """

    def __init__(self, channels: int = N_CHANNELS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for kind, kernel, stride, padding, _ in TABLE_IV:
            if kind == "conv":
                layers.append(nn.Conv1d(channels, channels, kernel, stride=stride, padding=padding))
                layers.append(nn.ReLU())
            else:
                layers.append(nn.AvgPool1d(kernel, stride=stride, padding=padding))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Featurize each atom's PDOS independently; shape ``(n, 16, L) -> (n, 16, L')``."""
        return self.layers(x)


class DOSnp(nn.Module):
    """DOSnp (Table III): featurizer -> flatten (192) -> pool over atoms -> dropout -> MLP.

    Args:
        pooling: one of :data:`esrepro.pooling.POOLING_MODES`; the paper uses ``"mean+max"``
            (384 pooled features).
        dropout: dropout probability after pooling (paper: 0.3).
        hidden: width of the FC+ReLU layer (paper: 100).
        n_outputs: 1 for the band-gap residual; 3 for the effective-mass head of paper Fig. 6
            (not trained in this repo, QSGW masses are not public).
        input_scale: fixed multiplicative input transform applied to the PDOS (states/eV) before
            the first convolution. It is a constant, not learned and not fitted to the data, so a
            model file fully defines the transform; it only brings PDOS peak heights (tens of
            states/eV for localized d/f states) to O(1) for the optimiser.
    """

    def __init__(
        self,
        *,
        pooling: str,
        dropout: float,
        hidden: int,
        input_scale: float,
        n_outputs: int = 1,
    ) -> None:
        super().__init__()
        if pooling not in POOLING_MODES:
            raise ValueError(
                f"unknown pooling mode {pooling!r}; allowed modes: {', '.join(POOLING_MODES)}"
            )
        self.pooling = pooling
        self.input_scale = float(input_scale)
        self.n_outputs = int(n_outputs)
        self.featurizer = DOSFeaturizer()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(pooled_dim(FEATURES_PER_ATOM, pooling), hidden)
        self.act = nn.ReLU()
        self.out = nn.Linear(hidden, self.n_outputs)

    def atom_features(self, pdos: Tensor) -> Tensor:
        """Per-atom 192-vectors: ``(n_atoms, 16, 1000) -> (n_atoms, 192)``."""
        if pdos.dim() != 3 or pdos.shape[1] != N_CHANNELS:
            raise ValueError(f"pdos must have shape (n_atoms, 16, n_grid); got {tuple(pdos.shape)}")
        x = pdos.to(self.fc.weight.dtype) * self.input_scale
        return self.featurizer(x).flatten(1)

    def forward(self, pdos: Tensor, atom_index: Tensor, n_graphs: int) -> Tensor:
        """Predict ``(n_graphs, n_outputs)`` from the PDOS of all atoms of a batch.

        Args:
            pdos: ``(n_atoms, 16, 1000)`` PDOS of every atom in the batch.
            atom_index: ``(n_atoms,)`` material index in ``[0, n_graphs)`` of each atom.
            n_graphs: number of materials in the batch.
        """
        h = pool_atoms(self.atom_features(pdos), atom_index, n_graphs, self.pooling)
        h = self.act(self.fc(self.dropout(h)))
        return self.out(h)

    def hparams_dict(self) -> dict[str, Any]:
        """Constructor arguments, stored in model files to rebuild the network."""
        return {
            "pooling": self.pooling,
            "dropout": float(self.dropout.p),
            "hidden": int(self.fc.out_features),
            "n_outputs": self.n_outputs,
            "input_scale": self.input_scale,
        }


class DOSnpLightning(lightning.LightningModule):
    """Lightning wrapper: fits the residual E_g^QSGW - E_g^LDA (eV) of band-gap batches.

    Batches are the dicts of :func:`esrepro.papers.dosnp.data.collate_pdos` (``pdos``,
    ``atom_index``, ``n_graphs``, ``lda_gap``, ``qsgw_gap``). ``val_mae`` is the band-gap MAE
    in eV (equal to the residual MAE, the LDA gap being added to both sides).
    """

    def __init__(
        self,
        *,
        pooling: str,
        dropout: float,
        hidden: int,
        input_scale: float,
        lr: float,
        weight_decay: float,
        loss: str,
        initial_residual: float,
    ) -> None:
        super().__init__()
        if loss not in ("mse", "l1"):
            raise ValueError(f"unknown loss {loss!r}; allowed: mse, l1")
        self.save_hyperparameters()
        self.model = DOSnp(
            pooling=pooling, dropout=dropout, hidden=hidden, n_outputs=1, input_scale=input_scale
        )
        self.loss_fn = nn.MSELoss() if loss == "mse" else nn.L1Loss()
        # Start from the mean training residual (QSGW opens LDA gaps by ~1.5 eV on average):
        # the network then learns deviations instead of spending epochs on the offset.
        with torch.no_grad():
            self.model.out.bias.fill_(float(initial_residual))

    def forward(self, pdos: Tensor, atom_index: Tensor, n_graphs: int) -> Tensor:
        """Predicted residual per material, shape ``(n_graphs,)``."""
        return self.model(pdos, atom_index, n_graphs).squeeze(-1)

    def _residual(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        pred = self(batch["pdos"], batch["atom_index"], batch["n_graphs"])
        target = (batch["qsgw_gap"] - batch["lda_gap"]).to(pred.dtype)
        return pred, target

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        pred, target = self._residual(batch)
        loss = self.loss_fn(pred, target)
        # Epoch-level logging only: one point per epoch in the DVC plots, independent of the
        # number of batches, so curves from different dataset sizes compare directly.
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch["n_graphs"])
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        pred, target = self._residual(batch)
        n = batch["n_graphs"]
        self.log("val_loss", self.loss_fn(pred, target), on_epoch=True, batch_size=n)
        self.log("val_mae", (pred - target).abs().mean(), on_epoch=True, batch_size=n)

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """Predicted QSGW band gaps (eV): LDA gap of the table + predicted residual."""
        return (
            batch["lda_gap"].to(torch.float32)
            + self(batch["pdos"], batch["atom_index"], batch["n_graphs"]).float()
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )


class DOSnpEnsemble(nn.Module):
    """The mean prediction of ``n_members`` DOSnp networks of one architecture.

    Members differ only in their training seed (initial weights and batch order): one DOSnp's
    error moves from seed to seed as much as the gap to the baselines, and the mean of a few seeds
    beats each of them (measured in docs/notes/dosnp-training.md). Every member is invariant to
    atom order and supercell size, so their mean is too.
    """

    def __init__(self, member: Mapping[str, Any], n_members: int) -> None:
        super().__init__()
        if int(n_members) < 1:
            raise ValueError(
                f"a DOSnp ensemble needs at least one member, got n_members={n_members}"
            )
        self.members = nn.ModuleList(DOSnp(**member) for _ in range(int(n_members)))

    @property
    def pooling(self) -> str:
        return self.members[0].pooling

    def forward(self, pdos: Tensor, atom_index: Tensor, n_graphs: int) -> Tensor:
        """Mean over members of :meth:`DOSnp.forward`, shape ``(n_graphs, n_outputs)``."""
        return torch.stack([m(pdos, atom_index, n_graphs) for m in self.members]).mean(0)

    def hparams_dict(self) -> dict[str, Any]:
        """Constructor arguments, stored in model files to rebuild the ensemble."""
        return {"member": self.members[0].hparams_dict(), "n_members": len(self.members)}

    @classmethod
    def of(cls, members: Sequence[DOSnp]) -> DOSnpEnsemble:
        """An ensemble holding (copies of the weights of) trained ``members``."""
        if not members:
            raise ValueError("a DOSnp ensemble needs at least one member")
        ensemble = cls(members[0].hparams_dict(), len(members))
        for mine, trained in zip(ensemble.members, members, strict=True):
            if trained.hparams_dict() != members[0].hparams_dict():
                raise ValueError("every member of a DOSnp ensemble must share one architecture")
            mine.load_state_dict(trained.state_dict())
        return ensemble


def load_dosnp(path: str | Path) -> tuple[DOSnp | DOSnpEnsemble, dict[str, Any]]:
    """Rebuild DOSnp from a file written by :func:`esrepro.training.save_model`.

    Files of the train stage hold a :class:`DOSnpEnsemble`; files of a single :class:`DOSnp`
    load as one. Returns the model in eval mode and the file's metadata.
    """
    from esrepro.training import load_network

    return load_network(path, (DOSnp, DOSnpEnsemble))
