"""ALIGNN-DOS pieces around the model: DOS targets, gap read-out, metrics, splits, autoencoder,
JARVIS readers, the pooling param, and the train -> evaluate stages on a small real set."""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

from esrepro.dft.product import N_CHANNELS, DFTProduct
from esrepro.jarvis import EDOS_PDOS_URL, fetch_edos_pdos, read_alignn_samples, read_edos_pdos
from esrepro.metrics import per_spectrum_errors, spectrum_metrics
from esrepro.papers.alignn_dos.autoencoder import DOSAutoencoder
from esrepro.papers.alignn_dos.data import graph_record
from esrepro.pooling import pooling_for
from esrepro.spectra import (
    complete_band_range,
    dos_per_electron,
    energy_grid,
    gap_from_dos,
    reference_energy,
)
from esrepro.splits import train_val_test_labels

SAMPLES = (
    "raw.githubusercontent.com/usnistgov/alignn/a8be0bed552ac70c14b8db825a48dbca1d14ad8d"
    "/alignn/examples/sample_data_multi_prop"
)
GRID = energy_grid(-5.0, 9.95, 300)


def _product(
    eigenvalues: np.ndarray, n_electrons: float, vbm: float, cbm: float, fermi: float
) -> DFTProduct:
    n_k, n_b = eigenvalues.shape
    return DFTProduct(
        numbers=np.array([14, 14]), cell=np.eye(3) * 5.0, positions=np.zeros((2, 3)),
        eigenvalues=eigenvalues.astype(np.float32),
        k_weights=np.full(n_k, 1.0 / n_k, dtype=np.float32),
        fermi_level=fermi, vbm=vbm, cbm=cbm, gap=max(cbm - vbm, 0.0), n_electrons=n_electrons,
        projector_weights=np.zeros((2, N_CHANNELS, n_k, n_b), dtype=np.float16),
        band_start=0, band_stop=n_b,
        channel_mask=np.ones((2, N_CHANNELS), dtype=bool),
    )


def _insulator() -> DFTProduct:
    # 2 k-points, 2 occupied bands (4 electrons) at -3..-1 eV, empty bands 1..30 eV: gap 2 eV.
    eig = np.array([[-3.0, -1.0, 1.0, 4.0, 30.0], [-2.5, -1.2, 1.5, 5.0, 31.0]])
    return _product(eig, 4.0, vbm=-1.0, cbm=1.0, fermi=0.3)


def test_reference_conventions() -> None:
    p = _insulator()
    assert reference_energy(p, "midgap") == pytest.approx(0.0)
    assert reference_energy(p, "vbm") == pytest.approx(-1.0)
    assert reference_energy(p, "fermi") == pytest.approx(0.3)
    with pytest.raises(ValueError, match="unknown energy reference 'cbm'"):
        reference_energy(p, "cbm")


def test_dos_per_electron_counts_the_occupied_states() -> None:
    p = _insulator()
    dos = dos_per_electron(p, GRID, 0.1, "midgap")
    occupied = GRID < 0
    # Spin-summed occupied states / electrons = 1; the two empty bands at 1..5 eV hold 2 x 2 / 4
    # (the band at 30 eV lies beyond the grid).
    assert dos[occupied].sum() * 0.05 == pytest.approx(1.0, abs=1e-3)
    assert dos[~occupied].sum() * 0.05 == pytest.approx(1.0, abs=1e-3)
    # One spin channel (JARVIS edos_up): half of it.
    np.testing.assert_allclose(dos_per_electron(p, GRID, 0.1, "midgap", per_spin=True), dos / 2)


def test_dos_refuses_a_grid_beyond_the_computed_bands() -> None:
    eig = np.array([[-3.0, -1.0, 1.0, 4.0, 8.0], [-2.5, -1.2, 1.5, 5.0, 7.5]])
    p = _product(eig, 4.0, vbm=-1.0, cbm=1.0, fermi=0.0)
    assert complete_band_range(p, 0.0) == (pytest.approx(-2.5), pytest.approx(7.5))
    with pytest.raises(
        ValueError, match=r"bands reach only E_ref\+7.50 eV .* needs E_ref\+10.25 eV"
    ):
        dos_per_electron(p, GRID, 0.1, "midgap")


