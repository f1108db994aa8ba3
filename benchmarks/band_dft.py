"""Seconds per material of the band-structure product: SCF and path run apart.

    nice python benchmarks/band_dft.py [--sites 1 2 3 4] [--seed 0] [--mirror ../shared/mirror]
                                       [--save DIR]

Takes, for each requested site count, the first material of the DOSnp table (seeded order)
with that many sites, runs the band product in this process (default `BandSettings`, one MPI
rank; no farm, no cache) and prints wall and CPU seconds of the SCF and of the path run, the
k-points of each, the gap and the gap error of smoothing + resampling (`--width`, `--n-kpoints`),
and a power-law fit CPU ~ a * n_sites^p over the materials measured, applied
to the site counts of the whole table (an extrapolation, printed as such). Every other number
printed is measured; the machine may be shared, so CPU seconds are the cost, wall the latency.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from esrepro.bands import resampling_gap_error, select_bands
from esrepro.dft.band_engine import run_gpaw_bands
from esrepro.dft.band_product import BandSettings
from esrepro.selection import fetch_structures, fetch_table, seeded_order
from esrepro.sources import DOSNP_TABLE_COMMIT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--seed", type=int, default=0)
    default_mirror = os.environ.get("ESREPRO_MIRROR") or "../shared/mirror"
    parser.add_argument("--mirror", type=Path, default=Path(default_mirror))
    parser.add_argument("--downloads", type=Path, default=Path("data/downloads"))
    parser.add_argument("--cores", type=int, default=2, help="cores for the extrapolation")
    parser.add_argument("--width", type=float, default=0.05, help="smoothing width, Å⁻¹")
    parser.add_argument("--n-kpoints", type=int, default=256, help="resampled k-points")
    parser.add_argument("--save", type=Path, help="write each band product here (<id>.npz)")
    args = parser.parse_args(argv)

    table = fetch_table(DOSNP_TABLE_COMMIT, args.mirror, args.downloads / "dosnp-table.csv")
    ids = [f"mp-{m}" for m in table["material_id"]]
    nsites = dict(zip(ids, table["nsites"].astype(int), strict=True))
    order = seeded_order(list(nsites), args.seed)
    chosen = [next(m for m in order if nsites[m] == n) for n in args.sites]
    structures = fetch_structures(chosen, args.mirror, args.downloads / "poscar")
    settings = BandSettings()

    print(f"{'material':>10} {'formula':>10} {'sites':>5} {'SCF k':>5} {'path k':>6} "
          f"{'SCF wall':>9} {'SCF cpu':>8} {'path wall':>9} {'path cpu':>8} {'gap*':>6} "
          f"{'dgap':>6}")
    sites, cpu = [], []
    for material_id, atoms in structures.items():
        t0 = time.perf_counter()
        product = run_gpaw_bands(atoms, settings)
        timings = product.meta["timings"]
        selected = select_bands(product, settings.bands_below, settings.bands_above)
        dgap = resampling_gap_error(selected, args.n_kpoints, args.width)
        if args.save:
            product.save(args.save / f"{material_id}.npz")
        print(
            f"{material_id:>10} {atoms.get_chemical_formula():>10} {len(atoms):>5} "
            f"{product.meta['n_kpoints_ibz_scf']:>5} {product.meta['n_kpoints_path']:>6} "
            f"{timings['scf_wall_s']:>8.1f}s {timings['scf_cpu_s']:>7.1f}s "
            f"{timings['path_wall_s']:>8.1f}s {timings['path_cpu_s']:>7.1f}s "
            f"{selected.gap:>6.2f} {dgap:>+6.3f}   (total wall {time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        sites.append(len(atoms))
        cpu.append(timings["scf_cpu_s"] + timings["path_cpu_s"])
    print("* gap in eV, 0 = metal (HOB-based rule of esrepro.bands); dgap: gap after smoothing "
          f"({args.width} Å⁻¹) and resampling ({args.n_kpoints} points) minus gap, eV")

    if len(set(sites)) >= 2:
        p, log_a = np.polyfit(np.log(sites), np.log(cpu), 1)
        all_sites = np.array(list(nsites.values()), dtype=float)
        total = float(np.exp(log_a) * np.sum(all_sites**p))
        median = np.median(all_sites)
        print(f"EXTRAPOLATION (fit over {len(sites)} materials): CPU ~ {np.exp(log_a):.1f} s x "
              f"n_sites^{p:.2f}; {len(all_sites)} table materials (median {median:.0f}"
              f", max {all_sites.max():.0f} sites): {total / 3600:.1f} CPU h, "
              f"{total / 3600 / args.cores:.1f} h on {args.cores} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
