"""Geometry of the synthetic benchmark: one shape family per class, one posed outline per instance.

Coordinates: a class shape lives in the unit disc (max radius 1, centred); an instance is that shape
mildly deformed, stretched, rotated, scaled and moved, then mapped to pixels of a canvas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("star", "polygon", "blob", "cross", "ring", "crescent", "arrow", "pair")
POINTS_PER_CONTOUR = 72
_TAG_KIND_ORDER, _TAG_KIND, _TAG_CLASS = 0x4B1D, 0x4B1E, 0xC1A5


@dataclass(frozen=True)
class ClassShape:
    """A class's shape family: closed contours (solid ones first, then holes) and its typical look."""

    kind: str
    contours: tuple[np.ndarray, ...]  # each (POINTS_PER_CONTOUR, 2), unit-disc coordinates
    solid: tuple[bool, ...]  # False = hole cut out of the solids
    hsv: tuple[float, float, float]  # typical object colour
    stripe_freq: float  # texture stripes per object diameter
    stripe_depth: float  # how dark the stripes are, 0..1


def _resample(poly: np.ndarray, m: int = POINTS_PER_CONTOUR) -> np.ndarray:
    """``m`` points equally spaced along the perimeter of the closed polygon ``poly`` (K, 2)."""
    closed = np.vstack([poly, poly[:1]])  # (K+1, 2)
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)  # (K,)
    cum = np.concatenate([[0.0], np.cumsum(seg)])  # (K+1,)
    t = np.linspace(0.0, cum[-1], m, endpoint=False)  # (m,)
    return np.stack([np.interp(t, cum, closed[:, 0]), np.interp(t, cum, closed[:, 1])], axis=1)


def _polar(angles: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)  # (K, 2)


def _circle(cx: float, cy: float, r: float, k: int = 48) -> np.ndarray:
    return _polar(np.linspace(0, 2 * np.pi, k, endpoint=False), np.full(k, r)) + [cx, cy]


def _kind_contours(kind: str, rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], list[bool]]:
    """Raw contours of a shape family; ``n`` is the family's discrete parameter (points, sides, arms)."""
    if kind == "star":
        ang = np.arange(2 * n) * np.pi / n
        return [_polar(ang, np.where(np.arange(2 * n) % 2 == 0, 1.0, rng.uniform(0.38, 0.6)))], [True]
    if kind == "polygon":
        ang = np.sort(2 * np.pi * (np.arange(n) + rng.uniform(-0.25, 0.25, n)) / n)
        return [_polar(ang, rng.uniform(0.75, 1.0, n))], [True]
    if kind == "blob":
        ang = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        ks = np.arange(2, 5)[:, None]  # (3, 1) harmonics
        wobble = (rng.uniform(0.06, 0.22, (3, 1)) * np.cos(ks * ang + rng.uniform(0, 2 * np.pi, (3, 1)))).sum(0)
        r = 1 + wobble + 0.25 * np.cos(n * ang)  # n = the family's dominant lobe count
        return [_polar(ang, r)], [True]
    if kind == "cross":
        w = rng.uniform(0.14, 0.28)
        arm = 2 * np.pi * np.arange(n) / n
        tips = [_polar(a + np.array([-1, 1]) * np.arctan2(w, 1.0), np.full(2, np.hypot(1.0, w))) for a in arm]
        inner = _polar(arm + np.pi / n, np.full(n, w / np.sin(np.pi / n)))
        return [np.vstack([np.vstack([t, c[None]]) for t, c in zip(tips, inner)])], [True]
    if kind == "ring":
        ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
        outer = _polar(ang, rng.uniform(0.85, 1.0, n))
        return [outer, rng.uniform(0.4, 0.6) * outer[::-1]], [True, False]
    if kind == "crescent":
        r, d = rng.uniform(0.8, 0.95), rng.uniform(0.35, 0.6) + 0.03 * n
        x = (1 + d * d - r * r) / (2 * d)  # where the two circles cross
        t0, phi0 = np.arccos(x), np.arctan2(np.sqrt(1 - x * x), x - d)
        outer = _polar(np.linspace(t0, 2 * np.pi - t0, 48), np.ones(48))
        phi = np.linspace(2 * np.pi - phi0, phi0, 48)[1:-1]
        return [np.vstack([outer, _polar(phi, np.full(len(phi), r)) + [d, 0]])], [True]
    if kind == "arrow":
        s, h0, hw = rng.uniform(0.1, 0.22), rng.uniform(-0.1, 0.35), 0.3 + 0.08 * n
        pts = [(-1, -s), (h0, -s), (h0, -hw), (1, 0), (h0, hw), (h0, s), (-1, s)]
        return [np.array(pts, dtype=float)], [True]
    if kind == "pair":
        ang = np.linspace(0, 2 * np.pi, n + 2 if n < 6 else 48, endpoint=False)  # polygon or ellipse body
        body = _polar(ang, np.ones(len(ang))) * [rng.uniform(0.5, 0.75), rng.uniform(0.35, 0.55)] + [0, 0.3]
        head = _circle(rng.uniform(-0.3, 0.3), -0.45, rng.uniform(0.25, 0.4))
        return [body, head], [True, True]
    raise ValueError(f"unknown shape kind {kind!r}")


