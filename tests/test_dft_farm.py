"""The farm's options, its cache lookups (damaged entries, time-out retries, seeds), its
worker supervision and its per-key locks, without GPAW: `_farm` is replaced where nothing
should be computed and the worker command by a stand-in process where one should run.
Real GPAW farms that are killed: test_dft_farm_kill.py; on a Dask scheduler:
test_dask_scheduler.py."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil
import pytest
from ase.build import bulk

from esrepro.dft import farm
from esrepro.dft.cache import DFTCache
from esrepro.dft.farm import FarmOptions, MaterialRecord, compute_products, timed_out_after
from esrepro.dft.locks import KeyLock
from esrepro.dft.product import N_CHANNELS, DFTProduct
from esrepro.dft.settings import DFTSettings, cache_key, code_versions
from esrepro.dft.stage import cache_from_params, run_dft_stage

# Farms here start an in-process Dask scheduler whose HTTP server wants port 8787.
pytestmark = pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")

SETTINGS = DFTSettings()
MATERIALS = {"Si": bulk("Si", "diamond", a=5.43), "Ge": bulk("Ge", "diamond", a=5.66),
             "C": bulk("C", "diamond", a=3.57)}


def _product() -> DFTProduct:
    rng = np.random.default_rng(0)
    return DFTProduct(
        numbers=np.array([14, 14]), cell=np.eye(3) * 5.43, positions=rng.random((2, 3)),
        eigenvalues=np.sort(rng.normal(size=(3, 10)), axis=1).astype(np.float32),
        k_weights=np.array([0.25, 0.25, 0.5]), fermi_level=0.3, vbm=0.1, cbm=1.1, gap=1.0,
        n_electrons=8.0,
        projector_weights=rng.random((2, N_CHANNELS, 3, 8)).astype(np.float16),
        band_start=1, band_stop=9, channel_mask=np.ones((2, N_CHANNELS), dtype=bool),
    )


def _key(material_id: str) -> str:
    return cache_key(MATERIALS[material_id], SETTINGS)


class FakeFarm:
    """Stands in for `farm._farm`: records what it was asked to compute, computes nothing."""

    def __init__(self) -> None:
        self.todo: list[str] = []

    def __call__(self, todo, settings, cache, options, records, progress, journal_fh) -> None:
        for material_id, _, key, _ in todo:
            self.todo.append(material_id)
            records[material_id] = MaterialRecord(material_id, key, "computed")


@pytest.fixture
def fake_farm(monkeypatch) -> FakeFarm:
    fake = FakeFarm()
    monkeypatch.setattr(farm, "_farm", fake)
    return fake


def _run(cache: DFTCache, options: FarmOptions | None = None, only: tuple[str, ...] = ("Si",)):
    materials = {m: MATERIALS[m] for m in only}
    records = compute_products(materials, SETTINGS, cache, options or FarmOptions(), progress=False)
    return {r.material_id: r for r in records}


# --- FarmOptions.from_params ------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value",
    [
        ("workers", 0),
        ("workers", -3),
        ("workers", 2.5),
        ("workers", True),
        ("workers", "two"),
        ("mpi_ranks", 0),
        ("mpi_ranks", None),
        ("timeout_s", 0),
        ("timeout_s", -1200),
        ("timeout_s", "20m"),
        ("timeout_s", None),
        ("timeout_s", float("inf")),
        ("timeout_clock", "cpu-time"),
        ("timeout_clock", None),
        ("retry_failed", "no"),
        ("retry_failed", 1),
        ("retry_failed", None),
        ("cluster", "slurm"),
        ("cluster", "JobQueueCluster"),  # the base class, not a cluster
        ("cluster", 3),
        ("cluster_kwargs", "queue=long"),
        ("cluster_kwargs", [1, 2]),
        ("scratch", 3),
        ("scheduler", "localhost:8786"),  # no protocol
        ("scheduler", "tcp://scheduler"),  # no port
        ("scheduler", "tcp://:8786"),  # no host
        ("scheduler", "carrier-pigeon://host:8786"),
        ("scheduler", 8786),
        ("scheduler", ""),
    ],
    ids=lambda v: repr(v),
)
def test_farm_options_reject_bad_values_naming_the_param(key, value) -> None:
    with pytest.raises(ValueError, match=rf"^params\.yaml dft\.farm\.{key}: "):
        FarmOptions.from_params({key: value})


def test_farm_options_unknown_key_and_missing_block_are_named() -> None:
    with pytest.raises(ValueError, match=r"\['timout_s'\] in params\.yaml dft\.farm; known: "):
        FarmOptions.from_params({"timout_s": 3600})
    with pytest.raises(ValueError, match=r"^params\.yaml dft\.farm: expected a mapping"):
        FarmOptions.from_params(None)
    with pytest.raises(ValueError, match=r"^my\.farm\.workers: "):
        FarmOptions.from_params({"workers": 0}, source="my.farm")


def test_farm_options_accept_valid_values() -> None:
    from esrepro.config import load_params

    options = FarmOptions.from_params(load_params()["dft"]["farm"])
    assert isinstance(options.workers, int) and options.workers >= 1
    assert isinstance(options.timeout_s, float) and options.timeout_s > 0
    assert options.retry_failed is False
    options = FarmOptions.from_params(
        {"workers": 4.0, "mpi_ranks": "2", "timeout_s": "3600", "retry_failed": True,
         "cluster": "SLURMCluster", "cluster_kwargs": None, "scratch": "/tmp/x"}
    )
    assert (options.workers, options.mpi_ranks, options.timeout_s) == (4, 2, 3600.0)
    assert options.retry_failed is True and options.cluster == "SLURMCluster"
    assert FarmOptions.from_params({}) == FarmOptions()
    assert load_params()["dft"]["farm"]["scheduler"] is None  # today's behaviour by default
    for address in ("tcp://10.0.0.5:8786", "tls://[::1]:8786", "tcp://head-node:8786"):
        assert FarmOptions.from_params({"scheduler": address}).scheduler == address


def test_farm_options_refuse_a_scheduler_and_a_jobqueue_cluster_together() -> None:
    with pytest.raises(ValueError, match=r"^params\.yaml dft\.farm\.scheduler: .*'SLURMCluster'"):
        FarmOptions.from_params({"scheduler": "tcp://h:8786", "cluster": "SLURMCluster"})


# --- the worker is never left running ---------------------------------------------------------


def _stand_in_worker(monkeypatch, seconds: float, code: str | None = None
                     ) -> list[subprocess.Popen]:
    """Make run_one start a process that just sleeps (or runs `code`); return the list its
    Popen objects join."""
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    class RecordingPopen(real_popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    code = code or f"import time; time.sleep({seconds})"
    monkeypatch.setattr(farm, "_worker_command", lambda task, ranks: [sys.executable, "-c", code])
    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
    return started


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_worker_is_killed_when_waiting_for_it_raises(tmp_path, monkeypatch) -> None:
    # A time-out of the wrong type makes communicate() raise after Popen: the worker must not
    # be left computing (and writing into the cache) unsupervised.
    started = _stand_in_worker(monkeypatch, 60)
    try:
        with pytest.raises(TypeError):
            farm.run_one("Si", {}, "ab" * 32, {}, str(tmp_path / "cache"), 1, "20m", str(tmp_path))
        [proc] = started
        assert proc.returncode is not None, "the worker was not reaped"
        assert not _alive(proc.pid)
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_timed_out_worker_is_killed_and_its_limit_recorded(tmp_path, monkeypatch) -> None:
    started = _stand_in_worker(monkeypatch, 60)
    key = "cd" * 32
    try:
        record = farm.run_one("Si", {}, key, {}, str(tmp_path / "cache"), 1, 0.5, str(tmp_path))
        [proc] = started
        assert proc.returncode is not None and not _alive(proc.pid)
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert record["status"] == "failed"
    failure = json.loads(DFTCache(tmp_path / "cache").failure_path(key).read_text())
    assert failure["reason"] == "TimeoutError: exceeded 0.5 s (before the first SCF iteration)"
    assert failure["timeout_s"] == 0.5
    assert timed_out_after(failure) == 0.5


def _run_stand_in(tmp_path, monkeypatch, code: str, timeout_s: float, key: str) -> dict:
    """run_one on a stand-in worker running `code`, under a cpu-clocked time-out."""
    started = _stand_in_worker(monkeypatch, 0, code)
    monkeypatch.setattr(farm, "CPU_CLOCK_POLL_S", 0.1)
    try:
        return farm.run_one("Si", {}, key, {}, str(tmp_path / "cache"), 1, timeout_s,
                            str(tmp_path), timeout_clock="cpu")
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_cpu_clock_lets_an_idle_worker_outlast_its_time_out(tmp_path, monkeypatch) -> None:
    # A worker starved of CPU (here: sleeping) is not timed out by wall time.
    record = _run_stand_in(tmp_path, monkeypatch, "import time; time.sleep(1.5)", 0.5, "a1" * 32)
    assert record["status"] == "failed"  # the stand-in writes no product
    assert not record["reason"].startswith("TimeoutError"), record["reason"]
    assert record["wall_s"] >= 1.5


def test_cpu_clock_times_out_a_busy_worker_on_its_cpu_seconds(tmp_path, monkeypatch) -> None:
    key = "a2" * 32
    record = _run_stand_in(tmp_path, monkeypatch, "while True: pass", 0.5, key)
    assert record["reason"] == (
        "TimeoutError: exceeded 0.5 s of CPU time per rank (before the first SCF iteration)")
    failure = json.loads(DFTCache(tmp_path / "cache").failure_path(key).read_text())
    assert (failure["timeout_s"], failure["timeout_clock"]) == (0.5, "cpu")
    assert timed_out_after(failure) == 0.5  # a longer time-out retries it


def test_cpu_clock_keeps_a_wall_time_guard(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(farm, "CPU_CLOCK_WALL_FACTOR", 10.0)
    key = "a3" * 32
    record = _run_stand_in(tmp_path, monkeypatch, "import time; time.sleep(600)", 0.2, key)
    assert record["reason"] == (
        "TimeoutError: exceeded 2 s of wall time (before the first SCF iteration)")
    assert record["wall_s"] < 30
    failure = json.loads(DFTCache(tmp_path / "cache").failure_path(key).read_text())
    # The configured limit, so that raising it retries the material.
    assert (failure["timeout_s"], failure["timeout_clock"]) == (0.2, "wall-guard")


def test_time_out_kills_every_process_of_the_worker_session(tmp_path, monkeypatch) -> None:
    # mpirun starts each rank in a process group of its own: killing the worker's process
    # group alone left the ranks computing. The stand-in starts such a "rank" and sleeps.
    rank_pid = tmp_path / "rank.pid"
    stand_in = (
        "import os, subprocess, sys, time; "
        "rank = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], "
        "preexec_fn=os.setpgrp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        f"open({str(rank_pid)!r}, 'w').write(str(rank.pid)); time.sleep(600)"
    )
    monkeypatch.setattr(
        farm, "_worker_command", lambda task, ranks: [sys.executable, "-c", stand_in]
    )
    record = farm.run_one("Si", {}, "ef" * 32, {}, str(tmp_path / "cache"), 2, 5.0, str(tmp_path))
    assert record["status"] == "failed" and record["reason"].startswith("TimeoutError")
    assert rank_pid.is_file(), "the stand-in had not started its rank within the time-out"
    rank = psutil.Process(int(rank_pid.read_text()))
    try:
        # Not reaped by us (it is not our child): dead is gone or a zombie.
        rank.wait(timeout=30)
    except psutil.TimeoutExpired:
        rank.kill()
        pytest.fail("the worker's rank outlived the time-out")


# --- per-key locks: no two farms compute one material -----------------------------------------


def test_key_lock_is_exclusive_and_says_who_holds_it(tmp_path) -> None:
    path = tmp_path / "ab" / "key.lock"
    first, second = KeyLock(path), KeyLock(path)
    assert first.acquire(wait=False)
    assert not second.acquire(wait=False)
    assert second.holder().startswith(f"pid {os.getpid()} on {socket.gethostname()} since ")
    first.release()
    assert not path.exists(), "a released lock leaves no file"
    assert second.acquire(wait=False)
    second.release()


def test_lock_of_a_killed_owner_is_taken_over(tmp_path) -> None:
    path = tmp_path / "key.lock"
    owner = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from esrepro.dft.locks import KeyLock; "
         "assert KeyLock(sys.argv[1]).acquire(wait=False); print('held', flush=True); "
         "time.sleep(60)", str(path)],
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(Path(farm.__file__).parents[2]), os.environ.get("PYTHONPATH", "")])),
    )
    try:
        assert owner.stdout.readline() == b"held\n"
        assert not KeyLock(path).acquire(wait=False)
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()
    assert path.exists(), "its owner was killed before it could remove the file"
    lock = KeyLock(path)
    assert lock.acquire(wait=False), "the stale lock was not taken over"
    assert lock.holder().startswith(f"pid {os.getpid()} ")
    lock.release()


def test_a_lock_on_a_file_its_holder_just_removed_is_taken_again(tmp_path, monkeypatch) -> None:
    # The holder unlinks the file as it lets go; a waiter that opened it before must not count
    # a lock on that orphaned file, or a third process could lock the new one too.
    path = tmp_path / "key.lock"
    real_flock = fcntl.flock
    replaced = []

    def flock_while_the_holder_lets_go(fd, operation):
        real_flock(fd, operation)
        if not replaced:
            path.unlink()
            path.touch()  # someone else's new lock file
            replaced.append(fd)

    monkeypatch.setattr(fcntl, "flock", flock_while_the_holder_lets_go)
    lock = KeyLock(path)
    assert lock.acquire(wait=False)
    monkeypatch.undo()
    assert replaced and os.fstat(lock.fd).st_ino == path.stat().st_ino
    assert not KeyLock(path).acquire(wait=False)
    lock.release()


def test_a_busy_material_is_reported_without_launching_a_worker(tmp_path, monkeypatch) -> None:
    launched = _launches(monkeypatch)
    cache = DFTCache(tmp_path / "cache")
    key = "ab" * 32
    other_farm = KeyLock(cache.product_path(key).with_suffix(".lock"))
    assert other_farm.acquire(wait=False)
    try:
        record = farm.run_one("Si", {}, key, {}, str(cache.root), 1, 60.0)
    finally:
        other_farm.release()
    assert record["status"] == "busy" and record["reason"].startswith(f"pid {os.getpid()} on ")
    assert launched == []


def _launches(monkeypatch) -> list[str]:
    """Replace the worker by a stand-in that exits at once; return the list of its launches."""
    launched: list[str] = []

    def command(task, ranks):
        launched.append(Path(task).name)
        return [sys.executable, "-c", "pass"]

    monkeypatch.setattr(farm, "_worker_command", command)
    return launched


def test_materials_are_computed_in_the_order_given(tmp_path, monkeypatch) -> None:
    # Names as VAE-GW's and the table's: Dask groups tasks by key name ("dft-NbSeTe", "dft",
    # "dft-mp"), and with one group per name the small groups ran first, in reverse (the G0W0
    # warm-up of 7 Dec 2026 took positions 7, 92, 89, 87, ...), so no prefix ever finished.
    launched = []

    def command(task, ranks):
        launched.append(Path(task).name.removesuffix(".task.json"))
        return [sys.executable, "-c", "import time; time.sleep(0.2)"]

    monkeypatch.setattr(farm, "_worker_command", command)
    names = ["TaSe2-1T", "VSe2-1T", "NbSeTe-2H", "MoS2-2H", "PdSSe-1T", "SnSTe-1T", "WS2-2H",
             "CrSSe-2H", "HfSeTe-1T", *(f"mp-{i}" for i in range(6)),
             *(f"X{c}Y-1T" for c in "ABCDEF")]
    materials = {n: bulk("Si", "diamond", a=5.0 + 0.01 * i) for i, n in enumerate(names)}
    compute_products(materials, SETTINGS, DFTCache(tmp_path / "cache"),
                     FarmOptions(workers=1, mpi_ranks=1), progress=False)
    assert launched == names


@pytest.mark.parametrize("outcome", ["product", "failure"])
def test_a_material_another_farm_computes_is_waited_for_not_computed(
    tmp_path, monkeypatch, caplog, outcome
) -> None:
    launched = _launches(monkeypatch)
    cache = DFTCache(tmp_path / "cache")
    key = _key("Si")
    other_farm = KeyLock(cache.product_path(key).with_suffix(".lock"))
    assert other_farm.acquire(wait=False)
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(records=_run(cache, FarmOptions(mpi_ranks=1))), daemon=True
    )
    with caplog.at_level(logging.INFO, logger="esrepro.dft.farm"):
        thread.start()
        try:
            deadline = time.monotonic() + 120
            while not any("Si is being computed by another process (pid " in m
                          for m in caplog.messages):
                assert time.monotonic() < deadline, "the farm never deferred Si"
                time.sleep(0.05)
            # The other farm ends Si: with a product, or with a recorded failure.
            if outcome == "product":
                _product().save(cache.product_path(key))
            else:
                cache.record_failure(key, {"reason": "SCFNotConverged: elsewhere"})
        finally:
            other_farm.release()
        thread.join(timeout=120)
    assert not thread.is_alive()
    record = result["records"]["Si"]
    assert launched == [], "Si was computed a second time"
    if outcome == "product":
        assert record.status == "cached" and record.product_path == str(cache.product_path(key))
    else:
        assert record.status == "failed" and record.reason == "SCFNotConverged: elsewhere"


def test_the_failure_a_farm_chose_to_retry_is_computed(tmp_path, monkeypatch) -> None:
    # Once it holds the lock, a task reports a failure record that changed since the farm looked
    # (another farm's), but not the one the farm decided to retry.
    launched = _launches(monkeypatch)
    cache = DFTCache(tmp_path / "cache")
    cache.record_failure(_key("Si"), {"reason": "SCFNotConverged: not converged"})
    _run(cache, FarmOptions(mpi_ranks=1, retry_failed=True))
    assert launched == ["Si.task.json"]


def test_a_killed_dask_worker_is_a_recorded_failure_not_a_crash(tmp_path, monkeypatch) -> None:
    from distributed import KilledWorker

    # What the scheduler raises once the workers running a task died `allowed-failures` + 1
    # times; raised by the task itself here, it reaches the farm the same way.
    def workers_die(material_id, atoms_dict, key, *args):
        if material_id == "Ge":
            raise KilledWorker(f"dft-Ge-{key[:12]}", SimpleNamespace(address="tcp://w:1"), 3)
        return farm.asdict(MaterialRecord(material_id, key, "computed"))

    monkeypatch.setattr(farm, "run_one", workers_die)
    cache = DFTCache(tmp_path / "cache")
    journal = tmp_path / "journal.jsonl"
    materials = {m: MATERIALS[m] for m in ("Si", "Ge")}
    records = {r.material_id: r for r in compute_products(
        materials, SETTINGS, cache, FarmOptions(), progress=False, journal=journal)}
    assert records["Si"].status == "computed"
    ge = records["Ge"]
    assert ge.status == "failed"
    assert (
        ge.reason.startswith("KilledWorker: Attempted to run task 'dft-Ge-")
        and "tcp://w:1" in ge.reason
    )
    # The record names the settings and versions behind its key: a shipped seed files it by them.
    assert cache.find_failure(_key("Ge")) == {
        "material_id": "Ge", "reason": ge.reason, "settings": SETTINGS.to_dict(),
        "versions": code_versions(),
    }
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert sorted((line["material_id"], line["status"]) for line in lines) == [
        ("Ge", "failed"), ("Si", "computed")]


# --- an existing Dask scheduler (dft.farm.scheduler) ------------------------------------------


@pytest.fixture
def running_scheduler():
    """The address of a running Dask cluster (in-process, on loopback TCP) and the cluster."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster.scheduler_address, cluster


