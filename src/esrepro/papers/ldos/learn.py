"""Learning and evaluation of one LDOS set: both strategies, the r_cut scan, learning curves.

``ldos`` strategy: LDOS-on-LDOS kernel ridge (paper eq. 12), atom LDOS targets. ``dos``
strategy: DOS-split learning (eq. 11, Ben Mahmoud et al.), structural DOS targets only. Both
pick lambda and zeta by k-fold CV over the training structures (paper: 5-fold), then predict
the held-out structures. Structural DOS prediction = sum of the predicted atom LDOS. Both are
scored beside :class:`MeanSpectrumPredictor`, the floor a model that learned anything clears.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from esrepro.dos_properties import (
    DEFAULT_HBAR_OMEGA_EV,
    absorption,
    band_energy,
    dos_at_fermi,
    fermi_dirac,
    fermi_energy,
    heat_capacity,
    normalized_loss,
    normalized_scalar_loss,
    susceptibility,
)
from esrepro.metrics import paired_comparison, write_json
from esrepro.papers.ldos.config import LearnConfig, LearnParams, PropertiesParams
from esrepro.papers.ldos.krr import LDOSKernelRidge, SplitDOSKernelRidge, select_hyperparameters

log = logging.getLogger(__name__)

PROPERTIES = (
    "band_energy", "fermi_energy", "dos_at_fermi", "heat_capacity", "susceptibility", "absorption"
)
#: Photon energies (eV) of the absorption spectrum A(ω) compared between DFT and predictions.
HBAR_OMEGA_EV = DEFAULT_HBAR_OMEGA_EV
#: The names of the two models in every paired comparison record.
COMPARED = ("ldos_trained", "dos_trained")
#: The name of the mean predictor in the records comparing each model with it.
MEAN_PREDICTOR = "mean_predictor"


def _rows(split: Sequence[str], name: str) -> list[int]:
    return [i for i, s in enumerate(split) if s == name]


def _take(items: Sequence[Any], rows: Sequence[int]) -> list[Any]:
    return [items[i] for i in rows]


def species_covering_split(
    ids: Sequence[str], atom_species: Sequence[Sequence[str]], test_fraction: float, seed: int
) -> list[str]:
    """A random train/test split (:func:`esrepro.splits.random_split_labels`) repaired so that
    every species of a test structure also occurs in training: a per-species model cannot
    predict an element it never saw (small Sn(S,Se) sets drew S only into the test set).

    Test structures with an unseen species move to training; then training structures whose
    species the rest of training still covers move to test (seeded order) to restore the size.
    """
    from esrepro.splits import random_split_labels

    labels = random_split_labels(ids, test_fraction, seed)
    n_test = labels.count("test")

    def train_species(exclude: int | None = None) -> set[str]:
        return {
            x for i, lab in enumerate(labels) if lab == "train" and i != exclude
            for x in atom_species[i]
        }

    for i, lab in enumerate(labels):
        if lab == "test" and not set(atom_species[i]) <= train_species():
            labels[i] = "train"
    for i in np.random.default_rng(seed).permutation(len(ids)):
        if labels.count("test") >= n_test:
            break
        if labels[i] == "train" and set(atom_species[i]) <= train_species(exclude=int(i)) and all(
            set(atom_species[j]) <= train_species(exclude=int(i))
            for j, lab in enumerate(labels) if lab == "test"
        ):
            labels[i] = "test"
    return labels


def _covering_order(
    rows: Sequence[int], atom_species: Sequence[Sequence[str]], seed: int
) -> list[int]:
    """``rows`` in a seeded random order, except that the first structures cover every species
    (so every prefix used for a learning-curve point can predict every test atom)."""
    order = [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))]
    first, seen = [], set()
    for r in order:
        if not set(atom_species[r]) <= seen:
            first.append(r)
            seen |= set(atom_species[r])
    return first + [r for r in order if r not in first]


def per_sample_losses(pred: np.ndarray, ref: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """L/σ of each spectrum (paper eq. 15): its energy-averaged RMS error over the standard
    deviation σ of all reference spectra given (about their global mean)."""
    width = float(energies[-1] - energies[0])

    def avg(g: np.ndarray) -> np.ndarray:
        return np.trapezoid(g, energies, axis=-1) / width

    sigma2 = float(np.mean(avg((ref - np.mean(avg(ref))) ** 2)))
    return np.sqrt(avg((pred - ref) ** 2) / sigma2)


def species_losses(
    pred: np.ndarray, ref: np.ndarray, atom_species: np.ndarray, species: Sequence[str],
    energies: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-atom LDOS L/σ of each species with that species' own σ (Table 1 is per species): a σ
    pooled over the species of a compound measures the spread between species, not within."""
    out = {}
    for s in species:
        mask = np.asarray(atom_species) == s
        out[s] = per_sample_losses(pred[mask], ref[mask], energies) if mask.any() else np.zeros(0)
    return out


