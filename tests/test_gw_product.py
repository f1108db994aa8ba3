"""VAE-GW's DFT products without GPAW runs: GW settings and cache keys, the file format and its
damaged-file errors, the wavefunction product's settings and key, the sampling grid, GPAW's
G0W0 restart files, and packing GW products into a shipped seed."""

from __future__ import annotations

import dataclasses
import json
import tarfile

import numpy as np
import pytest
from ase.build import bulk

from esrepro.dft.band_product import BandProduct, BandSettings, band_cache_key
from esrepro.dft.cache import DFTCache
from esrepro.dft.gw_engine import clear_gw_files, gw_name
from esrepro.dft.gw_product import (
    GWProduct,
    GWSettings,
    gw_cache,
    gw_cache_key,
    layer_with_vacuum,
)
from esrepro.dft.kinds import kind_named, kind_of
from esrepro.dft.seeds import Manifest, gw_product_kind, pack, unpack_archive
from esrepro.dft.settings import DFTSettings, cache_key
from esrepro.dft.wavefunction_grid import (
    GridSampler,
    GridSpec,
    degenerate_groups,
    layer_centre,
    scaled,
)
from esrepro.dft.wavefunction_product import (
    WavefunctionProduct,
    WavefunctionSettings,
    wavefunction_cache_key,
)
from esrepro.papers.vae_gw.structures import all_materials
from helpers import synthetic_band_product, synthetic_gw_product

VERSIONS = {"product_format": "2", "gpaw": "26.7.0", "gpaw-data": "1.2.1", "ase": "3.29.0"}


def mos2(vacuum: float = 7.5):
    return next(m for m in all_materials() if m.id == "MoS2-2H").atoms(vacuum)


# --- settings and keys ----------------------------------------------------------------------


def test_settings_from_params_coerce_and_refuse_with_the_key_named() -> None:
    settings = GWSettings.from_params({"ecut_ev": 350, "kpts": [3, 3, 1], "gw_ecut_ev": 50,
                                       "ecut_extrapolation": [25, 50], "relax": False})
    assert settings.ecut_ev == 350.0 and settings.kpts == (3, 3, 1)
    assert settings.ecut_extrapolation == (25.0, 50.0) and settings.relax is False
    assert GWSettings.from_dict(settings.to_dict()) == settings
    assert kind_named("gw").settings_from_dict(settings.to_dict()) == settings
    assert json.loads(json.dumps(settings.to_dict())) == settings.to_dict()
    with pytest.raises(ValueError, match=r"unknown GW setting.*ecutt"):
        GWSettings.from_params({"ecutt": 1})
    with pytest.raises(ValueError, match=r"vae_gw\.dft\.bands_below"):
        GWSettings.from_params({"bands_below": -1})
    with pytest.raises(ValueError, match=r"ecut_extrapolation.*largest"):
        GWSettings.from_params({"gw_ecut_ev": 50, "ecut_extrapolation": [25, 40]})
    with pytest.raises(ValueError, match="at least two"):
        GWSettings.from_params({"gw_ecut_ev": 50, "ecut_extrapolation": [50]})
    with pytest.raises(ValueError, match="gw_nbands"):
        GWSettings.from_params({"gw_ecut_ev": 50, "ecut_extrapolation": [25, 50],
                                "gw_nbands": 40})
    with pytest.raises(ValueError, match=r"truncation"):
        GWSettings.from_params({"truncation": "0D"})
    with pytest.raises(ValueError, match=r"vae_gw\.dft\.xc"):
        GWSettings.from_params({"xc": "PBEE"})
    with pytest.raises(ValueError, match=r"kpts"):
        GWSettings.from_params({"kpts": [6, 6]})


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, tuple) and len(value) == 3:
        return (5, 5, 1)
    if isinstance(value, tuple):
        return (20.0, 25.0)
    if isinstance(value, dict):
        return {"nblocks": 2}
    if isinstance(value, str):
        return "PBEsol" if value == "PBE" else "1D"
    return value + 1 if isinstance(value, int) else value * 1.1


