"""Regression metrics and stable JSON output shared by every paper's evaluate stage."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from esrepro.plain_json import plain_json

#: Significant digits kept when writing floats, so re-running a stage on another machine (tiny
#: floating-point differences) does not change the file and DVC sees a stable output.
SIGNIFICANT_DIGITS = 6


def regression_metrics(
    y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray
) -> dict[str, Any]:
    """Mean absolute error, root-mean-square error, coefficient of determination and count.

    Units follow the inputs (eV for band gaps). ``r2`` is ``nan`` when it is undefined (fewer
    than two points or a constant ``y_true``); all metrics are ``nan`` for empty input.
    """
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    n = int(t.shape[0])
    if n == 0:
        return {"mae": math.nan, "rmse": math.nan, "r2": math.nan, "n": 0}
    err = p - t
    ss_res = float(np.sum(err**2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if n >= 2 and ss_tot > 0 else math.nan
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(math.sqrt(ss_res / n)),
        "r2": float(r2),
        "n": n,
    }


#: Resamples of :func:`paired_comparison`'s bootstrap; 2,000 puts the 2.5% quantile's own Monte
#: Carlo error well below the spread it estimates.
BOOTSTRAP_RESAMPLES = 2000
#: Fewest paired samples whose bootstrap interval may resolve a winner: below it the percentile
#: interval is far too narrow (with 2 samples of one sign it excludes 0 whatever their spread).
MIN_RESOLVING_SAMPLES = 10


def paired_comparison(
    errors_a: Sequence[float] | np.ndarray,
    errors_b: Sequence[float] | np.ndarray,
    *,
    names: tuple[str, str] = ("a", "b"),
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Which of two models has the lower mean error on the same samples, and is it resolved.

    ``errors_a``/``errors_b`` are per-sample errors (lower is better) of models ``names[0]`` and
    ``names[1]`` on the same samples (e.g. per-structure L/σ over held-out structures). The
    difference of means ``diff = mean_a - mean_b`` gets a 95% percentile interval from a paired
    bootstrap over samples (seeded: the same inputs give the same interval). ``winner`` is the
    name of the better model when the interval excludes zero and there are at least
    :data:`MIN_RESOLVING_SAMPLES` samples, else ``None`` ("not resolved").
    This is the record every "which is better" claim is judged on (``esrepro.targets``).
    """
    a = np.asarray(errors_a, dtype=np.float64).ravel()
    b = np.asarray(errors_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"the two models' errors differ in length: {a.size} vs {b.size}")
    d = a - b
    n = int(d.size)
    record: dict[str, Any] = {
        "a": names[0],
        "b": names[1],
        "mean_a": float(a.mean()) if n else math.nan,
        "mean_b": float(b.mean()) if n else math.nan,
        "diff": float(d.mean()) if n else math.nan,
        "sem": float(d.std(ddof=1) / math.sqrt(n)) if n >= 2 else math.nan,
        "ci95": [math.nan, math.nan],
        "n": n,
        "method": f"paired bootstrap over samples, {n_resamples} resamples, seed {seed}",
        "winner": None,
    }
    if n < 2:
        return record
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, size=(n_resamples, n))].mean(axis=1)
    lo, hi = (float(q) for q in np.quantile(means, [0.025, 0.975]))
    record["ci95"] = [lo, hi]
    if n < MIN_RESOLVING_SAMPLES:
        record["method"] += f"; fewer than {MIN_RESOLVING_SAMPLES} samples resolve no winner"
    elif hi < 0:
        record["winner"] = names[0]
    elif lo > 0:
        record["winner"] = names[1]
    return record


def ratio_interval(
    errors_num: np.ndarray, errors_den: np.ndarray, n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> list[float]:
    """95% paired-bootstrap percentile interval of ``mean(errors_num) / mean(errors_den)`` over
    samples (e.g. the mean baseline's test MAE over a model's); NaN for fewer than 2 samples."""
    a, b = np.asarray(errors_num, np.float64), np.asarray(errors_den, np.float64)
    if a.size < 2:
        return [float("nan"), float("nan")]
    idx = np.random.default_rng(seed).integers(0, a.size, size=(n_resamples, a.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = a[idx].mean(axis=1) / b[idx].mean(axis=1)
    lo, hi = np.quantile(ratios, [0.025, 0.975])
    return [float(lo), float(hi)]


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as JSON: sorted keys, indent 2, trailing newline, parent dirs created.

    Floats are rounded to :data:`SIGNIFICANT_DIGITS` significant digits and non-finite floats
    become ``null``; numpy / torch scalars and arrays and ``Path`` objects are converted.
    The file is written to a temporary sibling and renamed, so readers never see half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = plain_json(obj, digits=SIGNIFICANT_DIGITS, what=str(path))
    text = json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_csv(path: str | Path, table: Any) -> Path:
    """Write a pandas DataFrame as CSV (no index), creating parent directories.

    Floats keep 6 significant digits, like :func:`write_json`, so the file is byte-stable
    across machines (floating-point noise is below that) and DVC sees a stable output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False, float_format=f"%.{SIGNIFICANT_DIGITS}g", lineterminator="\n")
    return path


def spectrum_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    mae_threshold: float = 0.02,
    re_threshold: float = 0.2,
) -> dict[str, Any]:
    """Per-spectrum errors of ``(n, n_bins)`` spectra, averaged over the set.

    ``mae``: mean over spectra of (1/N) sum_i |p_i - a_i| (ALIGNN-DOS eq. 5); ``re``: mean of
    |mean(p) - mean(a)| / mean(a) (eq. 7); ``frac_mae_lt_<t>`` / ``frac_re_lt_<t>``: fraction
    of spectra below the thresholds (paper: 0.02 and 0.2); ``n``: number of spectra. All NaN
    (and n 0) for an empty set.
    """
    per = per_spectrum_errors(y_true, y_pred)
    n = int(per["mae"].shape[0])
    keys = (f"frac_mae_lt_{mae_threshold:g}", f"frac_re_lt_{re_threshold:g}")
    if n == 0:
        return {"mae": math.nan, "re": math.nan, keys[0]: math.nan, keys[1]: math.nan, "n": 0}
    return {
        "mae": float(per["mae"].mean()),
        "re": float(np.nanmean(per["re"])) if np.isfinite(per["re"]).any() else math.nan,
        keys[0]: float(np.mean(per["mae"] < mae_threshold)),
        keys[1]: float(np.mean(per["re"] < re_threshold)),
        "n": n,
    }


def per_spectrum_errors(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """MAE (eq. 5) and relative error RE (eq. 7) of each spectrum; RE is NaN where mean(a) = 0."""
    a = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if a.shape != p.shape or a.ndim != 2:
        raise ValueError(
            f"spectra must be (n, n_bins) arrays of one shape, got {a.shape} and {p.shape}"
        )
    mean_a = a.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        re = np.where(mean_a > 0, np.abs(p.mean(axis=1) - mean_a) / mean_a, np.nan)
    return {"mae": np.abs(p - a).mean(axis=1), "re": re}
