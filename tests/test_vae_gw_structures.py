"""VAE-GW's 2D structure set: ids, held-out TMDs, compositions, geometry and prefix order."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from ase.geometry import get_distances

from esrepro.papers.vae_gw.structures import (
    CHALCOGENS,
    HELD_OUT,
    METALS,
    all_materials,
    ordered_materials,
    select_materials,
    structures,
)


def test_ids_are_unique_and_the_set_reaches_machine_scale() -> None:
    materials = all_materials()
    ids = [m.id for m in materials]
    assert len(ids) == len(set(ids)) == 156
    counts = Counter(m.prototype for m in materials)
    assert counts == {"MX2-2H": 36, "MX2-1T": 36, "MXY-2H": 36, "MXY-1T": 36, "GaS": 9,
                      "FeSe": 3}


def test_held_out_tmds_are_the_papers_three_in_their_2h_phase() -> None:
    heldout = [m for m in all_materials() if m.heldout]
    assert [m.id for m in heldout] == list(HELD_OUT) == ["MoS2-2H", "WS2-2H", "CrS2-2H"]
    assert {m.formula for m in heldout} == {"MoS2", "WS2", "CrS2"}
    # Their 1T polymorphs are other materials and stay in the training pool.
    assert not any(m.heldout for m in all_materials() if m.id.endswith("-1T"))


def test_compositions_follow_the_prototypes() -> None:
    for material in all_materials():
        atoms = material.atoms()
        symbols = Counter(atoms.get_chemical_symbols())
        assert 3 <= len(atoms) <= 4, material.id
        assert material.id.startswith(material.formula + "-")
        if material.prototype.startswith("MX2"):
            assert sorted(symbols.values()) == [1, 2], material.id
            metal = next(s for s, n in symbols.items() if n == 1)
            chalcogen = next(s for s, n in symbols.items() if n == 2)
            assert metal in METALS and chalcogen in CHALCOGENS
        elif material.prototype.startswith("MXY"):
            assert len(symbols) == 3 and set(symbols.values()) == {1}, material.id
            assert sum(s in CHALCOGENS for s in symbols) == 2
        else:
            assert len(atoms) == 4 and sorted(symbols.values()) == [2, 2], material.id
    every = {(m.formula, m.prototype) for m in all_materials()}
    for metal in METALS:
        for x in CHALCOGENS:
            assert (f"{metal}{x}2", "MX2-2H") in every and (f"{metal}{x}2", "MX2-1T") in every


@pytest.mark.parametrize("vacuum", [5.0, 7.5])
def test_layers_are_2d_with_the_vacuum_asked_for_and_sane_bonds(vacuum) -> None:
    for material in all_materials():
        atoms = material.atoms(vacuum=vacuum)
        assert atoms.pbc.tolist() == [True, True, False]
        z = atoms.positions[:, 2]
        assert z.min() == pytest.approx(vacuum)
        assert atoms.cell[2, 2] == pytest.approx(z.max() - z.min() + 2 * vacuum)
        assert np.allclose(atoms.cell[:2, 2], 0) and np.allclose(atoms.cell[2, :2], 0)
        _, d = get_distances(atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        shortest = d[~np.eye(len(atoms), dtype=bool)].min()
        # Starting geometries only, but no two atoms closer than a short bond (Ga-Ga 2.45 Å).
        assert 2.0 < shortest < 3.5, (material.id, shortest)
        assert atoms.info["material_id"] == material.id


def test_order_is_held_out_first_then_a_seeded_shuffle_and_prefixes_are_stable() -> None:
    order = [m.id for m in ordered_materials(0)]
    assert order[:3] == list(HELD_OUT)
    assert order == [m.id for m in ordered_materials(0)]  # deterministic
    assert sorted(order) == sorted(m.id for m in all_materials())
    # Pinned: the default profile's materials must not move when the set is edited by accident.
    assert order[:8] == ["MoS2-2H", "WS2-2H", "CrS2-2H", "HfS2-2H", "TiS2-1T", "Al2Se2-GaS",
                         "MoTe2-1T", "TaSe2-1T"]
    other = [m.id for m in ordered_materials(1)]
    assert other[:3] == list(HELD_OUT) and other != order
    assert [m.id for m in select_materials(20)] == order[:20]
    assert [m.id for m in select_materials(10)] == [m.id for m in select_materials(50)][:10]
    assert len(select_materials(0)) == 156
    with pytest.raises(ValueError, match="n_materials"):
        select_materials(-1)


def test_structures_maps_ids_to_atoms_in_order() -> None:
    chosen = select_materials(5)
    built = structures(chosen, vacuum=6.0)
    assert list(built) == [m.id for m in chosen]
    assert built["MoS2-2H"].get_chemical_formula() == "MoS2"
    with pytest.raises(ValueError, match="vacuum"):
        chosen[0].atoms(vacuum=0.0)
