"""The mirrored real-silicon sets of the LDOS paper: upstream files read into named sets.

Every pinned file of the registry datasets ``si_testing_framework_libatoms``
(libAtoms/silicon-testing-framework: bulk bc8/st12/sh/hex-diamond prototypes, di-interstitials,
grain boundary, Si(111) surfaces, random-search minima and relaxation trajectories, and a testing
database of amorphous, stacking-fault, grain-boundary and di-interstitial cells) and
``si_diamonds_howweibin`` (104 two-atom diamond cells) is fetched pinned; all frames of every
structure file are read and grouped into named sets (:func:`fetch_silicon_sets`), and exact
duplicates are dropped with a record (:func:`deduplicate`). The generated kinds are in
:mod:`esrepro.papers.ldos.generators`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import ase.io
from ase import Atoms

from esrepro.fetch import fetch_url
from esrepro.sources import load_sources
from esrepro.structures import StructureError, canonical_structure_hash, check_structure

__all__ = [
    "SILICON_DATASETS",
    "STRUCTURE_SUFFIXES",
    "deduplicate",
    "fetch_silicon_sets",
    "is_structure_file",
    "read_frames",
]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Mirrored silicon sets
# ---------------------------------------------------------------------------------------------

SILICON_DATASETS: tuple[str, ...] = ("si_testing_framework_libatoms", "si_diamonds_howweibin")

# Rule for "structure file": the two datasets ship their structures only as (extended) XYZ;
# anything else an upstream folder may hold (README.md, test.py, .pyc) is not a structure and is
# skipped with a log line. A structure file that fails to parse is an error, never skipped.
STRUCTURE_SUFFIXES: tuple[str, ...] = (".xyz", ".extxyz")

# Readable set name per upstream folder of the silicon-testing-framework (folder = first path
# segment of the registry key). Unknown folders fall back to a slug of the folder name.
_SET_BY_FOLDER: dict[str, str] = {
    "bulk_bc8": "bulk_bc8",
    "bulk_hex_diamond": "bulk_hex_diamond",
    "bulk_sh": "bulk_sh",
    "bulk_st12": "bulk_st12",
    "diinterstitial-64-energy": "diinterstitial",
    "gap_6_rss_8_at_CASTEP_rerelax_trajectory_evaluate": "rss_relaxation_trajectory",
    "gap_6_rss_like_open_ended_minima_rerelax_sd2": "rss_minima",
    "grain_boundary_112_Sigma3_tilt": "grain_boundary",
    "surface-energy-111-2n+1_x_2n+1-relaxed": "surface_111",
}
# The testing database mixes kinds in one file; its frames are split by their ``config_type``
# into the same physical-kind sets (amorphous and stacking faults exist only there).
_TESTING_DB_FOLDER = "testing_database_force_error"
_SET_BY_CONFIG_TYPE: dict[str, str] = {
    "aSi": "amorphous",
    "SF": "stacking_fault",
    "GB": "grain_boundary",
    "diinter": "diinterstitial",
}
_SET_BY_DATASET: dict[str, str] = {"si_diamonds_howweibin": "howweibin_diamond"}

# The four bulk_* files are prototypes: upstream's test.py scales each to a starting volume v0
# (bc8 17, sh 18, st12 20, hex-diamond 20 A^3/atom) before relaxing. bc8 (stored at 4.4 A^3/atom,
# 1.43 A bonds) and sh (a unit lattice, 1 A bonds) are unphysical as stored, so they get the
# same v0 as upstream; st12 (17.65) and hex-diamond (20.0) are already physical and kept.
_PROTOTYPE_VOLUME_PER_ATOM: dict[str, float] = {
    "bulk_bc8/bc8.extxyz": 17.0,
    "bulk_sh/sh.extxyz": 18.0,
}


def is_structure_file(path: str | Path) -> bool:
    """True when ``path`` names a structure file by the rule of :data:`STRUCTURE_SUFFIXES`."""
    return PurePosixPath(str(path)).suffix.lower() in STRUCTURE_SUFFIXES


def read_frames(path: str | Path) -> list[Atoms]:
    """Read every frame of an (extended) XYZ file.

    Raises :class:`~esrepro.structures.StructureError` naming the file (and the frame, where one
    is at fault) for a parse failure, a file without frames, an empty frame or a frame whose cell
    has (near) zero volume.
    """
    path = Path(path)
    try:
        frames = ase.io.read(path, index=":", format="extxyz")
    except Exception as exc:  # ASE raises XYZError, ValueError, IndexError ... for bad input
        raise StructureError(
            f"cannot read structure frames from {path}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(frames, list) or not frames:
        raise StructureError(f"structure file {path} holds no frames")
    for index, atoms in enumerate(frames):
        check_structure(atoms, f"frame {index} of {path}")
    return frames


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def _set_name(dataset: str, key: str, atoms: Atoms) -> str:
    if dataset in _SET_BY_DATASET:
        return _SET_BY_DATASET[dataset]
    folder = PurePosixPath(key).parts[0] if "/" in key else ""
    if folder == _TESTING_DB_FOLDER:
        config_type = str(atoms.info.get("config_type", "unknown"))
        return _SET_BY_CONFIG_TYPE.get(config_type, f"testing_db_{_slug(config_type)}")
    if folder in _SET_BY_FOLDER:
        return _SET_BY_FOLDER[folder]
    return _slug(folder or PurePosixPath(key).stem)


def _scale_to_volume_per_atom(atoms: Atoms, volume_per_atom: float) -> None:
    factor = (len(atoms) * volume_per_atom / atoms.get_volume()) ** (1.0 / 3.0)
    atoms.set_cell(atoms.cell.array * factor, scale_atoms=True)


def fetch_silicon_sets(mirror: Path | None, dest_dir: str | Path) -> dict[str, list[Atoms]]:
    """Fetch the mirrored real-silicon datasets and return their frames grouped by set name.

    Every pinned file of :data:`SILICON_DATASETS` is placed under
    ``dest_dir/<dataset>/<registry key>`` with :func:`~esrepro.fetch.fetch_url` (sha256 checked,
    from ``mirror`` when one is given). Files failing
    :func:`is_structure_file` are skipped (logged); every frame of every structure file is read
    (:func:`read_frames`; a file that does not parse raises ``StructureError`` naming it).

    Set names: the upstream folder mapped to a physical kind (``bulk_bc8``, ``bulk_sh``,
    ``bulk_st12``, ``bulk_hex_diamond``, ``diinterstitial``, ``grain_boundary``,
    ``surface_111``, ``rss_minima``, ``rss_relaxation_trajectory``), the testing database split
    by ``config_type`` (``amorphous``, ``stacking_fault``, ``grain_boundary``,
    ``diinterstitial``) and ``howweibin_diamond``. Each ``Atoms.info`` gains ``source`` (the
    URL), ``frame`` (index in its file), ``dataset``, ``set`` and ``kind``; the bc8 and sh
    prototypes are scaled to upstream's starting volume (``info["rescaled_volume_per_atom"]``).
    Nothing is de-duplicated here (the registry holds byte-identical and repeated structures);
    see :func:`deduplicate`.
    """
    datasets = load_sources()["datasets"]
    dest_dir = Path(dest_dir)
    sets: dict[str, list[Atoms]] = {}
    for dataset in SILICON_DATASETS:
        files = datasets[dataset]["files"]
        n_structure_files = 0
        for key, entry in files.items():
            if not is_structure_file(key):
                log.info("%s: skipping non-structure file %s", dataset, key)
                continue
            n_structure_files += 1
            local = fetch_url(
                entry["url"], entry["sha256"], dest_dir / dataset / key, mirror=mirror
            )
            for index, atoms in enumerate(read_frames(local)):
                name = _set_name(dataset, key, atoms)
                if key in _PROTOTYPE_VOLUME_PER_ATOM:
                    _scale_to_volume_per_atom(atoms, _PROTOTYPE_VOLUME_PER_ATOM[key])
                    atoms.info["rescaled_volume_per_atom"] = _PROTOTYPE_VOLUME_PER_ATOM[key]
                atoms.info["source"] = entry["url"]
                atoms.info["frame"] = index
                atoms.info["dataset"] = dataset
                atoms.info["set"] = name
                atoms.info["kind"] = str(atoms.info.get("config_type", name))
                sets.setdefault(name, []).append(atoms)
        if n_structure_files == 0:
            raise StructureError(f"dataset {dataset!r} has no structure files in the registry")
    return sets


def deduplicate(sets: Mapping[str, Sequence[Atoms]]) -> tuple[dict[str, list[Atoms]], list[dict]]:
    """Drop structures whose canonical hash was already seen (in set order, then index order).

    Returns the reduced sets and one row per dropped structure (``set``, ``index``, ``hash``,
    ``duplicate_of`` = ``"<set>[<index>]"`` of the kept copy), so the drop is recorded, not silent.
    The mirrored silicon holds exact duplicates (the two grain-boundary files are byte-identical;
    the testing database repeats the six di-interstitial cells), which would leak across a
    train/test split.
    """
    seen: dict[str, str] = {}
    kept: dict[str, list[Atoms]] = {}
    dropped: list[dict] = []
    for name, structures in sets.items():
        kept[name] = []
        for index, atoms in enumerate(structures):
            digest = canonical_structure_hash(atoms)
            if digest in seen:
                dropped.append(
                    {"set": name, "index": index, "hash": digest, "duplicate_of": seen[digest]}
                )
                continue
            seen[digest] = f"{name}[{index}]"
            kept[name].append(atoms)
    return kept, dropped
