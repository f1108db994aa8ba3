"""VAE-GW benchmark: training throughput and peak memory of the Table-1 and the plain VAE.

    python benchmarks/vae_gw_training.py [--devices cpu cuda] [--kinds table1 plain]
        [--batch-size 32] [--steps 10] [--threads N]

A training step is forward, eq. 1's loss (beta 1), backward and an Adam step on a batch of
random 40 x 28 x 28 states in [0, 1] (the cost does not depend on the values), timed over
``--steps`` steps after two warm-up steps; per second of wall time and per second of the
process's CPU time (the fairer figure on a shared machine). Each (kind, device) runs in its own
process so that its peak memory is its own: on CPU the peak resident set size of that process
above its size before the first step, on CUDA ``torch.cuda.max_memory_allocated``. The epoch
estimate is for the paper's VAE training set (90 % of 68,384 states). CUDA runs only where
``torch.cuda.is_available()``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue as queue_module
import resource
import time

#: The paper's VAE training states (90 % of 68,384).
PAPER_TRAIN_STATES = int(0.9 * 68_384)


def _rss_mib() -> float:
    """Current resident set size of this process (MiB), from /proc (Linux)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _run(kind: str, device: str, batch_size: int, steps: int, threads: int | None,
         queue: mp.Queue) -> None:
    import torch

    from esrepro.papers.vae_gw.model import VAE, VAEConfig, n_parameters
    from esrepro.papers.vae_gw.train import vae_loss

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    vae = VAE(VAEConfig(kind=kind)).to(dev).train()
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    x = torch.rand(batch_size, 40, 28, 28, device=dev)
    rss_before = _rss_mib()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for step in range(steps + 2):
        if step == 2:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0, cpu0 = time.perf_counter(), time.process_time()
        recon, mu, logvar = vae(x)
        loss, _, _ = vae_loss(recon, x, mu, logvar, beta=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if dev.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB CUDA peak allocated"
        name = torch.cuda.get_device_name(dev)
    else:
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        peak = f"{peak_rss - rss_before:.0f} MiB peak RSS above the {rss_before:.0f} MiB before"
        name = f"cpu, {torch.get_num_threads()} threads"
    n = steps * batch_size
    queue.put(
        f"{kind} VAE ({n_parameters(vae):,} parameters) on {name}: {n / wall:.1f} states/s "
        f"({n / cpu:.1f} per CPU-second), {1e3 * wall / steps:.0f} ms per step of batch "
        f"{batch_size}; {peak}; an epoch of {PAPER_TRAIN_STATES:,} states: "
        f"{PAPER_TRAIN_STATES / (n / wall) / 60:.1f} min"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--kinds", nargs="+", default=["table1", "plain"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    import torch

    devices = [d for d in args.devices if d != "cuda" or torch.cuda.is_available()]
    skipped = sorted(set(args.devices) - set(devices))
    if skipped:
        print(f"skipped (not available): {', '.join(skipped)}")
    ctx = mp.get_context("spawn")
    for device in devices:
        for kind in args.kinds:
            queue = ctx.Queue()
            proc = ctx.Process(target=_run, args=(kind, device, args.batch_size, args.steps,
                                                  args.threads, queue))
            proc.start()
            while True:
                try:
                    print(queue.get(timeout=5), flush=True)
                    break
                except queue_module.Empty:
                    if not proc.is_alive():
                        raise SystemExit(f"{kind} on {device}: the benchmark process exited "
                                         f"with status {proc.exitcode}") from None
            proc.join()


if __name__ == "__main__":
    main()
