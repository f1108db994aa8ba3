"""Conversion of computed values to plain JSON data: dict, list, str, int, float, bool, None.

Metrics files, model-file configs, notebook parameters, structure records and run keys hold
values computed with numpy or torch, or typed (dataclass) configs; one conversion keeps them
alike. Non-finite floats become None (JSON has no NaN or inf, and a strict parser such as DVC's
or a browser's rejects them).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

import numpy as np


def plain_json(obj: Any, *, digits: int | None = None, what: str = "value") -> Any:
    """``obj`` as plain JSON data, converted recursively.

    Mappings become dicts with string keys; sequences and numpy or torch arrays become lists
    (sets sorted, so the output is deterministic); numpy and torch scalars become Python
    numbers; paths become strings; dataclass instances (typed configs) become dicts of their
    fields in order. ``digits`` rounds floats to that many significant digits.
    Anything else is a ``TypeError`` naming ``what`` and the offending type.
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        if not math.isfinite(value):
            return None
        return float(f"{value:.{digits}g}") if digits is not None else value
    if isinstance(obj, PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: plain_json(getattr(obj, f.name), digits=digits, what=what)
            for f in dataclasses.fields(obj)
        }
    if isinstance(obj, Mapping):
        return {str(k): plain_json(v, digits=digits, what=what) for k, v in obj.items()}
    if isinstance(obj, Sequence) and not isinstance(obj, bytes | bytearray):
        return [plain_json(v, digits=digits, what=what) for v in obj]
    if isinstance(obj, set | frozenset):
        items = [plain_json(v, digits=digits, what=what) for v in obj]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors (torch not imported)
        return plain_json(obj.tolist(), digits=digits, what=what)
    raise TypeError(f"{what}: cannot store an object of type {type(obj).__name__} as JSON")
