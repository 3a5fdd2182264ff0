"""Time and peak memory of splip.metrics.retrieval_metrics on a synthetic QuickDraw-Extended-size problem.

Default size: 92,291 queries x 54,151 gallery items, D = 512, 30 classes (QuickDraw-Extended test set).
Examples:
    python benchmarks/metrics_memory.py --scale 0.1          # 9,229 queries x 5,415 gallery
    python benchmarks/metrics_memory.py --queries 10000      # 10,000 queries x full gallery
    python benchmarks/metrics_memory.py --chunk-sizes 0 256 1024   # 0 = library default
    python benchmarks/metrics_memory.py --convention sake   # one metric convention (default: all)
Each (convention, chunk size) pair runs in a fresh process and prints one table row. Peak memory on
CPU is that process's peak resident set (VmHWM, reset just before the call) minus its resident set at
that moment, i.e. what the evaluation adds on top of the embeddings; on CUDA it is the peak of torch.cuda.max_memory_allocated over the call.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from splip.metrics import METRIC_CONVENTIONS, retrieval_metrics

METRICS = ("map@all", "p@100", "map@200", "p@200")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def synthetic(
    n: int, centers: torch.Tensor, labels: torch.Tensor, noise: float, gen: torch.Generator
) -> torch.Tensor:
    """Unit embeddings: class centre plus isotropic Gaussian noise, ``noise`` = noise/centre norm ratio."""
    x = torch.randn(n, centers.shape[1], generator=gen).mul_(noise).add_(centers[labels])  # (n, D)
    return x.div_(x.norm(dim=1, keepdim=True))


def measure(args: argparse.Namespace, chunk: int, convention: str) -> str:
    """One evaluation in the current (fresh) process; returns a table row."""
    n_query, n_gallery = round(args.queries * args.scale), round(args.gallery * args.scale)
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(args.classes, args.dim, generator=gen)  # (K, D)
    q_labels = torch.randint(args.classes, (n_query,), generator=gen)
    g_labels = torch.randint(args.classes, (n_gallery,), generator=gen)
    query = synthetic(n_query, centers, q_labels, args.noise, gen).to(args.device)  # (Q, D)
    gallery = synthetic(n_gallery, centers, g_labels, args.noise, gen).to(args.device)  # (G, D)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        exact = _reset_peak_rss()
        before = _status_kib("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    values = retrieval_metrics(query, q_labels, gallery, g_labels, METRICS, convention=convention,
                               chunk_size=chunk or None)
    seconds = time.perf_counter() - start
    if cuda:
        peak_mib = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        after = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_mib = (after - before) / 1024
    label = "default" if chunk == 0 else str(chunk)
    return (f"{convention:>10} {label:>10} {seconds:8.1f} {peak_mib:15.0f} "
            + " ".join(f"{values[m]:8.4f}" for m in METRICS))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=92_291)
    parser.add_argument("--gallery", type=int, default=54_151)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=30)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies --queries and --gallery")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[0], help="0 = library default")
    parser.add_argument("--convention", nargs="+", choices=tuple(METRIC_CONVENTIONS),
                        default=list(METRIC_CONVENTIONS), help="metric conventions to time (default: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--noise", type=float, default=4.0,
                        help="noise-to-class-centre norm ratio of the embeddings")
    parser.add_argument("--row-only", action="store_true", help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()
    if args.row_only:
        print(measure(args, args.chunk_sizes[0], args.convention[0]))
        return

    n_query, n_gallery = round(args.queries * args.scale), round(args.gallery * args.scale)
    print(f"{n_query:,} queries x {n_gallery:,} gallery, D={args.dim}, {args.classes} classes, "
          f"device={args.device}, torch threads={torch.get_num_threads()}")
    print(f"{'convention':>10} {'chunk_size':>10} {'seconds':>8} {'peak extra MiB':>15} "
          + " ".join(f"{m:>8}" for m in METRICS))
    for convention in args.convention:
        for chunk in args.chunk_sizes:  # a fresh process per run keeps the peaks independent
            child = [sys.executable, __file__, "--row-only", "--chunk-sizes", str(chunk), "--convention", convention]
            for name in ("queries", "gallery", "dim", "classes", "scale", "device", "noise"):
                child += [f"--{name}", str(getattr(args, name))]
            print(subprocess.run(child, check=True, capture_output=True, text=True).stdout.rstrip(), flush=True)


if __name__ == "__main__":
    main()
