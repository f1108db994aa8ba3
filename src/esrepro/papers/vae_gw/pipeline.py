"""The VAE-GW pipeline, one function per DVC stage (declared in ``...vae_gw.paper``).

    structures -> dft -> wavefunctions -> featurize -> vae -> train -> evaluate -> report
    Fig. 3: dft -> path; path, vae -> trajectory; features, vae -> k_distance; both -> evaluate

Structures: the 2D set built with ASE (:mod:`esrepro.papers.vae_gw.structures`), a prefix of
its seeded order (the held-out TMDs MoS2, WS2, CrS2 first). Labels: the DFT engine's G0W0
products (:mod:`esrepro.dft.gw_product`: in-plane relaxation, PBE, G0W0 on the irreducible
k-points); inputs: |ψ|² of the same ground state on the paper's 40 × 28 × 28 grid, regenerated
locally (:mod:`esrepro.dft.wavefunction_product`). Both are farmed through the shared cache,
as are Fig. 3a-b's path states (:mod:`esrepro.dft.path_wavefunctions`); Fig. 3's analysis is
:mod:`esrepro.papers.vae_gw.fig3`.

Each function takes its stage's typed config (``esrepro.papers.vae_gw.config``) and the paths
the registry entry declares; imports a single stage needs stay inside its function, so each
stage's code dependencies (``dvc.yaml``) are what it actually runs.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from esrepro.papers.vae_gw.config import (
    DFTConfig,
    GWParams,
    KDistanceConfig,
    PathConfig,
    StructuresConfig,
    TrainConfig,
    TrajectoryConfig,
    VAEConfig,
    WavefunctionsConfig,
)

log = logging.getLogger(__name__)

#: Columns of ``dft/summary.csv`` taken from each product's meta["timings"] (seconds).
TIMING_COLUMNS = ("relax_wall_s", "ground_state_wall_s", "gw_wall_s", "relax_core_s",
                  "ground_state_core_s", "gw_core_s")


def stage_structures(cfg: StructuresConfig, *, raw: Path) -> None:
    """The selected monolayers (extended XYZ) and ``selected.csv`` (material_id, prototype,
    formula, n_atoms, heldout) into ``raw``."""
    from ase.io import write

    from esrepro.papers.vae_gw.structures import select_materials

    materials = select_materials(cfg.n_materials, cfg.subset_seed)
    folder = raw / "structures"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.xyz"):
        stale.unlink()
    rows = []
    for material in materials:
        atoms = material.atoms()
        write(folder / f"{material.id}.xyz", atoms, format="extxyz")
        rows.append({"material_id": material.id, "prototype": material.prototype,
                     "formula": material.formula, "n_atoms": len(atoms),
                     "heldout": material.heldout})
    pd.DataFrame(rows).to_csv(raw / "selected.csv", index=False)
    log.info("%d materials (%d held out)", len(rows), sum(r["heldout"] for r in rows))


def load_selected(raw: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``selected.csv`` and the structures it names (layers: periodic in-plane only, so not
    through `esrepro.structures.read_structure`, which wants 3D cells)."""
    from ase.io import read

    from esrepro.errors import InputError

    selected = pd.read_csv(raw / "selected.csv")
    structures = {}
    for material_id in selected["material_id"]:
        path = raw / "structures" / f"{material_id}.xyz"
        try:
            structures[material_id] = read(path, format="extxyz")
        except Exception as err:  # ASE raises many types for a missing or damaged file
            raise InputError(f"cannot read structure {path}: {type(err).__name__}: {err}"
                             ) from None
    return selected, structures


def stage_dft(cfg: DFTConfig, *, raw: Path, dft: Path) -> None:
    """A G0W0 product per structure (cache and seeds first; farmed, resumable), copied to
    ``dft/products``, and ``dft/summary.csv``: status, failure reason, cache key, metal flag,
    gaps and the timings of each step."""
    from esrepro.dft.gw_product import GWProduct, GWSettings
    from esrepro.dft.stage import run_gw_stage

    settings = GWSettings.from_params(cfg.settings, source="params.yaml vae_gw.dft")
    selected, structures = load_selected(raw)
    dft.mkdir(parents=True, exist_ok=True)
    records = {r.material_id: r for r in run_gw_stage(structures, cfg.as_params(), settings, dft)}
    rows = []
    for material_id in selected["material_id"]:
        record = records[material_id]
        row: dict[str, Any] = {"status": record.status, "reason": record.reason,
                               "cache_key": record.cache_key}
        if record.status != "failed":
            product = GWProduct.load(dft / "products" / f"{material_id}.npz")
            timings = product.meta.get("timings", {})
            row.update(is_metal=product.is_metal, gap_dft=product.gap_dft,
                       gap_gw=product.gap_gw, n_kpoints=len(product.kpoints),
                       n_window=product.e_dft.shape[1],
                       **{c: timings.get(c, float("nan")) for c in TIMING_COLUMNS})
        rows.append(row)
    summary = pd.concat([selected, pd.DataFrame(rows)], axis=1)
    summary.to_csv(dft / "summary.csv", index=False)


