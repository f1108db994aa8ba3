"""Kernel ridge regression of atom-projected LDOS on atomic environments (LDOS paper, Sec. II.3).

:class:`LDOSKernelRidge` fits the DFT LDOS of every training atom (eq. 12) and
:class:`SplitDOSKernelRidge` only structural DOS (eq. 11); both predict a structure's DOS as the
sum of its atoms' LDOS. The kernel, regularization, baseline, exact and Nyström solvers and the
cross-validation are derived in docs/notes/ldos-kernel-ridge.md.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import numpy as np
import scipy.linalg
import scipy.sparse

from esrepro.dos_properties import normalized_loss

__all__ = [
    "CVResult",
    "LDOSKernelRidge",
    "SplitDOSKernelRidge",
    "cross_validate",
    "farthest_point_sampling",
    "kernel_matrix",
    "normalize_descriptors",
    "select_hyperparameters",
    "structure_folds",
]

KernelName = Literal["polynomial", "rbf"]
SparseMethod = Literal["fps", "random"]

#: Label given to every atom when no species are passed (a single-species model).
DEFAULT_SPECIES = "X"
# Relative eigenvalue cutoff of K_MM in the Nyström feature map: directions with smaller
# eigenvalues carry no information a ridge with any sensible lam could use, and keeping them
# would amplify round-off by 1/sqrt(eigenvalue).
_NYSTROM_RCOND = 1e-10
# Squared distance (between unit vectors) below which farthest-point sampling treats the
# remaining environments as duplicates of chosen ones and stops.
_FPS_DUPLICATE_D2 = 1e-12


# --------------------------------------------------------------------------- kernels


def normalize_descriptors(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit Euclidean norm (float64). Raises on a zero row."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"descriptors must be 2-D (n_atoms, n_features), got shape {a.shape}")
    norms = np.linalg.norm(a, axis=1)
    if np.any(norms == 0):
        raise ValueError(
            f"{int(np.sum(norms == 0))} descriptor rows are zero and cannot be normalized"
        )
    return a / norms[:, None]


def kernel_matrix(
    a: np.ndarray,
    b: np.ndarray,
    *,
    kernel: KernelName = "polynomial",
    zeta: int = 2,
    gamma: float = 1.0,
    normalized: bool = False,
) -> np.ndarray:
    """Kernel ``k(a_i, b_j)`` between two sets of descriptors, shape ``(len(a), len(b))``.

    ``polynomial``: ``(â·b̂)^zeta``; ``rbf``: ``exp(-gamma |â - b̂|²)``, on unit-normalized rows
    (``normalized=True`` skips the normalization for inputs already normalized).
    """
    _check_kernel(kernel, zeta, gamma)
    if not normalized:
        a, b = normalize_descriptors(a), normalize_descriptors(b)
    dot = a @ b.T
    if kernel == "polynomial":
        return dot**zeta
    # |â - b̂|² = 2 - 2 â·b̂ for unit vectors; clip the round-off below zero.
    return np.exp(-gamma * np.maximum(2.0 - 2.0 * dot, 0.0))


def _check_kernel(kernel: str, zeta: int, gamma: float) -> None:
    if kernel == "polynomial":
        if isinstance(zeta, bool) or int(zeta) != zeta or zeta < 1:
            raise ValueError(
                f"zeta must be a positive integer (non-integer powers of the possibly negative "
                f"SOAP dot product are not a valid kernel), got {zeta!r}"
            )
    elif kernel == "rbf":
        if not (math.isfinite(gamma) and gamma > 0):
            raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")
    else:
        raise ValueError(f"kernel must be 'polynomial' or 'rbf', got {kernel!r}")


def farthest_point_sampling(x: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of up to ``n`` rows of ``x`` chosen by farthest-point sampling.

    Starts from a row drawn with ``numpy.random.default_rng(seed)`` and repeatedly adds the row
    farthest (Euclidean) from those chosen. Stops early, returning fewer than ``n`` indices, when
    every remaining row duplicates a chosen one. On unit-normalized descriptors the Euclidean
    distance is a monotonic function of the cosine, hence of both kernels. Costs O(len(x) · n ·
    n_features) time and O(len(x)) extra memory.
    """
    x = np.asarray(x, dtype=np.float64)
    n_rows = x.shape[0]
    if n < 1 or n_rows == 0:
        raise ValueError(f"need n >= 1 and a non-empty x, got n={n}, {n_rows} rows")
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(n_rows))]
    sq = np.einsum("ij,ij->i", x, x)
    d2 = np.maximum(sq + sq[chosen[0]] - 2.0 * (x @ x[chosen[0]]), 0.0)
    while len(chosen) < min(n, n_rows):
        i = int(np.argmax(d2))
        if d2[i] <= _FPS_DUPLICATE_D2:
            break
        chosen.append(i)
        d2 = np.minimum(d2, np.maximum(sq + sq[i] - 2.0 * (x @ x[i]), 0.0))
    return np.asarray(chosen, dtype=np.int64)


