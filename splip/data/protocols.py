"""Test protocols of other code releases, applied to a loaded :class:`SBIRDataset`.

ZSE-SBIR (github.com/buptLinfy/ZSE-SBIR, ``data_utils/utils.py::get_file_list_iccv``) reads the
published test file list (``<Dataset>/<split>/*_zero.txt``, one ``path label`` per line) and, unless
run with ``--testall``, keeps the items ``range(0, N, stride)`` of it: every ``stride``-th line in the
list's own line order (not per class), starting with the first. That leaves ``ceil(N / stride)``
items: Sketchy 12,694 / 12,553 -> 635 / 1,256 (zeroshot0) and 15,229 / 17,101 -> 762 / 1,711
(zeroshot1), TU-Berlin 2,400 / 27,989 -> 800 / 1,400, QuickDraw 92,291 / 54,151 -> 770 / 1,806.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from splip.data.dataset import SBIRDataset, positions_of_keys
from splip.data.images import FileSource, ImageSet


@dataclass(frozen=True)
class SubsampleStrides:
    """Keep every ``sketch``-th test sketch and every ``photo``-th test photo."""

    sketch: int
    photo: int


# ZSE-SBIR's defaults (data_utils/utils.py, get_file_list_iccv), by our benchmark names.
ZSE_TEST_STRIDES: dict[str, SubsampleStrides] = {
    "sketchy": SubsampleStrides(sketch=20, photo=10),
    "sketchy25": SubsampleStrides(sketch=20, photo=10),
    "tuberlin": SubsampleStrides(sketch=3, photo=20),
    "quickdraw": SubsampleStrides(sketch=120, photo=30),
}

# The published test file lists ZSE-SBIR subsamples: (folder below datasets/, sketch list, photo list).
ZSE_TEST_FILE_LISTS: dict[str, tuple[str, str, str]] = {
    "sketchy": ("Sketchy/zeroshot0", "sketch_tx_000000000000_ready_filelist_zero.txt", "all_photo_filelist_zero.txt"),
    "sketchy25": ("Sketchy/zeroshot1", "sketch_tx_000000000000_ready_filelist_zero.txt", "all_photo_filelist_zero.txt"),
    "tuberlin": ("TUBerlin/zeroshot", "png_ready_filelist_zero.txt", "ImageResized_ready_filelist_zero.txt"),
    "quickdraw": ("QuickDraw/zeroshot", "sketch_zero.txt", "all_photo_zero.txt"),
}


def read_file_list(path: Path) -> list[str]:
    """The paths of a ``path label`` file list, in line order (paths may contain spaces)."""
    return [ln.rsplit(" ", 1)[0] for ln in Path(path).read_text("utf-8").splitlines() if ln.strip()]


def _every_nth_listed(images: ImageSet, list_path: Path, stride: int) -> np.ndarray:
    """(M,) positions in ``images`` of the file list's lines 0, stride, 2 * stride, ..., ascending."""
    if not isinstance(images.source, FileSource):
        raise ValueError(f"the {images.modality} set is not read from files ({type(images.source).__name__}); "
                         f"call zse_subsampled_test without file_lists")
    chosen = set(read_file_list(list_path)[::stride])
    keep = np.array([images.source.relative_name(int(k)) in chosen for k in images.keys], dtype=bool)  # (N,)
    if keep.sum() != len(chosen):
        found = {images.source.relative_name(int(k)) for k in images.keys[keep]}
        missing = sorted(chosen - found)
        raise ValueError(f"{len(missing)} file(s) that ZSE-SBIR tests on, listed in {list_path}, are not among the "
                         f"loaded test {images.modality}s, e.g. {missing[:3]}; load the complete benchmark")
    return np.flatnonzero(keep)


def zse_subsampled_test(dataset: SBIRDataset, file_lists: str | Path | None = None) -> SBIRDataset:
    """A copy of ``dataset`` whose test sets keep only what ZSE-SBIR's default test keeps (see the
    module docstring; strides in :data:`ZSE_TEST_STRIDES`). Training and validation sets are shared.

    - ``file_lists=None``: every ``stride``-th item of our own test order (classes in split order,
      then photo folder, then file name), starting with item 0. Same number of items as ZSE-SBIR
      (when the test sets hold the published counts) but mostly other items (on the published
      lists, 1-34 % in common), since the lists are in another order (not sorted by file name;
      zeroshot1 lists all basic photos before the extension); per class the counts agree within
      one item.
    - ``file_lists`` = the folder holding ZSE-SBIR's ``<Dataset>/<split>/`` lists (its
      ``datasets/``, e.g. ``../shared/data/splits/datasets``): exactly ZSE-SBIR's items (list
      lines 0, stride, ...), matched by path below the benchmark folder, kept in our order.

    ``fg_source_photo`` is re-indexed into the new ``test_photos``; a sketch whose source photo was
    dropped gets -1. ``test_photo_in_fg_gallery`` is subset alike.
    """
    if dataset.name not in ZSE_TEST_STRIDES:
        raise ValueError(f"ZSE-SBIR's test subsampling is defined for {sorted(ZSE_TEST_STRIDES)}, "
                         f"not dataset {dataset.name!r}")
    strides = ZSE_TEST_STRIDES[dataset.name]
    sketches, photos = dataset.test_sketches, dataset.test_photos
    if file_lists is None:
        sketch_idx = np.arange(0, len(sketches), strides.sketch)
        photo_idx = np.arange(0, len(photos), strides.photo)
    else:
        folder, sketch_list, photo_list = ZSE_TEST_FILE_LISTS[dataset.name]
        lists = Path(file_lists) / folder
        sketch_idx = _every_nth_listed(sketches, lists / sketch_list, strides.sketch)
        photo_idx = _every_nth_listed(photos, lists / photo_list, strides.photo)
    new_sketches, new_photos = sketches.subset(sketch_idx), photos.subset(photo_idx)

    fg = dataset.fg_source_photo
    if fg is not None:
        old = fg[sketch_idx]  # (M_sketches,) into the old test_photos, -1 unknown
        fg = positions_of_keys(new_photos, np.where(old >= 0, photos.keys[old], -1))
    gallery = dataset.test_photo_in_fg_gallery
    return replace(
        dataset, test_sketches=new_sketches, test_photos=new_photos, fg_source_photo=fg,
        test_photo_in_fg_gallery=None if gallery is None else gallery[photo_idx],
        source=(f"{dataset.source}; test set subsampled as ZSE-SBIR's default test (sketch stride {strides.sketch}, "
                f"photo stride {strides.photo}, over {'its file lists' if file_lists else 'our item order'})"),
    )


# Test sets a run can be scored on: "all" (the benchmark protocol), "zse-sbir" (zse_subsampled_test).
TEST_SUBSETS = ("all", "zse-sbir")


def select_test_set(dataset: SBIRDataset, name: str, file_lists: str | Path | None = None) -> SBIRDataset:
    """``dataset`` with the test sets named ``name`` (one of :data:`TEST_SUBSETS`): ``"all"`` returns
    it unchanged, ``"zse-sbir"`` is :func:`zse_subsampled_test` (``file_lists`` passed on)."""
    if name == "all":
        return dataset
    if name == "zse-sbir":
        return zse_subsampled_test(dataset, file_lists)
    raise ValueError(f"test subset must be one of {TEST_SUBSETS}, got {name!r}")
