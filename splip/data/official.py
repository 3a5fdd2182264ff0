"""Loaders for the official benchmarks: Sketchy-Extended (two splits), TU-Berlin-Extended, QuickDraw-Extended."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np

from splip.data.dataset import SBIRDataset, choose_val_classes, split_sets
from splip.data.errors import DatasetNotFoundError, not_found_message
from splip.data.images import FileSource, ImageSet

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

_SKETCHY_DOWNLOAD = (
    "Sketchy with its extended photo set: the sem-pcyc script download_datasets.sh "
    "(github.com/AnjanDutta/sem-pcyc); the folder names are those of the ZSE-SBIR file lists "
    "(github.com/buptLinfy/ZSE-SBIR)"
)


@dataclass(frozen=True)
class OfficialLayout:
    """Where one benchmark's images lie under the data root, and which class split it uses."""

    title: str
    folder: str
    split: str  # stem of the class lists splip/splits/<split>_{seen,unseen}.txt
    sketch_dir: str
    photo_dir: str
    sketch_example: str
    photo_example: str
    download: str
    fine_grained: bool

    def layout_tree(self) -> str:
        return (
            f"  <root>/{self.folder}/\n"
            f"    {self.sketch_dir}/<class>/{self.sketch_example}\n"
            f"    {self.photo_dir}/<class>/{self.photo_example}\n"
            f"  (one folder per class, named exactly as in splip/splits/{self.split}_{{seen,unseen}}.txt;\n"
            f"  image extensions .png/.jpg/.jpeg in any case)"
        )


_SKETCHY = OfficialLayout(
    title="Sketchy-Extended (21 unseen classes, zeroshot0 split)",
    folder="Sketchy",
    split="sketchy21",
    sketch_dir="256x256/sketch/tx_000000000000_ready",
    photo_dir="256x256/photo/tx_000000000000_ready",
    sketch_example="<photo_id>-<k>.png",
    photo_example="<photo_id>.jpg",
    download=_SKETCHY_DOWNLOAD,
    fine_grained=True,
)

OFFICIAL_LAYOUTS = {
    "sketchy": _SKETCHY,
    # Same images, the other published class split.
    "sketchy25": replace(_SKETCHY, title="Sketchy-Extended (25 unseen classes, zeroshot1 split)", split="sketchy25"),
    "tuberlin": OfficialLayout(
        title="TU-Berlin-Extended (30 unseen classes)",
        folder="TUBerlin",
        split="tuberlin30",
        sketch_dir="png_ready",
        photo_dir="ImageResized_ready",
        sketch_example="<id>.png",
        photo_example="<wnid>_<n>.JPEG",
        download=(
            "TU-Berlin with its extended photo set: the sem-pcyc script download_datasets.sh "
            "(github.com/AnjanDutta/sem-pcyc); folder names as in the ZSE-SBIR file lists "
            "(github.com/buptLinfy/ZSE-SBIR)"
        ),
        fine_grained=False,
    ),
    "quickdraw": OfficialLayout(
        title="QuickDraw-Extended (30 unseen classes)",
        folder="QuickDraw",
        split="quickdraw30",
        sketch_dir="sketches",
        photo_dir="images",
        sketch_example="<key_id>.png",
        photo_example="<name>.jpg",
        download=(
            "QuickDraw_sketches_final.zip and QuickDraw_images_final.zip from "
            "https://datasets.cvc.uab.es/QuickDraw/ (Dey et al. 2019, Doodle to Search); put their class folders under "
            "QuickDraw/sketches/ and QuickDraw/images/"
        ),
        fine_grained=False,
    ),
}


def read_split(split: str) -> tuple[list[str], list[str]]:
    """(seen, unseen) class folder names of an official split, from the package's splits/ lists."""
    base = resources.files("splip").joinpath("splits")
    seen, unseen = (
        [ln.strip() for ln in base.joinpath(f"{split}_{part}.txt").read_text("utf-8").splitlines() if ln.strip()]
        for part in ("seen", "unseen")
    )
    return seen, unseen


