from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase.units import Rydberg

from esrepro.dft.ecalj import ecalj_pdos_tensor, find_site_files, read_ecalj_pdos
from esrepro.fetch import mirror_path
from esrepro.sources import dataset_sources

# Architecture convention: [E_F - 1.5 Ry, E_F + 1.0 Ry], 1000 points.
GRID_EV = np.linspace(-1.5 * Rydberg, 1.0 * Rydberg, 1000)


@pytest.fixture(scope="module")
def rencub_dir(mirror_dir: Path) -> Path:
    """Real ecalj PDOS sample (PrN, nsp=2, 2 sites) from the mirror."""
    src = next(
        s for s in dataset_sources("ecalj_rencub_pdos") if s.filename == "dos.isp1.site001.cprn"
    )
    return mirror_path(src.url, mirror_dir).parent


@pytest.fixture(scope="module")
def site1_up(rencub_dir: Path):
    return read_ecalj_pdos(rencub_dir / "dos.isp1.site001.cprn")


def test_reads_real_sample(rencub_dir: Path, site1_up) -> None:
    p = site1_up
    assert (p.spin, p.site, p.ext) == (1, 1, "cprn")
    assert p.pdos.shape == (4000, 25)  # l <= 4: (4+1)^2 lm columns
    assert np.all(np.diff(p.energies_ev) > 0)
    # First row of the file is -1.46996 Ry; converted to eV.
    assert p.energies_ev[0] == pytest.approx(-1.46996 * Rydberg)
    assert p.energies_ev[0] < -19 and p.energies_ev[-1] > 19
    assert np.all(p.pdos >= 0)
    raw_last_s = float(
        (rencub_dir / "dos.isp1.site001.cprn").read_text().splitlines()[-1].split()[1]
    )
    assert p.pdos[-1, 0] == pytest.approx(raw_last_s / Rydberg)  # states/Ry -> states/eV


def test_find_site_files_ignores_plots(rencub_dir: Path) -> None:
    files = find_site_files(rencub_dir, "cprn")
    assert sorted(files) == [1, 2]
    assert all(sorted(spins) == [1, 2] for spins in files.values())
    assert files[1][2].name == "dos.isp2.site001.cprn"


def test_tensor_is_spin_sum(rencub_dir: Path) -> None:
    tensor = ecalj_pdos_tensor(rencub_dir, "cprn", GRID_EV)
    assert tensor.shape == (2, 16, GRID_EV.size)
    for site in (1, 2):
        expected = np.zeros((16, GRID_EV.size))
        for spin in (1, 2):
            p = read_ecalj_pdos(rencub_dir / f"dos.isp{spin}.site{site:03d}.cprn")
            expected += np.array(
                [
                    np.interp(GRID_EV, p.energies_ev, p.pdos[:, c], left=0, right=0)
                    for c in range(16)
                ]
            )
        np.testing.assert_allclose(tensor[site - 1], expected)
    # The grid starts below the file's first energy: zero there, not extrapolated.
    assert np.all(tensor[:, :, GRID_EV < -1.47 * Rydberg] == 0)
    s_count = np.trapezoid(tensor[:, 0, :], GRID_EV, axis=-1)
    assert np.all(np.isfinite(s_count)) and np.all(s_count > 0)


def _copy_sample_head(rencub_dir: Path, dest_dir: Path, n_rows: int) -> Path:
    src = rencub_dir / "dos.isp1.site001.cprn"
    lines = src.read_text().splitlines(keepends=True)[: n_rows + 1]
    dest = dest_dir / src.name
    dest.write_text("".join(lines))
    return dest


def test_malformed_value_names_file_and_line(rencub_dir: Path, tmp_path: Path) -> None:
    path = _copy_sample_head(rencub_dir, tmp_path, 5)
    with path.open("a") as fh:
        fh.write("  0.1 " + " garbage" * 25 + "\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:7: non-numeric"):
        read_ecalj_pdos(path)


def test_truncated_row_names_file_and_line(rencub_dir: Path, tmp_path: Path) -> None:
    path = _copy_sample_head(rencub_dir, tmp_path, 3)
    with path.open("a") as fh:
        fh.write("  0.1 0.2 0.3\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:5: 3 columns, expected 26"):
        read_ecalj_pdos(path)


def test_missing_header_and_bad_name(tmp_path: Path) -> None:
    path = tmp_path / "dos.isp1.site001.x"
    path.write_text("-1.0 0 0\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:1: expected a '#' header"):
        read_ecalj_pdos(path)
    other = tmp_path / "pdos.dat"
    other.write_text("#\n")
    with pytest.raises(ValueError, match="pdos.dat"):
        read_ecalj_pdos(other)


def test_inconsistent_spins_rejected(rencub_dir: Path, tmp_path: Path) -> None:
    for name in ("dos.isp1.site001.cprn", "dos.isp2.site001.cprn", "dos.isp1.site002.cprn"):
        shutil.copy(rencub_dir / name, tmp_path / name)
    with pytest.raises(ValueError, match="site 2 has spins"):
        ecalj_pdos_tensor(tmp_path, "cprn", GRID_EV)
