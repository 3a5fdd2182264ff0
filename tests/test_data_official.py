"""Official benchmark loaders, on tiny trees in each published layout made from real fixture images."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from splip.data import DatasetNotFoundError, collate_skip_unreadable, fine_grained_pairs, load_dataset
from splip.data.dataset import fine_grained_gallery
from splip.data.official import OFFICIAL_LAYOUTS
from splip.io import display_path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FIXTURES = SHARED / "fixtures"
SPLITS = SHARED / "splits" / "datasets"
pytestmark = pytest.mark.skipif(
    not (FIXTURES.is_dir() and SPLITS.is_dir()),
    reason=f"real fixture images and split lists not found at {SHARED} (the project's shared data folder)",
)

SKETCHES_PER_CLASS = 2


def official_classes(folder: str) -> tuple[list[str], list[str]]:
    """(seen, unseen) class names read straight from the published cname_cid files."""
    def read(name: str) -> list[str]:
        return [ln.rsplit(" ", 1)[0] for ln in (SPLITS / folder / name).read_text().splitlines() if ln.strip()]
    return read("cname_cid.txt"), read("cname_cid_zero.txt")


def jpeg_bytes(png: Path) -> bytes:
    buf = io.BytesIO()
    Image.open(png).convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def fixture_images() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(sketch PNGs, photo JPEGs, QuickDraw sketch PNGs) as bytes, from the real fixture images."""
    sem = FIXTURES / "sem-pcyc" / "sketchy"
    sketches = [p.read_bytes() for d in sorted(sem.iterdir()) for p in sorted(d.glob("*.png")) if "_" not in p.name]
    photos = [jpeg_bytes(p) for p in sorted((sem / sorted(os.listdir(sem))[0]).glob("*_*.png"))[:3]]
    qd = [p.read_bytes() for p in sorted((FIXTURES / "doodle2search" / "quickdraw").glob("*/sk.png"))]
    return sketches, photos, qd


def build_tree(root: Path, dataset: str) -> None:
    """A tiny tree in the published layout: every class of the split, a few files each."""
    sketches, photos, qd = fixture_images()
    if dataset == "Sketchy":
        seen, unseen = official_classes("Sketchy/zeroshot0")
        for c, name in enumerate(seen + unseen):
            sk_dir = root / "Sketchy/256x256/sketch/tx_000000000000_ready" / name
            ph_dir = root / "Sketchy/256x256/photo/tx_000000000000_ready" / name
            ext_dir = root / "Sketchy/EXTEND_image_sketchy_ready" / name
            for d in (sk_dir, ph_dir, ext_dir):
                d.mkdir(parents=True)
            ext = ".JPEG" if c == 0 else ".jpg"  # extensions are matched case-insensitively
            for j in range(2):
                (ph_dir / f"n{c:08d}_{j}{ext}").write_bytes(photos[(c + j) % len(photos)])
            # The extension: its own photos plus a copy of a basic photo, as published; never an FG source.
            (ext_dir / "ext_1.jpg").write_bytes(photos[c % len(photos)])
            (ext_dir / f"n{c:08d}_0.jpg").write_bytes(photos[c % len(photos)])
            # photo 0 has sketches -1 and -2, photo 1 has sketch -1
            for j, k in ((0, 1), (0, 2), (1, 1)):
                (sk_dir / f"n{c:08d}_{j}-{k}.png").write_bytes(sketches[(c + k) % len(sketches)])
            (ph_dir / ".DS_Store").write_bytes(b"junk")  # hidden / non-image files are ignored
            (sk_dir / "notes.txt").write_text("not an image")
        orphan = root / "Sketchy/256x256/sketch/tx_000000000000_ready" / unseen[0] / "n99999999_1-1.png"
        orphan.write_bytes(sketches[0])  # a sketch whose photo is absent
    elif dataset == "TUBerlin":
        seen, unseen = official_classes("TUBerlin/zeroshot")
        for c, name in enumerate(seen + unseen):
            (root / "TUBerlin/png_ready" / name).mkdir(parents=True)
            (root / "TUBerlin/ImageResized_ready" / name).mkdir(parents=True)
            for j in range(SKETCHES_PER_CLASS):
                sketch = sketches[(c + j) % len(sketches)]
                (root / "TUBerlin/png_ready" / name / f"{c * 80 + j}.png").write_bytes(sketch)
            for j in range(3):
                (root / "TUBerlin/ImageResized_ready" / name / f"n{c:08d}_{j}.JPEG").write_bytes(photos[j])
    elif dataset == "QuickDraw":
        seen, unseen = official_classes("QuickDraw/zeroshot")
        for c, name in enumerate(seen + unseen):
            (root / "QuickDraw/sketches" / name).mkdir(parents=True)
            (root / "QuickDraw/images" / name).mkdir(parents=True)
            for j in range(SKETCHES_PER_CLASS):
                key_id = 5000000000000000 + c * 10 + j
                (root / "QuickDraw/sketches" / name / f"{key_id}.png").write_bytes(qd[(c + j) % len(qd)])
            for j in (2, 0, 1):  # created out of order: the loader must sort
                (root / "QuickDraw/images" / name / f"image_{j:05d}.jpg").write_bytes(photos[j])


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sbir")
    for dataset in ("Sketchy", "TUBerlin", "QuickDraw"):
        build_tree(root, dataset)
    return root


