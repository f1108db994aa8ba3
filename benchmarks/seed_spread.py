"""Seed-to-seed spread of each paper's headline metrics on the current profile.

    python benchmarks/seed_spread.py [--papers dosnp alignn_dos ldos] [--seeds 3] [--stride 100]
        [--with-cv] [--root .] [--out reports/seed_spread.json] [--work-dir DIR]

For every paper, the training and evaluation stages (DOSnp: train, evaluate, and cv with
``--with-cv``; ALIGNN-DOS: autoencoder, train, evaluate; LDOS: learn, evaluate) are re-run with
the params of ``<root>/params.yaml`` except the training seeds (:data:`PLANS`): run ``k`` sets
each seed key to its committed value + ``k x stride``, so run 0 is the committed configuration.
The stages are the registry's own functions, called with their typed configs; they read the
workspace's inputs (features, DFT summary, ...) and write every output and checkpoint under a
temporary directory, so the workspace, dvc.lock and the DVC cache are left as they are.

The data split and every other parameter stay fixed: the spread measured is that of training
(initial weights, batch order, CV folds), which is also what moves when the same code runs on
another CPU. Run 0 is compared with the committed metrics: equal values say this machine
reproduces them bit for bit.

Writes ``--out`` (JSON): per metric the per-seed values, mean, sample standard deviation
(ddof 1), min and max, the committed value; the seeds, stage wall times, CPU model and torch's
CPU capability. Prints a table. Run it after ``dvc repro`` (or ``dvc pull``) so the inputs are
the committed ones; docs/notes/seed-spread.md has the method and the numbers.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from esrepro.config import load_params
from esrepro.registry import get_paper


@dataclass(frozen=True)
class Plan:
    """What is re-run for one paper: its stages, the params keys holding its training seeds,
    and the headline metrics (``<metrics file stem>:<dotted key>``, ``*`` matches any key)."""

    stages: tuple[str, ...]
    seed_keys: tuple[str, ...]
    headline: tuple[str, ...]


PLANS: dict[str, Plan] = {
    "dosnp": Plan(
        stages=("train", "evaluate"),
        # The ensemble's members use seed .. seed + ensemble - 1: a stride >= ensemble keeps
        # the runs' members disjoint.
        seed_keys=("dosnp.train.seed",),
        headline=(
            "metrics:dosnp.test.mae", "metrics:dosnp.test.rmse", "metrics:dosnp.test.r2",
            "metrics:lrlidg.test.mae", "metrics:linear.test.mae",
            "cv_metrics:dosnp.mae", "cv_metrics:lrlidg.mae", "cv_metrics:linear.mae",
        ),
    ),
    "alignn_dos": Plan(
        stages=("autoencoder", "train", "evaluate"),
        seed_keys=("alignn_dos.autoencoder.seed", "alignn_dos.train.seed"),
        headline=(
            "metrics:d_alignn.test.mae", "metrics:ae_alignn_*.test.mae",
            "metrics:mean_baseline.test.mae", "metrics:baseline_over_d_alignn_test_mae",
            "metrics:autoencoder_reconstruction_mae.*", "metrics:jarvis_external.d_alignn.mae",
        ),
    ),
    "ldos": Plan(
        # The kernel-ridge fit is closed-form: its seed only draws the CV folds (hence the
        # chosen lambda and zeta) and the learning-curve order.
        stages=("learn", "evaluate"),
        seed_keys=("ldos.learn.seed",),
        headline=(
            "metrics:sets.*.ldos.*.mean", "metrics:sets.*.dos.mean",
            "metrics:sets.*.dos_trained.dos.mean", "metrics:derived.*.*",
        ),
    ),
}


# --------------------------------------------------------------------------- params and paths


def get_key(params: Mapping[str, Any], dotted: str) -> Any:
    node: Any = params
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise KeyError(f"params.yaml has no {dotted}")
        node = node[key]
    return node


def with_seed_offset(
    params: Mapping[str, Any], seed_keys: Sequence[str], offset: int
) -> tuple[dict[str, Any], dict[str, int]]:
    """A copy of ``params`` with each seed key moved by ``offset``; also the seeds it set."""
    out = copy.deepcopy(dict(params))
    seeds = {}
    for dotted in seed_keys:
        *parents, last = dotted.split(".")
        node = get_key(out, ".".join(parents)) if parents else out
        node[last] = seeds[dotted] = int(get_key(params, dotted)) + int(offset)
    return out, seeds


def stage_arguments(paper: str, stages: Sequence[str], root: Path, out: Path) -> list[dict]:
    """Per stage, its path arguments: outputs and scratch under ``out`` (same relative paths
    as in the repository), inputs from ``root`` unless an earlier re-run stage writes them."""
    reg = get_paper(paper)
    rerun = [o.path for s in stages for o in reg.stage(s).outputs.values()]

    def source(path: str) -> Path:
        written_here = any(path == p or path.startswith(p.rstrip("/") + "/") for p in rerun)
        return (out if written_here else root) / path

    arguments = []
    for name in stages:
        stage = reg.stage(name)
        args = {k: source(p) for k, p in stage.inputs.items()}
        args |= {k: out / o.path for k, o in stage.outputs.items()}
        args |= {k: out / p for k, p in stage.scratch.items()}
        arguments.append(args)
    return arguments


def run_stages(
    paper: str, stages: Sequence[str], params: Mapping[str, Any], root: Path, out: Path
) -> dict[str, float]:
    """Run ``stages`` of ``paper`` with ``params`` (inputs from ``root``, outputs to ``out``);
    return each stage's wall time (s)."""
    reg = get_paper(paper)
    configs = reg.parse(params)
    times = {}
    for name, args in zip(stages, stage_arguments(paper, stages, root, out), strict=True):
        stage = reg.stage(name)
        for arg in stage.inputs:
            if not args[arg].exists():
                raise SystemExit(
                    f"error: {paper}_{name} needs {args[arg]}, which does not exist: run "
                    f"`dvc repro {paper}_{name}` (or `dvc pull`) in {root} first"
                )
        t0 = time.perf_counter()
        stage.function()(configs[name], **args)
        times[name] = round(time.perf_counter() - t0, 1)
    return times


