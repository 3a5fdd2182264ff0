"""quickdraw-mini and tuberlin-mini: real sketches against Tiny ImageNet photos, at CPU scale.

The sketch classes are those of splip/splits/mini_class_map.tsv marked `keep` (a QuickDraw or
TU-Berlin category -> Tiny ImageNet wnids, checked by eye; the rejected rows say why). Photos:

- quickdraw-mini: training classes use the Tiny ImageNet *train* photos of their wnids (300 each);
  the validation classes (held-out seen classes, drawn with the run's seed) and the unseen classes
  (splip/splits/quickdraw_mini_unseen.txt, a quarter of the kept classes drawn once with numpy
  seed 2024) use the *val* photos (50 each), which the mini-CLIP never saw. Every gallery is thus
  unseen by the backbone, and validation is as cheap as testing.
  Sketches: the first `sketches_per_class` drawings of each QuickDraw simplified file, rendered.
- tuberlin-mini: a cross-dataset test set only. Every kept class with a TU-Berlin folder is a test
  class (TU-Berlin sketches, Tiny ImageNet val photos); no training or validation images.

Data root layout (what splip.download creates; ../shared/data has it too):
    <root>/tiny-imagenet-200/   <root>/quickdraw/simplified/<category>.ndjson   <root>/tu-berlin/png/<class>/<id>.png
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from splip.data.dataset import SBIRDataset, choose_val_classes, split_sets
from splip.data.errors import DatasetNotFoundError, not_found_message
from splip.data.images import FileSource, ImageSet
from splip.data.quickdraw import QuickDrawSource, read_drawings
from splip.data.tinyimagenet import TINY_IMAGENET_SPLITS, tiny_imagenet_files
from splip.download import download_quickdraw, download_tiny_imagenet, download_tu_berlin
from splip.io import display_path

QUICKDRAW_SKETCHES_PER_CLASS = 25  # what ../shared/data holds: the first 25 drawings of each category
_LAYOUT = """  <root>/tiny-imagenet-200/  (wnids.txt, words.txt, train/, val/)
  <root>/quickdraw/simplified/<category>.ndjson   (quickdraw-mini)
  <root>/tu-berlin/png/<class>/<id>.png            (tuberlin-mini)"""
_DOWNLOAD = ("splip.data.mini.download_mini_data(root) fetches all three (resumable, verified; see splip.download: "
             "Tiny ImageNet from cs231n.stanford.edu, QuickDraw from storage.googleapis.com, TU-Berlin from "
             "cybertron.cg.tu-berlin.de)")


@dataclass(frozen=True)
class MiniClass:
    """One row of mini_class_map.tsv."""

    name: str
    wnids: tuple[str, ...]
    quickdraw: str | None  # file stem under quickdraw/simplified/
    tu_berlin: str | None  # folder under tu-berlin/png/
    keep: bool
    note: str


def mini_class_map() -> list[MiniClass]:
    """Every row of splip/splits/mini_class_map.tsv, kept and dropped."""
    text = resources.files("splip").joinpath("splits", "mini_class_map.tsv").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    rows = []
    for line in lines[1:]:  # lines[0] is the header
        name, wnids, quickdraw, tu_berlin, verdict, note = (line.split("\t") + [""])[:6]
        rows.append(MiniClass(name, tuple(wnids.split(",")), None if quickdraw == "-" else quickdraw,
                              None if tu_berlin == "-" else tu_berlin, verdict == "keep", note))
    return rows


def quickdraw_mini_unseen() -> list[str]:
    """The fixed zero-shot test classes of quickdraw-mini."""
    text = resources.files("splip").joinpath("splits", "quickdraw_mini_unseen.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def download_mini_data(root: str | Path, progress: bool = True) -> Path:
    """Download what quickdraw-mini and tuberlin-mini read into `root` (skipping what is there):
    Tiny ImageNet (~240 MB zip), the QuickDraw simplified file of every kept class (the full files,
    tens of MB each; only their first lines are used) and the TU-Berlin sketches (~525 MB zip)."""
    root = Path(root)
    download_tiny_imagenet(root, progress=progress)
    download_quickdraw([c.quickdraw for c in mini_class_map() if c.keep and c.quickdraw], root, progress=progress)
    download_tu_berlin(root, progress=progress)
    return root


def _check_root(root: Path, name: str, needed: list[str]) -> None:
    missing = [str(root / item) for item in needed if not (root / item).exists()]
    if missing:
        raise DatasetNotFoundError(not_found_message(
            title=f"{name} data", looked_at=root, problems=[f"missing {path}" for path in missing], layout=_LAYOUT,
            download=_DOWNLOAD, dataset_name=name, folder="tiny-imagenet-200",
        ))


def _photos(root: Path, classes: list[MiniClass], split_of_class: list[str], image_size: int) -> ImageSet:
    """Tiny ImageNet photos of every class's wnids, from the split named per class, labelled by
    class; class by class, each class's photos in Tiny ImageNet's order (wnid, then file number)."""
    tiny = root / "tiny-imagenet-200"
    class_of_wnid = {wnid: label for label, mini_class in enumerate(classes) for wnid in mini_class.wnids}
    dirs, dir_index, files, labels = [], [], [], []
    for split in TINY_IMAGENET_SPLITS:  # one listing per split, not one per class
        wnids = [wnid for mini_class, chosen in zip(classes, split_of_class) if chosen == split
                 for wnid in mini_class.wnids]
        if not wnids:
            continue
        split_dirs, split_index, split_files, wnid_ids = tiny_imagenet_files(tiny, split, wnids)
        dir_index.append(split_index + len(dirs))
        dirs += split_dirs
        files.append(split_files)
        labels.append(np.array([class_of_wnid[wnid] for wnid in wnids], dtype=np.int64)[wnid_ids])
    order = np.argsort(np.concatenate(labels), kind="stable")  # (N,) class by class
    source = FileSource(tiny, dirs, np.concatenate(dir_index)[order], np.concatenate(files)[order])
    return ImageSet(source, np.arange(len(order)), np.concatenate(labels)[order], [c.name for c in classes],
                    "photo", image_size)


def load_quickdraw_mini(root: Path, image_size: int = 64, val_fraction: float = 0.2, seed: int = 0,
                        sketches_per_class: int = QUICKDRAW_SKETCHES_PER_CLASS) -> SBIRDataset:
    """quickdraw-mini (see the module docstring); `val_fraction` of the seen classes, drawn with
    `seed`, are held out for model selection."""
    classes = [c for c in mini_class_map() if c.keep and c.quickdraw]
    names = [c.name for c in classes]
    unseen = quickdraw_mini_unseen()
    _check_root(root, "quickdraw-mini", ["tiny-imagenet-200/val/val_annotations.txt"]
                + [f"quickdraw/simplified/{c.quickdraw}.ndjson" for c in classes])
    drawings, sketch_names, sketch_labels = [], [], []
    for label, mini_class in enumerate(classes):
        path = root / "quickdraw" / "simplified" / f"{mini_class.quickdraw}.ndjson"
        strokes, keys = read_drawings(path, sketches_per_class)
        drawings += strokes
        sketch_names += [f"{path}#{key}" for key in keys]
        sketch_labels += [label] * len(strokes)
    sketches = ImageSet(QuickDrawSource(drawings, sketch_names), np.arange(len(drawings)),
                        np.array(sketch_labels), names, "sketch", image_size)
    unseen_ids = [names.index(name) for name in unseen]
    train_ids, val_ids = choose_val_classes([i for i in range(len(names)) if i not in unseen_ids], val_fraction, seed)
    photos = _photos(root, classes, ["train" if i in train_ids else "val" for i in range(len(names))], image_size)
    return SBIRDataset(
        name="quickdraw-mini", classes=names, train_ids=train_ids, val_ids=val_ids, unseen_ids=unseen_ids,
        **split_sets(sketches, photos, train_ids, val_ids, unseen_ids), fg_source_photo=None,
        source=(f"QuickDraw simplified drawings (first {sketches_per_class} per category, rendered) against Tiny "
                f"ImageNet photos (train split for training classes, val split for validation and unseen ones), class map "
                f"splip/splits/mini_class_map.tsv, from {display_path(root)}"),
    )


def load_tuberlin_mini(root: Path, image_size: int = 64) -> SBIRDataset:
    """tuberlin-mini (see the module docstring): every class is a test class."""
    classes = [c for c in mini_class_map() if c.keep and c.tu_berlin]
    _check_root(root, "tuberlin-mini", ["tiny-imagenet-200/val/val_annotations.txt"]
                + [f"tu-berlin/png/{c.tu_berlin}" for c in classes])
    dirs = [c.tu_berlin for c in classes]
    files = [sorted(p.name for p in (root / "tu-berlin" / "png" / folder).glob("*.png")) for folder in dirs]
    dir_index = np.concatenate([np.full(len(f), i) for i, f in enumerate(files)])
    source = FileSource(root / "tu-berlin" / "png", dirs, dir_index, np.concatenate(files))
    names = [c.name for c in classes]
    sketches = ImageSet(source, np.arange(len(dir_index)), dir_index, names, "sketch", image_size)
    photos = _photos(root, classes, ["val"] * len(classes), image_size)
    all_ids = list(range(len(classes)))
    return SBIRDataset(
        name="tuberlin-mini", classes=names, train_ids=[], val_ids=[], unseen_ids=all_ids,
        **split_sets(sketches, photos, [], [], all_ids), fg_source_photo=None,
        source=f"TU-Berlin sketches against Tiny ImageNet val photos (test only), class map "
               f"splip/splits/mini_class_map.tsv, from {display_path(root)}",
    )