def test_farm_runs_on_a_running_scheduler_and_leaves_it_running(
    tmp_path, monkeypatch, running_scheduler
) -> None:
    address, cluster = running_scheduler
    launched = _launches(monkeypatch)
    options = FarmOptions.from_params({"scheduler": address, "mpi_ranks": 1})
    record = _run(DFTCache(tmp_path / "cache"), options)["Si"]
    assert launched == ["Si.task.json"]
    assert record.status == "failed" and record.reason == "worker exited with status 0"
    assert cluster.scheduler.status.name == "running" and len(cluster.scheduler.workers) == 1


def test_farm_refuses_workers_with_other_gpaw_versions(
    tmp_path, monkeypatch, running_scheduler
) -> None:
    address, _ = running_scheduler
    launched = _launches(monkeypatch)
    theirs = farm.code_versions()
    monkeypatch.setattr(farm, "code_versions", lambda: {**theirs, "gpaw": "0.0.1"})
    options = FarmOptions.from_params({"scheduler": address})
    with pytest.raises(RuntimeError, match=rf"^dft\.farm\.scheduler: worker tcp://.* of {address} "
                       r"has .*'gpaw': '" + theirs["gpaw"]):
        _run(DFTCache(tmp_path / "cache"), options)
    assert launched == []


# --- time-outs are retried when the time-out grows --------------------------------------------


