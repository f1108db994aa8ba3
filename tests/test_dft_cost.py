"""DFT cost measured from the products (esrepro.dft.cost) and recorded by snapshot-reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from esrepro.cli import app
from esrepro.dft.cost import describe_cost, dft_cost, summarize
from esrepro.dft.product import DFTProduct, read_product_meta
from esrepro.targets import SnapshotError, snapshot_reference
from test_spectra import make_product
from test_targets import PAPER, make_repo

# (material, wall_s, mpi_ranks, host) of the products written below; None: no recorded time.
RUNS = [("mp-1", 10.0, 1, "node-a"), ("mp-2", 20.0, 2, "node-a"), ("mp-3", 30.0, 1, "node-b"),
        ("mp-4", 100.0, 1, "node-b")]


def _write_products(folder: Path, runs: list[tuple[str, float | None, int, str]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for material, wall, ranks, host in runs:
        product = make_product(
            np.array([[-1.0, 1.0]]), np.array([1.0]), np.ones((1, 16, 1, 2)),
            vbm=-1.0, cbm=1.0, fermi=0.0,
        )
        product.meta = {"mpi_ranks": ranks, "host": host}
        if wall is not None:
            product.meta["wall_s"] = wall
        path = folder / f"{material}.npz"
        product.save(path)
        paths.append(path)
    return paths


def test_cost_is_wall_time_times_ranks_summed_over_products(tmp_path: Path) -> None:
    paths = _write_products(tmp_path / "products", RUNS)
    cost = dft_cost(paths)
    core_s = [wall * ranks for _, wall, ranks, _ in RUNS]
    assert cost["n_products"] == cost["n_timed"] == len(RUNS)
    assert cost["core_hours"] == pytest.approx(sum(core_s) / 3600, abs=1e-3)
    per = cost["core_s_per_material"]
    assert per["n"] == len(RUNS)
    assert per["median"] == pytest.approx(np.median(core_s))
    assert per["p90"] == pytest.approx(np.percentile(core_s, 90), abs=0.01)
    assert per["max"] == max(core_s)
    assert cost["mpi_ranks"] == {"1": 3, "2": 1}
    assert cost["hosts"] == {"node-a": 2, "node-b": 2}
    json.dumps(cost)  # provenance.json must be able to hold it


def test_products_without_a_time_are_counted_not_guessed(tmp_path: Path) -> None:
    paths = _write_products(tmp_path / "p", [("mp-1", 12.0, 1, "h"), ("mp-2", None, 1, "h")])
    cost = dft_cost(paths)
    assert (cost["n_products"], cost["n_timed"]) == (2, 1)
    assert cost["core_hours"] == pytest.approx(12.0 / 3600, abs=1e-3)
    assert "1 without a recorded time" in describe_cost(cost)
    untimed = dft_cost(paths[1:])
    assert untimed["core_s_per_material"] is None
    assert "none records its time" in describe_cost(untimed)


def test_step_laps_and_cpu_time_of_band_and_gw_products(tmp_path: Path) -> None:
    # Meta as the band engine (rank 0's CPU) and the G0W0 engine (CPU summed over ranks) write it.
    metas = {
        "bands": {"mpi_ranks": 2, "timings": {"path_setup_wall_s": 100.0, "scf_wall_s": 1000.0,
                                              "scf_cpu_s": 800.0, "path_wall_s": 3000.0,
                                              "path_cpu_s": 2000.0}},
        "gw": {"mpi_ranks": 2, "timings": {"relax_wall_s": 500.0, "relax_cpu_s": 400.0,
                                           "relax_core_s": 900.0, "gw_wall_s": 2000.0,
                                           "gw_cpu_s": 1500.0, "gw_core_s": 3000.0}},
        "ground-state": {"mpi_ranks": 1, "wall_s": 1200.0},
    }
    paths = _write_products(tmp_path / "p", [(m, None, 1, "h") for m in metas])
    for path, meta in zip(paths, metas.values(), strict=True):
        product = DFTProduct.load(path)
        product.meta = meta
        product.save(path)
    cost = dft_cost(paths)
    wall_core_s = (100 + 1000 + 3000) * 2 + (500 + 2000) * 2 + 1200
    assert cost["n_timed"] == 3
    assert cost["core_hours"] == pytest.approx(wall_core_s / 3600, abs=1e-3)
    assert cost["n_cpu_timed"] == 2  # the ground state records wall time only
    assert cost["cpu_core_hours"] == pytest.approx(((800 + 2000) * 2 + 900 + 3000) / 3600,
                                                   abs=1e-3)
    assert "CPU 2.639 core-hours over 2" in describe_cost(cost)


def test_damaged_product_is_named(tmp_path: Path) -> None:
    paths = _write_products(tmp_path / "p", RUNS[:2])
    paths[1].write_bytes(paths[1].read_bytes()[:100])
    with pytest.raises(ValueError, match=r"damaged DFT product file .*mp-2\.npz"):
        read_product_meta(paths[1])
    with pytest.raises(ValueError, match=r"mp-2\.npz"):
        dft_cost(paths)


def test_summarize_refuses_no_values() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        summarize([])


def test_snapshot_records_the_cost_of_the_runs_products(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    products = root / "data" / PAPER / "dft" / "products"
    _write_products(products, RUNS)
    provenance = json.loads(snapshot_reference(PAPER, root=root, wall_time_s=60.0).read_text())
    assert provenance["wall_time_s"] == 60.0
    assert provenance["dft_cost"] == dft_cost(sorted(products.glob("*.npz")))
    assert provenance["dft_cost"]["n_products"] == len(RUNS)


def test_snapshot_without_dft_products_records_no_cost(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    provenance = json.loads(snapshot_reference(PAPER, root=root).read_text())
    assert provenance["dft_cost"] is None


def test_snapshot_refuses_a_damaged_product_before_writing(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    paths = _write_products(root / "data" / PAPER / "dft" / "products", RUNS[:2])
    paths[0].write_bytes(b"not a zip")
    with pytest.raises(SnapshotError, match=r"cannot measure the DFT cost: .*mp-1\.npz"):
        snapshot_reference(PAPER, root=root)
    report = root / "reports" / PAPER
    assert sorted(p.name for p in report.iterdir()) == sorted(
        ["figures", "metrics.json", f"{PAPER}.html", "predictions.csv"]
    )  # no reference folder, no temporary folder left behind


def test_cli_prints_the_cost(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    _write_products(root / "data" / PAPER / "dft" / "products", RUNS)
    result = CliRunner().invoke(
        app, ["snapshot-reference", PAPER, "--root", str(root), "--wall-time-s", "60"]
    )
    assert result.exit_code == 0, result.output
    total_h = sum(wall * ranks for _, wall, ranks, _ in RUNS) / 3600
    assert (
        f"DFT cost: {round(total_h, 3):g} core-hours over {len(RUNS)} product(s)" in result.output
    )
