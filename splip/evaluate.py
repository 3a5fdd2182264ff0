"""Embedding image sets with a SpLIP model and scoring ZS-, GZS- and FG-SBIR (SPLIP_METHOD.md §7)."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from splip.data import ImageSet, SBIRDataset, collate_skip_unreadable
from splip.data.dataset import fine_grained_gallery
from splip.distributed import World, broadcast, gather_rows
from splip.metrics import DEFAULT_CONVENTION, fine_grained_accuracy, generalized_zero_shot_sets, retrieval_metrics
from splip.model import SpLIP
from splip.progress import tqdm

# The metrics each benchmark is reported with in the paper (§6), plus mAP@all everywhere. The
# synthetic gallery holds under a hundred photos per split, hence P@10.
REPORTED_METRICS: dict[str, tuple[str, ...]] = {
    "synthetic": ("map@all", "p@10"),
    "sketchy": ("map@all", "map@200", "p@200"),
    "sketchy25": ("map@all", "p@100"),
    "tuberlin": ("map@all", "p@100"),
    "quickdraw": ("map@all", "p@200"),
}
FG_KS = (1, 5)
GZS_SEEN_FRACTION = 0.2


@dataclass
class Embeddings:
    """Embeddings of the readable items of an ImageSet."""

    vectors: torch.Tensor  # (N, D) float32, L2-normalised; on the CPU unless embed(keep_on_device=True)
    labels: np.ndarray  # (N,) global class labels
    indices: np.ndarray  # (N,) positions in the ImageSet (unreadable items are missing)


def autocast_for(device: torch.device):
    """Mixed precision on CUDA (bf16 where supported, else fp16); full float32 on the CPU."""
    if device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def embed(model: SpLIP, images: ImageSet, batch_size: int = 128, num_workers: int = 0,
          progress: bool = False, world: World = World(), keep_on_device: bool = False) -> Embeddings:
    """Embed every readable image of `images` with `model` (in eval mode, on the model's device).

    Under several processes (`world`) each embeds its contiguous share and the rows are gathered,
    so every process returns all of them, in order. Vectors come back on the CPU, or with
    `keep_on_device` on the model's device (the metrics then run there: a GPU when there is one).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    share = world.share(len(images))
    loader = DataLoader(images.subset(np.arange(share.start, share.stop)), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=collate_skip_unreadable)
    vectors, labels, indices = [], [], []
    for batch in tqdm(loader, desc=f"embed {images.modality}s", disable=not progress or not world.is_main,
                      leave=False):
        if batch is None:
            continue
        pixels, batch_labels, batch_indices = batch
        with autocast_for(device):
            out = model(pixels.to(device), images.modality, class_embeddings=False)
        vectors.append(out.image_embeddings.float())
        labels.append(batch_labels.to(device))
        indices.append(batch_indices.to(device) + share.start)
    model.train(was_training)
    width = model.clip.visual.output_dim
    rows = [gather_rows(torch.cat(t) if t else torch.empty((0, *shape), dtype=dtype, device=device), world)
            for t, shape, dtype in ((vectors, (width,), torch.float32), (labels, (), torch.int64),
                                    (indices, (), torch.int64))]
    if rows[0].shape[0] == 0:
        raise ValueError(f"no readable image in {images!r}")
    return Embeddings(rows[0] if keep_on_device else rows[0].cpu(), rows[1].cpu().numpy(), rows[2].cpu().numpy())


def _fine_grained(dataset: SBIRDataset, sketches: Embeddings, photos: Embeddings) -> dict[str, float]:
    """Acc@K over test sketches whose source photo is known and readable; the gallery is the
    dataset's fine-grained gallery (Sketchy: the basic photos, not their copies in the extension)
    of the query's class."""
    in_gallery = np.isin(photos.indices, fine_grained_gallery(dataset))  # (N_photos,) over embedded photos
    photo_row = np.full(len(dataset.test_photos), -1)
    photo_row[photos.indices[in_gallery]] = np.arange(int(in_gallery.sum()))
    source = dataset.fg_source_photo[sketches.indices]  # (N_sketches,) -1: unknown
    target = np.where(source >= 0, photo_row[source], -1)  # -1: unknown, unreadable or outside the gallery
    keep = target >= 0
    if not keep.any():
        return {}
    return fine_grained_accuracy(
        sketches.vectors[keep], photos.vectors[in_gallery], target[keep],
        sketches.labels[keep], photos.labels[in_gallery], ks=FG_KS,
    )


def evaluate(model: SpLIP, dataset: SBIRDataset, split: str = "test", settings: tuple[str, ...] = ("zs", "gzs", "fg"),
             batch_size: int = 128, num_workers: int = 0, seed: int = 0, progress: bool = False,
             convention: str = DEFAULT_CONVENTION, world: World = World()) -> dict[str, float]:
    """Score `model` on a split. Keys look like "zs/map@all", "gzs/p@200", "fg/acc@1" (fractions);
    ZS and GZS numbers follow the metric `convention` (splip.metrics.METRIC_CONVENTIONS).

    split="test": the unseen classes. ZS: queries = unseen sketches, gallery = unseen photos.
    GZS: seen-class (training-class) sketches and photos, randomly chosen with `seed`, equal to 20%
    of the unseen test sets, are added to queries and gallery. FG: where the dataset knows each
    sketch's source photo (Acc@1, Acc@5, gallery = photos of the query's class).
    split="val": ZS retrieval on the held-out seen classes only (model selection).
    Under several processes (`world`) the embedding is shared out, process 0 scores, and every
    process returns its numbers. Metrics run on the model's device.
    """
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    if split == "val" and not dataset.val_ids:
        raise ValueError(f"{dataset.name} holds no validation classes (val_fraction=0); evaluate split='test', "
                         "or load it with val_fraction > 0")
    names = REPORTED_METRICS.get(dataset.name, ("map@all",))
    sketch_set = dataset.test_sketches if split == "test" else dataset.val_sketches
    photo_set = dataset.test_photos if split == "test" else dataset.val_photos
    names = tuple(n for n in names if n == "map@all" or int(n.split("@")[1]) <= len(photo_set))
    kwargs = dict(batch_size=batch_size, num_workers=num_workers, progress=progress, world=world, keep_on_device=True)
    sets = {"sketches": embed(model, sketch_set, **kwargs), "photos": embed(model, photo_set, **kwargs)}
    if split == "test" and "gzs" in settings:
        seen_sketch_idx, seen_photo_idx = generalized_zero_shot_sets(
            len(sketch_set), len(photo_set), len(dataset.train_sketches), len(dataset.train_photos),
            GZS_SEEN_FRACTION, seed)
        sets["seen_sketches"] = embed(model, dataset.train_sketches.subset(seen_sketch_idx), **kwargs)
        sets["seen_photos"] = embed(model, dataset.train_photos.subset(seen_photo_idx), **kwargs)
    # Every process holds every embedding now; one scores them.
    results = _score(dataset, sets, split, settings, names, convention, progress) if world.is_main else None
    return broadcast(results, world)


def _score(dataset: SBIRDataset, sets: dict[str, Embeddings], split: str, settings: tuple[str, ...],
           names: tuple[str, ...], convention: str, progress: bool) -> dict[str, float]:
    """The metrics of :func:`evaluate` from the embedded sets."""
    sketches, photos = sets["sketches"], sets["photos"]
    results = {f"zs/{k}": v for k, v in retrieval_metrics(
        sketches.vectors, sketches.labels, photos.vectors, photos.labels, names, convention=convention,
        progress=progress).items()}
    if split == "val":
        return results
    if "seen_sketches" in sets:
        seen_sketches, seen_photos = sets["seen_sketches"], sets["seen_photos"]
        gzs = retrieval_metrics(
            torch.cat([sketches.vectors, seen_sketches.vectors]),
            np.concatenate([sketches.labels, seen_sketches.labels]),
            torch.cat([photos.vectors, seen_photos.vectors]),
            np.concatenate([photos.labels, seen_photos.labels]), names, convention=convention, progress=progress)
        results.update({f"gzs/{k}": v for k, v in gzs.items()})
    if "fg" in settings and dataset.fg_source_photo is not None:
        results.update({f"fg/{k}": v for k, v in _fine_grained(dataset, sketches, photos).items()})
    return results
