"""Bandformer benchmark: crystal-graph construction per structure and training throughput.

    python benchmarks/bandformer_throughput.py [--device cpu|cuda] [--steps 20] [--batch-size 16]
        [--structures 64] [--sizes ours code_published]

Structures: the first ``--structures`` of the DOSnp table in the seeded order (subset seed 0,
any size), read from the mirror; graphs as the featurize stage builds them
(``bandformer.graph``, ``bandformer.node_features``). Throughput is measured on full training
steps (forward, the paper's loss on ``bandformer.bands.n_kpoints`` k-points of N = 6 bands,
backward, AdamW) at each model size of params.yaml's ``bandformer.model`` (``ours`` and the
public code's ``code_published``), after two warm-up steps; per second of wall time and per
second of this process's CPU time (the fairer figure on a shared machine). The targets are
zeros: the cost of a step does not depend on their values.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

from esrepro.config import Selection, load_params, mirror_dir
from esrepro.papers.bandformer.features import crystal_graph, node_feature_dim
from esrepro.papers.bandformer.model import Bandformer, n_parameters, network_config
from esrepro.papers.bandformer.train import band_loss
from esrepro.registry import get_paper
from esrepro.selection import fetch_structure_files, fetch_table, select_materials
from esrepro.structures import read_structure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--structures", type=int, default=64)
    parser.add_argument("--sizes", nargs="+", default=["ours", "code_published"])
    parser.add_argument("--workdir", default="data/benchmarks/bandformer")
    args = parser.parse_args()
    params = load_params()
    block = params["bandformer"]
    configs = get_paper("bandformer").parse(params)
    train_cfg = configs["train"]
    mirror = mirror_dir(params)

    table = fetch_table(params["dosnp"]["table_commit"], mirror)
    selected = select_materials(table, Selection(args.structures, 0, 0))
    folder = Path(args.workdir) / "structures"
    folder.mkdir(parents=True, exist_ok=True)
    fetch_structure_files(selected["mp_id"], mirror, folder)
    structures = [read_structure(folder / f"{m}.vasp") for m in selected["mp_id"]]

    graph, kind = block["graph"], block["node_features"]
    times, samples = [], []
    n_k, n_bands = int(block["bands"]["n_kpoints"]), 6
    for atoms in structures:
        t0 = time.perf_counter()
        sample = crystal_graph(atoms, k=int(graph["k"]), cutoff=float(graph["cutoff"]),
                               features=kind)
        times.append(time.perf_counter() - t0)
        sample.kpoints = torch.rand(1, n_k, 3)
        sample.bands = torch.zeros(1, n_k, n_bands)
        samples.append(sample)
    n_atoms = [len(a) for a in structures]
    print(f"graph construction ({len(structures)} structures, {min(n_atoms)}-{max(n_atoms)} "
          f"atoms, k={graph['k']} within {graph['cutoff']} Å): median "
          f"{1e3 * statistics.median(times):.1f} ms, max {1e3 * max(times):.1f} ms, "
          f"total {sum(times):.2f} s")

    device = torch.device(args.device)
    batches = [
        Batch.from_data_list(samples[i:i + args.batch_size]).to(device)
        for i in range(0, len(samples), args.batch_size)
    ]
    for size in args.sizes:
        torch.manual_seed(0)
        config = network_config(train_cfg.model, n_bands, node_feature_dim(kind),
                                cutoff=float(graph["cutoff"]), size=size)
        model = Bandformer(config).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        n_graphs = 0
        for step in range(args.steps + 2):
            if step == 2:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0, cpu0, n_graphs = time.perf_counter(), time.process_time(), 0
            batch = batches[step % len(batches)]
            loss, _ = band_loss(model(batch), batch.bands, config.target,
                                train_cfg.train.dispersion_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n_graphs += batch.num_graphs if step >= 2 else 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        print(f"training size {size} (d_model {config.d_model}, {n_parameters(model):,} params) "
              f"on {device} ({torch.get_num_threads()} threads): {n_graphs / elapsed:.1f} "
              f"structures/s ({n_graphs / cpu:.1f} per CPU-second) over {args.steps} steps of "
              f"batch {args.batch_size}, {n_k} k-points")


if __name__ == "__main__":
    main()
