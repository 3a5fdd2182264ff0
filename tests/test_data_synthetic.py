"""The embedded synthetic benchmark."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from splip.data import fine_grained_pairs, load_dataset
from splip.data.dataset import fine_grained_gallery
from splip.data.protocols import select_test_set
from splip.data.protocols import zse_subsampled_test

MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
STD = np.array([0.26862954, 0.26130258, 0.27577711])
SMALL = dict(image_size=32, num_classes=8, num_unseen=2, photos_per_class=5, sketches_per_photo=2)
SETS = ("train_sketches", "train_photos", "val_sketches", "val_photos", "test_sketches", "test_photos")


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", seed=3, **SMALL)


def gray(img) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.float64) / 255


def test_same_seed_same_images_other_seed_other_images(ds):
    again = load_dataset("synthetic", seed=3, **SMALL)
    other = load_dataset("synthetic", seed=4, **SMALL)
    for name in ("train_sketches", "test_photos"):
        a, b, c = getattr(ds, name), getattr(again, name), getattr(other, name)
        for i in (0, len(a) - 1):
            assert torch.equal(a[i][0], b[i][0])
            assert not torch.equal(a[i][0], c[i][0])
    assert (ds.train_ids, ds.val_ids, ds.unseen_ids) == (again.train_ids, again.val_ids, again.unseen_ids)


def test_items_are_clip_normalised_images(ds):
    x, label, idx = ds.train_photos[4]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert label == ds.train_photos.labels[4] and idx == 4
    raw = np.asarray(ds.train_photos.raw_image(4), dtype=np.float64) / 255  # (32, 32, 3)
    np.testing.assert_allclose(x.numpy(), ((raw - MEAN) / STD).transpose(2, 0, 1), atol=1e-5)


def test_class_counts_and_disjoint_splits(ds):
    assert ds.classes[:3] == ["star", "ring", "cross"] and len(ds.classes) == 8
    assert len(ds.unseen_ids) == 2 and len(ds.val_ids) == 1 and len(ds.train_ids) == 5  # round(0.1 * 6) -> 1
    train, val, unseen = set(ds.train_ids), set(ds.val_ids), set(ds.unseen_ids)
    assert not (train & val) and not (train & unseen) and not (val & unseen)
    assert train | val | unseen == set(range(8))
    for split, ids in (("train", train), ("val", val), ("test", unseen)):
        sk, ph = getattr(ds, f"{split}_sketches"), getattr(ds, f"{split}_photos")
        assert set(sk.labels.tolist()) == ids and set(ph.labels.tolist()) == ids
        assert np.all(np.bincount(ph.labels, minlength=8)[sorted(ids)] == 5)
        assert np.all(np.bincount(sk.labels, minlength=8)[sorted(ids)] == 10)
    assert all(getattr(ds, n).classes is ds.classes for n in SETS)
    many = load_dataset("synthetic", image_size=16, num_classes=40, num_unseen=10)
    assert many.classes[-1] == "shape 40" and len(set(many.classes)) == 40
    assert "synthetic" in ds.describe() and "5 for training" in ds.describe()


def test_unseen_classes_depend_on_seed():
    choices = {tuple(load_dataset("synthetic", seed=s, **SMALL).unseen_ids) for s in range(6)}
    assert len(choices) > 1


def test_fine_grained_source_photo(ds):
    fg = ds.fg_source_photo
    assert fg.shape == (len(ds.test_sketches),) and fg.min() >= 0
    assert np.array_equal(ds.test_photos.labels[fg], ds.test_sketches.labels)
    assert np.all(np.bincount(fg, minlength=len(ds.test_photos)) == 2)  # two sketches per photo
    s_idx, p_idx = fine_grained_pairs(ds)
    assert np.array_equal(s_idx, np.arange(len(fg))) and np.array_equal(p_idx, fg)
    assert ds.test_photo_in_fg_gallery is None
    assert np.array_equal(fine_grained_gallery(ds), np.arange(len(ds.test_photos)))


def test_training_sketches_know_their_source_photo(ds):
    fg = ds.train_fg_source_photo
    assert fg.shape == (len(ds.train_sketches),) and fg.dtype == np.int64 and fg.min() >= 0
    assert np.array_equal(ds.train_photos.labels[fg], ds.train_sketches.labels)
    assert np.all(np.bincount(fg, minlength=len(ds.train_photos)) == 2)
    # sketch k of photo (c, i) is named ".../<class>/<i>-<k>", the photo ".../<class>/<i>"
    for i in (0, len(fg) - 1):
        sketch, photo = ds.train_sketches.item_name(i), ds.train_photos.item_name(fg[i])
        assert sketch.split(":", 1)[1].replace("sketch/", "photo/").rsplit("-", 1)[0] == photo.split(":", 1)[1]


def test_fine_grained_fields_are_checked_and_zse_protocol_is_for_official_benchmarks(ds):
    with pytest.raises(ValueError, match=r"train_fg_source_photo must have shape \(%d,\)" % len(ds.train_sketches)):
        dataclasses.replace(ds, train_fg_source_photo=np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="boolean mask"):
        dataclasses.replace(ds, test_photo_in_fg_gallery=np.ones(len(ds.test_photos), dtype=np.int64))
    with pytest.raises(ValueError, match="not dataset 'synthetic'"):
        zse_subsampled_test(ds)
    assert select_test_set(ds, "all") is ds
    with pytest.raises(ValueError, match="zse-sbir"):
        select_test_set(ds, "every 2nd")


def test_sketch_outlines_its_own_photo():
    """The photo's edges lie under the ink of its own sketch, more than under the ink of a sketch
    of another instance of the same class."""
    d = load_dataset("synthetic", image_size=64, num_classes=8, num_unseen=3, photos_per_class=4, seed=0)
    sk, ph, fg = d.test_sketches, d.test_photos, d.fg_source_photo
    own, other = [], []
    for i in range(len(sk)):
        ink = gray(sk.raw_image(i)) < 0.5
        q = next(j for j in range(len(ph)) if ph.labels[j] == ph.labels[fg[i]] and j != fg[i])
        for j, out in ((fg[i], own), (q, other)):
            # Colour gradients: object hues are random, so an edge can vanish in grey levels.
            rgb = np.asarray(ph.raw_image(j), dtype=np.float32) / 255
            edges = sum(np.hypot(*np.gradient(rgb[..., channel])) for channel in range(3))
            out.append(edges[ink].mean())
    own, other = np.array(own), np.array(other)
    assert (own > other).mean() >= 0.9 and own.mean() > 1.4 * other.mean()


def test_sketches_are_white_with_ink_photos_are_not(ds):
    white_sketch = [(gray(ds.test_sketches.raw_image(i)) > 0.9).mean() for i in range(len(ds.test_sketches))]
    white_photo = [(gray(ds.test_photos.raw_image(i)) > 0.9).mean() for i in range(len(ds.test_photos))]
    assert min(white_sketch) > 0.75 and max(white_sketch) < 0.995  # mostly paper, some ink
    assert max(white_photo) < 0.3


def test_render_size_option_and_bad_options():
    d = load_dataset("synthetic", image_size=48, render_size=24, num_classes=4, num_unseen=1, photos_per_class=1)
    assert d.train_photos.raw_image(0).size == (24, 24) and d.train_photos[0][0].shape == (3, 48, 48)
    with pytest.raises(TypeError, match="num_classes"):
        load_dataset("synthetic", num_clases=4)
    with pytest.raises(ValueError, match="num_unseen"):
        load_dataset("synthetic", num_classes=4, num_unseen=3)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("sketchy26")
    with pytest.raises(TypeError, match="no options"):
        load_dataset("quickdraw", num_classes=3)
