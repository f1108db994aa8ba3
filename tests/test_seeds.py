"""Shipped DFT seeds: pack the engine's products into archives, read them back as a seed.

The products are real and tiny (2-atom Si and 1-atom Al at 200 eV, an LCAO Si), computed once
per module by the engine; `verify` recomputes one of them.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from typer.testing import CliRunner

from esrepro.cli import app
from esrepro.dft import farm
from esrepro.dft.cache import DFTCache
from esrepro.dft.farm import FarmOptions, compute_products
from esrepro.dft.product import DFTProduct
from esrepro.dft.seed_verify import run_verify
from esrepro.dft.seeds import (
    COMPLETE_MARKER,
    MANIFEST_NAME,
    NO_SEEDS_ENV,
    UNKNOWN_KIND,
    ArchiveEntry,
    Manifest,
    SeedError,
    file_sha256,
    pack,
    product_kind,
    unpack_archive,
    write_archive_bytes,
)
from esrepro.dft.settings import DFTSettings, cache_key, code_versions
from esrepro.dft.stage import cache_from_params

pytestmark = [
    pytest.mark.gpaw,
    pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning"),
]

PW = DFTSettings(ecut_ev=200.0, kpt_density=1.5)
LCAO = DFTSettings(mode="lcao", basis="dzp", kpt_density=1.5, bands_cover_ev=0.0,
                   converge_bands="occupied")
ONE_RANK = FarmOptions(workers=1, mpi_ranks=1, timeout_s=300.0)
#: A structure whose product is not computed here: the failure record packed beside them.
TIMED_OUT = bulk("C", "diamond", a=3.57)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict:
    """A writable cache with three real products (two kinds) and one recorded failure."""
    cache = DFTCache(tmp_path_factory.mktemp("source") / "cache")
    journal = cache.root / "journal.jsonl"
    pw = {"Si": bulk("Si", "diamond", a=5.43), "Al": bulk("Al", "fcc", a=4.05)}
    lcao = {"Si-lcao": bulk("Si", "diamond", a=5.43)}
    records = compute_products(pw, PW, cache, ONE_RANK, progress=False, journal=journal)
    records += compute_products(lcao, LCAO, cache, ONE_RANK, progress=False, journal=journal)
    assert all(r.status == "computed" for r in records), [r.reason for r in records]
    failed_key = cache_key(TIMED_OUT, PW)
    cache.record_failure(failed_key, {"material_id": "C", "reason": "TimeoutError: exceeded 1 s",
                                      "timeout_s": 1.0})
    return {
        "cache": cache,
        "keys": {r.material_id: r.cache_key for r in records},
        "failed_key": failed_key,
    }


@pytest.fixture(autouse=True)
def unpack_home(tmp_path, monkeypatch) -> Path:
    """Archives unpack under this test's own $XDG_CACHE_HOME; seeds are on."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(NO_SEEDS_ENV, raising=False)
    return tmp_path / "xdg" / "esrepro" / "seeds"


def _failure_kinds(source) -> dict:
    info = {"settings": PW.to_dict(), "versions": dict(code_versions())}
    return {source["failed_key"]: (product_kind(PW.to_dict(), code_versions()), info)}


def _pack(source, seed_dir: Path, **kwargs) -> list[ArchiveEntry]:
    return pack(seed_dir, [source["cache"].root], failure_kinds=_failure_kinds(source), **kwargs)


def _only(source, tmp_path: Path, name: str, material: str, *, shift_ev: float = 0.0) -> Path:
    """A cache holding only `material`'s product, its eigenvalues shifted by `shift_ev`."""
    key = source["keys"][material]
    cache = DFTCache(tmp_path / name)
    product = DFTProduct.load(source["cache"].product_path(key))
    product.eigenvalues = product.eigenvalues + np.float32(shift_ev)
    product.save(cache.product_path(key))
    return cache.root


def _copy_product(source, cache: DFTCache, material: str) -> None:
    key = source["keys"][material]
    cache.product_path(key).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source["cache"].product_path(key), cache.product_path(key))


# --- pack and read back ---------------------------------------------------------------------