def per_atom_dos_losses(
    pred: np.ndarray, ref: np.ndarray, n_atoms: np.ndarray, energies: np.ndarray
) -> np.ndarray:
    """Structural-DOS L/σ of each structure on the DOS per atom: over cells of 1-216 atoms the σ
    of the per-cell (extensive) DOS would mostly measure the spread of cell sizes."""
    scale = np.asarray(n_atoms, dtype=np.float64)[:, None]
    return per_sample_losses(pred / scale, ref / scale, energies)


@dataclasses.dataclass(frozen=True)
class MeanSpectrumPredictor:
    """The mean predictor each KRR model must beat: every atom gets the mean training LDOS of its
    species, every structure its atom count times the mean per-atom DOS of the training
    structures (each structure weighted equally, as the per-structure L/σ weights them).

    L/σ < 1 is not this floor: σ is the spread about the grand mean, not about each species' (or
    the per-atom) mean spectrum, and the flat grand-mean predictor already scores at most 1.
    """

    species_ldos: Mapping[str, np.ndarray]
    dos_per_atom: np.ndarray

    @classmethod
    def fit(
        cls, ldos: Sequence[np.ndarray], atom_species: Sequence[Sequence[str]]
    ) -> MeanSpectrumPredictor:
        """Means over the training structures' atom LDOS ``ldos`` (one (n_atoms, n_grid) array
        per structure) with their species labels ``atom_species``."""
        if len(ldos) == 0:
            raise ValueError("the mean predictor needs at least one training structure")
        flat = np.concatenate([np.asarray(g, dtype=np.float64) for g in ldos])
        labels = np.concatenate([np.asarray(s, dtype=str) for s in atom_species])
        return cls(
            species_ldos={str(s): flat[labels == s].mean(axis=0) for s in np.unique(labels)},
            dos_per_atom=np.mean(
                [np.asarray(g, dtype=np.float64).sum(axis=0) / len(g) for g in ldos], axis=0
            ),
        )

    def predict_atoms(self, atom_species: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Per structure, its atoms' species-mean LDOS, shape (n_atoms, n_grid)."""
        unseen = sorted({str(x) for s in atom_species for x in s} - set(self.species_ldos))
        if unseen:
            raise ValueError(f"the mean predictor saw no training atom of species {unseen}")
        return [np.stack([self.species_ldos[str(x)] for x in s]) for s in atom_species]

    def predict_structures(self, n_atoms: Sequence[int] | np.ndarray) -> np.ndarray:
        """The structural DOS of cells of ``n_atoms`` atoms, shape (n_structures, n_grid)."""
        return np.asarray(n_atoms, dtype=np.float64)[:, None] * self.dos_per_atom[None, :]


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else math.nan


def _summary(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"min": math.nan, "max": math.nan, "mean": math.nan}
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean())}


def _grid(cfg: LearnParams) -> dict[str, list[Any]]:
    return {"lam": list(cfg.lam), "zeta": list(cfg.zeta)}


def _fit_both(
    feats: Mapping[str, Any], train: Sequence[int], cfg: LearnParams, descriptors=None
) -> dict[str, Any]:
    """CV-selected LDOS-on-LDOS and DOS-split models on the ``train`` structures."""
    d = _take(descriptors if descriptors is not None else feats["descriptors"], train)
    species = _take(feats["atom_species"], train)
    ldos = _take(feats["ldos"], train)
    dos = np.stack([g.sum(axis=0) for g in ldos])
    folds = max(2, min(cfg.folds, len(train)))
    kw = {"n_sparse": cfg.n_sparse or None, "seed": cfg.seed}
    grid = _grid(cfg)
    ldos_cv = select_hyperparameters(LDOSKernelRidge(**kw), grid, d, ldos, feats["energies"],
                                     species=species, folds=folds, seed=cfg.seed)
    dos_cv = select_hyperparameters(SplitDOSKernelRidge(**kw), grid, d, dos, feats["energies"],
                                    species=species, folds=folds, seed=cfg.seed)
    return {"ldos": ldos_cv, "dos": dos_cv}