def test_every_setting_and_version_enters_the_key_and_structure_noise_does_not() -> None:
    settings = GWSettings()
    key = gw_cache_key(mos2(), settings, VERSIONS)
    for field in dataclasses.fields(GWSettings):
        changed = dataclasses.replace(settings, **{field.name: _changed(getattr(settings,
                                                                                field.name))})
        assert gw_cache_key(mos2(), changed, VERSIONS) != key, field.name
    for package in ("gpaw", "gpaw-data"):
        assert gw_cache_key(mos2(), settings, {**VERSIONS, package: "0"}) != key, package
    assert gw_cache_key(mos2(), settings, {**VERSIONS, "ase": "0"}) == key  # as other kinds
    # Same structure: atom order, another vacuum (re-centred with settings.vacuum), a shift.
    assert gw_cache_key(mos2()[[2, 0, 1]], settings, VERSIONS) == key
    assert gw_cache_key(mos2(vacuum=4.0), settings, VERSIONS) == key
    shifted = mos2()
    shifted.positions[:, 2] += 1.3
    assert gw_cache_key(shifted, settings, VERSIONS) == key
    stretched = mos2()
    stretched.set_cell(stretched.cell.array * [1.01, 1.01, 1.0], scale_atoms=True)
    assert gw_cache_key(stretched, settings, VERSIONS) != key
    assert kind_of(settings).name == "gw"
    # Distinct from the other kinds' keys of the same structure.
    assert key not in {cache_key(mos2(), DFTSettings(), VERSIONS),
                       band_cache_key(mos2(), BandSettings(), VERSIONS)}


def test_versions_default_to_the_installed_gpaw_and_never_float() -> None:
    from importlib.metadata import version

    from esrepro.dft.gw_product import gw_versions

    versions = gw_versions()
    assert versions["gpaw"] == version("gpaw") and versions["gpaw-data"] == version("gpaw-data")
    assert versions["product_format"] == "gw-1"
    assert gw_cache_key(mos2(), GWSettings()) == gw_cache_key(mos2(), GWSettings(),
                                                             dict(versions))


def test_a_layer_cell_is_required() -> None:
    with pytest.raises(ValueError, match="not a 2D layer cell"):
        layer_with_vacuum(bulk("Si", "diamond", a=5.43), 7.5)
    layer = layer_with_vacuum(mos2(vacuum=3.0), 7.5)
    assert layer.pbc.tolist() == [True, True, False]
    assert layer.positions[:, 2].min() == pytest.approx(7.5)


def test_wavefunction_settings_share_the_gw_ground_state_and_have_their_own_keys() -> None:
    gw = GWSettings(ecut_ev=300.0, vacuum=6.0)
    wf = WavefunctionSettings.from_gw(gw, bands_per_side=6)
    assert wf.ecut_ev == 300.0 and wf.vacuum == 6.0 and wf.bands_per_side == 6
    assert wf.ground_state().ecut_ev == 300.0 and wf.ground_state().kpts == gw.kpts
    assert WavefunctionSettings.from_dict(wf.to_dict()) == wf
    key = wavefunction_cache_key(mos2(), wf, VERSIONS)
    # Settings of the G0W0 step alone do not change the ground state, nor this key.
    assert wavefunction_cache_key(mos2(), WavefunctionSettings.from_gw(
        dataclasses.replace(gw, gw_ecut_ev=50.0), bands_per_side=6), VERSIONS) == key
    for change in ({"z_window": 10.0}, {"bands_per_side": 7}, {"n_xy": 24},
                   {"super_state_windows_ev": ((-5.0, 0.0),)}, {"ecut_ev": 400.0}):
        assert wavefunction_cache_key(mos2(), dataclasses.replace(wf, **change),
                                      VERSIONS) != key, change
    assert key != gw_cache_key(mos2(), gw, VERSIONS)
    assert kind_of(wf).name == "gw-wavefunctions"
    parsed = WavefunctionSettings.from_params(gw, {"z_window": 10, "bands_per_side": 5,
                                                   "super_state_windows_ev": [[-4, 0], [0, 4]]})
    assert parsed.z_window == 10.0 and parsed.super_state_windows_ev == ((-4.0, 0.0),
                                                                         (0.0, 4.0))
    with pytest.raises(ValueError, match="ecut_ev"):  # ground-state fields come from gw
        WavefunctionSettings.from_params(gw, {"ecut_ev": 500})
    with pytest.raises(ValueError, match="low < high"):
        WavefunctionSettings.from_params(gw, {"super_state_windows_ev": [[1, 0]]})


# --- file format ---------------------------------------------------------------------------