def test_pack_then_the_engine_finds_every_product(source, tmp_path, monkeypatch) -> None:
    seed_dir = tmp_path / "seeds"
    # A tiny archive size: the two plane-wave products land in separate archives.
    archives = _pack(source, seed_dir, max_bytes=1)
    keys = source["keys"]
    pw_kind = product_kind(PW.to_dict(), code_versions())
    lcao_kind = product_kind(LCAO.to_dict(), code_versions())
    assert pw_kind.startswith("pw-LDA-") and lcao_kind.startswith("lcao-LDA-")
    manifest = Manifest.load(seed_dir)
    assert {e.path for e in archives} == {e.path for e in manifest.archives}
    assert sorted(e.path for e in manifest.archives) == sorted(
        [f"{pw_kind}/0000.tar.xz", f"{pw_kind}/0001.tar.xz", f"{pw_kind}/0002.tar.xz",
         f"{lcao_kind}/0000.tar.xz"]
    )
    assert set(manifest.kinds) == {pw_kind, lcao_kind}
    assert manifest.kinds[pw_kind]["settings"] == PW.to_dict()
    # Material ids come from the journal (products) and the record (failure).
    assert manifest.shipped("product").keys() == set(keys.values())
    ids = {k: e.products[k] for k, e in manifest.shipped("product").items()}
    assert ids == {key: material for material, key in keys.items()}
    assert manifest.shipped("failure")[source["failed_key"]].failures == {source["failed_key"]: "C"}
    for entry in manifest.archives:
        path = seed_dir / entry.path
        assert entry.bytes == path.stat().st_size and entry.sha256 == file_sha256(path)

    # The engine reads the shipped seed named in params, beside a plain seed that is absent.
    cache = cache_from_params({"cache": str(tmp_path / "writable"),
                               "seed_caches": [str(seed_dir), str(tmp_path / "absent")]})
    for key in keys.values():
        found = cache.find_product(key, repair=True)
        assert found is not None, key
        assert found[1].startswith("seed:")
        assert found[0].read_bytes() == source["cache"].product_path(key).read_bytes()
    failure = cache.find_failure(source["failed_key"])
    assert failure is not None and failure["reason"] == "TimeoutError: exceeded 1 s"
    # A stage served by the seed launches no GPAW worker.
    monkeypatch.setattr(farm, "_farm", _no_worker)
    records = compute_products({"Si": bulk("Si", "diamond", a=5.43)}, PW, cache, ONE_RANK,
                               progress=False)
    assert [r.status for r in records] == ["seed"]


def _no_worker(*args, **kwargs):
    raise AssertionError("a GPAW worker was launched for a product the seed holds")


def test_repack_adds_nothing_and_new_entries_get_new_archives(source, tmp_path) -> None:
    seed_dir = tmp_path / "seeds"
    first = _pack(source, seed_dir)
    before = {e.path: file_sha256(seed_dir / e.path) for e in first}
    manifest_before = json.loads((seed_dir / MANIFEST_NAME).read_text())
    assert _pack(source, seed_dir) == []
    assert json.loads((seed_dir / MANIFEST_NAME).read_text()) == manifest_before

    # A new failure record (no settings, no known key): one new archive, the old ones as they were.
    extra = DFTCache(tmp_path / "extra")
    new_key = "ab" + "0" * 62
    extra.record_failure(new_key, {"material_id": "mp-1", "reason": "SCFNotConverged: ..."})
    _copy_product(source, extra, "Si")  # already shipped: not again
    added = pack(seed_dir, [source["cache"].root, extra.root])
    assert [(e.path, e.kind, e.failures, e.products) for e in added] == [
        (f"{UNKNOWN_KIND}/0000.tar.xz", UNKNOWN_KIND, {new_key: "mp-1"}, {})
    ]
    assert {p: file_sha256(seed_dir / p) for p in before} == before
    manifest = json.loads((seed_dir / MANIFEST_NAME).read_text())
    assert manifest["archives"][: len(manifest_before["archives"])] == manifest_before["archives"]


def test_a_failure_with_a_product_is_not_shipped(source, tmp_path) -> None:
    cache = DFTCache(tmp_path / "cache")
    key = source["keys"]["Al"]
    _copy_product(source, cache, "Al")
    cache.record_failure(key, {"reason": "TimeoutError: exceeded 1 s"})
    (entry,) = pack(tmp_path / "seeds", [cache.root])
    assert entry.products == {key: None} and entry.failures == {}


