"""quickdraw-mini and tuberlin-mini: QuickDraw rendering, Tiny ImageNet reading, the class map and
the two loaders (splip.data.quickdraw, splip.data.tinyimagenet, splip.data.mini)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from splip.data import DatasetNotFoundError, load_dataset
from splip.data.mini import mini_class_map, quickdraw_mini_unseen
from splip.data.quickdraw import read_drawings, render_drawing
from splip.data.tinyimagenet import load_tiny_imagenet, tiny_imagenet_classes, tiny_imagenet_files

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY = SHARED / "tiny-imagenet-200"
QUICKDRAW = SHARED / "quickdraw" / "simplified"
TU_BERLIN = SHARED / "tu-berlin" / "png"
needs_shared = pytest.mark.skipif(
    not (TINY.is_dir() and QUICKDRAW.is_dir() and TU_BERLIN.is_dir()),
    reason=f"tiny-imagenet-200/, quickdraw/ and tu-berlin/ not found at {SHARED} (the project's shared data folder)",
)


def dark(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L")) < 128  # (H, W) bool


def points(xs: list[int], ys: list[int]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(xs, dtype=np.int32), np.array(ys, dtype=np.int32)


# ---------------------------------------------------------------------- rendering


def test_horizontal_stroke_is_black_on_its_row_and_white_elsewhere():
    # Spans x 0..255 at y 100: scale (256 - 32) / 255, and centring puts y = 100 on row 128, x on 16..240.
    ink = dark(render_drawing([points([0, 255], [100, 100])]))
    assert ink.shape == (256, 256)
    assert ink[128, 20:237].all()
    assert not ink[:118].any() and not ink[139:].any()  # more than a stroke width off the row
    assert not ink[:, :12].any() and not ink[:, 245:].any()


def test_drawing_is_centred_whatever_its_position_in_the_box():
    # An off-centre drawing in the 256 box (x 10..60, y 5..90) plus a second stroke.
    ink = dark(render_drawing([points([10, 60, 30], [20, 40, 90]), points([40, 55], [5, 5])]))
    rows, cols = np.nonzero(ink)
    assert abs(rows.min() - (255 - rows.max())) <= 2
    assert abs(cols.min() - (255 - cols.max())) <= 2


def test_one_point_stroke_renders_a_dot_where_it_belongs():
    # A line from (0, 0) to (200, 0) and a single point at (100, 200): extent 200, scale 224 / 200,
    # the point lands at (128, 128 + 1.12 * 100) = (128, 240).
    ink = dark(render_drawing([points([0, 200], [0, 0]), points([100], [200])]))
    assert ink[236:245, 124:133].any()
    assert not ink[150:230].any()  # nothing between the line (row 16) and the dot


def test_one_point_stroke_renders_a_dot_of_the_stroke_width():
    ink = dark(render_drawing([points([50], [50])], width=6))
    rows, cols = np.nonzero(ink)
    assert rows.max() - rows.min() + 1 >= 4 and cols.max() - cols.min() + 1 >= 4


@pytest.mark.parametrize("size, width, margin", [(128, 4, 20), (256, 6, 16)])
def test_margin_is_left_white(size, width, margin):
    square = points([0, 255, 255, 0, 0], [0, 0, 255, 255, 0])  # fills the whole 256 box
    ink = dark(render_drawing([square], size=size, width=width, margin=margin))
    # The stroke's outer half may cross into the margin, plus a pixel of rasterisation, nothing more.
    inner = margin - width // 2 - 1
    assert ink[inner:inner + width + 2, size // 2].any() and ink[size // 2, size - inner - width - 2:size - inner].any()
    assert not ink[:inner].any() and not ink[size - inner:].any()
    assert not ink[:, :inner].any() and not ink[:, size - inner:].any()


# ---------------------------------------------------------------------- ndjson


def test_read_drawings_reads_only_the_lines_it_needs(tmp_path):
    path = tmp_path / "cat.ndjson"
    first = {"word": "cat", "key_id": "111", "drawing": [[[0, 10, 20], [5, 5, 6]], [[3], [4]]]}
    second = {"word": "cat", "key_id": "222", "drawing": [[[1, 2], [3, 4]]]}
    path.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n{not json at all\n")

    drawings, keys = read_drawings(path, limit=2)
    assert keys == ["111", "222"]
    assert len(drawings) == 2 and len(drawings[0]) == 2
    assert drawings[0][0][0].tolist() == [0, 10, 20] and drawings[0][0][1].tolist() == [5, 5, 6]
    assert drawings[0][1][0].tolist() == [3] and drawings[1][0][1].tolist() == [3, 4]

    with pytest.raises(ValueError) as error:
        read_drawings(path)
    assert str(path) in str(error.value) and "line 3" in str(error.value)


# ---------------------------------------------------------------------- Tiny ImageNet


def fake_tiny(root: Path) -> None:
    """Tiny ImageNet layout: 2 wnids, train files numbered 1, 2, 10 (string order would put 10 before 2)."""
    wnids = ["n00000001", "n00000002"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("n00000001\tgoldfish, Carassius auratus\nn00000002\ttabby, tabby cat\n"
                                    "n00000003\tnot in wnids\n")
    image = Image.new("RGB", (64, 64), (120, 60, 30))
    for wnid in wnids:
        (root / "train" / wnid / "images").mkdir(parents=True)
        for i in (10, 2, 1):
            image.save(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
    # val rows out of file order; val_10 is listed before val_2 and val_1
    rows = [("val_10.JPEG", wnids[0]), ("val_2.JPEG", wnids[1]), ("val_1.JPEG", wnids[0]), ("val_3.JPEG", wnids[1])]
    for name, _ in rows:
        image.save(root / "val" / "images" / name)
    (root / "val" / "val_annotations.txt").write_text("".join(f"{n}\t{w}\t0\t0\t63\t63\n" for n, w in rows))


def test_tiny_imagenet_classes_reads_wnids_and_splits_synonyms(tmp_path):
    fake_tiny(tmp_path)
    wnids, names = tiny_imagenet_classes(tmp_path)
    assert wnids == ["n00000001", "n00000002"]
    assert names == [["goldfish", "Carassius auratus"], ["tabby", "tabby cat"]]


def test_train_files_sort_by_number_and_stop_at_per_class(tmp_path):
    fake_tiny(tmp_path)
    dirs, dir_index, files, labels = tiny_imagenet_files(tmp_path, "train", ["n00000002", "n00000001"])
    assert dirs == ["train/n00000002/images", "train/n00000001/images"]
    assert files.tolist() == [f"n00000002_{i}.JPEG" for i in (1, 2, 10)] + [f"n00000001_{i}.JPEG" for i in (1, 2, 10)]
    assert dir_index.tolist() == [0, 0, 0, 1, 1, 1] and labels.tolist() == [0, 0, 0, 1, 1, 1]

    _, dir_index, files, labels = tiny_imagenet_files(tmp_path, "train", ["n00000001", "n00000002"], per_class=2)
    assert files.tolist() == ["n00000001_1.JPEG", "n00000001_2.JPEG", "n00000002_1.JPEG", "n00000002_2.JPEG"]
    assert labels.tolist() == [0, 0, 1, 1]


def test_val_labels_follow_the_annotations(tmp_path):
    fake_tiny(tmp_path)
    photos = load_tiny_imagenet(tmp_path, "val", image_size=32)
    names = [os.path.basename(photos.item_name(i)) for i in range(len(photos))]
    assert names == ["val_1.JPEG", "val_2.JPEG", "val_3.JPEG", "val_10.JPEG"]
    assert photos.labels.tolist() == [0, 1, 1, 0]
    assert photos.item_name(0) == str(tmp_path / "val" / "images" / "val_1.JPEG")
    x, label, _ = photos[3]
    assert x.shape == (3, 32, 32) and label == 0

    only_second = load_tiny_imagenet(tmp_path, "val", 32, wnids=["n00000002"], per_class=1)
    assert [os.path.basename(only_second.item_name(i)) for i in range(len(only_second))] == ["val_2.JPEG"]
    assert only_second.labels.tolist() == [0]


def test_missing_tiny_imagenet_folder_names_the_path_and_the_download(tmp_path):
    fake_tiny(tmp_path)
    shutil.rmtree(tmp_path / "train" / "n00000002")
    with pytest.raises(DatasetNotFoundError) as error:
        load_tiny_imagenet(tmp_path, "train")
    message = str(error.value)
    assert "train/n00000002/images" in message and str(tmp_path) in message
    assert "cs231n.stanford.edu/tiny-imagenet-200.zip" in message

    with pytest.raises(DatasetNotFoundError, match="words.txt"):
        tiny_imagenet_classes(tmp_path / "nowhere")


# ---------------------------------------------------------------------- the class map (shared data)


def read_annotations() -> dict[str, str]:
    rows = (TINY / "val" / "val_annotations.txt").read_text().splitlines()
    return {row.split("\t")[0]: row.split("\t")[1] for row in rows if row}


@needs_shared
def test_class_map_rows_point_at_real_data():
    rows = mini_class_map()
    tiny_wnids = set((TINY / "wnids.txt").read_text().split())
    kept = [row for row in rows if row.keep]
    assert kept and len(kept) < len(rows)
    for row in kept:
        assert set(row.wnids) <= tiny_wnids, row.name
        if row.quickdraw:
            assert (QUICKDRAW / f"{row.quickdraw}.ndjson").is_file(), row.name
        if row.tu_berlin:
            assert (TU_BERLIN / row.tu_berlin).is_dir(), row.name
    used = [wnid for row in kept for wnid in row.wnids]
    assert len(used) == len(set(used)), "a wnid serves two kept classes"
    assert all(row.note.strip() for row in rows if not row.keep)


@needs_shared
def test_unseen_classes_are_a_quarter_of_the_kept_quickdraw_classes():
    kept = {row.name for row in mini_class_map() if row.keep and row.quickdraw}
    unseen = quickdraw_mini_unseen()
    assert len(unseen) == len(set(unseen)) and set(unseen) <= kept
    assert 0.2 <= len(unseen) / len(kept) <= 0.3


# ---------------------------------------------------------------------- the loaders (shared data)


@pytest.fixture(scope="module")
def quickdraw_mini():
    return load_dataset("quickdraw-mini", SHARED, image_size=64, val_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def tuberlin_mini():
    return load_dataset("tuberlin-mini", SHARED, image_size=64)


def labelled(image_set) -> list[tuple[int, str]]:
    return [(int(image_set.labels[i]), image_set.item_name(i)) for i in range(len(image_set))]


@needs_shared
def test_quickdraw_mini_splits(quickdraw_mini):
    ds = quickdraw_mini
    unseen = (Path(__file__).resolve().parents[1] / "splip" / "splits" / "quickdraw_mini_unseen.txt").read_text().splitlines()
    assert len(ds.classes) == 52 and len(ds.unseen_ids) == 13
    assert sorted(ds.classes[i] for i in ds.unseen_ids) == sorted(unseen) == sorted(quickdraw_mini_unseen())
    ids = [set(ds.train_ids), set(ds.val_ids), set(ds.unseen_ids)]
    assert all(not (a & b) for k, a in enumerate(ids) for b in ids[k + 1:])
    assert set().union(*ids) == set(range(52))
    assert len(ds.val_ids) == round(0.2 * 39)
    for sketches, photos, allowed in ((ds.train_sketches, ds.train_photos, ids[0]),
                                      (ds.val_sketches, ds.val_photos, ids[1]),
                                      (ds.test_sketches, ds.test_photos, ids[2])):
        assert set(sketches.labels) == allowed and set(photos.labels) == allowed


@needs_shared
def test_quickdraw_mini_sketches_are_the_first_25_drawings_of_their_category(quickdraw_mini):
    ds = quickdraw_mini
    stem = {row.name: row.quickdraw for row in mini_class_map() if row.keep and row.quickdraw}
    first_keys = {}
    seen_per_class: dict[int, list[str]] = {}
    for sketches in (ds.train_sketches, ds.val_sketches, ds.test_sketches):
        for label, name in labelled(sketches):
            path, _, key = name.rpartition("#")
            expected = QUICKDRAW / f"{stem[ds.classes[label]]}.ndjson"
            assert path == str(expected)
            if path not in first_keys:
                with open(expected) as handle:
                    first_keys[path] = [json.loads(next(handle))["key_id"] for _ in range(25)]
            seen_per_class.setdefault(label, []).append(key)
    assert sorted(seen_per_class) == list(range(52))
    for label, keys in seen_per_class.items():
        assert keys == first_keys[str(QUICKDRAW / f"{stem[ds.classes[label]]}.ndjson")]
    x, label, _ = ds.test_sketches[0]
    assert x.shape == (3, 64, 64) and label in ds.unseen_ids


@needs_shared
def test_quickdraw_mini_photos_come_from_the_right_split_and_wnids(quickdraw_mini):
    ds = quickdraw_mini
    wnids = {row.name: set(row.wnids) for row in mini_class_map()}
    annotations = read_annotations()
    train_counts: dict[int, int] = {}
    for label, name in labelled(ds.train_photos):
        relative = Path(name).relative_to(TINY).parts
        assert relative[0] == "train" and relative[2] == "images" and len(relative) == 4
        assert relative[1] in wnids[ds.classes[label]] and relative[3].startswith(relative[1] + "_")
        train_counts[label] = train_counts.get(label, 0) + 1
    for label, count in train_counts.items():
        assert count == sum(len(list((TINY / "train" / w / "images").glob("*.JPEG"))) for w in wnids[ds.classes[label]])
    for photos in (ds.val_photos, ds.test_photos):
        counts: dict[int, int] = {}
        for label, name in labelled(photos):
            relative = Path(name).relative_to(TINY).parts
            assert relative[:2] == ("val", "images") and relative[2].startswith("val_")
            assert annotations[relative[2]] in wnids[ds.classes[label]]
            counts[label] = counts.get(label, 0) + 1
        for label, count in counts.items():
            assert count == sum(w in wnids[ds.classes[label]] for w in annotations.values())
    assert set(train_counts) == set(ds.train_ids)


@needs_shared
def test_quickdraw_mini_seed_moves_validation_classes_only(quickdraw_mini):
    other = load_dataset("quickdraw-mini", SHARED, image_size=64, val_fraction=0.2, seed=1)
    assert other.unseen_ids == quickdraw_mini.unseen_ids
    assert other.val_ids != quickdraw_mini.val_ids
    assert set(other.val_ids) | set(other.train_ids) == set(quickdraw_mini.val_ids) | set(quickdraw_mini.train_ids)


@needs_shared
def test_tuberlin_mini_is_a_test_set_of_tu_berlin_sketches(tuberlin_mini):
    ds = tuberlin_mini
    folder = {row.name: row.tu_berlin for row in mini_class_map() if row.keep and row.tu_berlin}
    wnids = {row.name: set(row.wnids) for row in mini_class_map()}
    annotations = read_annotations()
    assert sorted(ds.classes) == sorted(folder)
    assert ds.unseen_ids == list(range(len(ds.classes)))
    assert ds.train_ids == [] and ds.val_ids == []
    for empty in (ds.train_sketches, ds.train_photos, ds.val_sketches, ds.val_photos):
        assert len(empty) == 0
    counts = np.bincount(ds.test_sketches.labels, minlength=len(ds.classes))
    assert counts.tolist() == [80] * len(ds.classes)
    for label, name in labelled(ds.test_sketches):
        assert Path(name).parent == TU_BERLIN / folder[ds.classes[label]] and name.endswith(".png")
    for label, name in labelled(ds.test_photos):
        relative = Path(name).relative_to(TINY).parts
        assert relative[:2] == ("val", "images") and annotations[relative[2]] in wnids[ds.classes[label]]
    x, _, _ = ds.test_sketches[0]
    assert x.shape == (3, 64, 64) and torch.isfinite(x).all()


def test_missing_root_shows_layout_and_download(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("quickdraw-mini", tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message
    assert "tiny-imagenet-200" in message and "quickdraw/simplified/<category>.ndjson" in message
    assert "splip.download" in message
