"""The shared material set: the DOSnp gap table, its seeded subsets and their structures.

The table (``tab_nonmag_all.csv`` of tkotani/DOSnpSupplement, 1,516 non-magnetic Materials
Project materials with LDA and QSGW gaps) and the POSCARs ecalj_auto computed are fetched
pinned. A profile takes the first ``n_materials`` of a seeded order with at most ``max_sites``
sites (:class:`esrepro.config.Selection`, read from the paper's params group). DOSnp,
ALIGNN-DOS (which selects exactly as DOSnp does, so the two default profiles share every DFT
product) and ``scripts/warm_dft_cache.py`` (which computes materials in the seeded order) all
select here.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from ase import Atoms

from esrepro.config import Selection, StructureSource, resolve_path
from esrepro.errors import InputError
from esrepro.fetch import fetch_url
from esrepro.sources import dosnp_structure_source, dosnp_table_source
from esrepro.structures import read_structure

TABLE_COLUMNS = ["material_id", "formula", "nsites", "LDA", "1shot", "2shot"]
DOWNLOADS = "data/downloads"
STRUCTURES = f"{DOWNLOADS}/poscar"


def fetch_table(commit: str, mirror: Path | None, dest: str | Path | None = None) -> pd.DataFrame:
    """Fetch and parse `tab_nonmag_all.csv` at ``commit`` (1,516 rows) into `dest`.

    `dest` defaults to `data/downloads/<commit[:12]>/tab_nonmag_all.csv`. Columns: material_id
    (int), formula, nsites, symmetry-number, symmetry-symbol, LDA (ecalj LDA gap, eV),
    1shot / 2shot (QSGW gaps after iterations 1 / 2, eV), transition.
    """
    source = dosnp_table_source(commit)
    dest = (
        resolve_path(dest) if dest
        else resolve_path(DOWNLOADS) / str(commit)[:12] / source.filename
    )
    return read_table(fetch_url(source.url, source.sha256, dest, mirror=mirror))


def read_table(path: str | Path) -> pd.DataFrame:
    """Parse the gap table; an unparsable file, missing columns or empty, non-numeric or
    duplicated entries in the columns the pipeline uses are errors naming the file."""
    try:
        table = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV table: {exc}") from exc
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    if table.empty:
        raise InputError(f"{path}: the table has no rows")
    for column in ("material_id", "nsites", "LDA", "1shot", "2shot"):
        # A short (ragged) row leaves NaN here; a stray text cell makes the column non-numeric.
        values = pd.to_numeric(table[column], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())  # row positions; line = position + 2
        if len(bad):
            raise InputError(
                f"{path}: column {column!r} has {len(bad)} empty or non-numeric value(s), first in "
                f"line {int(bad[0]) + 2}: {table[column].iloc[bad[0]]!r}"
            )
    duplicated = table["material_id"][table["material_id"].duplicated()]
    if len(duplicated):
        raise InputError(f"{path}: material_id(s) listed twice: {sorted(set(duplicated))[:5]}")
    return table


def seeded_order(material_ids: list[str], seed: int) -> list[str]:
    """The table's materials in a seeded random order.

    Shared with `scripts/warm_dft_cache.py`, which computes materials in this order, so the
    first N materials a (possibly interrupted) paper-scale run has finished are exactly the
    subset `n_materials: N, max_sites: 0` selects.
    """
    order = list(material_ids)
    random.Random(seed).shuffle(order)
    return order


def selected_ids(table: pd.DataFrame, selection: Selection) -> list[str]:
    """The profile's material ids ("mp-<id>") in the seeded order: the first `n_materials`
    (0 = all) of those with nsites <= max_sites (0 = no limit). The order the DFT warm-up
    computes them in, so a finished prefix is a profile that needs no new DFT."""
    ids = [f"mp-{i}" for i in table["material_id"]]
    nsites = dict(zip(ids, table["nsites"], strict=True))
    ordered = [i for i in seeded_order(ids, selection.subset_seed)
               if not selection.max_sites or nsites[i] <= selection.max_sites]
    return ordered[: selection.n_materials] if selection.n_materials else ordered


def select_materials(table: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """The rows of :func:`selected_ids`, sorted by material id, with an ``mp_id`` column
    ("mp-<id>"). `n_materials: 0` keeps every row (the paper-scale run); so does
    `max_sites: 0`."""
    ids = [f"mp-{i}" for i in table["material_id"]]
    rows = table.assign(mp_id=ids).set_index("mp_id").loc[selected_ids(table, selection)]
    return rows.reset_index().sort_values("material_id").reset_index(drop=True)


def fetch_structure_files(
    material_ids: Iterable[str], mirror: Path | None, dest_dir: str | Path = STRUCTURES
) -> dict[str, Path]:
    """Fetch the ecalj_auto POSCAR of each material (pinned) as `<dest_dir>/<mp-id>.vasp`."""
    paths: dict[str, Path] = {}
    for material_id in material_ids:
        source = dosnp_structure_source(material_id)
        paths[material_id] = fetch_url(
            source.url, source.sha256, resolve_path(dest_dir) / f"{material_id}.vasp", mirror=mirror
        )
    return paths


def fetch_structures(
    material_ids: Iterable[str], mirror: Path | None, dest_dir: str | Path = STRUCTURES
) -> dict[str, Atoms]:
    """Fetch (as `fetch_structure_files`) and read each POSCAR; keeps the input order."""
    return {
        material_id: read_structure(path)
        for material_id, path in fetch_structure_files(material_ids, mirror, dest_dir).items()
    }


def fetch_selected_structures(
    material_ids: list[str], source: StructureSource, mirror: Path | None, dest_dir: Path
) -> dict[str, float | None] | None:
    """Write `<dest_dir>/<mp-id>.vasp` for each material from ``source``.

    Returns the formation energies (eV/atom) by id with ``mp`` (an LRLIDG descriptor in the
    DOSnp paper, App. C; only the Materials Project has them), None with ``ecalj``.
    """
    if source == "ecalj":
        fetch_structure_files(material_ids, mirror, dest_dir)
        return None
    from esrepro.materials_project import fetch_structures as fetch_mp

    return fetch_mp(material_ids, dest_dir)
