"""DOSnp raw inputs: the QSGW/LDA gap table and the ecalj_auto POSCARs, fetched pinned."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms

from esrepro.config import mirror_dir, resolve_path
from esrepro.fetch import fetch_url
from esrepro.sources import DOSNP_TABLE_COMMIT, dosnp_structure_source, dosnp_table_source
from esrepro.structures import read_structure

TABLE_COLUMNS = ["material_id", "formula", "nsites", "LDA", "1shot", "2shot"]
DOWNLOADS = "data/downloads"
STRUCTURES = f"{DOWNLOADS}/poscar"


def fetch_table(params: dict[str, Any], dest: str | Path | None = None) -> pd.DataFrame:
    """Fetch and parse `tab_nonmag_all.csv` at the pinned commit (1,516 rows) into `dest`.

    `dest` defaults to `data/downloads/<commit[:12]>/tab_nonmag_all.csv`. Columns: material_id
    (int), formula, nsites, symmetry-number, symmetry-symbol, LDA (ecalj LDA gap, eV),
    1shot / 2shot (QSGW gaps after iterations 1 / 2, eV), transition.
    """
    commit = (params.get("dosnp") or {}).get("table_commit", DOSNP_TABLE_COMMIT)
    source = dosnp_table_source(commit)
    dest = resolve_path(dest) if dest else resolve_path(DOWNLOADS) / commit[:12] / source.filename
    path = fetch_url(source.url, source.sha256, dest, mirror=mirror_dir(params))
    return read_table(path)


def read_table(path: str | Path) -> pd.DataFrame:
    """Parse the gap table; an unparsable file, missing columns or empty, non-numeric or
    duplicated entries in the columns the pipeline uses are errors naming the file."""
    try:
        table = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV table: {exc}") from exc
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    if table.empty:
        raise ValueError(f"{path}: the table has no rows")
    for column in ("material_id", "nsites", "LDA", "1shot", "2shot"):
        # A short (ragged) row leaves NaN here; a stray text cell makes the column non-numeric.
        values = pd.to_numeric(table[column], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())  # row positions; line = position + 2
        if len(bad):
            raise ValueError(
                f"{path}: column {column!r} has {len(bad)} empty or non-numeric value(s), first in "
                f"line {int(bad[0]) + 2}: {table[column].iloc[bad[0]]!r}"
            )
    duplicated = table["material_id"][table["material_id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{path}: material_id(s) listed twice: {sorted(set(duplicated))[:5]}")
    return table


def fetch_structure_files(
    material_ids: Iterable[str], params: dict[str, Any], dest_dir: str | Path = STRUCTURES
) -> dict[str, Path]:
    """Fetch the ecalj_auto POSCAR of each material (pinned) as `<dest_dir>/<mp-id>.vasp`."""
    mirror = mirror_dir(params)
    paths: dict[str, Path] = {}
    for material_id in material_ids:
        source = dosnp_structure_source(material_id)
        paths[material_id] = fetch_url(
            source.url, source.sha256, resolve_path(dest_dir) / f"{material_id}.vasp", mirror=mirror
        )
    return paths


def fetch_structures(
    material_ids: Iterable[str], params: dict[str, Any], dest_dir: str | Path = STRUCTURES
) -> dict[str, Atoms]:
    """Fetch (as `fetch_structure_files`) and read each POSCAR; keeps the input order."""
    return {
        material_id: read_structure(path)
        for material_id, path in fetch_structure_files(material_ids, params, dest_dir).items()
    }