@pytest.mark.parametrize(
    "failure, limit",
    [
        ({"reason": "TimeoutError: exceeded 1200 s (SCF iteration 17)"}, 1200.0),
        ({"reason": "TimeoutError: exceeded 0.5 s (before the first SCF iteration)"}, 0.5),
        ({"reason": "TimeoutError: exceeded 1e+06 s"}, 1e6),
        ({"reason": "TimeoutError: exceeded 3600 s"}, 3600.0),
        ({"reason": "TimeoutError: exceeded 3600 s", "timeout_s": 7200}, 7200.0),  # the field wins
        ({"reason": "SCFNotConverged: SCF not converged in 200 iterations"}, None),
        ({"reason": "worker exited with status 1: TimeoutError: exceeded 5 s"}, None),
        ({"reason": "TimeoutError: exceeded many s"}, None),
        ({"reason": "TimeoutError: exceeded 12 seconds"}, None),
    ],
)
def test_timed_out_after_parses_old_and_new_records(failure, limit) -> None:
    assert timed_out_after(failure) == limit


def test_time_outs_under_a_shorter_limit_are_retried(tmp_path, fake_farm, caplog) -> None:
    cache = DFTCache(tmp_path / "cache")
    # Si: an old record (limit only in the reason); Ge: a new one at the current limit;
    # C: not a time-out.
    cache.record_failure(_key("Si"), {"reason": "TimeoutError: exceeded 1200 s (SCF iteration 9)"})
    cache.record_failure(_key("Ge"), {"reason": "TimeoutError: exceeded 3600 s", "timeout_s": 3600})
    cache.record_failure(_key("C"), {"reason": "SCFNotConverged: not converged in 200 iterations"})
    everything = ("Si", "Ge", "C")

    # At the limit they timed out under, nothing is retried.
    records = _run(cache, FarmOptions(timeout_s=1200.0), everything)
    assert fake_farm.todo == [] and {r.status for r in records.values()} == {"failed"}

    with caplog.at_level(logging.INFO, logger="esrepro.dft.farm"):
        records = _run(cache, FarmOptions(timeout_s=3600.0), everything)
    assert fake_farm.todo == ["Si"]
    assert records["Ge"].status == records["C"].status == "failed"
    assert records["C"].reason.startswith("SCFNotConverged")
    assert any("retrying Si" in m and "1200" in m and "3600" in m for m in caplog.messages)

    # retry_failed still retries everything.
    fake_farm.todo.clear()
    _run(cache, FarmOptions(timeout_s=3600.0, retry_failed=True), everything)
    assert fake_farm.todo == list(everything)


