"""Worker entry point: one material, one process (group), optionally under ``mpirun``.

    python -m esrepro.dft.worker TASK.json

TASK.json holds the structure, the settings, the product path and the failure path. Running
each material in its own process lets the farm enforce time-outs and survive crashes in GPAW's
C code; a failure is written as JSON with its reason rather than lost.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from ase import Atoms


def atoms_from_dict(d: dict) -> Atoms:
    return Atoms(numbers=d["numbers"], cell=d["cell"], positions=d["positions"], pbc=d.get("pbc", True))


def atoms_to_dict(atoms: Atoms) -> dict:
    return {
        "numbers": atoms.numbers.tolist(),
        "cell": atoms.cell.tolist(),
        "positions": atoms.positions.tolist(),
        "pbc": atoms.pbc.tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    from gpaw.mpi import world

    from esrepro.dft.gpaw_engine import run_gpaw
    from esrepro.dft.settings import DFTSettings

    argv = sys.argv[1:] if argv is None else argv
    task = json.loads(Path(argv[0]).read_text())
    settings = DFTSettings(**task["settings"])
    try:
        product = run_gpaw(atoms_from_dict(task["atoms"]), settings, txt=task.get("txt"))
    except Exception as err:  # noqa: BLE001 - every failure must be recorded with its reason
        if world.rank == 0:
            failure = {
                "reason": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(limit=8),
            }
            Path(task["failure_path"]).write_text(json.dumps(failure, indent=1))
        return 3
    if world.rank == 0:
        product.save(Path(task["product_path"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
