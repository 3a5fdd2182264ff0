"""Contrastive pretraining (splip.pretrain) and the mini-CLIP built with it (splip.miniclip)."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from splip.backbone import load_backbone
from splip.data import ImageSet
from splip.data.synthetic import synthetic_class_names, synthetic_pretraining_photos
from splip.io import sha256_of
from splip.miniclip import pretrain_mini_clip
from splip.pretrain import (PretrainConfig, augment_photos, class_matched_clip_loss, ensure_synthetic_backbone,
                            pretrain_clip, zero_shot_accuracy)

# CLIP's normalisation constants, written out (not imported) so the stand-in below decodes pixels independently.
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])


# ---------------------------------------------------------------------- loss


def test_loss_with_distinct_labels_is_clips_symmetric_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    image = F.normalize(torch.randn(5, 8, generator=gen), dim=-1)
    text = F.normalize(torch.randn(5, 8, generator=gen), dim=-1)
    scale = torch.tensor(7.0)
    logits = scale * image @ text.T
    targets = torch.arange(5)
    expected = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    actual = class_matched_clip_loss(image, text, torch.tensor([4, 0, 2, 1, 3]), scale)
    assert torch.allclose(actual, expected, atol=1e-6)


def test_loss_with_repeated_labels_matches_hand_computation():
    # image_features = I and text_features = L^T give logits L[i, j] = ln(W[i, j]) (scale 1), so every
    # softmax is W's row (or column) divided by its sum.
    weights = torch.tensor([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0], [4.0, 2.0, 2.0]])
    logits = weights.log()
    labels = torch.tensor([0, 0, 1])  # images/captions 0 and 1 share a class: targets [1/2, 1/2, 0]
    ln = math.log
    # image -> text: rows [1/2, 1/4, 1/4], [1/4, 1/2, 1/4], [1/2, 1/4, 1/4]
    image_to_text = (-(0.5 * ln(1 / 2) + 0.5 * ln(1 / 4)) - (0.5 * ln(1 / 4) + 0.5 * ln(1 / 2)) - ln(1 / 4)) / 3
    # text -> image: columns [2, 1, 4] / 7, [1, 2, 2] / 5, [1, 1, 2] / 4
    text_to_image = (-(0.5 * ln(2 / 7) + 0.5 * ln(1 / 7)) - (0.5 * ln(1 / 5) + 0.5 * ln(2 / 5)) - ln(2 / 4)) / 3
    expected = (image_to_text + text_to_image) / 2
    actual = class_matched_clip_loss(torch.eye(3), logits.T.contiguous(), labels, torch.tensor(1.0))
    assert actual.item() == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------------- augmentation


def _candidates(image: torch.Tensor, pad: int) -> list[tuple[bool, int, int, torch.Tensor]]:
    """Every (flip, dx, dy) crop of `image` (3, S, S), reflect-padded with numpy."""
    size = image.shape[-1]
    out = []
    for flip in (False, True):
        source = image.numpy()[:, :, ::-1] if flip else image.numpy()
        padded = torch.from_numpy(np.pad(source, ((0, 0), (pad, pad), (pad, pad)), mode="reflect").copy())
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                out.append((flip, dx, dy, padded[:, dy:dy + size, dx:dx + size]))
    return out


@pytest.mark.parametrize("size", [8, 20])
def test_augment_is_a_flip_and_reflect_padded_shift(size):
    pad = size // 8  # 1 for 8 px, 2 for 20 px
    images = torch.randn(32, 3, size, size, generator=torch.Generator().manual_seed(1))
    out = augment_photos(images, torch.Generator().manual_seed(5))
    assert out.shape == images.shape
    chosen = []
    for image, result in zip(images, out):
        matches = [(f, dx, dy) for f, dx, dy, crop in _candidates(image, pad) if torch.equal(crop, result)]
        assert len(matches) == 1, "output is not a flipped/shifted crop of its own input"
        chosen.append(matches[0])
    # 32 independent draws: both flips and more than one shift occur.
    assert {f for f, _, _ in chosen} == {False, True}
    assert len({(dx, dy) for _, dx, dy in chosen}) > 1


def test_augment_is_deterministic_per_generator_seed():
    images = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    a = augment_photos(images, torch.Generator().manual_seed(3))
    b = augment_photos(images, torch.Generator().manual_seed(3))
    c = augment_photos(images, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# ---------------------------------------------------------------------- zero-shot accuracy


class CodedPixels:
    """ImageSource of uniform 8x8 images whose red level codes a primary class and green a secondary."""

    def __init__(self, codes: list[tuple[int, int]]):
        self.codes = codes

    def load(self, key: int) -> Image.Image:
        primary, secondary = self.codes[key]
        return Image.new("RGB", (8, 8), (40 * primary, 40 * secondary, 0))

    def name(self, key: int) -> str:
        return f"coded-{key}"


class StandInClip(torch.nn.Module):
    """encode_text: one-hot of the word id in the token; encode_image: one-hot(primary) + 0.5 one-hot(secondary)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.unused = torch.nn.Parameter(torch.zeros(1))  # zero_shot_accuracy finds the device through it

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:  # (M, 1) -> (M, D)
        return F.one_hot(tokens[:, 0], self.dim).float()

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, D)
        raw = pixels * CLIP_STD[None, :, None, None] + CLIP_MEAN[None, :, None, None]
        level = (raw.mean(dim=(2, 3)) * 255 / 40).round().long()  # (B, 3)
        return F.one_hot(level[:, 0], self.dim).float() + 0.5 * F.one_hot(level[:, 1], self.dim).float()


