"""End-to-end smoke run of every paper's pipeline on a tiny profile, as a user drives it.

A temporary git clone of the working tree gets tiny params (4 two-atom materials shared by both
papers, 2 epochs), then: `dvc repro` builds every artifact, ALIGNN-DOS reusing DOSnp's DFT
products; a second `dvc repro` does nothing; `dvc exp run -S model.pooling=max` retrains both
papers without re-running DFT; `dvc metrics diff` and `dvc exp show` work.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.gpaw]

SCHEMA_MODELS = ("dosnp", "lrlidg", "linear")


def _run(cmd: list[str], cwd: Path, *, stdout_only: bool = False) -> str:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    # Stage commands call `python`: make it this interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("ESREPRO_ROOT", None)
    # `dvc exp run` commits experiment refs: a bare CI machine may have no git identity.
    for var in ("GIT_AUTHOR", "GIT_COMMITTER"):
        env.setdefault(f"{var}_NAME", "esrepro-ci")
        env.setdefault(f"{var}_EMAIL", "ci@example.org")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-4000:]}"
    return proc.stdout if stdout_only else output


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory, repo_root: Path, mirror_dir: Path) -> Path:
    """A git clone of the working tree (tracked + untracked, not ignored) with tiny params."""
    repo = tmp_path_factory.mktemp("repo")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=repo_root, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        src = repo_root / name
        # reports/ holds the pipeline's outputs, except the targets file and the committed
        # snapshots, which the report stages read (their "paper vs ours" section).
        committed_input = name == "reports/paper_targets.yaml" or (
            name.startswith("reports/") and name.count("/") >= 3
            and name.split("/")[2] in ("partial", "reference")
        )
        if src.is_file() and (committed_input or not name.startswith(("reports/", "dvc.lock"))):
            dest = repo / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["fetch"]["mirror"] = str(mirror_dir)
    params["dft"]["cache"] = "data/dft-cache"  # git-ignored, like the real cache
    params["dft"]["seed_caches"] = []
    params["dosnp"].update(n_materials=4, max_sites=2, subset_seed=1)
    params["dosnp"]["train"].update(max_epochs=2, batch_size=2, patience=0)
    params["dosnp"]["cv"]["folds"] = 2
    alignn = params["alignn_dos"]
    alignn.update(n_materials=4, max_sites=2, subset_seed=1)  # the DOSnp structures: no new DFT
    alignn["model"].update(alignn_layers=1, gcn_layers=1)
    alignn["model"]["widths"]["ours"].update(hidden_features=16, embedding_features=8)
    alignn["autoencoder"].update(max_epochs=2, widths=[32, 16], patience=0)
    alignn["train"].update(max_epochs=2, batch_size=2, patience=0)
    ldos = params["ldos"]
    ldos.update(mirrored_si={"howweibin_diamond": 5}, generated={})  # five real 2-atom Si cells
    ldos["dft"]["kpt_density"] = 1.0
    ldos["soap"].update(n_max=4, l_max=3, r_cut_scan=[4.0, 5.0])
    ldos["learn"].update(test_fraction=0.4, folds=2, lam=[1.0e-3], zeta=[1], curve_fractions=[1.0])
    bandformer = params["bandformer"]
    # The DOSnp structures again, with coarse band DFT (own products: PBE, the k-path).
    bandformer.update(n_materials=4, max_sites=2, subset_seed=1)
    bandformer["dft"].update(path_kpt_density=3.0, scf={"kpt_density": 1.0, "ecut_ev": 300.0})
    bandformer["bands"]["n_kpoints"] = 32
    bandformer["split"].update(val_fraction=0.25, test_fraction=0.25)
    bandformer["model"].update(d_model=12, n_heads=2, encoder_layers=1, decoder_layers=1,
                               ffn_dim=16, n_gaussians=8, rfft_modes=4)
    bandformer["train"].update(max_epochs=2, batch_size=2, patience=0, warmup_epochs=1)
    vae_gw = params["vae_gw"]
    # The three held-out TMDs and two trainable layers (one per split side) at the tiniest
    # settings the engine takes: no relaxation, a 3x3x1 grid, G0W0 at 10 eV over 30 bands.
    vae_gw["n_materials"] = 5
    vae_gw["dft"].update(ecut_ev=200.0, kpts=[3, 3, 1], vacuum=5.0, relax=False,
                         gw_ecut_ev=10.0, gw_nbands=30, bands_below=2, bands_above=2)
    vae_gw["wavefunctions"].update(bands_per_side=3, z_window=9.0,
                                   super_state_windows_ev=[[-4.0, 0.0], [0.0, 3.0]])
    vae_gw["path"].update(n_kpoints=4, n_generated=3,  # Γ, K, M, Γ; K, mid-KM, M
                          eigenvalue_bands=[2, 2])  # within bands_per_side
    # M is not on the 3x3x1 grid: the finite-momentum network trains at K instead.
    vae_gw["k_distance"].update(finite_k=[1 / 3, 1 / 3], finite_label="K")
    vae_gw["vae"]["train"].update(max_epochs=2, batch_size=16, patience=0)
    vae_gw["gw"]["train"].update(max_epochs=3, batch_size=64, patience=0)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.email=ci@example.org", "-c", "user.name=ci", "commit", "-qm", "tiny"],
    ):
        subprocess.run(cmd, cwd=repo, check=True)
    return repo


@pytest.fixture(scope="module")
def first_repro(tiny_repo: Path) -> str:
    return _run(["dvc", "repro"], tiny_repo)


def test_repro_builds_every_artifact(tiny_repo: Path, first_repro: str) -> None:
    metrics = json.loads((tiny_repo / "reports/dosnp/metrics.json").read_text())
    assert metrics["n_selected"] == 4
    # n_materials counts the materials used: the selected ones whose DFT succeeded.
    assert metrics["n_materials"] == metrics["dosnp"]["train"]["n"] + metrics["dosnp"]["test"]["n"]
    assert metrics["n_dft_failed"] + metrics["n_materials"] == 4
    for model in SCHEMA_MODELS:
        for split in ("train", "test"):
            assert set(metrics[model][split]) >= {"mae", "rmse", "r2", "n"}
    assert metrics["gpaw_vs_ecalj_lda_gap_mae"] < 0.5  # eV; default profile 0.09, partial 0.07
    html = tiny_repo / "reports/dosnp/dosnp.html"
    assert html.stat().st_size > 10_000
    figures = sorted(p.name for p in (tiny_repo / "reports/dosnp/figures").glob("*.png"))
    assert {"fig2_lda_vs_qsgw.png", "fig4_parity_histograms.png", "fig5_low_energy_zoom.png",
            "validation_gpaw_vs_ecalj.png"} <= set(figures)
    cv = json.loads((tiny_repo / "reports/dosnp/cv_metrics.json").read_text())
    n_ok = metrics["dosnp"]["train"]["n"] + metrics["dosnp"]["test"]["n"]
    assert cv["folds"] == 2 and cv["n_materials"] == n_ok
    for model in SCHEMA_MODELS:
        assert cv[model]["n"] == n_ok and len(cv[model]["fold_mae"]) == 2
    oof = (tiny_repo / "reports/dosnp/cv_predictions.csv").read_text().splitlines()
    assert len(oof) == 1 + n_ok  # header + every material once
    assert "cv_parity.png" in figures
    lock = yaml.safe_load((tiny_repo / "dvc.lock").read_text())
    assert {"dosnp_fetch", "dosnp_dft", "dosnp_featurize", "dosnp_train", "dosnp_evaluate",
            "dosnp_cv", "dosnp_report"} <= set(lock["stages"])
    assert {f"alignn_dos_{s}" for s in ("fetch", "dft", "featurize", "autoencoder", "train",
                                        "evaluate", "report")} <= set(lock["stages"])


def test_ldos_artifacts(tiny_repo: Path, first_repro: str) -> None:
    metrics = json.loads((tiny_repo / "reports/ldos/metrics.json").read_text())
    entry = metrics["sets"]["si"]
    assert set(metrics["sets"]) == {"si"}
    assert (
        entry["n_structures"] + entry["n_dft_failed"] == 5
        and entry["n_environments"] == 2 * entry["n_structures"]
    )
    assert set(entry["ldos"]) == {"Si"} and set(entry["ldos"]["Si"]) == {"min", "max", "mean"}
    assert set(entry["dos"]) == {"min", "max", "mean"}
    assert set(metrics["derived"]["si"]) == {"band_energy", "fermi_energy", "dos_at_fermi",
                                             "heat_capacity", "susceptibility", "absorption"}
    assert (tiny_repo / "reports/ldos/ldos.html").stat().st_size > 10_000
    figures = {p.name for p in (tiny_repo / "reports/ldos/figures").glob("*.png")}
    assert {
        "fig1_rcut_scan.png", "fig3_learning_curves.png", "fig6_ldos_best_median_worst.png"
    } <= figures
    lock = yaml.safe_load((tiny_repo / "dvc.lock").read_text())
    assert {
        f"ldos_{s}" for s in ("structures", "dft", "featurize", "learn", "evaluate", "report")
    } <= set(lock["stages"])


def test_alignn_dos_artifacts_and_shared_dft(tiny_repo: Path, first_repro: str) -> None:
    metrics = json.loads((tiny_repo / "reports/alignn_dos/metrics.json").read_text())
    assert metrics["n_materials"] == 4 and metrics["source"] == "gpaw"
    keys = (
        "d_alignn", "ae_alignn_8", "ae_alignn_12", "ae_alignn_16", "ae_alignn_20", "mean_baseline"
    )
    fields = {"mae", "re", "frac_mae_lt_0.02", "frac_re_lt_0.2", "n"}
    for key in keys:
        assert set(metrics[key]) == {"train", "val", "test"}
        assert all(set(metrics[key][split]) == fields for split in ("train", "val", "test"))
        assert set(metrics["jarvis_external"][key]) == fields
        assert metrics["jarvis_external"][key]["n"] == 50
    n_ok = 4 - metrics["n_dft_failed"] - metrics["n_excluded"]
    assert sum(metrics["d_alignn"][s]["n"] for s in ("train", "val", "test")) == n_ok
    assert set(metrics["autoencoder_reconstruction_mae"]) == {"8", "12", "16", "20"}
    assert metrics["n_used"] == n_ok
    # Paired over the same test spectra: the mean difference is the difference of the MAEs.
    paired = metrics["comparisons"]["d_alignn_vs_mean_baseline"]
    assert paired["n"] == metrics["d_alignn"]["test"]["n"]
    gap = metrics["d_alignn"]["test"]["mae"] - metrics["mean_baseline"]["test"]["mae"]
    assert abs(paired["diff"] - gap) < 1e-5
    assert (tiny_repo / "reports/alignn_dos/alignn_dos.html").stat().st_size > 10_000
    figures = {p.name for p in (tiny_repo / "reports/alignn_dos/figures").glob("*.png")}
    assert {"fig4_d_alignn.png", "fig5_ae_alignn_12.png", "table1_latent_vs_mae.png",
            "fig6_periodic_gap.png"} <= figures
    # DOSnp computed the four products; ALIGNN-DOS found every one in the shared cache.
    summary = (tiny_repo / "data/alignn_dos/dft/summary.csv").read_text()
    assert "computed" not in summary and summary.count("cached") == 4 - metrics["n_dft_failed"]


def test_bandformer_artifacts(tiny_repo: Path, first_repro: str) -> None:
    metrics = json.loads((tiny_repo / "reports/bandformer/metrics.json").read_text())
    assert metrics["n_materials"] == 4
    n_ok = 4 - metrics["n_dft_failed"] - metrics["n_excluded"]
    assert metrics["n_used"] == n_ok >= 3
    for model in ("bandformer", "mean_baseline"):
        test = metrics[model]["test"]
        assert set(test) == {"total", "nonmetal", "metal"}
        assert set(test["total"]) >= {"band_center", "band_dispersion", "band_energy", "n"}
        assert test["nonmetal"]["n"] + test["metal"]["n"] == test["total"]["n"]
    assert sum(metrics["bandformer"][s]["total"]["n"] for s in ("train", "val", "test")) == n_ok
    paired = metrics["comparisons"]["bandformer_vs_mean_baseline"]
    assert paired["n"] == metrics["bandformer"]["test"]["total"]["n"]
    assert (tiny_repo / "reports/bandformer/bandformer.html").stat().st_size > 10_000
    figures = {p.name for p in (tiny_repo / "reports/bandformer/figures").glob("*.png")}
    assert {"fig2_parity_violin.png", "fig3_quintiles.png"} <= figures
    summary = (tiny_repo / "data/bandformer/dft/summary.csv").read_text()
    assert summary.count("computed") + summary.count("failed") == 4


def test_vae_gw_artifacts(tiny_repo: Path) -> None:
    # Its own target: a no-op after the full `dvc repro`, and all a `-k vae_gw` run builds.
    _run(["dvc", "repro", "vae_gw_report"], tiny_repo)
    metrics = json.loads((tiny_repo / "reports/vae_gw/metrics.json").read_text())
    assert metrics["n_materials"] == 5
    assert metrics["n_used"] + metrics["n_excluded"] == 5 and metrics["n_used"] >= 4
    for model in ("gw_net", "mean", "linear_edft", "gbm"):
        assert set(metrics[model]) == {"state_split", "material_split", "heldout_tmds"}
        for split in ("state_split", "material_split"):
            block = metrics[model][split]
            assert set(block) == {"all", "semiconductor", "metal"}
            assert set(block["all"]["test"]) == {"mae", "rmse", "n"} and block["all"]["test"]["n"]
            assert block["semiconductor"]["train"]["n"] + block["metal"]["train"]["n"] == (
                block["all"]["train"]["n"])
        assert set(metrics[model]["heldout_tmds"]["all"]) == {"test"}
    # The held-out TMDs are in no training set: every one of their GW states is predicted.
    n_heldout = metrics["gw_net"]["heldout_tmds"]["all"]["test"]["n"]
    for split in ("state_split", "material_split"):
        counts = metrics["gw_split_counts"][split]
        assert counts["heldout"] == n_heldout > 0
        assert sum(counts.values()) == metrics["n_gw_states"]
    assert set(metrics["comparisons"]["material_split"]) == {
        "gw_net_vs_mean", "gw_net_vs_linear_edft", "gw_net_vs_gbm"}
    r2 = metrics["vae_reconstruction_r2"]
    assert r2["heldout"]["n"] > 0 and len(r2["mos2_examples"]) == 3
    assert metrics["parameters"]["gw_net_paper"] == 13_801
    assert metrics["delta_gw_filter"]["n_used"] == metrics["n_gw_states"]
    assert (tiny_repo / "reports/vae_gw/vae_gw.html").stat().st_size > 10_000
    figures = {p.name for p in (tiny_repo / "reports/vae_gw/figures").glob("*.png")}
    assert {"fig2b_mos2_reconstructions.png", "fig2c_gw_parity.png", "fig2d_mos2_bands.png",
            "fig3de_latent_space.png", "fig3a_latent_trajectory.png",
            "fig3b_generated_states.png", "fig3c_k_distance.png", "fig3b_path_bands.png",
            "fig3c_zone_map.png"} <= figures
    assert set(metrics["k_distance_mae"]) == {"gamma", "K"}
    assert metrics["k_distance_mae"]["gamma"]["heldout_tmds"]["n"] == n_heldout
    # The held-out TMDs (hexagonal) on the zone map: their stars tile the 3x3 grid.
    zone_map = metrics["k_distance_mae"]["gamma"]["kpoint_map"]
    assert sum(e["multiplicity"] for e in zone_map["kpoints"]
               if e["group"] == "heldout_tmds") == 9
    generated = metrics["generated_path_states"]["materials"]
    assert {m: r["n_generated"] for m, r in generated.items() if r["status"] == "ok"} == {
        "MoS2-2H": 3, "WS2-2H": 3, "CrS2-2H": 3}
    assert all(r["gap_path_ev"] > 0 for r in generated.values())
    summary = (tiny_repo / "data/vae_gw/dft/summary.csv").read_text()
    assert summary.count("computed") + summary.count("failed") + summary.count("cached") == 5
    lock = yaml.safe_load((tiny_repo / "dvc.lock").read_text())
    assert {f"vae_gw_{s}" for s in ("structures", "dft", "wavefunctions", "path", "featurize",
                                    "vae", "train", "k_distance", "trajectory", "evaluate",
                                    "report")} <= set(lock["stages"])


def test_second_repro_does_nothing(tiny_repo: Path, first_repro: str) -> None:
    output = _run(["dvc", "repro"], tiny_repo)
    assert "Running stage" not in output, output


def test_experiment_changes_pooling_without_dft(tiny_repo: Path, first_repro: str) -> None:
    _run(["git", "add", "-A"], tiny_repo)
    _run(
        ["git", "-c", "user.email=ci@example.org", "-c", "user.name=ci", "commit", "-qm", "lock"],
        tiny_repo,
    )
    output = _run(["dvc", "exp", "run", "-S", "model.pooling=max"], tiny_repo)
    assert "Running stage 'dosnp_train'" in output
    assert "Running stage 'alignn_dos_train'" in output
    for stage in ("dosnp_dft", "dosnp_fetch", "alignn_dos_dft", "alignn_dos_fetch",
                  "bandformer_dft", "bandformer_train"):
        assert f"Running stage '{stage}'" not in output
    # `dvc exp show --json`: one row per baseline (and the workspace), each experiment under its
    # baseline's "experiments" ranges. The baseline still has the per-paper defaults (whose
    # "mean+max" alone would make a plain substring test for "max" pass); the experiment has max.
    rows = json.loads(_run(["dvc", "exp", "show", "--json"], tiny_repo, stdout_only=True))

    def pooling(state: dict) -> object:
        params = ((state.get("data") or {}).get("params") or {}).get("params.yaml") or {}
        return ((params.get("data") or {}).get("model") or {}).get("pooling")

    baselines = [row for row in rows if row["rev"] != "workspace"]
    experiments = [
        e for row in baselines for group in row.get("experiments") or [] for e in group["revs"]
    ]
    assert baselines and all(pooling(row) != "max" for row in baselines), rows
    assert experiments and all(pooling(e) == "max" for e in experiments), experiments
    # The workspace holds the experiment's params: against HEAD, model.pooling became "max".
    diff = json.loads(_run(["dvc", "params", "diff", "--json"], tiny_repo, stdout_only=True))
    assert diff["params.yaml"]["model.pooling"]["new"] == "max", diff
    _run(["dvc", "metrics", "diff"], tiny_repo)
