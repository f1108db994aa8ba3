"""DFT throughput and cache footprint, measured from what a run left behind.

    python benchmarks/dft_throughput.py [--journal data/dft-cache/journal.jsonl]
                                        [--cache data/dft-cache] [--noop-repro [--repo .]]

* ``--journal``: the farm's journal (one JSON line per finished material: material_id, status,
  wall_s). Seconds per material over the computed lines (median, p90, mean, n) and failures.
* ``--cache``: the cache directory. Seconds per material from each product's ``meta.wall_s``
  (GPAW time inside the worker, without process start-up) and product size on disk (``.npz``).
* ``--noop-repro``: wall time of ``dvc repro`` when nothing changed. If ``dvc status`` reports
  changes, ``dvc repro`` is run once first to bring the pipeline up to date (that run is
  reported but not counted), then the timed run follows.

With no option, reads ``<dft.cache>/journal.jsonl`` and ``<dft.cache>`` (params.yaml, else
data/dft-cache).
Every number printed is measured; nothing is assumed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from esrepro.dft.cost import summarize
from esrepro.dft.product import read_product_meta

DEFAULT_CACHE = Path("data/dft-cache")


def default_cache() -> Path:
    """`dft.cache` from ./params.yaml when there is one, else data/dft-cache."""
    params = Path("params.yaml")
    if params.is_file():
        import yaml

        cache = (yaml.safe_load(params.read_text()) or {}).get("dft", {}).get("cache")
        if cache:
            return Path(cache)
    return DEFAULT_CACHE


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 600 else f"{seconds / 3600:.2f} h"


def format_seconds(stats: dict[str, float]) -> str:
    return (
        f"median {stats['median']:.1f} s, p90 {stats['p90']:.1f} s, mean {stats['mean']:.1f} s, "
        f"n {stats['n']} (min {stats['min']:.1f} s, max {stats['max']:.1f} s, "
        f"total {_duration(stats['total'])})"
    )


def read_journal(path: Path) -> tuple[list[dict], int]:
    """Journal entries and the number of unreadable lines (e.g. a line cut by a kill)."""
    entries, bad = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(entry, dict) and "status" in entry:
            entries.append(entry)
        else:
            bad += 1
    return entries, bad


def report_journal(path: Path) -> None:
    print(f"journal: {path}")
    if not path.is_file():
        print("  not found")
        return
    entries, bad = read_journal(path)
    statuses = Counter(e["status"] for e in entries)
    computed = [float(e["wall_s"]) for e in entries if e["status"] == "computed"]
    failed = [e for e in entries if e["status"] == "failed"]
    materials = Counter(e.get("material_id") for e in entries)
    print(f"  lines: {len(entries)} ({dict(sorted(statuses.items()))}); unreadable lines: {bad}")
    print(
        f"  distinct materials: {len(materials)}; run more than once: "
        f"{sum(1 for c in materials.values() if c > 1)}"
    )
    if computed:
        print(
            "  seconds per computed material (worker wall time): "
            f"{format_seconds(summarize(computed))}"
        )
    else:
        print("  seconds per computed material: no computed lines")
    n_runs = len(computed) + len(failed)
    share = f" ({len(failed) / n_runs:.1%} of runs)" if n_runs else ""
    print(f"  failures: {len(failed)}{share}")
    if failed:
        kinds = Counter(str(e.get("reason", "")).split(":", 1)[0] or "?" for e in failed)
        print("  failure kinds: " + ", ".join(f"{k} x{n}" for k, n in kinds.most_common()))
        print(
            "  seconds spent on failures: "
            f"{format_seconds(summarize([float(e['wall_s']) for e in failed]))}"
        )


def _mode_label(settings: dict) -> str:
    # Papers differ in mode (DOSnp/ALIGNN-DOS: PW; LDOS: LCAO) and in the settings that set the
    # cost, so their seconds are reported apart.
    mode = str(settings.get("mode", "?"))
    if mode == "lcao":
        h = (settings.get("extra") or {}).get("h")
        return f"lcao {settings.get('basis', '?')}" + (f", h {h} A" if h is not None else "")
    return f"{mode} {settings.get('ecut_ev', '?')} eV, k-density {settings.get('kpt_density', '?')}"


def report_cache(root: Path) -> None:
    print(f"cache: {root}")
    if not root.is_dir():
        print("  not found")
        return
    products = sorted(p for p in root.glob("*/*.npz"))
    failures = sorted(root.glob("*/*.failed.json"))
    print(f"  products: {len(products)}; recorded failures: {len(failures)}")
    if not products:
        return
    sizes_kib = [p.stat().st_size / 1024 for p in products]
    size = summarize(sizes_kib)
    print(
        f"  product size on disk: median {size['median']:.1f} KiB, p90 {size['p90']:.1f} KiB, "
        f"mean {size['mean']:.1f} KiB, max {size['max']:.1f} KiB, "
        f"total {size['total'] / 1024:.1f} MiB"
    )
    walls, ranks, unreadable = [], Counter(), 0
    by_mode: dict[str, list[float]] = {}
    by_fft: dict[str, list[float]] = {}
    for path in products:
        try:
            meta = read_product_meta(path)
        except Exception:  # noqa: BLE001 - a damaged file is counted, not fatal here
            unreadable += 1
            continue
        if isinstance(meta.get("wall_s"), (int, float)):
            walls.append(float(meta["wall_s"]))
            ranks[int(meta.get("mpi_ranks", 1))] += 1
            # Products from before the engine recorded it say nothing: GPAW then had no FFTW.
            fft = {True: "FFTW", False: "pocketfft"}.get(meta.get("gpaw_fftw"), "not recorded")
            by_fft.setdefault(fft, []).append(float(meta["wall_s"]))
            by_mode.setdefault(_mode_label(meta.get("settings") or {}), []).append(
                float(meta["wall_s"])
            )
    if walls:
        print(f"  GPAW seconds per product (meta.wall_s): {format_seconds(summarize(walls))}")
        if len(by_mode) > 1:
            for label, values in sorted(by_mode.items()):
                print(f"    {label}: {format_seconds(summarize(values))}")
        print(
            "  MPI ranks per product: "
            + ", ".join(f"{r} rank(s) x{n}" for r, n in sorted(ranks.items()))
        )
        for fft, values in sorted(by_fft.items()):
            print(f"  GPAW FFTs {fft}: {format_seconds(summarize(values))}")
    if unreadable:
        print(f"  unreadable products: {unreadable}")


def _dvc() -> list[str]:
    exe = Path(sys.executable).with_name("dvc")
    return [str(exe) if exe.exists() else "dvc"]


def _timed(cmd: list[str], cwd: Path) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - t0, proc.returncode, (proc.stdout + proc.stderr)


def report_noop_repro(repo: Path, repeats: int) -> int:
    print(f"dvc repro with nothing changed (repo {repo}):")
    dvc = _dvc()
    wall, rc, out = _timed([*dvc, "status", "--quiet"], repo)
    if rc not in (0, 1):
        print(f"  dvc status failed (exit {rc}):\n{out[-2000:]}")
        return rc
    print(f"  dvc status: {'up to date' if rc == 0 else 'changes pending'} ({wall:.2f} s)")
    if rc == 1:
        wall, rc, out = _timed([*dvc, "repro"], repo)
        print(
            "  first dvc repro (brings the pipeline up to date, not counted): "
            f"{wall:.2f} s, exit {rc}"
        )
        if rc != 0:
            print(out[-2000:])
            return rc
    times = []
    for _ in range(repeats):
        wall, rc, out = _timed([*dvc, "repro"], repo)
        if rc != 0:
            print(f"  dvc repro failed (exit {rc}):\n{out[-2000:]}")
            return rc
        times.append(wall)
    if "Running stage" in out:
        print("  warning: the timed run still ran stages; the pipeline is not deterministic")
    if repeats == 1:
        print(f"  no-op dvc repro: {times[0]:.2f} s wall")
    else:
        print(
            f"  no-op dvc repro: median {statistics.median(times):.2f} s wall over {repeats} runs "
            f"(min {min(times):.2f} s, max {max(times):.2f} s)"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--journal", type=Path, help="farm journal (JSON lines)")
    parser.add_argument("--cache", type=Path, help="DFT cache directory (products .npz)")
    parser.add_argument(
        "--noop-repro", action="store_true", help="time dvc repro with nothing changed"
    )
    parser.add_argument(
        "--repo", type=Path, default=Path("."), help="DVC repository for --noop-repro"
    )
    parser.add_argument("--repeats", type=int, default=1, help="timed no-op dvc repro runs")
    args = parser.parse_args(argv)

    if args.journal is None and args.cache is None and not args.noop_repro:
        cache = default_cache()
        args.journal = cache / "journal.jsonl"
        args.cache = cache
    rc = 0
    if args.journal is not None:
        report_journal(args.journal)
    if args.cache is not None:
        report_cache(args.cache)
    if args.noop_repro:
        rc = report_noop_repro(args.repo.resolve(), max(1, args.repeats))
    return rc


if __name__ == "__main__":
    sys.exit(main())
