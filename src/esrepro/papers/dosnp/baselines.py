"""Baselines of the DOSnp paper: a linear LDA->QSGW gap map and LRLIDG (Appendix C).

LRLIDG = linear regression (least squares) on linearly independent descriptors generated
(LIDG, H. Fujii, https://github.com/Hitoshi-FUJII/LIDG) from primitive descriptors and all
their second-order products.

Primitive descriptors, per structure (computed offline from the structure and the LDA gap):

* LDA band gap (eV) and volume per atom (Å^3);
* for each element property below, ``mean``, ``max`` and ``min`` over the atoms of the cell
  (so the descriptors are independent of atom order and of the cell multiple, like DOSnp):
  atomic number Z, periodic-table group, atomic radius (Å), atomic mass (amu), Pauling
  electronegativity, first ionization energy (eV), all from pymatgen's ``Element``;
* formation energy per atom, only when supplied to :meth:`LRLIDG.fit` / :meth:`LRLIDG.predict`.
  The paper takes it from the Materials Project API, which this offline pipeline cannot reach,
  so by default the column is omitted.

Missing element data: the atomic radius falls back to pymatgen's calculated radius, then the
van der Waals radius; anything still missing (e.g. the Pauling electronegativity of He, Ne, Ar)
is NaN and is skipped by the per-structure statistics; a statistic that is NaN for a whole
structure is imputed with the training-set mean of that descriptor (stored at fit time).

LID step: standardized descriptors (zero mean, unit variance over the training set; constant
columns dropped as LIDG's ``gen_dp`` does) go through a rank-revealing QR factorisation with
column pivoting; columns whose pivot ``|R_kk|`` falls below ``rank_tol * |R_00|`` are linear
combinations of the kept ones and are removed. Least squares with an intercept follows.

Descriptor cap: with ~230 candidate products, a training set of a few hundred materials would be
nearly interpolated, so at most ``max_descriptors_per_sample`` x n_train columns are kept (the
first in pivot order). The fraction is chosen per fit by inner k-fold cross-validation on the
training rows alone (:func:`choose_descriptor_cap`): the baseline gets the same care as DOSnp,
whose recipe was chosen by CV too.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from esrepro.splits import kfold_labels

ELEMENT_PROPERTIES: tuple[str, ...] = (
    "Z",
    "group",
    "atomic_radius",
    "atomic_mass",
    "electronegativity",
    "ionization_energy",
)
STATISTICS: tuple[str, ...] = ("mean", "max", "min")


# --------------------------------------------------------------------------- linear baseline


@dataclass(frozen=True)
class LinearGapModel:
    """``E_g^QSGW ≈ a · E_g^LDA + b`` (eV)."""

    a: float
    b: float

    def predict(self, lda_gap: Sequence[float] | np.ndarray) -> np.ndarray:
        """Predicted QSGW gaps for the given LDA gaps."""
        return self.a * np.asarray(lda_gap, dtype=np.float64) + self.b


def fit_linear(
    lda_gap: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
) -> LinearGapModel:
    """Least-squares fit of ``y ≈ a · lda_gap + b``."""
    x = np.asarray(lda_gap, dtype=np.float64).ravel()
    t = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != t.shape or x.size < 2:
        raise ValueError(f"need two or more paired values; got {x.size} and {t.size}")
    design = np.column_stack([x, np.ones_like(x)])
    (a, b), *_ = np.linalg.lstsq(design, t, rcond=None)
    return LinearGapModel(float(a), float(b))


# --------------------------------------------------------------------------- descriptors


def _finite_or_nan(value: object) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


@functools.cache
def element_properties(symbol: str) -> tuple[float, ...]:
    """The :data:`ELEMENT_PROPERTIES` of one element (NaN where pymatgen has no value)."""
    from pymatgen.core.periodic_table import Element

    el = Element(symbol)
    with warnings.catch_warnings():
        # pymatgen warns (and returns NaN) for e.g. the Pauling electronegativity of noble gases;
        # NaN is handled below, so the warning would only be noise in stage logs.
        warnings.simplefilter("ignore")
        radius = _finite_or_nan(el.atomic_radius)
        for fallback in ("atomic_radius_calculated", "van_der_waals_radius"):
            if math.isnan(radius):
                radius = _finite_or_nan(getattr(el, fallback, None))
        try:
            ionization = _finite_or_nan(el.ionization_energy)
        except (KeyError, IndexError, ValueError):
            ionization = math.nan
        return (
            float(el.Z),
            _finite_or_nan(el.group),
            radius,
            _finite_or_nan(el.atomic_mass),
            _finite_or_nan(el.X),
            ionization,
        )


def primitive_descriptor_names(with_formation_energy: bool = False) -> list[str]:
    """Column names of :func:`primitive_descriptors`, in order."""
    names = ["lda_gap", "volume_per_atom"]
    names += [f"{stat}_{prop}" for prop in ELEMENT_PROPERTIES for stat in STATISTICS]
    if with_formation_energy:
        names.append("formation_energy")
    return names


def primitive_descriptors(
    structures: Sequence[object],
    lda_gaps: Sequence[float] | np.ndarray,
    formation_energies: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Primitive descriptor matrix ``(n_structures, n_primitive)``; NaN marks missing values.

    ``structures`` are ``ase.Atoms``; ``lda_gaps`` in eV; ``formation_energies`` (eV/atom) only
    if available.
    """
    gaps = np.asarray(lda_gaps, dtype=np.float64).ravel()
    if len(structures) != gaps.size:
        raise ValueError(f"{len(structures)} structures but {gaps.size} LDA gaps")
    rows = []
    for atoms, gap in zip(structures, gaps, strict=True):
        n = len(atoms)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("structure with no atoms")
        props = np.array([element_properties(s) for s in atoms.get_chemical_symbols()])  # type: ignore[attr-defined]
        row = [gap, atoms.get_volume() / n]  # type: ignore[attr-defined]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column -> NaN, imputed later
            for j in range(props.shape[1]):
                col = props[:, j]
                row += [np.nanmean(col), np.nanmax(col), np.nanmin(col)]
        rows.append(row)
    x = np.asarray(rows, dtype=np.float64)
    if formation_energies is not None:
        fe = np.asarray(formation_energies, dtype=np.float64).ravel()
        if fe.size != gaps.size:
            raise ValueError(f"{fe.size} formation energies for {gaps.size} structures")
        x = np.column_stack([x, fe])
    return x


