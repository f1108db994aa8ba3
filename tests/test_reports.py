"""The report pages: the DOSnp notebook renders to HTML and PNG figures from small synthetic
inputs, pages hide code, show math as MathML and name no machine path (committed ones too)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from papermill.exceptions import PapermillExecutionError

from esrepro.report_snapshots import SnapshotRenderError, render_snapshot
from esrepro.reports import (
    MACHINE_PATH,
    NotebookExecutionError,
    export_html,
    notebook_path,
    page_problems,
    render_notebook,
)

REPO = Path(__file__).resolve().parents[1]
#: Every page the pipeline and the snapshots committed, and the executed notebooks beside them.
COMMITTED_PAGES = sorted(REPO.glob("reports/**/*.html"))
COMMITTED_EXECUTED = sorted(REPO.glob("reports/**/*.ipynb"))

FIGURES = (
    "fig2_lda_vs_qsgw.png",
    "fig4_parity_histograms.png",
    "fig5_low_energy_zoom.png",
    "validation_gpaw_vs_ecalj.png",
    "training_curves.png",
)
# Oxides, fluorides, other halides and neither, so every Fig. 2 panel has points.
FORMULAS = [
    "MgO", "ZnO", "Al2O3", "SiO2", "LiF", "NaF", "CaF2", "NaCl", "KBr", "AgI",
    "Si", "GaAs", "AlP", "ZnS", "CdTe", "GaN", "BN", "SrTiO3", "KCl", "CsI",
    "BaF2", "TiO2",
]  # fmt: skip


def write_synthetic_inputs(root: Path) -> dict[str, Path]:
    """Write a ~20-material table, DFT summary, predictions, metrics and learning curves."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n = len(FORMULAS)
    ids = np.arange(1000, 1000 + n)
    lda = rng.uniform(0.1, 6.0, n)
    qsgw = 1.3 * lda + 0.6 + rng.normal(0, 0.3, n)
    table = pd.DataFrame(
        {
            "material_id": ids,
            "formula": FORMULAS,
            "nsites": rng.integers(1, 9, n),
            "symmetry-number": 225,
            "symmetry-symbol": "Fm\\overline{3}m",
            "LDA": lda.round(2),
            "1shot": (qsgw * 0.95).round(2),
            "2shot": qsgw.round(2),
            "transition": "I",
        }
    )
    mp_ids = [f"mp-{i}" for i in ids]
    # Two failures (one with a reason containing a separator) and three cache states.
    status = ["computed"] * (n - 2) + ["failed", "failed"]
    status[1], status[2] = "cached", "seed"
    gpaw = np.where(np.array(status) == "failed", np.nan, lda + rng.normal(0, 0.08, n))
    dft = pd.DataFrame(
        {
            "material_id": mp_ids,
            "formula": FORMULAS,
            "nsites": table["nsites"],
            "status": status,
            "reason": [
                "" if s != "failed" else "SCF not converged | 200 iterations" for s in status
            ],
            "gpaw_gap": gpaw,
            "lda_gap_table": lda.round(2),
            "qsgw_gap": qsgw.round(2),
            "wall_s": rng.uniform(5, 40, n),
            "cache_key": [f"{i:040x}" for i in range(n)],
        }
    )
    ok = np.array(status) != "failed"
    m = int(ok.sum())
    # Every 4th material by increasing gap is a test material, so Fig. 5 (test, QSGW < 3 eV)
    # has labelled points.
    rank = np.argsort(np.argsort(qsgw[ok]))
    split = np.where(rank % 4 == 0, "test", "train")
    pred = pd.DataFrame(
        {
            "material_id": np.array(mp_ids)[ok],
            "formula": np.array(FORMULAS)[ok],
            "split": split,
            "n_atoms": table["nsites"].to_numpy()[ok],
            "lda_gap_table": lda[ok],
            "gpaw_gap": gpaw[ok],
            "qsgw_gap": qsgw[ok],
            "pred_dosnp": qsgw[ok] + rng.normal(0, 0.2, m),
            "pred_lrlidg": qsgw[ok] + rng.normal(0, 0.5, m),
            "pred_linear": 1.3 * lda[ok] + 0.6,
        }
    )

    def block(mae: float) -> dict[str, dict[str, float | int | None]]:
        return {
            "train": {"mae": mae, "rmse": mae * 1.3, "r2": 0.9, "n": int((split == "train").sum())},
            "test": {"mae": mae, "rmse": mae * 1.3, "r2": None, "n": int((split == "test").sum())},
        }

    metrics = {
        "n_materials": m,
        "n_dft_failed": n - m,
        "gpaw_vs_ecalj_lda_gap_mae": 0.07,
        "dosnp": block(0.2),
        "lrlidg": {**block(0.45), "n_descriptors": 30},
        "linear": {**block(0.3), "a": 1.3, "b": 0.6},
    }

    paths = {
        "table_csv": root / "tab_nonmag_all.csv",
        "dft_summary_csv": root / "dft_summary.csv",
        "predictions_csv": root / "predictions.csv",
        "metrics_json": root / "metrics.json",
    }
    table.to_csv(paths["table_csv"], index=False)
    dft.to_csv(paths["dft_summary_csv"], index=False)
    pred.to_csv(paths["predictions_csv"], index=False)
    paths["metrics_json"].write_text(json.dumps(metrics))

    # DVCLive layout: plots/metrics/<split>/<name>.tsv with columns timestamp, step, <name>.
    dvclive = root / "dvclive"
    for split_name, name in (("train", "loss"), ("val", "loss"), ("val", "mae")):
        path = dvclive / "plots" / "metrics" / split_name / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        steps = np.arange(1, 11)
        curve = pd.DataFrame({"timestamp": 1_700_000_000 + steps, "step": steps, name: 1.0 / steps})
        curve.to_csv(path, sep="\t", index=False)
    paths["dvclive_dir"] = dvclive
    paths["figures_dir"] = root / "figures"
    return paths


