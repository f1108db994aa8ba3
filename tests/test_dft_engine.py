"""The GPAW engine, its cache and the farm, on a tiny real calculation (bulk Si, 2 atoms).

Settings are far from converged (200 eV, 4x4x4 k-points) so that each SCF takes seconds; the
assertions are physical properties that hold at these settings, not recorded outputs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from esrepro.dft import farm
from esrepro.dft.cache import DFTCache
from esrepro.dft.farm import FarmOptions, compute_products
from esrepro.dft.product import CHANNEL_L, L_OFFSET, DFTProduct
from esrepro.dft.settings import DFTSettings, cache_key
from esrepro.spectra import energy_grid, projected_dos, total_dos

pytestmark = [
    pytest.mark.gpaw,
    # Each farm call starts a Dask scheduler whose HTTP server wants port 8787; harmless when
    # another cluster (e.g. a running warm-up) holds it.
    pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning"),
]

#: Tiny but sane: 200 eV plane waves and 1.5 k-points/Å^-1 (a 4x4x4 Γ-centred mesh for Si).
SMALL = DFTSettings(ecut_ev=200.0, kpt_density=1.5)
ONE_RANK = FarmOptions(workers=1, mpi_ranks=1, timeout_s=300.0)


def silicon(a: float = 5.43):
    return bulk("Si", "diamond", a=a)


def _no_farm(*args, **kwargs):
    raise AssertionError("a worker was launched although nothing needed computing")


def _journal_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def si_run(tmp_path_factory):
    """One real GPAW run of Si into a fresh cache: (records, cache, journal path, product)."""
    base = tmp_path_factory.mktemp("si")
    cache = DFTCache(base / "cache")
    journal = base / "journal.jsonl"
    records = compute_products(
        {"Si": silicon()}, SMALL, cache, ONE_RANK, progress=False, journal=journal
    )
    assert len(records) == 1
    record = records[0]
    assert record.status == "computed", record.reason
    product = DFTProduct.load(Path(record.product_path))
    return records, cache, journal, product


# --- physics of the product ------------------------------------------------------------------


def test_record_points_into_the_cache(si_run) -> None:
    records, cache, _, _ = si_run
    record = records[0]
    assert record.cache_key == cache_key(silicon(), SMALL)
    assert Path(record.product_path) == cache.product_path(record.cache_key)
    assert Path(record.product_path).is_file()
    assert cache.find_failure(record.cache_key) is None
    assert record.wall_s > 0


def test_si_has_an_lda_sized_indirect_gap(si_run) -> None:
    p = si_run[3]
    # LDA Si at a = 5.43 Å has an indirect gap of ~0.5 eV (Γ -> ~0.85 X). A coarse Γ-centred
    # mesh contains Γ (the VBM) but may miss the CBM, so it can only overestimate, by at most
    # E(X) - E(Δ_min) ≈ 0.2 eV; 200 eV moves band energies by < 0.1 eV.
    assert 0.3 < p.gap < 0.8
    assert p.vbm < p.cbm
    assert p.gap == pytest.approx(p.cbm - p.vbm, abs=1e-6)
    assert p.vbm <= p.fermi_level <= p.cbm
    assert p.n_electrons == 8.0
    e = p.eigenvalues.astype(np.float64)
    k_top = int(np.argmax(e[:, 3]))
    assert e[k_top, 3] == pytest.approx(p.vbm, abs=1e-5)
    assert e[:, 4].min() == pytest.approx(p.cbm, abs=1e-5)
    # The VBM is the triply degenerate Γ'25 state, and the gap is indirect: the direct gap at Γ
    # (Γ'25 -> Γ15, ~2.5 eV in LDA) is far larger than the fundamental gap.
    np.testing.assert_allclose(e[k_top, 1:4], p.vbm, atol=2e-3)
    assert e[k_top, 4] - p.vbm > 2.0
    # The valence band is ~12 eV wide in Si.
    assert 11.0 < p.vbm - e[:, 0].min() < 13.0


def test_k_weights_and_shapes(si_run) -> None:
    p = si_run[3]
    n_k, n_bands = p.eigenvalues.shape
    assert p.k_weights.shape == (n_k,)
    assert np.all(p.k_weights > 0)
    assert p.k_weights.sum() == pytest.approx(1.0, abs=1e-6)
    assert p.meta["n_kpoints_ibz"] == n_k
    assert p.meta["kpt_grid"] == [4, 4, 4]
    assert n_bands == p.meta["n_bands"] >= 4 + SMALL.min_empty_bands
    assert np.all(np.diff(p.eigenvalues, axis=1) >= -1e-4), "bands are sorted at each k"
    assert p.projector_weights.shape == (2, 16, n_k, p.band_stop - p.band_start)
    # The window [VBM - 22 eV, VBM + 15 eV] holds all valence bands of Si.
    assert p.band_start == 0 and p.band_stop > 4
    np.testing.assert_array_equal(p.numbers, [14, 14])
    assert p.meta["mpi_ranks"] == 1
    assert p.meta["settings"] == SMALL.to_dict()


def test_total_dos_counts_eight_valence_electrons(si_run) -> None:
    p = si_run[3]
    sigma = 0.05
    midgap = p.gap / 2  # grid is relative to the VBM; midgap is >5 sigma from both edges
    grid = energy_grid(-20.0, midgap, 20001)
    electrons = np.trapezoid(total_dos(p, grid, sigma), grid)
    assert electrons == pytest.approx(p.n_electrons, abs=0.02)
    # Up to the top of the first conduction band, that band's 2 electrons are counted too.
    top = float(p.eigenvalues[:, 4].max()) - p.vbm + 6 * sigma
    grid2 = energy_grid(-20.0, top, 20001)
    assert np.trapezoid(total_dos(p, grid2, sigma), grid2) >= p.n_electrons + 2 - 0.02


def _bound_channels(symbol: str, xc: str) -> set[int]:
    from gpaw.setup_data import SetupData

    setup = SetupData(symbol, xc, "paw")
    return {ell for n, ell in zip(setup.n_j, setup.l_j, strict=True) if n >= 0}


def test_channel_mask_follows_the_bound_projectors(si_run) -> None:
    p = si_run[3]
    bound = _bound_channels("Si", SMALL.xc)
    # GPAW's Si setup: bound 3s and 3p projectors; its d projector is unbound (n = -1) and is
    # excluded, as in gpaw.dos.get_projector_numbers.
    assert bound == {0, 1}
    expected = np.isin(CHANNEL_L, sorted(bound))
    for a in range(p.n_atoms):
        np.testing.assert_array_equal(p.channel_mask[a], expected)
    assert not p.channel_mask[:, L_OFFSET[3] :].any(), "no f channels for Si"
    weights = p.projector_weights.astype(np.float64)
    assert np.all(weights[~p.channel_mask] == 0.0)
    assert np.all(weights >= 0.0)
    # Every bound channel carries weight.
    assert np.all(weights.sum(axis=(2, 3))[p.channel_mask] > 0.1)


def test_equivalent_atoms_have_equal_pdos(si_run) -> None:
    p = si_run[3]
    grid = energy_grid(-15.0, 5.0, 2001)
    pdos = projected_dos(p, grid, 0.1)
    per_l = np.stack([pdos[:, CHANNEL_L == ell].sum(axis=1) for ell in (0, 1)], axis=1)
    np.testing.assert_allclose(per_l[0], per_l[1], atol=2e-3 * per_l.max())
    # Valence-band PDOS (states below the VBM) has both s and p character.
    below = grid < 0
    assert np.trapezoid(per_l[0, 0, below], grid[below]) > 0.5
    assert np.trapezoid(per_l[0, 1, below], grid[below]) > 0.5


def test_m_resolved_weights_respect_cubic_symmetry(si_run) -> None:
    p = si_run[3]
    occupied = p.window_eigenvalues() <= p.vbm + 1e-4
    w = p.projector_weights.astype(np.float64) * p.k_weights[None, None, :, None]
    charge = (w * occupied[None, None]).sum(axis=(2, 3))
    p_channels = charge[:, L_OFFSET[1] : L_OFFSET[1] + 3]
    # In a cubic crystal the three p orbitals are equivalent.
    mean = np.broadcast_to(p_channels.mean(axis=1, keepdims=True), p_channels.shape)
    np.testing.assert_allclose(p_channels, mean, rtol=0.01)


# --- cache, seeds, journal -------------------------------------------------------------------


def test_journal_has_one_line_per_computed_material(si_run) -> None:
    records, _, journal, _ = si_run
    lines = _journal_lines(journal)
    assert len(lines) == 1
    line = lines[0]
    assert line["material_id"] == "Si"
    assert line["status"] == "computed"
    assert line["cache_key"] == records[0].cache_key
    assert line["wall_s"] > 0


def test_second_call_is_served_from_cache(si_run, monkeypatch) -> None:
    records, cache, journal, _ = si_run
    path = Path(records[0].product_path)
    mtime = path.stat().st_mtime_ns
    monkeypatch.setattr(farm, "_farm", _no_farm)
    again = compute_products(
        {"Si": silicon()}, SMALL, cache, ONE_RANK, progress=False, journal=journal
    )
    assert [r.status for r in again] == ["cached"]
    assert again[0].cache_key == records[0].cache_key
    assert Path(again[0].product_path) == path
    assert path.stat().st_mtime_ns == mtime
    assert len(_journal_lines(journal)) == 1, "nothing computed, nothing journaled"
    # Permuted / wrapped input is the same material.
    moved = silicon()[[1, 0]]
    moved.positions += moved.cell[0]
    assert [
        r.status for r in compute_products({"Si": moved}, SMALL, cache, ONE_RANK, progress=False)
    ] == ["cached"]


def test_read_only_seed_is_used(si_run, tmp_path, monkeypatch) -> None:
    records, cache, _, product = si_run
    seed = tmp_path / "seed"
    shutil.copytree(cache.root, seed)
    for f in seed.rglob("*"):
        f.chmod(0o555 if f.is_dir() else 0o444)
    seed.chmod(0o555)
    # Permission bits do not stop root, so "nothing was written" is also checked explicitly.
    before = sorted((str(f.relative_to(seed)), f.stat().st_mtime_ns) for f in seed.rglob("*"))
    fresh = DFTCache(tmp_path / "fresh", seeds=[seed, tmp_path / "missing-seed"])
    monkeypatch.setattr(farm, "_farm", _no_farm)
    try:
        result = compute_products({"Si": silicon()}, SMALL, fresh, ONE_RANK, progress=False)
        assert [r.status for r in result] == ["seed"]
        assert Path(result[0].product_path).is_relative_to(seed)
        assert DFTProduct.load(Path(result[0].product_path)).gap == product.gap
        # Nothing written into the seed nor into the fresh cache.
        after = sorted((str(f.relative_to(seed)), f.stat().st_mtime_ns) for f in seed.rglob("*"))
        assert after == before
        assert not fresh.root.exists() or not list(fresh.root.rglob("*.npz"))
    finally:
        for f in [seed, *seed.rglob("*")]:
            f.chmod(0o755 if f.is_dir() else 0o644)


def test_resume_computes_only_the_missing_material(si_run, tmp_path) -> None:
    _, cache, _, _ = si_run
    resumed = DFTCache(tmp_path / "cache")
    shutil.copytree(cache.root, resumed.root)
    journal = tmp_path / "journal.jsonl"
    materials = {"Si": silicon(), "Si-expanded": silicon(5.55)}
    records = compute_products(materials, SMALL, resumed, ONE_RANK, progress=False, journal=journal)
    assert {r.material_id: r.status for r in records} == {"Si": "cached", "Si-expanded": "computed"}
    lines = _journal_lines(journal)
    assert [(x["material_id"], x["status"]) for x in lines] == [("Si-expanded", "computed")]
    expanded = DFTProduct.load(Path(records[1].product_path))
    # Si's indirect gap has a negative pressure coefficient (about -1.4 meV/kbar), so a 2 %
    # larger lattice constant (about -6 GPa) opens the gap by roughly 0.1 eV; LDA has that sign.
    assert expanded.gap > DFTProduct.load(Path(records[0].product_path)).gap


# --- failures --------------------------------------------------------------------------------


def test_unconverged_scf_is_recorded_and_not_retried(tmp_path, monkeypatch) -> None:
    settings = dataclasses.replace(SMALL, max_iterations=2)
    cache = DFTCache(tmp_path / "cache")
    journal = tmp_path / "journal.jsonl"
    [record] = compute_products(
        {"Si": silicon()}, settings, cache, ONE_RANK, progress=False, journal=journal
    )
    assert record.status == "failed"
    assert "converg" in record.reason.lower()
    assert record.product_path == ""
    key = cache_key(silicon(), settings)
    failure_file = cache.root / key[:2] / f"{key}.failed.json"
    assert failure_file == cache.failure_path(key)
    info = json.loads(failure_file.read_text())
    assert info["reason"] == record.reason
    assert info["material_id"] == "Si"
    assert not cache.product_path(key).exists()
    assert len(_journal_lines(journal)) == 1

    # Without retry_failed the recorded failure is reported, nothing is recomputed.
    with monkeypatch.context() as m:
        m.setattr(farm, "_farm", _no_farm)
        [again] = compute_products(
            {"Si": silicon()}, settings, cache, ONE_RANK, progress=False, journal=journal
        )
    assert again.status == "failed" and again.reason == record.reason
    assert len(_journal_lines(journal)) == 1

    # With retry_failed it is recomputed (and, still with 2 iterations, fails again).
    mtime = failure_file.stat().st_mtime_ns
    retry = dataclasses.replace(ONE_RANK, retry_failed=True)
    [third] = compute_products(
        {"Si": silicon()}, settings, cache, retry, progress=False, journal=journal
    )
    assert third.status == "failed" and "converg" in third.reason.lower()
    assert len(_journal_lines(journal)) == 2
    assert failure_file.stat().st_mtime_ns != mtime


def test_scf_converging_on_the_last_allowed_iteration_is_not_a_failure(si_run, tmp_path) -> None:
    needed = si_run[3].meta["scf_iterations"]
    assert isinstance(needed, int) and needed > 2
    settings = dataclasses.replace(SMALL, max_iterations=needed)
    [record] = compute_products(
        {"Si": silicon()}, settings, DFTCache(tmp_path / "cache"), ONE_RANK, progress=False
    )
    assert record.status == "computed", record.reason


def test_timeout_is_recorded_as_failure(tmp_path, monkeypatch) -> None:
    cache = DFTCache(tmp_path / "cache")
    options = dataclasses.replace(ONE_RANK, timeout_s=0.5)
    [record] = compute_products({"Si": silicon()}, SMALL, cache, options, progress=False)
    assert record.status == "failed"
    assert record.reason.startswith("TimeoutError")
    # Half a second is spent importing GPAW: the record says the SCF never started.
    assert record.reason.endswith("(before the first SCF iteration)"), record.reason
    key = cache_key(silicon(), SMALL)
    failure = json.loads(cache.failure_path(key).read_text())
    assert failure["reason"] == record.reason
    assert failure["timeout_s"] == 0.5  # the limit as a number, for the retry below
    # The worker writes its product straight into the cache when its (seconds-long) SCF ends,
    # so no product means it was killed, not waited for.
    assert not cache.product_path(key).exists()
    # Without retry_failed, the same time-out reports the failure; a longer one computes it
    # (failures are keyed on the settings, not on the farm options).
    with monkeypatch.context() as m:
        m.setattr(farm, "_farm", _no_farm)
        [same] = compute_products({"Si": silicon()}, SMALL, cache, options, progress=False)
    assert same.status == "failed" and same.reason == record.reason
    [longer] = compute_products({"Si": silicon()}, SMALL, cache, ONE_RANK, progress=False)
    assert longer.status == "computed", longer.reason
    assert not cache.failure_path(key).exists()


def test_timeout_during_the_scf_records_how_far_it_got(tmp_path) -> None:
    # A density tolerance no SCF reaches keeps GPAW iterating until the time-out kills it.
    settings = dataclasses.replace(SMALL, density_tolerance=1e-30, max_iterations=100_000)
    cache = DFTCache(tmp_path / "cache")
    options = dataclasses.replace(ONE_RANK, timeout_s=30.0)
    [record] = compute_products({"Si": silicon()}, settings, cache, options, progress=False)
    assert record.status == "failed"
    match = re.fullmatch(r"TimeoutError: exceeded 30 s \(SCF iteration (\d+)\)", record.reason)
    assert match, record.reason
    failure = json.loads(cache.failure_path(cache_key(silicon(), settings)).read_text())
    assert failure["reason"] == record.reason
    # The recorded log tail is GPAW's own, ending at the iteration the reason names.
    last_iteration = re.findall(r"iter:\s*(\d+)", failure["gpaw_log_tail"])[-1]
    assert int(last_iteration) == int(match.group(1)) >= 1


def test_two_mpi_ranks_give_the_same_product(si_run, tmp_path) -> None:
    # Fails, rather than skips, without an MPI launcher: a skip would hide that the parallel
    # path never ran.
    launcher = shutil.which("mpirun") or shutil.which("mpiexec")
    assert launcher, "no mpirun/mpiexec on PATH (install openmpi-bin)"
    serial = si_run[3]
    cache = DFTCache(tmp_path / "cache")
    options = dataclasses.replace(ONE_RANK, mpi_ranks=2)
    [record] = compute_products({"Si": silicon()}, SMALL, cache, options, progress=False)
    assert record.status == "computed", record.reason
    parallel = DFTProduct.load(Path(record.product_path))
    assert parallel.meta["mpi_ranks"] == 2, "the worker did not run under 2 GPAW MPI ranks"
    assert parallel.gap == pytest.approx(serial.gap, abs=1e-3)
    assert parallel.meta["energy_ev"] == pytest.approx(serial.meta["energy_ev"], abs=1e-3)
    # Only bands up to CBM + 5 eV are converged (converge_bands="CBM+5.0"); compare those.
    converged = serial.eigenvalues <= serial.cbm + 4.5
    np.testing.assert_allclose(
        parallel.eigenvalues[converged], serial.eigenvalues[converged], atol=2e-3
    )
    # Per-band weights of degenerate states depend on the gauge; the broadened PDOS does not.
    grid = energy_grid(-15.0, serial.gap + 4.0, 1901)
    pdos_1 = projected_dos(serial, grid, 0.1)
    pdos_2 = projected_dos(parallel, grid, 0.1)
    np.testing.assert_allclose(pdos_2, pdos_1, atol=5e-3 * pdos_1.max())


def test_bands_cover_the_requested_energy(si_run) -> None:
    # Every k-point holds bands up to at least E_VBM + bands_cover_ev (the DOS windows need it).
    p = si_run[3]
    assert p.eigenvalues[:, -1].min() - p.vbm >= SMALL.bands_cover_ev


def test_free_electron_estimate_raises_bands_of_dilute_semicore_cells() -> None:
    from esrepro.dft.gpaw_engine import count_bands, free_electron_bands

    # Free-electron gas: with E_F itself as the top, the bands hold exactly the electrons / 2.
    assert free_electron_bands(8.0, 40.0, 0.0) == pytest.approx(4.0)
    # CsCl-type CsBr (Cs 5s2 5p6 6s1 + Br 4s2 4p5 = 16 electrons, 98 A^3): twice the occupied
    # bands reached only E_VBM + 12.4 eV; the covering term asks for more.
    cscl = bulk("CsBr", "cesiumchloride", a=4.61)
    plain = dataclasses.replace(SMALL, bands_cover_ev=0.0)
    assert count_bands(cscl, plain) == max(2 * 8, 8 + SMALL.min_empty_bands)
    assert count_bands(cscl, SMALL) > count_bands(cscl, plain) + 8


def test_local_farm_survives_a_suspended_process() -> None:
    # Dask drops workers whose heartbeat is missing for worker-ttl (5 min by default); after a
    # SIGSTOP or a laptop suspend the farm then hung with every task cancelled. The in-process
    # local worker has no heartbeat time-out.
    client, cluster = farm._make_client(farm.FarmOptions(workers=2))
    try:
        assert cluster.scheduler.worker_ttl is None
    finally:
        client.close()
        cluster.close()


def test_a_thin_rhombohedral_cell_runs_on_its_niggli_cell_without_point_group() -> None:
    from ase import Atoms
    from ase.cell import Cell

    from esrepro.dft.gpaw_engine import run_gpaw
    from esrepro.dft.settings import NIGGLI_NO_POINT_GROUP, cell_reduction
    from esrepro.spectra import projected_dos
    from esrepro.structures import niggli_cell_same_frame

    # One Li atom per cell of a thin rhombohedral lattice (alpha = 20 degrees, a = 8.6 A, so
    # the shortest lattice vector, a1 - a2, is 3.0 A): layers stacked along the 3-fold axis.
    li = Atoms("Li", cell=Cell.fromcellpar([8.64, 8.64, 8.64, 20.0, 20.0, 20.0]), pbc=True)
    on = dataclasses.replace(SMALL, reduce_skewed_cells=1.5)
    assert cell_reduction(li, on) == NIGGLI_NO_POINT_GROUP
    assert cell_reduction(li, SMALL) is None
    reduced = run_gpaw(li, on)
    assert reduced.meta["niggli_cell"] is True and reduced.meta["point_group_symmetry"] is False
    # The same Niggli cell and k-mesh with point-group symmetry on: fewer k-points, same results
    # (the PDOS is a k-sum; the m-resolved weights are symmetrized over the point group).
    symmetric = run_gpaw(niggli_cell_same_frame(li), SMALL)
    assert symmetric.meta["niggli_cell"] is False and symmetric.meta["point_group_symmetry"] is True
    assert reduced.meta["kpt_grid"] == symmetric.meta["kpt_grid"]
    assert reduced.meta["n_kpoints_ibz"] > symmetric.meta["n_kpoints_ibz"]
    assert reduced.meta["energy_ev"] == pytest.approx(symmetric.meta["energy_ev"], abs=1e-3)
    assert reduced.fermi_level == pytest.approx(symmetric.fermi_level, abs=1e-3)
    grid = np.linspace(reduced.fermi_level - 5.0, reduced.fermi_level + 5.0, 201)
    a, b = projected_dos(reduced, grid, 0.2), projected_dos(symmetric, grid, 0.2)
    assert a.max() > 0.1
    np.testing.assert_allclose(a, b, atol=2e-2 * a.max())


def test_a_skewed_cell_is_computed_on_its_niggli_cell(si_run) -> None:
    from esrepro.dft.gpaw_engine import run_gpaw
    from esrepro.structures import orthogonality_defect

    # The same Si crystal on a needlessly skewed cell (primitive vectors mixed by a unimodular
    # integer matrix): with the reduction on, GPAW runs on the ordinary primitive cell again.
    skewed = silicon()
    skewed.set_cell(
        np.array([[1, 3, 0], [0, 1, 0], [0, 1, 1]]) @ skewed.cell.array, scale_atoms=False
    )
    skewed.wrap()
    assert orthogonality_defect(skewed.cell.array) > 5
    settings = dataclasses.replace(SMALL, reduce_skewed_cells=1.5)
    product = run_gpaw(skewed, settings)
    plain = si_run[3]
    assert product.meta["niggli_cell"] is True and "niggli_cell" in plain.meta
    assert plain.meta["niggli_cell"] is False
    assert orthogonality_defect(product.cell) == pytest.approx(
        orthogonality_defect(silicon().cell.array)
    )
    assert product.meta["kpt_grid"] == plain.meta["kpt_grid"]
    assert product.gap == pytest.approx(plain.gap, abs=2e-3)
    assert product.meta["energy_ev"] == pytest.approx(plain.meta["energy_ev"], abs=2e-3)