# --------------------------------------------------------------------------- data handling


@dataclass(frozen=True)
class _AtomData:
    """All atoms of a list of structures, flattened in structure order."""

    x: np.ndarray  # (N, F) unit-normalized descriptors
    labels: np.ndarray  # (N,) species labels (str)
    struct: np.ndarray  # (N,) index of each atom's structure
    n_atoms: np.ndarray  # (n_structures,)

    @property
    def n_structures(self) -> int:
        return int(self.n_atoms.shape[0])

    def incidence(self, rows: np.ndarray | None = None) -> scipy.sparse.csr_matrix:
        """Sparse (n_structures, len(rows)) 0/1 matrix summing atoms ``rows`` per structure."""
        rows = np.arange(self.x.shape[0]) if rows is None else rows
        return scipy.sparse.csr_matrix(
            (np.ones(rows.shape[0]), (self.struct[rows], np.arange(rows.shape[0]))),
            shape=(self.n_structures, rows.shape[0]),
        )


def _prepare(
    descriptors: Sequence[np.ndarray],
    species: Sequence[Sequence[Any]] | None,
    n_features: int | None = None,
) -> _AtomData:
    """Validate per-structure descriptors (and species labels) and flatten them."""
    if len(descriptors) == 0:
        raise ValueError("no structures given")
    if species is not None and len(species) != len(descriptors):
        raise ValueError(
            f"species has {len(species)} entries but descriptors has {len(descriptors)} structures"
        )
    blocks, labels, n_atoms = [], [], []
    for s, d in enumerate(descriptors):
        a = np.asarray(d, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] == 0:
            raise ValueError(
                f"structure {s}: descriptors must have shape (n_atoms >= 1, n_features), "
                f"got {a.shape}"
            )
        if n_features is None:
            n_features = a.shape[1]
        if a.shape[1] != n_features:
            raise ValueError(f"structure {s} has {a.shape[1]} features, expected {n_features}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"structure {s}: descriptors contain nan or inf")
        if species is None:
            lab = [DEFAULT_SPECIES] * a.shape[0]
        else:
            lab = [str(v) for v in species[s]]
            if len(lab) != a.shape[0]:
                raise ValueError(
                    f"structure {s} has {a.shape[0]} descriptor rows but {len(lab)} species labels"
                )
        blocks.append(a)
        labels.extend(lab)
        n_atoms.append(a.shape[0])
    n = np.asarray(n_atoms, dtype=np.int64)
    return _AtomData(
        x=normalize_descriptors(np.concatenate(blocks, axis=0)),
        labels=np.asarray(labels, dtype=str),
        struct=np.repeat(np.arange(n.shape[0]), n),
        n_atoms=n,
    )


def _select(items: Sequence[Any] | None, idx: np.ndarray) -> list[Any] | None:
    return None if items is None else [items[int(i)] for i in idx]


# --------------------------------------------------------------------------- linear algebra


def _solve_spd(g: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
    """Solve ``(g + lam I) v = b`` for symmetric positive semi-definite ``g`` and ``lam > 0``.

    Cholesky (half the cost of LU and backward stable for SPD matrices). ``g + lam I`` is
    positive definite in exact arithmetic; if round-off still defeats the factorization (lam far
    below the round-off of a large ``g``), a jitter growing from 1e-12 of the mean diagonal is
    added and the solve retried.
    """
    a = g + lam * np.eye(g.shape[0])
    scale = max(float(np.trace(g)) / max(g.shape[0], 1), np.finfo(float).tiny)
    jitter = 0.0
    for _ in range(7):
        try:
            factor = scipy.linalg.cho_factor(
                a + jitter * np.eye(g.shape[0]) if jitter else a, lower=True, check_finite=False
            )
            return scipy.linalg.cho_solve(factor, b, check_finite=False)
        except np.linalg.LinAlgError:
            jitter = 1e-12 * scale if jitter == 0.0 else jitter * 100.0
    raise np.linalg.LinAlgError("kernel ridge system is not positive definite even with jitter")


@dataclass
class _Problem:
    """One SPD ridge system ``(g + lam I) v = b`` and how its solution maps to weights."""

    g: np.ndarray
    b: np.ndarray
    to_weights: Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass
class _Design:
    """Everything of a fit that does not depend on ``lam`` (reused across a λ grid in CV)."""

    problems: list[_Problem]
    refs: dict[str, np.ndarray]  # species -> (M_s, F) unit-normalized reference environments
    baseline: dict[str, np.ndarray]  # species -> (n_grid,)
    n_grid: int
    n_features: int


# --------------------------------------------------------------------------- estimators


class _AtomicKernelRidge:
    """Shared machinery: kernel settings, reference selection, prediction."""

    #: What cross-validation scores by default: held-out atom LDOS or structure DOS.
    default_score_on: str = "atoms"

    def __init__(
        self,
        *,
        lam: float = 1e-3,
        zeta: int = 2,
        kernel: KernelName = "polynomial",
        gamma: float = 1.0,
        n_sparse: int | None = None,
        sparse_method: SparseMethod = "fps",
        seed: int = 0,
        center: bool = True,
        chunk_size: int = 4096,
    ) -> None:
        """Store (and validate) the hyper-parameters; see the module docstring for their meaning.

        ``lam`` (> 0): ridge regularization, λ² of eq. 14. ``zeta``: polynomial-kernel exponent
        (positive integer). ``kernel``: ``"polynomial"`` or ``"rbf"`` (with ``gamma`` > 0).
        ``n_sparse``: ``None`` for the exact fit, else the number M of reference environments
        per species (Nyström); ``sparse_method`` (``"fps"`` or ``"random"``) and ``seed`` pick
        them. ``center``: subtract a per-species baseline. ``chunk_size``: atoms per block when
        streaming kernel rows (bounds memory, not results).
        """
        if not (math.isfinite(lam) and lam > 0):
            raise ValueError(f"lam must be a finite number > 0, got {lam!r}")
        _check_kernel(kernel, zeta, gamma)
        if n_sparse is not None and (isinstance(n_sparse, bool) or int(n_sparse) < 1):
            raise ValueError(f"n_sparse must be None or a positive integer, got {n_sparse!r}")
        if sparse_method not in ("fps", "random"):
            raise ValueError(f"sparse_method must be 'fps' or 'random', got {sparse_method!r}")
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
        self.lam = float(lam)
        self.zeta = int(zeta) if kernel == "polynomial" else zeta
        self.kernel: KernelName = kernel
        self.gamma = float(gamma)
        self.n_sparse = None if n_sparse is None else int(n_sparse)
        self.sparse_method: SparseMethod = sparse_method
        self.seed = int(seed)
        self.center = bool(center)
        self.chunk_size = int(chunk_size)

    # ----------------------------------------------------------------- parameters

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments of this model."""
        return {
            "lam": self.lam,
            "zeta": self.zeta,
            "kernel": self.kernel,
            "gamma": self.gamma,
            "n_sparse": self.n_sparse,
            "sparse_method": self.sparse_method,
            "seed": self.seed,
            "center": self.center,
            "chunk_size": self.chunk_size,
        }

    def clone(self, **overrides: Any) -> Self:
        """A new, unfitted model with these parameters, some replaced by ``overrides``."""
        unknown = set(overrides) - set(self.get_params())
        if unknown:
            raise ValueError(f"unknown hyper-parameters {sorted(unknown)}")
        return type(self)(**{**self.get_params(), **overrides})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ----------------------------------------------------------------- kernels

    def _k(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return kernel_matrix(
            a, b, kernel=self.kernel, zeta=self.zeta, gamma=self.gamma, normalized=True
        )

    def _chunks(self, n: int) -> Iterator[slice]:
        for start in range(0, n, self.chunk_size):
            yield slice(start, min(start + self.chunk_size, n))

    def _nystroem(self, x: np.ndarray, species: str) -> tuple[np.ndarray, np.ndarray]:
        """Reference environments ``x[idx]`` of one species and the map ``T = U Λ^{-1/2}``.

        ``Φ = k(x, refs) @ T`` are the Nyström features: ``Φ Φᵀ`` approximates the kernel
        (exactly on the references), and weights on the references are ``T @ v``.
        """
        assert self.n_sparse is not None
        n = x.shape[0]
        # One stream per (seed, species name), so adding a species does not reshuffle the others.
        entropy = [self.seed, zlib.crc32(species.encode())]
        seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
        if self.n_sparse >= n:
            idx = np.arange(n)
        elif self.sparse_method == "fps":
            idx = farthest_point_sampling(x, self.n_sparse, seed=seed)
        else:
            idx = np.sort(np.random.default_rng(seed).choice(n, size=self.n_sparse, replace=False))
        refs = x[idx]
        evals, evecs = np.linalg.eigh(self._k(refs, refs))
        keep = evals > _NYSTROM_RCOND * max(float(evals[-1]), np.finfo(float).tiny)
        return refs, evecs[:, keep] / np.sqrt(evals[keep])

    # ----------------------------------------------------------------- fitting

    def _build_design(self, data: _AtomData, targets: np.ndarray) -> _Design:
        raise NotImplementedError

    def _targets(self, data: _AtomData, targets: Any) -> np.ndarray:
        raise NotImplementedError

    def _fit_data(self, data: _AtomData, targets: np.ndarray) -> Self:
        design = self._build_design(data, targets)
        self._set_fitted(design, _solve_design(design, self.lam))
        return self

    def _set_fitted(self, design: _Design, weights: dict[str, np.ndarray]) -> None:
        self.refs_ = design.refs
        self.weights_ = weights
        self.baseline_ = design.baseline
        self.species_ = tuple(sorted(design.refs))
        self.n_grid_ = design.n_grid
        self.n_features_ = design.n_features

    # ----------------------------------------------------------------- prediction

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    def _kernels_to_refs(
        self, data: _AtomData, refs: Mapping[str, np.ndarray]
    ) -> list[tuple[str, np.ndarray, list[np.ndarray]]]:
        """Per species: (atom rows, kernel between those atoms and the species' references)."""
        out = []
        for s in map(str, np.unique(data.labels)):
            if s not in refs:
                raise ValueError(
                    f"species {s!r} was not in the training data (trained on {sorted(refs)})"
                )
            rows = np.flatnonzero(data.labels == s)
            out.append(
                (s, rows, [self._k(data.x[rows[c]], refs[s]) for c in self._chunks(rows.size)])
            )
        return out

    def _predict_flat(
        self,
        data: _AtomData,
        weights: Mapping[str, np.ndarray],
        baseline: Mapping[str, np.ndarray],
        n_grid: int,
        kernels: list[tuple[str, np.ndarray, list[np.ndarray]]] | None = None,
    ) -> np.ndarray:
        """Predicted LDOS of every atom of ``data``, shape (N, n_grid)."""
        if kernels is None:
            kernels = self._kernels_to_refs(data, self.refs_)
        out = np.empty((data.x.shape[0], n_grid))
        for s, rows, blocks in kernels:
            pred = np.concatenate([k @ weights[s] for k in blocks], axis=0)
            out[rows] = baseline[s][None, :] + pred
        return out

    def _data_for_predict(self, descriptors, species) -> _AtomData:
        self._check_fitted()
        if species is None and self.species_ != (DEFAULT_SPECIES,):
            raise ValueError(
                f"the model was trained with species {list(self.species_)}; pass species"
            )
        return _prepare(descriptors, species, self.n_features_)

    def predict_atoms(
        self, descriptors: Sequence[np.ndarray], species: Sequence[Sequence[Any]] | None = None
    ) -> list[np.ndarray]:
        """Predicted LDOS, one ``(n_atoms, n_grid)`` array per structure (rows in atom order)."""
        data = self._data_for_predict(descriptors, species)
        flat = self._predict_flat(data, self.weights_, self.baseline_, self.n_grid_)
        return np.split(flat, np.cumsum(data.n_atoms)[:-1], axis=0)

    def predict_structures(
        self, descriptors: Sequence[np.ndarray], species: Sequence[Sequence[Any]] | None = None
    ) -> np.ndarray:
        """Predicted structural DOS, ``(n_structures, n_grid)``: the sum of the predicted LDOS."""
        return np.stack([p.sum(axis=0) for p in self.predict_atoms(descriptors, species)])


def _solve_design(design: _Design, lam: float) -> dict[str, np.ndarray]:
    weights: dict[str, np.ndarray] = {}
    for p in design.problems:
        weights.update(p.to_weights(_solve_spd(p.g, p.b, lam)))
    return weights


class LDOSKernelRidge(_AtomicKernelRidge):
    """LDOS-on-LDOS kernel ridge (paper eq. 12-14): atom LDOS targets, one model per species.

    >>> model = LDOSKernelRidge(lam=1e-3, zeta=2).fit(descriptors, ldos, species)  # doctest: +SKIP
    >>> model.predict_atoms(new_descriptors, new_species)  # list of (n_atoms, n_grid) arrays
    """

    default_score_on = "atoms"

    def fit(
        self,
        descriptors: Sequence[np.ndarray],
        ldos: Sequence[np.ndarray],
        species: Sequence[Sequence[Any]] | None = None,
    ) -> Self:
        """Fit to per-structure descriptors ``(n_atoms, F)`` and atom LDOS ``(n_atoms, n_grid)``.

        ``species``: per structure, one label per atom (e.g. chemical symbols); ``None`` treats
        all atoms as one species. Every energy grid point is a separate output sharing one
        kernel factorization.
        """
        data = _prepare(descriptors, species)
        return self._fit_data(data, self._targets(data, ldos))

    def _targets(self, data: _AtomData, ldos: Sequence[np.ndarray]) -> np.ndarray:
        if len(ldos) != data.n_structures:
            raise ValueError(f"ldos has {len(ldos)} structures, descriptors {data.n_structures}")
        y = [np.asarray(v, dtype=np.float64) for v in ldos]
        n_grid = y[0].shape[-1] if y[0].ndim else 0
        for s, (v, n) in enumerate(zip(y, data.n_atoms, strict=True)):
            if v.ndim != 2 or v.shape != (n, n_grid) or n_grid < 1:
                raise ValueError(
                    f"structure {s}: ldos must have shape ({n}, n_grid={n_grid}), got {v.shape}"
                )
        flat = np.concatenate(y, axis=0)
        if not np.all(np.isfinite(flat)):
            raise ValueError("ldos contains nan or inf")
        return flat

    def _build_design(self, data: _AtomData, y: np.ndarray) -> _Design:
        problems, refs, baseline = [], {}, {}
        for s in sorted(map(str, np.unique(data.labels))):
            rows = np.flatnonzero(data.labels == s)
            x, ys = data.x[rows], y[rows]
            baseline[s] = ys.mean(axis=0) if self.center else np.zeros(y.shape[1])
            r = ys - baseline[s]
            if self.n_sparse is None:
                refs[s] = x
                problems.append(_Problem(self._k(x, x), r, lambda v, s=s: {s: v}))
                continue
            refs[s], t = self._nystroem(x, s)
            g = np.zeros((t.shape[1], t.shape[1]))
            b = np.zeros((t.shape[1], y.shape[1]))
            for c in self._chunks(rows.size):
                phi = self._k(x[c], refs[s]) @ t
                g += phi.T @ phi
                b += phi.T @ r[c]
            problems.append(_Problem(g, b, lambda v, s=s, t=t: {s: t @ v}))
        return _Design(problems, refs, baseline, y.shape[1], data.x.shape[1])


class SplitDOSKernelRidge(_AtomicKernelRidge):
    """DOS-split kernel ridge (paper eq. 11, Ben Mahmoud et al. 2020): structure DOS targets.

    The atom model ``g(x)`` is fitted so that the sum over each training structure's atoms
    matches its DOS; :meth:`predict_atoms` then gives the split (machine-learned) LDOS.
    Species share one ridge problem with a species-blocked kernel.
    """

    default_score_on = "structures"

    def fit(
        self,
        descriptors: Sequence[np.ndarray],
        dos: np.ndarray | Sequence[np.ndarray],
        species: Sequence[Sequence[Any]] | None = None,
    ) -> Self:
        """Fit to per-structure descriptors ``(n_atoms, F)`` and structure DOS
        ``(n_structures, n_grid)``."""
        data = _prepare(descriptors, species)
        return self._fit_data(data, self._targets(data, dos))

    def _targets(self, data: _AtomData, dos: Any) -> np.ndarray:
        d = np.asarray(dos, dtype=np.float64)
        if d.ndim != 2 or d.shape[0] != data.n_structures:
            raise ValueError(
                f"dos must have shape (n_structures={data.n_structures}, n_grid), got {d.shape}"
            )
        if not np.all(np.isfinite(d)):
            raise ValueError("dos contains nan or inf")
        return d

    def _build_design(self, data: _AtomData, d: np.ndarray) -> _Design:
        species = sorted(map(str, np.unique(data.labels)))
        rows_of = {s: np.flatnonzero(data.labels == s) for s in species}
        # Baseline: per-species contributions b_s from D_S ≈ Σ_s n_s(S) b_s (least squares).
        if self.center:
            counts = np.stack(
                [
                    np.bincount(data.struct[rows_of[s]], minlength=data.n_structures)
                    for s in species
                ],
                axis=1,
            ).astype(np.float64)
            b_s = np.linalg.lstsq(counts, d, rcond=None)[0]
            residual = d - counts @ b_s
            baseline = {s: b_s[k] for k, s in enumerate(species)}
        else:
            residual = d
            baseline = {s: np.zeros(d.shape[1]) for s in species}
        refs = {s: data.x[rows_of[s]] for s in species}

        if self.n_sparse is None:
            # Exact: G = S K Sᵀ (structure-summed kernel), streamed in chunks of atom rows.
            g = np.zeros((data.n_structures, data.n_structures))
            for s in species:
                rows, x = rows_of[s], refs[s]
                inc = data.incidence(rows)  # (n_structures, N_s)
                for c in self._chunks(rows.size):
                    # (chunk, n_structures): each chunk atom's kernel summed per structure.
                    ks = (inc @ self._k(x, x[c])).T
                    g += data.incidence(rows[c]) @ ks
            g = 0.5 * (g + g.T)  # exact symmetry despite chunked summation order

            def to_weights(c: np.ndarray) -> dict[str, np.ndarray]:
                # Representer: g(x) = Σ_S c_S Σ_{j∈S} k(x, x_j), i.e. weight c_S on each atom of S.
                return {s: c[data.struct[rows_of[s]]] for s in species}

            return _Design(
                [_Problem(g, residual, to_weights)], refs, baseline, d.shape[1], data.x.shape[1]
            )

        # Nyström: A = [S_s Φ_s]_s (structure-summed features), then (AᵀA + lam I) v = Aᵀ D.
        blocks, maps = [], {}
        for s in species:
            rows, x = rows_of[s], refs[s]
            refs[s], t = self._nystroem(x, s)
            a_s = np.zeros((data.n_structures, t.shape[1]))
            for c in self._chunks(rows.size):
                a_s += data.incidence(rows[c]) @ (self._k(x[c], refs[s]) @ t)
            blocks.append(a_s)
            maps[s] = t
        a = np.concatenate(blocks, axis=1)
        edges = np.cumsum([0] + [maps[s].shape[1] for s in species])

        def to_weights_sparse(v: np.ndarray) -> dict[str, np.ndarray]:
            return {s: maps[s] @ v[edges[k] : edges[k + 1]] for k, s in enumerate(species)}

        return _Design(
            [_Problem(a.T @ a, a.T @ residual, to_weights_sparse)],
            refs,
            baseline,
            d.shape[1],
            data.x.shape[1],
        )


# --------------------------------------------------------------------------- cross-validation


def structure_folds(n_structures: int, n_folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Test-structure indices of each fold (sorted), from a seeded permutation split evenly.

    Every structure is in exactly one test fold; fold sizes differ by at most one.
    """
    if n_folds < 2 or n_folds > n_structures:
        raise ValueError(f"need 2 <= n_folds <= n_structures={n_structures}, got {n_folds}")
    perm = np.random.default_rng(seed).permutation(n_structures)
    return [np.sort(f) for f in np.array_split(perm, n_folds)]


@dataclass
class CVResult:
    """Outcome of :func:`select_hyperparameters`.

    ``table``: one row per grid setting, in grid order: the setting's parameters plus
    ``loss_mean`` / ``loss_std`` (over folds) and ``fold_losses`` (L/σ of each fold).
    ``folds``: the test-structure indices of each fold. ``model``: a model with the best
    parameters refitted on all the data (``None`` with ``refit=False``).
    """

    best_params: dict[str, Any]
    best_loss: float
    table: list[dict[str, Any]]
    folds: list[np.ndarray]
    score_on: str
    model: _AtomicKernelRidge | None = field(default=None, repr=False)


def _grid_settings(grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[dict]:
    if isinstance(grid, Mapping):
        keys = list(grid)
        return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*grid.values())]
    return [dict(g) for g in grid]


def select_hyperparameters(
    model: _AtomicKernelRidge,
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    descriptors: Sequence[np.ndarray],
    targets: Any,
    energies: np.ndarray,
    *,
    species: Sequence[Sequence[Any]] | None = None,
    folds: int = 5,
    seed: int = 0,
    score_on: str | None = None,
    refit: bool = True,
) -> CVResult:
    """Grid search by k-fold cross-validation over structures; lowest mean L/σ wins.

    ``model``: the estimator whose parameters not in ``grid`` are kept. ``grid``: a mapping of
    parameter -> values (Cartesian product) or an explicit list of settings. ``targets``: atom
    LDOS per structure (:class:`LDOSKernelRidge`) or the ``(n_structures, n_grid)`` DOS
    (:class:`SplitDOSKernelRidge`). ``energies``: the uniform grid (eV) of the targets, used by
    :func:`~esrepro.dos_properties.normalized_loss`. ``score_on``: ``"atoms"`` (held-out atom
    LDOS; LDOS-on-LDOS only) or ``"structures"`` (held-out structure DOS = sum of LDOS);
    default: the model's :attr:`default_score_on`. Each fold's loss is L/σ over its held-out
    samples; a setting's score is the mean over folds (ties: the first setting in the grid).

    Settings that differ only in ``lam`` share one kernel design per fold (the kernels and
    normal equations do not depend on ``lam``), so a λ grid costs little beyond one fit.
    """
    settings = _grid_settings(grid)
    if not settings:
        raise ValueError("empty hyper-parameter grid")
    score_on = score_on or model.default_score_on
    if score_on not in ("atoms", "structures"):
        raise ValueError(f"score_on must be 'atoms' or 'structures', got {score_on!r}")
    if score_on == "atoms" and isinstance(model, SplitDOSKernelRidge):
        raise ValueError(
            "a DOS-split model has no atom targets to score: use score_on='structures'"
        )
    n_structures = len(descriptors)
    fold_tests = structure_folds(n_structures, folds, seed)
    models = [model.clone(**s) for s in settings]
    losses = np.full((len(settings), len(fold_tests)), np.nan)

    # Group settings by everything but lam: one design per (group, fold).
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(models):
        key = tuple(sorted((k, v) for k, v in m.get_params().items() if k != "lam"))
        groups.setdefault(key, []).append(i)

    for f, test in enumerate(fold_tests):
        train = np.setdiff1d(np.arange(n_structures), test)
        train_data = _prepare(_select(descriptors, train), _select(species, train))
        test_data = _prepare(
            _select(descriptors, test), _select(species, test), train_data.x.shape[1]
        )
        train_y = model._targets(train_data, _select_targets(targets, train))
        if species is not None and not {x for i in test for x in species[i]} <= {
            x for i in train for x in species[i]
        }:
            # A fold whose training part lacks a species of its test part cannot be scored (no
            # model for that species); small sets of compounds hit this. It is left out.
            continue
        ref = _reference(model, test_data, _select_targets(targets, test), score_on)
        for members in groups.values():
            proto = models[members[0]]
            design = proto._build_design(train_data, train_y)
            kernels = proto._kernels_to_refs(test_data, design.refs)
            for i in members:
                weights = _solve_design(design, models[i].lam)
                pred = proto._predict_flat(
                    test_data, weights, design.baseline, design.n_grid, kernels
                )
                if score_on == "structures":
                    pred = test_data.incidence() @ pred
                losses[i, f] = normalized_loss(pred, ref, energies)

    scored = ~np.isnan(losses[0])
    if not scored.any():
        raise ValueError(
            "no cross-validation fold has every test species in its training part: "
            "too few structures per species for CV"
        )
    losses = losses[:, scored]
    table = [
        {
            **settings[i],
            "loss_mean": float(losses[i].mean()),
            "loss_std": float(losses[i].std()),
            "fold_losses": tuple(float(v) for v in losses[i]),
        }
        for i in range(len(settings))
    ]
    best = int(np.argmin(losses.mean(axis=1)))
    fitted = None
    if refit:
        data = _prepare(descriptors, species)
        fitted = models[best]._fit_data(data, models[best]._targets(data, targets))
    return CVResult(
        best_params=settings[best],
        best_loss=float(losses[best].mean()),
        table=table,
        folds=fold_tests,
        score_on=score_on,
        model=fitted,
    )


def _select_targets(targets: Any, idx: np.ndarray) -> Any:
    if isinstance(targets, np.ndarray):
        return targets[idx]
    return [targets[int(i)] for i in idx]


def _reference(
    model: _AtomicKernelRidge, data: _AtomData, targets: Any, score_on: str
) -> np.ndarray:
    y = model._targets(data, targets)
    if isinstance(model, LDOSKernelRidge) and score_on == "structures":
        return data.incidence() @ y  # structure DOS = sum of the reference atom LDOS
    return y


def cross_validate(
    model: _AtomicKernelRidge,
    descriptors: Sequence[np.ndarray],
    targets: Any,
    energies: np.ndarray,
    *,
    species: Sequence[Sequence[Any]] | None = None,
    folds: int = 5,
    seed: int = 0,
    score_on: str | None = None,
) -> dict[str, Any]:
    """Cross-validated L/σ of ``model`` as it is: ``loss_mean``, ``loss_std``, ``fold_losses``.

    Same folds and scoring as :func:`select_hyperparameters` (which see) with a one-point grid.
    """
    result = select_hyperparameters(
        model,
        [{}],
        descriptors,
        targets,
        energies,
        species=species,
        folds=folds,
        seed=seed,
        score_on=score_on,
        refit=False,
    )
    return {**result.table[0], "folds": result.folds}
