"""Retrieval metrics for ZS-SBIR, GZS-SBIR and fine-grained SBIR (SPLIP_METHOD.md section 7).

Usable on their own: pass query/gallery embeddings (torch tensors or numpy arrays, ``(Q, D)`` and
``(G, D)``, L2-normalised) and labels (any hashable values; torch, numpy or lists).

Conventions shared by every function here:

- Similarity is the dot product of L2-normalised embeddings (= cosine), computed in float32 on the
  device of ``gallery_emb`` (pass CUDA tensors to use a GPU). Rows whose norm is not 1 (+-1e-2)
  raise, because the dot product would then not be the cosine.
- Ranking: similarity descending; ties are broken by gallery index, lower index first (the order of
  a stable sort of the negated similarities; ``-0.0`` and ``+0.0`` tie).
- A gallery item is relevant to a query when their labels are equal.
- All values are fractions in [0, 1], not percent.
- Queries are processed in chunks of rows, so the full ``(Q, G)`` similarity matrix is never held.
  Peak extra memory is roughly ``4 bytes * chunk_size * G`` on CPU (the chunk's similarities, 128 MiB
  by default, plus a few MB per thread) and ``25 bytes * chunk_size * G`` on a GPU (int64 keys and
  the values and indices of their sort). On CPU the chunk is ranked in blocks of rows spread over
  ``torch.get_num_threads()`` threads.

Metric conventions (``convention=``; :data:`METRIC_CONVENTIONS`), named after the public code that
defined them and read from it (R = relevant items in the whole gallery, K = cut-off):

- ``"sem-pcyc"`` (AnjanDutta/sem-pcyc ``src/utils.py``: ``apsak``, ``aps``, ``precak``, ``prec``):
  ``apsak`` keeps the top K of ``argsort(-sim)`` and scores them with sklearn's
  ``average_precision_score``, so mAP@K is step AP normalised by the hits within the top K; a query
  with no hit there gets 0 and stays in ``np.mean``. ``prec`` = hits in the top K / K.
- ``"sake"`` (qliu24/SAKE ``src/test_cse_resnet_tuberlin_zeroshot.py``: ``eval_AP_inner``,
  ``VOCap``, ``eval_precision``): over the top K, recall = cumulative hits / min(K, R), precision is
  made monotone from the right (``mpre[i] = max(mpre[i], mpre[i+1])``) and summed over the recall
  steps; each step is 1 / min(K, R), so AP = (sum over hits in the top K of the interpolated
  precision) / min(K, R). With R = 0 the division raises (the scripts turn warnings into errors) and
  AP is NaN, which ``np.nanmean`` drops. P@K = hits in the top K / K (0 for an empty query).
- ``"zse"`` (buptLinfy/ZSE-SBIR ``utils/ap.py``: ``calculate``, ``voc_eval``, ``voc_ap``,
  ``precision_eval``): ``voc_eval``/``voc_ap`` are SAKE's AP; ``precision_eval`` averages the
  relevance of the top min(K, R). With R = 0 both give NaN (0/0, mean of an empty slice), and
  ``calculate`` averages with ``np.nanmean``.

None of these codes breaks ties on purpose: they rank with ``np.argsort`` (not stable), and
sem-pcyc's sklearn call then groups tied scores into one threshold. Here ties are always broken by
gallery index, so results can differ from theirs only where similarities tie.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
import torch
from torch import Tensor

from splip.cpu_ranking import BlockWorkspace, block_hits
from splip.progress import tqdm

__all__ = [
    "DEFAULT_CONVENTION",
    "METRIC_CONVENTIONS",
    "per_query_retrieval_metrics",
    "retrieval_metrics",
    "mean_average_precision",
    "precision_at_k",
    "one_positive_gallery",
    "fine_grained_accuracy",
    "generalized_zero_shot_sets",
]

METRIC_CONVENTIONS: dict[str, str] = {
    "sem-pcyc": "step AP (sklearn); mAP@K / hits in the top K; P@K = hits / K; "
                "queries without relevant items count 0",
    "sake": "VOC-interpolated AP; mAP@K / min(K, R); P@K = hits / K; "
            "queries without relevant items left out of mAP",
    "zse": "VOC-interpolated AP; mAP@K / min(K, R); P@K = hits in the top min(K, R) / min(K, R); "
           "queries without relevant items left out",
}
"""Metric convention name -> one-line description (R = relevant items in the gallery)."""

DEFAULT_CONVENTION = "sem-pcyc"

_NORM_TOLERANCE = 1e-2
# Default chunk = this many similarity entries (2**25 * 4 bytes = 128 MiB on CPU); 619 rows for
# QuickDraw-Extended's 54,151-photo gallery.
_CHUNK_ELEMENTS = 2**25
_METRIC_NAME = re.compile(r"^(map|p)@(all|[1-9][0-9]*)$")


def _check_convention(convention: Any) -> str:
    if not isinstance(convention, str) or convention not in METRIC_CONVENTIONS:
        raise ValueError(
            f"convention must be one of {tuple(METRIC_CONVENTIONS)}, got {convention!r}."
        )
    return convention


def _embeddings(x: Any, name: str) -> Tensor:
    """Validate a ``(N, D)`` embedding matrix and return it as float32 on its own device."""
    t = torch.as_tensor(x).detach()
    if t.dim() != 2 or t.shape[0] == 0 or not (t.is_floating_point()):
        raise ValueError(
            f"{name} must be a non-empty float (N, D) matrix, got dtype {t.dtype} and shape {tuple(t.shape)}."
        )
    t = t.to(torch.float32)
    _check_unit_rows(t, name)
    return t


def _check_unit_rows(t: Tensor, name: str) -> None:
    norms = t.norm(dim=1)  # (N,)
    if not torch.isfinite(norms).all() or ((norms - 1).abs() > _NORM_TOLERANCE).any():
        raise ValueError(
            f"{name} rows must be finite and L2-normalised (norms range over "
            f"[{norms.min().item():.4g}, {norms.max().item():.4g}]); "
            f"pass x / x.norm(dim=-1, keepdim=True)."
        )


def _joint_label_codes(query_labels: Any, gallery_labels: Any, n_query: int | None,
                       n_gallery: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Map both label sets jointly to int64 codes so any hashable label type works.

    ``n_query`` / ``n_gallery``: the required lengths (one label per embedding row), or None for any.
    """
    arrays = []
    for name, labels, n in (("query_labels", query_labels, n_query),
                            ("gallery_labels", gallery_labels, n_gallery)):
        a = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
        if n is not None and a.shape != (n,):
            raise ValueError(
                f"{name} must be 1-D with one label per embedding row ({n}), got shape {a.shape}."
            )
        if n is None and (a.ndim != 1 or a.size == 0):
            raise ValueError(f"{name} must be a non-empty 1-D sequence of labels, got shape {a.shape}.")
        arrays.append(a)
    _, codes = np.unique(np.concatenate(arrays), return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    return codes[:len(arrays[0])], codes[len(arrays[0]):]  # (Q,), (G,)


def _label_codes(query_labels: Any, gallery_labels: Any, n_query: int, n_gallery: int,
                 device: torch.device) -> tuple[Tensor, Tensor]:
    """:func:`_joint_label_codes` as int64 tensors on ``device``."""
    q_codes, g_codes = _joint_label_codes(query_labels, gallery_labels, n_query, n_gallery)
    return torch.as_tensor(q_codes, device=device), torch.as_tensor(g_codes, device=device)  # (Q,), (G,)


def _chunks(
    n_query: int, n_gallery: int, chunk_size: int | None, progress: bool, desc: str
) -> Iterator[slice]:
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // n_gallery)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of query rows, got {chunk_size}.")
    starts = range(0, n_query, chunk_size)
    for start in tqdm(starts, desc=desc, unit="chunk", disable=not progress):
        yield slice(start, min(start + chunk_size, n_query))


def _ranked_gallery_indices(sim: Tensor, depth: int | None = None) -> Tensor:
    """``(C, G)`` float32 similarities (consumed) -> ``(C, depth)`` gallery indices of ranks 1..depth.

    ``depth=None`` ranks the whole gallery. Each (similarity, index) pair is packed into one int64
    key whose ascending order is "similarity descending, then index ascending"; keys are unique, so
    any sort or top-k selection gives this exact order. Torch ops only, on the tensor's device.
    """
    depth = sim.shape[1] if depth is None else depth
    sim.add_(0.0)  # turns -0.0 into +0.0 so the two tie
    bits = sim.view(torch.int32)  # (C, G) IEEE-754 patterns
    # Classic order-preserving float->int map: flip the magnitude bits of negative numbers.
    flip = (bits >> 31).bitwise_and_(0x7FFFFFFF)  # (C, G)
    bits.bitwise_xor_(flip)
    del flip
    keys = bits.to(torch.int64)  # (C, G)
    del sim, bits  # callers pass a temporary, so this frees the float32 matrix early
    keys.neg_().mul_(2**32).add_(torch.arange(keys.shape[1], device=keys.device))
    if depth < keys.shape[1]:
        keys = torch.topk(keys, depth, dim=1, largest=False, sorted=True).values  # (C, depth)
    else:
        keys = torch.sort(keys, dim=1).values
    return keys.bitwise_and_(0xFFFFFFFF)  # low 32 bits = gallery index


def _torch_hits(query: Tensor, gallery: Tensor, q_codes: Tensor, g_codes: Tensor,
                depth: int) -> tuple[Tensor, Tensor]:
    """Hits of a chunk with torch ops on ``gallery``'s device (the path for GPUs).

    ``query`` ``(C, D)`` and ``gallery`` ``(G, D)`` float32 embeddings, ``q_codes`` ``(C,)`` and
    ``g_codes`` ``(G,)`` label codes, all on that device. Returns ``(row, rank - 1)`` of every relevant
    item ranked within the top ``depth``, ordered by row, then rank (int64, on the device).
    """
    relevant = q_codes[:, None] == g_codes[None, :]  # (C, G), gallery order
    order = _ranked_gallery_indices(query @ gallery.T, depth)  # (C, depth)
    row, col = relevant.gather(1, order).nonzero(as_tuple=True)  # (H,), (H,)
    return row, col


def _parse_metrics(metrics: Sequence[str], n_gallery: int) -> list[tuple[str, str, int | None]]:
    """Names like "map@all", "mAP@200", "p@100" -> (name, kind, K or None for all)."""
    if isinstance(metrics, str) or len(metrics) == 0:
        raise ValueError(
            f"metrics must be a non-empty sequence of names like ('map@all', 'p@100'), got {metrics!r}."
        )
    parsed = []
    for name in dict.fromkeys(metrics):
        match = _METRIC_NAME.match(str(name).strip().lower())
        if match is None or match.group(0) == "p@all":
            raise ValueError(
                f"unknown metric {name!r}; use 'map@all', 'map@K' or 'p@K' with an integer K >= 1."
            )
        k = None if match.group(2) == "all" else int(match.group(2))
        if k is not None and k > n_gallery:
            raise ValueError(
                f"{name} needs a gallery of at least {k} items, got {n_gallery}; use a smaller K."
            )
        parsed.append((name, match.group(1), k))
    return parsed


# The cut-off that stands for "all" (map@all): above every rank.
_ALL_RANKS = 2**62


@numba.njit(nogil=True, cache=True)
def _hit_sums(hit_row, hit_col, n_relevant, cutoffs):  # pragma: no cover - compiled
    """Sums over each query's hits within each cut-off, from which every convention's values follow.

    ``hit_row``, ``hit_col`` ``(H,)``: row and rank - 1 of the hits, by row, then rank;
    ``n_relevant`` ``(C,)``: R of each row; ``cutoffs`` ``(M,)``: K of each metric. Returns a
    ``(4, C, M)`` float64 array: hits within the top K; the sum of P(k) over them; the sum of their
    VOC-interpolated precision within the top K, max P(j) over the later hits j <= K (the max over
    later *positions*, what VOCap takes, equals the max over later *hits*, because P only falls
    between hits); and the hits within the top min(K, R). Sums run in rank order.
    """
    out = np.zeros((4, n_relevant.size, cutoffs.size))
    interpolated = np.empty(hit_row.size)  # scratch: one row's interpolated precision
    start = 0
    while start < hit_row.size:
        row = hit_row[start]
        end = start
        while end < hit_row.size and hit_row[end] == row:
            end += 1
        for c in range(cutoffs.size):
            # Hits come in rank order, so those within the top K are a prefix of the row's hits, and
            # a hit's number within the row is the count of relevant items at ranks 1..k.
            stop = start
            precision_sum = 0.0
            while stop < end and hit_col[stop] < cutoffs[c]:
                precision_sum += (stop - start + 1) / (hit_col[stop] + 1.0)
                stop += 1
            running_max = 0.0
            for h in range(stop - 1, start - 1, -1):
                running_max = max(running_max, (h - start + 1) / (hit_col[h] + 1.0))
                interpolated[h] = running_max
            interpolated_sum = 0.0
            for h in range(start, stop):
                interpolated_sum += interpolated[h]
            within_r = start
            while within_r < stop and hit_col[within_r] < n_relevant[row]:
                within_r += 1
            out[0, row, c] = stop - start
            out[1, row, c] = precision_sum
            out[2, row, c] = interpolated_sum
            out[3, row, c] = within_r - start
        start = end
    return out


def _metrics_from_hits(hit_row: np.ndarray, hit_col: np.ndarray, n_relevant: np.ndarray,
                       parsed: list[tuple[str, str, int | None]], convention: str) -> dict[str, np.ndarray]:
    """Each parsed metric for a chunk of C queries, from its hits (see :func:`per_query_retrieval_metrics`).

    ``hit_row``, ``hit_col`` ``(H,)``: query row and rank - 1 of every relevant item ranked within the
    deepest cut-off the metrics need, ordered by row, then rank; ``n_relevant`` ``(C,)``: R of each query.
    """
    n_rows = n_relevant.size
    cutoffs = np.array([_ALL_RANKS if k is None else k for _, _, k in parsed], dtype=np.int64)  # (M,)
    hits, precision_sum, interpolated_sum, hits_within_r = _hit_sums(
        hit_row, hit_col, n_relevant.astype(np.int64), cutoffs)  # each (C, M)
    out = {}
    for c, (name, kind, k) in enumerate(parsed):
        if kind == "p" and convention == "zse":  # hits in the top min(K, R) / min(K, R)
            cutoff = np.minimum(k, n_relevant)  # (C,)
            out[name] = np.divide(hits_within_r[:, c], cutoff, out=np.full(n_rows, np.nan), where=cutoff > 0)
        elif kind == "p":
            out[name] = hits[:, c] / k
        elif convention == "sem-pcyc":
            denominator = n_relevant if k is None else hits[:, c]
            out[name] = np.divide(precision_sum[:, c], denominator, out=np.zeros(n_rows), where=denominator > 0)
        else:  # VOC AP, interpolated within the top K only: hits after rank K must not raise precision
            denominator = n_relevant if k is None else np.minimum(k, n_relevant)
            out[name] = np.divide(interpolated_sum[:, c], denominator, out=np.full(n_rows, np.nan),
                                  where=denominator > 0)  # NaN: R = 0, left out of the mean
    return out


# Similarity entries per CPU block, the unit of work of one thread (9 rows at G = 54,151): its int32
# keys about fill a core's 2 MiB L2 cache, and the per-call cost of the metrics' numpy operations is
# spread over its rows (blocks of one or two rows were slower here, 4 to 19 rows about the same).
_BLOCK_ELEMENTS = 2**19


def _cpu_chunk_metrics(sim: np.ndarray, q_codes: np.ndarray, g_codes: np.ndarray, n_relevant: np.ndarray,
                       depth: int, parsed: list[tuple[str, str, int | None]], convention: str,
                       pool: ThreadPoolExecutor, workspaces: threading.local) -> dict[str, np.ndarray]:
    """Each parsed metric for a CPU chunk ``(C, G)`` float32, in blocks of rows spread over ``pool``'s
    threads (the ranking kernels and numpy release the GIL), each thread with its own
    :class:`~splip.cpu_ranking.BlockWorkspace` in ``workspaces``. ``(C,)`` float64 arrays."""
    n_rows, n_gallery = sim.shape
    block = max(1, _BLOCK_ELEMENTS // n_gallery)

    def block_metrics(start: int) -> dict[str, np.ndarray]:
        rows = slice(start, start + block)
        workspace = getattr(workspaces, "block", None)
        if workspace is None:
            workspace = workspaces.block = BlockWorkspace(block, n_gallery)
        hit_row, hit_col = block_hits(sim[rows], q_codes[rows], g_codes, depth, workspace)
        return _metrics_from_hits(hit_row, hit_col, n_relevant[rows], parsed, convention)

    blocks = list(pool.map(block_metrics, range(0, n_rows, block)))
    return {name: np.concatenate([values[name] for values in blocks]) for name, _, _ in parsed}


def per_query_retrieval_metrics(
    query_emb: Any,
    query_labels: Any,
    gallery_emb: Any,
    gallery_labels: Any,
    metrics: Sequence[str] = ("map@all", "p@100", "map@200", "p@200"),
    convention: str = DEFAULT_CONVENTION,
    chunk_size: int | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per-query AP and precision values from one ranking per query (each chunk is sorted once).

    With the ranking of the module docstring, ``r_k`` = 1 if the item at rank k is relevant,
    ``P(k)`` = (relevant items in ranks 1..k) / k, ``R`` = relevant items in the whole gallery and,
    for ``"map@all"``, K = G (the gallery size). For each ``convention``:

    ``"sem-pcyc"`` (default):

    - ``"map@K"``: ``sum_{k<=K} P(k) r_k / H_K``, H_K = relevant items within the top K (for
      map@all H_K = R: sklearn's ``average_precision_score`` when no relevant item ties with another
      item). 0 when H_K = 0.
    - ``"p@K"``: ``H_K / K``.

    ``"sake"``:

    - ``"map@K"``: ``sum_{k<=K} Pi_K(k) r_k / min(K, R)`` with the interpolated precision
      ``Pi_K(k) = max_{k<=j<=K} P(j)``. NaN when R = 0 (left out of the mean).
    - ``"p@K"``: ``H_K / K`` (0 when R = 0).

    ``"zse"``: ``"map@K"`` as ``"sake"``; ``"p@K"``: ``H_m / m`` with m = min(K, R), NaN when R = 0.

    Names are case-insensitive; K must not exceed the gallery size. ``chunk_size`` = query rows per
    chunk (default: about 2**25 / G). Returns float64 arrays of shape ``(Q,)`` keyed by the given names.
    """
    convention = _check_convention(convention)
    gallery = _embeddings(gallery_emb, "gallery_emb")  # (G, D)
    device = gallery.device
    query = _embeddings(query_emb, "query_emb")  # (Q, D), moved to `device` chunk by chunk
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query_emb has dimension {query.shape[1]} but gallery_emb has {gallery.shape[1]}.")
    n_query, n_gallery = query.shape[0], gallery.shape[0]
    parsed = _parse_metrics(metrics, n_gallery)
    q_np, g_np = _joint_label_codes(query_labels, gallery_labels, n_query, n_gallery)  # (Q,), (G,)
    n_relevant_all = np.bincount(g_np, minlength=int(q_np.max()) + 1)[q_np]  # (Q,) R of each query
    on_cpu = device.type == "cpu"
    if on_cpu:
        q_codes, g_codes = q_np.astype(np.int32), g_np.astype(np.int32)
    else:
        q_codes, g_codes = torch.as_tensor(q_np, device=device), torch.as_tensor(g_np, device=device)
    # Relevance is only needed down to the deepest rank any metric looks at.
    depth = max(n_gallery if k is None else k for _, _, k in parsed)

    out = {name: np.zeros(n_query) for name, _, _ in parsed}
    buffer = None
    workspaces = threading.local()  # one BlockWorkspace per pool thread, reused by every chunk
    with ThreadPoolExecutor(max_workers=torch.get_num_threads()) as pool:
        for rows in _chunks(n_query, n_gallery, chunk_size, progress, "retrieval metrics"):
            n_rows = rows.stop - rows.start
            if not on_cpu:
                hit_row, hit_col = _torch_hits(query[rows].to(device), gallery, q_codes[rows], g_codes, depth)
                chunk = _metrics_from_hits(hit_row.cpu().numpy(), hit_col.cpu().numpy(), n_relevant_all[rows],
                                           parsed, convention)
            else:
                if buffer is None:  # the first chunk is the largest
                    buffer = torch.empty((n_rows, n_gallery), dtype=torch.float32)
                # The values of query[rows] @ gallery.T, written into one reused (C, G) matrix: a
                # fresh one per chunk would cost its page faults on every chunk.
                sim = torch.mm(query[rows].to(device), gallery.T, out=buffer[:n_rows])  # (C, G)
                chunk = _cpu_chunk_metrics(sim.numpy(), q_codes[rows], g_codes, n_relevant_all[rows], depth,
                                           parsed, convention, pool, workspaces)
            for name, values in chunk.items():
                out[name][rows] = values
    return out


def retrieval_metrics(
    query_emb: Any,
    query_labels: Any,
    gallery_emb: Any,
    gallery_labels: Any,
    metrics: Sequence[str] = ("map@all", "p@100", "map@200", "p@200"),
    convention: str = DEFAULT_CONVENTION,
    chunk_size: int | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Means over queries of :func:`per_query_retrieval_metrics` (definitions there), as fractions.

    NaN values (queries with no relevant gallery item under ``"sake"`` / ``"zse"``) are left out of
    the mean, as those codes' ``np.nanmean`` does; the mean is NaN if every query is left out. Under
    ``"sem-pcyc"`` such queries count as 0. Example: ``retrieval_metrics(sk, sk_y, ph, ph_y,
    ("map@all", "p@100"))`` -> ``{"map@all": 0.80, "p@100": 0.87}``.
    """
    per_query = per_query_retrieval_metrics(
        query_emb, query_labels, gallery_emb, gallery_labels, metrics, convention, chunk_size, progress
    )
    means = {}
    for name, values in per_query.items():
        kept = values[~np.isnan(values)]
        means[name] = float(kept.mean()) if kept.size else math.nan
    return means


def mean_average_precision(
    query_emb: Any,
    query_labels: Any,
    gallery_emb: Any,
    gallery_labels: Any,
    k: int | None = None,
    convention: str = DEFAULT_CONVENTION,
    chunk_size: int | None = None,
    progress: bool = False,
) -> float:
    """mAP@all (``k=None``) or mAP@K under ``convention``; see :func:`per_query_retrieval_metrics`."""
    name = "map@all" if k is None else f"map@{k}"
    return retrieval_metrics(
        query_emb, query_labels, gallery_emb, gallery_labels, (name,), convention, chunk_size, progress
    )[name]


def precision_at_k(
    query_emb: Any,
    query_labels: Any,
    gallery_emb: Any,
    gallery_labels: Any,
    k: int,
    convention: str = DEFAULT_CONVENTION,
    chunk_size: int | None = None,
    progress: bool = False,
) -> float:
    """Mean P@K under ``convention`` (hits in the top K / K, or for ``"zse"`` hits in the top
    min(K, R) / min(K, R)); see :func:`per_query_retrieval_metrics`."""
    name = f"p@{k}"
    return retrieval_metrics(
        query_emb, query_labels, gallery_emb, gallery_labels, (name,), convention, chunk_size, progress
    )[name]


def one_positive_gallery(query_labels: Any, gallery_labels: Any, seed: int) -> np.ndarray:
    """For each query, the index of one random gallery item of the query's class (CLIP-AT's gallery).

    NOT the benchmark protocol: it inflates the numbers. It reproduces the validation of CLIP-AT's
    public code (aneeshan95/Sketch_LVM: ``Sketchy.__getitem__`` in ``src/dataset_retrieval.py``
    draws ``np.random.choice(self.all_photos_path[category])`` for every query sketch, anew on
    every evaluation; ``Model.validation_epoch_end`` in ``src/model_LN_prompt.py`` ranks the stack of
    those photos, one per query, by cosine and reports the mean of torchmetrics'
    ``retrieval_average_precision``, i.e. mAP@all). The gallery therefore has Q items, with the
    query classes' frequencies, and the same photo can appear more than once (draws are independent).

    Each draw is uniform over the gallery items with the query's label, from
    ``numpy.random.default_rng(seed)``. Use it as ``idx = one_positive_gallery(q_y, g_y, seed)``,
    then score the queries against ``gallery_emb[idx]`` with labels ``gallery_labels[idx]``
    (``convention="sem-pcyc"``, ``"map@all"``: torchmetrics' AP is the same step AP).
    Returns int64 indices of shape ``(Q,)``; raises if a query's label has no gallery item.
    """
    q_codes, g_codes = _joint_label_codes(query_labels, gallery_labels, None, None)  # (Q,), (G,)
    n_codes = int(max(q_codes.max(), g_codes.max())) + 1
    per_class = np.bincount(g_codes, minlength=n_codes)  # (L,) gallery items of each label
    unmatched = np.flatnonzero(per_class[q_codes] == 0)  # queries whose label no gallery item has
    if unmatched.size:
        q_labels = (query_labels.detach().cpu().numpy() if isinstance(query_labels, Tensor)
                    else np.asarray(query_labels))  # (Q,)
        absent = sorted({str(label) for label in q_labels[unmatched]})
        raise ValueError(
            f"{unmatched.size} queries have a label with no gallery item ({', '.join(absent[:5])}"
            f"{', ...' if len(absent) > 5 else ''}); every query needs a same-class gallery item."
        )
    by_class = np.argsort(g_codes, kind="stable")  # (G,) gallery indices grouped by label, index order
    class_start = np.cumsum(per_class) - per_class  # (L,)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, per_class[q_codes])  # (Q,) uniform position within each query's class
    return by_class[class_start[q_codes] + pick].astype(np.int64)


def fine_grained_accuracy(
    query_emb: Any,
    gallery_emb: Any,
    target_index: Any,
    query_labels: Any = None,
    gallery_labels: Any = None,
    ks: Sequence[int] = (1, 5),
    gallery: str = "same_class",
    chunk_size: int | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Fine-grained Acc@K: share of query sketches whose source photo ranks in the top K.

    ``target_index[i]`` is the gallery row of query i's source photo. Ranking as in the module
    docstring, over the candidate photos: ``gallery="same_class"`` (default, the protocol) ranks only
    gallery items whose label equals the query's label (``query_labels`` and ``gallery_labels``
    required); ``gallery="all"`` ranks every gallery item (labels unused). The rank of the target is
    1 + the number of candidates with higher similarity, or equal similarity and a lower index.
    Returns ``{"acc@K": fraction}`` for each K in ``ks``.
    """
    if gallery not in ("same_class", "all"):
        raise ValueError(f"gallery must be 'same_class' or 'all', got {gallery!r}.")
    if len(ks) == 0 or any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of integers >= 1, got {ks!r}.")
    photos = _embeddings(gallery_emb, "gallery_emb")  # (G, D)
    device = photos.device
    query = _embeddings(query_emb, "query_emb")  # (Q, D)
    if query.shape[1] != photos.shape[1]:
        raise ValueError(f"query_emb has dimension {query.shape[1]} but gallery_emb has {photos.shape[1]}.")
    n_query, n_gallery = query.shape[0], photos.shape[0]
    target = torch.as_tensor(target_index).detach().to(device)
    if target.shape != (n_query,) or target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(
            f"target_index must be an integer array of shape ({n_query},), "
            f"got {target.dtype} {tuple(target.shape)}."
        )
    target = target.long()
    if ((target < 0) | (target >= n_gallery)).any():
        raise ValueError(f"target_index values must be gallery rows in [0, {n_gallery}).")
    if gallery == "same_class":
        if query_labels is None or gallery_labels is None:
            raise ValueError(
                "gallery='same_class' needs query_labels and gallery_labels; or pass gallery='all'."
            )
        q_codes, g_codes = _label_codes(query_labels, gallery_labels, n_query, n_gallery, device)
        mismatched = int((g_codes[target] != q_codes).sum())
        if mismatched:
            raise ValueError(
                f"{mismatched} queries have a target photo of another class; with gallery='same_class' the "
                f"target must share the query's label (check target_index or use gallery='all')."
            )

    gallery_index = torch.arange(n_gallery, device=device)  # (G,)
    ranks = []
    for rows in _chunks(n_query, n_gallery, chunk_size, progress, "fine-grained accuracy"):
        sim = query[rows].to(device) @ photos.T  # (C, G)
        t_idx = target[rows, None]  # (C, 1)
        t_sim = sim.gather(1, t_idx)  # (C, 1)
        ahead = (sim > t_sim) | ((sim == t_sim) & (gallery_index[None, :] < t_idx))  # (C, G)
        if gallery == "same_class":
            ahead &= q_codes[rows, None] == g_codes[None, :]
        ranks.append(ahead.sum(dim=1).cpu())  # (C,) 0-based rank of the target
    rank = torch.cat(ranks).numpy()  # (Q,)
    return {f"acc@{int(k)}": float((rank < k).mean()) for k in ks}


def generalized_zero_shot_sets(
    n_unseen_queries: int,
    n_unseen_gallery: int,
    n_seen_queries: int,
    n_seen_gallery: int,
    fraction: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the seen-class sketches and photos to add for GZS-SBIR.

    GZS-SBIR: add seen-class sketches and photos, randomly chosen (seeded), equal to 20% of the
    unseen test sets, to queries and gallery. This draws ``round(fraction * n_unseen_queries)``
    distinct indices into a pool of ``n_seen_queries`` seen-class sketches and
    ``round(fraction * n_unseen_gallery)`` into a pool of ``n_seen_gallery`` seen-class photos
    (halves round up), sketches first, from ``numpy.random.default_rng(seed)``. The caller
    concatenates the selected items (with their labels) to the unseen queries and gallery.

    Returns ``(sketch_indices, photo_indices)``, each sorted int64.
    """
    counts = {"n_unseen_queries": n_unseen_queries, "n_unseen_gallery": n_unseen_gallery,
              "n_seen_queries": n_seen_queries, "n_seen_gallery": n_seen_gallery}
    for name, value in counts.items():
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
    if not fraction > 0:
        raise ValueError(f"fraction must be > 0, got {fraction!r}.")
    rng = np.random.default_rng(seed)
    picked = []
    for what, n_unseen, pool in (("sketches", n_unseen_queries, n_seen_queries),
                                 ("photos", n_unseen_gallery, n_seen_gallery)):
        n_pick = math.floor(fraction * n_unseen + 0.5)
        if n_pick > pool:
            raise ValueError(
                f"GZS needs {n_pick} seen-class {what} ({fraction:g} x {n_unseen} unseen) but the seen pool "
                f"has only {pool}; supply a larger pool or a smaller fraction."
            )
        picked.append(np.sort(rng.choice(int(pool), size=n_pick, replace=False)).astype(np.int64))
    return picked[0], picked[1]