# --- damaged entries --------------------------------------------------------------------------


def _damaged_product(path: Path) -> bytes:
    _product().save(path)
    data = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(data)
    return data


def _set_aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".damaged-*"))


def test_good_product_is_served_without_computing(tmp_path, fake_farm) -> None:
    cache = DFTCache(tmp_path / "cache")
    _product().save(cache.product_path(_key("Si")))
    assert _run(cache)["Si"].status == "cached" and fake_farm.todo == []


def test_damaged_product_is_set_aside_and_recomputed(tmp_path, fake_farm, caplog) -> None:
    cache = DFTCache(tmp_path / "cache")
    path = cache.product_path(_key("Si"))
    data = _damaged_product(path)
    with caplog.at_level(logging.WARNING):
        records = _run(cache)
    assert fake_farm.todo == ["Si"] and records["Si"].status == "computed"
    assert not path.exists()
    [aside] = _set_aside(path)
    assert aside.read_bytes() == data, "moved aside, not deleted or rewritten"
    assert any(str(path) in m and aside.name in m for m in caplog.messages)
    # A status query (no repair) reads nothing but the directory.
    path.write_bytes(data)
    assert cache.find_product(_key("Si")) == (path, "cache")


def test_damaged_product_falls_back_to_a_good_seed(tmp_path, fake_farm) -> None:
    seed = DFTCache(tmp_path / "seed")
    _product().save(seed.product_path(_key("Si")))
    cache = DFTCache(tmp_path / "cache", seeds=[seed.root])
    _damaged_product(cache.product_path(_key("Si")))
    record = _run(cache)["Si"]
    assert record.status == "seed" and fake_farm.todo == []
    assert Path(record.product_path) == seed.product_path(_key("Si"))


