"""Evaluation wiring: the fine-grained gallery, metric conventions passed through, clear errors."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from splip.backbone import load_backbone
from splip.data import load_dataset
from splip.evaluate import evaluate
from splip.model import SpLIP
from splip.train import NO_PROMPTS


@pytest.fixture(scope="module")
def setup():
    ds = load_dataset("synthetic", image_size=48, num_classes=6, num_unseen=3, photos_per_class=4, seed=1)
    backbone = load_backbone("splip-tiny", None, seed=0)
    names = [ds.class_prompt_name(c) for c in ds.train_ids]
    return ds, SpLIP(backbone.model, backbone.tokenizer, names, NO_PROMPTS)


def test_fine_grained_gallery_leaves_out_copies(setup):
    """Sketchy's extension holds a copy of each basic photo: put such copies first (they would win
    every tie); with the gallery mask they are not ranked, and Acc@K is that of the plain dataset."""
    ds, model = setup
    n = len(ds.test_photos)
    doubled = ds.test_photos.subset(np.concatenate([np.arange(n), np.arange(n)]))  # copies, then originals
    with_copies = dataclasses.replace(ds, test_photos=doubled, fg_source_photo=np.where(
        ds.fg_source_photo >= 0, ds.fg_source_photo + n, -1))
    masked = dataclasses.replace(with_copies, test_photo_in_fg_gallery=np.arange(2 * n) >= n)
    plain = evaluate(model, ds, settings=("fg",))
    assert plain["fg/acc@1"] > 0
    assert evaluate(model, with_copies, settings=("fg",))["fg/acc@1"] == 0.0  # the copy always ranks first
    fine_grained = {k: v for k, v in evaluate(model, masked, settings=("fg",)).items() if k.startswith("fg/")}
    assert fine_grained == {k: v for k, v in plain.items() if k.startswith("fg/")}


def test_convention_reaches_the_metrics(setup):
    ds, model = setup
    ours, sake = (evaluate(model, ds, settings=("zs",), convention=c) for c in ("sem-pcyc", "sake"))
    assert ours.keys() == sake.keys() and ours != sake  # interpolated AP differs from step AP
    assert all(sake[k] >= ours[k] - 1e-12 for k in ours if "map@all" in k)
    with pytest.raises(ValueError, match="convention"):
        evaluate(model, ds, settings=("zs",), convention="voc")


def test_no_validation_classes_is_a_clear_error(setup):
    ds, model = setup
    empty = dataclasses.replace(ds, val_ids=[])
    with pytest.raises(ValueError, match="val_fraction=0"):
        evaluate(model, empty, split="val")


def test_score_protocols_scores_the_same_embeddings_every_way():
    from splip.conventions import score_protocols
    from splip.evaluate import Embeddings
    from splip.metrics import METRIC_CONVENTIONS, one_positive_gallery, retrieval_metrics
    g = np.random.default_rng(0)
    q = torch.nn.functional.normalize(torch.randn(30, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    p = torch.nn.functional.normalize(torch.randn(40, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    sketches = Embeddings(q, g.integers(0, 3, 30), np.arange(30))
    photos = Embeddings(p, g.integers(0, 3, 40), np.arange(40))
    records = score_protocols(sketches, photos, ("map@all", "map@10", "p@10"), seed=4)
    assert [(r["gallery"], r["convention"]) for r in records] == (
        [("full", c) for c in METRIC_CONVENTIONS] + [("clip-at", c) for c in METRIC_CONVENTIONS])
    for r in records[:3]:
        assert r == {"gallery": "full", "convention": r["convention"], **retrieval_metrics(
            q, sketches.labels, p, photos.labels, ("map@all", "map@10", "p@10"), convention=r["convention"])}
    drawn = one_positive_gallery(sketches.labels, photos.labels, 4)
    assert set(records[3]) == {"gallery", "convention", "map@all"}
    assert records[3]["map@all"] == retrieval_metrics(q, sketches.labels, p[drawn], photos.labels[drawn],
                                                      ("map@all",))["map@all"]
    assert records[3]["map@all"] > records[0]["map@all"]  # one photo per query: a far easier gallery
