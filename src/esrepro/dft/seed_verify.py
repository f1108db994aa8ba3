"""`esrepro seed verify`: recompute shipped DFT products here and compare with the shipped ones.

A shipped product stores the structure it was computed on (the Niggli cell where the engine
reduced it) and its settings in its meta, so the engine can run the same calculation again
(the farm, one MPI rank, into a temporary cache). Band products (`esrepro.dft.band_product`)
store their input cell and `BandSettings`: SCF and path run again, and the path's
eigenvalues, HOB, E_F and gap are compared (`compare_band_products`). G0W0 products
(`esrepro.dft.gw_product`) store the relaxed layer, not the input: the input is rebuilt from
VAE-GW's 2D set by the material id the manifest records, and must give the product's cache key;
relaxation, ground state and G0W0 then run again and the relaxed structure, the Kohn-Sham and
quasiparticle energies and the gaps are compared (`compare_gw_products`). Tolerances and what
they rest on: docs/dft-cache.md, "Verifying shipped products".
"""

from __future__ import annotations

import json
import random
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from esrepro.dft.seeds import (
    Manifest,
    SeedError,
    is_band_kind,
    is_gw_kind,
    member_name,
    shipped_seed_dir,
    unpack_archive,
)


@dataclass(frozen=True)
class Tolerances:
    """How far a recomputed product may differ from the shipped one.

    Set from measured differences with 20-80x margin (docs/dft-cache.md, "Verifying shipped
    products"): they come from where the SCF stops within its convergence thresholds.
    """

    #: Eigenvalues of the bands the SCF converges (see `converged_bands`), eV; measured up to
    #: 1.7e-4 (semicore states of a metal whose SCF stopped one iteration earlier). Band
    #: products: every kept band on the path (the path run converges all of them).
    eigenvalues_ev: float = 5e-3
    #: VBM, CBM and gap; and E_F of metals (in a gap, E_F is ill-defined: see `_level_names`);
    #: measured up to 1.2e-5 eV. Band products: the HOB's maximum and the next band's minimum
    #: on the path, the gap between them, and E_F of metals.
    levels_ev: float = 1e-3
    #: Projector (and LCAO Mulliken) weights of converged bands, summed over degenerate bands
    #: (see `_degenerate_sums`), |dw| / max(1, |w|): weights are stored as float16, whose
    #: steps are 2^-10 (1e-3) relative; measured up to 2.4e-4, one float16 step.
    weights: float = 5e-3
    #: G0W0 products: the relaxed cell and positions, Å (the relaxation runs again).
    structure_a: float = 1e-3


@dataclass
class Comparison:
    """Largest differences between a shipped and a recomputed product; `problems` if too big."""

    eigenvalues_ev: float = 0.0
    levels_ev: float = 0.0
    weights: float = 0.0
    structure_a: float = 0.0
    problems: list[str] = field(default_factory=list)


def converged_bands(product) -> np.ndarray:
    """Mask of the bands the SCF converged to its eigenstate tolerance.

    Plane-wave mode converges `converge_bands` ("CBM+5.0": up to 5 eV above the CBM, or above
    E_F in a metal); the bands above are only converged loosely and recomputations differ
    there by up to 0.3 eV. LCAO diagonalizes its whole basis exactly, so all bands count.
    """
    settings = product.meta.get("settings", {})
    bands = str(settings.get("converge_bands", "all"))
    n_bands = product.eigenvalues.shape[1]
    if settings.get("mode") == "lcao" or bands == "all":
        return np.ones(n_bands, dtype=bool)
    mask = np.arange(n_bands) < int(np.ceil(product.n_electrons / 2))
    if bands.startswith("CBM+"):
        edge = product.cbm if product.gap > 0 else product.fermi_level
        mask |= product.eigenvalues.max(axis=0) <= edge + float(bands[4:])
    return mask


def _level_names(product) -> tuple[str, ...]:
    """The levels to compare: an insulator's E_F lies somewhere in its gap, where smearing
    tails alone fix it (recomputations moved it by 4 meV), and nothing downstream uses it."""
    return ("vbm", "cbm", "gap") if product.gap > 0 else ("fermi_level", "vbm", "cbm", "gap")


