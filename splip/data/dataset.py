"""The split structure shared by every benchmark: train / validation (held-out seen) / unseen test."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from splip.data.images import ImageSet


def class_prompt_name(folder_name: str) -> str:
    """Human text for a class folder name: ``_`` and ``-`` become spaces, runs of spaces collapse.

    ``"alarm_clock" -> "alarm clock"``, ``"hot-air_balloon" -> "hot air balloon"``.
    """
    return re.sub(r"\s+", " ", re.sub(r"[_-]", " ", folder_name)).strip()


def choose_val_classes(seen_ids: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split the seen classes into (train_ids, val_ids), both sorted.

    ``val_ids`` is a uniformly random (``numpy.random.default_rng([seed, 0x7A1])``) choice of
    ``max(1, round(val_fraction * len(seen_ids)))`` seen classes; they are removed from training and
    used for model selection, so the unseen test classes are never looked at before testing.
    ``val_fraction=0``: no class is held out (``val_ids`` empty), training uses every seen class.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1) (share of seen classes held out; 0: none), "
                         f"got {val_fraction}")
    if val_fraction == 0:
        return sorted(seen_ids), []
    n_val = max(1, int(round(val_fraction * len(seen_ids))))
    if n_val >= len(seen_ids):
        raise ValueError(
            f"val_fraction={val_fraction} leaves no training class among {len(seen_ids)} seen classes; lower it"
        )
    rng = np.random.default_rng([seed, 0x7A1])
    val = set(int(c) for c in rng.choice(np.asarray(seen_ids), size=n_val, replace=False))
    return sorted(c for c in seen_ids if c not in val), sorted(val)


@dataclass(eq=False)  # field-wise == is meaningless for arrays and ImageSets
class SBIRDataset:
    """A zero-shot SBIR benchmark split into training, validation and test sets.

    ``classes`` is the full list of class folder names; every label indexes into it. ``train_ids``
    are seen classes used for training, ``val_ids`` held-out seen classes for model selection
    (never test classes), ``unseen_ids`` the zero-shot test classes. ``source`` says where the data
    came from.

    Fine-grained pairs (``None`` when the benchmark has none):

    - ``fg_source_photo`` (N_test_sketches,) int64: index into ``test_photos`` of the photo test
      sketch ``i`` was drawn from, -1 if unknown.
    - ``train_fg_source_photo`` (N_train_sketches,) int64: the same for ``train_sketches``, index
      into ``train_photos``.
    - ``test_photo_in_fg_gallery`` (N_test_photos,) bool: the test photos a fine-grained query is
      ranked against (Sketchy: the basic photos, not the extension, which holds a second copy of
      each); ``None`` means every test photo. See :func:`fine_grained_gallery`.
    """

    name: str
    classes: list[str]
    train_ids: list[int]
    val_ids: list[int]
    unseen_ids: list[int]
    train_sketches: ImageSet
    train_photos: ImageSet
    val_sketches: ImageSet
    val_photos: ImageSet
    test_sketches: ImageSet
    test_photos: ImageSet
    fg_source_photo: np.ndarray | None
    source: str = ""
    synthetic: bool = False
    train_fg_source_photo: np.ndarray | None = None
    test_photo_in_fg_gallery: np.ndarray | None = None

    def __post_init__(self) -> None:
        # A mapping of the wrong length would silently pair the wrong images.
        for field, n in (("fg_source_photo", len(self.test_sketches)),
                         ("train_fg_source_photo", len(self.train_sketches)),
                         ("test_photo_in_fg_gallery", len(self.test_photos))):
            value = getattr(self, field)
            if value is not None and np.shape(value) != (n,):
                raise ValueError(f"SBIRDataset.{field} must have shape ({n},), got {np.shape(value)}")
        if self.test_photo_in_fg_gallery is not None and np.asarray(self.test_photo_in_fg_gallery).dtype != bool:
            raise ValueError("SBIRDataset.test_photo_in_fg_gallery must be a boolean mask over test_photos")

    def class_prompt_name(self, class_id: int) -> str:
        """Prompt text of class ``class_id`` (see :func:`class_prompt_name`)."""
        return class_prompt_name(self.classes[class_id])

    def describe(self) -> str:
        """One paragraph: origin, class split, images per split, fine-grained pairs."""
        kind = "synthetic data generated on the fly" if self.synthetic else "real data"
        fg = "no fine-grained sketch-photo pairs"
        if self.fg_source_photo is not None:
            known = int((self.fg_source_photo >= 0).sum())
            fg = (f"{known:,} of {len(self.test_sketches):,} test sketches have a known source photo "
                  f"(fine-grained pairs; FG gallery: {len(fine_grained_gallery(self)):,} of the test photos)")
        return (
            f"{self.name}: {kind}, {self.source}. {len(self.classes)} classes: {len(self.train_ids)} for training, "
            f"{len(self.val_ids)} held-out seen classes for validation, {len(self.unseen_ids)} unseen for the "
            f"zero-shot test. Sketches / photos: train {len(self.train_sketches):,} / {len(self.train_photos):,}, "
            f"val {len(self.val_sketches):,} / {len(self.val_photos):,}, test {len(self.test_sketches):,} / "
            f"{len(self.test_photos):,}; {fg}. Images are served at {self.test_photos.image_size} px, "
            f"CLIP-normalised."
        )


def split_sets(
    sketches: ImageSet, photos: ImageSet, train_ids: list[int], val_ids: list[int], unseen_ids: list[int]
) -> dict[str, ImageSet]:
    """The six per-split views of the full sketch and photo sets, keyed like the SBIRDataset fields."""
    out = {}
    for split, ids in (("train", train_ids), ("val", val_ids), ("test", unseen_ids)):
        out[f"{split}_sketches"] = sketches.subset(np.isin(sketches.labels, ids))
        out[f"{split}_photos"] = photos.subset(np.isin(photos.labels, ids))
    return out


def fine_grained_pairs(dataset: SBIRDataset) -> tuple[np.ndarray, np.ndarray]:
    """(sketch indices into ``test_sketches``, photo indices into ``test_photos``) of every test
    sketch whose source photo is known, in sketch order."""
    if dataset.fg_source_photo is None:
        raise ValueError(
            f"dataset {dataset.name!r} has no fine-grained sketch-photo pairs; "
            f"use 'sketchy', 'sketchy25' or 'synthetic'"
        )
    sketch_idx = np.flatnonzero(dataset.fg_source_photo >= 0)
    return sketch_idx, dataset.fg_source_photo[sketch_idx].astype(np.int64)


def fine_grained_gallery(dataset: SBIRDataset) -> np.ndarray:
    """Indices into ``test_photos`` of the fine-grained gallery (``test_photo_in_fg_gallery``; all
    test photos when that is ``None``), ascending."""
    if dataset.test_photo_in_fg_gallery is None:
        return np.arange(len(dataset.test_photos), dtype=np.int64)
    return np.flatnonzero(dataset.test_photo_in_fg_gallery).astype(np.int64)


def positions_of_keys(images: ImageSet, keys: np.ndarray) -> np.ndarray:
    """For each source key in ``keys``: the position in ``images`` of the item with that key; -1 where
    ``images`` holds none or the key is negative (unknown). Re-indexes sketch -> source photo maps
    onto a subset of the photos."""
    keys = np.asarray(keys, dtype=np.int64)  # (M,)
    out = np.full(keys.shape, -1, dtype=np.int64)  # (M,)
    if len(images) == 0:
        return out
    order = np.argsort(images.keys, kind="stable")  # (N,)
    sorted_keys = images.keys[order]
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(order) - 1)  # (M,)
    found = (keys >= 0) & (sorted_keys[pos] == keys)
    out[found] = order[pos[found]]
    return out