def test_damaged_seed_product_is_ignored_and_left_alone(tmp_path, fake_farm, caplog) -> None:
    seed = DFTCache(tmp_path / "seed")
    seed_path = seed.product_path(_key("Si"))
    data = _damaged_product(seed_path)
    cache = DFTCache(tmp_path / "cache", seeds=[seed.root])
    with caplog.at_level(logging.WARNING):
        records = _run(cache)
    assert fake_farm.todo == ["Si"] and records["Si"].status == "computed"
    assert seed_path.read_bytes() == data and not _set_aside(seed_path)
    assert any(str(seed_path) in m and "seed" in m for m in caplog.messages)


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"{}", b'{"reason": null}', b"[1, 2]", b"\xff\xfe", b'{"material_id": "Si"}'],
    ids=repr,
)
def test_garbled_failure_record_is_set_aside_and_recomputed(
    tmp_path, fake_farm, caplog, content
) -> None:
    cache = DFTCache(tmp_path / "cache")
    path = cache.failure_path(_key("Si"))
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    # A status query warns and counts it as absent, but moves nothing.
    with caplog.at_level(logging.WARNING):
        assert cache.find_failure(_key("Si")) is None
    assert path.read_bytes() == content and not _set_aside(path)
    assert any(str(path) in m for m in caplog.messages)

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        records = _run(cache)
    assert fake_farm.todo == ["Si"] and records["Si"].status == "computed"
    assert not path.exists()
    [aside] = _set_aside(path)
    assert aside.read_bytes() == content
    assert any(str(path) in m and "computed again" in m for m in caplog.messages)


