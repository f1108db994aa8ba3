"""VAE-GW's DFT cost and G0W0 convergence: seconds per material, and the cut-off series on MoS2.

    python benchmarks/vae_gw_dft.py timing [--materials MoS2-2H NbS2-2H]
    python benchmarks/vae_gw_dft.py convergence [--material MoS2-2H] [--runs 25 50 25,50,75]

`timing` runs each material's relaxation, ground state, wavefunction export and G0W0 with the
default `GWSettings` / `WavefunctionSettings` in this process (one MPI rank) and prints wall and
CPU seconds of each step. `convergence` relaxes and computes the ground state once (bands for
the largest cut-off), then runs G0W0 on it for each run: a cut-off in eV, or a comma-separated
list of cut-offs whose self-energies GPAW extrapolates (the largest is the calculation's). For
an extrapolating run it also prints the quasiparticle energies at each of its cut-offs (same
bands, GPAW's sigma per cut-off). Results go to stdout and, with --json, to a file; the
measured figures are in docs/notes/vae-gw-dft.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _clock():
    wall, cpu = time.perf_counter(), time.process_time()
    return lambda: (time.perf_counter() - wall, time.process_time() - cpu)


def _material(material_id: str):
    from esrepro.papers.vae_gw.structures import all_materials

    by_id = {m.id: m for m in all_materials()}
    if material_id not in by_id:
        sys.exit(f"unknown material {material_id!r}; e.g. {sorted(by_id)[:5]}")
    return by_id[material_id]


def _gaps(e_qp: np.ndarray, i_cb: int) -> dict[str, float]:
    """Band edges on the k-grid: VBM, CBM, gap, and the direct gap at each k's minimum."""
    vbm, cbm = float(e_qp[:, i_cb - 1].max()), float(e_qp[:, i_cb].min())
    return {"vbm": vbm, "cbm": cbm, "gap": cbm - vbm,
            "direct_gap": float((e_qp[:, i_cb] - e_qp[:, i_cb - 1]).min())}


def _qp_at_each_cutoff(results: dict) -> list[np.ndarray]:
    """QP energies (k, n) at each cut-off of an extrapolating run, from GPAW's per-cut-off
    self-energy and its derivative (the same single-step expression G0W0Outputs uses)."""
    eps, vxc, exx = results["eps"][0], results["vxc"][0], results["exx"][0]
    out = []
    for sigma, dsigma in zip(results["sigma_eskn"], results["dsigma_eskn"], strict=True):
        z = 1.0 / (1.0 - dsigma[0])
        out.append(eps + z * (-vxc + exx + sigma[0]))
    return out