def folder_of(path: str) -> str:
    return Path(path).parent.name


def folder_rank(path: str, dirs: tuple[str, ...]) -> int:
    """Which of a layout's modality folders ``path`` lies in."""
    return next(d for d, name in enumerate(dirs) if f"/{name}/" in path)


def check_labels_and_splits(ds, seen: list[str], unseen: list[str], val_fraction: float = 0.1) -> None:
    """Every item's label names its class folder; splits follow the published class lists; items are
    ordered by class, then folder (Sketchy: basic photos before the extension), then file name."""
    layout = OFFICIAL_LAYOUTS[ds.name]
    assert sorted(ds.classes) == sorted(seen + unseen)
    assert sorted(ds.classes[c] for c in ds.unseen_ids) == sorted(unseen)
    assert {ds.classes[c] for c in ds.val_ids} <= set(seen)
    assert sorted(ds.train_ids + ds.val_ids) == sorted(ds.classes.index(c) for c in seen)
    assert len(ds.val_ids) == max(1, round(val_fraction * len(seen)))
    for split, ids in (("train", ds.train_ids), ("val", ds.val_ids), ("test", ds.unseen_ids)):
        for modality in ("sketches", "photos"):
            s = getattr(ds, f"{split}_{modality}")
            assert set(s.labels.tolist()) == set(ids)
            names = [s.item_name(i) for i in range(len(s))]
            assert all(ds.classes[s.labels[i]] == folder_of(names[i]) for i in range(len(s)))
            dirs = (layout.sketch_dir,) if modality == "sketches" else layout.photo_dirs
            order = sorted(names, key=lambda n: (ds.classes.index(folder_of(n)), folder_rank(n, dirs), Path(n).name))
            assert names == order