def test_gap_read_off_the_dos() -> None:
    p = _insulator()
    dos = dos_per_electron(p, GRID, 0.1, "midgap")
    gap = gap_from_dos(dos, GRID, 0.005)
    # Band edges at -1 and +1 eV, each a Gaussian (sigma 0.1 eV) of height 0.25 / (sqrt(2 pi) 0.1)
    # per electron, which falls to the threshold 0.005 at sigma sqrt(2 ln(height / 0.005))
    # from the edge: the read-out gap is smaller by twice that, to within a 0.05 eV bin per edge.
    height = 0.25 / (math.sqrt(2 * math.pi) * 0.1)
    expected = 2.0 - 2 * 0.1 * math.sqrt(2 * math.log(height / 0.005))
    assert gap == pytest.approx(expected, abs=0.1)
    assert gap_from_dos(dos, GRID, 1e-12) < gap  # a lower threshold reaches further into the tails
    metal = np.full(300, 0.1)
    assert gap_from_dos(metal, GRID, 0.005) == 0.0
    empty_above = np.where(GRID < -1, 0.1, 0.0)
    assert math.isnan(gap_from_dos(empty_above, GRID, 0.005))


def test_spectrum_metrics_follow_the_paper_definitions() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.0, 0.2, (5, 300))
    p = a + rng.normal(0.0, 0.02, a.shape)
    m = spectrum_metrics(a, p)
    maes = [
        np.mean([abs(pi - ai) for pi, ai in zip(pr, ar, strict=True)])
        for pr, ar in zip(p, a, strict=True)
    ]
    res = [abs(np.mean(pr) - np.mean(ar)) / np.mean(ar) for pr, ar in zip(p, a, strict=True)]
    assert m["mae"] == pytest.approx(np.mean(maes))
    assert m["re"] == pytest.approx(np.mean(res))
    assert m["frac_mae_lt_0.02"] == pytest.approx(np.mean(np.array(maes) < 0.02))
    assert m["frac_re_lt_0.2"] == pytest.approx(np.mean(np.array(res) < 0.2))
    assert m["n"] == 5
    empty = spectrum_metrics(np.zeros((0, 300)), np.zeros((0, 300)))
    assert empty["n"] == 0 and math.isnan(empty["mae"])
    assert math.isnan(per_spectrum_errors(np.zeros((1, 3)), np.ones((1, 3)))["re"][0])
    with pytest.raises(ValueError, match="one shape"):
        spectrum_metrics(a, p[:, :10])


def test_train_val_test_split() -> None:
    ids = [f"mp-{i}" for i in range(100)]
    labels = train_val_test_labels(ids, 0.1, 0.2, seed=0)
    assert (labels.count("train"), labels.count("val"), labels.count("test")) == (70, 10, 20)
    assert labels == train_val_test_labels(ids, 0.1, 0.2, seed=0)
    shuffled = ids[::-1]
    again = dict(zip(shuffled, train_val_test_labels(shuffled, 0.1, 0.2, seed=0), strict=True))
    assert [again[i] for i in ids] == labels
    assert labels != train_val_test_labels(ids, 0.1, 0.2, seed=1)
    with pytest.raises(ValueError, match="bad split fractions"):
        train_val_test_labels(ids, 0.5, 0.6)


def test_autoencoder_shapes_and_output_range() -> None:
    ae = DOSAutoencoder(300, 12, (64, 32))
    linears = [m for m in ae.encoder if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(300, 64), (64, 32), (32, 12)]
    mirrored = [m for m in ae.decoder if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in mirrored] == [(12, 32), (32, 64), (64, 300)]
    assert isinstance(ae.decoder[-1], torch.nn.Sigmoid)
    x = torch.rand(7, 300) * 3 - 1
    code = ae.encode(x)
    assert code.shape == (7, 12) and bool((code >= 0).all())  # ReLU on every encoder layer
    out = ae(x)
    assert out.shape == (7, 300) and bool(((out >= 0) & (out <= 1)).all())
    assert DOSAutoencoder(**ae.hparams_dict()).hparams_dict() == ae.hparams_dict()


