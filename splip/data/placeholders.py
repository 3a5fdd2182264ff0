"""Full-size stand-ins for the official benchmarks, built from their published file lists.

The SBIR datasets cannot be downloaded everywhere, but ZSE-SBIR's published file lists
(``<splits>/datasets/<Benchmark>/.../*.txt``, ``path label`` lines) name every test image, and every
train image where a train list is published. A placeholder tree has a file at each listed path,
laid out as :data:`splip.data.official.OFFICIAL_LAYOUTS` expects, so ``load_dataset(name, root)``
reads it exactly as it would read the real download: empty files where only listing matters (the
loaders never decode while listing), or hard links to one real image where images must decode
(loader throughput). Where a train list is not published (TU-Berlin photos, QuickDraw), each seen
class folder gets ``per_seen_class`` placeholders so that the tree is complete.
"""
from __future__ import annotations

import os
from pathlib import Path

from splip.data.official import OFFICIAL_LAYOUTS
from splip.data.protocols import ZSE_TEST_FILE_LISTS

MODALITIES = ("sketch", "photo")


def read_labelled_list(path: Path) -> list[tuple[str, int]]:
    """``path label`` lines of a file list (paths may contain spaces)."""
    lines = Path(path).read_text("utf-8").splitlines()
    return [(p, int(c)) for p, c in (line.rsplit(" ", 1) for line in lines if line.strip())]


def published_lists(name: str, splits: str | Path) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """Benchmark ``name``'s published lists under ``splits/datasets``: (modality, "zero" | "train") ->
    (path, label) lines; "train" only where that list is published."""
    folder, sketch_zero, photo_zero = ZSE_TEST_FILE_LISTS[name]
    base = Path(splits) / "datasets" / folder
    out = {}
    for modality, zero in zip(MODALITIES, (sketch_zero, photo_zero)):
        out[modality, "zero"] = read_labelled_list(base / zero)
        train = base / zero.replace("_zero", "_train")
        if train.is_file():
            out[modality, "train"] = read_labelled_list(train)
    return out


def listed_class_names(name: str, splits: str | Path, file: str) -> list[str]:
    """Class names of ``cname_cid.txt`` (seen) or ``cname_cid_zero.txt`` (unseen), in label order."""
    return [p for p, _ in read_labelled_list(Path(splits) / "datasets" / ZSE_TEST_FILE_LISTS[name][0] / file)]


def placeholder_paths(name: str, splits: str | Path, per_seen_class: int = 1) -> list[str]:
    """Every path of the tree relative to its benchmark folder: the listed ones, plus
    ``per_seen_class`` per seen class folder of a modality without a published train list."""
    layout = OFFICIAL_LAYOUTS[name]
    lists = published_lists(name, splits)
    seen = listed_class_names(name, splits, "cname_cid.txt")
    paths = [p for lines in lists.values() for p, _ in lines]
    for modality, ext, top in (("sketch", ".png", layout.sketch_dir), ("photo", ".jpg", layout.photo_dirs[0])):
        if (modality, "train") not in lists:
            paths += [f"{top}/{c}/placeholder{i}{ext}" for c in seen for i in range(per_seen_class)]
    return paths


def build_placeholder_tree(root: str | Path, name: str, splits: str | Path, link_to: str | Path | None = None,
                           per_seen_class: int = 1) -> int:
    """Create benchmark ``name``'s tree under ``root`` (a data root: ``root/<layout.folder>/...``).

    ``link_to``: a real image hard-linked at every path (same filesystem as ``root``; decodable
    images, one inode); None: empty files. Returns the number of files created.
    """
    base = Path(root) / OFFICIAL_LAYOUTS[name].folder
    paths = placeholder_paths(name, splits, per_seen_class)
    for folder in {os.path.dirname(p) for p in paths}:
        os.makedirs(base / folder, exist_ok=True)
    prefix = str(base) + os.sep
    if link_to is None:
        flags = os.O_CREAT | os.O_WRONLY
        for p in paths:  # a tight open/close loop: ~150k files in seconds
            os.close(os.open(prefix + p, flags, 0o644))
    else:
        source = os.fspath(link_to)
        for p in paths:
            os.link(source, prefix + p)
    return len(paths)