@pytest.mark.parametrize("name, folder", [("sketchy", "zeroshot0"), ("sketchy25", "zeroshot1")])
def test_sketchy(trees: Path, name: str, folder: str):
    ds = load_dataset(name, root=trees, image_size=32)
    seen, unseen = official_classes(f"Sketchy/{folder}")
    check_labels_and_splits(ds, seen, unseen)
    orphan_class = official_classes("Sketchy/zeroshot0")[1][0]  # where build_tree put the orphan sketch
    for split, ids in (("train", ds.train_ids), ("val", ds.val_ids), ("test", ds.unseen_ids)):
        sketches_per_class = np.bincount(getattr(ds, f"{split}_sketches").labels, minlength=len(ds.classes))[ids]
        expected = [4 if ds.classes[c] == orphan_class else 3 for c in ids]
        assert sketches_per_class.tolist() == expected
        # 2 basic + 2 extended photos per class
        assert np.all(np.bincount(getattr(ds, f"{split}_photos").labels, minlength=len(ds.classes))[ids] == 4)

    photo_names = [ds.test_photos.item_name(j) for j in range(len(ds.test_photos))]
    basic = np.array(["/256x256/photo/tx_000000000000_ready/" in n for n in photo_names])
    assert basic.sum() == 2 * len(unseen) and (~basic).sum() == 2 * len(unseen)
    assert np.array_equal(ds.test_photo_in_fg_gallery, basic)
    assert np.array_equal(fine_grained_gallery(ds), np.flatnonzero(basic))

    for sketches, photos, fg in ((ds.test_sketches, ds.test_photos, ds.fg_source_photo),
                                 (ds.train_sketches, ds.train_photos, ds.train_fg_source_photo)):
        assert fg.shape == (len(sketches),) and fg.dtype == np.int64
        for i in range(len(sketches)):
            sketch_stem = Path(sketches.item_name(i)).stem
            if sketch_stem.startswith("n99999999"):
                assert fg[i] == -1
                continue
            photo = photos.item_name(fg[i])  # the basic photo, never its copy in the extension
            assert "/256x256/photo/tx_000000000000_ready/" in photo
            assert Path(photo).stem == sketch_stem.rsplit("-", 1)[0]
            assert Path(photo).parent.name == folder_of(sketches.item_name(i))
    assert (ds.train_fg_source_photo == -1).sum() == (ds.classes.index(orphan_class) in ds.train_ids)
    s_idx, p_idx = fine_grained_pairs(ds)
    assert len(s_idx) == 3 * len(unseen) and np.array_equal(p_idx, ds.fg_source_photo[s_idx])
    assert (ds.fg_source_photo == -1).sum() == (orphan_class in unseen)

    x, label, idx = ds.test_sketches[0]
    assert x.shape == (3, 32, 32) and idx == 0 and label in ds.unseen_ids
    assert ds.train_photos[0][0].shape == (3, 32, 32)
    assert any(p.endswith(".JPEG") for p in map(ds.train_photos.item_name, range(len(ds.train_photos))))
    # where the data was read from, without the absolute path of this machine (splip.io.display_path)
    assert f"read from {display_path(trees / 'Sketchy')}." in ds.describe() and str(trees) not in ds.describe()
    assert f"FG gallery: {2 * len(unseen)} of the test photos" in ds.describe()


def test_sketchy_needs_both_photo_folders(tmp_path: Path):
    build_tree(tmp_path, "Sketchy")
    extension = tmp_path / "Sketchy/EXTEND_image_sketchy_ready"
    shutil.rmtree(extension / "bat")
    with pytest.raises(DatasetNotFoundError, match="missing class folder .*EXTEND_image_sketchy_ready/bat"):
        load_dataset("sketchy", root=tmp_path)
    shutil.rmtree(extension)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("sketchy", root=tmp_path)
    msg = str(info.value)
    assert f"missing folder {extension}" in msg and "EXTEND_image_sketchy_ready/<class>/ext_<n>.jpg" in msg


def test_tuberlin_with_spaces_in_class_names(trees: Path):
    ds = load_dataset("tuberlin", root=trees, image_size=24, val_fraction=0.05, seed=1)
    seen, unseen = official_classes("TUBerlin/zeroshot")
    check_labels_and_splits(ds, seen, unseen, val_fraction=0.05)
    assert len(ds.classes) == 250 and len(ds.unseen_ids) == 30
    assert len(ds.test_sketches) == 2 * 30 and len(ds.test_photos) == 3 * 30
    assert ds.fg_source_photo is None
    with pytest.raises(ValueError, match="no fine-grained"):
        fine_grained_pairs(ds)
    alarm = ds.classes.index("alarm clock")
    assert ds.class_prompt_name(alarm) == "alarm clock"
    split = next(s for s in (ds.train_sketches, ds.val_sketches) if alarm in s.labels)
    i = int(np.flatnonzero(split.labels == alarm)[0])
    assert "/png_ready/alarm clock/" in split.item_name(i)
    x, label, _ = split[i]
    assert x.shape == (3, 24, 24) and label == alarm