def test_product_round_trip(tmp_path) -> None:
    product = synthetic_gw_product()
    path = tmp_path / "p.npz"
    product.save(path)
    loaded = GWProduct.load(path)
    for name in ("numbers", "cell", "positions", "kpoints", "k_weights", "e_dft", "e_gw", "z",
                 "occupations", "sigma", "vxc", "exx", "orbital_character"):
        np.testing.assert_allclose(getattr(loaded, name), getattr(product, name), err_msg=name)
    assert (loaded.band_start, loaded.n_ref, loaded.band_stop) == (11, 13, 15)
    assert loaded.gap_gw == product.gap_gw and loaded.vacuum_level == 4.5
    assert loaded.meta == product.meta and not loaded.is_metal
    np.testing.assert_array_equal(loaded.band_offsets, [-2, -1, 0, 1])
    np.testing.assert_allclose(loaded.delta_gw, np.tile([-0.3, -0.3, 0.5, 0.5], (3, 1)))
    assert loaded.settings() == GWSettings()
    assert loaded.atoms().get_chemical_formula() == "MoS2"
    assert loaded.lattice_constant == pytest.approx(3.18)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign", "missing-array"])
def test_a_damaged_file_is_one_clear_line_naming_it(tmp_path, damage) -> None:
    path = tmp_path / "p.npz"
    synthetic_gw_product().save(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif damage == "foreign":
        synthetic_band_product(1.0, 1.7, 1.2).save(path)
    else:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files if k != "e_gw"}
        np.savez(path, **arrays)
    with pytest.raises(ValueError) as info:
        GWProduct.load(path)
    message = str(info.value)
    assert message.startswith(f"damaged GW product file {path}: ") and "\n" not in message


def test_arrays_of_the_wrong_shape_are_refused(tmp_path) -> None:
    product = synthetic_gw_product()
    product.z = product.z[:, :2]
    path = tmp_path / "p.npz"
    product.save(path)
    with pytest.raises(ValueError, match="do not have the shape"):
        GWProduct.load(path)


