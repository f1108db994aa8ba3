"""Self-describing model files: a saved network records what rebuilds it.

A file written by :func:`save_model` holds the network's class (``"module:qualname"``), its
config (the constructor's keyword arguments as plain JSON, from the network's
``hparams_dict()``), its weights, the provenance (package versions, git commit, machine, time)
and the caller's metadata, so :func:`load_model` rebuilds it without being told the class (as
matgl's ``load_model`` does). Loading stays safe: ``torch.load(weights_only=True)`` reads only
tensors and plain values, and only classes of the ``esrepro`` package are imported.
"""

from __future__ import annotations

import hashlib
import importlib
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from esrepro.plain_json import plain_json
from esrepro.provenance import (
    TRAINING_PACKAGES,
    git_commit,
    machine,
    package_versions,
    utc_timestamp,
)

#: The ``format`` tag of a model file, and the layout version this code writes and reads. Bump
#: the version when the layout changes incompatibly.
MODEL_FORMAT = "esrepro-model"
FORMAT_VERSION = 2
#: Version 1 stored ``hparams`` without the class; such files are refused with this advice.
_FORMAT_V1 = "esrepro-model/1"
#: Model classes are imported only from this package: a model file must not choose what runs.
TRUSTED_PACKAGE = "esrepro"


@dataclass
class SavedModel:
    """Contents of a model file written by :func:`save_model`."""

    cls: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    provenance: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


def class_path(cls: type) -> str:
    """``"module:qualname"`` of ``cls``, as a model file records it."""
    return f"{cls.__module__}:{cls.__qualname__}"


def import_model_class(path: str, where: str = "model file") -> type[nn.Module]:
    """The ``nn.Module`` subclass named ``"module:qualname"``, from the ``esrepro`` package only.

    Anything else (another package, a missing name, not a module class) is a ``ValueError``
    naming ``where`` and the class.
    """
    module_name, _, qualname = str(path).partition(":")
    if not qualname or module_name.split(".")[0] != TRUSTED_PACKAGE:
        raise ValueError(
            f"{where}: refusing to import model class {path!r}: only classes of the "
            f"{TRUSTED_PACKAGE!r} package are rebuilt from model files"
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{where}: model class {path!r} cannot be imported: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ValueError(f"{where}: {path!r} is not a torch.nn.Module class")
    return obj


def model_provenance() -> dict[str, Any]:
    """What shaped a model besides its data: package versions, git commit, machine, time."""
    return {
        "created_utc": utc_timestamp(),
        "git_commit": git_commit(),
        "versions": package_versions(TRAINING_PACKAGES),
        "machine": machine(),
    }


def save_model(
    path: str | Path, model: nn.Module, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Save ``model`` with its class, config, weights, provenance and ``metadata`` in one file.

    The model's class must live in the ``esrepro`` package (at module level) and have a
    ``hparams_dict()`` returning its constructor's keyword arguments: what :func:`load_model`
    needs, checked here so a file that could not be loaded is never written. ``metadata``
    (training parameters, data hashes, ...) must be JSON-like. Tensors are moved to the CPU so
    the file loads anywhere; it is written to a temporary sibling and renamed, so an
    interrupted save never leaves a truncated model behind.
    """
    path = Path(path)
    cls = type(model)
    name = class_path(cls)
    if import_model_class(name, where=f"saving {path}") is not cls:
        raise ValueError(f"saving {path}: {name} does not name the model's own class")
    if not callable(getattr(model, "hparams_dict", None)):
        raise TypeError(f"saving {path}: {name} has no hparams_dict() to rebuild it from")
    payload = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "class": name,
        "config": plain_json(model.hparams_dict(), what=f"{name}.hparams_dict()"),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "provenance": plain_json(model_provenance(), what="provenance"),
        "metadata": plain_json(dict(metadata or {}), what="metadata"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_torch_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` of a data or model file, safely (``weights_only=True``: it cannot run code).

    A missing, empty, truncated or foreign file is a ``ValueError`` naming the path; torch's own
    messages (``PytorchStreamReader failed ...``, a bare ``EOFError``) name none.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path}: not a file written by torch.save: {exc}") from exc
        raise ValueError(
            f"{path}: holds objects other than tensors and plain python values "
            f"(str/int/float/list/dict); convert numpy arrays and paths before saving: {exc}"
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{path}: unreadable torch file (empty, truncated or not written by torch.save): "
            f"{exc or type(exc).__name__}"
        ) from exc


def read_model_file(path: str | Path, map_location: str | torch.device = "cpu") -> SavedModel:
    """The contents of a :func:`save_model` file, without importing or building its class."""
    path = Path(path)
    payload = read_torch_file(path, map_location=map_location)
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found == _FORMAT_V1:
        raise ValueError(
            f"{path}: a model file of an older esrepro ({_FORMAT_V1}, which records no class); "
            "re-run the stage that trains it (dvc repro) to rewrite it"
        )
    if found != MODEL_FORMAT:
        raise ValueError(f"{path}: not an esrepro model file (format {found!r})")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: model file format_version {version!r} is not one this esrepro reads "
            f"({FORMAT_VERSION})"
        )
    for key, kind in (("class", str), ("config", dict), ("state_dict", dict)):
        if not isinstance(payload.get(key), kind):
            raise ValueError(f"{path}: model file has no valid {key!r} ({kind.__name__})")
    return SavedModel(
        cls=payload["class"],
        config=payload["config"],
        state_dict=payload["state_dict"],
        provenance=payload.get("provenance") or {},
        metadata=payload.get("metadata") or {},
        format_version=version,
    )


def build_model(saved: SavedModel, where: str = "model file") -> nn.Module:
    """The network ``saved`` describes, with its weights, in eval mode.

    Built by the class's ``from_config(config)`` where it has one, else ``cls(**config)``.
    """
    cls = import_model_class(saved.cls, where=where)
    from_config = getattr(cls, "from_config", None)
    try:
        net = from_config(saved.config) if callable(from_config) else cls(**saved.config)
        net.load_state_dict(saved.state_dict)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{where}: cannot rebuild {saved.cls} from the file: {exc}") from exc
    return net.eval()


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network saved in ``path`` (class, config and weights), in eval mode."""
    return build_model(read_model_file(path, map_location), where=str(path))


def load_network(
    path: str | Path, expected: type | tuple[type, ...] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`load_model` plus the file's metadata, refusing a model that is not ``expected``.

    ``expected`` (a class or a tuple of classes) turns e.g. an autoencoder file passed where an
    ALIGNN is wanted into a clear error instead of a shape mismatch later.
    """
    saved = read_model_file(path)
    net = build_model(saved, where=str(path))
    if expected is not None and not isinstance(net, expected):
        wanted = expected if isinstance(expected, tuple) else (expected,)
        raise ValueError(
            f"{path} holds a {saved.cls}, expected "
            + " or ".join(class_path(c) for c in wanted)
        )
    return net, saved.metadata


def state_dict_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names and values (unlike its file, free of timestamps)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