def test_dosnp_notebook_renders(tmp_path: Path, repo_root: Path) -> None:
    params = write_synthetic_inputs(tmp_path / "inputs")
    out = tmp_path / "report"
    html = render_notebook(
        notebook_path("dosnp"), out, params, html_name="dosnp.html", cwd=repo_root
    )
    assert html == out / "dosnp.html"
    assert html.stat().st_size > 0
    assert (out / "dosnp.ipynb").stat().st_size > 0
    for name in FIGURES:
        png = params["figures_dir"] / name
        assert png.is_file(), f"missing figure {name}"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG"
        assert png.stat().st_size > 1000, f"{name} is suspiciously small"
    text = html.read_text(encoding="utf-8")
    # Images are embedded (self-contained page), and the notes the issue asks for are present.
    assert text.count("data:image/png;base64") >= len(FIGURES)
    assert "Effective-mass head" in text
    assert "GPAW PAW LDA (PW92)" in text
    assert "2 failed in DFT" in text
    # A page for readers: results without the code, math as MathML, nothing from the network.
    assert "matplotlib.use(" not in text and "def show(fig, name)" not in text
    assert text.count("<math") >= 3
    assert page_problems(text) == []
    assert not re.search(r"<script[^>]+src=", text)
    assert re.search(r"<h2[^>]*>Paper vs ours", text)
    # The executed notebook records the parameters and its own path relative to the repository.
    executed = (out / "dosnp.ipynb").read_text(encoding="utf-8")
    assert MACHINE_PATH.findall(executed) == []
    record = json.loads(executed)["metadata"]["papermill"]
    assert record["input_path"] == "src/esrepro/notebooks/dosnp.ipynb"
    assert not Path(record["parameters"]["metrics_json"]).is_absolute()


def test_notebook_error_names_the_notebook(tmp_path: Path, repo_root: Path) -> None:
    params = write_synthetic_inputs(tmp_path / "inputs")
    params["metrics_json"] = tmp_path / "does-not-exist.json"
    with pytest.raises(PapermillExecutionError) as info:
        render_notebook(
            notebook_path("dosnp"),
            tmp_path / "report",
            params,
            html_name="dosnp.html",
            cwd=repo_root,
        )
    assert isinstance(info.value, NotebookExecutionError)
    assert "dosnp.ipynb" in str(info.value)
    assert "FileNotFoundError" in str(info.value)
    assert not (tmp_path / "report" / "dosnp.html").exists()