def compare_products(shipped, recomputed, tolerances: Tolerances) -> Comparison:
    """Eigenvalues and weights of converged bands, band edges, gap and E_F, within tolerances."""
    result = Comparison()
    if shipped.eigenvalues.shape != recomputed.eigenvalues.shape:
        result.problems.append(f"eigenvalue shape {recomputed.eigenvalues.shape} != shipped "
                               f"{shipped.eigenvalues.shape}")
        return result
    if not np.allclose(shipped.k_weights, recomputed.k_weights, rtol=0, atol=1e-6):
        result.problems.append("k-point weights differ")
    bands = converged_bands(shipped)
    result.eigenvalues_ev = float(np.abs(
        recomputed.eigenvalues[:, bands].astype(float) - shipped.eigenvalues[:, bands]
    ).max(initial=0.0))
    result.levels_ev = max(
        abs(getattr(recomputed, name) - getattr(shipped, name)) for name in _level_names(shipped)
    )
    if (shipped.band_start, shipped.band_stop) != (recomputed.band_start, recomputed.band_stop):
        result.problems.append(
            f"weight window bands {recomputed.band_start}:{recomputed.band_stop} != shipped "
            f"{shipped.band_start}:{shipped.band_stop}"
        )
    else:
        energies = shipped.window_eigenvalues().astype(float)
        n_converged = int(bands[shipped.band_start:shipped.band_stop].sum())
        pairs = [(shipped.projector_weights, recomputed.projector_weights)]
        if shipped.atom_weights is not None and recomputed.atom_weights is not None:
            pairs.append((shipped.atom_weights, recomputed.atom_weights))
        result.weights = max(
            _weight_difference(
                *(_degenerate_sums(w, energies, n_converged, tolerances.eigenvalues_ev)
                  for w in (a, b))
            )
            for a, b in pairs
        )
    return _flag_excess(result, (
        ("eigenvalues", result.eigenvalues_ev, tolerances.eigenvalues_ev),
        ("/".join(_level_names(shipped)), result.levels_ev, tolerances.levels_ev),
        ("weights", result.weights, tolerances.weights),
    ))


def band_levels(product) -> dict[str, float]:
    """Path levels of a band product: the HOB's maximum ("hob_max"), the next band's minimum
    ("next_min") and the gap between them ("gap", 0 for a metal: the `esrepro.bands` rule),
    and E_F ("fermi_level") of a metal only (in a gap, smearing tails alone place it)."""
    column = product.hob - product.band_start
    energies = product.eigenvalues
    levels = {"hob_max": float(energies[:, column].max())}
    if column + 1 < energies.shape[1]:
        levels["next_min"] = float(energies[:, column + 1].min())
        levels["gap"] = max(levels["next_min"] - levels["hob_max"], 0.0)
    if not levels.get("gap", 0.0) > 0:
        levels["fermi_level"] = float(product.fermi_level)
    return levels


def compare_band_products(shipped, recomputed, tolerances: Tolerances) -> Comparison:
    """Eigenvalues of the kept bands on the path, HOB, path levels and E_F (`band_levels`)
    within tolerances; the path's k-points, the band indices and the SCF's k-point weights
    must agree."""
    result = Comparison()
    same_path = (
        shipped.kpoints.shape == recomputed.kpoints.shape
        and np.allclose(shipped.kpoints, recomputed.kpoints, rtol=0, atol=1e-8)
        and np.array_equal(shipped.segment_offsets, recomputed.segment_offsets)
    )
    if not same_path:
        result.problems.append(f"path k-points differ ({len(recomputed.kpoints)} vs shipped "
                               f"{len(shipped.kpoints)})")
    bands = (shipped.hob, shipped.band_start, shipped.band_stop)
    if (recomputed.hob, recomputed.band_start, recomputed.band_stop) != bands:
        result.problems.append(
            f"HOB {recomputed.hob}, bands {recomputed.band_start}:{recomputed.band_stop} != "
            f"shipped HOB {shipped.hob}, bands {shipped.band_start}:{shipped.band_stop}"
        )
    if shipped.scf_k_weights.shape != recomputed.scf_k_weights.shape or not np.allclose(
        shipped.scf_k_weights, recomputed.scf_k_weights, rtol=0, atol=1e-6
    ):
        result.problems.append("SCF k-point weights differ")
    if result.problems:
        return result
    result.eigenvalues_ev = float(np.abs(recomputed.eigenvalues - shipped.eigenvalues).max(
        initial=0.0))
    ours = band_levels(shipped)
    if not _compare_levels(result, ours, band_levels(recomputed), "gap"):
        return result
    return _flag_excess(result, (
        ("path eigenvalues", result.eigenvalues_ev, tolerances.eigenvalues_ev),
        ("/".join(ours), result.levels_ev, tolerances.levels_ev),
    ))