def test_archives_are_reproducible(source, tmp_path) -> None:
    a = _pack(source, tmp_path / "a")
    b = _pack(source, tmp_path / "b")
    assert [e.to_json() for e in a] == [e.to_json() for e in b]
    for entry in a:
        assert (
            (tmp_path / "a" / entry.path).read_bytes() == (tmp_path / "b" / entry.path).read_bytes()
        )
        with tarfile.open(tmp_path / "a" / entry.path) as tar:
            members = tar.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members)
        assert {(m.mtime, m.uid, m.gid, m.mode, m.uname, m.gname) for m in members} == {
            (0, 0, 0, 0o444, "", "")
        }


def test_pack_refuses_a_damaged_product_naming_it(source, tmp_path) -> None:
    cache = DFTCache(tmp_path / "cache")
    key = source["keys"]["Si"]
    damaged = cache.product_path(key)
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(source["cache"].product_path(key).read_bytes()[:500])
    with pytest.raises(SeedError, match=str(damaged)):
        pack(tmp_path / "seeds", [cache.root])
    assert not (tmp_path / "seeds").exists()


# --- a damaged seed is an error naming the file ------------------------------------------------


@pytest.fixture
def packed(source, tmp_path) -> Path:
    seed_dir = tmp_path / "seeds"
    _pack(source, seed_dir)
    return seed_dir


def _pw_archive(seed_dir: Path) -> Path:
    (entry,) = [e for e in Manifest.load(seed_dir).archives if e.kind.startswith("pw-")]
    return seed_dir / entry.path


def _open(seed_dir: Path, tmp_path: Path) -> DFTCache:
    return cache_from_params({"cache": str(tmp_path / "writable"), "seed_caches": [str(seed_dir)]})


@pytest.mark.parametrize("unpacked_first", [False, True])
def test_a_flipped_byte_is_an_error_naming_the_archive(packed, tmp_path, unpacked_first) -> None:
    if unpacked_first:  # an earlier good copy on disk does not hide the damage
        _open(packed, tmp_path)
    archive = _pw_archive(packed)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    with pytest.raises(SeedError, match=rf"^{archive}: sha256 .* differs from .*{MANIFEST_NAME}"):
        _open(packed, tmp_path)


def test_a_truncated_archive_is_an_error_naming_it(packed, tmp_path) -> None:
    archive = _pw_archive(packed)
    archive.write_bytes(archive.read_bytes()[:-100])
    with pytest.raises(SeedError, match=rf"^{archive}: .* bytes, but .* records"):
        _open(packed, tmp_path)


def test_a_missing_archive_is_an_error_naming_it(packed, tmp_path) -> None:
    archive = _pw_archive(packed)
    archive.unlink()
    with pytest.raises(SeedError, match=rf"^{archive}: archive listed in .* is missing"):
        _open(packed, tmp_path)


def test_a_manifest_that_does_not_match_its_archive_is_an_error(packed, tmp_path, source) -> None:
    path = packed / MANIFEST_NAME
    data = json.loads(path.read_text())
    (entry,) = [e for e in data["archives"] if e["kind"].startswith("pw-")]
    del entry["products"][source["keys"]["Al"]]  # the archive still holds it
    path.write_text(json.dumps(data))
    with pytest.raises(SeedError, match=rf"^{packed / entry['path']}: does not hold what "):
        _open(packed, tmp_path)


def test_a_malformed_manifest_is_an_error_naming_it(packed, tmp_path) -> None:
    path = packed / MANIFEST_NAME
    path.write_text(path.read_text()[:-20])
    with pytest.raises(SeedError, match=rf"^{path}: unreadable seed manifest"):
        _open(packed, tmp_path)


@pytest.mark.parametrize("name", ["../escape.npz", "/tmp/absolute.npz", "ab/notakey.npz"])
def test_members_outside_the_cache_layout_are_refused(tmp_path, unpack_home, name) -> None:
    # A hand-made archive whose manifest entry matches it byte for byte.
    data = write_archive_bytes([(name, b"x")])
    seed_dir = tmp_path / "seeds"
    kind = "pw-LDA-00000000"
    (seed_dir / kind).mkdir(parents=True)
    (seed_dir / kind / "0000.tar.xz").write_bytes(data)
    entry = ArchiveEntry(f"{kind}/0000.tar.xz", kind, hashlib.sha256(data).hexdigest(), len(data))
    Manifest(seed_dir, [entry], {kind: {}}).save()
    manifest = Manifest.load(seed_dir)
    with pytest.raises(SeedError, match=rf"^{seed_dir / entry.path}: members outside the cache"):
        unpack_archive(manifest, manifest.archives[0])
    assert not (unpack_home.parent / "escape.npz").exists()
    assert list(unpack_home.iterdir()) == []  # neither a seed nor a temporary left behind


