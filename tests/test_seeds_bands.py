"""Band-structure products in the shipped seed: pack, unpack where `band_cache` finds them,
damaged archives, `status` and `verify`.

The band product is real and tiny (Si at 200 eV, a coarse SCF mesh, 4 path k-points per Å⁻¹:
seconds), and so is the recorded failure (an SCF cut at 2 iterations) and the ground-state
product packed beside them; `verify` recomputes the band product.
"""

from __future__ import annotations

import dataclasses
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase.build import bulk
from typer.testing import CliRunner

from esrepro.cli import app
from esrepro.config import Selection
from esrepro.dft import farm
from esrepro.dft.band_product import BandProduct, BandSettings, band_cache_key, band_versions
from esrepro.dft.cache import DFTCache
from esrepro.dft.farm import FarmOptions, compute_products
from esrepro.dft.seed_verify import band_levels, run_verify
from esrepro.dft.seeds import (
    NO_SEEDS_ENV,
    Manifest,
    SeedError,
    band_product_kind,
    bandformer_params,
    coverage,
    pack,
    product_kind,
    unpack_archive,
)
from esrepro.dft.settings import DFTSettings, code_versions
from esrepro.dft.stage import band_cache, cache_from_params, run_band_stage
from esrepro.selection import seeded_order, select_materials, selected_ids

pytestmark = [
    pytest.mark.gpaw,
    pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning"),
]

SMALL = BandSettings(
    scf=dataclasses.replace(BandSettings().scf, ecut_ev=200.0, kpt_density=1.5),
    path_kpt_density=4.0,
)
#: An SCF that cannot converge: the farm records the failure, with its settings and kind.
CUT = dataclasses.replace(SMALL, scf=dataclasses.replace(SMALL.scf, max_iterations=2))
PW = DFTSettings(ecut_ev=200.0, kpt_density=1.5)
ONE_RANK = FarmOptions(workers=1, mpi_ranks=1, timeout_s=300.0)
FARM = {"workers": 1, "mpi_ranks": 1, "timeout_s": 300.0}
REPO_SEEDS = Path(__file__).resolve().parents[1] / "seeds"


def silicon():
    return bulk("Si", "diamond", a=5.43)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict:
    """A writable cache as the stages leave it: a ground-state product at the top level, a
    band product and a band failure in bands/, each with its journal."""
    root = tmp_path_factory.mktemp("source") / "cache"
    top = DFTCache(root)
    bands = band_cache(top)
    [ground] = compute_products({"Al": bulk("Al", "fcc", a=4.05)}, PW, top, ONE_RANK,
                                progress=False, journal=root / "journal.jsonl")
    [band] = compute_products({"Si": silicon()}, SMALL, bands, ONE_RANK, progress=False,
                              journal=bands.root / "journal.jsonl")
    [failed] = compute_products({"Si-cut": silicon()}, CUT, bands, ONE_RANK, progress=False,
                                journal=bands.root / "journal.jsonl")
    assert ground.status == band.status == "computed", (ground.reason, band.reason)
    assert failed.status == "failed"
    return {"root": root, "ground": ground, "band": band, "failed": failed}


@pytest.fixture(autouse=True)
def unpack_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(NO_SEEDS_ENV, raising=False)
    return tmp_path / "xdg" / "esrepro" / "seeds"


def _no_worker(*args, **kwargs):
    raise AssertionError("a GPAW worker was launched for a product the seed holds")


def _band_archive(seed_dir: Path, settings: BandSettings = SMALL) -> Path:
    kind = band_product_kind(settings.to_dict(), band_versions())
    return seed_dir / kind / "0000.tar.xz"


def test_band_kinds_are_named_like_the_ground_state_kinds() -> None:
    kind = band_product_kind(SMALL.to_dict(), band_versions())
    assert kind.startswith("bands-PBE-") and len(kind) == len("bands-PBE-") + 8
    assert band_product_kind(CUT.to_dict(), band_versions()) != kind
    assert band_product_kind(SMALL.to_dict(), {**band_versions(), "gpaw": "0"}) != kind
    assert band_product_kind(SMALL.to_dict(), {**band_versions(), "ase": "0"}) == kind


