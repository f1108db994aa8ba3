"""The farm on an existing Dask scheduler (`dft.farm.scheduler`), with real `dask scheduler` and
`dask worker` processes on loopback sharing one cache directory, one of which is killed while
it computes a material: nothing may be lost or computed twice."""

from __future__ import annotations

import json
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
from esrepro.dft.cache import DFTCache
from esrepro.dft.farm import FarmOptions, compute_products
from esrepro.dft.product import DFTProduct
from esrepro.dft.settings import DFTSettings, cache_key
from helpers import wait_for

pytestmark = pytest.mark.gpaw

#: Tiny settings as in test_dft_engine.py: each SCF takes seconds.
SMALL = DFTSettings(ecut_ev=200.0, kpt_density=1.5)
MATERIALS = {
    "Si": bulk("Si", "diamond", a=5.43),
    "Al": bulk("Al", "fcc", a=4.05),
    "Si-strained": bulk("Si", "diamond", a=5.50),
}




def _living(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process we started, and everything it started (a GPAW worker included)."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for member in family:
        if _living(member):
            member.kill()


@pytest.fixture
def dask_cluster(tmp_path):
    """(scheduler address, [two worker Popen]): `dask scheduler` and two `dask worker` processes
    on loopback with random ports, one thread each, without nanny (a killed worker stays dead,
    so its material must go to the other one)."""
    env = dict(
        os.environ,
        # The workers unpickle the farm's task by reference: they must import this esrepro.
        PYTHONPATH=os.pathsep.join(
            [str(Path(esrepro.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
    )
    scheduler_file = tmp_path / "scheduler.json"
    started: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - the process writes it
        proc = subprocess.Popen(
            [sys.executable, "-m", "dask", *args], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        started.append(proc)
        return proc

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(scheduler_file))
        address = wait_for(
            "the scheduler file",
            lambda: scheduler_file.is_file() and json.loads(scheduler_file.read_text() or "{}")
            .get("address"),
        )
        workers = [
            start(f"worker{i}", "worker", address, "--host", "127.0.0.1", "--nworkers", "1",
                  "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}")
            for i in (1, 2)
        ]
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address, workers
    finally:
        for proc in reversed(started):
            _stop(proc)


def _gpaw_under(workers: list[subprocess.Popen]):
    """(dask worker, its GPAW worker process) once one of `workers` runs a material, else None."""
    for worker in workers:
        try:
            children = psutil.Process(worker.pid).children(recursive=True)
            for child in children:
                if "esrepro.dft.worker" in child.cmdline():
                    return worker, child
        except psutil.NoSuchProcess:
            continue
    return None


def test_a_killed_dask_worker_loses_and_duplicates_nothing(dask_cluster, tmp_path) -> None:
    address, workers = dask_cluster
    cache = DFTCache(tmp_path / "cache")  # one directory, shared by both workers
    journal = tmp_path / "journal.jsonl"
    options = FarmOptions.from_params({"scheduler": address, "mpi_ranks": 1, "timeout_s": 600})
    outcome: dict = {}

    def farm() -> None:
        try:
            outcome["records"] = compute_products(
                MATERIALS, SMALL, cache, options, progress=False, journal=journal
            )
        except BaseException as err:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = err

    driver = threading.Thread(target=farm, daemon=True)
    driver.start()
    victim, gpaw = wait_for("a GPAW worker under a dask worker", lambda: _gpaw_under(workers))
    # The material it computes: the worker's task file is <scratch>/<material id>.task.json.
    killed_material = Path(gpaw.cmdline()[-1]).name.removesuffix(".task.json")
    assert killed_material in MATERIALS
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    try:
        # Its GPAW worker dies with it instead of computing on, unsupervised.
        wait_for(f"GPAW worker {gpaw.pid} to die with its dask worker",
                  lambda: not _living(gpaw), timeout_s=30)
    finally:
        if _living(gpaw):
            gpaw.kill()

    driver.join(timeout=900)
    assert not driver.is_alive(), "the farm did not finish"
    if "error" in outcome:
        raise outcome["error"]
    records = {r.material_id: r for r in outcome["records"]}
    # Every material, the killed one included, computed exactly once, by a live worker.
    assert {m: r.status for m, r in records.items()} == dict.fromkeys(MATERIALS, "computed")
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert sorted(line["material_id"] for line in lines) == sorted(MATERIALS)
    assert {line["status"] for line in lines} == {"computed"}
    for atoms in MATERIALS.values():
        key = cache_key(atoms, SMALL)
        product = DFTProduct.load(cache.product_path(key))
        assert product.n_electrons > 0 and product.meta["mpi_ranks"] == 1
        assert cache.find_failure(key) is None
    assert not list(cache.root.rglob("*.lock")), "a lock was left behind"
    assert workers[0].poll() is not None or workers[1].poll() is not None
    assert sum(w.poll() is None for w in workers) == 1, "the survivor should still be running"
