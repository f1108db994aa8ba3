"""Farm out independent per-material DFT calculations with Dask.

Each material is one Dask task; the task launches `esrepro.dft.worker` in its own process
session, under ``mpirun`` when more than one MPI rank is asked for, and enforces a time-out.
Products land in the content-addressed cache as they finish, so an interrupted farm resumes
where it stopped. Failures (SCF not converged, exceptions, crashes, time-outs, a Dask worker
that died) are recorded in the cache with their reason and reported, never dropped.

Workers die with the process supervising them (see `esrepro.dft.worker`), and the task holds a
per-key lock (`esrepro.dft.locks`) while it computes, so a restarted or second farm sharing the
cache waits for a material being computed elsewhere instead of computing it twice. The Dask
cluster is in-process by default, a dask-jobqueue cluster, or an existing scheduler.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ase import Atoms

from esrepro.checks import expect_bool, expect_int, expect_mapping, expect_number, expect_str
from esrepro.dft.band_product import BandSettings
from esrepro.dft.cache import DFTCache
from esrepro.dft.kinds import GROUND_STATE, kind_named, kind_of
from esrepro.dft.locks import KeyLock
from esrepro.dft.settings import DFTSettings, code_versions
from esrepro.dft.worker import FARM_PID_ENV, atoms_to_dict, die_with_parent

log = logging.getLogger(__name__)


#: What a time-out counts (`FarmOptions.timeout_clock`).
TIMEOUT_CLOCKS = ("wall", "cpu")
#: Wall-time guard of a cpu-clocked worker, in multiples of its time-out.
CPU_CLOCK_WALL_FACTOR = 20.0
#: How often a cpu-clocked farm reads its worker's CPU time (s).
CPU_CLOCK_POLL_S = 5.0


@dataclass
class FarmOptions:
    """How to run (never part of the cache key)."""

    workers: int = 1  # concurrent materials
    mpi_ranks: int = 2  # MPI ranks per material
    timeout_s: float = 1800.0
    #: "wall": the time-out counts seconds of wall time; "cpu": CPU seconds of the worker and
    #: its ranks per rank, for a farm that shares its cores (a niced warm-up), where wall time
    #: says more about the load than about the material. A cpu-clocked worker still ends after
    #: CPU_CLOCK_WALL_FACTOR times the time-out of wall time, so a stuck one cannot hang.
    timeout_clock: str = "wall"
    retry_failed: bool = False  # re-run materials whose failure is recorded in the cache
    cluster: str = "local"  # "local" or a dask-jobqueue class name, e.g. "SLURMCluster"
    cluster_kwargs: dict[str, Any] | None = None
    scheduler: str | None = None  # address of a running Dask scheduler, e.g. "tcp://host:8786"
    scratch: str | None = None  # GPAW text logs; default: a temporary directory

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any] | None, source: str = "params.yaml dft.farm"
    ) -> FarmOptions:
        """Options from the `dft.farm` block of params.yaml; unknown keys and bad values are
        errors naming ``<source>.<key>``.

        Checked here because a bad value otherwise surfaces late and expensively: `timeout_s: 0`
        records a time-out for every material in the persistent cache, `"20m"` fails after the
        worker started, `workers: 0` quietly runs one, and `retry_failed: "no"` is truthy.
        """
        if not isinstance(params, Mapping):
            raise ValueError(
                f"{source}: expected a mapping of farm options, got {params!r} "
                "(use {} for the defaults)"
            )
        known = set(cls.__dataclass_fields__)
        unknown = set(params) - known
        if unknown:
            raise ValueError(
                f"unknown farm option(s) {sorted(unknown, key=str)} in {source}; "
                f"known: {sorted(known)}"
            )
        values: dict[str, Any] = {}
        for name, value in params.items():
            label = f"{source}.{name}"
            if name in ("workers", "mpi_ranks"):
                values[name] = expect_int(value, label, minimum=1)
            elif name == "timeout_s":
                values[name] = expect_number(value, label, minimum=0.0)
            elif name == "retry_failed":
                values[name] = expect_bool(value, label)
            elif name == "timeout_clock":
                if value not in TIMEOUT_CLOCKS:
                    raise ValueError(f"{label}: expected one of {list(TIMEOUT_CLOCKS)}, "
                                     f"got {value!r}")
                values[name] = value
            elif name == "cluster":
                values[name] = _check_cluster(value, label)
            elif name == "cluster_kwargs":
                values[name] = expect_mapping(value, label, allow_none=True)
            elif name == "scheduler":
                values[name] = None if value is None else _check_scheduler(value, label)
            elif name == "scratch":
                values[name] = None if value is None else expect_str(value, label)
            else:  # a new field without a check: fail here rather than pass it unchecked
                raise AssertionError(f"FarmOptions.from_params does not check {name!r}")
        if values.get("scheduler") and values.get("cluster", "local") != "local":
            raise ValueError(
                f"{source}.scheduler: a scheduler address and cluster {values['cluster']!r} "
                "both name the cluster; set one (cluster: local with a scheduler)"
            )
        return cls(**values)


def _check_scheduler(value: Any, label: str) -> str:
    """A Dask scheduler address with protocol, host and port, e.g. "tcp://10.0.0.5:8786"."""
    from distributed.comm import parse_address, parse_host_port
    from distributed.comm.registry import backends

    expected = "expected null or a Dask scheduler address such as 'tcp://host:8786'"
    if not isinstance(value, str):
        raise ValueError(f"{label}: {expected}, got {value!r}")
    try:
        protocol, location = parse_address(value, strict=True)
        host, port = parse_host_port(location)
    except (ValueError, TypeError):
        raise ValueError(f"{label}: {expected}, got {value!r}") from None
    if protocol not in backends or not host or port is None:
        raise ValueError(f"{label}: {expected}, got {value!r}")
    return value


def _check_cluster(value: Any, label: str) -> str:
    """"local", or the name of a dask-jobqueue cluster class (imported only for those)."""
    if value == "local":
        return value
    if not isinstance(value, str):
        raise ValueError(
            f"{label}: expected 'local' or a dask-jobqueue cluster class name, got {value!r}"
        )
    try:
        import dask_jobqueue
    except ImportError:
        raise ValueError(
            f"{label}: {value!r} needs dask-jobqueue, which is not installed"
        ) from None
    base = dask_jobqueue.JobQueueCluster
    names = sorted(
        name for name, obj in vars(dask_jobqueue).items()
        if isinstance(obj, type) and issubclass(obj, base) and obj is not base
    )
    if value not in names:
        raise ValueError(f"{label}: expected 'local' or one of {names}, got {value!r}")
    return value


@dataclass
class MaterialRecord:
    """Outcome for one material, as written to the stage's summary."""

    material_id: str
    cache_key: str
    # "computed" | "cached" | "seed" | "failed"; between a task and `_farm` also "busy" (another
    # process holds the material's lock; `reason` names it)
    status: str
    reason: str = ""
    wall_s: float = 0.0
    product_path: str = ""


