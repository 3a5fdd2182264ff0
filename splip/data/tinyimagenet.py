"""Tiny ImageNet (64x64 photos of ImageNet classes, 500 train + 50 val each), in the layout of its public zip.

    tiny-imagenet-200/wnids.txt                       class ids (wnids), one per line
    tiny-imagenet-200/words.txt                       wnid <TAB> "name, synonym, ..." (all of WordNet)
    tiny-imagenet-200/train/<wnid>/images/<wnid>_<i>.JPEG
    tiny-imagenet-200/val/images/val_<i>.JPEG + val/val_annotations.txt (file <TAB> wnid <TAB> box)

It serves two roles: photos (with class-name captions) to pretrain the mini-CLIP, and the photo
side of quickdraw-mini / tuberlin-mini. Labels index the `wnids` passed in (default: wnids.txt).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from splip.data.errors import DatasetNotFoundError
from splip.data.images import FileSource, ImageSet
from splip.download import TINY_IMAGENET_URL

TINY_IMAGENET_SPLITS = ("train", "val")
_LAYOUT = """  tiny-imagenet-200/
    wnids.txt, words.txt
    train/<wnid>/images/<wnid>_<i>.JPEG
    val/images/val_<i>.JPEG, val/val_annotations.txt"""


def _require(root: Path, *relative: str) -> None:
    missing = [name for name in relative if not (root / name).exists()]
    if missing:
        raise DatasetNotFoundError(
            f"Tiny ImageNet not found or incomplete at {root}: missing {', '.join(missing)}.\n"
            f"Expected layout:\n{_LAYOUT}\n"
            f"Download: {TINY_IMAGENET_URL} (unzip it), or splip.download.download_tiny_imagenet(<data folder>)."
        )


def tiny_imagenet_classes(root: str | Path) -> tuple[list[str], list[list[str]]]:
    """The wnids (wnids.txt order) and each one's names from words.txt (synonyms split at ', ')."""
    root = Path(root)
    _require(root, "wnids.txt", "words.txt")
    wnids = (root / "wnids.txt").read_text().split()
    words = {}
    for line in (root / "words.txt").read_text().splitlines():
        wnid, _, names = line.partition("\t")
        words[wnid] = [name.strip() for name in names.split(",") if name.strip()]
    missing = [wnid for wnid in wnids if wnid not in words]
    if missing:
        raise DatasetNotFoundError(f"{root / 'words.txt'} has no names for {missing[:5]}; the file is incomplete")
    return wnids, [words[wnid] for wnid in wnids]


def tiny_imagenet_files(root: str | Path, split: str, wnids: list[str],
                        per_class: int | None = None) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The photo files of `split` ("train" or "val") for `wnids`: (folders relative to root,
    folder index per file, file names, index into `wnids` per file); at most `per_class` per wnid
    (the first ones by file number)."""
    root = Path(root)
    if split not in TINY_IMAGENET_SPLITS:
        raise ValueError(f"split must be one of {TINY_IMAGENET_SPLITS}, got {split!r}")
    _require(root, "wnids.txt")
    unknown = sorted(set(wnids) - set((root / "wnids.txt").read_text().split()))
    if unknown:
        raise ValueError(f"{unknown[:5]} are not Tiny ImageNet wnids (see {root / 'wnids.txt'})")
    label_of = {wnid: i for i, wnid in enumerate(wnids)}
    dirs, dir_index, files, labels = [], [], [], []
    if split == "train":
        for wnid in wnids:
            _require(root, f"train/{wnid}/images")
            names = sorted((p.name for p in (root / "train" / wnid / "images").glob("*.JPEG")), key=_file_number)
            dirs.append(f"train/{wnid}/images")
            dir_index += [len(dirs) - 1] * len(names[:per_class])
            files += names[:per_class]
            labels += [label_of[wnid]] * len(names[:per_class])
    else:
        _require(root, "val/images", "val/val_annotations.txt")
        dirs.append("val/images")
        taken = dict.fromkeys(wnids, 0)
        rows = [line.split("\t")[:2] for line in (root / "val/val_annotations.txt").read_text().splitlines() if line]
        for name, wnid in sorted(rows, key=lambda row: _file_number(row[0])):
            if wnid in label_of and (per_class is None or taken[wnid] < per_class):
                taken[wnid] += 1
                dir_index.append(0)
                files.append(name)
                labels.append(label_of[wnid])
    return dirs, np.array(dir_index, dtype=np.int64), np.array(files), np.array(labels, dtype=np.int64)


def _file_number(name: str) -> int:
    """12 of "n01443537_12.JPEG" or "val_12.JPEG": files sort by number, not as strings."""
    return int(name.rsplit("_", 1)[1].split(".")[0])


def load_tiny_imagenet(root: str | Path, split: str, image_size: int = 64,
                       wnids: list[str] | None = None, per_class: int | None = None) -> ImageSet:
    """Photos of `split` ("train" or "val") whose class is in `wnids` (default: all of wnids.txt),
    labelled by position in `wnids`; at most `per_class` per class (the first ones by file number)."""
    wnids = list(tiny_imagenet_classes(root)[0] if wnids is None else wnids)
    dirs, dir_index, files, labels = tiny_imagenet_files(root, split, wnids, per_class)
    source = FileSource(Path(root), dirs, dir_index, files)
    return ImageSet(source, np.arange(len(files)), labels, wnids, "photo", image_size)
