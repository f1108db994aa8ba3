"""Self-describing model files: rebuilt from the file alone, esrepro classes only, versioned."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from esrepro.papers.alignn_dos.autoencoder import DOSAutoencoder
from esrepro.papers.alignn_dos.model import ALIGNN
from esrepro.papers.dosnp.model import DOSnp, DOSnpEnsemble
from esrepro.training import (
    FORMAT_VERSION,
    MODEL_FORMAT,
    load_model,
    load_network,
    read_model_file,
    save_model,
)

MODELS = {
    "dosnp": lambda: DOSnp(pooling="mean", dropout=0.1, hidden=7, input_scale=0.5),
    "dosnp_ensemble": lambda: DOSnpEnsemble(
        DOSnp(pooling="mean+max", dropout=0.0, hidden=5, input_scale=1.0).hparams_dict(), 2
    ),
    "alignn": lambda: ALIGNN(
        output_features=12, alignn_layers=1, gcn_layers=1, edge_input_features=8,
        triplet_input_features=4, embedding_features=8, hidden_features=8, fc_layers=2,
        order="triplet-pair",
    ),
    "autoencoder": lambda: DOSAutoencoder(n_bins=20, latent=3, widths=[9, 5]),
}


def _perturbed(net: nn.Module) -> nn.Module:
    """``net`` with weights no fresh construction has, so a load must really restore them."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    return net


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_papers_model_is_rebuilt_without_naming_its_class(name: str, tmp_path: Path) -> None:
    net = _perturbed(MODELS[name]())
    path = save_model(tmp_path / f"{name}.pt", net, {"note": name})

    torch.manual_seed(2)  # a fresh build would start from other weights
    loaded = load_model(path)

    assert type(loaded) is type(net) and not loaded.training
    assert loaded.hparams_dict() == net.hparams_dict()
    want = net.state_dict()
    got = loaded.state_dict()
    assert list(got) == list(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)


def test_the_file_records_class_config_format_and_provenance(tmp_path: Path) -> None:
    net = MODELS["autoencoder"]()
    saved = read_model_file(save_model(tmp_path / "ae.pt", net, {"n_train": 3}))
    assert saved.cls == "esrepro.papers.alignn_dos.autoencoder:DOSAutoencoder"
    assert saved.config == {"n_bins": 20, "latent": 3, "widths": [9, 5]}
    assert saved.format_version == FORMAT_VERSION
    assert saved.metadata == {"n_train": 3}
    assert saved.provenance["versions"]["torch"] == torch.__version__
    assert {"git_commit", "created_utc", "machine"} <= set(saved.provenance)
    raw = torch.load(tmp_path / "ae.pt", weights_only=True)
    assert raw["format"] == MODEL_FORMAT


def test_autoencoder_output_survives_the_round_trip(tmp_path: Path) -> None:
    net = _perturbed(MODELS["autoencoder"]()).eval()
    dos = torch.rand(4, 20, generator=torch.Generator().manual_seed(0))
    loaded = load_model(save_model(tmp_path / "ae.pt", net))
    with torch.no_grad():
        torch.testing.assert_close(loaded(dos), net(dos), rtol=0, atol=0)


def _rewrite(path: Path, **changes: object) -> Path:
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)
    return path


def test_a_class_outside_esrepro_is_never_imported(tmp_path: Path) -> None:
    path = save_model(tmp_path / "m.pt", MODELS["autoencoder"]())
    _rewrite(path, **{"class": "os:system"})
    with pytest.raises(ValueError, match=re.escape("refusing to import model class 'os:system'")):
        load_model(path)
    _rewrite(path, **{"class": "torch.nn:Linear", "config": {"in_features": 20, "out_features": 3}})
    with pytest.raises(
        ValueError, match="'torch.nn:Linear'.*only classes of the 'esrepro' package"
    ):
        load_model(path)


def test_saving_a_class_outside_esrepro_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="torch.nn.modules.linear:Linear"):
        save_model(tmp_path / "lin.pt", nn.Linear(3, 2))
    assert not (tmp_path / "lin.pt").exists()


def test_a_tampered_format_version_is_refused(tmp_path: Path) -> None:
    path = _rewrite(save_model(tmp_path / "m.pt", MODELS["dosnp"]()), format_version=99)
    with pytest.raises(ValueError, match=f"format_version 99 .*reads \\({FORMAT_VERSION}\\)"):
        load_model(path)


def test_an_old_format_file_says_to_retrain(tmp_path: Path) -> None:
    net = MODELS["dosnp"]()
    path = tmp_path / "old.pt"
    torch.save(
        {"format": "esrepro-model/1", "state_dict": net.state_dict(),
         "hparams": net.hparams_dict(), "metadata": {}},
        path,
    )
    with pytest.raises(ValueError, match=r"older esrepro .*re-run the stage"):
        load_model(path)


def test_load_network_refuses_another_model_kind(tmp_path: Path) -> None:
    path = save_model(tmp_path / "ae.pt", MODELS["autoencoder"]())
    net, metadata = load_network(path, DOSAutoencoder)
    assert isinstance(net, DOSAutoencoder) and metadata == {}
    with pytest.raises(ValueError, match="holds a .*DOSAutoencoder, expected .*ALIGNN"):
        load_network(path, ALIGNN)


def test_metadata_must_be_plain_json(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="metadata: cannot store an object of type object"):
        save_model(tmp_path / "m.pt", MODELS["dosnp"](), {"obj": object()})
    assert not (tmp_path / "m.pt").exists()
