"""The VAE-GW pipeline, one function per DVC stage (declared in ``...vae_gw.paper``).

    structures -> dft -> wavefunctions -> featurize -> vae -> train -> evaluate -> report

Structures: the 2D set built with ASE (:mod:`esrepro.papers.vae_gw.structures`), a prefix of
its seeded order (the held-out TMDs MoS2, WS2, CrS2 first). Labels: the DFT engine's G0W0
products (:mod:`esrepro.dft.gw_product`: in-plane relaxation, PBE, G0W0 on the irreducible
k-points); inputs: |ψ|² of the same ground state on the paper's 40 × 28 × 28 grid, regenerated
locally (:mod:`esrepro.dft.wavefunction_product`). Both are farmed through the shared cache.

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
    StructuresConfig,
    TrainConfig,
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
    from esrepro.papers.vae_gw.train import VAETrainParams, encode_latents, fit_vae

    p = cfg.vae
    train_params = VAETrainParams(**dataclasses.asdict(p.train))
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
    from esrepro.papers.vae_gw.model import GWNetConfig, assemble_inputs, input_layout
    from esrepro.papers.vae_gw.train import (
        DELTA_GW_WINDOW,
        GWTrainParams,
        filter_delta_gw,
        fit_gw,
        fit_lattice_code,
        predict_gw,
    )
    from esrepro.plain_json import plain_json

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
    parts_of = gw_splits(used, cfg.split.state_test_fraction, cfg.split.material_test_fraction,
                         cfg.split.val_fraction, cfg.split.seed)

    # The code's lattice code: its 3 -> 1 -> 3 autoencoder of reciprocal-lattice numbers,
    # fitted on the trainable materials only.
    reciprocal = torch.tensor(materials.set_index("material_id").loc[
        list(latents["materials"]), ["b1", "b2", "cos_b"]].to_numpy(), dtype=torch.float32)
    trainable = ~materials.set_index("material_id").loc[
        list(latents["materials"]), "heldout"].to_numpy(dtype=bool)
    lattice, _ = fit_lattice_code(reciprocal[trainable], seed=cfg.split.seed)
    with torch.no_grad():
        lattice_code = lattice.encoder(reciprocal).squeeze(-1).numpy()
    density_max = materials.set_index("material_id").loc[
        list(latents["materials"]), "density_max"].to_numpy()

    rows = mat_rows[use]
    n_super = latents["super"].shape[1]
    n_powers = latents["density"].shape[1]
    net_config = GWNetConfig(
        inputs=cfg.gw.inputs, state_latent=latents["state"].shape[1] // 2,
        aux_latent=latents["density"].shape[2] // 2, n_super=n_super,
        n_density_powers=n_powers, hidden=tuple(cfg.gw.hidden),
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
            net_config, GWTrainParams(**dataclasses.asdict(cfg.gw.train)), gw,
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
            GWTrainParams(**dataclasses.asdict(cfg.gw.train)), gw / "ablations",
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


def stage_evaluate(*, dft: Path, features: Path, vae: Path, gw: Path, metrics: Path,
                   predictions: Path) -> None:
    """``metrics.json`` (:mod:`esrepro.papers.vae_gw.evaluate`: every model under both splits
    and on the held-out TMDs, the paired comparisons, the VAE's reconstruction R², parameter
    counts beside the paper's, the ΔGW filter and material counts) and ``predictions.npz``
    (what the report draws)."""
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
    })
    write_json(metrics, results)

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
    )


def stage_report(*, notebook: Path, predictions: Path, metrics: Path, html: Path,
                 executed: Path, figures: Path) -> None:
    """Figs. 2-3 analogues: ``notebook`` executed into ``executed`` and ``html``."""
    from esrepro.reports import render_report

    render_report(notebook, html, executed, {"predictions_npz": predictions,
                                             "metrics_json": metrics, "figures_dir": figures})