def _tiny_waves() -> WavefunctionProduct:
    gw = synthetic_gw_product()
    n_k = len(gw.kpoints)
    n = 2 * n_k
    return WavefunctionProduct(
        numbers=gw.numbers, cell=gw.cell, positions=gw.positions, kpoints=gw.kpoints,
        k_weights=gw.k_weights, n_ref=gw.n_ref, k_index=np.repeat(np.arange(n_k), 2),
        band_index=np.tile([gw.n_ref - 1, gw.n_ref], n_k), energies=np.zeros(n),
        occupations=np.zeros(n), states=np.ones((n, 2, 3, 3), np.float16),
        state_maxima=np.ones(n), density=np.ones((2, 3, 3)), density_max=1.0,
        super_states=np.ones((1, 2, 3, 3)), super_maxima=np.ones(1), z_offsets=np.zeros(2),
        energy_reference=0.0,
    )


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
@pytest.mark.parametrize("label", ["band product", "wavefunction product"])
def test_other_tagged_kinds_name_a_damaged_or_foreign_file(tmp_path, label, damage) -> None:
    # Every kind reads through `esrepro.dft.product_file`; the GW kind is covered above.
    kind, own = {"band product": (BandProduct, synthetic_band_product(1.0, 1.7, 1.2)),
                 "wavefunction product": (WavefunctionProduct, _tiny_waves())}[label]
    path = tmp_path / "p.npz"
    own.save(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    else:
        synthetic_gw_product().save(path)
    with pytest.raises(ValueError) as info:
        kind.load(path)
    message = str(info.value)
    assert message.startswith(f"damaged {label} file {path}: ")
    if damage == "foreign":
        assert message.endswith(f"not a {label}")


# --- the sampling grid ---------------------------------------------------------------------


def test_slices_are_centred_on_the_layer_and_span_the_window() -> None:
    spec = GridSpec()
    z = spec.z_offsets()
    assert len(z) == 40 and spec.in_plane().shape == (28,)
    np.testing.assert_allclose(np.diff(z), 12.0 / 40)
    np.testing.assert_allclose(z, -z[::-1])  # symmetric about the centre, none on it
    assert z[0] == pytest.approx(-6.0 + 0.15) and z[-1] == pytest.approx(6.0 - 0.15)
    atoms = mos2()
    assert layer_centre(atoms.positions) == pytest.approx(atoms.cell[2, 2] / 2)
    with pytest.raises(ValueError, match="does not fit"):
        GridSampler((12, 12, 40), np.array(mos2(vacuum=3.0).cell), mos2(vacuum=3.0).positions,
                    GridSpec(z_window=12.0))


def test_sampler_evaluates_band_limited_functions_exactly() -> None:
    """A sum of plane waves given on a coarse grid, at points off that grid: the analytic value,
    to rounding (whether the grid is coarser or finer than 28 points in-plane)."""
    atoms = mos2()
    cell = np.array(atoms.cell)
    rng = np.random.default_rng(0)
    for shape in [(12, 12, 60), (32, 30, 90)]:
        waves = [(tuple(int(rng.integers(-n // 2 + 1, n // 2)) for n in shape),
                  rng.normal() + 1j * rng.normal()) for _ in range(6)]
        grid = np.stack(np.meshgrid(*[np.arange(n) / n for n in shape], indexing="ij"), -1)

        def f(frac, waves=waves):
            return sum(c * np.exp(2j * np.pi * (frac @ np.array(m))) for m, c in waves)

        sampler = GridSampler(shape, cell, atoms.positions, GridSpec())
        uv = GridSpec().in_plane()
        points = np.stack(np.meshgrid(sampler.z / cell[2, 2], uv, uv, indexing="ij"), -1)
        expected = f(points[..., [1, 2, 0]])
        np.testing.assert_allclose(sampler.evaluate(f(grid)), expected, atol=1e-10)
        np.testing.assert_allclose(sampler.modulus_squared(f(grid)), np.abs(expected) ** 2,
                                   atol=1e-9)


def test_scaling_and_degenerate_groups() -> None:
    values, peak = scaled(np.array([[0.5, 2.0], [1.0, 0.0]]))
    assert peak == 2.0 and values.max() == 1.0
    with pytest.raises(ValueError):
        scaled(np.zeros(3))
    groups = degenerate_groups(np.array([1.0, 0.0, 1.0005, 2.0, 0.0002]), 1e-3)
    assert [sorted(g.tolist()) for g in groups] == [[1, 4], [0, 2], [3]]


# --- GPAW's G0W0 files ---------------------------------------------------------------------


def test_restart_files_are_named_per_material_and_cleared(tmp_path) -> None:
    a = gw_name(mos2(), tmp_path / "MoS2-2H.gpaw.txt")
    b = gw_name(next(m for m in all_materials() if m.id == "WS2-2H").atoms(),
                tmp_path / "WS2-2H.gpaw.txt")
    assert a.startswith("gw-MoS2-2H-") and b.startswith("gw-WS2-2H-") and a != b
    assert gw_name(mos2(), None).startswith("gw-material-")
    for name in (a, b):
        (tmp_path / f"qcache_{name}").mkdir()
        (tmp_path / f"qcache_{name}" / "cache.0.json").write_text("{}")
        (tmp_path / f"{name}_results_GW.pckl").write_bytes(b"x")
        (tmp_path / f"{name}.txt").write_text("log")
    removed = clear_gw_files(tmp_path, a)
    assert {p.name for p in removed} == {f"qcache_{a}", f"{a}_results_GW.pckl", f"{a}.txt"}
    assert (tmp_path / f"qcache_{b}").is_dir() and (tmp_path / f"{b}.txt").is_file()


# --- shipped seeds -------------------------------------------------------------------------


def test_gw_products_and_failures_pack_into_their_kind_and_unpack_where_gw_cache_reads(
        tmp_path) -> None:
    product = synthetic_gw_product()
    key = gw_cache_key(mos2(), GWSettings())
    cache = DFTCache(tmp_path / "cache")
    product.save(gw_cache(cache).product_path(key))
    failed = gw_cache_key(mos2(vacuum=5.0)[[0]], GWSettings())
    gw_cache(cache).record_failure(failed, {
        "reason": "SCFNotConverged: ...", "product": "gw", "material_id": "X",
        "settings": GWSettings().to_dict(), "versions": product.meta["versions"]})
    seed = tmp_path / "seeds"
    new = pack(seed, [cache.root])
    kind = gw_product_kind(GWSettings().to_dict(), product.meta["versions"])
    assert kind.startswith("gw-PBE-") and [e.kind for e in new] == [kind]
    assert set(new[0].products) == {key} and set(new[0].failures) == {failed}
    manifest = Manifest.load(seed)
    assert manifest.kinds[kind]["product"] == "gw"
    with tarfile.open(seed / new[0].path) as tar:
        assert sorted(tar.getnames()) == sorted([f"gw/{key[:2]}/{key}.npz",
                                                 f"gw/{failed[:2]}/{failed}.failed.json"])
    unpacked = unpack_archive(manifest, new[0], tmp_path / "unpacked")
    reader = gw_cache(DFTCache(tmp_path / "empty", [unpacked]))
    found = reader.find_product(key, repair=True, load=GWProduct.load)
    assert found is not None and found[1].startswith("seed:")
    assert reader.find_failure(failed)["reason"] == "SCFNotConverged: ..."
    assert pack(seed, [cache.root]) == []  # nothing new
    # Another setting is another kind.
    assert gw_product_kind(GWSettings(gw_ecut_ev=50.0).to_dict(),
                           product.meta["versions"]) != kind