def _test_losses(
    models: Mapping[str, Any], feats: Mapping[str, Any], test: Sequence[int], descriptors=None
) -> dict[str, Any]:
    """Mean per-species atom-LDOS L/σ (own σ) and per-atom structural-DOS L/σ of both models on
    ``test``."""
    d = _take(descriptors if descriptors is not None else feats["descriptors"], test)
    species = _take(feats["atom_species"], test)
    ref = _take(feats["ldos"], test)
    ref_atoms = np.concatenate(ref)
    atom_species = np.concatenate([np.asarray(s) for s in species])
    ref_dos = np.stack([g.sum(axis=0) for g in ref])
    n_atoms = np.array([len(g) for g in ref])
    out = {}
    for name, model in models.items():
        pred_atoms = np.concatenate(model.predict_atoms(d, species))
        losses = species_losses(
            pred_atoms, ref_atoms, atom_species, feats["species"], feats["energies"]
        )
        out[name] = {
            "ldos": {s: _mean(v) for s, v in losses.items()},
            "dos": _mean(per_atom_dos_losses(
                model.predict_structures(d, species), ref_dos, n_atoms, feats["energies"]
            )),
        }
    return out


def learn_set(feats: Mapping[str, Any], cfg: LearnConfig) -> dict[str, Any]:
    """Fit both strategies on the training split, then the r_cut scan and the learning curves
    (test losses against cutoff and against training-set size), all with CV-selected settings."""
    from esrepro.papers.ldos.descriptors import soap_descriptors

    lcfg = cfg.learn
    train, test = _rows(feats["split"], "train"), _rows(feats["split"], "test")
    fitted = _fit_both(feats, train, lcfg)
    models = {name: cv.model for name, cv in fitted.items()}
    cv_tables = {name: {"best_params": cv.best_params, "best_loss": cv.best_loss,
                        "table": [{k: v for k, v in row.items() if k != "fold_losses"}
                                  for row in cv.table]}
                 for name, cv in fitted.items()}
    soap = cfg.soap
    scan = []
    for r_cut in cfg.r_cut_scan:
        d = soap_descriptors(
            feats["atoms"], feats["species"], r_cut, soap.n_max, soap.l_max, soap.sigma
        )
        best = dataclasses.replace(
            lcfg, lam=(fitted["ldos"].best_params["lam"],),
            zeta=(fitted["ldos"].best_params["zeta"],),
        )
        refit = _fit_both(feats, train, best, descriptors=d)
        scan.append({
            "r_cut": r_cut,
            **_test_losses({k: cv.model for k, cv in refit.items()}, feats, test, d),
        })
    curve = []
    order = _covering_order(train, feats["atom_species"], lcfg.seed)
    n_cover = len({x for r in train for x in feats["atom_species"][r]})
    for fraction in lcfg.curve_fractions:
        n = max(2, n_cover, int(round(fraction * len(order))))
        sub = sorted(order[:n])
        refit = _fit_both(feats, sub, lcfg)
        curve.append({
            "n_train": n, **_test_losses({k: cv.model for k, cv in refit.items()}, feats, test)
        })
    # The paper's smearing comparison (k_BT 0.1 vs 0.5 eV): both strategies refitted, with their
    # own CV, on the same structures and split with the LDOS broadened by each extra width.
    compare_sigma: dict[float, dict[str, Any]] = {}
    compare_cv: dict[str, Any] = {}
    for sigma, ldos in sorted((feats.get("ldos_by_sigma") or {}).items()):
        refit = _fit_both({**feats, "ldos": ldos}, train, lcfg)
        compare_sigma[float(sigma)] = {name: cv.model for name, cv in refit.items()}
        compare_cv[f"{float(sigma):g}"] = {
            name: {"best_params": cv.best_params, "best_loss": cv.best_loss}
            for name, cv in refit.items()
        }
    log.info("LDOS learn: %d train / %d test structures; CV best %s", len(train), len(test),
             {k: v["best_params"] for k, v in cv_tables.items()})
    return {"models": models, "compare_sigma": compare_sigma,
            "curves": {"cv": cv_tables, "r_cut_scan": scan, "learning_curve": curve,
                       "compare_sigma_cv": compare_cv}}


