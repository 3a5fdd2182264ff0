"""Triplet sampling for training: (anchor sketch, photo of its class, photo of another class)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from splip.data.images import ImageSet

_TAG_TRIPLETS = 0x7819


class TripletDataset(Dataset):
    """Each item: anchor sketch, a positive photo of its class, a negative photo of another class.

    Item ``i`` uses sketch ``i``. Its positive is uniform over the photos of the sketch's class; its
    negative uniform over the photos of the other classes that have sketches (classes present in
    both modalities). Both are drawn for all items at once per epoch with
    ``numpy.random.default_rng([seed, 0x7819, epoch])``, so they are fixed by (seed, epoch, i).
    Call :meth:`set_epoch` before iterating each epoch; DataLoader workers copy the dataset when an
    iterator starts, so ``persistent_workers=True`` would keep epoch 0's draws.
    """

    def __init__(self, sketches: ImageSet, photos: ImageSet, seed: int = 0):
        if sketches.classes is not photos.classes and list(sketches.classes) != list(photos.classes):
            raise ValueError("sketches and photos must share one label space (the same `classes` list)")
        sketch_classes = np.unique(sketches.labels)
        photo_classes = np.unique(photos.labels)
        lacking = np.setdiff1d(sketch_classes, photo_classes)
        if lacking.size:
            names = [sketches.classes[c] for c in lacking[:5]]
            raise ValueError(
                f"{lacking.size} sketch class(es) have no photo in this photo set, e.g. {names}; "
                f"pair the sketches with the photo set of the same split"
            )
        if sketch_classes.size < 2:
            raise ValueError(f"triplets need at least 2 classes for negatives; got {sketch_classes.size}")
        self.sketches, self.photos, self.seed = sketches, photos, seed
        usable = np.flatnonzero(np.isin(photos.labels, sketch_classes))
        self._photo_order = usable[np.argsort(photos.labels[usable], kind="stable")]  # (P,) photos grouped by class
        counts = np.bincount(photos.labels[usable], minlength=len(photos.classes))  # (C,)
        self._start = np.concatenate([[0], np.cumsum(counts)[:-1]])  # (C,) first position of each class
        self._count = counts
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Re-draw every item's positive and negative photo for ``epoch`` (deterministic)."""
        rng = np.random.default_rng([self.seed, _TAG_TRIPLETS, epoch])
        lab = self.sketches.labels  # (N,)
        start, count = self._start[lab], self._count[lab]  # (N,), (N,)
        pos = start + rng.integers(0, count)
        other = rng.integers(0, len(self._photo_order) - count)  # position among the other classes' photos
        neg = np.where(other >= start, other + count, other)  # skip the anchor class's block
        self.epoch = epoch
        self.positive_index = self._photo_order[pos]  # (N,) into photos
        self.negative_index = self._photo_order[neg]  # (N,) into photos

    def __len__(self) -> int:
        return len(self.sketches)

    def __getitem__(self, i: int) -> dict | None:
        p, n = int(self.positive_index[i]), int(self.negative_index[i])
        items = (self.sketches[i], self.photos[p], self.photos[n])
        if any(it is None for it in items):
            return None
        return {
            "sketch": items[0][0], "positive": items[1][0], "negative": items[2][0],
            "label": items[0][1], "negative_label": items[2][1],
            "index": int(i), "positive_index": p, "negative_index": n,
        }


def collate_triplets(batch: list[dict | None]) -> dict[str, Tensor] | None:
    """Stack triplet items: images (B, 3, S, S), the rest (B,) int64; unreadable (None) items are
    dropped, ``None`` when none is left."""
    items = [b for b in batch if b is not None]
    if not items:
        return None
    return {
        k: torch.stack([b[k] for b in items]) if isinstance(items[0][k], Tensor)
        else torch.tensor([b[k] for b in items], dtype=torch.int64)
        for k in items[0]
    }
