"""DOSnp pipeline pieces that need no DFT: subset selection and the ecalj PDOS source."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esrepro.papers.dosnp.inputs import read_table
from esrepro.papers.dosnp.pipeline import ecalj_pdos, seeded_order, select_materials
from esrepro.spectra import dosnp_grid

TABLE = "raw.githubusercontent.com/tkotani/DOSnpSupplement/3206083aacc37bd3dd12a14f86a216a8ac11da5b/tab_nonmag_all.csv"
RENCUB = "raw.githubusercontent.com/tkotani/ecalj/3766c03e1f775383895b0c1218cb558d7e9ff86e/Samples/ReNcub/cprn"


@pytest.fixture(scope="module")
def table(mirror_dir: Path) -> pd.DataFrame:
    return read_table(mirror_dir / TABLE)


def test_table_has_the_papers_1516_materials(table: pd.DataFrame) -> None:
    assert len(table) == 1516
    assert table["material_id"].is_unique


def test_smaller_subsets_are_prefixes_of_larger_ones(table: pd.DataFrame) -> None:
    """A partial paper-scale run (first N of the seeded order) is exactly `n_materials: N`."""
    small = select_materials(table, {"n_materials": 30, "max_sites": 0, "subset_seed": 3})
    large = select_materials(table, {"n_materials": 300, "max_sites": 0, "subset_seed": 3})
    order = seeded_order([f"mp-{i}" for i in table["material_id"]], 3)
    assert set(small["mp_id"]) == set(order[:30])
    assert set(small["mp_id"]) <= set(large["mp_id"])


def test_selection_respects_max_sites_and_seed(table: pd.DataFrame) -> None:
    a = select_materials(table, {"n_materials": 40, "max_sites": 4, "subset_seed": 0})
    b = select_materials(table, {"n_materials": 40, "max_sites": 4, "subset_seed": 0})
    c = select_materials(table, {"n_materials": 40, "max_sites": 4, "subset_seed": 1})
    assert len(a) == 40 and a["nsites"].max() <= 4
    assert list(a["mp_id"]) == list(b["mp_id"])
    assert set(a["mp_id"]) != set(c["mp_id"])


def test_all_materials_when_n_is_zero(table: pd.DataFrame) -> None:
    assert len(select_materials(table, {"n_materials": 0, "max_sites": 0, "subset_seed": 0})) == 1516


def test_ecalj_source_gives_the_dosnp_tensor(tmp_path: Path, mirror_dir: Path) -> None:
    material = tmp_path / "mp-1"
    shutil.copytree(mirror_dir / RENCUB, material)
    grid = dosnp_grid()
    pdos = ecalj_pdos("mp-1", {"ecalj_pdos_dir": str(tmp_path), "ecalj_ext": "cprn"}, grid)
    assert pdos.shape == (2, 16, 1000)  # PrN: two sites
    assert np.isfinite(pdos).all() and pdos.min() >= 0
    assert pdos[:, 0].sum() > 0  # s channel populated


def test_ecalj_source_names_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mp-404"):
        ecalj_pdos("mp-404", {"ecalj_pdos_dir": str(tmp_path)}, dosnp_grid())


def test_ecalj_extension_detected_beside_plot_files(tmp_path: Path, mirror_dir: Path) -> None:
    """The real sample holds `dos.isp1.site001.cprn.eps` plots beside the data: the default
    `ecalj_ext: null` must still find `cprn` and give the same tensor as naming it."""
    shutil.copytree(mirror_dir / RENCUB, tmp_path / "mp-1")
    assert sorted(p.name for p in (tmp_path / "mp-1").glob("*.eps"))  # the trap is really there
    grid = dosnp_grid()
    detected = ecalj_pdos("mp-1", {"ecalj_pdos_dir": str(tmp_path), "ecalj_ext": None}, grid)
    named = ecalj_pdos("mp-1", {"ecalj_pdos_dir": str(tmp_path), "ecalj_ext": "cprn"}, grid)
    np.testing.assert_array_equal(detected, named)


def test_ecalj_two_runs_in_one_directory_ask_for_the_extension(tmp_path: Path, mirror_dir: Path) -> None:
    material = tmp_path / "mp-1"
    shutil.copytree(mirror_dir / RENCUB, material)
    for path in material.glob("dos.isp*.site*.cprn"):
        shutil.copy(path, material / path.name.replace(".cprn", ".other"))
    with pytest.raises(ValueError, match=r"\['cprn', 'other'\].*dosnp.ecalj_ext"):
        ecalj_pdos("mp-1", {"ecalj_pdos_dir": str(tmp_path)}, dosnp_grid())


def test_ecalj_source_without_directory_names_the_param() -> None:
    with pytest.raises(ValueError, match="dosnp.ecalj_pdos_dir is not set"):
        ecalj_pdos("mp-1", {"pdos_source": "ecalj", "ecalj_pdos_dir": None}, dosnp_grid())


@pytest.mark.parametrize(
    ("key", "value"), [("n_materials", -1), ("max_sites", -1), ("n_materials", "forty"), ("max_sites", 2.5)]
)
def test_bad_counts_name_the_param(table: pd.DataFrame, key: str, value: object) -> None:
    # -1 used to slice the last row off (`rows[:-1]`) and max_sites -1 to select nothing, silently.
    cfg = {"n_materials": 40, "max_sites": 4, "subset_seed": 0, key: value}
    with pytest.raises(ValueError, match=rf"^params.yaml alignn_dos.{key}: "):
        select_materials(table, cfg, where="alignn_dos")


def test_table_commit_given_as_a_bare_number_is_read_as_its_digits() -> None:
    from esrepro.sources import dosnp_table_source

    # `table_commit: 3206083` unquoted in YAML is an int: it is the pinned commit's prefix.
    assert dosnp_table_source(3206083) == dosnp_table_source("3206083aacc37bd3dd12a14f86a216a8ac11da5b")


def test_malformed_tables_name_the_file_and_line(tmp_path: Path, mirror_dir: Path) -> None:
    lines = (mirror_dir / TABLE).read_text().splitlines()
    cases = {
        "empty.csv": ("", "not a readable CSV table"),
        "header_only.csv": (lines[0] + "\n", "the table has no rows"),
        # A short row: its last columns (the QSGW gaps) come back empty.
        "ragged.csv": ("\n".join([lines[0], lines[1], ",".join(lines[2].split(",")[:5])]) + "\n",
                       r"column 'LDA' has 1 empty or non-numeric value\(s\), first in line 3"),
        "text_gap.csv": ("\n".join([lines[0], lines[1].rsplit(",", 4)[0] + ",0.4eV,1.0,1.0,x"]) + "\n",
                         r"column 'LDA' has 1 empty or non-numeric value\(s\), first in line 2: '0.4eV'"),
        "twice.csv": ("\n".join([lines[0], lines[1], lines[1]]) + "\n", r"material_id\(s\) listed twice: \[1056418\]"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ValueError, match=rf"{name}: {message}"):
            read_table(path)
