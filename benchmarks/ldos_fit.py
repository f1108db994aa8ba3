"""LDOS benchmark: SOAP descriptor time and kernel-ridge fit time/memory, exact vs Nystrom.

    python benchmarks/ldos_fit.py [--structures 40] [--n-sparse 300] [--grid 801]

Descriptors: SOAP (params.yaml ldos.soap) of seeded generated 64-atom Si diamond supercells.
Fits: LDOS-on-LDOS kernel ridge on those environments with synthetic smooth targets on an
`--grid`-point energy grid (the fit cost does not depend on what the targets are), exact kernel
and Nystrom with `--n-sparse` environments; peak memory from tracemalloc.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from esrepro.config import load_params
from esrepro.papers.ldos.descriptors import soap_descriptors
from esrepro.papers.ldos.generators import silicon_diamond_supercells
from esrepro.papers.ldos.krr import LDOSKernelRidge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--structures", type=int, default=40)
    parser.add_argument("--n-sparse", type=int, default=300)
    parser.add_argument("--grid", type=int, default=801)
    args = parser.parse_args()
    soap = load_params()["ldos"]["soap"]
    atoms = silicon_diamond_supercells(args.structures, seed=0)
    t0 = time.perf_counter()
    d = soap_descriptors(
        atoms, ["Si"], float(soap["r_cut"]), int(soap["n_max"]), int(soap["l_max"]),
        float(soap["sigma"]),
    )
    dt = time.perf_counter() - t0
    n_env = sum(len(x) for x in d)
    print(f"SOAP (r_cut {soap['r_cut']} A, n_max {soap['n_max']}, l_max {soap['l_max']}):"
          f" {n_env} environments,"
          f" {d[0].shape[1]} features, {dt:.2f} s ({1e3 * dt / n_env:.2f} ms/environment)")
    energies = np.linspace(-20, 20, args.grid)
    targets = [
        np.exp(-0.5 * (
            (energies[None, :] - 5 * x[:, :1] / (np.abs(x[:, :1]).max() + 1e-12)) / 2.0
        ) ** 2)
        for x in d
    ]
    for label, n_sparse in (("exact", None), (f"Nystrom M={args.n_sparse}", args.n_sparse)):
        tracemalloc.start()
        t0 = time.perf_counter()
        LDOSKernelRidge(lam=1e-3, zeta=2, n_sparse=n_sparse).fit(d, targets)
        dt = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"KRR fit {label}: {n_env} environments x {args.grid} energies: {dt:.2f} s,"
              f" peak {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
