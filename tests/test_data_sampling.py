"""Triplet sampling and fine-grained pairs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from splip.data import ImageSet, TripletDataset, collate_triplets, fine_grained_pairs, load_dataset


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", image_size=16, num_classes=7, num_unseen=1, photos_per_class=3, seed=5)


def test_positive_shares_the_anchor_class_negative_does_not(ds):
    trip = TripletDataset(ds.train_sketches, ds.train_photos, seed=0)
    assert len(trip) == len(ds.train_sketches)
    photos = [ds.train_photos[j] for j in range(len(ds.train_photos))]

    def photo_label(x: torch.Tensor) -> int:
        (j,) = [j for j, p in enumerate(photos) if torch.equal(p[0], x)]  # found by pixels, not by index
        return int(ds.train_photos.labels[j])

    for i in range(len(trip)):
        item = trip[i]
        assert torch.equal(item["sketch"], ds.train_sketches[i][0])
        assert item["label"] == ds.train_sketches.labels[i]
        assert photo_label(item["positive"]) == item["label"]
        assert photo_label(item["negative"]) == item["negative_label"] != item["label"]
        assert item["sketch"].shape == item["positive"].shape == (3, 16, 16)


def test_draws_are_deterministic_and_change_with_epoch_and_seed(ds):
    a = TripletDataset(ds.train_sketches, ds.train_photos, seed=0)
    b = TripletDataset(ds.train_sketches, ds.train_photos, seed=0)
    c = TripletDataset(ds.train_sketches, ds.train_photos, seed=1)
    for t in (a, b, c):
        t.set_epoch(3)
    assert np.array_equal(a.positive_index, b.positive_index) and np.array_equal(a.negative_index, b.negative_index)
    assert not np.array_equal(a.negative_index, c.negative_index)
    first = a.negative_index.copy(), a.positive_index.copy()
    a.set_epoch(4)
    assert not np.array_equal(a.negative_index, first[0]) and not np.array_equal(a.positive_index, first[1])
    a.set_epoch(3)
    assert np.array_equal(a.negative_index, first[0]) and np.array_equal(a.positive_index, first[1])


def test_draws_are_uniform(ds):
    trip = TripletDataset(ds.train_sketches, ds.train_photos, seed=2)
    anchor_label = ds.train_sketches.labels[0]
    pos, neg = [], []
    for epoch in range(600):
        trip.set_epoch(epoch)
        pos.append(trip.positive_index[0])
        neg.append(trip.negative_index[0])
    same = np.flatnonzero(ds.train_photos.labels == anchor_label)
    others = np.flatnonzero(ds.train_photos.labels != anchor_label)
    assert set(pos) == set(same.tolist())
    counts = np.bincount(neg, minlength=len(ds.train_photos))[others]  # each other photo ~ 600 / len(others)
    expected = 600 / len(others)
    assert counts.min() > 0.4 * expected and counts.max() < 1.8 * expected


def test_only_classes_with_sketches_give_negatives(ds):
    photos = ds.train_photos
    both = ImageSet(  # training photos plus the validation photos (classes that have no sketch here)
        photos.source,
        np.concatenate([photos.keys, ds.val_photos.keys]),
        np.concatenate([photos.labels, ds.val_photos.labels]),
        ds.classes, "photo", 16,
    )
    trip = TripletDataset(ds.train_sketches, both, seed=0)
    for epoch in range(20):
        trip.set_epoch(epoch)
        assert np.isin(both.labels[trip.negative_index], ds.train_ids).all()


def test_sketch_class_without_photos_is_an_error(ds):
    with pytest.raises(ValueError, match="no photo"):
        TripletDataset(ds.train_sketches, ds.val_photos)
    one_class = ds.train_sketches.subset(ds.train_sketches.labels == ds.train_ids[0])
    with pytest.raises(ValueError, match="at least 2 classes"):
        TripletDataset(one_class, ds.train_photos)


def test_collate_triplets_through_a_dataloader(ds):
    trip = TripletDataset(ds.train_sketches, ds.train_photos, seed=0)
    loader = torch.utils.data.DataLoader(trip, batch_size=5, collate_fn=collate_triplets)
    batch = next(iter(loader))
    assert batch["sketch"].shape == batch["positive"].shape == batch["negative"].shape == (5, 3, 16, 16)
    assert batch["label"].dtype == torch.int64 and batch["label"].tolist() == ds.train_sketches.labels[:5].tolist()
    assert batch["index"].tolist() == [0, 1, 2, 3, 4]
    assert batch["positive_index"].tolist() == trip.positive_index[:5].tolist()


class HalfBrokenSource:
    """Odd keys fail to decode."""

    def name(self, key: int) -> str:
        return f"memory/{key}"

    def load(self, key: int) -> Image.Image:
        if key % 2:
            raise OSError("broken")
        return Image.new("RGB", (4, 4), (key, key, key))


def test_unreadable_triplets_are_dropped():
    classes = ["a", "b"]
    sketches = ImageSet(HalfBrokenSource(), np.array([0, 1, 2, 4]), np.array([0, 0, 1, 1]), classes, "sketch", 4)
    photos = ImageSet(HalfBrokenSource(), np.array([0, 2, 6, 8]), np.array([0, 0, 1, 1]), classes, "photo", 4)
    trip = TripletDataset(sketches, photos)
    with pytest.warns(UserWarning, match="memory/1"):
        items = [trip[i] for i in range(4)]
    assert items[1] is None and all(items[i] is not None for i in (0, 2, 3))
    batch = collate_triplets(items)
    assert batch["index"].tolist() == [0, 2, 3]
    assert collate_triplets([None]) is None


def test_fine_grained_pairs(ds):
    s_idx, p_idx = fine_grained_pairs(ds)
    assert len(s_idx) == len(ds.test_sketches)
    assert np.array_equal(ds.test_sketches.labels[s_idx], ds.test_photos.labels[p_idx])
    partial = dataclasses.replace(ds, fg_source_photo=np.where(np.arange(len(s_idx)) % 2 == 0, p_idx, -1))
    s2, p2 = fine_grained_pairs(partial)
    assert s2.tolist() == list(range(0, len(s_idx), 2)) and np.array_equal(p2, p_idx[::2])
    with pytest.raises(ValueError, match="no fine-grained"):
        fine_grained_pairs(dataclasses.replace(ds, fg_source_photo=None))


def test_uniform_class_negatives_draw_the_class_first(ds):
    """With one class holding most photos, uniform_photo negatives favour it; uniform_class do not."""
    labels = ds.train_photos.labels
    big = labels[0]
    # Keep one photo of every other class and all of the big one's (3 here): ratios 3:1:1:...
    keep = np.isin(np.arange(len(labels)), [np.flatnonzero(labels == c)[0] for c in np.unique(labels)]) | (labels == big)
    photos = ds.train_photos.subset(keep)
    sketches = ds.train_sketches
    others = sketches.labels != big  # anchors for which the big class is a candidate negative
    counts = {}
    for mode in ("uniform_photo", "uniform_class"):
        trip = TripletDataset(sketches, photos, seed=0, negatives=mode)
        hits = []
        for epoch in range(300):
            trip.set_epoch(epoch)
            negative_labels = photos.labels[trip.negative_index]
            assert (negative_labels != sketches.labels).all()
            hits.append(np.mean(negative_labels[others] == big))
        counts[mode] = float(np.mean(hits))
    n_classes = len(np.unique(photos.labels))  # the anchor's class is excluded: n - 1 candidates
    assert counts["uniform_class"] == pytest.approx(1 / (n_classes - 1), abs=0.02)
    assert counts["uniform_photo"] == pytest.approx(3 / (3 + n_classes - 2), abs=0.02)


def test_source_photo_positives_and_their_errors(ds):
    source = ds.train_fg_source_photo
    trip = TripletDataset(ds.train_sketches, ds.train_photos, positives="source_photo", source_photo=source)
    assert (trip.positive_index == source[trip.anchors]).all()
    item = trip[0]
    assert torch.equal(item["positive"], ds.train_photos[int(source[trip.anchors[0]])][0])
    with pytest.raises(ValueError, match="source_photo"):
        TripletDataset(ds.train_sketches, ds.train_photos, positives="source_photo")
    wrong = source.copy()
    wrong[trip.anchors[0]] = np.flatnonzero(ds.train_photos.labels != ds.train_sketches.labels[trip.anchors[0]])[0]
    with pytest.raises(ValueError, match="another class"):
        TripletDataset(ds.train_sketches, ds.train_photos, positives="source_photo", source_photo=wrong)
    with pytest.raises(ValueError, match="negatives"):
        TripletDataset(ds.train_sketches, ds.train_photos, negatives="hardest")


def test_persistent_workers_load_each_epochs_triplets(ds):
    """Workers that outlive an epoch keep their copy of the dataset; the keys still name the draws."""
    from torch.utils.data import DataLoader

    from splip.data.sampling import TripletBatchSampler
    trip = TripletDataset(ds.train_sketches, ds.train_photos, seed=0)
    batches = TripletBatchSampler(trip, 4, seed=0)
    loader = DataLoader(trip, batch_sampler=batches, num_workers=2, persistent_workers=True,
                        collate_fn=collate_triplets)
    for epoch in (0, 1, 2):
        batches.set_epoch(epoch)
        for batch in loader:
            for i, p, n in zip(batch["index"], batch["positive_index"], batch["negative_index"]):
                j = int(np.flatnonzero(trip.anchors == int(i))[0])
                assert (int(p), int(n)) == (trip.positive_index[j], trip.negative_index[j]), epoch