def test_pack_unpack_and_the_band_stage_finds_every_band_product(source, tmp_path,
                                                                 monkeypatch) -> None:
    seed_dir = tmp_path / "seeds"
    archives = pack(seed_dir, [source["root"]])
    manifest = Manifest.load(seed_dir)
    band_kind = band_product_kind(SMALL.to_dict(), band_versions())
    cut_kind = band_product_kind(CUT.to_dict(), band_versions())
    pw_kind = product_kind(PW.to_dict(), code_versions())
    assert sorted(e.path for e in archives) == sorted(
        f"{k}/0000.tar.xz" for k in (band_kind, cut_kind, pw_kind))
    assert manifest.kinds[band_kind] == {"product": "bands", "settings": SMALL.to_dict(),
                                         "versions": band_versions()}
    # Band members lie under bands/, the ground state's at the top level as before; ids come
    # from the journals.
    band, failed, ground = source["band"], source["failed"], source["ground"]
    with tarfile.open(_band_archive(seed_dir), "r:xz") as tar:
        assert tar.getnames() == [f"bands/{band.cache_key[:2]}/{band.cache_key}.npz"]
    with tarfile.open(seed_dir / pw_kind / "0000.tar.xz", "r:xz") as tar:
        assert tar.getnames() == [f"{ground.cache_key[:2]}/{ground.cache_key}.npz"]
    assert manifest.shipped("product")[band.cache_key].products == {band.cache_key: "Si"}
    assert manifest.shipped("failure")[failed.cache_key].failures == {failed.cache_key: "Si-cut"}
    assert pack(seed_dir, [source["root"]]) == []  # nothing new

    # `esrepro seed unpack`, then the band stage reads the shipped seed: no GPAW run.
    result = CliRunner().invoke(app, ["seed", "unpack", "--seeds", str(seed_dir)])
    assert result.exit_code == 0, result.output
    monkeypatch.setattr(farm, "_farm", _no_worker)
    dft = {"cache": str(tmp_path / "writable"), "seed_caches": [str(seed_dir)], "farm": FARM}
    [record] = run_band_stage({"Si": silicon()}, dft, SMALL, tmp_path / "out")
    assert record.status == "seed"
    assert (tmp_path / "out" / "products" / "Si.npz").read_bytes() == Path(
        band.product_path).read_bytes()
    [again] = run_band_stage({"Si": silicon()}, dft, CUT, tmp_path / "out-cut")
    assert again.status == "failed" and again.reason == failed.reason
    # The ground-state product is found where the ground-state engine looks.
    cache = cache_from_params(dft)
    assert cache.find_product(ground.cache_key, repair=True)[1].startswith("seed:")
    assert band_cache(cache).find_product(ground.cache_key) is None


def test_a_band_product_is_packed_from_a_bands_folder_given_as_source(source, tmp_path) -> None:
    seed_dir = tmp_path / "seeds"
    pack(seed_dir, [source["root"] / "bands"])
    assert Manifest.load(seed_dir).shipped("product").keys() == {source["band"].cache_key}
    assert _band_archive(seed_dir).is_file()


def test_a_damaged_band_product_stops_the_pack_naming_it(source, tmp_path) -> None:
    cache = tmp_path / "cache"
    path = cache / "bands" / Path(source["band"].product_path).relative_to(
        source["root"] / "bands")
    path.parent.mkdir(parents=True)
    path.write_bytes(Path(source["band"].product_path).read_bytes()[:200])
    with pytest.raises(SeedError, match=f"damaged band product file {path}"):
        pack(tmp_path / "seeds", [cache])
    assert not (tmp_path / "seeds").exists()


@pytest.fixture
def packed(source, tmp_path) -> Path:
    seed_dir = tmp_path / "seeds"
    pack(seed_dir, [source["root"]])
    return seed_dir


def test_a_corrupted_band_archive_is_an_error_naming_it(packed, tmp_path) -> None:
    archive = _band_archive(packed)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(SeedError, match=f"{archive}: sha256 .* differs"):
        cache_from_params({"cache": str(tmp_path / "w"), "seed_caches": [str(packed)]})
    result = CliRunner().invoke(app, ["seed", "unpack", "--seeds", str(packed)])
    assert result.exit_code == 1 and str(archive) in result.output


def test_a_band_archive_that_does_not_match_its_manifest_entry_is_an_error(
    packed, source, unpack_home
) -> None:
    manifest = Manifest.load(packed)
    kind = band_product_kind(SMALL.to_dict(), band_versions())
    [entry] = [e for e in manifest.archives if e.kind == kind]
    # The manifest claims another key than the archive holds.
    other = source["failed"].cache_key
    entry.products = {other: "Si"}
    manifest.save()
    with pytest.raises(SeedError, match=f"{packed / entry.path}: does not hold what "
                                        f"{packed / 'manifest.json'} lists"):
        unpack_archive(Manifest.load(packed), entry)


def test_band_members_outside_bands_are_refused(packed, unpack_home) -> None:
    """A band archive whose product lies at the top level would be invisible to band_cache."""
    from esrepro.dft.seeds import file_sha256, write_archive_bytes

    manifest = Manifest.load(packed)
    kind = band_product_kind(SMALL.to_dict(), band_versions())
    [entry] = [e for e in manifest.archives if e.kind == kind]
    [key] = entry.products
    archive = packed / entry.path
    with tarfile.open(archive, "r:xz") as tar:
        data = tar.extractfile(tar.getmembers()[0]).read()
    archive.write_bytes(write_archive_bytes([(f"{key[:2]}/{key}.npz", data)]))
    entry.sha256, entry.bytes = file_sha256(archive), archive.stat().st_size
    manifest.save()
    with pytest.raises(SeedError, match=f"{archive}: does not hold what"):
        unpack_archive(Manifest.load(packed), entry)


