from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from esrepro.fetch import fetch_url
from esrepro.sources import (
    DOSNP_TABLE_COMMIT,
    dataset_sources,
    dosnp_structure_source,
    dosnp_table_source,
    load_sources,
)

LATEST_TABLE_COMMIT = "36af685729fb7b7ea48e46718abcfb281bc4c034"


@pytest.fixture(scope="module")
def manifest(mirror_dir: Path) -> dict[str, str]:
    with (mirror_dir / "MANIFEST.tsv").open(newline="") as fh:
        return {row["url"]: row["sha256"] for row in csv.DictReader(fh, delimiter="\t")}


def test_registry_datasets() -> None:
    datasets = load_sources()["datasets"]
    for name in (
        "dosnp_table",
        "dosnp_structures",
        "ecalj_rencub_pdos",
        "alignn_sample_data_multi_prop",
        "si_diamonds_howweibin",
        "si_testing_framework_libatoms",
    ):
        assert datasets[name]["files"], name
    assert len(dataset_sources("ecalj_rencub_pdos")) == 5  # 2 sites x 2 spins + total
    assert not any(s.url.endswith(".eps") for s in dataset_sources("ecalj_rencub_pdos"))


def test_every_pin_matches_the_mirror_manifest(manifest: dict[str, str]) -> None:
    for name in load_sources()["datasets"]:
        for src in dataset_sources(name):
            assert manifest.get(src.url) == src.sha256, src.url


def test_dosnp_table_sources() -> None:
    first = dosnp_table_source()
    assert first.url.endswith(f"DOSnpSupplement/{DOSNP_TABLE_COMMIT}/tab_nonmag_all.csv")
    assert first.sha256 == "f0c9d424b7527c8e46895b0edef8e8b1180da9365f343aa3aec360dafd710627"
    assert dosnp_table_source(LATEST_TABLE_COMMIT[:8]).url.endswith(
        f"{LATEST_TABLE_COMMIT}/tab_nonmag_all.csv"
    )
    with pytest.raises(KeyError, match="deadbeef"):
        dosnp_table_source("deadbeef")


def test_dosnp_structure_source() -> None:
    src = dosnp_structure_source("mp-1000")
    assert src == dosnp_structure_source("1000") == dosnp_structure_source(1000)
    assert src.url.endswith("/ecalj_auto/INPUT/gw1500/POSCARALL/POSCAR.mp-1000")
    assert src.filename == "POSCAR.mp-1000"
    assert "/gw1000/POSCARALL/POSCAR.mp-23210" in dosnp_structure_source("mp-23210").url
    with pytest.raises(KeyError, match="mp-999999999"):
        dosnp_structure_source("999999999")
    with pytest.raises(KeyError, match="no_such_dataset"):
        dataset_sources("no_such_dataset")


def test_every_table_material_has_a_structure(mirror_dir: Path, tmp_path: Path) -> None:
    table = fetch_url(
        dosnp_table_source().url, dosnp_table_source().sha256, tmp_path / "t.csv", mirror=mirror_dir
    )
    with table.open(newline="") as fh:
        ids = [row["material_id"] for row in csv.DictReader(fh)]
    assert len(ids) == 1516
    for mid in ids:
        dosnp_structure_source(mid)  # raises KeyError if missing


def test_sources_yaml_is_reproducible(repo_root: Path, mirror_dir: Path, tmp_path: Path) -> None:
    """sources.yaml must be exactly what scripts/make_sources.py generates (no hand edits)."""
    out = tmp_path / "sources.yaml"
    subprocess.run(
        [
            sys.executable,
            str(repo_root / "scripts" / "make_sources.py"),
            "--mirror",
            str(mirror_dir),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    assert out.read_text() == (repo_root / "src" / "esrepro" / "sources.yaml").read_text()
