"""Images per second of the training loader on a full-size QuickDraw-Extended placeholder tree.

The tree (splip.data.placeholders) has a file at every path of the published QuickDraw-Extended
test lists (92,291 sketches, 54,151 photos) and, since its train lists are not published,
``--per-class`` files per seen class folder and modality; every file is a hard link to one small
real PNG (a TU-Berlin sketch from ../shared/data by default), so every image decodes. The loader is
the run's own (splip.data.sampling.triplet_loader: TripletBatchSampler keys, persistent workers,
pinned memory where CUDA is present) over the training triplets, at the preset's batch (192) and
image size (224 px). Each row: one loader, ``--batches`` batches timed after one warm-up batch
(worker start-up excluded), images per second = 3 images per triplet. Examples:

    python benchmarks/data_loading.py                       # workers 0, 1, 2
    python benchmarks/data_loading.py --workers 0 4 8 --batches 20

Decoding a 150 px grey PNG is cheaper than the real photos' JPEGs (up to 256 px, colour): the
figures are an upper bound for the photo side.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from splip.data import load_dataset
from splip.data.placeholders import build_placeholder_tree
from splip.data.sampling import TripletDataset, triplet_loader

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def default_image() -> Path:
    pngs = sorted((SHARED / "tu-berlin" / "png").glob("*/*.png"))
    if not pngs:
        raise SystemExit(f"no TU-Berlin PNG under {SHARED / 'tu-berlin' / 'png'}: pass --image FILE")
    return pngs[0]


def images_per_second(dataset, batch_size: int, workers: int, batches: int, seed: int = 0) -> tuple[float, float]:
    """(images/s, seconds of the first batch: worker start-up included) of one training loader."""
    triplets = TripletDataset(dataset.train_sketches, dataset.train_photos, seed=seed)
    sampler, loader = triplet_loader(triplets, batch_size, seed, num_workers=workers,
                                     pin_memory=torch.cuda.is_available())
    sampler.set_epoch(0)
    if len(sampler) < batches + 1:
        raise SystemExit(f"only {len(sampler)} batches of {batch_size}: raise --per-class")
    iterator = iter(loader)
    start = time.perf_counter()
    next(iterator)  # warm-up: workers start, first decodes
    first = time.perf_counter() - start
    start = time.perf_counter()
    triplet_count = sum(len(next(iterator)["label"]) for _ in range(batches))
    seconds = time.perf_counter() - start
    del iterator, loader  # stops persistent workers
    return 3 * triplet_count / seconds, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", type=Path, default=SHARED / "splits",
                        help="the published split file lists (holds datasets/QuickDraw/zeroshot)")
    parser.add_argument("--image", type=Path, help="the real image linked at every path (default: a TU-Berlin PNG)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=192)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=5, help="timed batches per row")
    parser.add_argument("--per-class", type=int, default=50,
                        help="train placeholders per seen class and modality (no train list is published)")
    args = parser.parse_args()
    if not (args.splits / "datasets" / "QuickDraw" / "zeroshot").is_dir():
        raise SystemExit(f"published QuickDraw-Extended lists not found under {args.splits}/datasets/QuickDraw/zeroshot")
    image = args.image or default_image()
    shm = Path("/dev/shm")
    parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    root = Path(tempfile.mkdtemp(prefix="splip-loader-", dir=parent))
    try:
        source = root / ("image" + image.suffix)
        shutil.copyfile(image, source)  # hard links need the tree's filesystem
        start = time.perf_counter()
        files = build_placeholder_tree(root, "quickdraw", args.splits, link_to=source, per_seen_class=args.per_class)
        built = time.perf_counter() - start
        start = time.perf_counter()
        dataset = load_dataset("quickdraw", root, image_size=args.image_size, val_fraction=0.0)
        loaded = time.perf_counter() - start
        print(f"QuickDraw-Extended placeholder tree: {files:,} files (hard links to {image.name}, "
              f"{image.stat().st_size / 1024:.1f} KiB) built in {built:.1f} s, listed by load_dataset in {loaded:.1f} s; "
              f"test {len(dataset.test_sketches):,} sketches / {len(dataset.test_photos):,} photos, train "
              f"{len(dataset.train_sketches):,} / {len(dataset.train_photos):,}")
        print(f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}; "
              f"batch {args.batch_size} triplets at {args.image_size} px, {args.batches} timed batches per row")
        print(f"{'workers':>7} {'images/s':>9} {'triplets/s':>10} {'first batch s':>13}")
        for workers in args.workers:
            rate, first = images_per_second(dataset, args.batch_size, workers, args.batches)
            print(f"{workers:>7} {rate:9.0f} {rate / 3:10.0f} {first:13.1f}", flush=True)
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
