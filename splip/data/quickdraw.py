"""QuickDraw drawings in Google's *simplified* ndjson format, rendered to images on demand.

One file per category, one JSON object per line; ``drawing`` is a list of strokes
``[[x0, x1, ...], [y0, y1, ...]]`` with coordinates in a 256 x 256 box (the simplified files are
already aligned to the top-left corner and scaled so the longer side spans 0..255).
"""
from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

RENDER_SIZE = 256  # pixels; ImageSet resizes to the model's input with antialiasing
STROKE_WIDTH = 6  # pixels at RENDER_SIZE: about 1.5 px at 64 px, thin enough to stay a line drawing
MARGIN = 16  # white border, as around the photos' objects and in TU-Berlin's sketches

Strokes = list[tuple[np.ndarray, np.ndarray]]  # one (xs, ys) pair of int arrays per stroke


def read_drawings(path: str | Path, limit: int | None = None) -> tuple[list[Strokes], list[str]]:
    """The first `limit` drawings (all when None) of one simplified ndjson file: their strokes and
    their key_ids. Reads only as many lines as needed (the full per-category files hold ~100k+)."""
    drawings, keys = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(islice(handle, limit), start=1):
            try:
                record = json.loads(line)
                strokes = [(np.asarray(xs, dtype=np.int32), np.asarray(ys, dtype=np.int32))
                           for xs, ys in record["drawing"]]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{path}, line {number}: not a QuickDraw simplified drawing ({error})") from error
            drawings.append(strokes)
            keys.append(str(record.get("key_id", number)))
    return drawings, keys


def render_drawing(strokes: Strokes, size: int = RENDER_SIZE, width: int = STROKE_WIDTH,
                   margin: int = MARGIN) -> Image.Image:
    """Black strokes on white, the 256-box drawing centred and scaled into size - 2 * margin (RGB)."""
    xs = np.concatenate([x for x, _ in strokes]) if strokes else np.zeros(1)
    ys = np.concatenate([y for _, y in strokes]) if strokes else np.zeros(1)
    extent = max(float(xs.max() - xs.min()), float(ys.max() - ys.min()), 1.0)
    scale = (size - 2 * margin) / extent
    # Centre the drawing's bounding box in the canvas.
    offset_x = size / 2 - scale * (xs.min() + xs.max()) / 2
    offset_y = size / 2 - scale * (ys.min() + ys.max()) / 2
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for x, y in strokes:
        points = list(zip((offset_x + scale * x).tolist(), (offset_y + scale * y).tolist()))
        if len(set(points)) == 1:  # a dot: PIL draws a zero-length line as one pixel, whatever the width
            (cx, cy), radius = points[0], width / 2
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill="black")
        else:
            draw.line(points, fill="black", width=width, joint="curve")
    return image


class QuickDrawSource:
    """Rendered QuickDraw drawings held as strokes in memory; key = position in `drawings`."""

    def __init__(self, drawings: list[Strokes], names: list[str]):
        if len(drawings) != len(names):
            raise ValueError(f"{len(drawings)} drawings but {len(names)} names")
        self.drawings = drawings
        self.names = names

    def name(self, key: int) -> str:
        return self.names[key]

    def load(self, key: int) -> Image.Image:
        return render_drawing(self.drawings[key])