# --------------------------------------------------------------------------- metrics


def numeric_leaves(tree: Any, prefix: str = "") -> dict[str, float]:
    """Every finite number (not bool) of a JSON tree, keyed by its dotted path."""
    out: dict[str, float] = {}
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            out |= numeric_leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, int | float) and not isinstance(tree, bool) and math.isfinite(tree):
        out[prefix] = float(tree)
    return out


def metric_files(paper: str, stages: Sequence[str]) -> dict[str, str]:
    """Stem -> repository-relative path of the metrics files ``stages`` write."""
    reg = get_paper(paper)
    return {
        Path(o.path).stem: o.path
        for s in stages for o in reg.stage(s).outputs.values() if o.metric
    }


def headline_metrics(files: Mapping[str, Path], patterns: Sequence[str]) -> dict[str, float]:
    """The numbers of the metrics ``files`` (stem -> path) whose ``stem:key`` matches one of
    ``patterns``, in pattern order; a missing file contributes nothing."""
    leaves: dict[str, float] = {}
    for stem, path in files.items():
        if Path(path).is_file():
            tree = json.loads(Path(path).read_text())
            leaves |= {f"{stem}:{k}": v for k, v in numeric_leaves(tree).items()}
    out: dict[str, float] = {}
    for pattern in patterns:
        for key, value in leaves.items():
            if fnmatch.fnmatchcase(key, pattern) and key not in out:
                out[key] = value
    return out


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (ddof 1; None for one value), min and max."""
    vals = [float(v) for v in values]
    return {
        "values": vals,
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else None,
        "min": min(vals),
        "max": max(vals),
    }


def summarize(
    runs: Sequence[Mapping[str, float]], committed: Mapping[str, float]
) -> dict[str, dict[str, Any]]:
    """Per metric present in every run: its spread, the committed value and whether run 0
    (the committed seeds) reproduced it exactly."""
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    out = {}
    for key in keys:
        entry = spread([r[key] for r in runs])
        entry["committed"] = committed.get(key)
        entry["seed0_equals_committed"] = (
            None if key not in committed else runs[0][key] == committed[key]
        )
        out[key] = entry
    return out


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    """CPU model, torch's CPU capability (the SIMD kernels it dispatches to) and versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": cpu,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def git_commit(root: Path) -> str | None:
    proc = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() or None


