"""The official loaders at full size: trees of empty placeholder files made from the published file
lists (ZSE-SBIR's, in ../shared/data/splits), loaded with load_dataset, compared with the lists.

Nothing is decoded: the loaders only list folders, so empty files stand in for images. Where a
train list is not published (TU-Berlin photos, QuickDraw) each seen class folder gets one
placeholder, so that the tree is complete.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from splip.data import load_dataset
from splip.data.dataset import SBIRDataset, fine_grained_gallery
from splip.data.images import ImageSet
from splip.data.official import OFFICIAL_LAYOUTS, read_split
from splip.data.placeholders import MODALITIES, build_placeholder_tree, listed_class_names, published_lists
from splip.data.protocols import ZSE_TEST_FILE_LISTS, ZSE_TEST_STRIDES, read_file_list, zse_subsampled_test
from splip.data.protocols import select_test_set

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPLITS = SHARED / "splits" / "datasets"
pytestmark = pytest.mark.skipif(
    not SPLITS.is_dir(), reason=f"published split file lists not found at {SPLITS} (the project's shared data folder)"
)

# Published test set sizes (sketches, photos), SPLIP_METHOD.md section 6.
PUBLISHED_TEST = {"sketchy": (12_694, 12_553), "sketchy25": (15_229, 17_101),
                  "tuberlin": (2_400, 27_989), "quickdraw": (92_291, 54_151)}

PLURAL = {"sketch": "sketches", "photo": "photos"}


@dataclass
class Tree:
    """One benchmark's placeholder tree, its file lists and the dataset loaded from it."""

    name: str
    root: Path
    lists: dict[tuple[str, str], list[tuple[str, int]]]  # (modality, "zero"/"train") -> (path, label) lines
    seen: list[str]  # cname_cid.txt
    unseen: list[str]  # cname_cid_zero.txt
    ds: SBIRDataset
    build_s: float
    load_s: float


def relative_names(images: ImageSet) -> list[str]:
    return [images.source.relative_name(int(k)) for k in images.keys]


