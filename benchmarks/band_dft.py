"""Seconds per material of the band-structure product: SCF and path run apart.

    nice python benchmarks/band_dft.py [--sites 1 2 3 4] [--seed 0] [--mirror ../shared/mirror]
                                       [--save DIR]

Takes, for each requested site count, the first material of the DOSnp table (seeded order)
with that many sites, runs the band product in this process (default `BandSettings`, one MPI
rank; no farm, no cache) and prints wall and CPU seconds of the SCF and of the path run, the
k-points of each, the gap and the gap error of smoothing + resampling (`--width`, `--n-kpoints`).

Extrapolation to the whole table (printed as such): the ground-state LDA product of the same
materials in the shipped seed (`--seed-dir`, its `meta.wall_s`) gives the ratio band CPU /
LDA seconds; the mean ratio times the mean LDA seconds over all seeded products (a seeded
random sample of the table) times the table's size. Every other number printed is measured; the
machine may be shared, so CPU seconds are the cost, wall the latency.
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
    parser.add_argument("--seed-dir", type=Path, default=Path("seeds"),
                        help="shipped seed with the ground-state products (extrapolation)")
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
    cpu: dict[str, float] = {}
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
        cpu[material_id] = timings["scf_cpu_s"] + timings["path_cpu_s"]
    print("* gap in eV, 0 = metal (HOB-based rule of esrepro.bands); dgap: gap after smoothing "
          f"({args.width} Å⁻¹) and resampling ({args.n_kpoints} points) minus gap, eV")

    extrapolate(cpu, args.seed_dir, len(nsites), args.cores)
    return 0


def extrapolate(cpu: dict[str, float], seed_dir: Path, n_table: int, cores: int) -> None:
    """Print band CPU / seeded LDA seconds per material and the table-wide estimate."""
    from esrepro.dft.product import read_product_meta
    from esrepro.dft.seeds import Manifest, unpacked_seed_dirs

    if not (seed_dir / "manifest.json").is_file():
        print(f"no shipped seed at {seed_dir}: no extrapolation")
        return
    key_of = {m: k for a in Manifest.load(seed_dir).archives for k, m in a.products.items()}
    lda: dict[str, float] = {}
    for directory in unpacked_seed_dirs(seed_dir):
        for path in directory.glob("??/*.npz"):
            meta = read_product_meta(path)
            if meta.get("settings", {}).get("mode") == "pw":
                lda[path.stem] = float(meta["wall_s"])
    ratios = []
    for material_id, seconds in cpu.items():
        key = key_of.get(material_id)
        if key in lda:
            ratios.append(seconds / lda[key])
            print(f"{material_id:>10}: band {seconds:.1f} s CPU / LDA {lda[key]:.1f} s "
                  f"= {ratios[-1]:.1f}")
        else:
            print(f"{material_id:>10}: no plane-wave LDA product in {seed_dir}")
    if not ratios or not lda:
        return
    mean_lda = float(np.mean(list(lda.values())))
    per_material = float(np.mean(ratios)) * mean_lda
    total_h = per_material * n_table / 3600
    print(f"EXTRAPOLATION: mean ratio {np.mean(ratios):.1f} x mean LDA {mean_lda:.1f}"
          f" s over {len(lda)} seeded products = {per_material:.0f} s per material; {n_table} "
          f"materials: {total_h:.0f} CPU h, {total_h / cores:.0f} h on {cores} cores")


if __name__ == "__main__":
    raise SystemExit(main())
