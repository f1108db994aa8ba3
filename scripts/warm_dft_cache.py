"""Fill the DFT cache for every DOSnp material in a seeded random order (paper-scale warm-up).

    python scripts/warm_dft_cache.py [--workers 2] [--mpi-ranks 1]
    python scripts/warm_dft_cache.py --product bands      # band structures (Bandformer)
    python scripts/warm_dft_cache.py --product gw         # G0W0 of the 2D set (VAE-GW)
    python scripts/warm_dft_cache.py [--product bands] --status   # how far it got; computes nothing

Runs the same engine and settings as the DFT stages, reading the mirrored/fetched POSCARs, so
`dvc repro` afterwards finds every product in the cache: ground states with params.yaml `dft`
(the `dosnp_dft` stage's), band structures with `bandformer.dft` (`BandSettings`) into
`<dft.cache>/bands/`, where `esrepro.dft.stage.run_band_stage` looks, and G0W0 products of
VAE-GW's monolayers (in its own seeded order) with `vae_gw.dft` into `<dft.cache>/gw/`. The
random order makes
any prefix of the run an unbiased subset, so a partial run is still usable; `--max-sites`
skips larger cells (a profile's `max_sites`) while keeping that order.
"""

from __future__ import annotations

import argparse
import logging
import sys

from esrepro.config import Selection, load_params, mirror_dir
from esrepro.dft.farm import FarmOptions, compute_products
from esrepro.dft.kinds import kind_of
from esrepro.dft.settings import DFTSettings
from esrepro.dft.stage import band_cache, cache_from_params
from esrepro.selection import fetch_structures, fetch_table, selected_ids

PRODUCTS = ("ground-state", "bands", "gw")


def product_settings(params, product: str):
    """The settings of `product` from params (bands: the `bandformer.dft` block)."""
    if product == "ground-state":
        return DFTSettings.from_params(params["dft"]["settings"])
    if product == "gw":
        from esrepro.dft.gw_product import GWSettings

        if "vae_gw" not in params:
            raise ValueError("params.yaml has no vae_gw block: --product gw reads its settings "
                             "from vae_gw.dft")
        return GWSettings.from_params(params["vae_gw"]["dft"], source="params.yaml vae_gw.dft")
    from esrepro.dft.seeds import bandformer_params

    bandformer = bandformer_params(params)
    if bandformer is None:
        raise ValueError("params.yaml has no bandformer block: --product bands reads its "
                         "band settings from bandformer.dft")
    return bandformer[0]


def gw_structures(params, seed: int | None, max_sites: int):
    """VAE-GW's monolayers in the seeded order its stages take prefixes of (`vae_gw.subset_seed`
    unless --seed is given), as the structures stage writes them."""
    from esrepro.papers.vae_gw.structures import select_materials

    materials = select_materials(0, params["vae_gw"]["subset_seed"] if seed is None else seed)
    atoms = {m.id: m.atoms() for m in materials}
    return {k: a for k, a in atoms.items() if not max_sites or len(a) <= max_sites}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--product", choices=PRODUCTS, default="ground-state",
                        help="ground-state (params dft.settings), bands (bandformer.dft) or gw "
                        "(vae_gw.dft)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--mpi-ranks", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None,
                        help="order seed (default: 0; gw: vae_gw.subset_seed)")
    parser.add_argument("--max-sites", type=int, default=0,
                        help="skip materials with more sites (0: none skipped)")
    parser.add_argument("--timeout-s", type=float, default=None, help="per-material time-out")
    parser.add_argument(
        "--timeout-clock", choices=("wall", "cpu"), default="cpu",
        help="what the time-out counts (default cpu: a niced warm-up shares its cores, so wall "
        "time measures the load, and a material timed out by load would be skipped later)")
    parser.add_argument(
        "--retry-failed", action="store_true", help="re-run materials whose failure is recorded"
    )
    parser.add_argument(
        "--status", action="store_true",
        help="print the finished prefix of the seeded order (the n_materials a partial paper-scale "
        "run can use with max_sites 0 without new DFT) and the counts; compute nothing",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    params = load_params()
    try:
        settings = product_settings(params, args.product)
    except ValueError as err:
        print(f"error: {err}")
        return 2
    if args.product == "gw":
        structures = gw_structures(params, args.seed, args.max_sites)
    else:
        table = fetch_table(params["dosnp"]["table_commit"], mirror_dir(params))
        everything = Selection(n_materials=0, max_sites=args.max_sites, subset_seed=args.seed or 0)
        ids = selected_ids(table, everything)
        structures = fetch_structures(ids, mirror_dir(params))
    cache = cache_from_params(params["dft"])
    if args.product == "bands":
        cache = band_cache(cache)  # <dft.cache>/bands/ and the seeds' bands/ folders
    elif args.product == "gw":
        from esrepro.dft.gw_product import gw_cache

        cache = gw_cache(cache)  # <dft.cache>/gw/ and the seeds' gw/ folders
    if args.status:
        key = kind_of(settings).key
        finished = [
            cache.find_product(k) is not None or cache.find_failure(k) is not None
            for k in (key(atoms, settings) for atoms in structures.values())
        ]
        prefix = finished.index(False) if False in finished else len(finished)
        print(f"{args.product}: finished {sum(finished)} of {len(finished)} materials; the first "
              f"{prefix} of the seeded order are all finished (use n_materials: {prefix}, "
              f"max_sites: {args.max_sites})")
        return 0
    # Command-line overrides go through the same validation as params.yaml (e.g. --workers 0).
    farm_params = dict(params["dft"]["farm"] or {})
    overrides = {"workers": args.workers, "mpi_ranks": args.mpi_ranks, "timeout_s": args.timeout_s,
                 "timeout_clock": args.timeout_clock}
    farm_params.update({k: v for k, v in overrides.items() if v is not None})
    if args.retry_failed:
        farm_params["retry_failed"] = True
    farm = FarmOptions.from_params(farm_params, source="params.yaml dft.farm + command line")
    records = compute_products(
        structures, settings, cache, farm,
        journal=cache.root / "journal.jsonl",
    )
    failed = sum(r.status == "failed" for r in records)
    print(f"{len(records)} {args.product} materials, {failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
