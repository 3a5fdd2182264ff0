"""Triplet sampling for training: (anchor sketch, photo of its class, photo of another class)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from splip.data.images import ImageSet
from splip.distributed import World

_TAG_TRIPLETS = 0x7819
POSITIVES = ("same_class", "source_photo")
NEGATIVES = ("uniform_photo", "uniform_class")


class TripletDataset(Dataset):
    """Each item: anchor sketch, a positive photo, a negative photo of another class.

    Item ``i`` uses anchor sketch ``anchors[i]`` (every sketch, or with ``positives="source_photo"``
    those whose source photo is known).

    - ``positives="same_class"``: uniform over the photos of the sketch's class (category-level
      ZS-SBIR). ``"source_photo"``: the photo the sketch was drawn from, ``source_photo[s]`` (an
      index into ``photos``, -1 if unknown; fine-grained training).
    - ``negatives="uniform_photo"``: uniform over the photos of the other classes that have
      sketches (classes present in both modalities), so large classes are drawn more often.
      ``"uniform_class"`` (CLIP-AT's code): one of the other classes uniformly, then one of its
      photos uniformly.

    Draws are made for all items at once per epoch with ``numpy.random.default_rng([seed, 0x7819,
    epoch])``, so they are fixed by (seed, epoch, i). Call :meth:`set_epoch` before iterating each
    epoch. Integer items read the current draws, which DataLoader workers copy when they start;
    with persistent workers, index by :meth:`key` (as :class:`TripletBatchSampler` does).
    """

    def __init__(self, sketches: ImageSet, photos: ImageSet, seed: int = 0, positives: str = "same_class",
                 negatives: str = "uniform_photo", source_photo: np.ndarray | None = None):
        if positives not in POSITIVES:
            raise ValueError(f"positives must be one of {POSITIVES}, got {positives!r}")
        if negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
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
        self.positives, self.negatives = positives, negatives
        if positives == "source_photo":
            self.anchors, self._source = _fine_grained_anchors(sketches, photos, source_photo)
        else:
            self.anchors = np.arange(len(sketches))  # (N,)
        usable = np.flatnonzero(np.isin(photos.labels, sketch_classes))
        self._photo_order = usable[np.argsort(photos.labels[usable], kind="stable")]  # (P,) photos grouped by class
        counts = np.bincount(photos.labels[usable], minlength=len(photos.classes))  # (C,)
        self._start = np.concatenate([[0], np.cumsum(counts)[:-1]])  # (C,) first position of each class
        self._count = counts
        self._classes = np.flatnonzero(counts)  # (K,) classes that can give a negative
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Re-draw every item's positive and negative photo for ``epoch`` (deterministic)."""
        rng = np.random.default_rng([self.seed, _TAG_TRIPLETS, epoch])
        lab = self.sketches.labels[self.anchors]  # (N,)
        start, count = self._start[lab], self._count[lab]  # (N,), (N,)
        # Both draws are made in every mode, so switching one option leaves the other's draws alone.
        pos = self._photo_order[start + rng.integers(0, count)]  # (N,) into photos
        if self.negatives == "uniform_photo":
            other = rng.integers(0, len(self._photo_order) - count)  # position among the other classes' photos
            neg = np.where(other >= start, other + count, other)  # skip the anchor class's block
        else:
            rank = np.searchsorted(self._classes, lab)  # (N,) the anchor class among the K classes
            other = rng.integers(0, len(self._classes) - 1, size=len(lab))  # one of the K - 1 others
            neg_class = self._classes[np.where(other >= rank, other + 1, other)]  # (N,)
            neg = self._start[neg_class] + rng.integers(0, self._count[neg_class])
        self.epoch = epoch
        self.positive_index = self._source if self.positives == "source_photo" else pos  # (N,) into photos
        self.negative_index = self._photo_order[neg]  # (N,) into photos

    def __len__(self) -> int:
        return len(self.anchors)

    def key(self, i: int) -> tuple[int, int, int]:
        """Item ``i`` of the current epoch as (anchor sketch, positive photo, negative photo) indices."""
        return int(self.anchors[i]), int(self.positive_index[i]), int(self.negative_index[i])

    def __getitem__(self, i: int | tuple[int, int, int]) -> dict | None:
        """Item ``i`` of the current epoch, or the triplet a :meth:`key` names (what
        :class:`TripletBatchSampler` hands to DataLoader workers, so their copy's epoch never matters)."""
        s, p, n = self.key(i) if isinstance(i, (int, np.integer)) else i
        items = (self.sketches[s], self.photos[p], self.photos[n])
        if any(it is None for it in items):
            return None
        return {
            "sketch": items[0][0], "positive": items[1][0], "negative": items[2][0],
            "label": items[0][1], "negative_label": items[2][1],
            "index": s, "positive_index": p, "negative_index": n,
        }


def _fine_grained_anchors(sketches: ImageSet, photos: ImageSet,
                          source_photo: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(anchor sketches, their source photos) for fine-grained triplets: sketches with a known source."""
    if source_photo is None:
        raise ValueError("positives='source_photo' needs source_photo (each sketch's photo index, -1 if unknown); "
                         "this dataset has no fine-grained pairs: use positives='same_class'")
    source = np.asarray(source_photo, dtype=np.int64)  # (N_sketch,)
    if source.shape != (len(sketches),) or source.max(initial=-1) >= len(photos):
        raise ValueError(f"source_photo must hold one photo index (< {len(photos)}) or -1 per sketch "
                         f"({len(sketches)}), got shape {source.shape}")
    anchors = np.flatnonzero(source >= 0)  # (N,)
    if anchors.size == 0:
        raise ValueError("positives='source_photo': no sketch has a known source photo")
    if (photos.labels[source[anchors]] != sketches.labels[anchors]).any():
        raise ValueError("source_photo points some sketches at a photo of another class")
    return anchors, source[anchors]


class TripletBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """The batches of one epoch, as triplet keys: this process's share of each global batch.

    Call :meth:`set_epoch` before each epoch. The order is ``torch.randperm`` of the items from a
    generator seeded with ``seed * 100_003 + epoch``, cut into batches, the last incomplete one
    dropped; it restarts identically on every ``iter()``, so it is fixed by (seed, epoch) however the
    loader is iterated (tqdm.auto, for one, creates an iterator it never reads). Each global batch of ``batch_size``
    items is cut into contiguous shares (:meth:`splip.distributed.World.share`), so the run is the
    same whatever the number of processes. Keys carry the positive and negative drawn in the main
    process, so persistent DataLoader workers (whose copy of the dataset keeps an old epoch) still
    load the right triplets.
    """

    def __init__(self, triplets: TripletDataset, batch_size: int, seed: int, world: World = World()) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive number of triplets, got {batch_size}")
        self.triplets, self.batch_size, self.seed, self.world = triplets, batch_size, seed, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's triplets (TripletDataset.set_epoch) and fix this epoch's order."""
        self.epoch = epoch
        self.triplets.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.triplets), generator=generator).tolist()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = order[start:start + self.batch_size]
            yield [self.triplets.key(i) for i in batch[self.world.share(self.batch_size)]]

    def __len__(self) -> int:
        return len(self.triplets) // self.batch_size


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


def triplet_loader(triplets: TripletDataset, batch_size: int, seed: int, world: World = World(),
                   num_workers: int = 0, pin_memory: bool = False) -> tuple[TripletBatchSampler, DataLoader]:
    """The one training loader of a run and its batch sampler (call ``sampler.set_epoch`` each epoch).

    Persistent workers (the sampler's keys carry each epoch's triplets, so they need no restart) and,
    with ``pin_memory``, pinned batches for fast copies to a GPU. The loader's own generator (for the
    workers' base seed; no item is random) leaves torch's global one alone.
    """
    sampler = TripletBatchSampler(triplets, batch_size, seed, world)
    loader = DataLoader(triplets, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_triplets,
                        pin_memory=pin_memory, persistent_workers=num_workers > 0,
                        generator=torch.Generator().manual_seed(seed))
    return sampler, loader