@pytest.fixture(scope="module", params=sorted(PUBLISHED_TEST))
def tree(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    name = request.param
    lists = published_lists(name, SPLITS.parent)
    seen = listed_class_names(name, SPLITS.parent, "cname_cid.txt")
    unseen = listed_class_names(name, SPLITS.parent, "cname_cid_zero.txt")
    # ~150k inodes: in memory where possible (ten times faster than a busy disk), removed afterwards.
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        root = Path(tempfile.mkdtemp(prefix=f"splip-placeholders-{name}-", dir=shm))
    else:
        root = tmp_path_factory.mktemp(f"placeholders-{name}")
    try:
        start = time.perf_counter()
        build_placeholder_tree(root, name, SPLITS.parent)
        built = time.perf_counter()
        ds = load_dataset(name, root=root, val_fraction=0.1)
        loaded = time.perf_counter()
        yield Tree(name, root, lists, seen, unseen, ds, built - start, loaded - built)
    finally:
        shutil.rmtree(root)


def test_list_labels_name_the_class_folder(tree: Tree):
    for (modality, part), lines in tree.lists.items():
        names = tree.unseen if part == "zero" else tree.seen
        wrong = [(p, c) for p, c in lines if names[c] != p.split("/")[-2]]
        assert not wrong, f"{tree.name} {modality} {part}: label column disagrees with the folder, e.g. {wrong[:3]}"
        assert len({p for p, _ in lines}) == len(lines), f"{tree.name} {modality} {part}: duplicate paths"


def test_our_class_splits_are_the_published_ones(tree: Tree):
    assert read_split(OFFICIAL_LAYOUTS[tree.name].split) == (tree.seen, tree.unseen)
    assert tree.ds.classes == tree.seen + tree.unseen


def test_test_sets_are_exactly_the_published_lists(tree: Tree):
    n_sketches, n_photos = PUBLISHED_TEST[tree.name]
    assert (len(tree.ds.test_sketches), len(tree.ds.test_photos)) == (n_sketches, n_photos)
    for modality, images in zip(MODALITIES, (tree.ds.test_sketches, tree.ds.test_photos)):
        assert set(relative_names(images)) == {p for p, _ in tree.lists[modality, "zero"]}
    print(f"\n{tree.name}: tree built in {tree.build_s:.1f} s, loaded in {tree.load_s:.1f} s")


def test_train_and_val_sets_are_the_train_lists(tree: Tree):
    ds = tree.ds
    assert sorted(ds.train_ids + ds.val_ids) == list(range(len(tree.seen))) and len(ds.val_ids) > 0
    for modality in MODALITIES:
        train, val = getattr(ds, f"train_{PLURAL[modality]}"), getattr(ds, f"val_{PLURAL[modality]}")
        listed = tree.lists.get((modality, "train"))
        if listed is None:  # our placeholders: one per seen class
            assert len(train) + len(val) == len(tree.seen)
            continue
        assert len(train) + len(val) == len(listed)
        assert set(relative_names(train)) | set(relative_names(val)) == {p for p, _ in listed}


def basic_photo_ids(lines: list[tuple[str, int]]) -> set[tuple[str, str]]:
    """(class, photo_id) of the basic Sketchy photos in a photo list."""
    basic = OFFICIAL_LAYOUTS["sketchy"].photo_dirs[0] + "/"
    return {(p.split("/")[-2], Path(p).stem) for p, _ in lines if p.startswith(basic)}


def expected_pairs(sketch_lines: list[tuple[str, int]], photo_lines: list[tuple[str, int]]) -> int:
    """Sketches ``<photo_id>-<k>.png`` whose basic photo ``<photo_id>.jpg`` is listed, same class."""
    photos = basic_photo_ids(photo_lines)
    return sum((p.split("/")[-2], Path(p).stem.rsplit("-", 1)[0]) in photos for p, _ in sketch_lines)


def check_pairs(sketches: ImageSet, photos: ImageSet, fg: np.ndarray) -> None:
    """Every known pair joins ``<photo_id>-<k>`` to the basic photo ``<photo_id>`` of its class."""
    basic = OFFICIAL_LAYOUTS["sketchy"].photo_dirs[0] + "/"
    for i in np.flatnonzero(fg >= 0):
        sketch = sketches.source.relative_name(int(sketches.keys[i]))
        photo = photos.source.relative_name(int(photos.keys[fg[i]]))
        assert photo.startswith(basic) and Path(photo).parent.name == Path(sketch).parent.name
        assert Path(photo).stem == Path(sketch).stem.rsplit("-", 1)[0]


def test_sketchy_fine_grained_pairs_and_gallery(tree: Tree):
    ds = tree.ds
    if tree.name not in ("sketchy", "sketchy25"):
        assert ds.fg_source_photo is None and ds.train_fg_source_photo is None
        assert ds.test_photo_in_fg_gallery is None
        return
    zero_photos = tree.lists["photo", "zero"]
    n_basic = len(basic_photo_ids(zero_photos))
    published = {"sketchy": (2_100, 10_453), "sketchy25": (2_500, 14_601)}  # (basic, extension)
    assert (n_basic, len(zero_photos) - n_basic) == published[tree.name]
    assert len(fine_grained_gallery(ds)) == n_basic
    n_pairs = expected_pairs(tree.lists["sketch", "zero"], zero_photos)
    assert n_pairs == len(ds.test_sketches)  # as published, every test sketch's basic photo is a test photo
    assert (ds.fg_source_photo >= 0).sum() == n_pairs
    check_pairs(ds.test_sketches, ds.test_photos, ds.fg_source_photo)
    assert ds.test_photo_in_fg_gallery[ds.fg_source_photo[ds.fg_source_photo >= 0]].all()

    train_classes = {tree.seen[c] for c in ds.train_ids}
    in_train = [(p, c) for p, c in tree.lists["sketch", "train"] if p.split("/")[-2] in train_classes]
    assert (ds.train_fg_source_photo >= 0).sum() == expected_pairs(in_train, tree.lists["photo", "train"])
    check_pairs(ds.train_sketches, ds.train_photos, ds.train_fg_source_photo)


@pytest.mark.parametrize("with_lists", [False, True], ids=["our-order", "zse-lists"])
def test_zse_subsampled_test(tree: Tree, with_lists: bool):
    ds, strides = tree.ds, ZSE_TEST_STRIDES[tree.name]
    sub = select_test_set(ds, "zse-sbir", SPLITS if with_lists else None)
    n_sketches, n_photos = PUBLISHED_TEST[tree.name]
    assert len(sub.test_sketches) == math.ceil(n_sketches / strides.sketch)
    assert len(sub.test_photos) == math.ceil(n_photos / strides.photo)
    assert sub.train_sketches is ds.train_sketches and len(ds.test_sketches) == n_sketches  # the input is kept
    if with_lists:
        folder, sketch_list, photo_list = ZSE_TEST_FILE_LISTS[tree.name]
        for images, file, stride in ((sub.test_sketches, sketch_list, strides.sketch),
                                     (sub.test_photos, photo_list, strides.photo)):
            assert set(relative_names(images)) == set(read_file_list(SPLITS / folder / file)[::stride])
    else:  # the same strides over our order: per class, about as many items as ZSE-SBIR keeps
        zse = zse_subsampled_test(ds, SPLITS)
        for ours, theirs in ((sub.test_sketches, zse.test_sketches), (sub.test_photos, zse.test_photos)):
            n_classes = len(ds.classes)
            diff = np.bincount(ours.labels, minlength=n_classes) - np.bincount(theirs.labels, minlength=n_classes)
            assert np.abs(diff).max() <= 1
    if ds.fg_source_photo is not None:
        assert sub.fg_source_photo.shape == (len(sub.test_sketches),)
        assert sub.test_photo_in_fg_gallery.shape == (len(sub.test_photos),)
        check_pairs(sub.test_sketches, sub.test_photos, sub.fg_source_photo)
        kept = {int(k) for k in sub.test_photos.keys}
        old = ds.fg_source_photo[np.searchsorted(ds.test_sketches.keys, sub.test_sketches.keys)]
        known_and_kept = np.array([f >= 0 and int(ds.test_photos.keys[f]) in kept for f in old])
        assert np.array_equal(sub.fg_source_photo >= 0, known_and_kept)