_DISCRETE = {  # the values of each family's discrete parameter; classes of one family take distinct ones
    "star": (5, 4, 6, 7, 8), "polygon": (3, 4, 5, 6, 7), "blob": (2, 3, 4, 5), "cross": (4, 3, 5, 6),
    "ring": (48, 6, 5, 8), "crescent": (0, 3, 6), "arrow": (1, 3, 2), "pair": (48, 2, 1, 3),
}


def make_class_shapes(num_classes: int, seed: int) -> list[ClassShape]:
    """``num_classes`` shape families, deterministic in ``seed``: family kinds cycle through a
    seeded order of :data:`KINDS`, so neighbours differ in kind and same-kind classes differ in
    their discrete parameter (and in continuous ones)."""
    kind_order = np.random.default_rng([seed, _TAG_KIND_ORDER]).permutation(len(KINDS))
    hue0 = np.random.default_rng([seed, _TAG_KIND_ORDER]).uniform()
    shapes = []
    for c in range(num_classes):
        kind = KINDS[kind_order[c % len(KINDS)]]
        options = np.random.default_rng([seed, _TAG_KIND, kind_order[c % len(KINDS)]]).permutation(_DISCRETE[kind])
        rng = np.random.default_rng([seed, _TAG_CLASS, c])
        raw, solid = _kind_contours(kind, rng, int(options[(c // len(KINDS)) % len(options)]))
        allpts = np.vstack(raw)
        centre = (allpts.max(0) + allpts.min(0)) / 2
        radius = np.linalg.norm(allpts - centre, axis=1).max()
        contours = tuple(_resample((p - centre) / radius) for p in raw)
        hsv = ((hue0 + 0.618034 * c) % 1.0, rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9))
        shapes.append(ClassShape(kind, contours, tuple(solid), hsv, rng.uniform(1.5, 5.0), rng.uniform(0.1, 0.45)))
    return shapes


def instance_contours(shape: ClassShape, rng: np.random.Generator, canvas: int) -> list[np.ndarray]:
    """The contours of one instance in pixel coordinates of a ``canvas`` x ``canvas`` image.

    Pose and deformation (all from ``rng``): smooth radial deformation (harmonics 1-3, up to 5 %),
    stretch up to exp(+-0.12) along x/y, rotation +-40 degrees, scale 0.5-0.78 of the half-canvas,
    and a translation that keeps the object inside the canvas.
    """
    b = rng.uniform(-0.05, 0.05, 3)  # deformation amplitudes
    psi = rng.uniform(0, 2 * np.pi, 3)
    stretch = np.exp(rng.uniform(-0.12, 0.12))
    theta = rng.uniform(-0.7, 0.7)
    scale = rng.uniform(0.5, 0.78)
    shift = rng.uniform(-1, 1, 2) * max(0.0, 0.92 - 1.2 * scale)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    half = canvas / 2
    out = []
    for p in shape.contours:
        ang = np.arctan2(p[:, 1], p[:, 0])[:, None]  # (M, 1)
        factor = 1 + (b * np.cos(np.arange(1, 4) * ang + psi)).sum(1, keepdims=True)  # (M, 1)
        q = p * factor * [stretch, 1 / stretch] * scale  # (M, 2)
        q = q @ rot.T + shift
        out.append((q + 1) * half)  # (M, 2) pixels
    return out