def _worker_command(task_file: Path, mpi_ranks: int) -> list[str]:
    cmd = [sys.executable, "-m", "esrepro.dft.worker", str(task_file)]
    if mpi_ranks <= 1:
        return cmd
    mpirun = shutil.which("mpirun") or shutil.which("mpiexec")
    if mpirun is None:
        raise RuntimeError("mpi_ranks > 1 but no mpirun/mpiexec on PATH (install openmpi-bin)")
    prefix = [mpirun, "-np", str(mpi_ranks), "--oversubscribe", "--bind-to", "none"]
    if os.geteuid() == 0:  # Open MPI refuses root without this flag
        prefix.append("--allow-run-as-root")
    return prefix + cmd


def run_one(
    material_id: str,
    atoms_dict: dict,
    key: str,
    settings: dict,
    cache_root: str,
    mpi_ranks: int,
    timeout_s: float,
    scratch: str | None = None,
    wait: bool = False,
    failure_seen: int | None = None,
    product: str = GROUND_STATE,
    timeout_clock: str = "wall",
) -> dict:
    """Compute one product into the cache (runs on a Dask worker). Returns a MaterialRecord dict.

    Holds the key's lock while it works. When another process holds it, returns a "busy" record
    naming the holder, or with `wait` waits for it to let go. Once holding the lock, a product or
    failure record that appeared meanwhile (another farm finished it) is reported instead of
    computing again: `failure_seen` is the mtime (ns) of the failure record the farm saw when it
    chose to compute, None if there was none. `scratch` None: a temporary directory.
    `product` names the product kind (`esrepro.dft.kinds`) that `settings` describe;
    `timeout_clock` what `timeout_s` counts (`FarmOptions.timeout_clock`).
    """
    cache = DFTCache(cache_root)
    product_path = cache.product_path(key)
    lock = KeyLock(product_path.with_suffix(".lock"))
    if not lock.acquire(wait=False):
        if not wait:
            return asdict(MaterialRecord(material_id, key, "busy", lock.holder()))
        log.info("DFT: %s waits for %s (%s)", material_id, lock.path, lock.holder())
        lock.acquire(wait=True)
    try:
        done = _finished_elsewhere(cache, material_id, key, failure_seen, product)
        if done is not None:
            return asdict(done)
        # A scratch of the task's own by default: a Dask worker may run on another machine.
        own = tempfile.TemporaryDirectory(prefix="esrepro-dft-") if not scratch else nullcontext()
        with own:
            return _compute(
                material_id, atoms_dict, key, settings, cache, mpi_ranks, timeout_s,
                Path(scratch or own.name), lock, product, timeout_clock,
            )
    finally:
        lock.release()