def stage_wavefunctions(cfg: WavefunctionsConfig, *, dft: Path, wavefunctions: Path) -> None:
    """|ψ|² of every exported state, the charge density and the super states of each GW
    product's relaxed structure (the same ground state regenerated; farmed through the local
    cache), copied to ``wavefunctions/products``, with ``wavefunctions/summary.csv``."""
    from esrepro.dft.gw_product import GWProduct, GWSettings
    from esrepro.dft.stage import run_gw_stage
    from esrepro.dft.wavefunction_product import WavefunctionSettings

    gw = GWSettings.from_params(cfg.gw_settings, source="params.yaml vae_gw.dft")
    settings = WavefunctionSettings.from_params(gw, cfg.settings)
    summary = pd.read_csv(dft / "summary.csv", keep_default_na=False)
    ok = summary[summary["status"] != "failed"]["material_id"].tolist()
    structures = {m: GWProduct.load(dft / "products" / f"{m}.npz").atoms() for m in ok}
    wavefunctions.mkdir(parents=True, exist_ok=True)
    records = run_gw_stage(structures, cfg.as_params(), settings, wavefunctions)
    pd.DataFrame([{"material_id": r.material_id, "status": r.status, "reason": r.reason,
                   "cache_key": r.cache_key} for r in records],
                 columns=["material_id", "status", "reason", "cache_key"]
                 ).to_csv(wavefunctions / "summary.csv", index=False)


def stage_path(cfg: PathConfig, *, dft: Path, path: Path) -> None:
    """Fig. 3a-b's DFT: |ψ|² of one band along Γ–K–M–Γ of each material of ``vae_gw.path``
    and the eigenvalues of ``eigenvalue_bands`` around the gap
    (its GW product's relaxed structure, the wavefunction export's ground state and grid; a
    fixed-density run on the path; farmed through the local cache,
    :mod:`esrepro.dft.path_wavefunctions`), copied to ``path/products``, with
    ``path/summary.csv`` (status, reason, cache key, timings). A material without a GW product
    is recorded as failed with that reason."""
    from esrepro.dft.gw_product import GWProduct, GWSettings
    from esrepro.dft.path_wavefunctions import PathSettings, PathWavefunctionProduct
    from esrepro.dft.stage import run_gw_stage
    from esrepro.dft.wavefunction_product import WavefunctionSettings

    gw = GWSettings.from_params(cfg.gw_settings, source="params.yaml vae_gw.dft")
    export = WavefunctionSettings.from_params(gw, cfg.settings)
    p = cfg.path
    settings = PathSettings.from_wavefunctions(export, n_kpoints=p.n_kpoints,
                                               n_dense=p.n_generated,
                                               band_offsets=(p.band_offset,),
                                               eigenvalue_bands=tuple(p.eigenvalue_bands))
    summary = pd.read_csv(dft / "summary.csv", keep_default_na=False).set_index("material_id")
    rows: dict[str, dict[str, Any]] = {}
    structures = {}
    for material_id in p.materials:
        if material_id not in summary.index:
            rows[material_id] = {"status": "failed", "reason": "not selected (vae_gw.n_materials)"}
        elif summary.loc[material_id, "status"] == "failed":
            rows[material_id] = {"status": "failed", "reason": "G0W0 failed: "
                                 f"{summary.loc[material_id, 'reason']}"}
        else:
            structures[material_id] = GWProduct.load(dft / "products" / f"{material_id}.npz"
                                                     ).atoms()
    path.mkdir(parents=True, exist_ok=True)
    for record in run_gw_stage(structures, cfg.as_params(), settings, path):
        rows[record.material_id] = {"status": record.status, "reason": record.reason,
                                    "cache_key": record.cache_key}
    table = []
    for material_id in p.materials:
        row = {"material_id": material_id, "cache_key": "", **rows[material_id]}
        if row["status"] != "failed":
            product = PathWavefunctionProduct.load(path / "products" / f"{material_id}.npz")
            row.update(product.meta.get("timings", {}))
            row["n_kpoints"] = len(product.kpoints)
        table.append(row)
    pd.DataFrame(table).to_csv(path / "summary.csv", index=False)


