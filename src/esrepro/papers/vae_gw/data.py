"""VAE-GW's data: one material's GW product and wavefunction product -> its state table, and the
seeded splits of states and materials.

A *state* is one exported Kohn–Sham state (k-point of the irreducible grid, band): the
wavefunction product holds ``bands_per_side`` valence and as many conduction states per k-point
(the paper: "the same number of conduction states as valence states"); the GW window (a subset)
labels those it covers with E_GW, the rest have no label (the paper's VAE, too, sees more
states than its GW network: 68,384 against 22,002).

Energies are eV relative to the material's vacuum level (the GW product's planar average far
from the layer), so E_DFT means the same across materials; ΔGW = E_GW − E_DFT does not depend on
the reference. Splits depend on the set of ids and a seed only, never on row order
(:mod:`esrepro.splits`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from esrepro.dft.gw_product import ORBITALS, GWProduct
from esrepro.dft.wavefunction_product import WavefunctionProduct
from esrepro.papers.vae_gw.baselines import band_index_from_gap
from esrepro.splits import random_split_labels, train_val_test_labels

#: Largest |E_DFT| difference (eV) between a GW label's Kohn–Sham energy and the regenerated
#: ground state's energy of the same state: both are the same PBE calculation, so a larger one
#: means the two products do not describe the same states.
ENERGY_TOLERANCE_EV = 0.05

#: Columns of the state table (:func:`state_table`), in order.
STATE_COLUMNS = (
    "state_id", "material_id", "heldout", "is_metal", "k_index", "k_weight", "kx", "ky", "band",
    "band_offset", "band_from_gap", "e_dft", "e_gw", "delta_gw", "z", "occupation",
    *(f"orbital_{o}" for o in ORBITALS), "in_gw_window",
)


def state_id(material_id: str, k_index: int, band: int) -> str:
    return f"{material_id}|k{int(k_index)}|n{int(band)}"


def state_table(material_id: str, gw: GWProduct, waves: WavefunctionProduct, *,
                heldout: bool, tolerance_ev: float = ENERGY_TOLERANCE_EV) -> pd.DataFrame:
    """One row per exported state of ``waves`` (its row order), labelled from ``gw`` where the
    GW window covers it (columns :data:`STATE_COLUMNS`; labels NaN outside the window).

    ValueError naming the material when the two products do not describe the same ground state
    (other k-points, or Kohn–Sham energies further apart than ``tolerance_ev``).
    """
    if waves.kpoints.shape != gw.kpoints.shape or not np.allclose(waves.kpoints, gw.kpoints,
                                                                  atol=1e-6):
        raise ValueError(f"{material_id}: the wavefunction product's k-points differ from the "
                         "GW product's")
    if waves.n_ref != gw.n_ref:
        raise ValueError(f"{material_id}: n_ref {waves.n_ref} (wavefunctions) vs {gw.n_ref} (GW)")
    reference = gw.vacuum_level
    k, band = np.asarray(waves.k_index, int), np.asarray(waves.band_index, int)
    column = band - gw.band_start
    inside = (column >= 0) & (column < gw.e_dft.shape[1])
    col = np.where(inside, column, 0)

    def label(values: np.ndarray) -> np.ndarray:
        return np.where(inside, values[k, col], np.nan)

    e_dft = np.asarray(waves.energies, float)
    gap = np.abs(label(gw.e_dft) - e_dft)
    worst = float(np.nanmax(gap)) if inside.any() else 0.0
    if worst > tolerance_ev:
        raise ValueError(f"{material_id}: Kohn-Sham energies of the wavefunction and GW products "
                         f"differ by up to {worst:.3f} eV (tolerance {tolerance_ev} eV)")
    e_gw = label(gw.e_gw)
    table = pd.DataFrame({
        "state_id": [state_id(material_id, i, n) for i, n in zip(k, band, strict=True)],
        "material_id": material_id,
        "heldout": bool(heldout),
        "is_metal": gw.is_metal,
        "k_index": k,
        "k_weight": gw.k_weights[k],
        "kx": gw.kpoints[k, 0],
        "ky": gw.kpoints[k, 1],
        "band": band,
        "band_offset": band - gw.n_ref,
        "band_from_gap": band_index_from_gap(band, np.full(band.shape, gw.n_ref)),
        "e_dft": e_dft - reference,
        "e_gw": e_gw - reference,
        "delta_gw": e_gw - e_dft,
        "z": label(gw.z),
        "occupation": np.asarray(waves.occupations, float),
        **{f"orbital_{o}": label(gw.orbital_character[..., i]) for i, o in enumerate(ORBITALS)},
        "in_gw_window": inside,
    })
    return table[list(STATE_COLUMNS)]


def reciprocal_numbers(cell: np.ndarray) -> np.ndarray:
    """The three numbers the code's lattice autoencoder reads, here |b1|, |b2| (Å⁻¹, with 2π)
    and cos of the angle between b1 and b2, from the in-plane cell vectors."""
    a = np.asarray(cell, float)[:2, :2]
    b = 2 * np.pi * np.linalg.inv(a).T  # rows b1, b2 with a_i . b_j = 2π δ_ij
    n1, n2 = np.linalg.norm(b[0]), np.linalg.norm(b[1])
    return np.array([n1, n2, float(b[0] @ b[1]) / (n1 * n2)])


def density_powers(density: np.ndarray, n_powers: int) -> np.ndarray:
    """ρ, ρ², …, ρ^n of a max-scaled density, each scaled to a maximum of 1 again (the code's
    charge-density inputs), ``(n_powers, *density.shape)``."""
    rho = np.clip(np.asarray(density, np.float64), 0.0, None)
    out = []
    for p in range(1, n_powers + 1):
        power = rho**p
        peak = power.max()
        out.append(power / peak if peak > 0 else power)
    return np.stack(out).astype(np.float32)


def pick_materials(ids: Sequence[str], n: int, seed: int) -> set[str]:
    """``n`` of ``ids`` chosen by a seeded permutation of the sorted ids (order-independent)."""
    ordered = sorted({str(i) for i in ids})
    chosen = np.random.default_rng(seed).permutation(len(ordered))[: min(int(n), len(ordered))]
    return {ordered[int(i)] for i in chosen}


def vae_split(states: pd.DataFrame, holdout_materials: int, val_fraction: float,
              test_fraction: float, seed: int) -> np.ndarray:
    """Per state: ``heldout`` (the held-out TMDs), ``holdout`` (the materials never seen by the
    VAE), else ``train``/``val``/``test`` at random over states."""
    trainable = sorted(states.loc[~states["heldout"].astype(bool), "material_id"].unique())
    holdout = pick_materials(trainable, holdout_materials, seed)
    labels = np.where(states["heldout"].astype(bool), "heldout",
                      np.where(states["material_id"].isin(holdout), "holdout", "")).astype(object)
    free = labels == ""
    if free.any():
        labels[free] = train_val_test_labels(states.loc[free, "state_id"].tolist(),
                                             val_fraction, test_fraction, seed)
    return labels.astype(str)


def gw_splits(states: pd.DataFrame, state_test_fraction: float, material_test_fraction: float,
              val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Per state, its part in ``state_split`` (random over states: the paper's) and in
    ``material_split`` (whole materials in test): ``train``, ``val``, ``test``, or ``heldout``
    for the held-out TMDs in both. ``states`` are the GW states used (labelled, filtered)."""
    heldout = states["heldout"].astype(bool).to_numpy()
    ids = states["state_id"].astype(str).to_numpy()
    by_state = np.full(len(states), "heldout", dtype=object)
    if (~heldout).any():
        by_state[~heldout] = train_val_test_labels(list(ids[~heldout]), val_fraction,
                                                   state_test_fraction, seed)
    materials = sorted(states.loc[~heldout, "material_id"].unique())
    material_part = dict(zip(materials, random_split_labels(materials, material_test_fraction,
                                                            seed), strict=True))
    by_material = np.full(len(states), "heldout", dtype=object)
    parts = states["material_id"].map(material_part).to_numpy()
    by_material[~heldout] = parts[~heldout]
    in_train = by_material == "train"
    if in_train.sum() >= 2 and val_fraction > 0:
        by_material[in_train] = [
            "val" if p == "test" else "train"
            for p in random_split_labels(list(ids[in_train]), val_fraction, seed + 1)
        ]
    return {"state_split": by_state.astype(str), "material_split": by_material.astype(str)}
