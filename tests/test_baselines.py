"""Linear and LRLIDG baselines of the DOSnp paper (Appendix C)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase.build import bulk

from esrepro.papers.dosnp.baselines import (
    LRLIDG,
    element_properties,
    fit_linear,
    linearly_independent_columns,
    primitive_descriptor_names,
    primitive_descriptors,
)


def test_fit_linear_recovers_slope_and_intercept() -> None:
    rng = np.random.default_rng(0)
    lda = rng.uniform(0.0, 6.0, 200)
    qsgw = 1.3 * lda + 0.7 + rng.normal(0, 1e-3, lda.size)
    model = fit_linear(lda, qsgw)
    assert model.a == pytest.approx(1.3, abs=1e-3)
    assert model.b == pytest.approx(0.7, abs=1e-3)
    np.testing.assert_allclose(model.predict([0.0, 2.0]), [0.7, 3.3], atol=5e-3)


def test_lid_drops_duplicate_and_linear_combination_columns() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=(50, 4))
    dup = base[:, [1]]
    combo = (2.0 * base[:, 0] - 0.5 * base[:, 3])[:, None]
    x = np.hstack([base, dup, combo])  # columns 4 and 5 add nothing to the span
    kept = linearly_independent_columns(x, rank_tol=1e-8)
    assert kept.size == 4
    assert np.linalg.matrix_rank(x[:, kept]) == 4
    assert not {1, 4} <= set(kept.tolist()), "both copies of the duplicated column were kept"
    # An independent column is kept.
    x_full = np.hstack([x, rng.normal(size=(50, 1))])
    assert linearly_independent_columns(x_full).size == 5


def _structures() -> tuple[list, np.ndarray]:
    atoms = [
        bulk("Si", "diamond", a=5.43),
        bulk("C", "diamond", a=3.57),
        bulk("Ge", "diamond", a=5.66),
        bulk("GaAs", "zincblende", a=5.65),
        bulk("AlP", "zincblende", a=5.46),
        bulk("ZnS", "zincblende", a=5.41),
        bulk("NaCl", "rocksalt", a=5.64),
        bulk("MgO", "rocksalt", a=4.21),
        bulk("LiF", "rocksalt", a=4.03),
        bulk("KCl", "rocksalt", a=6.29),
        bulk("CsCl", "cesiumchloride", a=4.12),
        bulk("Ar", "fcc", a=5.26),  # no Pauling electronegativity: exercises the NaN fallback
    ]
    lda = np.array([0.5, 4.1, 0.0, 0.3, 1.6, 2.0, 4.6, 4.5, 8.9, 5.1, 5.3, 8.2])
    return atoms, lda


def test_element_property_fallbacks() -> None:
    props = dict(
        zip(("Z", "group", "radius", "mass", "X", "ie"), element_properties("Ar"), strict=True)
    )
    assert props["Z"] == 18 and props["group"] == 18
    assert math.isfinite(props["radius"]) and math.isfinite(props["ie"])
    assert math.isnan(props["X"])  # documented: imputed later, never crashes


def test_lrlidg_fits_real_structures_and_is_supercell_invariant() -> None:
    atoms, lda = _structures()
    qsgw = 1.2 * lda + 0.6
    # No descriptor cap: with a handful of structures the cap would keep ~1 column.
    model = LRLIDG(rank_tol=1e-8, max_descriptors_per_sample=1.0).fit(atoms, lda, qsgw)
    assert 0 < model.n_descriptors <= len(atoms)
    assert len(model.descriptor_names) == model.n_descriptors
    pred = model.predict(atoms, lda)
    assert pred.shape == (len(atoms),) and np.all(np.isfinite(pred))
    # LDA gap is a descriptor, so an exactly linear target is reproduced on the training set.
    np.testing.assert_allclose(pred, qsgw, atol=1e-6)
    # Per-structure statistics and volume/atom do not change for a 2x2x2 supercell.
    big = [a.repeat(2) for a in atoms]
    np.testing.assert_allclose(model.predict(big, lda), pred, atol=1e-6)


def test_primitive_descriptors_and_optional_formation_energy() -> None:
    atoms, lda = _structures()
    x = primitive_descriptors(atoms, lda)
    assert x.shape == (len(atoms), len(primitive_descriptor_names()))
    x_fe = primitive_descriptors(atoms, lda, formation_energies=np.zeros(len(atoms)))
    assert x_fe.shape[1] == x.shape[1] + 1
    model = LRLIDG().fit(atoms, lda, lda + 1.0, formation_energies=-np.arange(len(atoms)) / 10)
    with pytest.raises(ValueError, match="formation_energies"):
        model.predict(atoms, lda)


def test_lrlidg_caps_descriptors_on_small_training_sets() -> None:
    """With more candidate products than samples, the cap stops exact interpolation."""
    rng = np.random.default_rng(0)
    structures = [
        bulk(sym, "fcc", a=a) for sym in ("Cu", "Ag", "Al", "Ni") for a in (3.6, 3.9, 4.1, 4.3, 4.6)
    ]
    lda = rng.uniform(0.1, 3.0, len(structures))
    y = 1.3 * lda + 0.5 + rng.normal(0, 0.2, len(structures))
    capped = LRLIDG(max_descriptors_per_sample=0.2).fit(structures, lda, y)
    assert capped.n_descriptors <= 4
    train_mae = np.mean(np.abs(capped.predict(structures, lda) - y))
    assert train_mae > 0.01  # not interpolated: noise remains in the residual
