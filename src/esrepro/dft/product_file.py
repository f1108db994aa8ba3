"""The one file format of every DFT product kind: a compressed ``.npz`` of named arrays.

A file holds the kind's name as a ``product`` tag (uint8 bytes; the ground-state product has
none), the kind's arrays, and ``meta``, the product's JSON record as uint8 bytes. It is
written atomically (a temporary file, then a rename), so an interrupted run (a killed farm
worker) leaves the whole file or none, never half of one for a reader to trip on. Reading
turns whatever a truncated, empty or foreign file raises into one ValueError naming the file.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

# What reading a truncated, empty or foreign .npz raises (zip, npz, JSON and decoding errors).
_DAMAGED_FILE_ERRORS = (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error)


def write_product_file(
    path: Path,
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
    tag: str | None = None,
    after_meta: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write ``product`` (`tag`, if any), `arrays`, ``meta`` and `after_meta` to `path`, in
    that member order, atomically.

    The member order is part of the file's bytes: `after_meta` keeps the ground-state
    product's optional ``atom_weights`` where it always stood, after ``meta``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    members = {} if tag is None else {"product": np.frombuffer(tag.encode(), dtype=np.uint8)}
    members.update(arrays)
    members["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    members.update(after_meta or {})
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **members)
    tmp.replace(path)


@contextmanager
def open_product_file(
    path: Path, label: str, tag: str | None = None, one_line: bool = False
) -> Iterator[tuple[np.lib.npyio.NpzFile, Any]]:
    """Open a product file, check its ``product`` tag (if `tag`), and yield the npz and its
    decoded ``meta``.

    Every damaged-file error inside the ``with`` (the caller's own validation included, as a
    ValueError) becomes ``ValueError("damaged <label> file <path>: <reason>")``; `one_line`
    collapses the reason's whitespace (an empty reason becomes the error's type).
    """
    try:
        with np.load(path) as z:
            if tag is not None and bytes(z["product"]).decode() != tag:
                raise ValueError(f"not a {label}")
            yield z, json.loads(bytes(z["meta"]).decode())
    except _DAMAGED_FILE_ERRORS as err:
        reason = (" ".join(str(err).split()) or type(err).__name__) if one_line else err
        raise ValueError(f"damaged {label} file {path}: {reason}") from err
