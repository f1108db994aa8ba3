"""DOSnp pipeline pieces that need no DFT: the ecalj PDOS source and its params."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from esrepro.errors import ConfigError, InputError
from esrepro.papers.dosnp.pipeline import ecalj_pdos
from esrepro.spectra import dosnp_grid
from params_helpers import stage_config

RENCUB = (
    "raw.githubusercontent.com/tkotani/ecalj/3766c03e1f775383895b0c1218cb558d7e9ff86e"
    "/Samples/ReNcub/cprn"
)


def ecalj(directory: Path, ext: str | None = None):
    """The featurize config of the ecalj PDOS source reading ``directory``."""
    return stage_config("dosnp", "featurize", dosnp__pdos_source="ecalj",
                        dosnp__ecalj_pdos_dir=str(directory), dosnp__ecalj_ext=ext)


def test_ecalj_source_gives_the_dosnp_tensor(tmp_path: Path, mirror_dir: Path) -> None:
    material = tmp_path / "mp-1"
    shutil.copytree(mirror_dir / RENCUB, material)
    grid = dosnp_grid()
    pdos = ecalj_pdos("mp-1", ecalj(tmp_path, "cprn"), grid)
    assert pdos.shape == (2, 16, 1000)  # PrN: two sites
    assert np.isfinite(pdos).all() and pdos.min() >= 0
    assert pdos[:, 0].sum() > 0  # s channel populated


def test_ecalj_source_names_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="mp-404"):
        ecalj_pdos("mp-404", ecalj(tmp_path), dosnp_grid())


def test_ecalj_extension_detected_beside_plot_files(tmp_path: Path, mirror_dir: Path) -> None:
    """The real sample holds `dos.isp1.site001.cprn.eps` plots beside the data: the default
    `ecalj_ext: null` must still find `cprn` and give the same tensor as naming it."""
    shutil.copytree(mirror_dir / RENCUB, tmp_path / "mp-1")
    assert sorted(p.name for p in (tmp_path / "mp-1").glob("*.eps"))  # the trap is really there
    grid = dosnp_grid()
    detected = ecalj_pdos("mp-1", ecalj(tmp_path, None), grid)
    named = ecalj_pdos("mp-1", ecalj(tmp_path, "cprn"), grid)
    np.testing.assert_array_equal(detected, named)


def test_ecalj_two_runs_in_one_directory_ask_for_the_extension(
    tmp_path: Path, mirror_dir: Path
) -> None:
    material = tmp_path / "mp-1"
    shutil.copytree(mirror_dir / RENCUB, material)
    for path in material.glob("dos.isp*.site*.cprn"):
        shutil.copy(path, material / path.name.replace(".cprn", ".other"))
    with pytest.raises(ValueError, match=r"\['cprn', 'other'\].*dosnp.ecalj_ext"):
        ecalj_pdos("mp-1", ecalj(tmp_path), dosnp_grid())


def test_ecalj_source_without_directory_names_the_param() -> None:
    with pytest.raises(ConfigError, match="dosnp.ecalj_pdos_dir is not set"):
        stage_config("dosnp", "featurize", dosnp__pdos_source="ecalj", dosnp__ecalj_pdos_dir=None)