def test_page_shows_math_as_mathml_and_hides_code(tmp_path: Path) -> None:
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell(r"Gap $E_g^{\mathrm{QSGW}}$ and $$\sum_i \mathcal{D}_i(\varepsilon)$$"),
        new_code_cell(
            "SECRET_SOURCE = 1",
            outputs=[
                new_output(
                    "display_data",
                    data={"text/markdown": r"error $\mathcal{L}/\sigma$ = 0.1, code `$x_1$`"},
                )
            ],
        ),
    ]
    executed = tmp_path / "page.ipynb"
    nbformat.write(nb, executed)
    text = export_html(executed, tmp_path / "page.html").read_text(encoding="utf-8")
    assert "SECRET_SOURCE" not in text
    assert "error" in text
    assert text.count("<math") == 3  # two in the Markdown cell, one in the Markdown output
    assert 'display="block"' in text
    assert "<mi>ℒ</mi>" in text  # \mathcal{L}
    assert "<code>$x_1$</code>" in text  # a code span stays as written
    assert "<script" not in text


def test_page_problems_names_raw_latex_and_machine_paths() -> None:
    page = (
        "<p>gap $E_g^{QSGW}$, cost $5 and $6, a/b, see ../../tmp/x and /work/main/data/x.csv</p>"
        "<script>var s = '$x_1$ /home/y';</script>"
    )
    assert page_problems(page) == [
        "raw LaTeX '$E_g^{QSGW}$'",
        "machine path '/work/main/data/x.csv'",
    ]
    assert page_problems("<p>fine: reports/dosnp/metrics.json, 5 $ and <math></math></p>") == []


@pytest.mark.parametrize("page", COMMITTED_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_page_has_no_raw_latex_or_machine_path(page: Path) -> None:
    problems = page_problems(page.read_text(encoding="utf-8"))
    assert problems == [], f"{page.relative_to(REPO)}: {problems[:5]} ({len(problems)} in all)"


@pytest.mark.parametrize("executed", COMMITTED_EXECUTED, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_executed_notebook_has_no_machine_path(executed: Path) -> None:
    found = sorted(set(MACHINE_PATH.findall(executed.read_text(encoding="utf-8"))))
    assert found == [], f"{executed.relative_to(REPO)}: {found[:5]}"


def test_committed_pages_exist() -> None:
    # The parametrized checks above must not pass by finding nothing.
    assert len(COMMITTED_PAGES) >= 3 and len(COMMITTED_EXECUTED) >= 3


def test_render_snapshot_names_every_missing_input(tmp_path: Path, repo_root: Path) -> None:
    snapshot = tmp_path / "reference"
    snapshot.mkdir()
    (snapshot / "metrics.json").write_text("{}")
    with pytest.raises(SnapshotRenderError) as info:
        render_snapshot("dosnp", snapshot, root=repo_root)
    message = str(info.value)
    for name in ("predictions", "cv_metrics", "cv_predictions", "training"):
        assert f"{name} (" in message
    for name in ("table", "dft_summary"):  # under data/: never in a snapshot
        assert f"pass inputs={{{name!r}: ...}}" in message
    assert "metrics (" not in message.replace("cv_metrics (", "")
    assert not (snapshot / "dosnp.html").exists()


def make_dosnp_snapshot(folder: Path) -> dict[str, Path]:
    """A DOSnp snapshot folder from synthetic inputs, and the inputs a snapshot lacks."""
    params = write_synthetic_inputs(folder / "inputs")
    for key in ("predictions_csv", "metrics_json"):
        shutil.copy(params[key], folder / params[key].name)
    shutil.copytree(params["dvclive_dir"], folder / "training")
    (folder / "provenance.json").write_text(json.dumps({"files": {"metrics.json": "x"}}))
    return {
        "table": params["table_csv"],
        "dft_summary": params["dft_summary_csv"],
        # no cross-validation in this snapshot: the notebook says so
        "cv_metrics": folder / "cv_metrics.json",
        "cv_predictions": folder / "cv_predictions.csv",
    }


def test_render_snapshot_reads_inputs_the_snapshot_keeps(tmp_path: Path, repo_root: Path) -> None:
    # snapshot-reference keeps inputs from outside reports/<paper>/ under inputs/<argument>.
    snapshot = tmp_path / "partial"
    (snapshot / "inputs").mkdir(parents=True)
    (snapshot / "inputs" / "table.csv").write_text("id\n")
    (snapshot / "inputs" / "dft_summary.csv").write_text("id\n")
    with pytest.raises(SnapshotRenderError) as info:
        render_snapshot("dosnp", snapshot, root=repo_root)
    assert "table" not in str(info.value) and "dft_summary" not in str(info.value)
    assert "predictions (" in str(info.value)