def stage_featurize(*, raw: Path, dft: Path, wavefunctions: Path, features: Path) -> None:
    """The state table (``states.csv``, :func:`esrepro.papers.vae_gw.data.state_table`), the
    materials (``materials.csv``) and the tensors (``tensors.pt``: |ψ|² of every state as
    float16, each material's charge density and super states). A material whose DFT or
    wavefunction export failed, or whose two products disagree, is left out with its reason
    in ``excluded.csv``, never silently."""
    import numpy as np
    import torch

    from esrepro.dft.gw_product import GWProduct
    from esrepro.dft.wavefunction_product import WavefunctionProduct
    from esrepro.errors import InputError
    from esrepro.papers.vae_gw.data import reciprocal_numbers, state_table

    selected = pd.read_csv(raw / "selected.csv")
    gw_summary = pd.read_csv(dft / "summary.csv", keep_default_na=False).set_index("material_id")
    wf_summary = pd.read_csv(wavefunctions / "summary.csv",
                             keep_default_na=False).set_index("material_id")
    tables, materials, excluded = [], [], []
    states, densities, supers = [], [], []
    for _, row in selected.iterrows():
        material_id = row["material_id"]
        if gw_summary.loc[material_id, "status"] == "failed":
            excluded.append({"material_id": material_id,
                             "reason": f"G0W0 failed: {gw_summary.loc[material_id, 'reason']}"})
            continue
        if wf_summary.loc[material_id, "status"] == "failed":
            excluded.append({"material_id": material_id, "reason": "wavefunction export "
                             f"failed: {wf_summary.loc[material_id, 'reason']}"})
            continue
        gw = GWProduct.load(dft / "products" / f"{material_id}.npz")
        waves = WavefunctionProduct.load(wavefunctions / "products" / f"{material_id}.npz")
        try:
            table = state_table(material_id, gw, waves, heldout=bool(row["heldout"]))
        except ValueError as err:
            excluded.append({"material_id": material_id, "reason": str(err)})
            continue
        tables.append(table)
        states.append(torch.from_numpy(np.asarray(waves.states, dtype=np.float16)))
        densities.append(torch.from_numpy(np.asarray(waves.density, dtype=np.float32)))
        supers.append(torch.from_numpy(np.asarray(waves.super_states, dtype=np.float32)))
        b1, b2, cos_b = reciprocal_numbers(gw.cell)
        materials.append({
            "material_id": material_id, "formula": row["formula"], "prototype": row["prototype"],
            "heldout": bool(row["heldout"]), "is_metal": gw.is_metal, "gap_dft": gw.gap_dft,
            "gap_gw": gw.gap_gw, "lattice_constant": gw.lattice_constant,
            "density_max": waves.density_max, "n_states": len(table),
            "n_gw_states": int(table["in_gw_window"].sum()), "b1": b1, "b2": b2, "cos_b": cos_b,
        })
    features.mkdir(parents=True, exist_ok=True)
    if not tables:
        raise InputError(f"no material has both products ({len(excluded)} excluded: see "
                           f"{features / 'excluded.csv'})")
    pd.concat(tables, ignore_index=True).to_csv(features / "states.csv", index=False)
    pd.DataFrame(materials).to_csv(features / "materials.csv", index=False)
    pd.DataFrame(excluded, columns=["material_id", "reason"]).to_csv(
        features / "excluded.csv", index=False)
    torch.save({"states": torch.cat(states), "density": torch.stack(densities),
                "super": torch.stack(supers),
                "materials": [m["material_id"] for m in materials]}, features / "tensors.pt")
    log.info("featurized %d materials, %d states (%d excluded)", len(materials),
             sum(len(t) for t in tables), len(excluded))


def stage_vae(cfg: VAEConfig, *, features: Path, vae: Path, fits: Path) -> None:
    """The state VAE (``vae_gw.vae.kind``) on the VAE's training states, the charge-density VAE
    on ρ … ρ⁴ and the super-state VAE, both on the VAE's training materials; their model files
    (``vae_state.pt``, ``vae_density.pt``, ``vae_super.pt``, `esrepro.training.load_model`)
    and ``latents.npz``: μ and log σ² of every state, density power and super state, with
    each state's part of the VAE split."""
    import numpy as np
    import torch

    from esrepro.errors import InputError
    from esrepro.papers.vae_gw.data import density_powers, vae_split
    from esrepro.papers.vae_gw.model import VAEConfig as NetworkConfig
    from esrepro.papers.vae_gw.train import encode_latents, fit_vae

    p = cfg.vae
    train_params = p.train
    states = pd.read_csv(features / "states.csv")
    tensors = torch.load(features / "tensors.pt", weights_only=False)
    images = tensors["states"].float()
    split = vae_split(states, p.split.holdout_materials, p.split.val_fraction,
                      p.split.test_fraction, p.split.seed)
    n_slices, grid = int(images.shape[1]), int(images.shape[-1])
    vae.mkdir(parents=True, exist_ok=True)
    train, val = images[split == "train"], images[split == "val"]
    if not len(train):
        raise InputError("params.yaml vae_gw.vae.split: no VAE training state is left (lower "
                         "holdout_materials or select more materials)")
    counts = {part: int((split == part).sum())
              for part in ("train", "val", "test", "holdout", "heldout")}
    state_vae, _ = fit_vae(
        train, val if len(val) else None,
        NetworkConfig(kind=p.kind, in_channels=n_slices, latent=p.latent, grid=grid),
        train_params, vae, name="vae_state", resume_root=fits, metadata={"split": counts},
    )

    # The auxiliary VAEs see the materials whose states the state VAE trains on.
    materials = list(tensors["materials"])
    seen = set(states.loc[split == "train", "material_id"])
    seen_rows = [i for i, m in enumerate(materials) if m in seen]
    n_powers = 4  # the code's rho, rho^2, rho^3, rho^4
    powers = torch.from_numpy(np.stack([density_powers(d.numpy(), n_powers)
                                        for d in tensors["density"]]))
    supers = tensors["super"].float()
    aux = NetworkConfig(kind="plain", in_channels=n_slices, latent=p.aux_latent,
                        hidden=tuple(p.aux_hidden), grid=grid)
    density_vae, _ = fit_vae(powers[seen_rows].reshape(-1, n_slices, grid, grid), None, aux,
                             train_params, vae, name="vae_density", resume_root=fits)
    super_vae, _ = fit_vae(supers[seen_rows].reshape(-1, n_slices, grid, grid), None, aux,
                           train_params, vae, name="vae_super", resume_root=fits)

    def latents(net, stack: torch.Tensor) -> np.ndarray:
        flat = stack.reshape(-1, n_slices, grid, grid)
        return encode_latents(net, flat).numpy().reshape(*stack.shape[:2], -1)

    np.savez_compressed(
        vae / "latents.npz",
        state_id=states["state_id"].to_numpy().astype(str),
        vae_split=split,
        state=encode_latents(state_vae, images).numpy(),
        density=latents(density_vae, powers),
        super=latents(super_vae, supers),
        materials=np.asarray(materials, dtype=str),
    )


