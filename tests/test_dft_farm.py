"""The farm's options, its cache lookups (damaged entries, time-out retries, seeds) and its
worker supervision, without GPAW: `_farm` is replaced where nothing should be computed and the
worker command by a stand-in process where one should run."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from esrepro.dft import farm
from esrepro.dft.cache import DFTCache
from esrepro.dft.farm import FarmOptions, MaterialRecord, compute_products, timed_out_after
from esrepro.dft.product import N_CHANNELS, DFTProduct
from esrepro.dft.settings import DFTSettings, cache_key
from esrepro.dft.stage import cache_from_params, run_dft_stage

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
        for material_id, _, key in todo:
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
        ("retry_failed", "no"),
        ("retry_failed", 1),
        ("retry_failed", None),
        ("cluster", "slurm"),
        ("cluster", "JobQueueCluster"),  # the base class, not a cluster
        ("cluster", 3),
        ("cluster_kwargs", "queue=long"),
        ("cluster_kwargs", [1, 2]),
        ("scratch", 3),
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


# --- the worker is never left running ---------------------------------------------------------


def _stand_in_worker(monkeypatch, seconds: float) -> list[subprocess.Popen]:
    """Make run_one start a process that just sleeps; return the list its Popen objects join."""
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    class RecordingPopen(real_popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(farm, "_worker_command", lambda task, ranks: [
        sys.executable, "-c", f"import time; time.sleep({seconds})"])
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