def _compare_levels(result: Comparison, ours: Mapping[str, float],
                    theirs: Mapping[str, float], gap: str) -> bool:
    """Set `result.levels_ev` to the largest level difference; False (with the problem noted)
    when the two products hold different levels: a metal on one side only."""
    if ours.keys() != theirs.keys():  # the gap tells by how much
        result.problems.append(f"{gap} {theirs.get(gap, 0.0):.4f} eV vs shipped "
                               f"{ours.get(gap, 0.0):.4f} eV (a metal in one of them)")
        return False
    result.levels_ev = max(abs(theirs[name] - ours[name]) for name in ours)
    return True


def _flag_excess(result: Comparison, rows) -> Comparison:
    """Note each (label, difference, tolerance) row whose difference exceeds its tolerance."""
    for label, value, limit in rows:
        if not value <= limit:  # NaN fails too
            result.problems.append(f"{label} differ by {value:.3g} > {limit:g}")
    return result


def gw_levels(product) -> dict[str, float]:
    """Levels of a G0W0 product: the Kohn-Sham and quasiparticle gaps on the k-grid, the vacuum
    level, and E_F of a metal only (in a gap, smearing tails alone place it)."""
    levels = {"gap_dft": float(product.gap_dft), "gap_gw": float(product.gap_gw),
              "vacuum_level": float(product.vacuum_level)}
    if not product.gap_dft > 0:
        levels["fermi_level"] = float(product.fermi_level)
    return levels


def compare_gw_products(shipped, recomputed, tolerances: Tolerances) -> Comparison:
    """The relaxed structure, the Kohn-Sham and quasiparticle energies of every state in the
    window, and `gw_levels` within tolerances; the k-points and the band window must agree."""
    result = Comparison()
    same_grid = (
        shipped.kpoints.shape == recomputed.kpoints.shape
        and np.allclose(shipped.kpoints, recomputed.kpoints, rtol=0, atol=1e-8)
        and np.allclose(shipped.k_weights, recomputed.k_weights, rtol=0, atol=1e-6)
    )
    if not same_grid:
        result.problems.append(f"irreducible k-points differ ({len(recomputed.kpoints)} vs "
                               f"shipped {len(shipped.kpoints)})")
    window = (shipped.band_start, shipped.n_ref, shipped.e_gw.shape)
    if (recomputed.band_start, recomputed.n_ref, recomputed.e_gw.shape) != window:
        result.problems.append(
            f"band window from {recomputed.band_start} ({recomputed.e_gw.shape[1]} bands) != "
            f"shipped from {shipped.band_start} ({shipped.e_gw.shape[1]} bands)"
        )
    if shipped.positions.shape != recomputed.positions.shape:
        result.problems.append("the relaxed structures have different numbers of atoms")
    if result.problems:
        return result
    result.structure_a = float(max(np.abs(recomputed.cell - shipped.cell).max(),
                                   np.abs(recomputed.positions - shipped.positions).max()))
    result.eigenvalues_ev = float(max(np.abs(recomputed.e_dft - shipped.e_dft).max(),
                                      np.abs(recomputed.e_gw - shipped.e_gw).max()))
    ours = gw_levels(shipped)
    if not _compare_levels(result, ours, gw_levels(recomputed), "gap_dft"):
        return result
    return _flag_excess(result, (
        ("relaxed cell/positions (Å)", result.structure_a, tolerances.structure_a),
        ("Kohn-Sham/quasiparticle energies", result.eigenvalues_ev, tolerances.eigenvalues_ev),
        ("/".join(ours), result.levels_ev, tolerances.levels_ev),
    ))


def gw_input_structure(material_id: str | None, key: str, settings):
    """The input layer of the G0W0 product `key`: VAE-GW's material `material_id` as its 2D set
    builds it, checked against the key (ValueError naming what does not match)."""
    from esrepro.dft.gw_product import gw_cache_key
    from esrepro.papers.vae_gw.structures import all_materials

    material = {m.id: m for m in all_materials()}.get(material_id or "")
    if material is None:
        raise ValueError(f"its material {material_id!r} is not in VAE-GW's 2D set, so its input "
                         "structure cannot be rebuilt")
    atoms = material.atoms(settings.vacuum)
    if gw_cache_key(atoms, settings) != key:
        raise ValueError(f"{material_id} as the 2D set builds it now does not give this "
                         "product's cache key (its structure or the code versions changed)")
    return atoms