def test_garbled_seed_failure_record_is_ignored_and_left_alone(tmp_path, fake_farm) -> None:
    seed = DFTCache(tmp_path / "seed")
    path = seed.failure_path(_key("Si"))
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    cache = DFTCache(tmp_path / "cache", seeds=[seed.root])
    assert _run(cache)["Si"].status == "computed" and fake_farm.todo == ["Si"]
    assert path.read_text() == "{}" and not _set_aside(path)


def test_readable_failure_record_is_still_reported(tmp_path, fake_farm) -> None:
    cache = DFTCache(tmp_path / "cache")
    cache.record_failure(_key("Si"), {"reason": "SCFNotConverged: no", "material_id": "Si"})
    record = _run(cache)["Si"]
    assert record.status == "failed" and record.reason == "SCFNotConverged: no"
    assert fake_farm.todo == [] and cache.failure_path(_key("Si")).is_file()


def test_two_damaged_copies_in_one_second_keep_both(tmp_path) -> None:
    from esrepro.dft.cache import _set_aside as set_aside

    path = tmp_path / "x.npz"
    path.write_bytes(b"one")
    first = set_aside(path)
    path.write_bytes(b"two")
    second = set_aside(path)
    assert first != second and first.read_bytes() == b"one" and second.read_bytes() == b"two"