def test_concurrent_unpacking_ends_with_one_complete_copy(packed, unpack_home) -> None:
    manifest = Manifest.load(packed)
    entry = manifest.archives[0]
    results: list[Path] = []
    errors: list[BaseException] = []

    def unpack() -> None:
        try:
            results.append(unpack_archive(manifest, entry))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=unpack) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1 and (results[0] / COMPLETE_MARKER).is_file()
    assert [p.name for p in unpack_home.iterdir()] == [entry.sha256[:16]]  # no temporaries left
    with tarfile.open(packed / entry.path) as tar:
        expected = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert {p.relative_to(results[0]).as_posix(): p.read_bytes()
            for p in results[0].glob("??/*")} == expected


def test_no_seeds_switch_ignores_every_seed(packed, tmp_path, monkeypatch, source) -> None:
    monkeypatch.setenv(NO_SEEDS_ENV, "1")
    cache = _open(packed, tmp_path)
    assert cache.seeds == []
    assert cache.find_product(source["keys"]["Si"]) is None


# --- verify ---------------------------------------------------------------------------------


def test_verify_passes_on_a_shipped_product_and_fails_on_an_altered_one(
    source, tmp_path, capsys
) -> None:
    key = source["keys"]["Si"]
    good = tmp_path / "good"
    pack(good, [_only(source, tmp_path, "si", "Si")])
    assert run_verify(1, seeds_dir=good, timeout_s=300.0) == 0
    assert f"ok    {key}" in capsys.readouterr().out

    altered = tmp_path / "altered"
    pack(altered, [_only(source, tmp_path, "si-shifted", "Si", shift_ev=0.05)])
    assert run_verify(1, seeds_dir=altered, timeout_s=300.0) == 1
    out = capsys.readouterr().out
    assert f"FAIL  {key}" in out and "eigenvalues differ by 0.05" in out


# --- command line ---------------------------------------------------------------------------


def test_seed_status_lists_kinds_and_fails_on_a_damaged_archive(packed, source) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["seed", "status", "--no-table", "--seeds", str(packed)])
    assert result.exit_code == 0, result.output
    pw_kind = product_kind(PW.to_dict(), code_versions())
    (line,) = [row for row in result.output.splitlines() if row.strip().startswith(pw_kind)]
    assert line.split()[1:4] == ["1", "2", "1"]  # archives, products, failures
    archive = _pw_archive(packed)
    archive.write_bytes(archive.read_bytes()[:-1])
    result = runner.invoke(app, ["seed", "status", "--no-table", "--seeds", str(packed)])
    assert result.exit_code == 1 and f"error: {archive}:" in result.output


def test_write_archive_bytes_is_a_plain_tar_xz() -> None:
    data = write_archive_bytes([("b/x", b"2"), ("a/y", b"1")])
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:xz") as tar:
        assert tar.getnames() == ["a/y", "b/x"]


def test_weights_are_compared_over_degenerate_bands() -> None:
    from esrepro.dft.seed_verify import _degenerate_sums, _weight_difference

    # One k-point, bands at 0, 1, 1 (a degenerate pair) and 2 eV; two channels.
    energies = np.array([[0.0, 1.0, 1.0 + 1e-5, 2.0]])
    shipped = np.array([[[0.5, 0.2, 0.1, 0.3]], [[0.1, 0.4, 0.0, 0.2]]])  # (channel, k, band)
    mixed = shipped.copy()
    mixed[:, :, 1:3] = shipped[:, :, 2:0:-1]  # another basis of the degenerate pair
    swapped = shipped.copy()
    swapped[:, :, 0:2] = shipped[:, :, 1::-1]  # two bands that are not degenerate
    sums = [_degenerate_sums(w, energies, 4, 1e-3) for w in (shipped, mixed, swapped)]
    assert _weight_difference(sums[0], sums[1]) == 0.0
    assert _weight_difference(sums[0], sums[2]) == pytest.approx(0.3)
    # Sets reaching past the converged bands are not compared.
    assert _weight_difference(*(_degenerate_sums(w, energies, 2, 1e-3)
                                for w in (shipped, swapped))) == pytest.approx(0.3)
    assert _weight_difference(*(_degenerate_sums(w, energies, 2, 1e-3)
                                for w in (shipped, mixed))) == 0.0