def test_quickdraw(trees: Path):
    ds = load_dataset("quickdraw", root=trees, image_size=16)
    seen, unseen = official_classes("QuickDraw/zeroshot")
    check_labels_and_splits(ds, seen, unseen)
    assert len(ds.test_sketches) == 2 * 30 and len(ds.train_photos) == 3 * len(ds.train_ids)
    assert ds.fg_source_photo is None
    ship = ds.classes.index("cruise ship")
    assert ds.class_prompt_name(ds.classes.index("hot-air_balloon")) == "hot air balloon"
    loader = torch.utils.data.DataLoader(ds.test_photos, batch_size=32, collate_fn=collate_skip_unreadable)
    images, labels, indices = next(iter(loader))
    assert images.shape == (32, 3, 16, 16) and indices.tolist() == list(range(32))
    assert ship not in ds.unseen_ids


def test_val_classes_follow_the_seed(trees: Path):
    a = load_dataset("quickdraw", root=trees, seed=0)
    b = load_dataset("quickdraw", root=trees, seed=0)
    c = load_dataset("quickdraw", root=trees, seed=1)
    assert a.val_ids == b.val_ids and a.val_ids != c.val_ids and a.unseen_ids == c.unseen_ids


def test_root_from_environment(trees: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SPLIP_DATA", str(trees))
    assert len(load_dataset("quickdraw").test_sketches) == 60


@pytest.mark.parametrize(
    "name, layout, download",
    [
        ("quickdraw", "sketches/<class>/<key_id>.png", "datasets.cvc.uab.es/QuickDraw"),
        ("sketchy", "256x256/sketch/tx_000000000000_ready/<class>/<photo_id>-<k>.png", "sem-pcyc"),
        ("sketchy25", "EXTEND_image_sketchy_ready/<class>/", "EXTEND_image_sketchy"),
        ("tuberlin", "ImageResized_ready/<class>/", "sem-pcyc"),
    ],
)
def test_missing_root_message(tmp_path: Path, name: str, layout: str, download: str):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, root=missing)
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(missing) in msg and layout in msg and download in msg
    assert "SPLIP_DATA" in msg and "root=" in msg


def test_missing_dataset_folder_names_it(tmp_path: Path):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "QuickDraw")):
        load_dataset("quickdraw", root=tmp_path)


def test_incomplete_tree_names_missing_and_empty_classes(tmp_path: Path):
    build_tree(tmp_path, "QuickDraw")
    shutil.rmtree(tmp_path / "QuickDraw/sketches/palm tree")
    for f in (tmp_path / "QuickDraw/images/bat").iterdir():
        f.unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("quickdraw", root=tmp_path)
    msg = str(info.value)
    assert "missing class folder" in msg and "sketches/palm tree" in msg
    assert "holds no image" in msg and "images/bat" in msg

    shutil.rmtree(tmp_path / "QuickDraw/images")
    with pytest.raises(DatasetNotFoundError, match="missing folder .*QuickDraw/images"):
        load_dataset("quickdraw", root=tmp_path)


def test_many_problems_are_summarised(tmp_path: Path):
    build_tree(tmp_path, "QuickDraw")
    _, unseen = official_classes("QuickDraw/zeroshot")
    for name in unseen:
        shutil.rmtree(tmp_path / "QuickDraw/sketches" / name)
    with pytest.raises(DatasetNotFoundError, match=r"\.\.\. and 25 more"):
        load_dataset("quickdraw", root=tmp_path)


def test_corrupt_image_is_skipped_and_counted(tmp_path: Path):
    build_tree(tmp_path, "QuickDraw")
    _, unseen = official_classes("QuickDraw/zeroshot")
    victim = sorted((tmp_path / "QuickDraw/sketches" / unseen[0]).iterdir())[0]
    victim.write_bytes(b"\x89PNG garbage, not an image" * 10)
    ds = load_dataset("quickdraw", root=tmp_path, image_size=16)
    sketches = ds.test_sketches
    bad = next(i for i in range(len(sketches)) if sketches.item_name(i) == str(victim))
    with pytest.warns(UserWarning, match="unreadable sketch image .*" + victim.name):
        assert sketches[bad] is None
    assert sketches.num_unreadable == 1

    loader = torch.utils.data.DataLoader(sketches, batch_size=len(sketches), collate_fn=collate_skip_unreadable)
    images, labels, indices = next(iter(loader))
    assert len(images) == len(sketches) - 1 and bad not in indices.tolist()
    assert sketches.num_unreadable == 1  # distinct images
    assert collate_skip_unreadable([sketches[bad]]) is None
