"""The shared material selection: the DOSnp gap table, its seeded subsets (esrepro.selection)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from esrepro.config import Selection
from esrepro.errors import ConfigError
from esrepro.registry import get_paper
from esrepro.selection import read_table, seeded_order, select_materials
from params_helpers import repo_params

TABLE = (
    "raw.githubusercontent.com/tkotani/DOSnpSupplement/3206083aacc37bd3dd12a14f86a216a8ac11da5b"
    "/tab_nonmag_all.csv"
)


@pytest.fixture(scope="module")
def table(mirror_dir: Path) -> pd.DataFrame:
    return read_table(mirror_dir / TABLE)


def test_table_has_the_papers_1516_materials(table: pd.DataFrame) -> None:
    assert len(table) == 1516
    assert table["material_id"].is_unique


def test_smaller_subsets_are_prefixes_of_larger_ones(table: pd.DataFrame) -> None:
    """A partial paper-scale run (first N of the seeded order) is exactly `n_materials: N`."""
    small = select_materials(table, Selection(n_materials=30, max_sites=0, subset_seed=3))
    large = select_materials(table, Selection(n_materials=300, max_sites=0, subset_seed=3))
    order = seeded_order([f"mp-{i}" for i in table["material_id"]], 3)
    assert set(small["mp_id"]) == set(order[:30])
    assert set(small["mp_id"]) <= set(large["mp_id"])


def test_selection_respects_max_sites_and_seed(table: pd.DataFrame) -> None:
    a = select_materials(table, Selection(n_materials=40, max_sites=4, subset_seed=0))
    b = select_materials(table, Selection(n_materials=40, max_sites=4, subset_seed=0))
    c = select_materials(table, Selection(n_materials=40, max_sites=4, subset_seed=1))
    assert len(a) == 40 and a["nsites"].max() <= 4
    assert list(a["mp_id"]) == list(b["mp_id"])
    assert set(a["mp_id"]) != set(c["mp_id"])


def test_all_materials_when_n_is_zero(table: pd.DataFrame) -> None:
    assert len(
        select_materials(table, Selection(n_materials=0, max_sites=0, subset_seed=0))
    ) == 1516


@pytest.mark.parametrize(
    ("key", "value"),
    [("n_materials", -1), ("max_sites", -1), ("n_materials", "forty"), ("max_sites", 2.5)],
)
def test_bad_counts_name_the_param(key: str, value: object) -> None:
    # -1 used to slice the last row off (`rows[:-1]`) and max_sites -1 to select nothing, silently.
    params = repo_params(**{f"alignn_dos__{key}": value})
    with pytest.raises(ConfigError, match=rf"^params.yaml alignn_dos.{key}: "):
        get_paper("alignn_dos").parse(params)


def test_alignn_dos_selects_as_dosnp_selects(table: pd.DataFrame) -> None:
    """Equal selection params give equal materials: the two default profiles share DFT."""
    params = repo_params()
    dosnp = get_paper("dosnp").parse(params)["fetch"].selection
    alignn = get_paper("alignn_dos").parse(params)["fetch"].selection
    assert dosnp == alignn
    assert list(select_materials(table, dosnp)["mp_id"]) == list(
        select_materials(table, alignn)["mp_id"]
    )


def test_table_commit_given_as_a_bare_number_is_read_as_its_digits() -> None:
    from esrepro.sources import dosnp_table_source

    # `table_commit: 3206083` unquoted in YAML is an int: it is the pinned commit's prefix.
    assert dosnp_table_source(3206083) == dosnp_table_source(
        "3206083aacc37bd3dd12a14f86a216a8ac11da5b"
    )


def test_malformed_tables_name_the_file_and_line(tmp_path: Path, mirror_dir: Path) -> None:
    lines = (mirror_dir / TABLE).read_text().splitlines()
    cases = {
        "empty.csv": ("", "not a readable CSV table"),
        "header_only.csv": (lines[0] + "\n", "the table has no rows"),
        # A short row: its last columns (the QSGW gaps) come back empty.
        "ragged.csv": ("\n".join([lines[0], lines[1], ",".join(lines[2].split(",")[:5])]) + "\n",
                       r"column 'LDA' has 1 empty or non-numeric value\(s\), first in line 3"),
        "text_gap.csv": (
            "\n".join([lines[0], lines[1].rsplit(",", 4)[0] + ",0.4eV,1.0,1.0,x"]) + "\n",
            r"column 'LDA' has 1 empty or non-numeric value\(s\), first in line 2: '0.4eV'",
        ),
        "twice.csv": (
            "\n".join([lines[0], lines[1], lines[1]]) + "\n",
            r"material_id\(s\) listed twice: \[1056418\]",
        ),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ValueError, match=rf"{name}: {message}"):
            read_table(path)