def test_pooling_param_per_paper_or_shared() -> None:
    per_paper = {"model": {"pooling": {"dosnp": "mean+max", "alignn_dos": "mean"}}}
    assert pooling_for(per_paper, "dosnp") == "mean+max"
    assert pooling_for(per_paper, "alignn_dos") == "mean"
    shared = {"model": {"pooling": "max"}}  # what `dvc exp run -S model.pooling=max` writes
    assert pooling_for(shared, "dosnp") == pooling_for(shared, "alignn_dos") == "max"
    with pytest.raises(ValueError, match="model.pooling for 'dosnp' is 'median'"):
        pooling_for({"model": {"pooling": "median"}}, "dosnp")
    with pytest.raises(ValueError, match="no entry for 'ldos'"):
        pooling_for(per_paper, "ldos")


def test_repo_params_keep_both_paper_defaults(repo_root: Path) -> None:
    from esrepro.config import load_params

    params = load_params(repo_root / "params.yaml")
    assert pooling_for(params, "dosnp") == "mean+max"
    assert pooling_for(params, "alignn_dos") == "mean"


def _jarvis_record(atoms, jid: str, dos: np.ndarray) -> dict:
    return {
        "jid": jid,
        "atoms": {"lattice_mat": atoms.cell.array.tolist(),
                  "coords": atoms.get_scaled_positions().tolist(),
                  "elements": atoms.get_chemical_symbols(), "cartesian": False},
        "edos_up": dos.tolist(),
    }


@pytest.fixture(scope="module")
def samples(mirror_dir: Path) -> list[dict]:
    return read_alignn_samples(mirror_dir / SAMPLES / "id_prop.csv")


def test_alignn_samples_are_the_50_real_spectra(samples: list[dict]) -> None:
    assert len(samples) == 50
    first = samples[0]
    assert first["jid"] == "JVASP-90856" and first["atoms"].get_chemical_formula() == "As2Cu2Si2Ti2"
    assert all(r["edos_up"].shape == (300,) and (r["edos_up"] >= 0).all() for r in samples)


def test_edos_pdos_reader_round_trips_a_local_file(tmp_path: Path, samples: list[dict]) -> None:
    records = [_jarvis_record(r["atoms"], r["jid"], r["edos_up"]) for r in samples[:5]]
    path = tmp_path / "edos_pdos.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("edos-up_pdos-elast_interp-8-18-2021.json", json.dumps(records))
    read = read_edos_pdos(path)
    assert [r["jid"] for r in read] == [r["jid"] for r in samples[:5]]
    for got, want in zip(read, samples[:5], strict=True):
        np.testing.assert_allclose(got["atoms"].positions, want["atoms"].positions, atol=1e-8)
        np.testing.assert_allclose(got["edos_up"], want["edos_up"])
    records[2]["edos_up"] = records[2]["edos_up"][:299]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(records))
    with pytest.raises(
        ValueError, match=rf"{bad}: bad record {samples[2]['jid']}: edos_up has shape \(299,\)"
    ):
        read_edos_pdos(bad)


def test_edos_pdos_fetch_needs_a_pin_and_reads_the_mirror(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="alignn_dos.jarvis.sha256 is not set"):
        fetch_edos_pdos(EDOS_PDOS_URL, None, None, tmp_path / "x.zip")
    mirror = tmp_path / "mirror"
    mirrored = mirror / "ndownloader.figshare.com/files/29216859"
    mirrored.parent.mkdir(parents=True)
    mirrored.write_bytes(b"[]")
    sha = hashlib.sha256(b"[]").hexdigest()
    path = fetch_edos_pdos(EDOS_PDOS_URL, sha, mirror, tmp_path / "edos.zip")
    assert path.read_bytes() == b"[]"  # the mirrored file arrived intact ...
    with pytest.raises(ValueError, match="no records"):  # ... and an empty set is an error
        read_edos_pdos(path)