def _finished_elsewhere(
    cache: DFTCache, material_id: str, key: str, failure_seen: int | None,
    product: str = GROUND_STATE,
) -> MaterialRecord | None:
    """The record of a material another farm finished since this one looked, else None."""
    found = cache.find_product(key, repair=True, load=kind_named(product).load)
    if found is not None:
        return MaterialRecord(
            material_id, key, "cached", "computed meanwhile by another process", 0.0, str(found[0])
        )
    try:
        recorded = cache.failure_path(key).stat().st_mtime_ns
    except FileNotFoundError:
        return None
    if recorded == failure_seen:
        return None  # the failure the farm chose to retry
    failure = cache.find_failure(key)
    if failure is None:  # unreadable: computing again is what the farm does with those too
        return None
    return MaterialRecord(material_id, key, "failed", failure["reason"])


def _compute(
    material_id: str,
    atoms_dict: dict,
    key: str,
    settings: dict,
    cache: DFTCache,
    mpi_ranks: int,
    timeout_s: float,
    scratch: Path,
    lock: KeyLock,
    product: str = GROUND_STATE,
    timeout_clock: str = "wall",
) -> dict:
    """Run the worker for one material under its time-out; record its outcome in the cache."""
    product_path = cache.product_path(key)
    scratch.mkdir(parents=True, exist_ok=True)
    task_file = scratch / f"{material_id}.task.json"
    failure_tmp = scratch / f"{material_id}.failed.json"
    failure_tmp.unlink(missing_ok=True)
    task_file.write_text(
        json.dumps(
            {
                "atoms": atoms_dict,
                "settings": settings,
                "product_path": str(product_path),
                "failure_path": str(failure_tmp),
                "txt": str(scratch / f"{material_id}.gpaw.txt"),
                # Only other kinds say so: ground-state task files stay as they were.
                **({} if product == GROUND_STATE else {"product": product}),
            }
        )
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env[FARM_PID_ENV] = str(os.getpid())
    if mpi_ranks > 1:
        # GPAW >= 25 only uses its own MPI under a launcher when asked to (or via `gpaw python`).
        env["GPAW_MPI_BACKEND"] = "cgpaw"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        _worker_command(task_file, mpi_ranks),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # own session: a time-out kills mpirun and every rank
        # Dies with this process (a killed farm leaves no worker computing unsupervised) and
        # holds the key's lock with it, so that even a worker that outlived it is waited for.
        preexec_fn=functools.partial(
            die_with_parent, os.getpid(), signal.SIGTERM if mpi_ranks > 1 else signal.SIGKILL
        ),
        pass_fds=(lock.fd,),
    )
    try:
        out = _wait(proc, timeout_s, timeout_clock, mpi_ranks)
    except subprocess.TimeoutExpired as expired:
        _kill_worker(proc)
        # Where GPAW had got to tells the user what to raise: the time-out (an SCF still
        # iterating) or nothing (one stuck before its first iteration).
        iteration, log_tail = scf_progress(scratch / f"{material_id}.gpaw.txt")
        reason = f"TimeoutError: exceeded {expired.timeout:g} s" + _CLOCK_WORDS[expired.cmd] + (
            f" (SCF iteration {iteration})" if iteration else " (before the first SCF iteration)"
        )
        _record_failure(
            cache, key, settings,
            # The limit as a number too, so a later run with a longer time-out retries it
            # (see `timed_out_after`); older records carry it only in the reason.
            {"material_id": material_id, "reason": reason, "gpaw_log_tail": log_tail,
             "timeout_s": float(timeout_s), "timeout_clock": expired.cmd},
            product,
        )
        return asdict(MaterialRecord(material_id, key, "failed", reason, time.perf_counter() - t0))
    finally:
        # Whatever raised while waiting (a bad time-out value, an interrupt), never leave a
        # worker computing unsupervised: it would hold cores and still write into the cache.
        _kill_worker(proc)
    wall = time.perf_counter() - t0
    if proc.returncode == 0 and product_path.is_file():
        cache.clear_failure(key)
        return asdict(MaterialRecord(material_id, key, "computed", "", wall, str(product_path)))
    if failure_tmp.is_file():
        info = json.loads(failure_tmp.read_text())
    else:  # crashed before it could say why (segfault, MPI abort, out of memory)
        tail = out.decode(errors="replace")[-2000:] if out else ""
        last = _last_error_line(tail)
        info = {
            "reason": (
                f"worker exited with status {proc.returncode}" + (f": {last}" if last else "")
            ),
            "output_tail": tail,
        }
    info["material_id"] = material_id
    _record_failure(cache, key, settings, info, product)
    return asdict(MaterialRecord(material_id, key, "failed", info["reason"], wall))