def electrons_in_window(
    dos: np.ndarray, energies: np.ndarray, kT: float, fermi: np.ndarray | float = 0.0
) -> np.ndarray:
    """Electrons held by the grid's states below each structure's Fermi level ``fermi``.

    States below the grid (semicore levels) are outside it, so the count that fixes mu for
    eq. 16 is taken from the reference DOS on the same grid, not from the valence total.
    """
    fermi = np.broadcast_to(np.asarray(fermi, dtype=np.float64), np.shape(dos)[:-1])
    occupation = np.stack(
        [fermi_dirac(energies, mu, kT) for mu in fermi.ravel()]
    ).reshape(np.shape(dos))
    return np.trapezoid(dos * occupation, energies, axis=-1)


def _resample(dos: np.ndarray, energies: np.ndarray, fine: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(fine, energies, row) for row in dos])


def smearing_comparison(feats: Mapping[str, Any], main: Mapping[str, Any],
                        compare_models: Mapping[float, Mapping[str, Any]]) -> dict[str, Any]:
    """Held-out L/σ of the LDOS-trained model at the main and at every extra Gaussian width.

    ``main`` holds the main width's ``ldos`` (per species, mean) and ``dos`` means. Per width
    (key ``f"{sigma:g}"``): mean atom-LDOS L/σ per species and structural-DOS L/σ; ``ratio``:
    each extra width's loss over the main width's (the paper: about 2 for 0.1 over 0.5 eV).
    """
    main_key = f"{float(feats['sigma_ev']):g}"
    out: dict[str, Any] = {main_key: {"ldos": {s: v["mean"] for s, v in main["ldos"].items()},
                                      "dos": main["dos"]["mean"]}}
    test = _rows(feats["split"], "test")
    for sigma, models in sorted(compare_models.items()):
        key = f"{float(sigma):g}"
        losses = _test_losses(
            {"ldos": models["ldos"]}, {**feats, "ldos": feats["ldos_by_sigma"][sigma]}, test
        )["ldos"]
        out[key] = losses
        out.setdefault("ratio", {})[f"{key}/{main_key}"] = {
            **{s: losses["ldos"][s] / out[main_key]["ldos"][s] for s in losses["ldos"]},
            "dos": losses["dos"] / out[main_key]["dos"],
        }
    return out


def _per_structure_means(values: np.ndarray, owner: np.ndarray, n_structures: int) -> np.ndarray:
    """Mean of per-atom ``values`` over each structure's atoms (``owner``: each atom's structure
    index); NaN for a structure with none of them."""
    sums = np.bincount(owner, weights=values, minlength=n_structures)
    counts = np.bincount(owner, minlength=n_structures)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _compare(
    errors_a: np.ndarray, errors_b: np.ndarray, names: tuple[str, str] = COMPARED
) -> dict[str, Any]:
    """Paired bootstrap of two models' per-structure errors (structures where both exist);
    by default the LDOS-trained (``errors_a``) and the DOS-trained model."""
    ok = np.isfinite(errors_a) & np.isfinite(errors_b)
    return paired_comparison(errors_a[ok], errors_b[ok], names=names)