# --- seed caches ------------------------------------------------------------------------------


def test_missing_seed_caches_are_named_in_a_warning(tmp_path, caplog) -> None:
    present = tmp_path / "present"
    present.mkdir()
    missing = tmp_path / "shared" / "dft-cache"
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with caplog.at_level(logging.WARNING, logger="esrepro.dft.cache"):
        cache = DFTCache(tmp_path / "cache", seeds=[missing, present, not_a_dir])
    assert cache.seeds == [present]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    first, second = (w.getMessage() for w in warnings)
    assert str(missing) in first and "does not exist" in first
    assert str(not_a_dir) in second and "not a directory" in second


def test_cache_from_params_checks_its_paths(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"^params\.yaml dft\.seed_caches: expected a list"):
        cache_from_params({"cache": str(tmp_path), "seed_caches": "../shared/dft-cache"})
    with pytest.raises(ValueError, match=r"^params\.yaml dft\.seed_caches\[1\]: "):
        cache_from_params({"cache": str(tmp_path), "seed_caches": [str(tmp_path), None]})
    with pytest.raises(ValueError, match=r"^params\.yaml dft\.cache: "):
        cache_from_params({"seed_caches": []})
    assert cache_from_params({"cache": str(tmp_path), "seed_caches": None}).seeds == []


