"""LDOS paper learning engine: kernel ridge LDOS models, cross-validation and SOAP descriptors.

The kernel-ridge tests use synthetic data whose answer is known: each atom has a latent
coordinate ``z`` in [-1, 1]; its descriptor is a vector of positive Gaussian "density" bumps in
``z`` (smooth, injective, SOAP-like); its LDOS is a normalized Gaussian peak whose centre moves
linearly with ``z`` (species A: -1 + 1.5 z, two states; species B: 2 - z, one state). Expected
values come from closed forms computed here with plain numpy (ridge normal equations, the
Bayes-optimal ridge parameter of a Gaussian linear model), never from the implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from esrepro.dos_properties import normalized_loss
from esrepro.papers.ldos import krr
from esrepro.papers.ldos.krr import (
    LDOSKernelRidge,
    SplitDOSKernelRidge,
    cross_validate,
    farthest_point_sampling,
    kernel_matrix,
    select_hyperparameters,
    structure_folds,
)

# ---------------------------------------------------------------- synthetic LDOS data

E = np.linspace(-6.0, 6.0, 121)
_BUMPS = np.linspace(-1.0, 1.0, 10)
_WIDTH = 0.6


def _descriptor(z: np.ndarray) -> np.ndarray:
    return np.exp(-((z[:, None] - _BUMPS[None, :]) ** 2) / (2 * 0.35**2))


def _ldos(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    centre = np.where(labels == "A", -1.0 + 1.5 * z, 2.0 - z)
    states = np.where(labels == "A", 2.0, 1.0)
    peak = np.exp(-((E[None, :] - centre[:, None]) ** 2) / (2 * _WIDTH**2))
    return states[:, None] * peak / (math.sqrt(2 * math.pi) * _WIDTH)


def _make(n_structures: int, seed: int, two_species: bool = True):
    """Structures of 2-6 atoms: (descriptors, atom LDOS, species labels, structure DOS)."""
    rng = np.random.default_rng(seed)
    xs, ys, labs = [], [], []
    for _ in range(n_structures):
        n = int(rng.integers(2, 7))
        z = rng.uniform(-1.0, 1.0, n)
        lab = rng.choice(["A", "B"], n) if two_species else np.full(n, "A")
        xs.append(_descriptor(z))
        ys.append(_ldos(z, lab))
        labs.append(list(lab))
    dos = np.stack([y.sum(axis=0) for y in ys])
    return xs, ys, labs, dos


TRAIN = _make(40, seed=1)
SPLIT_TRAIN = _make(120, seed=3)
TEST = _make(20, seed=2)


def _atoms_loss(pred: list[np.ndarray], ref: list[np.ndarray]) -> float:
    return normalized_loss(np.concatenate(pred), np.concatenate(ref), E)


# ---------------------------------------------------------------- kernels


def test_polynomial_and_rbf_kernels_on_normalized_descriptors() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 6)), rng.normal(size=(3, 6))
    cos = (a @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
    np.testing.assert_allclose(kernel_matrix(a, b, zeta=3), cos**3, rtol=1e-12)
    # Scale invariance: the kernel sees only directions.
    np.testing.assert_allclose(kernel_matrix(5.0 * a, b, zeta=2), cos**2, rtol=1e-12)
    np.testing.assert_allclose(
        kernel_matrix(a, b, kernel="rbf", gamma=0.7), np.exp(-0.7 * (2 - 2 * cos)), rtol=1e-12
    )
    with pytest.raises(ValueError, match="positive integer"):
        kernel_matrix(a, b, zeta=1.5)
    with pytest.raises(ValueError, match="zero"):
        kernel_matrix(np.zeros((1, 6)), b)


# ---------------------------------------------------------------- the two learning strategies


def test_ldos_on_ldos_recovers_held_out_atom_ldos() -> None:
    xs, ys, labs, _ = TRAIN
    model = LDOSKernelRidge(lam=1e-3, zeta=2).fit(xs, ys, labs)
    assert model.species_ == ("A", "B")
    loss = _atoms_loss(model.predict_atoms(TEST[0], TEST[2]), TEST[1])
    assert loss < 0.02
    # Far better than each species' mean LDOS (what the baseline alone predicts).
    mean_only = LDOSKernelRidge(lam=1e6, zeta=2).fit(xs, ys, labs)
    assert loss < 0.1 * _atoms_loss(mean_only.predict_atoms(TEST[0], TEST[2]), TEST[1])


def test_dos_split_recovers_atom_ldos_and_structure_dos_from_sums_only() -> None:
    xs, _, labs, dos = SPLIT_TRAIN
    model = SplitDOSKernelRidge(lam=1e-3, zeta=2).fit(xs, dos, labs)
    atoms = model.predict_atoms(TEST[0], TEST[2])
    atom_loss = _atoms_loss(atoms, TEST[1])
    structure_loss = normalized_loss(model.predict_structures(TEST[0], TEST[2]), TEST[3], E)
    assert structure_loss < 0.02
    assert atom_loss < 0.05
    # The naive split (each atom gets an equal share of its structure's true DOS) is far worse:
    # the model really separated the atomic contributions.
    naive = [
        np.repeat(d[None, :] / len(x), len(x), axis=0)
        for x, d in zip(TEST[0], TEST[3], strict=True)
    ]
    assert atom_loss < 0.1 * _atoms_loss(naive, TEST[1])


@pytest.mark.parametrize("n_sparse", [None, 12])
def test_structure_dos_is_exactly_the_sum_of_predicted_ldos(n_sparse: int | None) -> None:
    for model, target in (
        (LDOSKernelRidge(lam=1e-3, n_sparse=n_sparse), TRAIN[1]),
        (SplitDOSKernelRidge(lam=1e-3, n_sparse=n_sparse), TRAIN[3]),
    ):
        model.fit(TRAIN[0], target, TRAIN[2])
        atoms = model.predict_atoms(TEST[0], TEST[2])
        assert [a.shape for a in atoms] == [(len(x), E.size) for x in TEST[0]]
        np.testing.assert_array_equal(
            model.predict_structures(TEST[0], TEST[2]), np.stack([a.sum(axis=0) for a in atoms])
        )


def test_exact_fits_match_the_closed_form_ridge_solutions() -> None:
    """center=False, single species: the printed eq. 13-14, solved here with plain numpy."""
    xs, ys, _, dos = _make(15, seed=7, two_species=False)
    lam, zeta = 3e-3, 2
    x = np.concatenate(xs)
    xh = x / np.linalg.norm(x, axis=1, keepdims=True)
    k = (xh @ xh.T) ** zeta
    xt = np.concatenate(TEST[0])
    xth = xt / np.linalg.norm(xt, axis=1, keepdims=True)
    k_test = (xth @ xh.T) ** zeta
    test_x = [TEST[0][0], TEST[0][1]]
    n_test = len(test_x[0]) + len(test_x[1])

    ldos = LDOSKernelRidge(lam=lam, zeta=zeta, center=False, chunk_size=7).fit(xs, ys)
    expected = k_test[:n_test] @ np.linalg.solve(k + lam * np.eye(len(x)), np.concatenate(ys))
    np.testing.assert_allclose(np.concatenate(ldos.predict_atoms(test_x)), expected, atol=1e-9)

    # DOS-split: g(x) = k(x, X) Sᵀ (S K Sᵀ + lam I)⁻¹ D with S the structure-atom incidence.
    s = np.zeros((len(xs), len(x)))
    s[np.repeat(np.arange(len(xs)), [len(v) for v in xs]), np.arange(len(x))] = 1.0
    coef = np.linalg.solve(s @ k @ s.T + lam * np.eye(len(xs)), dos)
    split = SplitDOSKernelRidge(lam=lam, zeta=zeta, center=False, chunk_size=7).fit(xs, dos)
    np.testing.assert_allclose(
        np.concatenate(split.predict_atoms(test_x)), k_test[:n_test] @ s.T @ coef, atol=1e-9
    )


# ---------------------------------------------------------------- Nyström / sparse kernel


@pytest.mark.parametrize(
    "kernel_args", [{"zeta": 2}, {"zeta": 1}, {"zeta": 4}, {"kernel": "rbf", "gamma": 2.0}]
)
@pytest.mark.parametrize("model_cls", [LDOSKernelRidge, SplitDOSKernelRidge])
def test_nystroem_with_all_environments_equals_exact(model_cls, kernel_args) -> None:
    # zeta=1 on 10 features is a rank-10 kernel: the eigenvalue truncation must still be exact.
    xs, ys, labs, dos = TRAIN
    target = ys if model_cls is LDOSKernelRidge else dos
    n_atoms = sum(len(x) for x in xs)
    exact = model_cls(lam=1e-3, **kernel_args).fit(xs, target, labs)
    sparse = model_cls(lam=1e-3, n_sparse=n_atoms, chunk_size=9, **kernel_args).fit(
        xs, target, labs
    )
    for s in ("A", "B"):
        assert sparse.refs_[s].shape == exact.refs_[s].shape  # M = N_s references
    p_exact = np.concatenate(exact.predict_atoms(TEST[0], TEST[2]))
    p_sparse = np.concatenate(sparse.predict_atoms(TEST[0], TEST[2]))
    np.testing.assert_allclose(p_sparse, p_exact, rtol=0, atol=1e-7 * np.abs(p_exact).max())


@pytest.mark.parametrize("model_cls", [LDOSKernelRidge, SplitDOSKernelRidge])
def test_fewer_references_degrade_gracefully(model_cls) -> None:
    xs, ys, labs, dos = SPLIT_TRAIN
    target = ys if model_cls is LDOSKernelRidge else dos
    exact = _atoms_loss(
        model_cls(lam=1e-3).fit(xs, target, labs).predict_atoms(TEST[0], TEST[2]), TEST[1]
    )
    losses = []
    for m in (2, 4, 8, 16, 32):
        model = model_cls(lam=1e-3, n_sparse=m).fit(xs, target, labs)
        assert all(model.refs_[s].shape[0] == m for s in ("A", "B"))
        losses.append(_atoms_loss(model.predict_atoms(TEST[0], TEST[2]), TEST[1]))
    assert all(np.isfinite(losses))
    assert losses[0] < 1.0  # even 2 references per species beat the species mean
    # Error shrinks (up to 10 % noise) as M grows, reaching the exact fit's.
    assert all(b <= 1.1 * a for a, b in zip(losses, losses[1:], strict=False))
    assert losses[-1] <= 1.1 * exact + 1e-4


def test_farthest_point_sampling_spreads_and_skips_duplicates() -> None:
    z = np.linspace(-1.0, 1.0, 101)
    x = np.stack([z, np.zeros_like(z)], axis=1)
    idx = farthest_point_sampling(x, 6, seed=0)
    assert len(set(idx.tolist())) == 6
    # Whatever the seeded start, the second pick is an end of the segment, and every pick is
    # (brute force) a point farthest from those already chosen.
    assert idx[1] in (0, 100)
    for k in range(1, 6):
        gap = np.abs(z[:, None] - z[idx[:k]][None, :]).min(axis=1)
        assert gap[idx[k]] == pytest.approx(gap.max(), abs=1e-12)
    dup = np.repeat(np.eye(3), 4, axis=0)  # 3 distinct rows, each 4 times
    assert sorted(dup[farthest_point_sampling(dup, 10, seed=1)].tolist()) == sorted(
        np.eye(3).tolist()
    )
    np.testing.assert_array_equal(
        farthest_point_sampling(x, 7, seed=5), farthest_point_sampling(x, 7, seed=5)
    )


def test_random_references_are_seeded() -> None:
    xs, ys, labs, _ = TRAIN
    a = LDOSKernelRidge(n_sparse=10, sparse_method="random", seed=4).fit(xs, ys, labs)
    b = LDOSKernelRidge(n_sparse=10, sparse_method="random", seed=4).fit(xs, ys, labs)
    c = LDOSKernelRidge(n_sparse=10, sparse_method="random", seed=5).fit(xs, ys, labs)
    np.testing.assert_array_equal(a.refs_["A"], b.refs_["A"])
    assert not np.array_equal(a.refs_["A"], c.refs_["A"])


# ---------------------------------------------------------------- species handling


def test_unseen_or_missing_species_raise() -> None:
    xs, ys, labs, _ = TRAIN
    model = LDOSKernelRidge().fit(xs, ys, labs)
    with pytest.raises(ValueError, match="'C'"):
        model.predict_atoms([xs[0]], [["C"] * len(xs[0])])
    with pytest.raises(ValueError, match="pass species"):
        model.predict_atoms([xs[0]])
    with pytest.raises(ValueError, match="species labels"):
        LDOSKernelRidge().fit(xs, ys, [lab[:-1] for lab in labs])


# ---------------------------------------------------------------- cross-validation


def test_structure_folds_partition_the_structures() -> None:
    folds = structure_folds(23, 5, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(23))
    assert sorted(len(f) for f in folds) == [4, 4, 5, 5, 5]
    for a, b in zip(folds, structure_folds(23, 5, seed=3), strict=True):
        np.testing.assert_array_equal(a, b)


def test_cv_never_splits_a_structure_across_train_and_test(monkeypatch) -> None:
    """Spy on every atom set the CV builds: each is a union of whole, original structures."""
    xs, ys, labs, _ = TRAIN
    seen: list[list[int]] = []
    ident = {id(x): i for i, x in enumerate(xs)}
    original = krr._prepare

    def spy(descriptors, species, n_features=None):
        seen.append([ident[id(d)] for d in descriptors])  # KeyError if an array was sliced
        for d, lab in zip(descriptors, species, strict=True):
            assert len(lab) == len(d) == len(xs[ident[id(d)]])
        return original(descriptors, species, n_features)

    monkeypatch.setattr(krr, "_prepare", spy)
    result = select_hyperparameters(
        LDOSKernelRidge(),
        {"lam": [1e-4, 1e-2]},
        xs,
        ys,
        E,
        species=labs,
        folds=5,
        seed=2,
        refit=False,
    )
    # Per fold: one training set, then one test set; they partition the structures.
    assert len(seen) == 2 * 5
    for f, test in enumerate(result.folds):
        train_set, test_set = set(seen[2 * f]), set(seen[2 * f + 1])
        assert test_set == set(test.tolist())
        assert not train_set & test_set and train_set | test_set == set(range(len(xs)))
    # Group membership at atom level: every atom of a structure is in that structure's fold.
    atom_group = np.repeat(np.arange(len(xs)), [len(x) for x in xs])
    fold_of_structure = np.empty(len(xs), dtype=int)
    for f, test in enumerate(result.folds):
        fold_of_structure[test] = f
    atom_fold = fold_of_structure[atom_group]
    for g in range(len(xs)):
        assert np.unique(atom_fold[atom_group == g]).size == 1


def test_cv_picks_the_bayes_optimal_ridge_parameter() -> None:
    """Gaussian linear model: y = x̂·β + noise, β ~ N(0, I), noise σ_n = 0.3 per output.

    With the linear kernel (zeta=1) and no baseline, ridge with lam = σ_n² / σ_β² = 0.09 is the
    posterior mean, the expected-error minimizer; CV must land within one half-decade grid step.
    """
    rng = np.random.default_rng(100)
    n_features, n_out, noise = 60, 40, 0.3
    beta = rng.normal(size=(n_features, n_out))
    grid = 10.0 ** np.arange(-4.0, 1.01, 0.5)
    energies = np.linspace(0.0, 1.0, n_out)

    def sample(n: int, seed: int, sigma: float):
        r = np.random.default_rng(seed)
        xs, ys = [], []
        for _ in range(n):
            x = r.normal(size=(int(r.integers(1, 4)), n_features))
            xh = x / np.linalg.norm(x, axis=1, keepdims=True)
            xs.append(x)
            ys.append(xh @ beta + sigma * r.normal(size=(len(x), n_out)))
        return xs, ys

    xs, ys = sample(50, 200, noise)
    base = LDOSKernelRidge(zeta=1, center=False)
    result = select_hyperparameters(base, {"lam": list(grid)}, xs, ys, energies, folds=5, seed=0)
    best = result.best_params["lam"]
    assert abs(math.log10(best / noise**2)) <= 0.5 + 1e-9
    # ... and it is (within a step) the lam that is best on a large noise-free test set.
    xt, yt = sample(1500, 300, 0.0)
    test_losses = [
        _flat_loss(base.clone(lam=lam).fit(xs, ys).predict_atoms(xt), yt, energies) for lam in grid
    ]
    assert abs(math.log10(best / grid[int(np.argmin(test_losses))])) <= 0.5 + 1e-9
    # The table lists every grid point in order; the best row has the lowest mean.
    assert [row["lam"] for row in result.table] == list(grid)
    assert result.best_loss == min(row["loss_mean"] for row in result.table)
    assert result.model is not None and result.model.lam == best


def _flat_loss(pred: list[np.ndarray], ref: list[np.ndarray], energies: np.ndarray) -> float:
    return normalized_loss(np.concatenate(pred), np.concatenate(ref), energies)


def test_grid_search_over_kernel_settings_and_scoring_modes() -> None:
    xs, ys, labs, dos = TRAIN
    result = select_hyperparameters(
        SplitDOSKernelRidge(n_sparse=16),
        {"lam": [1e-5, 1e-1], "zeta": [1, 4]},
        xs,
        dos,
        E,
        species=labs,
        folds=4,
        seed=1,
    )
    assert result.score_on == "structures" and len(result.table) == 4
    assert {(r["lam"], r["zeta"]) for r in result.table} == {
        (1e-5, 1),
        (1e-5, 4),
        (1e-1, 1),
        (1e-1, 4),
    }
    assert all(len(r["fold_losses"]) == 4 for r in result.table)
    assert result.best_params == {"lam": 1e-5, "zeta": 4}  # the noise-free, flexible corner
    assert result.model.get_params()["n_sparse"] == 16 and result.model.zeta == 4
    # A one-setting CV is the same number as that row of the grid.
    row = cross_validate(
        SplitDOSKernelRidge(n_sparse=16, lam=1e-1, zeta=1),
        xs,
        dos,
        E,
        species=labs,
        folds=4,
        seed=1,
    )
    assert row["loss_mean"] == pytest.approx(
        next(r["loss_mean"] for r in result.table if r["lam"] == 1e-1 and r["zeta"] == 1), rel=1e-12
    )
    with pytest.raises(ValueError, match="score_on"):
        cross_validate(SplitDOSKernelRidge(), xs, dos, E, species=labs, score_on="atoms")
    structures = cross_validate(LDOSKernelRidge(), xs, ys, E, species=labs, score_on="structures")
    assert 0 < structures["loss_mean"] < 0.05


# ---------------------------------------------------------------- SOAP descriptors

SOAP_ARGS = {"r_cut": 4.0, "n_max": 4, "l_max": 4, "sigma": 0.5}


def _rattled(symbols_cell: Atoms, seed: int) -> Atoms:
    atoms = symbols_cell.copy()
    atoms.rattle(stdev=0.08, seed=seed)
    return atoms


def test_soap_shapes_and_identical_environments() -> None:
    from esrepro.papers.ldos.descriptors import soap_descriptors, soap_n_features

    si2 = bulk("Si", "diamond", a=5.43)
    si8 = _rattled(bulk("Si", "diamond", a=5.43, cubic=True), seed=1)
    sic = _rattled(bulk("SiC", "zincblende", a=4.36, cubic=True), seed=2)
    d = soap_descriptors([si2, si8, sic], ["Si", "C"], **SOAP_ARGS)
    n_f = soap_n_features(["Si", "C"], **SOAP_ARGS)
    assert [a.shape for a in d] == [(2, n_f), (8, n_f), (8, n_f)]
    assert all(a.dtype == np.float64 and np.all(np.isfinite(a)) for a in d)
    # The two diamond atoms are related by inversion: identical environments.
    np.testing.assert_allclose(d[0][0], d[0][1], rtol=0, atol=1e-10 * np.abs(d[0]).max())
    # Rattled atoms are not.
    assert np.abs(d[1][0] - d[1][1]).max() > 1e-3 * np.abs(d[1]).max()


def test_soap_is_invariant_to_permutation_rotation_translation() -> None:
    from esrepro.papers.ldos.descriptors import soap_descriptors

    sic = _rattled(bulk("SiC", "zincblende", a=4.36, cubic=True), seed=3)
    perm = np.random.default_rng(0).permutation(len(sic))
    moved = sic.copy()
    moved.rotate(37.0, (1.0, 2.0, -0.5), rotate_cell=True)
    moved.rotate(-71.0, "z", rotate_cell=True)
    moved.translate((0.3, -1.2, 2.1))
    moved.wrap()
    cluster = sic.copy()
    cluster.pbc = False
    cluster_moved = cluster.copy()
    cluster_moved.rotate(123.0, (0.2, -1.0, 0.7), center="COM")
    cluster_moved.translate((5.0, 1.0, -3.0))

    ref, permuted, rotated = soap_descriptors([sic, sic[perm], moved], ["Si", "C"], **SOAP_ARGS)
    tol = 1e-8 * np.abs(ref).max()
    np.testing.assert_allclose(permuted, ref[perm], rtol=0, atol=tol)
    np.testing.assert_allclose(rotated, ref, rtol=0, atol=tol)
    c_ref, c_moved = soap_descriptors(
        [cluster, cluster_moved], ["Si", "C"], periodic=False, **SOAP_ARGS
    )
    np.testing.assert_allclose(c_moved, c_ref, rtol=0, atol=1e-8 * np.abs(c_ref).max())


def test_soap_rejects_unknown_species() -> None:
    from esrepro.papers.ldos.descriptors import soap_descriptors

    with pytest.raises(ValueError, match=r"species C not in"):
        soap_descriptors(
            [bulk("Si", "diamond", a=5.43), bulk("SiC", "zincblende", a=4.36)], ["Si"], **SOAP_ARGS
        )
