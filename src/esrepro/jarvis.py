"""JARVIS-DFT data: the figshare ``edos_pdos`` set and the ALIGNN repository's sample spectra.

``edos_pdos`` is the 55k-material set of jarvis-tools ``jarvis.db.figshare.data("edos_pdos")``
(figshare file 29216859, ``edos-up_pdos-elast_interp-8-18-2021.json`` zipped): records with a
``jid``, an ``atoms`` dict (``lattice_mat``, ``coords``, ``elements``, ``cartesian``) and
``edos_up``, the OptB88vdW total DOS interpolated on 300 bins of -5..10 eV. Its atoms dicts are
read by jarvis-tools (``jarvis.core.atoms``), but the file is fetched like every other input, not
by jarvis-tools' downloader (which downloads unpinned): the real URL, a sha256 pin, the mirror
when one is configured.
"""

from __future__ import annotations

import csv
import json
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from esrepro.config import resolve_path
from esrepro.errors import ConfigError
from esrepro.fetch import fetch_url
from esrepro.sources import dataset_sources
from esrepro.structures import check_cell, check_structure, read_structure

#: jarvis-tools' registry entry for ``edos_pdos`` (jarvis/db/figshare.py).
EDOS_PDOS_URL = "https://ndownloader.figshare.com/files/29216859"
EDOS_PDOS_MEMBER = "edos-up_pdos-elast_interp-8-18-2021.json"
N_BINS = 300


def jarvis_atoms(d: Mapping[str, Any], where: str = "JARVIS atoms") -> Atoms:
    """An ``ase.Atoms`` from a JARVIS ``atoms`` dict (fractional or Cartesian coordinates).

    Read by jarvis-tools' own ``jarvis.core.atoms.Atoms.from_dict`` (``props`` and
    ``cartesian``, which JARVIS always writes, default to none and fractional), after checks
    that name ``where``: a ``ValueError`` (a ``StructureError`` for a bad structure) for a
    malformed dict, a non-finite or (near) singular ``lattice_mat``, non-finite coordinates or
    anything else :func:`~esrepro.structures.check_structure` rejects.
    """
    from jarvis.core.atoms import Atoms as JarvisAtoms

    cell = np.asarray(d["lattice_mat"], dtype=float)
    if cell.shape != (3, 3):
        raise ValueError(f"{where}: lattice_mat has shape {cell.shape}, expected (3, 3)")
    coords = np.asarray(d["coords"], dtype=float).reshape(-1, 3)
    symbols = [str(s).strip() for s in d["elements"]]
    if len(symbols) != len(coords):
        raise ValueError(f"{where}: {len(symbols)} elements but {len(coords)} coordinates")
    # Before jarvis-tools: it inverts the lattice for Cartesian input (a bare LinAlgError).
    check_cell(cell, where)
    jatoms = JarvisAtoms.from_dict(
        {"props": None, "cartesian": False, **d, "lattice_mat": cell, "coords": coords,
         "elements": symbols}
    )
    # Coordinates as the record stores them: jarvis-tools converts between fractional and
    # Cartesian with the lattice rounded to 5 decimals (jarvis.core.lattice.Lattice), up to
    # ~1e-5 A off the stored cell. (Not jatoms.ase_converter(), which does that conversion and
    # prints and returns None on any error.)
    if jatoms.cartesian:
        coords = {"positions": jatoms.cart_coords}
    else:
        coords = {"scaled_positions": jatoms.frac_coords}
    atoms = Atoms(jatoms.elements, cell=jatoms.lattice_mat, pbc=True, **coords)
    check_structure(atoms, where)
    return atoms


