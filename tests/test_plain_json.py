"""One conversion to plain JSON for metrics, model files, notebook parameters and records."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from esrepro.metrics import write_json
from esrepro.plain_json import plain_json
from esrepro.typed_config import freeze


@dataclass(frozen=True)
class Inner:
    lr: float
    widths: tuple[int, ...]


@dataclass(frozen=True)
class Outer:
    seed: int
    inner: Inner
    extra: dict
    path: Path


def test_numpy_torch_and_paths_become_plain_values() -> None:
    value = {
        1: np.float32(0.5),
        "ints": (np.int64(3), 4),
        "array": np.arange(3),
        "tensor": torch.tensor([[1.5, 2.0]]),
        "flag": np.bool_(True),
        "path": Path("data") / "x.csv",
        "nested": [{"k": np.float64(2.25)}],
    }
    out = plain_json(value)
    assert out == {
        "1": 0.5,
        "ints": [3, 4],
        "array": [0, 1, 2],
        "tensor": [[1.5, 2.0]],
        "flag": True,
        "path": "data/x.csv",
        "nested": [{"k": 2.25}],
    }
    assert type(out["ints"][0]) is int and type(out["flag"]) is bool
    assert json.loads(json.dumps(out)) == out


def test_dataclass_configs_become_dicts_of_their_fields_in_order() -> None:
    cfg = Outer(
        seed=np.int64(7),
        inner=Inner(lr=1e-3, widths=(64, 32)),
        extra=freeze({"b": [1, 2], "a": {"x": None}}),
        path=Path("data") / "x.pt",
    )
    out = plain_json(cfg)
    assert out == {
        "seed": 7,
        "inner": {"lr": 1e-3, "widths": [64, 32]},
        "extra": {"b": [1, 2], "a": {"x": None}},
        "path": "data/x.pt",
    }
    assert list(out) == ["seed", "inner", "extra", "path"]
    assert list(out["extra"]) == ["b", "a"] and type(out["seed"]) is int
    assert plain_json([cfg.inner], digits=1) == [{"lr": 0.001, "widths": [64, 32]}]


def test_a_dataclass_type_is_not_a_config() -> None:
    with pytest.raises(TypeError, match="cannot store an object of type type"):
        plain_json(Inner)


def test_non_finite_floats_become_null_and_digits_round() -> None:
    assert plain_json([math.nan, np.inf, -math.inf]) == [None, None, None]
    assert plain_json({"x": 1.23456789}, digits=3) == {"x": 1.23}
    assert plain_json(1.23456789) == 1.23456789


def test_sets_are_sorted_so_the_output_is_deterministic() -> None:
    assert plain_json({"b", "a", "c"}) == ["a", "b", "c"]


def test_an_unknown_object_is_an_error_naming_what_and_the_type() -> None:
    with pytest.raises(TypeError, match="hparams: cannot store an object of type object"):
        plain_json({"x": object()}, what="hparams")
    with pytest.raises(TypeError, match="bytes"):
        plain_json(b"raw")


def test_metrics_files_keep_six_significant_digits(tmp_path: Path) -> None:
    path = write_json(tmp_path / "m.json", {"mae": np.float64(0.123456789), "n": np.int64(7)})
    assert path.read_text() == '{\n  "mae": 0.123457,\n  "n": 7\n}\n'