def test_graph_record_has_sixteen_neighbours_and_paper_features() -> None:
    rec = graph_record(bulk("NaCl", "rocksalt", a=5.64), k=16)
    edge_index = rec["graph"]["edge_index"]
    counts = torch.bincount(edge_index[0], minlength=2)
    assert bool((counts >= 16).all())
    assert rec["node_features"].shape == (2, 5)
    assert rec["cos_angle"].shape[0] == rec["lg_edge_index"].shape[1]


def test_jarvis_source_runs_fetch_dft_featurize_on_a_local_edos_file(
    tmp_path: Path, mirror_dir: Path, repo_root: Path, samples: list[dict], monkeypatch
) -> None:
    # The real figshare file cannot be downloaded here: a mirror holding a file in its format
    # (the 50 real JARVIS sample spectra), pinned by its sha256, stands in for it.
    import yaml

    from esrepro import config
    from esrepro.stage_cli import run_stage

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "raw.githubusercontent.com").symlink_to(mirror_dir / "raw.githubusercontent.com")
    figshare = mirror / "ndownloader.figshare.com/files/29216859"
    figshare.parent.mkdir(parents=True)
    with zipfile.ZipFile(figshare, "w") as zf:
        zf.writestr("edos.json", json.dumps(
            [_jarvis_record(r["atoms"], r["jid"], r["edos_up"]) for r in samples]
        ))
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["fetch"]["mirror"] = str(mirror)
    params["alignn_dos"].update(source="jarvis", n_materials=12, max_sites=8, subset_seed=3)
    params["alignn_dos"]["jarvis"]["sha256"] = hashlib.sha256(figshare.read_bytes()).hexdigest()
    root = tmp_path / "repo"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.delenv("ESREPRO_MIRROR", raising=False)
    monkeypatch.setenv("ESREPRO_ROOT", str(root))
    config.repo_root.cache_clear()
    try:
        for stage in ("fetch", "dft", "featurize"):
            run_stage("alignn_dos", stage, params)
    finally:
        config.repo_root.cache_clear()
    feats = torch.load(root / "data/alignn_dos/features/dataset.pt", weights_only=True)
    small = {r["jid"]: r for r in samples if len(r["atoms"]) <= 8}
    assert len(feats["material_ids"]) == min(12, len(small))
    assert set(feats["material_ids"]) <= set(small)
    for jid, dos in zip(feats["material_ids"], feats["dos"], strict=True):
        np.testing.assert_allclose(dos.numpy(), small[jid]["edos_up"], rtol=1e-6)
    summary = (root / "data/alignn_dos/dft/summary.csv").read_text()
    assert summary.count("jarvis") == len(feats["material_ids"])  # no DFT for JARVIS targets
    assert sorted(set(feats["split"])) == ["test", "train", "val"]

    # Autoencoder and train stages keep resumable fits: re-running them after they finished
    # (as `dvc repro` does after a later stage was killed) starts no fit and gives the same models.
    import lightning

    params["alignn_dos"]["autoencoder"].update(latents=[8], max_epochs=2)
    params["alignn_dos"]["train"].update(max_epochs=2)

    def train_both() -> dict[str, dict[str, torch.Tensor]]:
        config.repo_root.cache_clear()
        try:
            for stage in ("autoencoder", "train"):
                run_stage("alignn_dos", stage, params)
        finally:
            config.repo_root.cache_clear()
        models = root / "data/alignn_dos/model"
        return {
            p.name: torch.load(p, weights_only=True)["state_dict"]
            for p in sorted(models.glob("*.pt"))
        }

    first = train_both()
    assert sorted(first) == ["ae_alignn_8.pt", "d_alignn.pt"]
    assert sorted(p.name.split("-")[0] for p in (root / "data/alignn_dos/fits").iterdir()) == [
        "ae_8", "ae_alignn_8", "d_alignn"
    ]

    def no_fresh_fit(*args, **kwargs):
        raise AssertionError("a finished fit was trained again")

    monkeypatch.setattr(lightning.Trainer, "fit", no_fresh_fit)
    again = train_both()
    for name, state in first.items():
        for key, tensor in state.items():
            assert torch.equal(tensor, again[name][key]), (name, key)
