"""ALIGNN-DOS benchmark: graph construction time per structure and training throughput (graphs/s).

    python benchmarks/alignn_throughput.py [--device cpu|cuda] [--steps 20] [--batch-size 16]

Structures: the 50 real JARVIS structures of ALIGNN's sample set (1-32 atoms) plus the DOSnp
structures fetched under data/ (if any). Throughput is measured on full training steps
(forward, MSE on a 300-bin target, backward, AdamW) at both width presets of params.yaml
(``alignn_dos.model.widths``: ours and the reference's), after two warm-up steps; per second of wall
time and per second of this process's CPU time (the fairer figure on a shared machine).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from esrepro.config import load_params, mirror_dir, resolve_path
from esrepro.jarvis import fetch_alignn_samples
from esrepro.papers.alignn_dos.data import collate_records, graph_record
from esrepro.papers.alignn_dos.model import ALIGNN
from esrepro.registry import get_paper
from esrepro.structures import read_structure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    params = load_params()
    gcfg = params["alignn_dos"]["graph"]

    structures = [
        r["atoms"] for r in fetch_alignn_samples(
            mirror_dir(params), resolve_path("data/downloads/alignn_samples")
        )
    ]
    structures += [
        read_structure(p)
        for p in sorted(Path(resolve_path("data/alignn_dos/raw/structures")).glob("*.vasp"))
    ]
    times, records = [], []
    for atoms in structures:
        t0 = time.perf_counter()
        records.append(graph_record(atoms, k=int(gcfg["k"]), cutoff=float(gcfg["cutoff"])))
        times.append(time.perf_counter() - t0)
    n_atoms = [len(a) for a in structures]
    print(f"graph construction ({len(structures)} structures, {min(n_atoms)}-{max(n_atoms)} atoms,"
          f" k={gcfg['k']}):"
          f" median {1e3 * statistics.median(times):.1f} ms, max {1e3 * max(times):.1f} ms,"
          f" total {sum(times):.2f} s")

    device = torch.device(args.device)
    model_params = get_paper("alignn_dos").parse(params)["train"].model
    configs = {
        "params.yaml ours widths": model_params.alignn_kwargs("ours"),
        "reference (paper) width": model_params.alignn_kwargs("paper"),
    }
    for label, cfg in configs.items():
        torch.manual_seed(0)
        model = ALIGNN(**{**cfg, "output_features": 300}).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        batches = [
            collate_records(records[i:i + args.batch_size])
            for i in range(0, len(records), args.batch_size)
        ]
        batches = [b.to(device) for b in batches]
        n_graphs = 0
        for step in range(args.steps + 2):
            if step == 2:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0, cpu0, n_graphs = time.perf_counter(), time.process_time(), 0
            batch = batches[step % len(batches)]
            loss = torch.nn.functional.mse_loss(
                model(batch), torch.zeros(batch.num_graphs, 300, device=device)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            n_graphs += batch.num_graphs if step >= 2 else 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        n_params = sum(p.numel() for p in model.parameters())
        print(f"training {label} (hidden {cfg['hidden_features']}, {n_params:,} params) on {device}"
              f" ({torch.get_num_threads()} threads): {n_graphs / elapsed:.1f} graphs/s"
              f" ({n_graphs / cpu:.1f} per CPU-second) over {args.steps} steps"
              f" of batch {args.batch_size}")


if __name__ == "__main__":
    main()