@dataclasses.dataclass
class GWInputs:
    """The GW network's data (:func:`gw_inputs`): the GW states used (``used``, labelled and
    inside the code's ΔGW window), their inputs and targets, and what built them."""

    used: pd.DataFrame
    parts: dict[str, Any]
    net_config: Any  # model.GWNetConfig
    inputs: Any  # torch.Tensor (n_used, input size)
    target: Any  # torch.Tensor (n_used,)
    kept: Any  # train.DeltaGWFilter


def gw_inputs(features: Path, vae: Path, gw: GWParams, seed: int) -> GWInputs:
    """What every GW network of the paper reads (the train stage's and Fig. 3c's): states,
    latents, the lattice code (fitted on the trainable materials, seeded with ``seed``), the
    density and super-state latents, assembled as ``gw.inputs`` says."""
    import numpy as np
    import torch

    from esrepro.errors import InputError
    from esrepro.papers.vae_gw.model import GWNetConfig, assemble_inputs
    from esrepro.papers.vae_gw.train import filter_delta_gw, fit_lattice_code

    states = pd.read_csv(features / "states.csv")
    materials = pd.read_csv(features / "materials.csv")
    with np.load(vae / "latents.npz") as z:
        latents = {name: z[name] for name in z.files}
    if list(latents["state_id"]) != states["state_id"].astype(str).tolist():
        raise InputError(f"{vae / 'latents.npz'} does not hold the states of "
                         f"{features / 'states.csv'} (re-run the vae stage)")
    row_of = {m: i for i, m in enumerate(latents["materials"])}
    mat_rows = states["material_id"].map(row_of).to_numpy()

    labelled = states["in_gw_window"].to_numpy(dtype=bool)
    kept = filter_delta_gw(states.loc[labelled, "e_gw"], states.loc[labelled, "e_dft"])
    use = np.flatnonzero(labelled)[kept.keep]
    used = states.iloc[use].reset_index(drop=True)

    # The code's lattice code: its 3 -> 1 -> 3 autoencoder of reciprocal-lattice numbers,
    # fitted on the trainable materials only.
    reciprocal = torch.tensor(materials.set_index("material_id").loc[
        list(latents["materials"]), ["b1", "b2", "cos_b"]].to_numpy(), dtype=torch.float32)
    trainable = ~materials.set_index("material_id").loc[
        list(latents["materials"]), "heldout"].to_numpy(dtype=bool)
    lattice, _ = fit_lattice_code(reciprocal[trainable], seed=seed)
    with torch.no_grad():
        lattice_code = lattice.encoder(reciprocal).squeeze(-1).numpy()
    density_max = materials.set_index("material_id").loc[
        list(latents["materials"]), "density_max"].to_numpy()

    rows = mat_rows[use]
    n_super = latents["super"].shape[1]
    n_powers = latents["density"].shape[1]
    net_config = GWNetConfig(
        inputs=gw.inputs, state_latent=latents["state"].shape[1] // 2,
        aux_latent=latents["density"].shape[2] // 2, n_super=n_super,
        n_density_powers=n_powers, hidden=tuple(gw.hidden),
    )
    parts = {
        "max_density": density_max[rows], "e_dft": used["e_dft"].to_numpy(),
        "lattice_code": lattice_code[rows], "state": latents["state"][use],
        **{f"density_{p + 1}": latents["density"][rows, p] for p in range(n_powers)},
        **{f"super_{i + 1}": latents["super"][rows, i] for i in range(n_super)},
    }
    inputs = assemble_inputs(net_config, {k: torch.as_tensor(np.asarray(v, np.float32))
                                          for k, v in parts.items()})
    target = torch.as_tensor(used["delta_gw"].to_numpy(np.float32))
    return GWInputs(used, parts, net_config, inputs, target, kept)


