"""Image sets: one modality of one split, decoded lazily and normalised for CLIP."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

MODALITIES = ("sketch", "photo")
# Fill of the margins added to make an image square: paper white for sketches; black for photos, as
# CLIP-AT's loader (aneeshan95/Sketch_LVM, src/dataset_retrieval.py: ImageOps.pad, default colour).
PAD_FILL = {"sketch": (255, 255, 255), "photo": (0, 0, 0)}

# Exceptions PIL raises on missing, truncated or garbage files; anything else is a bug and propagates.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class ImageSource(Protocol):
    """Where the pixels of an :class:`ImageSet` come from; ``key`` is the source's own item number."""

    def load(self, key: int) -> Image.Image: ...

    def name(self, key: int) -> str: ...


class FileSource:
    """Images on disk: ``root / dirs[dir_index[key]] / files[key]``.

    File names are kept as one numpy byte-string array (not a list of ``str``) so that DataLoader
    workers forked from the main process do not copy them page by page through refcount updates,
    and so that QuickDraw's ~330k names stay a few MB.
    """

    def __init__(self, root: Path, dirs: list[str], dir_index: np.ndarray, files: np.ndarray):
        self.root = str(root)
        self.dirs = list(dirs)
        self.dir_index = np.asarray(dir_index, dtype=np.int32)  # (N,)
        self.files = np.asarray(files, dtype=np.bytes_)  # (N,) utf-8 file names

    def __len__(self) -> int:
        return len(self.files)

    def name(self, key: int) -> str:
        return os.path.join(self.root, self.relative_name(key))

    def relative_name(self, key: int) -> str:
        """``dirs[dir_index[key]] / files[key]``: the path below ``root`` (as in published file lists)."""
        return os.path.join(self.dirs[self.dir_index[key]], self.files[key].decode("utf-8"))

    def load(self, key: int) -> Image.Image:
        with Image.open(self.name(key)) as img:
            img.load()
            return img.copy() if img.mode in ("RGB", "L") else _flatten_on_white(img)


def _flatten_on_white(img: Image.Image) -> Image.Image:
    """RGB version of ``img``; transparent pixels become white (sketch PNGs may use alpha for ink)."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def to_clip_tensor(img: Image.Image, image_size: int, modality: str) -> Tensor:
    """``img`` as a (3, S, S) float tensor: RGB, fitted into S x S keeping its aspect ratio, scaled to
    [0, 1], then normalised per channel with CLIP's mean/std: ``(x - OPENAI_DATASET_MEAN) / OPENAI_DATASET_STD``.

    A non-square image is resized so that its longer side is S and centred on an S x S canvas of
    :data:`PAD_FILL` (``PIL.ImageOps.pad``, as CLIP-AT's loader); squashing it would distort shapes
    that sketch and photo must share. Square images are only resized. Photos are resized
    bicubically; sketches bilinearly (PIL filters are antialiased when shrinking, which keeps
    one-pixel strokes as grey lines instead of dropping them). No randomness.
    """
    if img.mode != "RGB":
        img = _flatten_on_white(img)
    if img.size != (image_size, image_size):
        resample = Image.Resampling.BICUBIC if modality == "photo" else Image.Resampling.BILINEAR
        if img.width == img.height:
            img = img.resize((image_size, image_size), resample=resample)
        else:
            img = ImageOps.pad(img, (image_size, image_size), method=resample, color=PAD_FILL[modality])
    x = TF.pil_to_tensor(img).float().div_(255.0)  # (3, S, S)
    return TF.normalize(x, mean=list(OPENAI_DATASET_MEAN), std=list(OPENAI_DATASET_STD))


class ImageSet(Dataset):
    """One modality of one split: images + global class labels.

    Item ``i`` is ``(image, label, i)``: image (3, S, S) float, CLIP-normalised (see
    :func:`to_clip_tensor`); label an index into ``classes`` (the dataset's full class list, shared by
    all its sets); ``i`` the position in this set. An image that fails to decode gives ``None``
    instead; it is counted in ``num_unreadable`` (distinct images, this process only: counts made in
    DataLoader worker processes stay there) and the first one per set is reported with a warning.
    """

    def __init__(
        self,
        source: ImageSource,
        keys: np.ndarray,
        labels: np.ndarray,
        classes: list[str],
        modality: str,
        image_size: int,
    ):
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        if image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
        self.source = source
        self.keys = np.asarray(keys, dtype=np.int64)  # (N,) item numbers in `source`
        self.labels = np.asarray(labels, dtype=np.int64)  # (N,)
        if self.keys.shape != self.labels.shape or self.keys.ndim != 1:
            raise ValueError(f"keys {self.keys.shape} and labels {self.labels.shape} must be equal-length 1-D")
        self.classes = classes
        self.modality = modality
        self.image_size = int(image_size)
        self._unreadable: set[int] = set()

    @property
    def num_unreadable(self) -> int:
        return len(self._unreadable)

    def __len__(self) -> int:
        return len(self.keys)

    def item_name(self, i: int) -> str:
        """Where item ``i`` comes from (a file path for real data)."""
        return self.source.name(int(self.keys[i]))

    def raw_image(self, i: int) -> Image.Image:
        """Item ``i`` as decoded, before resizing and normalisation (for figures); raises if unreadable."""
        return self.source.load(int(self.keys[i]))

    def __getitem__(self, i: int) -> tuple[Tensor, int, int] | None:
        if not 0 <= i < len(self.keys):
            raise IndexError(f"index {i} out of range for an ImageSet of {len(self.keys)} items")
        try:
            img = self.source.load(int(self.keys[i]))
        except _DECODE_ERRORS as err:
            if not self._unreadable:
                warnings.warn(
                    f"splip: skipping unreadable {self.modality} image {self.item_name(i)} ({err}). "
                    f"Further unreadable images of this set are skipped silently; see num_unreadable.",
                    stacklevel=2,
                )
            self._unreadable.add(int(i))
            return None
        return to_clip_tensor(img, self.image_size, self.modality), int(self.labels[i]), int(i)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        """A view holding items ``indices`` (ints into this set, or a boolean mask), in that order."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        return ImageSet(self.source, self.keys[idx], self.labels[idx], self.classes, self.modality, self.image_size)

    def __repr__(self) -> str:
        n_classes = len(np.unique(self.labels))
        return f"ImageSet({self.modality}, {len(self)} images, {n_classes} classes, {self.image_size}px)"


def collate_skip_unreadable(batch: list[tuple[Tensor, int, int] | None]) -> tuple[Tensor, Tensor, Tensor] | None:
    """Stack ImageSet items into (images (B, 3, S, S), labels (B,) int64, indices (B,) int64),
    dropping unreadable (``None``) items; ``None`` when every item was dropped."""
    items = [b for b in batch if b is not None]
    if not items:
        return None
    images = torch.stack([b[0] for b in items])  # (B, 3, S, S)
    labels = torch.tensor([b[1] for b in items], dtype=torch.int64)  # (B,)
    indices = torch.tensor([b[2] for b in items], dtype=torch.int64)  # (B,)
    return images, labels, indices
