"""scripts/warm_dft_cache.py computes what the stages will look up: same structures, same
order, same cache keys (a warm-up whose keys differ from the stage's is wasted core-hours)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from esrepro.config import load_params
from esrepro.dft.gw_product import GWSettings, gw_versions
from esrepro.dft.kinds import kind_of
from esrepro.dft.seeds import gw_product_kind

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def warm():
    spec = importlib.util.spec_from_file_location("warm_dft_cache",
                                                  ROOT / "scripts" / "warm_dft_cache.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shipped_keys(kind: str) -> dict[str, str]:
    manifest = json.loads((ROOT / "seeds" / "manifest.json").read_text())
    return {key: material for archive in manifest["archives"] if archive["kind"] == kind
            for key, material in archive["products"].items()}


def test_gw_warm_up_follows_the_stage_order_and_keys(warm, tmp_path):
    """The GW products shipped in seeds/ were written by the vae_gw_dft stage, from structures
    that went through its extxyz files: the warm-up's keys of the same materials must be
    those keys, and its order the stage's `n_materials` prefix order."""
    from ase.io import read, write

    from esrepro.papers.vae_gw.structures import select_materials

    params = load_params(ROOT / "params.yaml")
    settings = warm.product_settings(params, "gw")
    structures = warm.gw_structures(params, None, 0)
    stage_order = [m.id for m in select_materials(0, params["vae_gw"]["subset_seed"])]
    assert list(structures) == stage_order
    assert len(structures) == 156

    key = kind_of(settings).key
    shipped = shipped_keys(gw_product_kind(settings.to_dict(), gw_versions()))
    assert shipped, "no shipped GW archive for the current vae_gw.dft settings"
    for material_id in set(shipped.values()):
        atoms = structures[material_id]
        # The stage's own path: written to extxyz by vae_gw_structures, read back by vae_gw_dft.
        write(tmp_path / f"{material_id}.xyz", atoms, format="extxyz")
        assert key(read(tmp_path / f"{material_id}.xyz", format="extxyz"), settings) == \
            key(atoms, settings)
        assert shipped.get(key(atoms, settings)) == material_id


def test_max_sites_keeps_the_order(warm):
    params = load_params(ROOT / "params.yaml")
    every = list(warm.gw_structures(params, None, 0))
    small = warm.gw_structures(params, None, 3)
    assert list(small) == [m for m in every if m in small]
    assert all(len(atoms) <= 3 for atoms in small.values())
    assert 0 < len(small) < len(every)


def test_unknown_product_is_refused():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "warm_dft_cache.py"),
                             "--product", "phonons", "--status"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert "invalid choice: 'phonons'" in result.stderr


def test_seed_status_counts_the_vae_gw_set(tmp_path, capsys):
    """`esrepro seed status` finds the shipped G0W0 products of the default profile under the
    keys the stage uses, and none in an empty cache."""
    from esrepro.dft.seeds import Manifest, _print_gw_status

    params = load_params(ROOT / "params.yaml")
    manifest = Manifest.load(ROOT / "seeds")
    n_default = params["vae_gw"]["n_materials"]
    _print_gw_status(params, manifest, tmp_path / "empty-cache", [])
    out = capsys.readouterr().out
    kind = gw_product_kind(GWSettings.from_params(params["vae_gw"]["dft"]).to_dict(),
                           gw_versions())
    n_shipped = sum(len(a.products) for a in manifest.archives if a.kind == kind)
    assert f"G0W0 products of the VAE-GW 2D set (156 materials, kind {kind}" in out
    assert f"  shipped seed:    {n_shipped:>5}" in out
    assert "  writable cache:      0" in out
    assert f"VAE-GW selection (n_materials {n_default}): {n_default} of {n_default} finished" in out
    # Without a vae_gw block there is nothing to count.
    _print_gw_status({"dft": {}}, manifest, tmp_path, [])
    assert capsys.readouterr().out == ""