def test_the_repositorys_manifest_and_archives_stay_valid(tmp_path) -> None:
    """The shipped ground-state seed reads as before: the manifest round-trips byte for byte
    and an archive unpacks (its members at the top level)."""
    manifest = Manifest.load(REPO_SEEDS)
    copy = Manifest(tmp_path, manifest.archives, manifest.kinds)
    copy.save()
    assert copy.path.read_bytes() == (REPO_SEEDS / "manifest.json").read_bytes()
    # Band and G0W0 archives keep their members under bands/ and gw/: take a ground-state one.
    ground_state = [e for e in manifest.archives if e.kind.startswith(("pw-", "lcao-"))]
    entry = min(ground_state, key=lambda e: e.bytes)
    directory = unpack_archive(manifest, entry, tmp_path / "unpacked")
    assert {p.name for p in directory.glob("??/*")} >= {f"{k}.npz" for k in entry.products}


# --- status ---------------------------------------------------------------------------------


def test_status_lists_the_band_kind_with_its_counts(packed) -> None:
    result = CliRunner().invoke(app, ["seed", "status", "--no-table", "--seeds", str(packed)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:4] for line in result.output.splitlines()
            if line.startswith("  bands-")}
    assert rows == {band_product_kind(SMALL.to_dict(), band_versions()): ["1", "1", "0"],
                    band_product_kind(CUT.to_dict(), band_versions()): ["1", "0", "1"]}


def test_coverage_of_band_keys_and_the_bandformer_selection(packed, source, tmp_path) -> None:
    manifest = Manifest.load(packed)
    kind = band_product_kind(SMALL.to_dict(), band_versions())
    keys = [source["band"].cache_key, band_cache_key(bulk("Al", "fcc", a=4.05), SMALL)]
    found = coverage(keys, kind, manifest, tmp_path / "empty", [source["root"]])
    assert found.in_seed == [True, False] and found.in_cache == [False, False]
    assert found.in_plain == [True, False] and found.products == [True, False]
    # params without a bandformer block give no Bandformer line; with one, its selection.
    assert bandformer_params({"dft": {}}) is None
    settings, selection = bandformer_params(
        {"bandformer": {"n_materials": 2, "max_sites": 4, "subset_seed": 0,
                        "dft": {"path_kpt_density": 10.0}}})
    assert settings.path_kpt_density == 10.0 and settings.scf.xc == "PBE"
    assert selection == Selection(n_materials=2, max_sites=4, subset_seed=0)
    table = pd.DataFrame({"material_id": [1, 2, 3], "nsites": [2, 8, 1]})
    assert len(select_materials(table, selection)) == 2
    # The order the band warm-up and the status prefix use: mp-2 (8 sites) is skipped.
    small = [i for i in seeded_order(["mp-1", "mp-2", "mp-3"], 0) if i != "mp-2"]
    assert selected_ids(table, Selection(n_materials=0, max_sites=4, subset_seed=0)) == small
    assert selected_ids(table, selection) == small[:2]
    with pytest.raises(ValueError, match=r"bandformer\.max_sites"):
        bandformer_params({"bandformer": {"max_sites": -1}})


# --- verify ---------------------------------------------------------------------------------


def _only_band(source, tmp_path: Path, name: str, *, shift_ev: float = 0.0) -> Path:
    """A cache holding only the band product (in bands/), its path eigenvalues shifted."""
    band = source["band"]
    product = BandProduct.load(Path(band.product_path))
    product.eigenvalues = product.eigenvalues + shift_ev
    product.save(band_cache(DFTCache(tmp_path / name)).product_path(band.cache_key))
    return tmp_path / name


def test_verify_passes_on_a_band_product_and_fails_on_altered_eigenvalues(
    source, tmp_path, capsys
) -> None:
    key = source["band"].cache_key
    good = tmp_path / "good"
    pack(good, [_only_band(source, tmp_path, "si")])
    assert run_verify(1, seeds_dir=good, timeout_s=300.0) == 0
    out = capsys.readouterr().out
    [line] = [row for row in out.splitlines() if row.startswith(f"ok    {key}")]
    assert "weights" not in line

    altered = tmp_path / "altered"
    pack(altered, [_only_band(source, tmp_path, "si-shifted", shift_ev=0.05)])
    kind = band_product_kind(SMALL.to_dict(), band_versions())
    assert run_verify(1, kind=kind, seeds_dir=altered, timeout_s=300.0) == 1
    out = capsys.readouterr().out
    assert f"FAIL  {key}" in out and "path eigenvalues differ by 0.05" in out


def test_band_levels_follow_the_gap_rule() -> None:
    class Product:
        hob, band_start, fermi_level = 3, 1, 0.25
        eigenvalues = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0, 3.0],
                                [-2.0, -1.0, 0.5, 0.7, 2.0, 3.0]])

    levels = band_levels(Product)
    assert levels["hob_max"] == 0.5 and levels["next_min"] == 0.7
    assert levels["gap"] == pytest.approx(0.2) and "fermi_level" not in levels
    Product.eigenvalues = Product.eigenvalues.copy()
    Product.eigenvalues[1, 2] = 1.5  # the HOB rises above the next band's minimum: a metal
    assert band_levels(Product) == {"hob_max": 1.5, "next_min": 0.7, "gap": 0.0,
                                    "fermi_level": 0.25}

