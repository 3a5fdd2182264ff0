"""The embedded synthetic benchmark: textured shapes on clutter (photos) and their wobbly outlines (sketches).

Nothing is stored: image ``(class c, instance i)`` is rendered on demand from random generators
seeded with ``[seed, c, i, ...]``, so it is identical every time and in every process.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from splip.data.dataset import SBIRDataset, choose_val_classes, positions_of_keys, split_sets
from splip.data.images import ImageSet
from splip.data.synthetic_shapes import ClassShape, instance_contours, make_class_shapes

CLASS_NAMES = (
    "star", "ring", "cross", "arrow", "heart", "moon", "kite", "bolt", "gear", "leaf", "drop", "bell",
    "crown", "fish", "tree", "house", "key", "cup", "flag", "boat", "cloud", "shell", "comb", "lamp",
    "mask", "pear", "sail", "tent", "vase", "hat", "fan", "nut",
)
SUPERSAMPLE = 2  # shapes are drawn at 2x and box-downsampled, for antialiased edges and strokes
_TAG_GEOMETRY, _TAG_LOOK, _TAG_SKETCH, _TAG_UNSEEN = 1, 2, 3, 0x0E5E


def synthetic_class_names(num_classes: int) -> list[str]:
    """Readable names (labels only: a name need not match its shape), then ``"shape 33"`` style."""
    return [CLASS_NAMES[c] if c < len(CLASS_NAMES) else f"shape {c + 1}" for c in range(num_classes)]


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    return np.meshgrid(axis, axis)  # x (S, S), y (S, S)


def render_photo(shape: ClassShape, seed: int, c: int, i: int, size: int) -> Image.Image:
    """Photo of instance ``i`` of class ``c``: filled, striped, shaded object in a random hue (class
    saturation/brightness, jittered) over a gradient with random blobs and bars, plus
    pixel noise."""
    geo = instance_contours(shape, np.random.default_rng([seed, c, i, _TAG_GEOMETRY]), size * SUPERSAMPLE)
    rng = np.random.default_rng([seed, c, i, _TAG_LOOK])
    x, y = _grid(size)

    c0, c1 = rng.uniform(0, 1, (2, 3)).astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    g = (x * np.cos(a) + y * np.sin(a) + 1) / 2  # (S, S) in [0, 1]
    bg = Image.fromarray(((c0 + (c1 - c0) * g[..., None]) * 255).astype(np.uint8))  # (S, S, 3)
    draw = ImageDraw.Draw(bg)
    for _ in range(rng.integers(4, 9)):
        cx, cy, rx, ry = rng.uniform(0, size, 2).tolist() + (rng.uniform(0.05, 0.25, 2) * size).tolist()
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=tuple(rng.integers(0, 256, 3).tolist()))
    for _ in range(rng.integers(0, 3)):
        draw.line(rng.uniform(0, size, 4).tolist(), fill=tuple(rng.integers(0, 256, 3).tolist()),
                  width=max(1, int(rng.uniform(0.02, 0.06) * size)))

    mask = Image.new("L", (size * SUPERSAMPLE,) * 2, 0)
    mdraw = ImageDraw.Draw(mask)
    for pts, solid in zip(geo, shape.solid):
        mdraw.polygon([tuple(p) for p in pts.tolist()], fill=255 if solid else 0)
    alpha = np.asarray(mask.reduce(SUPERSAMPLE), dtype=np.float32)[..., None] / 255  # (S, S, 1)
    # Objects in photos have visible boundaries (shading, shadow); they are what a sketch traces.
    rim = ImageChops.subtract(mask.filter(ImageFilter.MaxFilter(3 * SUPERSAMPLE - 1)),
                              mask.filter(ImageFilter.MinFilter(3 * SUPERSAMPLE - 1)))
    edge = np.asarray(rim.reduce(SUPERSAMPLE), dtype=np.float32)[..., None] / 255 * rng.uniform(0.5, 0.9)

    # Any hue for any instance: with a class colour, a CLIP pretrained on these photos learns
    # colour instead of shape, and then has nothing that transfers to sketches.
    _, s, v = shape.hsv
    h = rng.uniform(0, 1)
    s = float(np.clip(s * rng.uniform(0.85, 1.15), 0, 1))
    v = float(np.clip(v * rng.uniform(0.8, 1.15), 0.15, 1))
    base = np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)  # (3,)
    b, gamma = rng.uniform(0, np.pi, 2)
    stripes = 0.5 + 0.5 * np.sin(np.pi * shape.stripe_freq * (x * np.cos(b) + y * np.sin(b)) / 0.7 + rng.uniform(0, 7))
    shading = 1 + 0.25 * (x * np.cos(gamma) + y * np.sin(gamma))
    obj = base * ((1 - shape.stripe_depth * stripes) * shading)[..., None]  # (S, S, 3)

    img = np.asarray(bg, dtype=np.float32) / 255 * (1 - alpha) + obj * alpha
    img = img * (1 - edge) + 0.25 * base * edge
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    return Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))


def _smooth_noise(rng: np.random.Generator, n: int, knots: int, amp: float) -> np.ndarray:
    """(n, 2) offsets varying smoothly along a closed contour: ``knots`` random values, interpolated."""
    t = np.linspace(0, knots, n, endpoint=False)
    k = rng.normal(0, amp, (knots + 1, 2))
    k[-1] = k[0]  # periodic
    xp = np.arange(knots + 1)
    return np.stack([np.interp(t, xp, k[:, 0]), np.interp(t, xp, k[:, 1])], axis=1)


def render_sketch(shape: ClassShape, seed: int, c: int, i: int, k: int, size: int) -> Image.Image:
    """Sketch ``k`` of photo ``(c, i)``: the outline of that same posed instance, as dark strokes
    on white. Each contour wobbles smoothly (about 1.2 % of the image) and is drawn as 1-3 strokes
    that overshoot or leave gaps, with widths around 1-2 px per 100 px of image; now and then a
    third of an outline is left out."""
    canvas = size * SUPERSAMPLE
    geo = instance_contours(shape, np.random.default_rng([seed, c, i, _TAG_GEOMETRY]), canvas)
    rng = np.random.default_rng([seed, c, i, _TAG_SKETCH, k])
    img = Image.new("L", (canvas, canvas), 255)
    draw = ImageDraw.Draw(img)
    base_width = rng.uniform(1.0, 2.0) * max(1.0, size / 100) * SUPERSAMPLE
    ink = int(rng.integers(0, 50))
    for pts in geo:
        m = len(pts)
        pts = pts + _smooth_noise(rng, m, 8, 0.012 * canvas)
        n_strokes = int(rng.integers(1, 4))
        # roughly equal strokes, so that leaving one out removes at most about a third of the outline
        spacing = (np.arange(n_strokes) + rng.uniform(-0.25, 0.25, n_strokes)) * m / n_strokes
        cuts = int(rng.integers(m)) + np.round(spacing).astype(int)
        ends = np.append(cuts[1:], cuts[0] + m)
        for j, (a, e) in enumerate(zip(cuts, ends)):
            if n_strokes == 3 and j > 0 and rng.uniform() < 0.1:
                continue
            e = e + int(rng.integers(-4, 4))  # gap (<0) or overshoot (>0)
            idx = np.arange(a, max(e, a + 2) + 1) % m
            stroke = pts[idx] + rng.normal(0, 0.004 * canvas, 2)  # re-drawn strokes do not line up exactly
            width = max(1, int(round(base_width * rng.uniform(0.7, 1.3))))
            draw.line([tuple(p) for p in stroke.tolist()], fill=ink, width=width, joint="curve")
    return img.reduce(SUPERSAMPLE).convert("RGB")


class SyntheticSource:
    """Rendered images of one modality. Photo key ``c * P + i`` = instance ``first_instance + i`` of
    class ``c``; sketch key ``(c * P + i) * K + k`` = sketch ``k`` of that photo (P photos per class,
    K sketches per photo)."""

    def __init__(self, shapes: list[ClassShape], names: list[str], seed: int, modality: str,
                 photos_per_class: int, sketches_per_photo: int, size: int, first_instance: int = 0):
        self.shapes, self.names, self.seed, self.modality = shapes, names, seed, modality
        self.per_class, self.per_photo, self.size = photos_per_class, sketches_per_photo, size
        self.first_instance = first_instance

    def _parse(self, key: int) -> tuple[int, int, int]:
        photo, k = divmod(key, self.per_photo) if self.modality == "sketch" else (key, 0)
        c, i = divmod(photo, self.per_class)
        return c, self.first_instance + i, k

    def name(self, key: int) -> str:
        c, i, k = self._parse(key)
        suffix = f"-{k}" if self.modality == "sketch" else ""
        return f"synthetic(seed={self.seed}):{self.modality}/{self.names[c]}/{i}{suffix}"

    def load(self, key: int) -> Image.Image:
        c, i, k = self._parse(key)
        if self.modality == "photo":
            return render_photo(self.shapes[c], self.seed, c, i, self.size)
        return render_sketch(self.shapes[c], self.seed, c, i, k, self.size)


def load_synthetic(
    image_size: int = 224,
    val_fraction: float = 0.1,
    seed: int = 0,
    num_classes: int = 16,
    num_unseen: int = 4,
    photos_per_class: int = 40,
    sketches_per_photo: int = 2,
    render_size: int | None = None,
) -> SBIRDataset:
    """The synthetic benchmark (see module docstring), deterministic in ``seed``.

    ``seed`` fixes the shape families, every image, the unseen classes (a seeded choice of
    ``num_unseen``) and the validation classes. Images are rendered at ``render_size`` (default:
    ``image_size``) and resized to ``image_size`` like real images. Every test and training
    sketch's source photo is known (``fg_source_photo``, ``train_fg_source_photo``).
    """
    if num_classes < 3 or not 1 <= num_unseen <= num_classes - 2:
        raise ValueError(
            f"synthetic data needs num_classes >= 3 and 1 <= num_unseen <= num_classes - 2 (at least one "
            f"training and one validation class); got num_classes={num_classes}, num_unseen={num_unseen}"
        )
    if photos_per_class < 1 or sketches_per_photo < 1:
        raise ValueError(
            f"photos_per_class and sketches_per_photo must be >= 1, got {photos_per_class}, {sketches_per_photo}"
        )
    size = int(render_size or image_size)
    shapes = make_class_shapes(num_classes, seed)
    names = synthetic_class_names(num_classes)
    unseen_rng = np.random.default_rng([seed, _TAG_UNSEEN])
    unseen_ids = sorted(int(c) for c in unseen_rng.choice(num_classes, num_unseen, replace=False))
    seen_ids = [c for c in range(num_classes) if c not in unseen_ids]
    train_ids, val_ids = choose_val_classes(seen_ids, val_fraction, seed)

    n_photos = num_classes * photos_per_class
    n_sketches = n_photos * sketches_per_photo

    def full_set(modality: str, n: int, per_class: int) -> ImageSet:
        source = SyntheticSource(shapes, names, seed, modality, photos_per_class, sketches_per_photo, size)
        return ImageSet(source, np.arange(n), np.arange(n) // per_class, names, modality, image_size)

    sets = split_sets(
        full_set("sketch", n_sketches, photos_per_class * sketches_per_photo),
        full_set("photo", n_photos, photos_per_class),
        train_ids, val_ids, unseen_ids,
    )

    def source_photo(split: str) -> np.ndarray:  # (N_sketches,) index into that split's photos
        return positions_of_keys(sets[f"{split}_photos"], sets[f"{split}_sketches"].keys // sketches_per_photo)

    return SBIRDataset(
        name="synthetic", classes=names, train_ids=train_ids, val_ids=val_ids, unseen_ids=unseen_ids,
        fg_source_photo=source_photo("test"), train_fg_source_photo=source_photo("train"), synthetic=True,
        source=(f"embedded shape benchmark (seed={seed}, {photos_per_class} photos per class, "
                f"{sketches_per_photo} sketch(es) per photo, rendered at {size} px; nothing on disk)"),
        **sets,
    )


# Pretraining photos are instances numbered from here: never any benchmark photo (those are 0..P-1).
PRETRAINING_FIRST_INSTANCE = 1_000_000


def synthetic_pretraining_photos(
    image_size: int = 224,
    seed: int = 0,
    num_classes: int = 16,
    photos_per_class: int = 100,
    render_size: int | None = None,
) -> ImageSet:
    """Photos of every synthetic class (seen and unseen) for pretraining a small CLIP: the same shape
    families as ``load_synthetic(seed=seed, num_classes=num_classes)`` but other instances, never a
    benchmark photo, and no sketches. Labels index ``synthetic_class_names(num_classes)``."""
    if num_classes < 1 or photos_per_class < 1:
        raise ValueError(f"need num_classes >= 1 and photos_per_class >= 1, got {num_classes}, {photos_per_class}")
    names = synthetic_class_names(num_classes)
    source = SyntheticSource(make_class_shapes(num_classes, seed), names, seed, "photo", photos_per_class, 1,
                             int(render_size or image_size), first_instance=PRETRAINING_FIRST_INSTANCE)
    n = num_classes * photos_per_class
    return ImageSet(source, np.arange(n), np.arange(n) // photos_per_class, names, "photo", image_size)