WORD_IDS = {"zebra": 0, "yak": 1, "eel": 2, "ox": 3}


def word_tokenizer(texts: list[str]) -> torch.Tensor:
    # Every caption template ends with "{}.", so the class word is the last one.
    return torch.tensor([[WORD_IDS[text[:-1].split()[-1]]] for text in texts])


def coded_set(codes: list[tuple[int, int]], labels: list[int]) -> ImageSet:
    return ImageSet(CodedPixels(codes), np.arange(len(codes)), np.array(labels), ["a", "b", "c"], "photo", 8)


def test_zero_shot_accuracy_counts_correct_prompt_ensembled_predictions():
    # Class 1 has two names ("yak" -> e1, "ox" -> e3): its classifier is (e1 + e3) / sqrt(2).
    names = [["zebra"], ["yak", "ox"], ["eel"]]
    codes = [(0, 1), (1, 0), (2, 0), (3, 0), (2, 1), (0, 2)]
    labels = [0, 1, 2, 1, 1, 2]
    # predictions: 0, 1 (0.71 > 0.5), 2, 1 (ox: 0.71 beats zebra's 0.5), 2 (wrong), 0 (wrong)
    images = coded_set(codes, labels)
    accuracy = zero_shot_accuracy(StandInClip(4), word_tokenizer, images, names, batch_size=4)
    assert accuracy == pytest.approx(4 / 6)


def test_zero_shot_accuracy_chooses_among_the_given_labels_only():
    names = [["eel"], ["zebra"]]  # rows: eel is dataset class 2, zebra dataset class 0
    codes = [(2, 0), (0, 2), (1, 0), (1, 2), (2, 1)]
    labels = [2, 0, 0, 0, 2]
    # (1, 0): class 1 is no candidate, so the runner-up zebra (label 0) wins: right.
    # (1, 2): the runner-up is eel (label 2): wrong.
    images = coded_set(codes, labels)
    accuracy = zero_shot_accuracy(StandInClip(4), word_tokenizer, images, names, labels=[2, 0], batch_size=2)
    assert accuracy == pytest.approx(4 / 5)


# ---------------------------------------------------------------------- pretrain_clip


