"""Worker entry point: one material, one process (group), optionally under ``mpirun``.

    python -m esrepro.dft.worker TASK.json

TASK.json holds the structure, the settings, the product path and the failure path, and for
products other than the ground state their kind (`esrepro.dft.kinds`). Running
each material in its own process lets the farm enforce time-outs and survive crashes in GPAW's
C code; a failure is written as JSON with its reason rather than lost.

A worker never outlives the farm process that launched it (see `follow_the_farm`): the farm
arms a parent-death signal on the process it starts (the worker, or ``mpirun``) and every
worker process, each MPI rank included, arms one on itself.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from ase import Atoms

#: Set by the farm to the pid of the process supervising the worker.
FARM_PID_ENV = "ESREPRO_FARM_PID"

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _load_prctl():
    """libc's prctl, resolved once at import: the farm calls it between fork and exec, where
    nothing may be loaded or imported. None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # the C library Python runs on
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def kill_me_with_my_parent(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send `sig` to this process when its parent (thread) dies; False where it
    cannot."""
    return _PRCTL is not None and _PRCTL(_PR_SET_PDEATHSIG, int(sig)) == 0


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """`Popen(preexec_fn=...)` of the farm: the child gets `sig` when `parent_pid` (the farm
    process) dies. mpirun gets SIGTERM, which it passes on to its ranks before it exits.

    Runs between fork and exec in a threaded process, so it only calls prctl and getppid. The
    check after arming catches a parent that died before the signal was armed.
    """
    kill_me_with_my_parent(sig)
    if os.getppid() != parent_pid:
        os._exit(1)


def follow_the_farm() -> None:
    """Arm this worker process's own parent-death signal and exit if the farm is already gone.

    Under ``mpirun`` each rank is mpirun's child, in its own process group. When the farm dies,
    mpirun terminates its ranks (`die_with_parent`); this signal kills a rank whose mpirun died
    without doing so, and a rank that has not armed it yet finds the farm gone here.
    """
    farm = os.environ.get(FARM_PID_ENV)
    if not farm:  # run by hand: nothing to follow
        return
    kill_me_with_my_parent()
    if not _alive(int(farm)):
        sys.exit(f"esrepro.dft.worker: the farm (pid {farm}) that launched this worker is gone")


def keep_niceness_in_own_session() -> None:
    """Carry this process's nice value over to its scheduler autogroup.

    The farm starts each worker in a session of its own (so a time-out can kill the group);
    with Linux's autogroup scheduling a new session is a new group that competes as a nice-0
    peer whatever the processes' nice values, so a ``nice -n 19`` warm-up took half of a
    2-core machine from nice-0 work. Writing the group's nice (allowed for one's own group
    when lowering priority) restores what ``nice`` asked for.
    """
    niceness = os.nice(0)
    group = Path("/proc/self/autogroup")
    if niceness <= 0 or not group.exists():
        return
    try:
        group.write_text(str(niceness))
    except OSError:  # a kernel without autogroup, or a read-only /proc
        pass


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def atoms_from_dict(d: dict) -> Atoms:
    return Atoms(
        numbers=d["numbers"], cell=d["cell"], positions=d["positions"], pbc=d.get("pbc", True)
    )


def atoms_to_dict(atoms: Atoms) -> dict:
    return {
        "numbers": atoms.numbers.tolist(),
        "cell": atoms.cell.tolist(),
        "positions": atoms.positions.tolist(),
        "pbc": atoms.pbc.tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    follow_the_farm()  # before GPAW's import, which takes seconds
    keep_niceness_in_own_session()

    from gpaw.mpi import world

    from esrepro.dft.kinds import kind_named

    argv = sys.argv[1:] if argv is None else argv
    task = json.loads(Path(argv[0]).read_text())
    # The product kind (`esrepro.dft.kinds`); task files without one are ground states.
    kind = kind_named(task.get("product"))
    settings = kind.settings_from_dict(task["settings"])
    try:
        product = kind.run(atoms_from_dict(task["atoms"]), settings, txt=task.get("txt"))
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
