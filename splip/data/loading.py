"""One entry point for every benchmark."""

from __future__ import annotations

import inspect
from pathlib import Path

from splip.data.dataset import SBIRDataset
from splip.data.errors import resolve_data_root
from splip.data.mini import load_quickdraw_mini, load_tuberlin_mini
from splip.data.official import load_official
from splip.data.synthetic import load_synthetic

SBIR_DATASETS = ("synthetic", "sketchy", "sketchy25", "tuberlin", "quickdraw", "quickdraw-mini", "tuberlin-mini")
SYNTHETIC_OPTIONS = tuple(
    p for p in inspect.signature(load_synthetic).parameters if p not in ("image_size", "val_fraction", "seed")
)


def load_dataset(
    name: str,
    root: str | Path | None = None,
    image_size: int = 224,
    val_fraction: float = 0.1,
    seed: int = 0,
    **options: int,
) -> SBIRDataset:
    """Load benchmark ``name`` (one of :data:`SBIR_DATASETS`), split into train / val / test.

    Official benchmarks are read from ``resolve_data_root(root)`` (``root``, else ``$SPLIP_DATA``,
    else ``./data``) and raise :class:`DatasetNotFoundError` when absent or incomplete; they take
    no ``options``. ``quickdraw-mini`` and ``tuberlin-mini`` (splip.data.mini: real sketches against
    Tiny ImageNet photos) read ``tiny-imagenet-200/``, ``quickdraw/`` and ``tu-berlin/`` from the same
    root; tuberlin-mini is a test set only (every class unseen). ``synthetic`` needs no files (``root`` is ignored) and takes the options
    ``num_classes``, ``num_unseen``, ``photos_per_class``, ``sketches_per_photo``, ``render_size``.
    ``val_fraction`` of the seen classes (at least one), chosen with ``seed``, is held out for
    validation; images are served as (3, image_size, image_size) CLIP-normalised tensors.
    """
    key = name.lower()
    if key not in SBIR_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {SBIR_DATASETS}")
    if key == "synthetic":
        unknown = sorted(set(options) - set(SYNTHETIC_OPTIONS))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown} for 'synthetic'; available: {SYNTHETIC_OPTIONS}")
        return load_synthetic(image_size=image_size, val_fraction=val_fraction, seed=seed, **options)
    if options:
        raise TypeError(f"dataset {name!r} takes no options, got {sorted(options)} (options are for 'synthetic')")
    if key == "quickdraw-mini":
        return load_quickdraw_mini(resolve_data_root(root), image_size, val_fraction, seed)
    if key == "tuberlin-mini":
        return load_tuberlin_mini(resolve_data_root(root), image_size)
    return load_official(key, resolve_data_root(root), image_size, val_fraction, seed)