def _record_failure(
    cache: DFTCache, key: str, settings: dict, info: dict, product: str = GROUND_STATE
) -> None:
    """Record a failure with the settings and code versions behind its key, so a shipped seed
    files it under the right product kind (`esrepro.dft.seeds`); kinds other than the ground
    state are named in the record."""
    extra = {} if product == GROUND_STATE else {"product": product}
    versions = kind_named(product).versions()
    cache.record_failure(key, {**info, "settings": settings, "versions": versions, **extra})


#: How a time-out's reason names its clock (the wall-time wording is the original one).
_CLOCK_WORDS = {"wall": "", "cpu": " of CPU time per rank", "wall-guard": " of wall time"}


def _wait(proc: subprocess.Popen, timeout_s: float, clock: str,
          ranks: int) -> bytes:
    """The worker's output once it ends, or `subprocess.TimeoutExpired` with ``cmd`` naming the
    clock that ran out ("wall", "cpu", or "wall-guard": a cpu-clocked worker past
    `CPU_CLOCK_WALL_FACTOR` times its time-out) and ``timeout`` the limit in seconds."""
    if clock == "wall":
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise subprocess.TimeoutExpired("wall", timeout_s) from None
        return out
    guard = CPU_CLOCK_WALL_FACTOR * timeout_s
    start = time.monotonic()
    while True:
        try:
            out, _ = proc.communicate(timeout=min(CPU_CLOCK_POLL_S, timeout_s))
            return out
        except subprocess.TimeoutExpired:
            pass  # communicate may be called again: no output is lost
        if _cpu_seconds(proc.pid) / max(ranks, 1) > timeout_s:
            raise subprocess.TimeoutExpired("cpu", timeout_s)
        if time.monotonic() - start > guard:
            raise subprocess.TimeoutExpired("wall-guard", guard)


