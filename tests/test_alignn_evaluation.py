"""ALIGNN-DOS evaluation records: both width presets' parameter counts, the paired comparisons
behind the paper's "which is better" statements, and the interval of the baseline ratio."""

from __future__ import annotations

import math

import numpy as np
import pytest

from esrepro.papers.alignn_dos.model import ALIGNN
from esrepro.papers.alignn_dos.train import alignn_config, comparisons, model_size, ratio_interval
from params_helpers import stage_config
from test_alignn_model import _linear, reference_parameter_count


def test_model_size_counts_the_trained_model_and_the_paper_widths() -> None:
    cfg = stage_config("alignn_dos", "evaluate")
    trained = ALIGNN(**cfg.model.alignn_kwargs(), output_features=300, pooling=cfg.pooling)
    size = model_size(cfg, 300, trained)
    assert size["preset"] == "ours"
    assert size["d_alignn_parameters"] == size["d_alignn_parameters_ours"]
    assert size["d_alignn_parameters"] == sum(p.numel() for p in trained.parameters())
    # The reference widths (embedding 64, hidden 256), added up from the layer sizes: the
    # reference ALIGNN plus the paper's three hidden FC layers.
    paper = reference_parameter_count(5, 300) + 3 * _linear(256, 256)
    assert size["d_alignn_parameters_paper_widths"] == paper
    assert size["paper_widths_over_trained"] == pytest.approx(paper / size["d_alignn_parameters"])
    assert size["paper_widths_over_trained"] > 10  # ours is the narrow preset


def test_the_preset_param_switches_the_trained_widths() -> None:
    ours = alignn_config(stage_config("alignn_dos", "train"), 300)
    paper_cfg = stage_config("alignn_dos", "train", alignn_dos__model__preset="paper")
    paper = alignn_config(paper_cfg, 300)
    assert (ours["embedding_features"], ours["hidden_features"]) == (32, 64)
    assert (paper["embedding_features"], paper["hidden_features"]) == (64, 256)
    assert {k: v for k, v in ours.items() if not k.endswith("_features")} == {
        k: v for k, v in paper.items() if not k.endswith("_features")
    }


def test_comparisons_pair_each_statement_over_the_same_spectra() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.02, 0.03, 40)
    err = {
        "mean_baseline": base,
        "d_alignn": base * 0.5,  # clearly better than the mean
        "ae_alignn_8": base * 1.2,  # clearly worse
        "ae_alignn_12": base + rng.normal(0, 1e-3, 40),  # indistinguishable
    }
    records = comparisons(err, [12, 8])
    assert set(records) == {
        "d_alignn_vs_mean_baseline", "ae_alignn_8_vs_mean_baseline",
        "ae_alignn_12_vs_mean_baseline", "d_alignn_vs_ae_alignn_12", "ae_alignn_12_vs_ae_alignn_8",
    }
    assert records["d_alignn_vs_mean_baseline"]["winner"] == "d_alignn"
    assert records["ae_alignn_8_vs_mean_baseline"]["winner"] == "mean_baseline"
    assert records["ae_alignn_12_vs_mean_baseline"]["winner"] is None
    trend = records["ae_alignn_12_vs_ae_alignn_8"]
    assert (trend["a"], trend["b"]) == ("ae_alignn_12", "ae_alignn_8")
    assert trend["winner"] == "ae_alignn_12"
    assert trend["diff"] == pytest.approx(err["ae_alignn_12"].mean() - err["ae_alignn_8"].mean())


def test_ratio_interval_brackets_the_ratio_of_means() -> None:
    rng = np.random.default_rng(1)
    den = rng.uniform(0.005, 0.02, 60)
    num = den * 3.0  # every spectrum 3x: the ratio cannot vary under resampling
    assert ratio_interval(num, den) == pytest.approx([3.0, 3.0])
    noisy = den * 3.0 + rng.normal(0, 0.01, 60)
    lo, hi = ratio_interval(noisy, den)
    assert lo < noisy.mean() / den.mean() < hi
    assert all(math.isnan(v) for v in ratio_interval(num[:1], den[:1]))  # one spectrum: undefined