def stage_train(cfg: TrainConfig, *, features: Path, vae: Path, gw: Path, fits: Path) -> None:
    """The GW network (``vae_gw.gw``) and the three baselines under both splits, on the GW
    states the code's −5 < ΔGW < 4.7 eV filter keeps; the held-out TMDs are in no training
    set. Writes the networks (``gw_state_split.pt``, ``gw_material_split.pt``),
    ``predictions.csv`` (every kept GW state: its parts and every model's ΔGW) and
    ``train.json`` (filter counts, parameter counts, the input layout)."""
    import json

    import numpy as np
    import torch

    from esrepro.errors import InputError
    from esrepro.papers.vae_gw.baselines import BASELINES, make_baseline, state_features
    from esrepro.papers.vae_gw.data import gw_splits
    from esrepro.papers.vae_gw.model import assemble_inputs, input_layout
    from esrepro.papers.vae_gw.train import (
        DELTA_GW_WINDOW,
        fit_gw,
        predict_gw,
    )
    from esrepro.plain_json import plain_json

    data = gw_inputs(features, vae, cfg.gw, cfg.split.seed)
    used, parts, net_config = data.used, data.parts, data.net_config
    inputs, target, kept = data.inputs, data.target, data.kept
    parts_of = gw_splits(used, cfg.split.state_test_fraction, cfg.split.material_test_fraction,
                         cfg.split.val_fraction, cfg.split.seed)
    orbital = used[[c for c in used.columns if c.startswith("orbital_")]].to_numpy()
    features_x = state_features(used["e_dft"], used["band_from_gap"], orbital)

    gw.mkdir(parents=True, exist_ok=True)
    out = used[["state_id", "material_id", "heldout", "is_metal", "k_index", "band",
                "band_offset", "e_dft", "e_gw", "delta_gw"]].copy()
    parameters = {}
    for split_name in ("state_split", "material_split"):
        part = parts_of[split_name]
        out[split_name] = part
        train, val = part == "train", part == "val"
        if not train.any():
            raise InputError(f"params.yaml vae_gw.split: the {split_name} leaves no GW training "
                             "state (select more materials)")
        net, _ = fit_gw(
            inputs[train], target[train],
            inputs[val] if val.any() else None, target[val] if val.any() else None,
            net_config, cfg.gw.train, gw,
            name=f"gw_{split_name}", resume_root=fits,
            metadata={"split": split_name},
        )
        parameters["gw_net"] = sum(p.numel() for p in net.parameters())
        out[f"gw_net__{split_name}"] = predict_gw(net, inputs)
        fit_rows = train | val  # baselines need no early stopping: they fit train and val
        for name in BASELINES:
            model = make_baseline(name, seed=cfg.split.seed)
            model.fit(features_x[fit_rows], used["delta_gw"].to_numpy()[fit_rows])
            out[f"{name}__{split_name}"] = model.predict(features_x)
    # Fig. 2f: the network again without one input group, on the state split (the paper's).
    part = parts_of["state_split"]
    train, val = part == "train", part == "val"
    for group in cfg.gw.ablations:
        ablated = dataclasses.replace(net_config, ablate=(group,))
        x = assemble_inputs(ablated, {k: torch.as_tensor(np.asarray(v, np.float32))
                                      for k, v in parts.items()})
        net, _ = fit_gw(
            x[train], target[train], x[val] if val.any() else None,
            target[val] if val.any() else None, ablated,
            cfg.gw.train, gw / "ablations",
            name=f"gw_without_{group}", resume_root=fits, metadata={"ablate": group},
        )
        out[f"gw_net_without_{group}__state_split"] = predict_gw(net, x)
    out.to_csv(gw / "predictions.csv", index=False)
    (gw / "train.json").write_text(json.dumps(plain_json({
        "filter": {"window_ev": list(DELTA_GW_WINDOW), "n_labelled": kept.n_total,
                   "n_missing": kept.n_missing, "n_out_of_window": kept.n_out_of_window,
                   "n_dropped": kept.n_dropped, "n_used": int(len(used))},
        "gw_net": {"inputs": cfg.gw.inputs, "parameters": parameters["gw_net"],
                   "layout": input_layout(net_config)},
    }), indent=2, sort_keys=True) + "\n")


