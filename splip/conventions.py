"""The same embeddings scored under each metric convention and gallery protocol of the literature.

Published ZS-SBIR numbers come from code bases that compute "mAP@200" or "P@200" differently
(splip.metrics.METRIC_CONVENTIONS) and, in CLIP-AT's public code, against another gallery. This
module scores one set of test embeddings every way, so a table can say how far each protocol alone
moves a number. Galleries:

- ``"full"``: every test photo (the benchmark protocol; what our headline numbers use).
- ``"clip-at"``: CLIP-AT's code's validation gallery, one random photo of the query's class per
  query sketch, drawn anew per evaluation (splip.metrics.one_positive_gallery). It is NOT the
  benchmark protocol; that code reports mAP@all only, so only mAP@all is scored on it.
"""
from __future__ import annotations

from collections.abc import Sequence

from splip.evaluate import Embeddings
from splip.metrics import METRIC_CONVENTIONS, one_positive_gallery, retrieval_metrics

GALLERIES = {
    "full": "every test photo (benchmark protocol)",
    "clip-at": "one random photo of the query's class per query (CLIP-AT's code; not the protocol)",
}


def score_protocols(sketches: Embeddings, photos: Embeddings, metrics: Sequence[str],
                    conventions: Sequence[str] = tuple(METRIC_CONVENTIONS), seed: int = 0) -> list[dict]:
    """One record per (gallery, convention): ``{"gallery", "convention", <metric>: fraction, ...}``.

    ``metrics`` (e.g. ``("map@all", "map@200", "p@200")``) are scored on the full gallery; on the
    ``"clip-at"`` gallery only ``"map@all"`` (the one number that code reports). ``seed`` draws the
    CLIP-AT gallery.
    """
    records = []
    for convention in conventions:
        full = retrieval_metrics(sketches.vectors, sketches.labels, photos.vectors, photos.labels,
                                 metrics, convention=convention)
        records.append({"gallery": "full", "convention": convention, **full})
    drawn = one_positive_gallery(sketches.labels, photos.labels, seed)  # (Q,) one photo per query
    for convention in conventions:
        clip_at = retrieval_metrics(sketches.vectors, sketches.labels, photos.vectors[drawn],
                                    photos.labels[drawn], ("map@all",), convention=convention)
        records.append({"gallery": "clip-at", "convention": convention, **clip_at})
    return records