def convergence(args) -> dict:
    from esrepro.dft.gw_engine import (
        ground_state,
        gw_nbands,
        n_reference_bands,
        relax_layer,
        run_g0w0,
    )
    from esrepro.dft.gw_product import GWSettings, layer_with_vacuum

    base = GWSettings(bands_below=args.bands_below, bands_above=args.bands_above)
    layer = layer_with_vacuum(_material(args.material).atoms(), base.vacuum)
    work = Path(tempfile.mkdtemp(prefix="vae-gw-convergence-"))
    report: dict = {"material": args.material, "settings": base.to_dict(), "runs": []}
    lap = _clock()
    layer, relax = relax_layer(layer, base, work / "relax.txt")
    wall, cpu = lap()
    report["relax"] = {**relax, "wall_s": wall, "cpu_s": cpu}
    print(f"relax: a {relax['a_start']:.3f} -> {relax['a_relaxed']:.4f} Å in {relax['steps']} "
          f"steps, {report['relax']['wall_s']:.0f} s", flush=True)
    runs = [[float(x) for x in run.split(",")] for run in args.runs]
    n_ref, _ = n_reference_bands(layer, base.xc)
    band_start, band_stop = n_ref - base.bands_below, n_ref + base.bands_above
    nbands = max(gw_nbands(layer, max(run)) for run in runs) + 8
    lap = _clock()
    calc, _ = ground_state(layer, base, nbands, work / "gs.txt", n_converged=band_stop)
    gpw = work / "gs.gpw"
    calc.write(str(gpw), mode="all")
    wall, cpu = lap()
    report["ground_state"] = {"wall_s": wall, "cpu_s": cpu, "nbands": nbands}
    print(f"ground state with {nbands} bands: {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
    i_cb = n_ref - band_start
    for n, cutoffs in enumerate(runs):
        settings = dataclasses.replace(base, gw_ecut_ev=max(cutoffs),
                                       ecut_extrapolation=tuple(cutoffs) if len(cutoffs) > 1
                                       else ())
        lap = _clock()
        results = run_g0w0(gpw, settings, band_start, band_stop, f"gw-run{n}", work)
        wall, cpu = lap()
        e_dft = results["eps"][0]
        entry = {"cutoffs_ev": cutoffs, "wall_s": wall, "cpu_s": cpu,
                 "nbands": gw_nbands(layer, max(cutoffs)),
                 "dft": _gaps(e_dft, i_cb), "gw": _gaps(results["qp"][0], i_cb),
                 "delta_gw": (results["qp"][0] - e_dft).tolist()}
        if len(cutoffs) > 1:
            entry["per_cutoff"] = [
                {"cutoff_ev": c, **_gaps(qp, i_cb), "delta_gw": (qp - e_dft).tolist()}
                for c, qp in zip(cutoffs, _qp_at_each_cutoff(results), strict=True)
            ]
            entry["min_fit_r2"] = float(np.min(results["sigr2_skn"]))
        report["runs"].append(entry)
        label = ",".join(f"{c:g}" for c in cutoffs)
        print(f"G0W0 {label} eV ({entry['nbands']} bands): gap {entry['gw']['gap']:.3f} eV "
              f"(direct {entry['gw']['direct_gap']:.3f}; PBE {entry['dft']['gap']:.3f}), VBM "
              f"{entry['gw']['vbm']:.3f}, CBM {entry['gw']['cbm']:.3f}; {wall:.0f} s wall, "
              f"{cpu:.0f} s CPU", flush=True)
        for item in entry.get("per_cutoff", []):
            print(f"    at {item['cutoff_ev']:g} eV: gap {item['gap']:.3f}, VBM {item['vbm']:.3f},"
                  f" CBM {item['cbm']:.3f}", flush=True)
    reference = np.asarray(report["runs"][-1]["delta_gw"])
    print(f"ΔGW against the last run ({args.runs[-1]}): mean absolute / mean signed difference "
          f"over the {reference.size} window states")
    for entry in report["runs"]:
        for label, delta in [(",".join(f"{c:g}" for c in entry["cutoffs_ev"]), entry["delta_gw"])
                             ] + [(f"  {p['cutoff_ev']:g} (in that run)", p["delta_gw"])
                                  for p in entry.get("per_cutoff", [])]:
            diff = np.asarray(delta) - reference
            print(f"  {label:>24}: {np.abs(diff).mean():.3f} / {diff.mean():+.3f} eV")
    return report


def timing(args) -> dict:
    from esrepro.dft.gw_engine import run_gpaw_gw
    from esrepro.dft.gw_product import GWSettings
    from esrepro.dft.wavefunction_product import WavefunctionSettings, run_wavefunction_export

    report = {}
    for material_id in args.materials:
        atoms = _material(material_id).atoms()
        work = Path(tempfile.mkdtemp(prefix="vae-gw-timing-"))
        product = run_gpaw_gw(atoms, GWSettings(), txt=work / f"{material_id}.gpaw.txt")
        t = product.meta["timings"]
        lap = _clock()
        wavefunctions = run_wavefunction_export(product.atoms(), WavefunctionSettings(),
                                                txt=work / f"{material_id}.wf.txt")
        wall, cpu = lap()
        w = wavefunctions.meta["timings"]
        report[material_id] = {**t, "export_total_wall_s": wall, "export_total_cpu_s": cpu,
                               **{f"export_{k}": v for k, v in w.items()},
                               "is_metal": product.is_metal, "gap_dft": product.gap_dft,
                               "gap_gw": product.gap_gw,
                               "a_relaxed": product.lattice_constant,
                               "n_states_gw": int(product.e_dft.size),
                               "n_states_wavefunctions": int(len(wavefunctions.band_index))}
        r = report[material_id]
        print(f"{material_id}: relax {t['relax_wall_s']:.0f} s ({t['relax_cpu_s']:.0f} CPU), "
              f"ground state {t['ground_state_wall_s']:.0f} s ({t['ground_state_cpu_s']:.0f}), "
              f"G0W0 {t['gw_wall_s']:.0f} s ({t['gw_cpu_s']:.0f}), wavefunction export "
              f"{wall:.0f} s ({cpu:.0f}; ground state {w['ground_state_wall_s']:.0f} s, grids "
              f"{w['export_wall_s']:.0f} s); metal {r['is_metal']}, gap PBE "
              f"{r['gap_dft']:.3f} / G0W0 {r['gap_gw']:.3f} eV, a {r['a_relaxed']:.3f} Å",
              flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("timing")
    p.add_argument("--materials", nargs="+", default=["MoS2-2H", "NbS2-2H"])
    p.add_argument("--json", type=Path)
    p = sub.add_parser("convergence")
    p.add_argument("--material", default="MoS2-2H")
    p.add_argument("--runs", nargs="+", default=["25", "50", "25,50,75"])
    p.add_argument("--bands-below", type=int, default=4)
    p.add_argument("--bands-above", type=int, default=4)
    p.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = convergence(args) if args.command == "convergence" else timing(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