def stage_k_distance(cfg: KDistanceConfig, *, dft: Path, features: Path, vae: Path,
                     k_distance: Path, fits: Path) -> None:
    """Fig. 3c: the GW network of the train stage (same inputs, widths and training) fitted
    on the states of one k-point of the trainable materials only, at Γ and at
    ``vae_gw.k_distance.finite_k``; ``val_fraction`` of those states stop it early. Writes the
    networks (``gw_at_<label>.pt``), ``states.csv`` (every used GW state: distance from each
    trained k-point, trained or not, each network's ΔGW) and ``k_distance.json``
    (:func:`esrepro.papers.vae_gw.fig3.k_distance_record` per network, with its zone map
    :func:`~esrepro.papers.vae_gw.fig3.kpoint_map` under ``kpoint_map``)."""
    import json

    import numpy as np

    from esrepro.dft.gw_product import GWProduct
    from esrepro.errors import InputError
    from esrepro.papers.vae_gw.fig3 import k_distance_record, kpoint_map, state_distances
    from esrepro.papers.vae_gw.train import fit_gw, predict_gw
    from esrepro.plain_json import plain_json
    from esrepro.splits import random_split_labels

    data = gw_inputs(features, vae, cfg.gw, cfg.split.seed)
    used = data.used
    cells = {m: GWProduct.load(dft / "products" / f"{m}.npz").cell
             for m in used["material_id"].unique()}
    heldout = used["heldout"].astype(bool).to_numpy()
    ids = used["state_id"].astype(str).to_numpy()
    out = used[["state_id", "material_id", "heldout", "k_index", "kx", "ky", "band_offset",
                "delta_gw"]].copy()
    k_distance.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {}
    points = {"gamma": (0.0, 0.0), cfg.k_distance.finite_label: cfg.k_distance.finite_k}
    for label, k0 in points.items():
        distance, on = state_distances(used, cells, np.asarray(k0, float))
        trained = on & ~heldout
        if not trained.any():
            raise InputError(f"no trainable GW state lies on the k-point {label} {list(k0)} "
                             "(params.yaml vae_gw.k_distance)")
        # Validation states for early stopping: a seeded share of the trained k-point's states.
        val = np.zeros(len(used), dtype=bool)
        if cfg.split.val_fraction > 0 and trained.sum() >= 2:
            labels = random_split_labels(list(ids[trained]), cfg.split.val_fraction,
                                         cfg.split.seed + 1)
            val[np.flatnonzero(trained)] = np.asarray(labels) == "test"
        fit = trained & ~val
        net, _ = fit_gw(
            data.inputs[fit], data.target[fit],
            data.inputs[val] if val.any() else None, data.target[val] if val.any() else None,
            data.net_config, cfg.gw.train, k_distance,
            name=f"gw_at_{label}", resume_root=fits,
            metadata={"trained_k": list(k0), "label": label},
        )
        out[f"distance__{label}"] = distance
        out[f"trained__{label}"] = trained
        out[f"gw_net__{label}"] = predict_gw(net, data.inputs)
        frame = pd.DataFrame({
            "material_id": used["material_id"], "heldout": heldout,
            "k_index": used["k_index"], "distance": distance, "trained": trained,
            "abs_error": np.abs(out[f"gw_net__{label}"] - used["delta_gw"]).to_numpy(),
        })
        record[label] = {"k_fractional": [float(v) for v in k0],
                         "n_fit": int(fit.sum()), "n_val": int(val.sum()),
                         **k_distance_record(frame, cfg.k_distance.bin_width),
                         "kpoint_map": kpoint_map(frame.assign(
                             kx=used["kx"].to_numpy(float), ky=used["ky"].to_numpy(float),
                             at_trained_k=on), cells)}
    out.to_csv(k_distance / "states.csv", index=False)
    (k_distance / "k_distance.json").write_text(
        json.dumps(plain_json(record), indent=2, sort_keys=True) + "\n")