def test_stage_checks_params_before_touching_the_cache(tmp_path) -> None:
    dft = {"cache": str(tmp_path / "cache"), "seed_caches": [],
           "settings": {"mode": "pww"}, "farm": {"workers": 1}}
    with pytest.raises(ValueError, match=r"^params\.yaml dft\.settings\.mode: "):
        run_dft_stage({}, dft, tmp_path / "out")
    with pytest.raises(ValueError, match=r"^params\.yaml ldos\.dft\.mode: "):
        run_dft_stage({}, dft, tmp_path / "out", settings_source="params.yaml ldos.dft")
    with pytest.raises(ValueError, match=r"^params\.yaml dft\.farm\.timeout_s: "):
        run_dft_stage({}, {**dft, "settings": {}, "farm": {"timeout_s": 0}}, tmp_path / "out")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_set_aside_names_carry_a_timestamp(tmp_path) -> None:
    from esrepro.dft.cache import _set_aside as set_aside

    path = tmp_path / "k.failed.json"
    path.write_text("")
    before = time.strftime("%Y%m%dT%H%M%S")
    aside = set_aside(path)
    stamp = aside.name.removeprefix("k.failed.json.damaged-")
    assert len(stamp) == 15 and before <= stamp <= time.strftime("%Y%m%dT%H%M%S")