def second_order_expand(x: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Append all products ``x_i * x_j`` (``i <= j``, squares included) to the columns of ``x``."""
    cols = [x]
    out_names = list(names)
    for i, j in itertools.combinations_with_replacement(range(x.shape[1]), 2):
        cols.append((x[:, i] * x[:, j])[:, None])
        out_names.append(f"{names[i]}*{names[j]}")
    return np.hstack(cols), out_names


def linearly_independent_columns(
    x: np.ndarray, rank_tol: float = 1e-8, max_columns: int | None = None
) -> np.ndarray:
    """Indices (ascending) of a maximal set of linearly independent columns of ``x``.

    Rank-revealing QR with column pivoting on unit-norm columns: the pivot order puts the most
    independent columns first and ``|R_kk|`` measures how much of column k lies outside the span
    of the columns before it. Columns with ``|R_kk| <= rank_tol * |R_00|`` are dropped, and at
    most ``max_columns`` are kept (the first in pivot order).
    """
    if x.ndim != 2 or x.shape[1] == 0:
        return np.arange(0)
    norms = np.linalg.norm(x, axis=0)
    nonzero = np.flatnonzero(norms > 0)
    if nonzero.size == 0:
        return np.arange(0)
    xn = x[:, nonzero] / norms[nonzero]
    _, r, piv = scipy.linalg.qr(xn, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    rank = int(np.sum(diag > rank_tol * diag[0])) if diag.size else 0
    if max_columns is not None:
        rank = min(rank, max(0, int(max_columns)))
    return np.sort(nonzero[piv[:rank]])


class LRLIDG:
    """Linear regression on LIDG descriptors (paper Appendix C); targets in eV.

    Args:
        rank_tol: relative pivot tolerance of the linear-independence test (see
            :func:`linearly_independent_columns`).
        max_descriptors_per_sample: cap on descriptors per training sample (the first columns
            in pivot order are kept). Without it ~230 candidate products nearly interpolate a
            training set of a few hundred materials; the pipeline chooses it by inner CV
            (:func:`choose_descriptor_cap`).
    """

    def __init__(self, rank_tol: float = 1e-8, max_descriptors_per_sample: float = 0.2) -> None:
        self.rank_tol = float(rank_tol)
        self.max_descriptors_per_sample = float(max_descriptors_per_sample)
        self.primitive_names_: list[str] = []
        self.names_: list[str] = []
        self.selected_: np.ndarray | None = None
        self.impute_: np.ndarray | None = None
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0
        self.with_formation_energy_ = False

    @property
    def n_descriptors(self) -> int:
        """Number of linearly independent descriptors kept (excluding the intercept)."""
        if self.selected_ is None:
            raise RuntimeError("LRLIDG is not fitted")
        return int(self.selected_.size)

    @property
    def descriptor_names(self) -> list[str]:
        """Names of the kept descriptors (``a*b`` denotes a product)."""
        if self.selected_ is None:
            raise RuntimeError("LRLIDG is not fitted")
        return [self.names_[i] for i in self.selected_]

    def _design(
        self,
        structures: Sequence[object],
        lda_gaps: Sequence[float] | np.ndarray,
        formation_energies: Sequence[float] | np.ndarray | None,
    ) -> np.ndarray:
        prim = primitive_descriptors(structures, lda_gaps, formation_energies)
        if self.impute_ is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                self.impute_ = np.nan_to_num(np.nanmean(prim, axis=0), nan=0.0)
        prim = np.where(np.isnan(prim), self.impute_, prim)
        full, _ = second_order_expand(prim, self.primitive_names_)
        return full

    def fit(
        self,
        structures: Sequence[object],
        lda_gaps: Sequence[float] | np.ndarray,
        y: Sequence[float] | np.ndarray,
        formation_energies: Sequence[float] | np.ndarray | None = None,
    ) -> LRLIDG:
        """Fit on ``ase.Atoms`` structures, their LDA gaps and QSGW gaps ``y`` (eV)."""
        t = np.asarray(y, dtype=np.float64).ravel()
        if t.size != len(structures):
            raise ValueError(f"{len(structures)} structures but {t.size} targets")
        self.with_formation_energy_ = formation_energies is not None
        self.primitive_names_ = primitive_descriptor_names(self.with_formation_energy_)
        self.impute_ = None  # recomputed from this training set by _design
        full = self._design(structures, lda_gaps, formation_energies)
        _, self.names_ = second_order_expand(
            full[:1, : len(self.primitive_names_)], self.primitive_names_
        )
        mean = full.mean(axis=0)
        std = full.std(axis=0)
        # Constant columns carry no information beyond the intercept (LIDG ignores them too).
        varying = np.flatnonzero(std > 1e-12 * np.maximum(1.0, np.abs(mean)))
        z = (full[:, varying] - mean[varying]) / std[varying]
        cap = max(1, int(self.max_descriptors_per_sample * t.size))
        keep = varying[linearly_independent_columns(z, self.rank_tol, max_columns=cap)]
        self.selected_ = keep
        self.mean_ = mean[keep]
        self.scale_ = std[keep]
        design = np.column_stack([(full[:, keep] - self.mean_) / self.scale_, np.ones(t.size)])
        sol, *_ = np.linalg.lstsq(design, t, rcond=None)
        self.coef_ = sol[:-1]
        self.intercept_ = float(sol[-1])
        return self

    def predict(
        self,
        structures: Sequence[object],
        lda_gaps: Sequence[float] | np.ndarray,
        formation_energies: Sequence[float] | np.ndarray | None = None,
    ) -> np.ndarray:
        """Predicted QSGW gaps (eV)."""
        if self.selected_ is None or self.coef_ is None:
            raise RuntimeError("LRLIDG is not fitted")
        if (formation_energies is not None) != self.with_formation_energy_:
            raise ValueError(
                "formation_energies must be given to predict exactly when they were given to fit"
            )
        full = self._design(structures, lda_gaps, formation_energies)
        z = (full[:, self.selected_] - self.mean_) / self.scale_
        return z @ self.coef_ + self.intercept_


# --------------------------------------------------------------------------- descriptor cap


@dataclass(frozen=True)
class CapChoice:
    """The descriptor cap :func:`choose_descriptor_cap` picked and the inner-CV MAE (eV) of
    every candidate (empty when there was a single candidate and nothing to choose)."""

    max_descriptors_per_sample: float
    inner_cv_mae: dict[float, float]


def choose_descriptor_cap(
    structures: Sequence[object],
    lda_gaps: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    ids: Sequence[str],
    candidates: Sequence[float],
    *,
    folds: int,
    seed: int,
    rank_tol: float = 1e-8,
    formation_energies: Sequence[float] | np.ndarray | None = None,
) -> CapChoice:
    """The ``max_descriptors_per_sample`` of ``candidates`` with the lowest k-fold CV MAE.

    Only the rows given (the caller's training rows) are used; the folds are drawn from the
    material ``ids`` and ``seed`` (:func:`esrepro.splits.kfold_labels`; ``folds`` is lowered to
    the number of materials when there are fewer). Ties go to the smaller cap. A single
    candidate is returned without CV.
    """
    fracs = sorted({float(c) for c in candidates})
    if not fracs:
        raise ValueError("no descriptor-cap candidates given")
    if len(fracs) == 1:
        return CapChoice(fracs[0], {})
    gaps = np.asarray(lda_gaps, dtype=np.float64).ravel()
    t = np.asarray(y, dtype=np.float64).ravel()
    fe = None if formation_energies is None else np.asarray(formation_energies, dtype=np.float64)
    n = t.size
    if not (len(structures) == gaps.size == n == len(ids)):
        raise ValueError(
            f"{len(structures)} structures, {gaps.size} LDA gaps, {n} targets, {len(ids)} ids"
        )
    k = min(int(folds), n)
    if k < 2:
        raise ValueError(f"inner cross-validation needs two or more materials; got {n}")
    fold = np.asarray(kfold_labels(list(ids), k, seed))
    errors = {frac: np.zeros(n) for frac in fracs}
    for j in range(k):
        fit, held = np.flatnonzero(fold != j), np.flatnonzero(fold == j)
        fit_structs = [structures[i] for i in fit]
        held_structs = [structures[i] for i in held]
        for frac in fracs:
            model = LRLIDG(rank_tol, frac).fit(
                fit_structs, gaps[fit], t[fit], None if fe is None else fe[fit]
            )
            pred = model.predict(held_structs, gaps[held], None if fe is None else fe[held])
            errors[frac][held] = np.abs(pred - t[held])
    mae = {frac: float(e.mean()) for frac, e in errors.items()}
    best = min(fracs, key=lambda f: (mae[f], f))
    return CapChoice(best, mae)