def stage_trajectory(cfg: TrajectoryConfig, *, path: Path, vae: Path, trajectory: Path) -> None:
    """Fig. 3a-b: each path product's states encoded by the state VAE (μ, the latent
    trajectory); μ interpolated between consecutive trajectory states at the k-points of the
    dense K → M points and decoded; each generated state's R² (the code's) against the DFT
    state there, and the reconstruction's. Writes ``trajectory.json`` (per material: R² of
    each generated state, their means, the PBE gap along the path) and ``trajectory.npz``
    (what the report draws, with the path's band energies from the vacuum level)."""
    import json

    import numpy as np
    import torch

    from esrepro.dft.path_wavefunctions import PathWavefunctionProduct
    from esrepro.papers.vae_gw.fig3 import interpolate_latents
    from esrepro.papers.vae_gw.model import rotate_per_sample
    from esrepro.papers.vae_gw.train import encode_latents, reconstruct
    from esrepro.papers.vae_gw.train import reconstruction_r2 as code_r2
    from esrepro.plain_json import plain_json
    from esrepro.training.model_files import load_model

    state_vae = load_model(vae / "vae_state.pt").eval()
    latent = state_vae.config.latent
    summary = pd.read_csv(path / "summary.csv", keep_default_na=False)
    trajectory.mkdir(parents=True, exist_ok=True)
    materials: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    done = []
    for _, row in summary.iterrows():
        material_id = row["material_id"]
        if row["status"] == "failed":
            materials[material_id] = {"status": "failed", "reason": row["reason"]}
            continue
        product = PathWavefunctionProduct.load(path / "products" / f"{material_id}.npz")
        band = 0  # the product's one band (vae_gw.path.band_offset)
        images = torch.from_numpy(np.asarray(product.states[:, band], np.float32))
        mu = encode_latents(state_vae, images).numpy()[:, :latent]
        on = product.trajectory
        dense_rows = np.flatnonzero(product.dense)
        dense_rows = dense_rows[np.argsort(product.arc[dense_rows], kind="stable")]
        generated_mu = interpolate_latents(product.arc[on], mu[on], product.arc[dense_rows])
        with torch.no_grad():
            generated = state_vae.decode(torch.from_numpy(generated_mu.astype(np.float32)),
                                         images.shape[-1])
            _, _, frame = state_vae.encode_with_frame(images[dense_rows])
            if frame is not None:  # table1 decodes in its canonical frame: the DFT state's
                generated = rotate_per_sample(generated, -frame)
        generated = generated.numpy()
        true = images[dense_rows].numpy()
        recon = reconstruct(state_vae, images[dense_rows]).numpy()
        r2 = np.atleast_1d(code_r2(generated, true, per_state=True))
        r2_recon = np.atleast_1d(code_r2(recon, true, per_state=True))
        interpolated = ~on[dense_rows]
        materials[material_id] = {
            "status": "ok", "band_offset": int(product.band_offsets[band]),
            "n_trajectory": int(on.sum()), "n_generated": int(len(dense_rows)),
            "n_interpolated": int(interpolated.sum()),
            "r2_generated_mean": float(r2.mean()),
            "r2_interpolated_mean": float(r2[interpolated].mean()) if interpolated.any()
            else float("nan"),
            "r2_reconstructed_mean": float(r2_recon.mean()),
            "r2_generated": [float(v) for v in r2],
            **path_gap(product),
        }
        done.append(material_id)
        i = len(done) - 1
        arrays.update({
            f"m{i}_arc": product.arc, f"m{i}_trajectory": on, f"m{i}_mu": mu.astype(np.float32),
            f"m{i}_dense": dense_rows, f"m{i}_generated_mu": generated_mu.astype(np.float32),
            f"m{i}_r2": r2, f"m{i}_r2_recon": r2_recon,
            # In-plane maps (summed over z) of the generated and true K -> M states.
            f"m{i}_generated_map": generated.sum(axis=1).astype(np.float32),
            f"m{i}_true_map": true.sum(axis=1).astype(np.float32),
            f"m{i}_special_arc": product.special_arc,
            # Fig. 3b's bands: eV from the vacuum level, as the state table's energies.
            f"m{i}_bands": product.band_energies - product.vacuum_level,
            f"m{i}_band_offsets": product.band_energy_offsets,
            f"m{i}_encoded_offset": np.asarray(product.band_offsets[band]),
        })
    ok = list(done)
    record = {
        "materials": materials,
        "r2_generated_mean": float(np.mean([materials[m]["r2_generated_mean"] for m in ok]))
        if ok else float("nan"),
        "method": "mu interpolated linearly in arc length between consecutive trajectory "
                  "states, decoded from z = mu",
    }
    (trajectory / "trajectory.json").write_text(
        json.dumps(plain_json(record), indent=2, sort_keys=True) + "\n")
    np.savez_compressed(trajectory / "trajectory.npz", materials=np.asarray(done, dtype=str),
                        **arrays)


def path_gap(product) -> dict[str, Any]:
    """The PBE gap along the path of a path product (lowest conduction minus highest valence
    eigenvalue over its k-points, eV) and the arc length of each edge; {} without a conduction
    band."""
    import numpy as np

    offsets = product.band_energy_offsets
    valence = product.band_energies[:, offsets == -1]
    conduction = product.band_energies[:, offsets == 0]
    if not valence.size or not conduction.size:
        return {}
    top, bottom = int(np.argmax(valence[:, 0])), int(np.argmin(conduction[:, 0]))
    return {"gap_path_ev": float(conduction[bottom, 0] - valence[top, 0]),
            "vbm_arc": float(product.arc[top]), "cbm_arc": float(product.arc[bottom])}