def test_pretrain_clip_records_each_epoch_and_trains_every_parameter():
    backbone = load_backbone("splip-tiny", None)
    photos = synthetic_pretraining_photos(backbone.image_size, seed=0, num_classes=4, photos_per_class=4,
                                          render_size=backbone.image_size)
    names = [[name] for name in synthetic_class_names(4)]
    before = {n: p.detach().clone() for n, p in backbone.model.named_parameters()}
    config = PretrainConfig(epochs=2, batch_size=8, lr=1e-3, warmup_fraction=0.1, seed=0)
    history = pretrain_clip(backbone.model, backbone.tokenizer, photos, names, config, progress=False)

    assert [h["epoch"] for h in history] == [1, 2]
    assert all(math.isfinite(h["loss"]) and h["loss"] > 0 for h in history)
    # 16 photos / 8 = 2 steps per epoch, 4 in all, warm-up max(1, int(0.4)) = 1 step. After step s the
    # rate is lr * 0.5 * (1 + cos(pi * (s - 1) / 3)): s = 2 -> 0.75 lr, s = 4 -> 0.
    assert history[0]["lr"] == pytest.approx(0.75e-3, rel=1e-6)
    assert history[1]["lr"] == pytest.approx(0.0, abs=1e-12)
    changed = [n for n, p in backbone.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert "visual.conv1.weight" in changed and "token_embedding.weight" in changed and "logit_scale" in changed
    assert not backbone.model.training


def test_pretrain_clip_refuses_photos_that_make_no_batch():
    backbone = load_backbone("splip-tiny", None)
    photos = synthetic_pretraining_photos(backbone.image_size, seed=0, num_classes=2, photos_per_class=2,
                                          render_size=backbone.image_size)
    names = [[name] for name in synthetic_class_names(2)]
    with pytest.raises(ValueError, match="4 photos make no batch of 8.*batch_size"):
        pretrain_clip(backbone.model, backbone.tokenizer, photos, names, PretrainConfig(epochs=1, batch_size=8),
                      progress=False)


# ---------------------------------------------------------------------- mini-CLIP


def fake_tiny_imagenet(root: Path, train_per_class: int = 5, val_per_class: int = 3) -> list[str]:
    """A Tiny ImageNet tree in the zip's layout with 3 wnids (64x64 JPEGs, one colour per class)."""
    wnids = ["n00000001", "n00000002", "n00000003"]
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("n00000001\tgoldfish, Carassius auratus\nn00000002\tcat\n"
                                    "n00000003\tschool bus\nn09999999\tunused\n")
    rng = np.random.default_rng(0)
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]

    def photo(c: int) -> Image.Image:
        noise = rng.integers(-30, 30, (64, 64, 3))
        return Image.fromarray(np.clip(np.array(colours[c]) + noise, 0, 255).astype(np.uint8))

    for c, wnid in enumerate(wnids):
        folder = root / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for i in range(train_per_class):
            photo(c).save(folder / f"{wnid}_{i}.JPEG")
    (root / "val" / "images").mkdir(parents=True)
    rows = []
    for i in range(val_per_class * len(wnids)):
        photo(i % len(wnids)).save(root / "val" / "images" / f"val_{i}.JPEG")
        rows.append(f"val_{i}.JPEG\t{wnids[i % len(wnids)]}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(rows) + "\n")
    return wnids


def test_pretrain_mini_clip_writes_half_precision_weights_and_a_true_card(tmp_path):
    tiny = tmp_path / "tiny-imagenet-200"
    fake_tiny_imagenet(tiny)
    output = tmp_path / "weights" / "mini.pt"
    card = pretrain_mini_clip(tiny, output, recipe=PretrainConfig(epochs=1, batch_size=4, augment=True),
                              per_class=4, num_classes=2, progress=False)

    assert output.is_file()
    state = torch.load(output, map_location="cpu", weights_only=True)
    floating = [t for t in state.values() if t.is_floating_point()]
    assert floating and all(t.dtype == torch.float16 for t in floating)

    saved = json.loads(output.with_suffix(".json").read_text())
    assert saved == card
    assert card["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    assert card["bytes"] == output.stat().st_size
    assert 0.0 <= card["zero_shot_top1_val"] <= 1.0
    assert card["chance"] == 0.5  # num_classes=2 of the 3 wnids
    assert card["val_photos"] == 6  # 3 val photos of each of the first 2 wnids
    assert card["recipe"]["epochs"] == 1 and card["recipe"]["augment"] is True
    assert "8 photos of 2 classes" in card["data"]["train"]  # per_class=4 of the 5 train photos
    assert len(card["history"]) == 1 and math.isfinite(card["history"][0]["loss"])

    loaded = load_backbone("splip-mini", output)
    assert loaded.is_pretrained and loaded.image_size == 64
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, state[name].to(tensor.dtype)), name


# ---------------------------------------------------------------------- the cached synthetic backbone


def test_cached_backbone_that_does_not_match_its_card_is_rebuilt(tmp_path, monkeypatch, capsys):
    # The recipe's minutes of pretraining and its zero-shot scores are stood in for; what is tested is
    # the cache: reused when intact, rebuilt (with a message naming the file) when not.
    builds = []

    def pretend_pretraining(model, tokenizer, photos, names, config, progress):
        builds.append(config.seed)
        return [{"epoch": 1, "loss": 0.0, "lr": 0.0}]

    monkeypatch.setattr("splip.pretrain.pretrain_clip", pretend_pretraining)
    monkeypatch.setattr("splip.pretrain.synthetic_pretraining_photos", lambda *args, **kwargs: None)
    monkeypatch.setattr("splip.pretrain.load_synthetic", lambda **kwargs: type("D", (), {
        "test_photos": None, "test_sketches": None})())
    monkeypatch.setattr("splip.pretrain.zero_shot_accuracy", lambda *args, **kwargs: 0.0)

    def build():
        return ensure_synthetic_backbone("splip-tiny", num_classes=5, seed=0, cache_dir=tmp_path, progress=False)

    path = build()
    card = json.loads(path.with_suffix(".json").read_text())
    assert builds == [0] and card["sha256"] == sha256_of(path)
    assert build() == path and builds == [0]  # intact: reused
    capsys.readouterr()

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert build() == path and builds == [0, 0]  # rebuilt
    out = capsys.readouterr().out
    assert str(path) in out and "SHA-256" in out and "Rebuilding" in out
    assert sha256_of(path) == json.loads(path.with_suffix(".json").read_text())["sha256"]
    load_backbone("splip-tiny", str(path))  # and loadable: it matches its new card

    path.with_suffix(".json").unlink()  # weights without their card (a build cut short): rebuilt too
    assert build() == path and builds == [0, 0, 0]
    assert "card is missing" in capsys.readouterr().out
