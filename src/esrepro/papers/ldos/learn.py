"""Learning and evaluation of one LDOS set: both strategies, the r_cut scan, learning curves.

``ldos`` strategy: LDOS-on-LDOS kernel ridge (paper eq. 12), atom LDOS targets. ``dos``
strategy: DOS-split learning (eq. 11, Ben Mahmoud et al.), structural DOS targets only. Both
pick lambda and zeta by k-fold CV over the training structures (paper: 5-fold), then predict
the held-out structures. Structural DOS prediction = sum of the predicted atom LDOS.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from esrepro.dos_properties import derived_properties, fermi_dirac, normalized_scalar_loss
from esrepro.metrics import write_json
from esrepro.papers.ldos.config import LearnConfig, LearnParams, PropertiesParams
from esrepro.papers.ldos.krr import LDOSKernelRidge, SplitDOSKernelRidge, select_hyperparameters

log = logging.getLogger(__name__)

PROPERTIES = (
    "band_energy", "fermi_energy", "dos_at_fermi", "heat_capacity", "susceptibility", "absorption"
)


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
    """Mean per-species atom-LDOS L/σ and structure-DOS L/σ of both models on ``test``."""
    d = _take(descriptors if descriptors is not None else feats["descriptors"], test)
    species = _take(feats["atom_species"], test)
    ref_atoms = np.concatenate(_take(feats["ldos"], test))
    atom_species = np.concatenate([np.asarray(s) for s in species])
    ref_dos = np.stack([g.sum(axis=0) for g in _take(feats["ldos"], test)])
    out = {}
    for name, model in models.items():
        pred_atoms = np.concatenate(model.predict_atoms(d, species))
        losses = per_sample_losses(pred_atoms, ref_atoms, feats["energies"])
        out[name] = {
            "ldos": {s: float(np.mean(losses[atom_species == s])) for s in feats["species"]},
            "dos": float(np.mean(per_sample_losses(
                model.predict_structures(d, species), ref_dos, feats["energies"]
            ))),
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


def evaluate_sets(
    sets: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]], properties: PropertiesParams,
    metrics_path: Path, predictions_path: Path,
    compare_sigma: Mapping[str, Mapping[float, Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """``metrics.json`` (schema of issue 4, plus ``smearing``: see :func:`smearing_comparison`)
    and the test predictions for the report. ``compare_sigma``: per set, the models learned at
    each extra smearing width (``learn_set``'s ``compare_sigma``)."""
    kT, T = properties.kT_ev, properties.T_k
    metrics: dict[str, Any] = {"sets": {}, "derived": {}}
    arrays: dict[str, np.ndarray] = {}
    for set_name, (feats, models) in sets.items():
        energies = feats["energies"]
        test = _rows(feats["split"], "test")
        d, species = _take(feats["descriptors"], test), _take(feats["atom_species"], test)
        ref_atoms = _take(feats["ldos"], test)
        ref_dos = (
            np.stack([g.sum(axis=0) for g in ref_atoms]) if test
            else np.zeros((0, len(energies)))
        )
        pred = {name: model.predict_atoms(d, species) for name, model in models.items()}
        flat_ref = np.concatenate(ref_atoms)
        flat_species = np.concatenate([np.asarray(s) for s in species])
        entry: dict[str, Any] = {
            "n_structures": len(feats["structure_ids"]),
            "n_environments": int(sum(len(a) for a in feats["atoms"])),
            "n_test_structures": len(test),
            "n_dft_failed": int(feats["n_failed"]),
        }
        for name in ("ldos", "dos"):
            atom_losses = per_sample_losses(np.concatenate(pred[name]), flat_ref, energies)
            dos_losses = per_sample_losses(
                np.stack([p.sum(axis=0) for p in pred[name]]), ref_dos, energies
            )
            block = {
                "ldos": {s: _summary(atom_losses[flat_species == s]) for s in feats["species"]},
                "dos": _summary(dos_losses),
            }
            if name == "ldos":
                entry.update(block)
            else:
                entry["dos_trained"] = block
        metrics["sets"][set_name] = entry
        if compare_sigma and compare_sigma.get(set_name):
            metrics.setdefault("smearing", {})[set_name] = smearing_comparison(
                feats, entry, compare_sigma[set_name]
            )
        arrays[f"{set_name}__energies"] = energies
        arrays[f"{set_name}__structure_ids"] = np.array(
            _take(feats["structure_ids"], test), dtype=str
        )
        arrays[f"{set_name}__ref_dos"] = ref_dos.astype(np.float32)
        arrays[f"{set_name}__atom_species"] = flat_species.astype(str)
        arrays[f"{set_name}__ref_ldos"] = flat_ref.astype(np.float32)
        for name in ("ldos", "dos"):
            arrays[f"{set_name}__pred_ldos_{name}_trained"] = np.concatenate(
                pred[name]
            ).astype(np.float32)
            arrays[f"{set_name}__pred_dos_{name}_trained"] = np.stack(
                [p.sum(axis=0) for p in pred[name]]
            ).astype(np.float32)
        if set_name == "si" and len(test) >= 2:
            # -df/de is ~kT wide: resample the (smeared, smooth) DOS onto a grid of kT/4 spacing,
            # or the thermal integrals (heat capacity, susceptibility) are under-resolved.
            fine = np.linspace(
                energies[0], energies[-1],
                int(np.ceil((energies[-1] - energies[0]) / (kT / 4))) + 1,
            )
            # Per atom: the band energy, D(E_F), C and chi of a cell grow with its size (the
            # absorption with its square), so over cells of 1-216 atoms the L/sigma of the
            # extensive values would measure the spread of cell sizes, not the predictions.
            per_atom = np.array([len(a) for a in ref_atoms], dtype=np.float64)[:, None]
            ref_fine = _resample(ref_dos, energies, fine) / per_atom
            n_el = electrons_in_window(ref_fine, fine, kT, np.asarray(feats["fermi_levels"])[test])
            props = {"ref": derived_properties(ref_fine, fine, n_el, kT=kT, T=T)}
            for name in ("ldos", "dos"):
                pred_fine = _resample(
                    arrays[f"si__pred_dos_{name}_trained"].astype(np.float64), energies, fine
                ) / per_atom
                props[name] = derived_properties(pred_fine, fine, n_el, kT=kT, T=T)
            for prop in PROPERTIES:
                metrics["derived"][prop] = {
                    f"{name}_trained": normalized_scalar_loss(
                        np.asarray(props[name][prop]), np.asarray(props["ref"][prop])
                    )
                    for name in ("ldos", "dos")
                }
                for source in ("ref", "ldos", "dos"):
                    arrays[f"si__derived_{prop}_{source}"] = np.asarray(
                        props[source][prop], dtype=np.float64
                    )
    write_json(metrics_path, metrics)
    predictions_path.parent.mkdir(parents=True, exist_ok=True)
    with open(predictions_path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return metrics
