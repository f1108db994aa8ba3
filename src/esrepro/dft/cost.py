"""What a run's DFT cost, measured from the products themselves.

Each product records the GPAW time of the calculation that made it, inside the worker, without
process start-up: ``meta.wall_s`` (ground state), or one lap per step in ``meta.timings``
(``<step>_wall_s``, consecutive, so they add up: band structures, G0W0), with the steps' CPU
seconds beside them; and the MPI ranks it ran on and the host. Summing over the
products a run used gives its DFT cost however the run was done: in one go, resumed over
several segments, or partly read from a seed cache computed on another machine (the wall time
of the final ``dvc repro`` says nothing about those). ``esrepro snapshot-reference`` records it
in ``provenance.json``; ``benchmarks/dft_throughput.py`` prints the same statistics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from esrepro.dft.product import read_product_meta


def summarize(values: Iterable[float]) -> dict[str, float]:
    """n, median, p90, mean, min, max and total of ``values`` (which must not be empty)."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        raise ValueError("summarize needs at least one value")
    return {
        "n": int(arr.size),
        "median": float(np.median(arr)),
        "p90": float(np.percentile(arr, 90)),
        "mean": float(arr.mean()),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "total": float(arr.sum()),
    }


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _timing_sum(meta: Mapping[str, Any], suffix: str) -> float | None:
    timings = meta.get("timings")
    if not isinstance(timings, Mapping):
        return None
    values = [float(v) for k, v in timings.items() if k.endswith(suffix) and _number(v)]
    return sum(values) if values else None


def product_wall_s(meta: Mapping[str, Any]) -> float | None:
    """Wall seconds of a product's calculation: ``wall_s``, else the sum of its steps' laps."""
    wall = meta.get("wall_s")
    return float(wall) if _number(wall) else _timing_sum(meta, "_wall_s")


def product_cpu_core_s(meta: Mapping[str, Any], n_ranks: int) -> float | None:
    """CPU seconds over all ranks, where the product records them: ``<step>_core_s`` (summed
    over ranks by the engine), else ``<step>_cpu_s`` (rank 0's) x ranks; None for products
    that record wall time only (the ground state)."""
    core = _timing_sum(meta, "_core_s")
    if core is not None:
        return core
    cpu = _timing_sum(meta, "_cpu_s")
    return None if cpu is None else cpu * n_ranks


def dft_cost(products: Iterable[Path]) -> dict[str, Any]:
    """Core time of the calculations behind ``products`` (product ``.npz`` files).

    Returns a JSON-ready record: ``n_products``; ``n_timed`` (products that record their time;
    the rest are counted, not guessed); ``core_hours`` (sum of wall time x MPI ranks);
    ``cpu_core_hours`` and ``n_cpu_timed`` (CPU time, for the products that record it: on a
    shared or oversubscribed machine wall time overstates the cost);
    ``core_s_per_material`` (median, p90, mean, min, max, n); ``mpi_ranks`` and ``hosts`` (how
    many products each ran with / on). A damaged file raises ValueError naming it.
    """
    core_s: list[float] = []
    cpu_s: list[float] = []
    ranks: Counter[int] = Counter()
    hosts: Counter[str] = Counter()
    n_products = 0
    for path in products:  # every figure below is independent of the order
        n_products += 1
        meta = read_product_meta(path)
        wall = product_wall_s(meta)
        if wall is None:
            continue
        n_ranks = int(meta.get("mpi_ranks") or 1)
        cpu = product_cpu_core_s(meta, n_ranks)
        if cpu is not None:
            cpu_s.append(cpu)
        ranks[n_ranks] += 1
        hosts[str(meta.get("host") or "not recorded")] += 1
        core_s.append(float(wall) * n_ranks)
    record: dict[str, Any] = {
        "n_products": n_products,
        "n_timed": len(core_s),
        "core_hours": round(sum(core_s) / 3600, 3),
        "core_s_per_material": None,
        "n_cpu_timed": len(cpu_s),
        "cpu_core_hours": round(sum(cpu_s) / 3600, 3) if cpu_s else None,
        "mpi_ranks": {str(k): v for k, v in sorted(ranks.items())},
        "hosts": dict(sorted(hosts.items())),
        "measured_as": "sum over the run's DFT products of their GPAW wall time in the worker "
        "(meta.wall_s, or the sum of meta.timings.*_wall_s) x meta.mpi_ranks; cpu_core_hours: "
        "meta.timings.*_core_s, else *_cpu_s x mpi_ranks",
    }
    if core_s:
        stats = summarize(core_s)
        record["core_s_per_material"] = {
            k: (v if k == "n" else round(v, 2)) for k, v in stats.items() if k != "total"
        }
    return record


def describe_cost(cost: dict[str, Any]) -> str:
    """One line for a person: core-hours, per-material median/p90 and how many were timed."""
    per = cost.get("core_s_per_material")
    if not per:
        return f"DFT cost: {cost['n_products']} product(s), none records its time"
    untimed = cost["n_products"] - cost["n_timed"]
    cpu = cost.get("cpu_core_hours")
    return (
        f"DFT cost: {cost['core_hours']:g} core-hours over {cost['n_timed']} product(s) "
        f"(median {per['median']:g} s, p90 {per['p90']:g} s per material)"
        + (f"; CPU {cpu:g} core-hours over {cost['n_cpu_timed']}" if cpu is not None else "")
        + (f"; {untimed} without a recorded time" if untimed else "")
    )