def _degenerate_sums(
    weights: np.ndarray, energies: np.ndarray, n_converged: int, tolerance_ev: float
) -> np.ndarray:
    """Weights (..., n_k, n_bands) summed over each set of degenerate bands at each k-point,
    for the sets that lie within the first `n_converged` bands.

    Within a degenerate set any orthonormal basis is as good as another, and a recomputation
    picks its own: the m-resolved weights of single bands then differ (by up to 0.1 measured)
    while their sum over the set, which is all a DOS sees, does not. Bands count as degenerate
    when consecutive eigenvalues (`energies`, (n_k, n_bands)) lie within `tolerance_ev`.
    Returned as (n_k, n_sets_max, ...), zero where a k-point has fewer sets.
    """
    n_k, n_bands = energies.shape
    starts = np.diff(energies, axis=1) > tolerance_ev
    group = np.concatenate([np.zeros((n_k, 1), dtype=int), np.cumsum(starts, axis=1)], axis=1)
    k_index = np.broadcast_to(np.arange(n_k)[:, None], group.shape)
    # A set reaching past the converged bands is left out: its top members are not converged.
    last = np.zeros((n_k, n_bands), dtype=int)
    np.maximum.at(last, (k_index, group), np.broadcast_to(np.arange(n_bands), group.shape))
    keep = last < n_converged
    sums = np.zeros((n_k, n_bands, *weights.shape[:-2]))
    np.add.at(sums, (k_index, group), np.moveaxis(weights.astype(float), (-2, -1), (0, 1)))
    return np.where(keep.reshape(keep.shape + (1,) * (sums.ndim - 2)), sums, 0.0)


def _weight_difference(shipped: np.ndarray, recomputed: np.ndarray) -> float:
    """max |dw| / max(1, |w|): absolute for small weights, relative for large ones."""
    a = shipped.astype(float)
    return float((np.abs(recomputed.astype(float) - a) / np.maximum(1.0, np.abs(a))).max(
        initial=0.0))


def recompute_settings(meta: Mapping[str, Any]):
    """The settings that recompute a product from the structure it stores.

    The stored structure is the cell the product was computed on (the Niggli cell where the
    engine reduced it), so that cell runs as it is; a rhombohedral Niggli cell ran with
    point-group symmetry off, which `extra` then asks for explicitly.
    """
    from esrepro.dft.settings import DFTSettings

    settings = DFTSettings(**meta["settings"])
    if meta.get("point_group_symmetry", True) is False:
        settings = replace(settings, extra={**settings.extra, "symmetry": {"point_group": False}})
    return settings


@dataclass
class VerifyResult:
    key: str
    material_id: str | None
    archive: str
    comparison: Comparison | None = None
    error: str = ""
    what: str = "ground-state"  # "bands" or "gw": products without projector weights

    @property
    def ok(self) -> bool:
        return not self.error and self.comparison is not None and not self.comparison.problems


