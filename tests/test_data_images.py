"""ImageSet, the CLIP transform, collation, data-root resolution and class-split helpers."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from splip.data import ImageSet, class_prompt_name, collate_skip_unreadable, resolve_data_root
from splip.data.dataset import choose_val_classes
from splip.data.images import to_clip_tensor

# CLIP's published normalisation statistics, typed in independently of open_clip.
MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
STD = np.array([0.26862954, 0.26130258, 0.27577711])


def unnormalise(x: torch.Tensor) -> np.ndarray:
    return x.numpy() * STD[:, None, None] + MEAN[:, None, None]  # (3, S, S) in [0, 1]


class ListSource:
    """In-memory images; key 'bad' entries raise like PIL does on a garbage file."""

    def __init__(self, images: list[Image.Image | None]):
        self.images = images

    def name(self, key: int) -> str:
        return f"memory/{key}.png"

    def load(self, key: int) -> Image.Image:
        if self.images[key] is None:
            raise OSError("cannot identify image file")
        return self.images[key]


def test_solid_colour_is_normalised_with_clip_statistics():
    img = Image.new("RGB", (40, 40), (10, 200, 30))
    x = to_clip_tensor(img, 16, "photo")
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    expected = (np.array([10, 200, 30]) / 255 - MEAN) / STD
    np.testing.assert_allclose(x.numpy(), np.broadcast_to(expected[:, None, None], (3, 16, 16)), atol=1e-5)


@pytest.mark.parametrize("modality, resample",
                         [("photo", Image.Resampling.BICUBIC), ("sketch", Image.Resampling.BILINEAR)])
@pytest.mark.parametrize("side", [37, 16])
def test_square_images_are_only_resized(modality: str, resample: Image.Resampling, side: int):
    """Exactly the transform from before padding existed: resize (unless already S x S), normalise."""
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    resized = np.array(img.resize((16, 16), resample=resample) if side != 16 else img)  # (16, 16, 3)
    mean, std = (torch.tensor(v, dtype=torch.float32)[:, None, None] for v in (MEAN, STD))
    expected = (torch.from_numpy(resized).permute(2, 0, 1).float() / 255 - mean) / std
    torch.testing.assert_close(to_clip_tensor(img, 16, modality), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("modality, fill", [("sketch", (1.0, 1.0, 1.0)), ("photo", (0.0, 0.0, 0.0))])
@pytest.mark.parametrize("wide", [True, False])
def test_non_square_images_are_padded_centred_keeping_their_aspect(modality: str, fill: tuple, wide: bool):
    colour = (0.0, 0.0, 0.0) if modality == "sketch" else (200 / 255, 10 / 255, 10 / 255)
    img = Image.new("RGB", (40, 20) if wide else (20, 40), tuple(round(c * 255) for c in colour))
    x = unnormalise(to_clip_tensor(img, 20, modality))  # (3, 20, 20)
    if not wide:
        x = x.transpose(0, 2, 1)  # padding left and right: check it as if it were top and bottom
    # 40 x 20 fits 20 x 10 (aspect kept), centred: rows 5..14 are the image, 5 rows of fill above and below.
    np.testing.assert_allclose(x[:, 5:15], np.broadcast_to(np.array(colour)[:, None, None], (3, 10, 20)), atol=1e-5)
    for margin in (x[:, :5], x[:, 15:]):
        np.testing.assert_allclose(margin, np.broadcast_to(np.array(fill)[:, None, None], (3, 5, 20)), atol=1e-5)


def test_padding_keeps_a_circle_round():
    img = Image.new("L", (120, 60), 255)
    ImageDraw.Draw(img).ellipse((40, 10, 80, 50), outline=0, width=3)  # a circle of diameter 40
    ink = unnormalise(to_clip_tensor(img, 60, "sketch"))[0] < 0.5  # (60, 60)
    rows, cols = np.nonzero(ink)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert abs(height - width) <= 1 and 19 <= height <= 22  # squashing would give 40 rows by 20 columns
    assert abs((rows.min() + rows.max()) / 2 - 29.5) <= 1 and abs((cols.min() + cols.max()) / 2 - 29.5) <= 1


def test_transparent_sketch_background_becomes_white_and_gray_becomes_rgb():
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))  # fully transparent black
    ImageDraw.Draw(rgba).line((0, 10, 19, 10), fill=(0, 0, 0, 255), width=2)
    x = unnormalise(to_clip_tensor(rgba, 20, "sketch"))
    assert np.allclose(x[:, 0, 0], 1.0, atol=1e-5)  # background: white, not black
    assert x[:, 10, 5].max() < 0.05  # the stroke: black
    gray = to_clip_tensor(Image.new("L", (8, 8), 128), 8, "sketch")
    np.testing.assert_allclose(unnormalise(gray), 128 / 255, atol=1e-5)


def test_thin_sketch_strokes_survive_downsampling():
    img = Image.new("L", (256, 256), 255)
    ImageDraw.Draw(img).line((0, 101, 255, 101), fill=0, width=1)  # a one-pixel stroke
    x = unnormalise(to_clip_tensor(img, 224, "sketch"))  # (3, 224, 224)
    row_min = x[0].min(axis=1)  # darkest value of each row
    assert row_min.min() < 0.5  # still clearly visible
    assert (row_min < 0.95).sum() <= 3  # and still thin


def test_imageset_items_subset_and_unreadable_items():
    images = [Image.new("RGB", (10, 10), (i * 20, 0, 0)) for i in range(5)]
    images[3] = None
    s = ImageSet(ListSource(images), np.arange(5), np.array([0, 1, 0, 1, 2]), ["a", "b", "c"], "photo", 8)
    x, label, idx = s[1]
    assert x.shape == (3, 8, 8) and (label, idx) == (1, 1)
    np.testing.assert_allclose(unnormalise(x)[0], 20 / 255, atol=1e-5)

    with pytest.warns(UserWarning, match="memory/3.png"):
        assert s[3] is None
    assert s[3] is None  # counted once per distinct image
    assert s.num_unreadable == 1

    sub = s.subset([4, 1])
    assert len(sub) == 2 and sub.labels.tolist() == [2, 1] and sub.item_name(0) == "memory/4.png"
    x, label, idx = sub[1]
    assert (label, idx) == (1, 1)
    np.testing.assert_allclose(unnormalise(x)[0], 20 / 255, atol=1e-5)
    masked = s.subset(s.labels == 0)
    assert masked.keys.tolist() == [0, 2]
    with pytest.raises(IndexError):
        s[5]


def test_collate_skip_unreadable_drops_none():
    a = (torch.zeros(3, 4, 4), 2, 7)
    b = (torch.ones(3, 4, 4), 5, 9)
    images, labels, indices = collate_skip_unreadable([a, None, b])
    assert images.shape == (2, 3, 4, 4) and images[1].eq(1).all()
    assert labels.tolist() == [2, 5] and indices.tolist() == [7, 9] and labels.dtype == torch.int64
    assert collate_skip_unreadable([None, None]) is None


def test_imageset_pickles_for_dataloader_workers():
    images = [Image.new("RGB", (6, 6), (0, 50, 0))]
    s = ImageSet(ListSource(images), np.arange(1), np.zeros(1), ["a"], "photo", 6)
    clone = pickle.loads(pickle.dumps(s))
    assert torch.equal(clone[0][0], s[0][0])


def test_resolve_data_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPLIP_DATA", raising=False)
    assert resolve_data_root(None) == tmp_path / "data"
    monkeypatch.setenv("SPLIP_DATA", str(tmp_path / "env"))
    assert resolve_data_root(None) == tmp_path / "env"
    assert resolve_data_root(tmp_path / "param") == tmp_path / "param"
    assert resolve_data_root("rel") == tmp_path / "rel"
    monkeypatch.setenv("SPLIP_DATA", "")
    assert resolve_data_root(None) == tmp_path / "data"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_root("~/d") == tmp_path / "home" / "d"


def test_class_prompt_name():
    assert class_prompt_name("alarm_clock") == "alarm clock"
    assert class_prompt_name("hot-air_balloon") == "hot air balloon"
    assert class_prompt_name("alarm clock") == "alarm clock"
    assert class_prompt_name("jack-o-lantern") == "jack o lantern"


def test_choose_val_classes():
    seen = [0, 2, 3, 5, 8, 9, 11, 12, 13, 20]
    train, val = choose_val_classes(seen, 0.3, seed=1)
    assert len(val) == 3 and len(train) == 7
    assert sorted(train + val) == seen and val == sorted(val)
    assert choose_val_classes(seen, 0.3, seed=1) == (train, val)
    assert {tuple(choose_val_classes(seen, 0.3, seed=s)[1]) for s in range(10)} != {tuple(val)}
    assert len(choose_val_classes(seen, 0.01, seed=0)[1]) == 1  # at least one
    assert choose_val_classes(seen, 0.0, seed=0) == (seen, [])  # 0: no held-out class
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="val_fraction"):
            choose_val_classes(seen, bad, seed=0)
    with pytest.raises(ValueError, match="no training class"):
        choose_val_classes([1, 2], 0.9, seed=0)