# --------------------------------------------------------------------------- driver


def measure(
    papers: Sequence[str], n_seeds: int, stride: int, root: Path, work: Path,
    params: Mapping[str, Any] | None = None, with_cv: bool = False,
) -> dict[str, Any]:
    """Re-run each paper ``n_seeds`` times (run ``k``: seeds + ``k x stride``) in ``work``; the
    spread of its headline metrics and the committed values from ``root``."""
    if n_seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {n_seeds}")
    params = load_params(root / "params.yaml") if params is None else params
    result: dict[str, Any] = {
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git_commit(root),
        "machine": machine(),
        "n_seeds": n_seeds,
        "seed_stride": stride,
        "papers": {},
    }
    for paper in papers:
        plan = PLANS[paper]
        stages = plan.stages + (("cv",) if with_cv and paper == "dosnp" else ())
        files = metric_files(paper, stages)
        committed = headline_metrics({s: root / p for s, p in files.items()}, plan.headline)
        runs, seeds, wall = [], [], []
        for k in range(n_seeds):
            run_params, run_seeds = with_seed_offset(params, plan.seed_keys, k * stride)
            out = work / paper / f"run{k}"
            print(f"{paper}: run {k + 1}/{n_seeds}, seeds {run_seeds}", file=sys.stderr)
            wall.append(run_stages(paper, stages, run_params, root, out))
            runs.append(headline_metrics({s: out / p for s, p in files.items()}, plan.headline))
            seeds.append(run_seeds)
        for pattern in plan.headline:
            if pattern.split(":", 1)[0] in files and not any(
                fnmatch.fnmatchcase(key, pattern) for key in runs[0]
            ):
                print(f"warning: {paper}: no metric matches {pattern}", file=sys.stderr)
        result["papers"][paper] = {
            "stages": list(stages),
            "seeds": seeds,
            "wall_s": wall,
            "metrics": summarize(runs, committed),
        }
    return result


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def table(result: Mapping[str, Any]) -> str:
    """One line per metric: paper, metric, committed, mean ± std, min..max, per-seed values."""
    rows = [("paper", "metric", "committed", "mean", "std", "min", "max", "per seed")]
    for paper, entry in result["papers"].items():
        for key, m in entry["metrics"].items():
            rows.append((
                paper, key, _fmt(m["committed"]), _fmt(m["mean"]), _fmt(m["std"]),
                _fmt(m["min"]), _fmt(m["max"]), " ".join(_fmt(v) for v in m["values"]),
            ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    info = result["machine"]
    lines.append(f"CPU: {info['cpu_model']}; torch {info['torch']} CPU capability "
                 f"{info['torch_cpu_capability']}, {info['torch_threads']} threads")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--papers", nargs="+", default=list(PLANS), choices=list(PLANS))
    parser.add_argument("--seeds", type=int, default=3, help="runs per paper (default 3)")
    parser.add_argument("--stride", type=int, default=100,
                        help="seed step between runs (default 100)")
    parser.add_argument("--with-cv", action="store_true",
                        help="also re-run DOSnp's cross-validation (5 folds x the ensemble)")
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="repository whose params, inputs and committed metrics are used")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON output (default <root>/reports/seed_spread.json)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the re-runs' outputs here (default: a temporary directory)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    out = args.out or root / "reports" / "seed_spread.json"
    if args.work_dir is None:
        with tempfile.TemporaryDirectory(prefix="esrepro-seed-spread-") as work:
            result = measure(args.papers, args.seeds, args.stride, root, Path(work),
                             with_cv=args.with_cv)
    else:
        result = measure(args.papers, args.seeds, args.stride, root, args.work_dir.resolve(),
                         with_cv=args.with_cv)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
