"""Fill the DFT cache for every DOSnp material in a seeded random order (paper-scale warm-up).

    python scripts/warm_dft_cache.py [--workers 2] [--mpi-ranks 1]
    python scripts/warm_dft_cache.py --status   # how far it got; computes nothing

Runs the same engine and settings as the `dosnp_dft` stage (params.yaml `dft`), reading the
mirrored/fetched POSCARs, so `dvc repro` afterwards finds every product in the cache. The random
order makes any prefix of the run an unbiased subset, so a partial run is still usable.
"""

from __future__ import annotations

import argparse
import logging
import sys

from esrepro.config import load_params, mirror_dir
from esrepro.dft.farm import FarmOptions, compute_products
from esrepro.dft.settings import DFTSettings, cache_key
from esrepro.dft.stage import cache_from_params
from esrepro.selection import fetch_structures, fetch_table, seeded_order


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--mpi-ranks", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=None, help="per-material time-out")
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
    table = fetch_table(params["dosnp"]["table_commit"], mirror_dir(params))
    ids = seeded_order([f"mp-{i}" for i in table["material_id"]], args.seed)
    structures = fetch_structures(ids, mirror_dir(params))
    settings = DFTSettings.from_params(params["dft"]["settings"])
    cache = cache_from_params(params["dft"])
    if args.status:
        finished = [
            cache.find_product(key) is not None or cache.find_failure(key) is not None
            for key in (cache_key(atoms, settings) for atoms in structures.values())
        ]
        prefix = finished.index(False) if False in finished else len(finished)
        print(f"finished {sum(finished)} of {len(finished)} materials; the first {prefix} of the "
              f"seeded order are all finished (use n_materials: {prefix}, max_sites: 0)")
        return 0
    # Command-line overrides go through the same validation as params.yaml (e.g. --workers 0).
    farm_params = dict(params["dft"]["farm"] or {})
    overrides = {"workers": args.workers, "mpi_ranks": args.mpi_ranks, "timeout_s": args.timeout_s}
    farm_params.update({k: v for k, v in overrides.items() if v is not None})
    if args.retry_failed:
        farm_params["retry_failed"] = True
    farm = FarmOptions.from_params(farm_params, source="params.yaml dft.farm + command line")
    records = compute_products(
        structures, settings, cache, farm,
        journal=cache.root / "journal.jsonl",
    )
    failed = sum(r.status == "failed" for r in records)
    print(f"{len(records)} materials, {failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
