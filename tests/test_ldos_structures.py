"""LDOS structure sets: the mirrored real-silicon files and the seeded generators.

Expected counts are recomputed here from the mirrored files with a hand-written XYZ frame
counter, and physical checks (densities, distances, coordination, stacking) are compared with
literature values, not with outputs of the code under test.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list

from esrepro.errors import ConfigError
from esrepro.fetch import MIRROR_ENV, mirror_path
from esrepro.papers.ldos import generators as G
from esrepro.papers.ldos import silicon_sets as SI
from esrepro.papers.ldos.pipeline import provenance_table
from esrepro.sources import load_sources
from esrepro.structures import StructureError, canonical_structure_hash

AMU_A3_TO_G_CM3 = 1.66053906660

# The naming spec (folder of the silicon-testing-framework -> set; testing-database
# config_type -> set), stated independently of the module's tables.
FOLDER_SETS = {
    "bulk_bc8": "bulk_bc8",
    "bulk_hex_diamond": "bulk_hex_diamond",
    "bulk_sh": "bulk_sh",
    "bulk_st12": "bulk_st12",
    "diinterstitial-64-energy": "diinterstitial",
    "gap_6_rss_8_at_CASTEP_rerelax_trajectory_evaluate": "rss_relaxation_trajectory",
    "gap_6_rss_like_open_ended_minima_rerelax_sd2": "rss_minima",
    "grain_boundary_112_Sigma3_tilt": "grain_boundary",
    "surface-energy-111-2n+1_x_2n+1-relaxed": "surface_111",
}
CONFIG_TYPE_SETS = {
    "aSi": "amorphous",
    "SF": "stacking_fault",
    "GB": "grain_boundary",
    "diinter": "diinterstitial",
}


def xyz_frames(path: Path) -> list[tuple[int, str]]:
    """(atom count, comment line) of every frame, by walking the XYZ atom-count lines."""
    lines = path.read_text().splitlines()
    frames, pos = [], 0
    while pos < len(lines):
        if not lines[pos].strip():
            pos += 1
            continue
        count = int(lines[pos].split()[0])
        frames.append((count, lines[pos + 1]))
        pos += count + 2
    return frames


def expected_silicon_frames(mirror: Path) -> dict[str, list[tuple[str, int, int]]]:
    """Set name -> [(url, frame, n_atoms)] read straight from the mirrored files."""
    datasets = load_sources()["datasets"]
    expected: dict[str, list[tuple[str, int, int]]] = {}
    for dataset in ("si_testing_framework_libatoms", "si_diamonds_howweibin"):
        for key, entry in datasets[dataset]["files"].items():
            path = mirror_path(entry["url"], mirror)
            folder = PurePosixPath(key).parts[0]
            for frame, (count, comment) in enumerate(xyz_frames(path)):
                if dataset == "si_diamonds_howweibin":
                    name = "howweibin_diamond"
                elif folder == "testing_database_force_error":
                    config_type = re.search(r"config_type=(\S+)", comment).group(1)
                    name = CONFIG_TYPE_SETS[config_type]
                else:
                    name = FOLDER_SETS[folder]
                expected.setdefault(name, []).append((entry["url"], frame, count))
    return expected


def pair_distances(atoms: Atoms, cutoff: float = 3.5) -> tuple[np.ndarray, np.ndarray]:
    i, d = neighbor_list("id", atoms, cutoff)
    return i, d


def closest_pair(atoms: Atoms) -> float:
    _, d = pair_distances(atoms, 4.0)
    return float(d.min())


def density(atoms: Atoms) -> float:
    return float(atoms.get_masses().sum() / abs(np.linalg.det(atoms.cell.array)) * AMU_A3_TO_G_CM3)


# ---------------------------------------------------------------------------------------------
# Mirrored silicon
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def silicon_sets(mirror_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(MIRROR_ENV, raising=False)  # only params decide where the files come from
        return SI.fetch_silicon_sets(mirror_dir, tmp_path_factory.mktemp("ldos_si"))


def test_structure_file_rule() -> None:
    assert SI.is_structure_file("bulk_bc8/bc8.extxyz")
    assert SI.is_structure_file("diamonds.xyz")
    assert not SI.is_structure_file("README.md")
    assert not SI.is_structure_file("bulk_sh/test.py")


def test_silicon_sets_match_the_files(silicon_sets: dict, mirror_dir: Path) -> None:
    expected = expected_silicon_frames(mirror_dir)
    assert {k: len(v) for k, v in silicon_sets.items()} == {k: len(v) for k, v in expected.items()}
    for name, structures in silicon_sets.items():
        got = [(a.info["source"], a.info["frame"], len(a)) for a in structures]
        assert sorted(got) == sorted(expected[name]), name
        assert all(a.info["set"] == name for a in structures)
    # The kinds the issue lists are all there.
    for name in (
        "bulk_bc8",
        "bulk_st12",
        "bulk_sh",
        "bulk_hex_diamond",
        "amorphous",
        "stacking_fault",
        "diinterstitial",
        "grain_boundary",
        "surface_111",
        "rss_minima",
        "rss_relaxation_trajectory",
        "howweibin_diamond",
    ):
        assert silicon_sets[name], name


def test_howweibin_is_104_two_atom_diamond_cells(silicon_sets: dict) -> None:
    cells = silicon_sets["howweibin_diamond"]
    assert len(cells) == 104
    for atoms in cells:
        assert atoms.get_chemical_symbols() == ["Si", "Si"]
        assert atoms.info["config_type"] == "dia"
        # Diamond: every atom has exactly four bonded neighbours (the fifth is >= 3.2 A away).
        i, _ = pair_distances(atoms, 2.9)
        assert np.bincount(i, minlength=2).tolist() == [4, 4]


def test_mirrored_frames_are_physical(silicon_sets: dict) -> None:
    for name, structures in silicon_sets.items():
        for atoms in structures:
            assert set(atoms.get_chemical_symbols()) == {"Si"}, name
            assert atoms.pbc.all(), name
            # The relaxed Si(111) reconstructions hold the shortest pairs (1.70 A).
            assert closest_pair(atoms) > 1.6, (name, atoms.info["frame"])


def test_bulk_prototypes_get_upstream_start_volume(silicon_sets: dict) -> None:
    # silicon-testing-framework's test.py scales bc8 to 17 and sh to 18 A^3/atom.
    for name, v0 in (("bulk_bc8", 17.0), ("bulk_sh", 18.0)):
        (atoms,) = silicon_sets[name]
        assert atoms.get_volume() / len(atoms) == pytest.approx(v0, rel=1e-9)
        assert closest_pair(atoms) > 2.2
    # st12 is stored at a physical volume and is left as stored (12 atoms, 5.519^2 x 6.954 A).
    (st12,) = silicon_sets["bulk_st12"]
    assert st12.get_volume() == pytest.approx(5.51889083**2 * 6.95380245, rel=1e-6)


def test_deduplicate_drops_exact_repeats(silicon_sets: dict) -> None:
    kept, dropped = SI.deduplicate(silicon_sets)
    hashes = [canonical_structure_hash(a) for v in silicon_sets.values() for a in v]
    assert sum(map(len, kept.values())) == len(set(hashes))
    assert len(dropped) == len(hashes) - len(set(hashes))
    # The two grain-boundary files of the registry have the same sha256: one copy is dropped.
    files = load_sources()["datasets"]["si_testing_framework_libatoms"]["files"]
    gb = [e["sha256"] for k, e in files.items() if k.startswith("grain_boundary")]
    assert len(gb) == 2 and gb[0] == gb[1]
    assert {"set": "grain_boundary", "index": 1} in [
        {"set": r["set"], "index": r["index"]} for r in dropped
    ]


@pytest.mark.parametrize(
    "content",
    [
        "hello world\n",
        '8\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3\nSi 0 0 0\nSi 1 1 1\n',
        '2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3\nSi 0 0 0\nSi 1 1 x\n',
        "",
    ],
    ids=["garbage", "truncated", "bad-number", "empty"],
)
def test_corrupt_structure_file_raises_naming_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "broken.xyz"
    path.write_text(content)
    with pytest.raises(StructureError, match=re.escape(str(path))):
        SI.read_frames(path)


def test_fetch_raises_on_a_corrupt_structure_file(
    mirror_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pinned file that does not parse must stop the fetch, not vanish from its set.
    real_fetch = SI.fetch_url

    def corrupting_fetch(url: str, sha256: str, dest: Path, **kwargs: object) -> Path:
        path = real_fetch(url, sha256, dest, **kwargs)
        if path.name == "st12.extxyz":
            corrupt = path.with_name("st12_corrupt.extxyz")
            corrupt.write_text('12\nLattice="1 0 0 0 1 0 0 0 1"\nSi 0 0 0\n')
            return corrupt
        return path

    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.setattr(SI, "fetch_url", corrupting_fetch)
    with pytest.raises(StructureError, match="st12_corrupt.extxyz"):
        SI.fetch_silicon_sets(mirror_dir, tmp_path)


# ---------------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------------

SMALL = {
    "silicon_diamond_supercells": {"n": 3, "repeat": (1, 1, 1)},
    "silicon_beta_tin_supercells": {"n": 3, "repeat": (1, 1, 2)},
    "silicon_liquid_like": {"n": 2, "n_atoms": 32},
    "carbon_structures": {"n": 4},
    "sic_polytypes": {"n": 4},
    "sn_s_se_solid_solutions": {"n": 3},
}
# Closest allowed pair per generator (A), as documented for each family.
THRESHOLD = {
    "silicon_diamond_supercells": 2.0,
    "silicon_beta_tin_supercells": 2.0,
    "silicon_liquid_like": 2.0,
    "carbon_structures": 1.2,
    "sic_polytypes": 1.5,
    "sn_s_se_solid_solutions": 2.3,
}


def fingerprint(atoms: Atoms) -> tuple:
    return (atoms.get_chemical_symbols(), atoms.cell.array.tobytes(), atoms.positions.tobytes())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_generator_is_deterministic_and_seed_dependent(name: str) -> None:
    generator = G.GENERATORS[name]
    first = generator(seed=11, **SMALL[name])
    again = generator(seed=11, **SMALL[name])
    other = generator(seed=12, **SMALL[name])
    assert len(first) == SMALL[name]["n"]
    assert [fingerprint(a) for a in first] == [fingerprint(a) for a in again]
    assert [a.info for a in first] == [a.info for a in again]
    for a, b in zip(first, other, strict=True):
        assert canonical_structure_hash(a) != canonical_structure_hash(b)
    # Structure i does not depend on how many are generated.
    more = generator(seed=11, **{**SMALL[name], "n": SMALL[name]["n"] + 2})
    assert [fingerprint(a) for a in more[: len(first)]] == [fingerprint(a) for a in first]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_generator_records_provenance(name: str) -> None:
    structures = G.GENERATORS[name](seed=5, **SMALL[name])
    for index, atoms in enumerate(structures):
        assert atoms.info["generator"] == name
        assert atoms.info["seed"] == 5
        assert atoms.info["index"] == index
        params = json.loads(atoms.info["params"])
        assert params["min_distance"] == THRESHOLD[name]
        rebuilt = G.regenerate(atoms.info)
        assert fingerprint(rebuilt) == fingerprint(atoms)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_generated_distances_above_threshold(name: str) -> None:
    for seed in (0, 1, 2):
        for atoms in G.GENERATORS[name](seed=seed, **SMALL[name]):
            assert atoms.pbc.all()
            assert closest_pair(atoms) >= THRESHOLD[name], (name, seed, atoms.info["kind"])


def test_diamond_silicon_density() -> None:
    (ideal,) = G.silicon_diamond_supercells(1, 0, max_strain=0.0, rattle_std=0.0)
    assert len(ideal) == 64
    assert density(ideal) == pytest.approx(2.329, rel=2e-3)  # Si, a = 5.431 A
    assert closest_pair(ideal) == pytest.approx(5.431 * np.sqrt(3) / 4, rel=1e-6)
    # Strain up to 3% per component changes the volume by at most ~9%.
    for atoms in G.silicon_diamond_supercells(6, 3):
        assert density(atoms) == pytest.approx(2.329, rel=0.10)


def test_beta_tin_geometry_and_density() -> None:
    # Si-II at 11.3 GPa (Jamieson 1963): a = 4.686, c = 2.585 A, 4 atoms per a^2 c cell,
    # 14.2 A^3/atom; 4 neighbours at 2.43 A and 2 at 2.585 A.
    (hp,) = G.silicon_beta_tin_supercells(
        1, 0, repeat=(1, 1, 1), a=4.686, c=2.585, max_strain=0.0, rattle_std=0.0
    )
    assert len(hp) == 4
    assert hp.get_volume() / len(hp) == pytest.approx(14.19, rel=2e-3)
    assert density(hp) == pytest.approx(3.29, rel=5e-3)
    i, d = pair_distances(hp, 2.7)
    assert np.bincount(i).tolist() == [6, 6, 6, 6]
    assert np.sort(d[i == 0]) == pytest.approx([2.430] * 4 + [2.585] * 2, abs=3e-3)
    # Defaults: metastable beta-tin, denser than diamond Si by ~20%.
    (default,) = G.silicon_beta_tin_supercells(1, 0, max_strain=0.0, rattle_std=0.0)
    assert len(default) == 64
    assert 1.15 < density(default) / 2.329 < 1.45


def test_liquid_silicon_density_and_disorder() -> None:
    for atoms in G.silicon_liquid_like(2, 4):
        assert len(atoms) == 64
        assert density(atoms) == pytest.approx(2.57, rel=1e-9)  # liquid Si at the melting point
        assert closest_pair(atoms) >= 2.0


def test_carbon_kinds_and_densities() -> None:
    structures = G.carbon_structures(8, 2, max_strain=0.0, rattle_std=0.0)
    assert [a.info["kind"] for a in structures] == list(G.CARBON_KINDS) * 2
    by_kind = {a.info["kind"]: a for a in structures}
    assert density(by_kind["diamond"]) == pytest.approx(3.515, rel=3e-3)
    assert density(by_kind["lonsdaleite"]) == pytest.approx(3.52, rel=5e-3)
    assert density(by_kind["graphite"]) == pytest.approx(2.26, rel=1e-2)
    # Graphite: in-plane bond 1.42 A, three neighbours each; diamond/lonsdaleite: four at 1.545.
    i, d = pair_distances(by_kind["graphite"], 1.6)
    assert np.all(np.bincount(i) == 3) and d == pytest.approx(1.420, abs=2e-3)
    for kind in ("diamond", "lonsdaleite"):
        i, d = pair_distances(by_kind[kind], 1.7)
        assert np.all(np.bincount(i) == 4) and d == pytest.approx(1.545, abs=2e-3)
    for atoms in structures:
        if atoms.info["kind"] == "disordered":
            assert 2.0 <= density(atoms) <= 3.0
            assert density(atoms) == pytest.approx(atoms.info["density_g_cm3"], rel=1e-9)
            assert closest_pair(atoms) >= 1.2


SITES = {"A": np.array([0.0, 0.0]), "B": np.array([1 / 3, 2 / 3]), "C": np.array([2 / 3, 1 / 3])}


def site_letter(uv: np.ndarray) -> str:
    """In-plane stacking site (A, B or C) nearest to fractional (u, v), modulo the lattice."""

    def offset(letter: str) -> float:
        delta = (uv - SITES[letter] + 0.5) % 1.0 - 0.5
        return float(np.hypot(*delta))

    return min(SITES, key=offset)


def hexagonality(atoms: Atoms) -> float:
    """Fraction of bilayers whose neighbours above and below sit on the same in-plane site."""
    frac = atoms.get_scaled_positions()[atoms.numbers == 14]
    letters = [site_letter(p[:2]) for p in frac[np.argsort(frac[:, 2])]]
    n = len(letters)
    return sum(letters[k - 1] == letters[(k + 1) % n] for k in range(n)) / n


def test_sic_polytypes_cells_stoichiometry_and_stacking() -> None:
    structures = G.sic_polytypes(4, 0, max_strain=0.0, rattle_std=0.0)
    cells = {a.info["kind"]: a for a in structures}
    assert {k: len(v) for k, v in cells.items()} == {"3C": 2, "2H": 4, "4H": 8, "6H": 12}
    for kind, atoms in cells.items():
        counts = Counter(atoms.get_chemical_symbols())
        assert counts["Si"] == counts["C"] == len(atoms) // 2, kind
        assert density(atoms) == pytest.approx(3.21, rel=1e-2), kind
        # Tetrahedral, heteropolar: four Si-C bonds of 1.89 A per atom, no Si-Si or C-C.
        i, j, d = neighbor_list("ijd", atoms, 2.2)
        assert np.all(np.bincount(i, minlength=len(atoms)) == 4), kind
        assert np.all(atoms.numbers[i] != atoms.numbers[j]), kind
        assert d == pytest.approx(1.887, abs=0.01), kind
    # Jagodzinski hexagonality: 2H 100%, 4H 50%, 6H 33%.
    assert hexagonality(cells["2H"]) == pytest.approx(1.0)
    assert hexagonality(cells["4H"]) == pytest.approx(0.5)
    assert hexagonality(cells["6H"]) == pytest.approx(1 / 3)
    assert cells["4H"].cell.lengths()[2] == pytest.approx(10.08, abs=0.05)  # expt 10.05 A


def test_sn_s_se_composition_lattice_and_bonds() -> None:
    structures = G.sn_s_se_solid_solutions(12, 3, max_strain=0.0, rattle_std=0.0)
    for atoms in structures:
        counts = Counter(atoms.get_chemical_symbols())
        assert len(atoms) == 8 and counts["Sn"] == 4 and counts["S"] + counts["Se"] == 4
        assert counts["Se"] == atoms.info["n_se"] and counts["S"] == atoms.info["n_s"]
        assert atoms.info["x_se"] == counts["Se"] / 4
        assert 0.0 <= atoms.info["x_se_drawn"] <= 1.0
        assert abs(atoms.info["x_se"] - atoms.info["x_se_drawn"]) <= 1 / 8 + 1e-12
        x = atoms.info["x_se"]
        vegard = (1 - x) * np.array([11.20, 3.98, 4.33]) + x * np.array([11.50, 4.15, 4.44])
        assert atoms.cell.lengths() == pytest.approx(vegard, rel=1e-9)
    assert len({a.info["x_se_drawn"] for a in structures}) == len(structures)
    # End members against literature densities: SnS 5.22 (rel. 2%), SnSe 6.18 g/cm^3.
    (sns,) = G.sn_s_se_solid_solutions(1, 0, x_range=(0.0, 0.0), max_strain=0.0, rattle_std=0.0)
    (snse,) = G.sn_s_se_solid_solutions(1, 0, x_range=(1.0, 1.0), max_strain=0.0, rattle_std=0.0)
    assert sns.get_chemical_formula() == "S4Sn4" and snse.get_chemical_formula() == "Se4Sn4"
    assert density(sns) == pytest.approx(5.22, rel=2e-2)
    assert density(snse) == pytest.approx(6.18, rel=2e-2)
    # SnS: each Sn has three short Sn-S bonds (2.6-2.7 A), the trigonal pyramid of the B29 type.
    i, j, d = neighbor_list("ijd", sns, 2.8)
    sn = sns.numbers[i] == 50
    assert np.all(sns.numbers[j[sn]] == 16)
    assert np.bincount(i[sn], minlength=8)[sns.numbers == 50].tolist() == [3, 3, 3, 3]
    assert np.all((d[sn] > 2.55) & (d[sn] < 2.75))


def test_sn_s_se_supercell_repeat() -> None:
    (atoms,) = G.sn_s_se_solid_solutions(1, 9, repeat=(1, 2, 2))
    counts = Counter(atoms.get_chemical_symbols())
    assert len(atoms) == 32 and counts["Sn"] == 16 and counts["S"] + counts["Se"] == 16


# ---------------------------------------------------------------------------------------------
# Sets and provenance
# ---------------------------------------------------------------------------------------------

CFG = {"si_diamond": 2, "si_beta_tin": 1, "si_liquid": 1, "carbon": 4, "sic": 4, "snsse": 3}


def hashes(sets: dict) -> dict[str, list[str]]:
    return {k: [canonical_structure_hash(a) for a in v] for k, v in sets.items()}


def test_generated_sets_sizes_and_independence() -> None:
    base = G.generated_sets(CFG, 42)
    assert {k: len(v) for k, v in base.items()} == CFG
    for name, structures in base.items():
        assert all(a.info["set"] == name and a.info["set_seed"] == 42 for a in structures)
        assert all(a.info["seed"] == G.derive_seed(42, name) for a in structures)
    bigger = G.generated_sets({**CFG, "carbon": 6}, 42)
    base_h, bigger_h = hashes(base), hashes(bigger)
    for name in CFG:
        if name != "carbon":
            assert bigger_h[name] == base_h[name], name
    assert bigger_h["carbon"][:4] == base_h["carbon"]
    # Dropping a set leaves the others unchanged too; another master seed changes every set.
    fewer = hashes(G.generated_sets({k: v for k, v in CFG.items() if k != "sic"}, 42))
    assert all(fewer[k] == base_h[k] for k in fewer)
    other = hashes(G.generated_sets(CFG, 43))
    assert all(other[k] != base_h[k] for k in CFG)


def test_generated_sets_accepts_kwargs_and_rejects_unknown() -> None:
    sets = G.generated_sets({"sic": {"n": 2, "polytypes": ["4H"]}, "carbon": 0}, 1)
    assert list(sets) == ["sic"]
    assert [a.info["kind"] for a in sets["sic"]] == ["4H", "4H"]
    with pytest.raises(
        ConfigError, match=r"^params.yaml ldos.generated.graphene: unknown generated set"
    ):
        G.generated_sets({"graphene": 1}, 1, label="params.yaml ldos.generated")
    with pytest.raises(ConfigError, match=r"^generated sets.sic.polytype: unknown keyword"):
        G.generated_sets({"sic": {"n": 2, "polytype": ["4H"]}}, 1)
    with pytest.raises(ConfigError, match=r"^generated sets.carbon.n: must be >= 0"):
        G.generated_sets({"carbon": -1}, 1)


def test_provenance_table(silicon_sets: dict) -> None:
    sets = {
        **G.generated_sets({"sic": 2, "snsse": 2}, 0),
        "bulk_st12": silicon_sets["bulk_st12"],
        "howweibin_diamond": silicon_sets["howweibin_diamond"][:3],
    }
    rows = provenance_table(sets)
    assert len(rows) == sum(map(len, sets.values()))
    assert len({tuple(sorted(r)) for r in rows}) == 1  # same columns in every row
    by_set = {}
    for row in rows:
        by_set.setdefault(row["set"], []).append(row)
        atoms = sets[row["set"]][row["index"]]
        assert row["n_atoms"] == len(atoms)
        assert row["hash"] == canonical_structure_hash(atoms)
    assert by_set["sic"][0]["formula"] == "SiC"
    assert by_set["sic"][0]["generator"] == "sic_polytypes"
    assert json.loads(by_set["sic"][0]["params"])["polytypes"] == ["3C", "2H", "4H", "6H"]
    assert by_set["bulk_st12"][0]["formula"] == "Si"
    assert by_set["bulk_st12"][0]["source"].endswith("/tests/bulk_st12/st12.extxyz")
    assert [r["frame"] for r in by_set["howweibin_diamond"]] == [0, 1, 2]
    assert by_set["howweibin_diamond"][0]["generator"] == ""
