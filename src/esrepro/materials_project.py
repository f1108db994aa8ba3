"""Structures (and formation energies) from the Materials Project through mp-api.

Optional: used when a profile asks for `structure_source: mp`. The API key is read from the
environment variable MP_API_KEY only; it is never written to params, logs or outputs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

MP_API_KEY_ENV = "MP_API_KEY"


class MaterialsProjectError(RuntimeError):
    """The Materials Project cannot be queried (no key, mp-api missing, or the query failed)."""


def api_key() -> str:
    """The key from `$MP_API_KEY`; a clear error when it is not set."""
    key = os.environ.get(MP_API_KEY_ENV, "").strip()
    if not key:
        raise MaterialsProjectError(
            f"structure_source 'mp' needs a Materials Project API key in ${MP_API_KEY_ENV} "
            "(read from the environment only, never stored); or use structure_source 'ecalj'"
        )
    return key


def fetch_structures(material_ids: Iterable[str], dest_dir: Path) -> dict[str, float | None]:
    """Write `<dest_dir>/<mp-id>.vasp` for each id; return formation energies (eV/atom) by id.

    Raises MaterialsProjectError naming the ids the Materials Project did not return.
    """
    key = api_key()
    try:
        from mp_api.client import MPRester
        from pymatgen.io.vasp import Poscar
    except ImportError as err:  # mp-api is an optional extra
        raise MaterialsProjectError("mp-api is not installed: pip install 'esrepro[mp]'") from err

    ids = list(material_ids)
    dest_dir.mkdir(parents=True, exist_ok=True)
    energies: dict[str, float | None] = {}
    try:
        with MPRester(key) as mpr:
            docs = mpr.materials.summary.search(
                material_ids=ids, fields=["material_id", "structure", "formation_energy_per_atom"]
            )
    except Exception as err:  # noqa: BLE001 - network/auth errors surface with context
        raise MaterialsProjectError(
            f"Materials Project query for {len(ids)} ids failed: {err}"
        ) from err
    for doc in docs:
        material_id = str(doc.material_id)
        Poscar(doc.structure).write_file(dest_dir / f"{material_id}.vasp")
        energies[material_id] = doc.formation_energy_per_atom
    missing = sorted(set(ids) - set(energies))
    if missing:
        raise MaterialsProjectError(f"the Materials Project returned no structure for {missing}")
    return energies
