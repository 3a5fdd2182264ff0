"""Loaders for the official benchmarks: Sketchy-Extended (two splits), TU-Berlin-Extended, QuickDraw-Extended."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np

from splip.data.dataset import SBIRDataset, choose_val_classes, positions_of_keys, split_sets
from splip.data.errors import DatasetNotFoundError, not_found_message
from splip.data.images import FileSource, ImageSet
from splip.io import display_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

_SKETCHY_DOWNLOAD = (
    "Sketchy (Sketchy.7z, which unpacks to 256x256/{sketch,photo}/tx_000000000000/) and its extended photos "
    "(extended_photo.zip, which unpacks to EXTEND_image_sketchy/), e.g. with the sem-pcyc script "
    "download_datasets.sh (github.com/AnjanDutta/sem-pcyc), which renames them. Arrange them under Sketchy/ "
    "with the names of the ZSE-SBIR file lists (github.com/buptLinfy/ZSE-SBIR): "
    "256x256/sketch/tx_000000000000_ready, 256x256/photo/tx_000000000000_ready, EXTEND_image_sketchy_ready"
)


@dataclass(frozen=True)
class OfficialLayout:
    """Where one benchmark's images lie under the data root, and which class split it uses.

    ``photo_dirs`` are the photo folders, each with one folder per class; a class's photos are
    read folder by folder in this order. With ``fine_grained``, ``photo_dirs[0]`` holds the photos
    the sketches were drawn from (``<photo_id>-<k>`` was drawn from ``<photo_id>``).
    """

    title: str
    folder: str
    split: str  # stem of the class lists splip/splits/<split>_{seen,unseen}.txt
    sketch_dir: str
    photo_dirs: tuple[str, ...]
    sketch_example: str
    photo_examples: tuple[str, ...]  # file names in each of photo_dirs
    download: str
    fine_grained: bool

    def layout_tree(self) -> str:
        photos = "".join(f"    {d}/<class>/{e}\n" for d, e in zip(self.photo_dirs, self.photo_examples))
        pairs = (f"  (fine-grained pairs: sketch <photo_id>-<k> was drawn from "
                 f"{self.photo_dirs[0]}/<class>/<photo_id>.jpg)\n") if self.fine_grained else ""
        return (
            f"  <root>/{self.folder}/\n"
            f"    {self.sketch_dir}/<class>/{self.sketch_example}\n"
            f"{photos}{pairs}"
            f"  (in each of these folders one folder per class, named exactly as in "
            f"splip/splits/{self.split}_{{seen,unseen}}.txt;\n"
            f"  image extensions .png/.jpg/.jpeg in any case)"
        )


_SKETCHY = OfficialLayout(
    title="Sketchy-Extended (21 unseen classes, zeroshot0 split)",
    folder="Sketchy",
    split="sketchy21",
    sketch_dir="256x256/sketch/tx_000000000000_ready",
    # As published, the extension also holds a copy of (all but one of) the basic photos, same <photo_id>.jpg.
    photo_dirs=("256x256/photo/tx_000000000000_ready", "EXTEND_image_sketchy_ready"),
    sketch_example="<photo_id>-<k>.png",
    photo_examples=("<photo_id>.jpg", "ext_<n>.jpg (plus a copy of each <photo_id>.jpg)"),
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
        photo_dirs=("ImageResized_ready",),
        sketch_example="<id>.png",
        photo_examples=("<wnid>_<n>.JPEG",),
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
        photo_dirs=("images",),
        sketch_example="<key_id>.png",
        photo_examples=("<name>.jpg",),
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


def _image_set(base: Path, modality_dirs: tuple[str, ...], classes: list[str], per_dir: list[list[list[str]]],
               modality: str, image_size: int) -> ImageSet:
    """Every image of one modality: class by class, within a class folder by folder (``modality_dirs``
    order), then as listed. ``per_dir[d][c]``: the file names of class ``c`` in ``modality_dirs[d]``.

    Source key = position in this order; the source's ``dirs[d * C + c]`` is ``modality_dirs[d]/<class c>``.
    """
    n_classes, n_dirs = len(classes), len(modality_dirs)
    counts = np.array([[len(names[c]) for names in per_dir] for c in range(n_classes)], dtype=np.int64)  # (C, D)
    labels = np.repeat(np.arange(n_classes), counts.sum(axis=1))  # (N,)
    dir_ids = np.arange(n_dirs)[None, :] * n_classes + np.arange(n_classes)[:, None]  # (C, D)
    dir_index = np.repeat(dir_ids.ravel(), counts.ravel())  # (N,)
    files = np.array([n.encode("utf-8") for c in range(n_classes) for names in per_dir for n in names[c]],
                     dtype=np.bytes_)  # (N,)
    dirs = [f"{d}/{name}" for d in modality_dirs for name in classes]
    source = FileSource(base, dirs, dir_index, files)
    return ImageSet(source, np.arange(len(labels)), labels, classes, modality, image_size)


def _in_first_dir(images: ImageSet) -> np.ndarray:
    """(N,) bool: which items of a set built by :func:`_image_set` lie in its first folder."""
    return images.source.dir_index[images.keys] < len(images.classes)


def _source_photo_keys(sketches: ImageSet, photos: ImageSet) -> np.ndarray:
    """(N_sketches,) for each sketch ``<photo_id>-<k>.<ext>``: the key of photo ``<photo_id>.<ext>`` of
    the same class in the first photo folder (the basic photos), else -1. Full sets (keys = positions)."""
    basic = np.flatnonzero(_in_first_dir(photos))
    photo_key = {(int(photos.labels[j]), os.path.splitext(photos.source.files[j].decode("utf-8"))[0]): int(j)
                 for j in basic}
    out = np.full(len(sketches), -1, dtype=np.int64)  # (N_sketches,)
    for i, (label, name) in enumerate(zip(sketches.labels.tolist(), sketches.source.files)):
        photo_id, dash, k = os.path.splitext(name.decode("utf-8"))[0].rpartition("-")
        if dash and k.isdigit():
            out[i] = photo_key.get((label, photo_id), -1)
    return out


def _fine_grained_fields(sketches: ImageSet, photos: ImageSet, sets: dict[str, ImageSet]) -> dict[str, np.ndarray]:
    """The SBIRDataset fine-grained fields: source photos of test and training sketches, FG gallery."""
    source_key = _source_photo_keys(sketches, photos)  # (N_sketches,) into the full photo set

    def source_photo(split: str) -> np.ndarray:  # (N_split_sketches,) into that split's photos
        return positions_of_keys(sets[f"{split}_photos"], source_key[sets[f"{split}_sketches"].keys])

    return {
        "fg_source_photo": source_photo("test"),
        "train_fg_source_photo": source_photo("train"),
        "test_photo_in_fg_gallery": _in_first_dir(sets["test_photos"]),
    }


def load_official(name: str, root: Path, image_size: int, val_fraction: float, seed: int) -> SBIRDataset:
    """Load an official benchmark from ``root/<folder>``; see :data:`OFFICIAL_LAYOUTS` for the layouts.

    ``classes`` = the split's seen then unseen class lists in their published order; the images of
    each class folder by folder (``photo_dirs`` order: Sketchy's basic photos, then its extension),
    each in sorted file-name order. Every class folder must exist in every folder of the layout.
    Only folder listings are read here; images decode lazily. Sketchy: fine-grained pairs for the
    test and training sketches, and an FG gallery of the basic test photos (see :class:`SBIRDataset`).
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
    photo_names = [_walk(base, d, classes, problems) for d in layout.photo_dirs]
    if problems:
        raise fail(problems)

    sketches = _image_set(base, (layout.sketch_dir,), classes, [sketch_names], "sketch", image_size)
    photos = _image_set(base, layout.photo_dirs, classes, photo_names, "photo", image_size)
    seen_ids = list(range(len(seen)))
    unseen_ids = list(range(len(seen), len(classes)))
    train_ids, val_ids = choose_val_classes(seen_ids, val_fraction, seed)
    sets = split_sets(sketches, photos, train_ids, val_ids, unseen_ids)
    fg = _fine_grained_fields(sketches, photos, sets) if layout.fine_grained else {"fg_source_photo": None}
    return SBIRDataset(
        name=name, classes=classes, train_ids=train_ids, val_ids=val_ids, unseen_ids=unseen_ids,
        source=f"{layout.title}, read from {display_path(base)}", synthetic=False, **sets, **fg,
    )