def _cpu_seconds(sid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of session `sid`: the
    worker, mpirun and every rank (`_session_members`)."""
    import psutil

    total = 0.0
    for pid in _session_members(sid):
        try:
            times = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += times.user + times.system
    return total


def _kill_worker(proc: subprocess.Popen) -> None:
    """Kill the worker's whole session (mpirun and every rank) unless it has ended.

    mpirun puts each rank in a process group of its own, but they all stay in the session the
    worker started. A worker we already reaped is left alone: its ranks ended with it.
    """
    if proc.returncode is not None:
        return
    for pid in _session_members(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate()  # reap it and drain its pipe


def _session_members(sid: int) -> list[int]:
    """Pids in session `sid`, its leader first (a session id is not reused while one lives)."""
    import psutil

    members = [sid]
    for pid in psutil.pids():
        try:
            if pid != sid and os.getsid(pid) == sid:
                members.append(pid)
        except OSError:  # gone meanwhile
            pass
    return members


#: A time-out's reason as `run_one` writes it: "TimeoutError: exceeded 1200 s (...)".
_TIMEOUT_REASON = re.compile(r"TimeoutError: exceeded (\S+) s(?:\s|$)")


def timed_out_after(failure: Mapping[str, Any]) -> float | None:
    """The time-out (s) a recorded failure ran into, or None if it is not a time-out.

    Records since the `timeout_s` field store it as a number; older ones only in the reason.
    """
    limit = failure.get("timeout_s")
    if isinstance(limit, (int, float)) and not isinstance(limit, bool):
        return float(limit)
    match = _TIMEOUT_REASON.match(str(failure.get("reason", "")))
    if match is None:
        return None
    try:
        return float(match.group(1))
    except ValueError:
        return None


_SCF_ITERATION = re.compile(r"^\|?\s*iter:\s*(\d+)", re.MULTILINE)


def scf_progress(gpaw_log: Path, tail_lines: int = 12) -> tuple[int | None, str]:
    """The last SCF iteration a GPAW text log reports (None if none yet) and the log's last
    lines."""
    try:
        text = gpaw_log.read_text(errors="replace")
    except OSError:
        return None, ""
    iterations = _SCF_ITERATION.findall(text)
    return (int(iterations[-1]) if iterations else None), "\n".join(text.splitlines()[-tail_lines:])


def _last_error_line(output: str) -> str:
    """The last line that looks like a Python exception, to make a crash's reason readable."""
    for line in reversed(output.splitlines()):
        if "Error" in line or "Exception" in line:
            return line.strip()[:300]
    return ""


def _make_client(options: FarmOptions):
    """(client, cluster to close when done); the cluster is None for an existing scheduler."""
    import dask
    from dask.distributed import Client, LocalCluster

    if options.scheduler:
        # Someone else's cluster: connect, and leave it running when done. Its workers must
        # import this esrepro and see the cache directory at the same path (a shared file system).
        try:
            client = Client(options.scheduler, timeout="30s")
        except (OSError, TimeoutError) as err:
            raise ConnectionError(
                f"dft.farm.scheduler: no Dask scheduler answered at {options.scheduler}: {err}"
            ) from None
        try:
            n_workers = _check_workers(client, options.scheduler)
        except BaseException:
            client.close()
            raise
        log.info("DFT: connected to %s (%d workers now)", options.scheduler, n_workers)
        if not n_workers:
            log.warning(
                "DFT: %s has no workers yet; the materials wait for some", options.scheduler
            )
        return client, None
    if options.cluster == "local":
        # The heavy lifting happens in worker subprocesses, so threads are enough here and
        # avoid spawning a Python process per Dask worker. The in-process worker cannot die on
        # its own, so no heartbeat time-out: with Dask's default (5 min) a suspended laptop or
        # a stopped job (SIGSTOP, ^Z) comes back to a scheduler that dropped its only worker
        # and cancelled every task, and the run hangs.
        with dask.config.set({"distributed.scheduler.worker-ttl": None}):
            cluster = LocalCluster(
                n_workers=1,
                threads_per_worker=max(1, options.workers),
                processes=False,
                dashboard_address=None,
            )
    else:
        import dask_jobqueue

        cluster_cls = getattr(dask_jobqueue, options.cluster)
        cluster = cluster_cls(**(options.cluster_kwargs or {}))
        cluster.scale(jobs=max(1, options.workers))
    return Client(cluster), cluster


def _check_workers(client, address: str) -> int:
    """Number of workers now on `address`, after checking that each runs this esrepro with the
    GPAW and gpaw-data this process has: the cache key is computed here, so a worker with other
    versions would file its products under the wrong key. Workers that join later are not seen."""
    from esrepro.dft import settings as dft_settings

    def key_versions(versions: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in versions.items() if k != "ase"}  # ase is not in the key

    mine = key_versions(code_versions())
    try:
        theirs = client.run(dft_settings.code_versions)
    except Exception as err:  # noqa: BLE001 - e.g. esrepro not importable there
        raise RuntimeError(
            f"dft.farm.scheduler: the workers of {address} cannot run esrepro's DFT: "
            f"{type(err).__name__}: {err}"
        ) from None
    for worker, versions in sorted(theirs.items()):
        if key_versions(versions) != mine:
            raise RuntimeError(
                f"dft.farm.scheduler: worker {worker} of {address} has {key_versions(versions)}, "
                f"this process {mine}; the cache key needs the same versions everywhere"
            )
    return len(theirs)


def compute_products(
    materials: Mapping[str, Atoms],
    settings: DFTSettings | BandSettings,
    cache: DFTCache,
    options: FarmOptions,
    *,
    progress: bool = True,
    journal: Path | None = None,
) -> list[MaterialRecord]:
    """Make sure every material has a product in `cache`; return one record per material.

    Materials already in the cache (or a seed) are not recomputed; a damaged product or
    failure record is set aside (own cache) or skipped (seed) with a warning and the material
    computed again. Recorded failures are reported again unless `options.retry_failed`, except
    time-outs under a shorter time-out than `options.timeout_s`: raising the time-out is how
    a user gets those through, and a failure's key does not include the farm options.
    A material another process is computing (its key is locked) is waited for after the
    others and reported as it ends there ("cached" or "failed"), never computed twice.
    `journal`, if given, receives one JSON line per finished material as it completes.
    The type of `settings` chooses the product kind (`esrepro.dft.kinds`): `DFTSettings` the
    ground state, `BandSettings` band structures; both share the cache, farm and workers.
    """
    kind = kind_of(settings)
    records: dict[str, MaterialRecord] = {}
    todo: list[tuple[str, Atoms, str]] = []
    for material_id, atoms in materials.items():
        key = kind.key(atoms, settings)
        found = cache.find_product(key, repair=True, load=kind.load)
        if found is not None:
            path, origin = found
            status = "cached" if origin == "cache" else "seed"
            records[material_id] = MaterialRecord(material_id, key, status, product_path=str(path))
            continue
        failure = cache.find_failure(key, repair=True)
        if failure is not None and not options.retry_failed:
            limit = timed_out_after(failure)
            if limit is None or limit >= options.timeout_s:
                records[material_id] = MaterialRecord(material_id, key, "failed", failure["reason"])
                continue
            log.info(
                "DFT: retrying %s: it timed out after %g s, the time-out is now %g s",
                material_id, limit, options.timeout_s,
            )
        # The failure record as seen now: one that changes before the task takes the key's
        # lock was written by another farm, and is reported rather than computed again.
        try:
            failure_seen = cache.failure_path(key).stat().st_mtime_ns
        except FileNotFoundError:
            failure_seen = None
        todo.append((material_id, atoms, key, failure_seen))

    log.info(
        "DFT: %d materials, %d from cache, %d to compute (%d workers x %d MPI ranks)",
        len(materials), len(materials) - len(todo), len(todo), options.workers, options.mpi_ranks,
    )
    if journal:
        Path(journal).parent.mkdir(parents=True, exist_ok=True)
    journal_fh = open(journal, "a") if journal else None  # noqa: SIM115 - closed below
    try:
        if todo:
            _farm(todo, settings, cache, options, records, progress, journal_fh)
    finally:
        if journal_fh:
            journal_fh.close()
    return [records[m] for m in materials]


def _farm(todo, settings, cache, options, records, progress, journal_fh) -> None:
    from dask.distributed import KilledWorker, as_completed
    from tqdm.auto import tqdm

    kind = kind_of(settings)
    client, cluster = _make_client(options)

    n_todo = len(todo)

    def submit(position, material_id, atoms, key, failure_seen, wait=False):
        return client.submit(
            run_one,
            material_id,
            atoms_to_dict(atoms),
            key,
            settings.to_dict(),
            str(cache.root),
            options.mpi_ranks,
            options.timeout_s,
            options.scratch,
            wait,
            failure_seen,
            kind.name,
            options.timeout_clock,
            # Dask groups tasks by key name, and groups of a few tasks skip the scheduler's
            # queue: one group for all, and priorities in the given order, so that a prefix
            # of the seeded order finishes first. A deferred wait comes after everything.
            key=("dft", material_id, key[:12] + ("-wait" if wait else "")),
            priority=-1 if wait else n_todo - position,
            pure=False,
        )

    try:
        futures = [submit(position, *item) for position, item in enumerate(todo)]
        items = {future.key: item for future, item in zip(futures, todo, strict=True)}
        pending = as_completed(futures)
        bar = tqdm(total=len(items), desc="GPAW", unit="material", disable=not progress)
        n_failed = 0
        for future in pending:
            material_id, atoms, key, failure_seen = items[future.key]
            try:
                record = MaterialRecord(**future.result())
            except KilledWorker as err:
                # Dask gave up after the workers running it died `allowed-failures` times (the
                # material's memory, say): a failure of the material, not of the farm.
                reason = f"KilledWorker: {err}"
                _record_failure(
                    cache, key, settings.to_dict(), {"material_id": material_id, "reason": reason},
                    kind.name,
                )
                record = MaterialRecord(material_id, key, "failed", reason)
            if record.status == "busy":
                log.warning(
                    "DFT: %s is being computed by another process (%s); this farm will wait "
                    "for it after its other materials rather than compute it twice",
                    material_id, record.reason or "holder unknown",
                )
                wait_for_it = submit(0, material_id, atoms, key, failure_seen, wait=True)
                items[wait_for_it.key] = items[future.key]
                pending.add(wait_for_it)
                continue
            records[record.material_id] = record
            n_failed += record.status == "failed"
            bar.set_postfix(failed=n_failed, last=f"{record.material_id} {record.wall_s:.0f}s")
            bar.update()
            if journal_fh:
                journal_fh.write(json.dumps(asdict(record)) + "\n")
                journal_fh.flush()
        bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