def _image_names(folder: str) -> list[str]:
    """Sorted image file names in ``folder`` (by extension, case-insensitive; hidden files skipped).

    Uses one directory listing and no per-file stat: QuickDraw has ~330k sketches.
    """
    with os.scandir(folder) as it:
        names = [e.name for e in it if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(names)


def _walk(base: Path, modality_dir: str, classes: list[str], problems: list[str]) -> list[list[str]]:
    """Image names per class under ``base/modality_dir/<class>``; problems are appended, not raised."""
    top = base / modality_dir
    if not top.is_dir():
        problems.append(f"missing folder {top}")
        return []
    per_class = []
    for name in classes:
        folder = top / name
        if not folder.is_dir():
            problems.append(f"missing class folder {folder}")
            per_class.append([])
            continue
        names = _image_names(str(folder))
        if not names:
            problems.append(f"class folder holds no image: {folder}")
        per_class.append(names)
    return per_class


def _image_set(base: Path, modality_dir: str, classes: list[str], per_class: list[list[str]], modality: str,
               image_size: int) -> ImageSet:
    counts = np.array([len(n) for n in per_class], dtype=np.int64)  # (C,)
    labels = np.repeat(np.arange(len(classes)), counts)  # (N,)
    files = np.array([n.encode("utf-8") for names in per_class for n in names], dtype=np.bytes_)  # (N,)
    source = FileSource(base / modality_dir, classes, labels, files)
    return ImageSet(source, np.arange(len(labels)), labels, classes, modality, image_size)


def _fg_source_photo(sketches: ImageSet, photos: ImageSet) -> np.ndarray:
    """For each sketch ``<photo_id>-<k>.<ext>``: the index of photo ``<photo_id>.<ext>`` of the same class, else -1."""
    photo_index = {}
    for j in range(len(photos)):
        stem = os.path.splitext(os.path.basename(photos.item_name(j)))[0]
        photo_index[(int(photos.labels[j]), stem)] = j
    out = np.full(len(sketches), -1, dtype=np.int64)  # (N_sketch,)
    for i in range(len(sketches)):
        stem = os.path.splitext(os.path.basename(sketches.item_name(i)))[0]
        photo_id, dash, k = stem.rpartition("-")
        if dash and k.isdigit():
            out[i] = photo_index.get((int(sketches.labels[i]), photo_id), -1)
    return out


def load_official(name: str, root: Path, image_size: int, val_fraction: float, seed: int) -> SBIRDataset:
    """Load an official benchmark from ``root/<folder>``; see :data:`OFFICIAL_LAYOUTS` for the layouts.

    ``classes`` = the split's seen then unseen class lists in their published order; images of each
    class in sorted file-name order. Only folder listings are read here; images decode lazily.
    """
    layout = OFFICIAL_LAYOUTS[name]
    seen, unseen = read_split(layout.split)
    classes = seen + unseen
    base = root / layout.folder

    def fail(problems: list[str]) -> DatasetNotFoundError:
        return DatasetNotFoundError(not_found_message(
            title=layout.title, looked_at=base, problems=problems, layout=layout.layout_tree(),
            download=layout.download, dataset_name=name, folder=layout.folder,
        ))

    if not root.is_dir():
        raise fail([f"data root {root} does not exist"])
    if not base.is_dir():
        raise fail([f"missing folder {base}"])
    problems: list[str] = []
    sketch_names = _walk(base, layout.sketch_dir, classes, problems)
    photo_names = _walk(base, layout.photo_dir, classes, problems)
    if problems:
        raise fail(problems)

    sketches = _image_set(base, layout.sketch_dir, classes, sketch_names, "sketch", image_size)
    photos = _image_set(base, layout.photo_dir, classes, photo_names, "photo", image_size)
    seen_ids = list(range(len(seen)))
    unseen_ids = list(range(len(seen), len(classes)))
    train_ids, val_ids = choose_val_classes(seen_ids, val_fraction, seed)
    sets = split_sets(sketches, photos, train_ids, val_ids, unseen_ids)
    fg = _fg_source_photo(sets["test_sketches"], sets["test_photos"]) if layout.fine_grained else None
    return SBIRDataset(
        name=name, classes=classes, train_ids=train_ids, val_ids=val_ids, unseen_ids=unseen_ids,
        fg_source_photo=fg, source=f"{layout.title}, read from {base}", synthetic=False, **sets,
    )