def derived_comparison(
    ref_dos: np.ndarray, pred_dos: Mapping[str, np.ndarray], n_atoms: np.ndarray,
    energies: np.ndarray, fermi_levels: np.ndarray, kT: float, T: float,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Derived properties (paper App. A) of the DFT DOS and of each model's predicted DOS, per
    atom, over the same structures: ``(losses, comparisons, values)``.

    ``losses[prop][f"{name}_trained"]``: L/σ over the structures (eq. 15; scalars: RMSE over the
    DFT values' standard deviation; the absorption spectrum A(ω): eq. 15 over the ħω grid).
    ``comparisons[prop]``: paired bootstrap of the per-structure errors (scalars: |error|/σ,
    absorption: the spectrum's L/σ). ``values[prop][source]`` (``ref`` or a model name): the
    values, for the absorption one spectrum per structure on :data:`HBAR_OMEGA_EV`.
    """
    # -df/de is ~kT wide: resample the (smeared, smooth) DOS onto a grid of kT/4 spacing, or the
    # thermal integrals (heat capacity, susceptibility) are under-resolved.
    fine = np.linspace(
        energies[0], energies[-1], int(np.ceil((energies[-1] - energies[0]) / (kT / 4))) + 1
    )
    # Per atom: the band energy, D(E_F), C and chi of a cell grow with its size (the absorption
    # with its square), so over cells of 1-216 atoms the L/σ of the extensive values would
    # measure the spread of cell sizes, not the predictions.
    per_atom = np.asarray(n_atoms, dtype=np.float64)[:, None]
    ref_fine = _resample(ref_dos, energies, fine) / per_atom
    n_el = electrons_in_window(ref_fine, fine, kT, fermi_levels)
    values: dict[str, dict[str, np.ndarray]] = {prop: {} for prop in PROPERTIES}
    for source, dos in {"ref": ref_dos, **pred_dos}.items():
        dos_fine = ref_fine if source == "ref" else _resample(dos, energies, fine) / per_atom
        mu = np.asarray(fermi_energy(dos_fine, fine, n_el, kT))
        computed = {
            "band_energy": band_energy(dos_fine, fine, mu, kT),
            "fermi_energy": mu,
            "dos_at_fermi": dos_at_fermi(dos_fine, fine, mu),
            "heat_capacity": heat_capacity(dos_fine, fine, T, n_el),
            "susceptibility": susceptibility(dos_fine, fine, mu, kT),
            # The paper's Fig. 4 compares the absorption spectrum A(ω), not a summary of it.
            "absorption": absorption(dos_fine, fine, mu, kT, HBAR_OMEGA_EV),
        }
        for prop in PROPERTIES:
            values[prop][source] = np.asarray(computed[prop], dtype=np.float64)
    losses: dict[str, Any] = {}
    comparisons: dict[str, Any] = {}
    for prop in PROPERTIES:
        ref = values[prop]["ref"]
        if prop == "absorption":
            loss = {n: normalized_loss(values[prop][n], ref, HBAR_OMEGA_EV) for n in pred_dos}
            errors = {n: per_sample_losses(values[prop][n], ref, HBAR_OMEGA_EV) for n in pred_dos}
        else:
            loss = {n: normalized_scalar_loss(values[prop][n], ref) for n in pred_dos}
            errors = {n: np.abs(values[prop][n] - ref) / float(np.std(ref)) for n in pred_dos}
        losses[prop] = {f"{n}_trained": v for n, v in loss.items()}
        comparisons[prop] = _compare(errors["ldos"], errors["dos"])
    return losses, comparisons, values


def evaluate_sets(
    sets: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]], properties: PropertiesParams,
    metrics_path: Path, predictions_path: Path,
    compare_sigma: Mapping[str, Mapping[float, Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """``metrics.json`` and the test predictions for the report.

    Per set (``sets.<set>``): min/max/mean over held-out atoms of each species' LDOS L/σ (σ of
    that species) and over held-out structures of the per-atom structural-DOS L/σ, LDOS-trained
    at the top, DOS-trained under ``dos_trained``, the :class:`MeanSpectrumPredictor` of the
    training structures under ``mean_predictor`` (same σ). ``derived.<set>.<property>``: L/σ of
    each derived property for the sets ``properties.sets`` (:func:`derived_comparison`);
    ``derived_worst.<set>``: the largest of them per model. ``comparisons.<set>.ldos.<species>``
    (per-structure mean atom L/σ), ``comparisons.<set>.dos`` and ``comparisons.<set>.<property>``:
    paired bootstrap records (:func:`esrepro.metrics.paired_comparison`, names ``ldos_trained``,
    ``dos_trained``) over the held-out structures; ``comparisons.<set>.<model>_vs_mean.ldos.
    <species>`` and ``....<model>_vs_mean.dos`` (``<model>``: ``ldos_trained``, ``dos_trained``):
    each model against the mean predictor (names ``<model>``, ``mean_predictor``), the same way.
    ``smearing``: :func:`smearing_comparison`;
    ``compare_sigma``: per set, the models learned at each extra smearing width.
    """
    kT, T = properties.kT_ev, properties.T_k
    metrics: dict[str, Any] = {"sets": {}, "derived": {}, "derived_worst": {}, "comparisons": {}}
    arrays: dict[str, np.ndarray] = {}
    for set_name, (feats, models) in sets.items():
        energies = feats["energies"]
        test = _rows(feats["split"], "test")
        d, species = _take(feats["descriptors"], test), _take(feats["atom_species"], test)
        ref_atoms = _take(feats["ldos"], test)
        n_atoms = np.array([len(g) for g in ref_atoms], dtype=np.int64)
        owner = np.repeat(np.arange(len(test)), n_atoms)
        ref_dos = np.stack([g.sum(axis=0) for g in ref_atoms])
        pred = {name: model.predict_atoms(d, species) for name, model in models.items()}
        pred_dos = {name: np.stack([p.sum(axis=0) for p in pred[name]]) for name in pred}
        train = _rows(feats["split"], "train")
        mean = MeanSpectrumPredictor.fit(
            _take(feats["ldos"], train), _take(feats["atom_species"], train)
        )
        pred["mean"] = mean.predict_atoms(species)
        pred_dos["mean"] = mean.predict_structures(n_atoms)
        flat_ref = np.concatenate(ref_atoms)
        flat_species = np.concatenate([np.asarray(s) for s in species])
        entry: dict[str, Any] = {
            "n_structures": len(feats["structure_ids"]),
            "n_environments": int(sum(len(a) for a in feats["atoms"])),
            "n_test_structures": len(test),
            "n_dft_failed": int(feats["n_failed"]),
        }
        per_structure: dict[str, Any] = {}
        for name in ("ldos", "dos", "mean"):
            atom_losses = species_losses(
                np.concatenate(pred[name]), flat_ref, flat_species, feats["species"], energies
            )
            dos_losses = per_atom_dos_losses(pred_dos[name], ref_dos, n_atoms, energies)
            block = {
                "ldos": {s: _summary(v) for s, v in atom_losses.items()},
                "dos": _summary(dos_losses),
            }
            if name == "ldos":
                entry.update(block)
            else:
                entry["dos_trained" if name == "dos" else MEAN_PREDICTOR] = block
            per_structure[name] = {
                "ldos": {
                    s: _per_structure_means(v, owner[flat_species == s], len(test))
                    for s, v in atom_losses.items()
                },
                "dos": dos_losses,
            }
        metrics["sets"][set_name] = entry
        comparisons: dict[str, Any] = {
            "ldos": {
                s: _compare(per_structure["ldos"]["ldos"][s], per_structure["dos"]["ldos"][s])
                for s in feats["species"]
            },
            "dos": _compare(per_structure["ldos"]["dos"], per_structure["dos"]["dos"]),
        }
        for name, label in zip(("ldos", "dos"), COMPARED, strict=True):
            names = (label, MEAN_PREDICTOR)
            comparisons[f"{label}_vs_mean"] = {
                "ldos": {
                    s: _compare(
                        per_structure[name]["ldos"][s], per_structure["mean"]["ldos"][s], names
                    )
                    for s in feats["species"]
                },
                "dos": _compare(per_structure[name]["dos"], per_structure["mean"]["dos"], names),
            }
        if compare_sigma and compare_sigma.get(set_name):
            metrics.setdefault("smearing", {})[set_name] = smearing_comparison(
                feats, entry, compare_sigma[set_name]
            )
        arrays[f"{set_name}__energies"] = energies
        arrays[f"{set_name}__structure_ids"] = np.array(
            _take(feats["structure_ids"], test), dtype=str
        )
        arrays[f"{set_name}__n_atoms"] = n_atoms
        arrays[f"{set_name}__ref_dos"] = ref_dos.astype(np.float32)
        arrays[f"{set_name}__atom_species"] = flat_species.astype(str)
        arrays[f"{set_name}__ref_ldos"] = flat_ref.astype(np.float32)
        for name in ("ldos", "dos"):
            arrays[f"{set_name}__pred_ldos_{name}_trained"] = np.concatenate(
                pred[name]
            ).astype(np.float32)
            arrays[f"{set_name}__pred_dos_{name}_trained"] = pred_dos[name].astype(np.float32)
        if set_name in properties.sets and len(test) >= 2:
            # Predictions as stored (float32), as the report shows them.
            losses, derived_comps, values = derived_comparison(
                ref_dos,
                {n: pred_dos[n].astype(np.float32).astype(np.float64) for n in ("ldos", "dos")},
                n_atoms, energies, np.asarray(feats["fermi_levels"])[test], kT, T,
            )
            metrics["derived"][set_name] = losses
            metrics["derived_worst"][set_name] = {
                f"{n}_trained": max(losses[p][f"{n}_trained"] for p in PROPERTIES)
                for n in ("ldos", "dos")
            }
            comparisons.update(derived_comps)
            arrays[f"{set_name}__hbar_omega"] = HBAR_OMEGA_EV
            for prop in PROPERTIES:
                for source, value in values[prop].items():
                    arrays[f"{set_name}__derived_{prop}_{source}"] = value
        metrics["comparisons"][set_name] = comparisons
    write_json(metrics_path, metrics)
    predictions_path.parent.mkdir(parents=True, exist_ok=True)
    with open(predictions_path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return metrics