def verify_products(
    manifest: Manifest,
    keys: Sequence[str],
    *,
    workers: int = 1,
    timeout_s: float = 1800.0,
    tolerances: Tolerances = Tolerances(),
    unpack_dest: Path | None = None,
) -> list[VerifyResult]:
    """Recompute the shipped products `keys` with the engine (the farm, one MPI rank each, into
    a temporary cache) and compare each with the shipped one."""
    from ase import Atoms

    from esrepro.dft.band_product import BandProduct, BandSettings
    from esrepro.dft.cache import DFTCache
    from esrepro.dft.farm import FarmOptions, compute_products
    from esrepro.dft.gw_product import GWProduct, GWSettings
    from esrepro.dft.product import DFTProduct

    loaders = {"ground-state": DFTProduct.load, "bands": BandProduct.load, "gw": GWProduct.load}
    comparisons = {"ground-state": compare_products, "bands": compare_band_products,
                   "gw": compare_gw_products}

    where = manifest.shipped("product")
    shipped: dict[str, Any] = {}
    results: dict[str, VerifyResult] = {}
    groups: dict[str, dict[str, Any]] = defaultdict(dict)  # settings json -> {key: atoms}
    settings_of: dict[str, Any] = {}
    directories: dict[str, Path] = {}
    for key in keys:
        entry = where[key]
        what = ("bands" if is_band_kind(entry.kind) else "gw" if is_gw_kind(entry.kind)
                else "ground-state")
        result = results[key] = VerifyResult(key, entry.products[key], entry.path, what=what)
        if entry.path not in directories:
            directories[entry.path] = unpack_archive(manifest, entry, unpack_dest)
        path = directories[entry.path] / member_name(key, "product", entry.kind)
        product = shipped[key] = loaders[what](path)
        try:
            settings = (BandSettings.from_dict(product.meta["settings"]) if what == "bands"
                        else GWSettings.from_dict(product.meta["settings"]) if what == "gw"
                        else recompute_settings(product.meta))
        except (KeyError, TypeError, ValueError) as err:
            result.error = f"its meta names no usable settings ({err})"
            continue
        if what == "gw":
            try:
                atoms = gw_input_structure(entry.products[key], key, settings)
            except ValueError as err:
                result.error = str(err)
                continue
        else:
            atoms = Atoms(numbers=product.numbers, cell=product.cell,
                          positions=product.positions, pbc=True)
        label = json.dumps([what, settings.to_dict()], sort_keys=True)
        settings_of[label] = settings
        groups[label][key] = atoms
    options = FarmOptions(workers=workers, mpi_ranks=1, timeout_s=timeout_s)
    with tempfile.TemporaryDirectory(prefix="esrepro-seed-verify-") as tmp:
        cache = DFTCache(tmp)
        for label, structures in groups.items():
            for record in compute_products(structures, settings_of[label], cache, options,
                                           progress=False):
                result = results[record.material_id]
                if record.status == "failed":
                    result.error = f"recomputation failed: {record.reason}"
                    continue
                recomputed = loaders[result.what](Path(record.product_path))
                result.comparison = comparisons[result.what](shipped[result.key], recomputed,
                                                             tolerances)
    return [results[k] for k in keys]


def run_verify(
    sample: int,
    *,
    kind: str | None = None,
    seed: int = 0,
    root: Path | None = None,
    seeds_dir: Path | None = None,
    workers: int = 1,
    timeout_s: float = 1800.0,
    tolerances: Tolerances = Tolerances(),
) -> int:
    """Recompute `sample` random shipped products (of `kind`) and compare; exit 1 naming each
    product that differs beyond `tolerances` (or whose recomputation failed)."""
    try:
        manifest = Manifest.load(shipped_seed_dir(root, seeds_dir))
    except (ValueError, OSError) as err:
        print(f"error: {err}")
        return 2
    if kind is not None and kind not in manifest.kinds:
        print(f"error: no kind {kind!r} in {manifest.path}; kinds: {sorted(manifest.kinds)}")
        return 2
    candidates = sorted(k for k, e in manifest.shipped("product").items()
                        if kind is None or e.kind == kind)
    if sample < 1 or not candidates:
        print(f"error: nothing to verify (sample {sample}, {len(candidates)} products)")
        return 2
    keys = random.Random(seed).sample(candidates, min(sample, len(candidates)))
    print(f"recomputing {len(keys)} of {len(candidates)} shipped products "
          f"({kind or 'every kind'}, seed {seed}); tolerances: eigenvalues "
          f"{tolerances.eigenvalues_ev:g} eV, band edges/gap/E_F {tolerances.levels_ev:g} eV, "
          f"weights {tolerances.weights:g} (relative above 1; band products: eigenvalues on "
          "the path, HOB maximum/next minimum/gap/E_F of metals; G0W0 products: relaxed "
          f"structure {tolerances.structure_a:g} Å, KS and QP energies, gaps, vacuum level)")
    try:
        results = verify_products(manifest, keys, workers=workers, timeout_s=timeout_s,
                                  tolerances=tolerances)
    except (SeedError, ValueError) as err:
        print(f"error: {err}")
        return 1
    failed = []
    for r in results:
        name = f"{r.key} ({r.material_id or 'no id'}, {r.archive})"
        if r.ok:
            c = r.comparison
            extra = (f", weights {c.weights:.2g}" if r.what == "ground-state"
                     else f", relaxed structure {c.structure_a:.2g} Å" if r.what == "gw" else "")
            print(f"ok    {name}: eigenvalues {c.eigenvalues_ev:.2g} eV, levels "
                  f"{c.levels_ev:.2g} eV{extra}")
        else:
            why = r.error or "; ".join(r.comparison.problems)
            print(f"FAIL  {name}: {why}")
            failed.append(r.key)
    if failed:
        print(f"{len(failed)} of {len(results)} shipped products do not match their "
              f"recomputation: {', '.join(failed)}")
        return 1
    print(f"all {len(results)} recomputed products match the shipped ones")
    return 0
