"""A farm killed with SIGKILL (what happens to a background job when its session or machine goes
away) leaves no GPAW worker running, and the per-key lock keeps a restarted or second farm
from computing a material twice. Real farms in subprocesses, real GPAW on bulk Si."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
from ase.build import bulk

import esrepro
from esrepro.dft import farm
from esrepro.dft.cache import DFTCache
from esrepro.dft.farm import FarmOptions, compute_products
from esrepro.dft.product import DFTProduct
from esrepro.dft.settings import DFTSettings, cache_key
from helpers import wait_for

pytestmark = [
    pytest.mark.gpaw,
    # Each in-process farm starts a Dask scheduler whose HTTP server wants port 8787.
    pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning"),
]

#: Tiny settings as in test_dft_engine.py: the SCF takes seconds, GPAW's import alone ~1 s.
SMALL = DFTSettings(ecut_ev=200.0, kpt_density=1.5)
SILICON = bulk("Si", "diamond", a=5.43)
KEY = cache_key(SILICON, SMALL)

#: A farm as a user runs one (scripts/warm_dft_cache.py, a DVC stage): one material, Si.
DRIVER = """
import sys
from ase.build import bulk
from esrepro.dft.cache import DFTCache
from esrepro.dft.farm import FarmOptions, compute_products
from esrepro.dft.settings import DFTSettings

cache, journal, scratch, ranks = sys.argv[1:]
options = FarmOptions(workers=1, mpi_ranks=int(ranks), timeout_s=600.0, scratch=scratch)
[record] = compute_products(
    {"Si": bulk("Si", "diamond", a=5.43)}, DFTSettings(ecut_ev=200.0, kpt_density=1.5),
    DFTCache(cache), options, progress=False, journal=journal,
)
print(record.status, record.reason)
"""


def _start_driver(tmp_path: Path, ranks: int, name: str = "driver") -> subprocess.Popen:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(Path(esrepro.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
    )
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - the process writes it
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path / "cache"), str(tmp_path / "journal.jsonl"),
         str(tmp_path / "scratch"), str(ranks)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # a job of its own, as a background job is
    )
    log.close()
    return proc


@pytest.fixture
def cleanup():
    """Lists of the driver processes (Popen) and workers (psutil.Process) a test starts or
    finds; whatever of them still runs at its end is killed, drivers with their trees."""
    drivers: list[subprocess.Popen] = []
    workers: list[psutil.Process] = []
    yield drivers, workers
    for proc in drivers:
        try:
            workers += psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for worker in workers:  # psutil checks that the pid is still the process it found
        if _living(worker):
            worker.kill()


def _living(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False




def _gpaw_processes(driver: subprocess.Popen, ranks: int) -> list[psutil.Process] | None:
    """The driver's descendants once its GPAW worker runs (all `ranks` of it), else None."""
    try:
        family = psutil.Process(driver.pid).children(recursive=True)
        workers = [p for p in family
                   if "esrepro.dft.worker" in p.cmdline() and "mpirun" not in p.name()]
    except psutil.NoSuchProcess:
        return None
    return family if len(workers) == ranks else None


def _lock_is_held(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _journal(tmp_path: Path) -> list[dict]:
    path = tmp_path / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("ranks", [1, 2], ids=["serial", "mpirun"])
def test_killed_farm_leaves_nothing_running_and_a_restart_computes_once(
    tmp_path, cleanup, ranks
) -> None:
    cache = DFTCache(tmp_path / "cache")
    lock = cache.product_path(KEY).with_suffix(".lock")
    driver = _start_driver(tmp_path, ranks)
    cleanup[0].append(driver)
    family = wait_for("the farm's GPAW worker", lambda: _gpaw_processes(driver, ranks))
    cleanup[1].extend(family)
    assert _lock_is_held(lock), "the farm computes Si without holding its lock"

    driver.send_signal(signal.SIGKILL)
    driver.wait()
    # Every process the farm had started dies with it (mpirun and its ranks included), and no
    # other process works on its scratch directory.
    scratch = str(tmp_path / "scratch")
    wait_for(
        "the killed farm's workers to die",
        lambda: not any(_living(p) for p in family) and not [
            p for p in psutil.process_iter(["cmdline"])
            if any(scratch in arg for arg in p.info["cmdline"] or ())
        ],
        timeout_s=30,
    )
    assert not cache.product_path(KEY).exists(), "killed only after Si was done: nothing tested"
    # Its lock file stays behind, but no longer held: the owner is gone.
    assert lock.exists() and not _lock_is_held(lock)

    # The restart runs one rank: what it tests, taking over the lock, does not depend on ranks.
    [record] = compute_products({"Si": SILICON}, SMALL, cache, FarmOptions(mpi_ranks=1),
                                progress=False, journal=tmp_path / "journal.jsonl")
    assert record.status == "computed", record.reason
    assert DFTProduct.load(cache.product_path(KEY)).n_electrons == 8.0
    assert [(line["material_id"], line["status"]) for line in _journal(tmp_path)] == [
        ("Si", "computed")
    ], "computed once, by the restart"
    assert not lock.exists()


def test_a_second_farm_waits_for_the_material_the_first_is_computing(
    tmp_path, cleanup, monkeypatch, caplog
) -> None:
    cache = DFTCache(tmp_path / "cache")
    first = _start_driver(tmp_path, 1, "first")
    cleanup[0].append(first)
    family = wait_for("the first farm's GPAW worker", lambda: _gpaw_processes(first, 1))
    cleanup[1].extend(family)
    [gpaw] = [p for p in family if "esrepro.dft.worker" in p.cmdline()]
    # Pause the first farm's SCF so that it is still running whatever the second one's pace.
    gpaw.suspend()

    launched: list[str] = []
    real_command = farm._worker_command

    def recorded_command(task, ranks):
        launched.append(str(task))
        return real_command(task, ranks)

    monkeypatch.setattr(farm, "_worker_command", recorded_command)
    second: dict = {}

    def second_farm() -> None:
        second["records"] = compute_products(
            {"Si": SILICON}, SMALL, cache, FarmOptions(mpi_ranks=1), progress=False,
            journal=tmp_path / "second.jsonl",
        )

    with caplog.at_level(logging.INFO, logger="esrepro.dft.farm"):
        thread = threading.Thread(target=second_farm, daemon=True)
        thread.start()
        try:
            wait_for("the second farm to defer Si", lambda: any(
                "Si is being computed by another process" in m for m in caplog.messages))
        finally:
            gpaw.resume()
        assert first.wait(timeout=600) == 0
        thread.join(timeout=120)
    assert not thread.is_alive()
    [record] = second["records"]
    assert launched == [], "the second farm launched a GPAW worker for Si"
    assert record.status == "cached" and record.reason == "computed meanwhile by another process"
    assert record.product_path == str(cache.product_path(KEY))
    assert DFTProduct.load(Path(record.product_path)).n_electrons == 8.0
    # The warning named the first farm as the holder.
    assert any(f"pid {first.pid} on " in m for m in caplog.messages)
    assert [line["status"] for line in _journal(tmp_path)] == ["computed"]
