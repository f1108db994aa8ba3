"""DFT settings, cache keys and the product file format (no GPAW calculation)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from esrepro.dft.product import N_CHANNELS, DFTProduct
from esrepro.dft.settings import DFTSettings, cache_key, code_versions

VERSIONS = {"product_format": "1", "gpaw": "26.7.0", "gpaw-data": "1.0.1", "ase": "3.25.0"}


@pytest.fixture
def rocksalt():
    """A 2-species, 8-atom cell, so that permutations actually reorder species and sites."""
    return bulk("NaCl", "rocksalt", a=5.64, cubic=True)


def test_key_is_deterministic_hex(rocksalt) -> None:
    key = cache_key(rocksalt, DFTSettings(), VERSIONS)
    assert key == cache_key(rocksalt.copy(), DFTSettings(), dict(VERSIONS))
    assert len(key) == 64 and set(key) <= set("0123456789abcdef")  # sha256 hex digest


def test_key_invariant_to_atom_permutation(rocksalt) -> None:
    rng = np.random.default_rng(1)
    reference = cache_key(rocksalt, DFTSettings(), VERSIONS)
    for _ in range(5):
        perm = rng.permutation(len(rocksalt))
        assert not np.array_equal(perm, np.arange(len(rocksalt))) or len(rocksalt) == 1
        assert cache_key(rocksalt[perm], DFTSettings(), VERSIONS) == reference


def test_key_invariant_to_wrapping_by_lattice_vectors(rocksalt) -> None:
    reference = cache_key(rocksalt, DFTSettings(), VERSIONS)
    shifted = rocksalt.copy()
    rng = np.random.default_rng(2)
    # Move every atom by its own integer combination of lattice vectors (some negative).
    n_c = rng.integers(-2, 3, size=(len(shifted), 3))
    shifted.positions += n_c @ shifted.cell.array
    assert not np.allclose(shifted.positions, rocksalt.positions)
    assert cache_key(shifted, DFTSettings(), VERSIONS) == reference
    shifted.wrap()
    assert cache_key(shifted, DFTSettings(), VERSIONS) == reference


def test_key_changes_with_structure(rocksalt) -> None:
    reference = cache_key(rocksalt, DFTSettings(), VERSIONS)
    moved = rocksalt.copy()
    moved.positions[0] += [0.01, 0.0, 0.0]
    assert cache_key(moved, DFTSettings(), VERSIONS) != reference
    strained = rocksalt.copy()
    strained.set_cell(strained.cell * 1.01, scale_atoms=True)
    assert cache_key(strained, DFTSettings(), VERSIONS) != reference


@pytest.mark.parametrize(
    "change",
    [
        {"mode": "lcao"},
        {"ecut_ev": 501.0},
        {"xc": "PBE"},
        {"kpt_density": 3.0},
        {"kpt_even": False},
        {"smearing": "marzari-vanderbilt"},
        {"smearing_width_ev": 0.02},
        {"nbands_factor": 2.5},
        {"min_empty_bands": 13},
        {"bands_cover_ev": 12.0},
        {"free_electron_band_scale": 1.3},
        {"converge_bands": "occupied"},
        {"density_tolerance": 1e-5},
        {"eigenstates_tolerance": 1e-8},
        {"max_iterations": 300},
        {"basis": "szp"},
        {"window_below_ev": 20.0},
        {"window_above_ev": 16.0},
        {"dos_kpt_density": 4.0},
        {"extra": {"symmetry": "off"}},
    ],
    ids=lambda c: next(iter(c)),
)
def test_key_changes_with_every_setting(rocksalt, change) -> None:
    base = DFTSettings()
    changed = dataclasses.replace(base, **change)
    assert cache_key(rocksalt, changed, VERSIONS) != cache_key(rocksalt, base, VERSIONS)


def test_every_field_is_covered_by_the_parametrization() -> None:
    # A new DFTSettings field must be added to the list above (and so checked to enter the key).
    covered = {
        "mode",
        "ecut_ev",
        "xc",
        "kpt_density",
        "kpt_even",
        "smearing",
        "smearing_width_ev",
        "nbands_factor",
        "min_empty_bands",
        "bands_cover_ev",
        "free_electron_band_scale",
        "converge_bands",
        "density_tolerance",
        "eigenstates_tolerance",
        "max_iterations",
        "basis",
        "window_below_ev",
        "window_above_ev",
        "dos_kpt_density",
        # Per structure: test_cell_reduction_enters_the_key_only_where_it_applies.
        "reduce_skewed_cells",
        "extra",
    }
    assert {f.name for f in dataclasses.fields(DFTSettings)} == covered


def test_settings_added_later_keep_old_keys_at_their_default(rocksalt) -> None:
    # The key of a product cached before `dos_kpt_density` and `reduce_skewed_cells` existed:
    # hashed without those fields.
    import hashlib
    import json

    from esrepro.structures import canonical_structure_hash

    added = {"dos_kpt_density", "reduce_skewed_cells"}
    legacy = {k: v for k, v in dataclasses.asdict(DFTSettings()).items() if k not in added}
    versions = {k: v for k, v in VERSIONS.items() if k != "ase"}
    payload = {
        "structure": canonical_structure_hash(rocksalt), "settings": legacy, "versions": versions
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    assert cache_key(rocksalt, DFTSettings(), VERSIONS) == hashlib.sha256(blob).hexdigest()


@pytest.mark.parametrize(
    "package, new", [("gpaw", "26.8.0"), ("gpaw-data", "1.0.2"), ("product_format", "2")]
)
def test_key_changes_with_code_versions(rocksalt, package, new) -> None:
    assert cache_key(rocksalt, DFTSettings(), {**VERSIONS, package: new}) != cache_key(
        rocksalt, DFTSettings(), VERSIONS
    )


def test_key_ignores_ase_version(rocksalt) -> None:
    # Documented: ASE's version does not change GPAW results and is excluded from the key.
    assert cache_key(rocksalt, DFTSettings(), {**VERSIONS, "ase": "9.9.9"}) == cache_key(
        rocksalt, DFTSettings(), VERSIONS
    )


def test_default_versions_are_the_installed_ones(rocksalt) -> None:
    versions = code_versions()
    assert versions["gpaw"] != "absent"
    assert cache_key(rocksalt, DFTSettings()) == cache_key(rocksalt, DFTSettings(), versions)
    # cache_key must not mutate the (lru-cached) dict it was given.
    assert "ase" in code_versions()


def test_from_params_coerces_yaml_numbers(rocksalt) -> None:
    from_int = DFTSettings.from_params({"ecut_ev": 500, "kpt_density": 3, "max_iterations": 200})
    from_float = DFTSettings.from_params(
        {"ecut_ev": 500.0, "kpt_density": 3.0, "max_iterations": 200}
    )
    assert isinstance(from_int.ecut_ev, float) and isinstance(from_int.kpt_density, float)
    assert cache_key(rocksalt, from_int, VERSIONS) == cache_key(rocksalt, from_float, VERSIONS)
    # The default cutoff written as a YAML integer is the default and hashes as such.
    default_as_int = int(DFTSettings().ecut_ev)
    assert cache_key(
        rocksalt, DFTSettings.from_params({"ecut_ev": default_as_int}), VERSIONS
    ) == cache_key(rocksalt, DFTSettings(), VERSIONS)


def test_from_params_keeps_extra_dict() -> None:
    settings = DFTSettings.from_params({"extra": {"symmetry": "off"}})
    assert settings.extra == {"symmetry": "off"}


def test_from_params_unknown_key_is_named() -> None:
    with pytest.raises(ValueError, match="ecutt_ev"):
        DFTSettings.from_params({"ecutt_ev": 500})


# --- DFTProduct file format -------------------------------------------------------------------


def synthetic_product(seed: int = 0) -> DFTProduct:
    rng = np.random.default_rng(seed)
    n_atoms, n_k, n_bands = 2, 3, 10
    eigen = np.sort(rng.normal(0.0, 5.0, size=(n_k, n_bands)), axis=1)
    return DFTProduct(
        numbers=np.array([31, 33]),
        cell=np.eye(3) * 5.65 + rng.normal(0.0, 0.01, (3, 3)),
        positions=rng.random((n_atoms, 3)) * 5.0,
        eigenvalues=eigen.astype(np.float32),
        k_weights=np.array([0.125, 0.375, 0.5]),
        fermi_level=0.3,
        vbm=0.1,
        cbm=1.1,
        gap=1.0,
        n_electrons=8.0,
        projector_weights=rng.random((n_atoms, N_CHANNELS, n_k, n_bands - 2)).astype(np.float16),
        band_start=1,
        band_stop=n_bands - 1,
        channel_mask=np.arange(N_CHANNELS)[None, :].repeat(n_atoms, 0) < 9,
        meta={"energy_ev": -10.5, "kpt_grid": [4, 4, 4], "versions": {"gpaw": "26.7.0"}},
    )


def test_product_round_trip(tmp_path: Path) -> None:
    product = synthetic_product()
    path = tmp_path / "ab" / "abcdef.npz"
    product.save(path)
    assert path.is_file()
    assert not list(path.parent.glob("*.tmp")), "atomic save must not leave its temporary file"
    loaded = DFTProduct.load(path)
    np.testing.assert_array_equal(loaded.numbers, product.numbers)
    np.testing.assert_array_equal(loaded.cell, product.cell)  # float64 on disk
    np.testing.assert_array_equal(loaded.positions, product.positions)
    np.testing.assert_allclose(loaded.eigenvalues, product.eigenvalues, rtol=0, atol=1e-5)
    np.testing.assert_allclose(loaded.k_weights, product.k_weights, rtol=1e-7)
    np.testing.assert_array_equal(loaded.projector_weights, product.projector_weights)
    np.testing.assert_array_equal(loaded.channel_mask, product.channel_mask)
    assert loaded.channel_mask.dtype == bool
    for name in ("fermi_level", "vbm", "cbm", "gap", "n_electrons", "band_start", "band_stop"):
        assert getattr(loaded, name) == getattr(product, name), name
    assert loaded.meta == product.meta
    assert loaded.reference_energy == product.vbm
    assert loaded.window_eigenvalues().shape == loaded.projector_weights.shape[2:]


def _damage(kind: str, data: bytes) -> bytes:
    if kind == "garbage":
        return b"this is not an npz file\n" * 20
    if kind == "truncated":
        return data[: len(data) // 2]
    if kind == "empty":
        return b""
    if kind == "flipped-byte":
        i = len(data) // 3
        return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "garbage",
        "missing-field",
        "truncated",
        "empty",
        "flipped-byte",
    ],
)
def test_damaged_product_raises_value_error_naming_path(tmp_path: Path, kind: str) -> None:
    good = tmp_path / "good.npz"
    synthetic_product().save(good)
    bad = tmp_path / f"damaged-{kind}.npz"
    if kind == "missing-field":
        with np.load(good) as z:
            fields = {k: z[k] for k in z.files if k != "scalars"}
        with open(bad, "wb") as fh:
            np.savez_compressed(fh, **fields)
    else:
        bad.write_bytes(_damage(kind, good.read_bytes()))
    with pytest.raises(ValueError, match=bad.name) as info:
        DFTProduct.load(bad)
    assert str(bad) in str(info.value)


def test_cell_reduction_enters_the_key_only_where_it_applies(rocksalt) -> None:
    from esrepro.dft.settings import applies_cell_reduction

    skewed = rocksalt.copy()
    skewed.set_cell(
        np.array([[1, 2, 0], [0, 1, 0], [1, 0, 1]]) @ rocksalt.cell.array, scale_atoms=False
    )
    skewed.wrap()
    off, on = DFTSettings(), DFTSettings(reduce_skewed_cells=1.05)
    assert not applies_cell_reduction(skewed, off)
    assert applies_cell_reduction(skewed, on)
    assert not applies_cell_reduction(rocksalt, on), "an orthogonal cell has nothing to reduce"
    # LCAO always runs on the Niggli cell; the setting concerns plane waves only.
    assert not applies_cell_reduction(skewed, dataclasses.replace(on, mode="lcao"))
    # A structure the setting leaves alone keeps the key it had before the setting existed ...
    assert cache_key(rocksalt, on, VERSIONS) == cache_key(rocksalt, off, VERSIONS)
    # ... one it moves to another cell is a different calculation.
    assert cache_key(skewed, on, VERSIONS) != cache_key(skewed, off, VERSIONS)
    assert applies_cell_reduction(
        skewed, dataclasses.replace(on, reduce_skewed_cells=100.0)
    ) is False


def test_rhombohedral_settings_move_to_their_niggli_cell_without_point_group() -> None:
    # a = b = c, alpha = beta = gamma = 30 degrees: Niggli-reducible (a1 - a2 is 2.6 A). On the
    # Niggli cell GPAW would symmetrize its real-space grid, so point-group symmetry goes off.
    from ase import Atoms
    from ase.cell import Cell

    from esrepro.dft.settings import NIGGLI, NIGGLI_NO_POINT_GROUP, cell_reduction
    from esrepro.structures import (
        is_rhombohedral_setting,
        niggli_cell_same_frame,
        orthogonality_defect,
    )

    rhombohedral = Atoms("Bi", cell=Cell.fromcellpar([5.0, 5.0, 5.0, 30.0, 30.0, 30.0]), pbc=True)
    triclinic = Atoms("Bi", cell=Cell.fromcellpar([5.0, 5.2, 5.4, 30.0, 30.0, 30.0]), pbc=True)
    assert is_rhombohedral_setting(rhombohedral) and not is_rhombohedral_setting(triclinic)
    reduced = niggli_cell_same_frame(rhombohedral)
    assert orthogonality_defect(rhombohedral.cell.array) > 1.5 * orthogonality_defect(
        reduced.cell.array
    )
    on = DFTSettings(reduce_skewed_cells=1.5)
    assert cell_reduction(rhombohedral, on) == NIGGLI_NO_POINT_GROUP
    assert cell_reduction(triclinic, on) == NIGGLI
    assert cell_reduction(rhombohedral, DFTSettings()) is None
    assert cell_reduction(rhombohedral, dataclasses.replace(on, mode="lcao")) is None
    # The fcc primitive cell is a rhombohedral setting with nothing to reduce: left alone.
    from ase.build import bulk

    fcc = bulk("Cu", "fcc", a=3.6)
    assert is_rhombohedral_setting(fcc) and cell_reduction(fcc, on) is None
    assert cache_key(rhombohedral, on, VERSIONS) != cache_key(rhombohedral, DFTSettings(), VERSIONS)
    assert cache_key(fcc, on, VERSIONS) == cache_key(fcc, DFTSettings(), VERSIONS)


# --- validation of dft.settings values --------------------------------------------------------
# A bad value must stop the stage in from_params: in a worker it becomes a recorded DFT failure
# of every material, and the stage still exits 0.


@pytest.mark.parametrize(
    "key, value",
    [
        ("mode", "pww"),
        ("mode", "fd"),  # a GPAW mode, but not one the engine sets up
        ("mode", None),
        ("xc", "LDAA"),
        ("xc", "pbe"),  # GPAW's names are case-sensitive
        ("xc", ""),
        ("xc", None),
        ("xc", 3),
        ("smearing", "fermi-diracc"),
        ("smearing", "tetrahedron-method"),  # GPAW's, but refuses the width the engine passes
        ("converge_bands", "CBM+x"),
        ("converge_bands", "CBM5"),
        ("converge_bands", "CBM+"),
        ("converge_bands", "CBM+-1"),
        ("converge_bands", "Occupied"),
        ("converge_bands", 10),  # the setting is a string: GPAW would get "10"
        ("kpt_even", "no"),
        ("kpt_even", 1),
        ("kpt_even", None),
        ("extra", "h=0.3"),
        ("extra", None),
        ("extra", {"mode": "fd"}),  # build_calculator passes mode itself: GPAW would get it twice
        ("ecut_ev", -450.0),
        ("ecut_ev", 0),
        ("ecut_ev", "abc"),
        ("ecut_ev", None),
        ("ecut_ev", True),
        ("ecut_ev", float("nan")),
        ("ecut_ev", [450]),
        ("smearing_width_ev", 0.0),
        ("smearing_width_ev", -0.01),
        ("kpt_density", 0),
        ("kpt_density", -2.0),
        ("nbands_factor", 0),
        ("density_tolerance", 0.0),
        ("eigenstates_tolerance", -1e-8),
        ("max_iterations", 0),
        ("max_iterations", 2.5),
        ("max_iterations", "many"),
        ("min_empty_bands", -1),
        ("bands_cover_ev", -1.0),
        ("window_below_ev", -22.0),
        ("dos_kpt_density", -4.0),
        ("reduce_skewed_cells", -1.5),
        ("basis", ""),
        ("basis", None),
    ],
    ids=lambda v: repr(v),
)
def test_from_params_rejects_bad_values_naming_the_param(key, value) -> None:
    with pytest.raises(ValueError, match=rf"^params\.yaml dft\.settings\.{key}: "):
        DFTSettings.from_params({key: value})


def test_from_params_conversion_error_names_the_param() -> None:
    with pytest.raises(ValueError) as info:
        DFTSettings.from_params({"ecut_ev": "abc"})
    assert str(info.value) == "params.yaml dft.settings.ecut_ev: expected a number, got 'abc'"


def test_from_params_source_label() -> None:
    # Callers that merge overrides (the LDOS paper) say where the block came from.
    with pytest.raises(ValueError, match=r"^params\.yaml ldos\.dft\.kpt_even: expected true or"):
        DFTSettings.from_params({"kpt_even": "no"}, source="params.yaml ldos.dft")
    with pytest.raises(ValueError, match=r"in params\.yaml ldos\.dft;"):
        DFTSettings.from_params({"ecutt_ev": 1.0}, source="params.yaml ldos.dft")


@pytest.mark.parametrize("block", [None, "pw", [("mode", "pw")]])
def test_from_params_needs_a_mapping(block) -> None:
    with pytest.raises(ValueError, match=r"^params\.yaml dft\.settings: expected a mapping"):
        DFTSettings.from_params(block)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("mode", "lcao", "lcao"),
        ("xc", "PBE", "PBE"),
        ("xc", "GGA_X_PBE+GGA_C_PBE", "GGA_X_PBE+GGA_C_PBE"),  # libxc names pass too
        ("smearing", "marzari-vanderbilt", "marzari-vanderbilt"),
        ("smearing", "methfessel-paxton", "methfessel-paxton"),
        ("converge_bands", "occupied", "occupied"),
        ("converge_bands", "all", "all"),
        ("converge_bands", "CBM+5", "CBM+5"),
        ("converge_bands", "CBM+0.5", "CBM+0.5"),
        ("converge_bands", "CBM+.5", "CBM+.5"),
        ("converge_bands", "CBM+1e-1", "CBM+1e-1"),
        ("kpt_even", False, False),
        # PyYAML reads `1e-4` (no dot) as a string; float() always accepted it.
        ("density_tolerance", "1e-4", 1e-4),
        ("max_iterations", 300.0, 300),
        ("max_iterations", "300", 300),
        ("min_empty_bands", 0, 0),
        ("bands_cover_ev", 0, 0.0),  # 0 disables the free-electron estimate
        ("dos_kpt_density", 0, 0.0),  # 0 = the SCF's own k-points
        ("extra", {"h": 0.35, "symmetry": "off"}, {"h": 0.35, "symmetry": "off"}),
    ],
    ids=lambda v: repr(v),
)
def test_from_params_accepts_valid_values(key, value, expected) -> None:
    got = getattr(DFTSettings.from_params({key: value}), key)
    assert got == expected and type(got) is type(expected)


def test_every_numeric_setting_has_a_bound() -> None:
    # A new numeric field must say whether it may be zero or negative (see _NUMBER_BOUNDS).
    from esrepro.dft.settings import _NUMBER_BOUNDS

    numeric = {
        f.name for f in dataclasses.fields(DFTSettings)
        if isinstance(f.default, (int, float)) and not isinstance(f.default, bool)
    }
    assert numeric == set(_NUMBER_BOUNDS)


def test_the_repository_params_pass_and_keep_their_keys(rocksalt) -> None:
    # Validation must not change what valid params hash to: the cache holds hours of DFT.
    from esrepro.config import load_params

    params = load_params()
    block = params["dft"]["settings"]
    settings = DFTSettings.from_params(block)
    expected = DFTSettings(**{k: type(getattr(DFTSettings(), k))(v) for k, v in block.items()})
    assert settings == expected
    assert cache_key(rocksalt, settings, VERSIONS) == cache_key(rocksalt, expected, VERSIONS)
    ldos = DFTSettings.from_params({**block, **params["ldos"]["dft"]})
    assert ldos.mode == "lcao" and ldos.extra == params["ldos"]["dft"]["extra"]


def test_the_engine_takes_every_accepted_smearing_and_converge_bands_form() -> None:
    # The allowed lists claim what the engine can run; check them against GPAW's own parsers.
    from gpaw.occupations import create_occ_calc

    from esrepro.dft.settings import CONVERGE_BANDS, SMEARINGS

    for name in SMEARINGS:  # build_calculator always passes a width
        create_occ_calc({"name": name, "width": 0.01})
    with pytest.raises(TypeError, match="width"):  # why the tetrahedron methods are not allowed
        create_occ_calc({"name": "tetrahedron-method", "width": 0.01})
    for form in ("CBM+5", "CBM+0.5", "CBM+.5", "CBM+1e-1", "CBM+2.5E+0"):
        assert CONVERGE_BANDS.fullmatch(form)
        float(form[4:])  # how gpaw.new.eigensolver reads it: raises if it cannot