def stage_evaluate(*, dft: Path, features: Path, vae: Path, gw: Path, k_distance: Path,
                   trajectory: Path, metrics: Path, predictions: Path) -> None:
    """``metrics.json`` (:mod:`esrepro.papers.vae_gw.evaluate`: every model under both splits
    and on the held-out TMDs, the paired comparisons, the VAE's reconstruction R², parameter
    counts beside the paper's, the ΔGW filter and material counts; Fig. 3c's
    ``k_distance_mae`` and Fig. 3a-b's ``generated_path_states``) and ``predictions.npz``
    (what the report draws; Fig. 3's arrays prefixed ``kdist_`` and ``traj_``)."""
    import json

    import numpy as np
    import torch

    from esrepro.metrics import write_json
    from esrepro.papers.vae_gw.evaluate import (
        dft_core_hours,
        example_states,
        gw_metrics,
        reconstruction_r2,
    )
    from esrepro.papers.vae_gw.model import PAPER_GW_PARAMETERS, n_parameters
    from esrepro.papers.vae_gw.train import reconstruct
    from esrepro.papers.vae_gw.train import reconstruction_r2 as code_r2
    from esrepro.training.model_files import load_model

    summary = pd.read_csv(dft / "summary.csv", keep_default_na=False)
    states = pd.read_csv(features / "states.csv")
    materials = pd.read_csv(features / "materials.csv")
    excluded = pd.read_csv(features / "excluded.csv")
    frame = pd.read_csv(gw / "predictions.csv")
    train_record = json.loads((gw / "train.json").read_text())
    with np.load(vae / "latents.npz") as z:
        latents = {name: z[name] for name in z.files}

    state_vae = load_model(vae / "vae_state.pt")
    images = torch.load(features / "tensors.pt", weights_only=False)["states"].float()
    recon = reconstruct(state_vae, images)
    images_np, recon_np = images.numpy(), recon.numpy()
    examples = example_states(states, "MoS2-2H")
    example_r2 = code_r2(recon_np[examples], images_np[examples], per_state=True)

    gw_nets = {s: load_model(gw / f"gw_{s}.pt") for s in ("state_split", "material_split")}
    results = gw_metrics(frame)
    results.update({
        "vae_reconstruction_r2": {
            **reconstruction_r2(images_np, recon_np, latents["vae_split"], code_r2),
            "mos2_examples": [float(v) for v in np.atleast_1d(example_r2)],
        },
        "parameters": {
            "vae_state": n_parameters(state_vae), "vae_kind": state_vae.config.kind,
            "vae_table1_paper": 1_132_288,
            "gw_net": n_parameters(gw_nets["state_split"]),
            "gw_net_inputs": train_record["gw_net"]["inputs"],
            "gw_net_paper": PAPER_GW_PARAMETERS,
        },
        "delta_gw_filter": train_record["filter"],
        "gw_split_counts": {s: {part: int((frame[s] == part).sum())
                                for part in ("train", "val", "test", "heldout")}
                            for s in ("state_split", "material_split")},
        "n_materials": int(len(summary)),
        "n_dft_failed": int((summary["status"] == "failed").sum()),
        "n_excluded": int(len(excluded)),
        "n_used": int(len(materials)),
        "n_metals": int(materials["is_metal"].sum()),
        "n_states": int(len(states)),
        "n_gw_states": int(len(frame)),
        "dft_core_hours": dft_core_hours(summary),
        "k_distance_mae": json.loads((k_distance / "k_distance.json").read_text()),
        "generated_path_states": json.loads((trajectory / "trajectory.json").read_text()),
    })
    write_json(metrics, results)
    k_states = pd.read_csv(k_distance / "states.csv")
    with np.load(trajectory / "trajectory.npz") as z:
        traj = {f"traj_{name}": z[name] for name in z.files}

    order = states["state_id"].astype(str).to_numpy()
    position = {s: i for i, s in enumerate(order)}
    rows = np.array([position[s] for s in frame["state_id"].astype(str)], dtype=int)
    predictions.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        predictions,
        **{f"gw_{c}": frame[c].to_numpy().astype(str)
           for c in ("state_id", "material_id", "state_split", "material_split")},
        **{f"gw_{c}": frame[c].to_numpy(dtype=float)
           for c in frame.columns if "__" in c or c in ("e_dft", "e_gw", "delta_gw")},
        gw_k_index=frame["k_index"].to_numpy(int),
        gw_band_offset=frame["band_offset"].to_numpy(int),
        gw_is_metal=frame["is_metal"].to_numpy(bool), gw_heldout=frame["heldout"].to_numpy(bool),
        gw_state_row=rows,
        state_material=states["material_id"].to_numpy().astype(str),
        state_e_dft=states["e_dft"].to_numpy(float),
        state_delta_gw=states["delta_gw"].to_numpy(float),
        state_band_offset=states["band_offset"].to_numpy(int),
        state_vae_split=latents["vae_split"],
        state_mu=latents["state"][:, : latents["state"].shape[1] // 2].astype(np.float32),
        example_rows=np.asarray(examples, dtype=int),
        example_input=images_np[examples].astype(np.float16),
        example_recon=recon_np[examples].astype(np.float16),
        example_r2=np.atleast_1d(example_r2).astype(float),
        example_band_offset=states.loc[examples, "band_offset"].to_numpy(int),
        example_k_index=states.loc[examples, "k_index"].to_numpy(int),
        kdist_material_id=k_states["material_id"].to_numpy().astype(str),
        kdist_heldout=k_states["heldout"].to_numpy(bool),
        kdist_k_index=k_states["k_index"].to_numpy(int),
        kdist_delta_gw=k_states["delta_gw"].to_numpy(float),
        **{f"kdist_{c.replace('__', '_')}": k_states[c].to_numpy()
           for c in k_states.columns if "__" in c},
        **traj,
    )


def stage_report(*, notebook: Path, predictions: Path, metrics: Path, html: Path,
                 executed: Path, figures: Path) -> None:
    """Figs. 2-3 analogues: ``notebook`` executed into ``executed`` and ``html``."""
    from esrepro.reports import render_report

    render_report(notebook, html, executed, {"predictions_npz": predictions,
                                             "metrics_json": metrics, "figures_dir": figures})