def read_edos_pdos(path: str | Path) -> list[dict[str, Any]]:
    """Records ``{"jid", "atoms": Atoms, "edos_up": (300,) array}`` of an ``edos_pdos`` file.

    ``path`` is the figshare zip or the JSON inside it. A malformed record is an error naming
    the file and the record.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as err:
        raise ValueError(f"cannot read JARVIS edos_pdos file {path}: {err}") from err
    # A zip by its signature, not zipfile.is_zipfile: a truncated zip fails that test and would
    # then be reported as bad JSON.
    is_zip = magic.startswith(b"PK")
    if is_zip:
        try:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith(".json")]
                if len(names) != 1:
                    raise ValueError(f"{path}: expected one .json member in the zip, found {names}")
                member, data = names[0], zf.read(names[0])
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise ValueError(
                f"{path}: bad zip file (corrupt or truncated; fetch it again): "
                f"{type(err).__name__}: {err}"
            ) from err
        source = f"{path} (member {member})"
    else:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read JARVIS edos_pdos file {path}: {err}") from err
        source = str(path)
    try:
        raw = json.loads(data)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        if not is_zip and path.suffix.lower() == ".zip":
            raise ValueError(
                f"{path}: bad zip file (no zip signature, and not JSON either; fetch it again)"
            ) from err
        raise ValueError(
            f"cannot read JARVIS edos_pdos file {source}: not valid JSON: {err}"
        ) from err
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(raw).__name__}")
    if not raw:
        raise ValueError(f"{path}: no records (an empty JSON list)")
    records = []
    for i, rec in enumerate(raw):
        label = rec.get("jid", f"#{i}") if isinstance(rec, dict) else f"#{i}"
        try:
            dos = np.asarray(rec["edos_up"], dtype=np.float64)
            if dos.shape != (N_BINS,):
                raise ValueError(f"edos_up has shape {dos.shape}, expected ({N_BINS},)")
            _check_finite_dos(dos)
            atoms = jarvis_atoms(rec["atoms"], "atoms")
            records.append({"jid": str(rec["jid"]), "atoms": atoms, "edos_up": dos})
        except (KeyError, TypeError, ValueError, AssertionError) as err:
            if isinstance(err, KeyError):
                reason = f"missing key {err}"
            elif isinstance(err, AssertionError):  # ASE's own checks, e.g. on the cell
                reason = f"AssertionError {err}".strip()
            else:
                reason = str(err)
            raise ValueError(f"{path}: bad record {label}: {reason}") from err
    return records


def _check_finite_dos(dos: np.ndarray, what: str = "edos_up") -> None:
    bad = np.flatnonzero(~np.isfinite(dos))
    if bad.size:
        raise ValueError(
            f"{what} has {bad.size} non-finite (NaN or inf) value(s), first at bin {int(bad[0])}"
        )


def fetch_edos_pdos(url: str, sha256: str | None, mirror: Path | None, dest: str | Path) -> Path:
    """Download the ``edos_pdos`` zip at ``url`` (pinned by ``sha256``) to ``dest``, from
    ``mirror`` when one is given.

    jarvis-tools publishes no checksum, so the pin is a param: a missing one is an error that
    says how to set it, never an unverified download.
    """
    if not sha256:
        raise ConfigError(
            f"params.yaml alignn_dos.jarvis.sha256 is not set: pin the sha256 of {url} "
            "(download it once, run `sha256sum` on it, and write the value there)"
        )
    return fetch_url(url, sha256, resolve_path(dest), mirror=mirror)


def fetch_alignn_samples(mirror: Path | None, dest_dir: str | Path) -> list[dict[str, Any]]:
    """The 50 JARVIS spectra of ALIGNN's ``examples/sample_data_multi_prop`` (pinned), as records
    like :func:`read_edos_pdos`'s; files are placed under ``dest_dir`` (from ``mirror`` when one
    is given)."""
    dest_dir = resolve_path(dest_dir)
    for source in dataset_sources("alignn_sample_data_multi_prop"):
        fetch_url(source.url, source.sha256, dest_dir / source.filename, mirror=mirror)
    return read_alignn_samples(dest_dir / "id_prop.csv")


def read_alignn_samples(id_prop: str | Path) -> list[dict[str, Any]]:
    """Read ``id_prop.csv`` (POSCAR name, then 300 DOS values) and the POSCARs beside it."""
    id_prop = Path(id_prop)
    records = []
    with open(id_prop, newline="") as fh:
        for line_no, row in enumerate(csv.reader(fh), start=1):
            if not row:
                continue
            name, values = row[0].strip(), row[1:]
            if len(values) != N_BINS:
                raise ValueError(
                    f"{id_prop}:{line_no}: {len(values)} DOS values for {name}, expected {N_BINS}"
                )
            try:
                dos = np.asarray([float(v) for v in values])
                _check_finite_dos(dos, "the DOS")
            except ValueError as err:
                raise ValueError(f"{id_prop}:{line_no}: bad DOS value for {name}: {err}") from err
            jid = name.removeprefix("POSCAR-").removesuffix(".vasp")
            records.append(
                {"jid": jid, "atoms": read_structure(id_prop.parent / name), "edos_up": dos}
            )
    if not records:
        raise ValueError(f"{id_prop}: no records")
    return records
