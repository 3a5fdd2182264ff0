"""Time and peak memory of splip.metrics' retrieval metrics against their floor, the similarity matmuls.

Default size: 92,291 queries x 54,151 gallery items, D = 512, 30 classes (QuickDraw-Extended test set).
Examples:
    python benchmarks/metrics_memory.py --scale 0.1          # 9,229 queries x 5,415 gallery
    python benchmarks/metrics_memory.py --queries 10000      # 10,000 queries x full gallery
    python benchmarks/metrics_memory.py --chunk-sizes 0 256 1024   # 0 = library default
    python benchmarks/metrics_memory.py --convention sake   # one metric convention (default: all)
    python benchmarks/metrics_memory.py --baseline /tmp/old_metrics.py   # also time an older copy

One run prints one table. Each row is measured in a fresh process on the same synthetic embeddings:

- ``matmul``: the chunked ``query[rows] @ gallery.T`` loop that retrieval_metrics runs, with nothing
  else (each product a fresh tensor, as that expression gives);
- ``matmul out=``: the same products written into one reused buffer (what retrieval_metrics does:
  on CPU a fresh (C, G) tensor per chunk costs its page faults);
- ``<convention>``: per_query_retrieval_metrics with METRICS under that convention (the table shows
  the means, as retrieval_metrics gives them);
- ``baseline <convention>``: the same with the ``per_query_retrieval_metrics`` of the file given to
  ``--baseline`` (e.g. a saved copy of an older splip/metrics.py), and the largest difference of its
  values from the current ones.

Each row runs ``--repeats`` times (default 2). A run goes over the queries in ``--slices`` slices
(default 10, on chunk bounds, so together they run exactly the chunks of one call), and each slice
is followed by its floor, the ``matmul`` loop over the same queries, so that a run and its floor see
the same machine load (on a shared or virtual machine the speed moves by 10-30% within minutes,
which a floor timed once per run does not follow). ``seconds`` and ``floor s`` are the medians of the
runs' sums, ``x floor`` the median of the runs' seconds / floor s, ``x range`` their lowest and
highest. Peak memory (of the first run, the largest over its slices) on CPU is that process's peak
resident set (VmHWM, reset just before each slice's call) minus its resident set at that moment,
i.e. what the evaluation adds on top of the embeddings; on CUDA it is the peak of
torch.cuda.max_memory_allocated over the call. ``load s``
and ``load MiB``: the first metrics call of a process also loads the compiled ranking kernels
(numba), a one-off cost whatever the size; it is measured on its own on a tiny problem before the
timed runs, and is not in their figures. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from splip import metrics as splip_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_memory import PeakMemory  # noqa: E402  (this folder's shared helper)

METRICS = ("map@all", "p@100", "map@200", "p@200")
FLOORS = ("matmul", "matmul out=")


def synthetic(
    n: int, centers: torch.Tensor, labels: torch.Tensor, noise: float, gen: torch.Generator
) -> torch.Tensor:
    """Unit embeddings: class centre plus isotropic Gaussian noise, ``noise`` = noise/centre norm ratio."""
    x = torch.randn(n, centers.shape[1], generator=gen).mul_(noise).add_(centers[labels])  # (n, D)
    return x.div_(x.norm(dim=1, keepdim=True))


def matmul_floor(query: torch.Tensor, gallery: torch.Tensor, chunk: int, reuse: bool) -> dict[str, float]:
    """The similarity products of retrieval_metrics' chunk loop alone (same chunks, same device)."""
    n_query, n_gallery = query.shape[0], gallery.shape[0]
    rows_per_chunk = chunk or max(1, splip_metrics._CHUNK_ELEMENTS // n_gallery)
    buffer = torch.empty((min(rows_per_chunk, n_query), n_gallery), device=gallery.device) if reuse else None
    for start in range(0, n_query, rows_per_chunk):
        rows = slice(start, min(start + rows_per_chunk, n_query))
        if reuse:
            torch.mm(query[rows].to(gallery.device), gallery.T, out=buffer[:rows.stop - rows.start])
        else:
            sim = query[rows].to(gallery.device) @ gallery.T  # (C, G)
            del sim
    if gallery.is_cuda:
        torch.cuda.synchronize()
    return {}


def load_per_query_metrics(path: str | None) -> Callable[..., dict[str, np.ndarray]]:
    """per_query_retrieval_metrics of the module file at ``path``, or of splip.metrics for None."""
    if path is None:
        return splip_metrics.per_query_retrieval_metrics
    spec = importlib.util.spec_from_file_location("baseline_metrics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.per_query_retrieval_metrics


def query_slices(n_query: int, n_gallery: int, chunk: int, n_slices: int) -> list[slice]:
    """``n_slices`` consecutive slices of the queries whose bounds fall on chunk bounds, so that the
    slices together run exactly the chunks of one call over all queries."""
    rows_per_chunk = chunk or max(1, splip_metrics._CHUNK_ELEMENTS // n_gallery)
    n_chunks = math.ceil(n_query / rows_per_chunk)
    bounds = [min(n_query, round(i * n_chunks / n_slices) * rows_per_chunk) for i in range(n_slices + 1)]
    return [slice(start, stop) for start, stop in zip(bounds, bounds[1:]) if stop > start]


def measure(args: argparse.Namespace, chunk: int, what: str) -> dict[str, object]:
    """``args.repeats`` runs of ``what`` (a FLOORS name or a convention) in the current (fresh) process,
    each over the queries in ``args.slices`` slices, each slice followed by its floor."""
    n_query, n_gallery = round(args.queries * args.scale), round(args.gallery * args.scale)
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(args.classes, args.dim, generator=gen)  # (K, D)
    q_labels = torch.randint(args.classes, (n_query,), generator=gen)
    g_labels = torch.randint(args.classes, (n_gallery,), generator=gen)
    query = synthetic(n_query, centers, q_labels, args.noise, gen).to(args.device)  # (Q, D)
    gallery = synthetic(n_gallery, centers, g_labels, args.noise, gen).to(args.device)  # (G, D)
    load = {"seconds": 0.0, "mib": 0.0}
    per_query: dict[str, list[np.ndarray]] = {}
    if what in FLOORS:
        def run(rows: slice) -> None:
            matmul_floor(query[rows], gallery, chunk, reuse=what == "matmul out=")
    else:
        metrics = load_per_query_metrics(args.baseline if args.run_baseline else None)

        def run(rows: slice) -> None:
            values = metrics(query[rows], q_labels[rows], gallery, g_labels, METRICS, convention=what,
                             chunk_size=chunk or None)
            for name, array in values.items():
                per_query.setdefault(name, []).append(array)

        # The first call in a process also loads the compiled ranking kernels (numba): a one-off
        # cost whatever the size, measured here on a tiny problem and reported on its own.
        with PeakMemory(args.device) as peak:
            start = time.perf_counter()
            metrics(query[:2], q_labels[:2], gallery[:8], g_labels[:8], ("map@all",), convention=what)
            load = {"seconds": time.perf_counter() - start, "mib": peak.bytes / 2**20}
    rows = []
    for _ in range(args.repeats):
        per_query.clear()
        seconds = floor_seconds = peak_bytes = 0.0
        for part in query_slices(n_query, n_gallery, chunk, args.slices):
            with PeakMemory(args.device) as peak:
                start = time.perf_counter()
                run(part)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                seconds += time.perf_counter() - start
            peak_bytes = max(peak_bytes, peak.bytes)
            # The floor of the same queries right after, so that both see the same machine load.
            start = time.perf_counter()
            matmul_floor(query[part], gallery, chunk, reuse=False)
            floor_seconds += time.perf_counter() - start
        rows.append({"seconds": seconds, "floor_seconds": floor_seconds, "peak_mib": peak_bytes / 2**20})
    means = {}  # as retrieval_metrics: NaN (no relevant item under sake / zse) left out of the mean
    for name, parts in per_query.items():
        values = np.concatenate(parts)
        means[name] = float(np.nanmean(values)) if (~np.isnan(values)).any() else math.nan
    return {"repeats": rows, "values": means, "load": load}


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
    parser.add_argument("--convention", nargs="+", choices=tuple(splip_metrics.METRIC_CONVENTIONS),
                        default=list(splip_metrics.METRIC_CONVENTIONS), help="metric conventions to time (default: all)")
    parser.add_argument("--baseline", help="a metrics module file whose retrieval_metrics to time as well")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per row (median reported)")
    parser.add_argument("--slices", type=int, default=10,
                        help="each run goes over the queries in this many slices, each followed by its floor")
    parser.add_argument("--noise", type=float, default=4.0,
                        help="noise-to-class-centre norm ratio of the embeddings")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # child process mode: what to measure
    parser.add_argument("--run-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args, args.chunk_sizes[0], args.child)))
        return

    n_query, n_gallery = round(args.queries * args.scale), round(args.gallery * args.scale)
    print(f"{n_query:,} queries x {n_gallery:,} gallery, D={args.dim}, {args.classes} classes, "
          f"device={args.device}, torch threads={torch.get_num_threads()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} (1 min)")
    print(f"{'run':>18} {'chunk_size':>10} {'seconds':>8} {'floor s':>8} {'x floor':>7} {'x range':>11} "
          f"{'peak extra MiB':>15} {'load s':>6} {'load MiB':>8} "
          + " ".join(f"{m:>8}" for m in METRICS) + f" {'max |diff|':>10}")
    runs = [(what, False) for what in FLOORS] + [(c, False) for c in args.convention]
    if args.baseline:
        runs += [(c, True) for c in args.convention]
    for chunk in args.chunk_sizes:
        current: dict[str, dict[str, float]] = {}
        for what, baseline in runs:  # a fresh process per run keeps the peaks independent
            child = [sys.executable, __file__, "--child", what, "--chunk-sizes", str(chunk)]
            for name in ("queries", "gallery", "dim", "classes", "scale", "device", "noise", "repeats", "slices"):
                child += [f"--{name}", str(getattr(args, name))]
            if baseline:
                child += ["--baseline", args.baseline, "--run-baseline"]
            row = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout)
            values = row["values"]
            if what not in FLOORS and not baseline:
                current[what] = values
            diff = (max(abs(values[m] - current[what][m]) for m in METRICS)
                    if baseline and what in current else math.nan)
            label = f"baseline {what}" if baseline else what
            repeats = row["repeats"]
            ratios = [r["seconds"] / r["floor_seconds"] for r in repeats]
            load = "" if what in FLOORS else f"{row['load']['seconds']:6.2f} {row['load']['mib']:8.0f}"
            print(f"{label:>18} {'default' if chunk == 0 else chunk:>10} "
                  f"{statistics.median(r['seconds'] for r in repeats):8.1f} "
                  f"{statistics.median(r['floor_seconds'] for r in repeats):8.1f} {statistics.median(ratios):7.2f} "
                  f"{f'{min(ratios):.2f}-{max(ratios):.2f}':>11} {repeats[0]['peak_mib']:15.0f} {load:>15} "
                  + " ".join(f"{values[m]:8.4f}" if m in values else f"{'':>8}" for m in METRICS)
                  + (f" {diff:10.1e}" if baseline else ""), flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
