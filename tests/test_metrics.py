"""Tests for splip.metrics against sklearn, a pure-Python brute force and hand-computed values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

import splip.cpu_ranking as cpu_ranking
import splip.metrics as metrics_module
from splip.cpu_ranking import BlockWorkspace, block_hits
from splip.metrics import (
    DEFAULT_CONVENTION,
    METRIC_CONVENTIONS,
    _metrics_from_hits,
    _parse_metrics,
    _ranked_gallery_indices,
    _torch_hits,
    fine_grained_accuracy,
    generalized_zero_shot_sets,
    mean_average_precision,
    one_positive_gallery,
    per_query_retrieval_metrics,
    precision_at_k,
    retrieval_metrics,
)

CONVENTIONS = ("sem-pcyc", "sake", "zse")


def embed_scores(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm embeddings whose float32 dot products equal ``scores`` exactly.

    Query i is the one-hot e_i, gallery item j is (scores[:, j], sqrt(1 - |scores[:, j]|^2)), so
    q_i . g_j = 1 * scores[i, j] + zeros. Needs |scores| small (sum of squares per column < 1) and
    values exact in float32 (multiples of a power of two), which lets tests create exact ties.
    """
    n_query, n_gallery = scores.shape
    query = np.eye(n_query, n_query + 1, dtype=np.float32)  # (Q, Q+1)
    gallery = np.zeros((n_gallery, n_query + 1), dtype=np.float32)  # (G, Q+1)
    gallery[:, :n_query] = scores.T
    gallery[:, n_query] = np.sqrt(1.0 - (scores.astype(np.float64) ** 2).sum(axis=0))
    return query, gallery


def ranked_relevance(scores_row: np.ndarray, relevant_row: np.ndarray) -> list[bool]:
    """Relevance down the documented ranking: similarity descending, then gallery index ascending."""
    order = sorted(range(len(scores_row)), key=lambda j: (-float(scores_row[j]), j))
    return [bool(relevant_row[j]) for j in order]


def voc_ap(rec: list[float], prec: list[float]) -> float:
    """Textbook VOC AP: sentinels, precision envelope from the right, sum over recall changes."""
    mrec = [0.0] + rec + [1.0]
    mpre = [0.0] + prec + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


def brute_force(
    scores_row: np.ndarray, relevant_row: np.ndarray, k: int | None, convention: str
) -> tuple[float, float]:
    """Pure-Python (AP, P@K) for one query, written from each convention's definition (NaN = left out)."""
    ranked = ranked_relevance(scores_row, relevant_row)
    n_total = sum(ranked)
    cut = len(ranked) if k is None else k
    top = ranked[:cut]
    if convention == "sem-pcyc":
        hits, ap_sum = 0, 0.0
        for position, is_relevant in enumerate(top, start=1):
            if is_relevant:
                hits += 1
                ap_sum += hits / position
        ap = ap_sum / hits if hits else 0.0  # hits = n_total when k is None
    else:
        denominator = min(cut, n_total)
        if denominator == 0:
            ap = float("nan")
        else:
            cumulative = np.cumsum(top).tolist()
            ap = voc_ap([c / denominator for c in cumulative],
                        [c / position for position, c in enumerate(cumulative, start=1)])
    if k is None:
        precision = float("nan")
    elif convention == "zse":
        m = min(k, n_total)
        precision = sum(ranked[:m]) / m if m else float("nan")
    else:
        precision = sum(top) / k
    return ap, precision


def random_unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def sklearn_ap(relevant_row: np.ndarray, scores_row: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No positive class found": sklearn returns 0 there
        return float(average_precision_score(relevant_row, scores_row))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_map_all_matches_sklearn_without_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    query, gallery = random_unit(rng, 30, 16), random_unit(rng, 80, 16)
    q_labels, g_labels = rng.integers(0, 6, 30), rng.integers(0, 5, 80)  # label 5: no relevant item
    assert (q_labels == 5).any()
    got = per_query_retrieval_metrics(query, q_labels, gallery, g_labels, ("map@all",),
                                      convention="sem-pcyc")["map@all"]
    scores = query.astype(np.float64) @ gallery.astype(np.float64).T
    expected = [sklearn_ap(g_labels == q_labels[i], scores[i]) for i in range(30)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert np.all(got[q_labels == 5] == 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_all_matches_sklearn_when_only_irrelevant_items_tie(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_query, n_gallery = 8, 40
    q_labels, g_labels = rng.integers(0, 3, n_query), rng.integers(0, 3, n_gallery)
    relevant = q_labels[:, None] == g_labels[None, :]  # (Q, G)
    # Relevant items get distinct odd multiples of 1/256; irrelevant ones share a few even multiples.
    scores = 2 * rng.integers(-4, 5, size=(n_query, n_gallery)) / 256
    for i in range(n_query):
        odd = rng.choice(np.arange(-63, 64, 2), size=relevant[i].sum(), replace=False)
        scores[i, relevant[i]] = odd / 256
    query, gallery = embed_scores(scores)
    got = per_query_retrieval_metrics(query, q_labels, gallery, g_labels, ("map@all",),
                                      convention="sem-pcyc")["map@all"]
    expected = [sklearn_ap(relevant[i], scores[i]) for i in range(n_query)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_ranking_handles_signs_tiny_values_and_signed_zeros() -> None:
    # BLAS never seems to return -0.0, but other kernels may; the packed sort keys must tie it with +0.0.
    values = [0.0, -0.5, -0.0, 0.5, -0.0, 1e-30, -1e-30, 0.5, -2.0, 0.0]
    order = _ranked_gallery_indices(torch.tensor([values, values[::-1]]))
    for row, vals in zip(order.tolist(), (values, values[::-1])):
        assert row == sorted(range(len(vals)), key=lambda j: (-vals[j], j))


def test_ties_broken_by_gallery_index_not_grouped_like_sklearn() -> None:
    # Gallery index order: [irrelevant 0.5, relevant 0.25, relevant 0.25].
    query, gallery = embed_scores(np.array([[0.5, 0.25, 0.25]]))
    ap = mean_average_precision(query, ["a"], gallery, ["b", "a", "a"])
    assert ap == pytest.approx((1 / 2 + 2 / 3) / 2)  # ranks 2 and 3, one after the other
    # sklearn groups the tie into one threshold (precision 2/3 for both), a different number.
    assert sklearn_ap(np.array([0, 1, 1]), np.array([0.5, 0.25, 0.25])) == pytest.approx(2 / 3)
    # A relevant/irrelevant tie: the lower gallery index ranks first.
    query, gallery = embed_scores(np.array([[0.25, 0.25]]))
    assert mean_average_precision(query, [1], gallery, [0, 1]) == pytest.approx(1 / 2)
    assert mean_average_precision(query, [1], gallery, [1, 0]) == pytest.approx(1.0)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_metrics_match_brute_force_with_heavy_ties(seed: int, convention: str) -> None:
    rng = np.random.default_rng(seed)
    n_query, n_gallery = 12, 45
    scores = rng.integers(-2, 3, size=(n_query, n_gallery)) / 16  # 5 values (0 included): many ties
    q_labels, g_labels = rng.integers(0, 5, n_query), rng.integers(0, 4, n_gallery)
    q_labels[:2] = [4, 0]  # label 4 has no gallery item (R = 0); label 0 has some
    g_labels[:7] = 0
    relevant = q_labels[:, None] == g_labels[None, :]
    n_relevant = relevant.sum(axis=1)
    # K = 5 < R and K = 20 > R for most queries, K = 45 = G.
    assert (n_relevant == 0).any() and (n_relevant > 5).any() and (n_relevant[n_relevant > 0] < 20).any()
    query, gallery = embed_scores(scores)
    names = ("map@all", "map@1", "map@5", "map@20", "map@45", "p@1", "p@5", "p@20", "p@45")
    got = per_query_retrieval_metrics(query, q_labels, gallery, g_labels, names, convention=convention)
    means = retrieval_metrics(query, q_labels, gallery, g_labels, names, convention=convention)
    for name in names:
        kind, k = name.split("@")
        k = None if k == "all" else int(k)
        expected = [brute_force(scores[i], relevant[i], k, convention)[0 if kind == "map" else 1]
                    for i in range(n_query)]
        np.testing.assert_allclose(got[name], expected, rtol=1e-12, atol=1e-15, err_msg=f"{name} {convention}")
        kept = [v for v in expected if not np.isnan(v)]
        assert means[name] == pytest.approx(sum(kept) / len(kept), rel=1e-12), f"{name} {convention}"


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_conventions_match_brute_force_on_random_galleries(convention: str) -> None:
    rng = np.random.default_rng(11)
    for _ in range(6):
        n_query, n_gallery = int(rng.integers(3, 15)), int(rng.integers(5, 60))
        levels = int(rng.integers(2, 40))  # few levels: ties everywhere; many: hardly any
        scores = rng.integers(-levels, levels + 1, size=(n_query, n_gallery)) / (8 * levels)
        q_labels = rng.integers(0, 4, n_query)
        g_labels = rng.integers(0, int(rng.integers(1, 4)), n_gallery)  # sometimes a single class
        relevant = q_labels[:, None] == g_labels[None, :]
        ks = sorted({1, int(rng.integers(1, n_gallery + 1)), n_gallery})
        names = ("map@all",) + tuple(f"map@{k}" for k in ks) + tuple(f"p@{k}" for k in ks)
        query, gallery = embed_scores(scores)
        got = per_query_retrieval_metrics(query, q_labels, gallery, g_labels, names, convention=convention,
                                          chunk_size=int(rng.integers(1, 6)))
        for name in names:
            kind, k = name.split("@")
            k = None if k == "all" else int(k)
            expected = [brute_force(scores[i], relevant[i], k, convention)[0 if kind == "map" else 1]
                        for i in range(n_query)]
            np.testing.assert_allclose(got[name], expected, rtol=1e-12, atol=1e-15, err_msg=f"{name} {convention}")


def test_brute_force_voc_ap_reference() -> None:
    # The reference itself, against numbers worked out by hand: relevance 0 1 1 0 1, R = 3.
    # P at the hits: 1/2, 2/3, 3/5; envelope from the right: 2/3, 2/3, 3/5.
    scores, relevant = np.array([5, 4, 3, 2, 1.0]), np.array([0, 1, 1, 0, 1])
    assert brute_force(scores, relevant, None, "sake")[0] == pytest.approx((2 / 3 + 2 / 3 + 3 / 5) / 3)
    assert brute_force(scores, relevant, None, "sem-pcyc")[0] == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3)
    # Top 2 only: the later, higher precision 2/3 must not leak in; R = min(2, 3) = 2.
    assert brute_force(scores, relevant, 2, "sake")[0] == pytest.approx((1 / 2) / 2)
    assert brute_force(scores, relevant, 2, "zse")[1] == pytest.approx(1 / 2)


def test_hand_computed_map_at_k_and_precision() -> None:
    # Gallery already in rank order; relevance down the ranking: 1 0 1 0 0 1 1 (4 relevant).
    scores = np.array([[7, 6, 5, 4, 3, 2, 1], [7, 6, 5, 4, 3, 2, 1]]) / 32
    query, gallery = (torch.from_numpy(x) for x in embed_scores(scores))
    q_labels, g_labels = ["cat", "zebra"], ["cat", "dog", "cat", "dog", "dog", "cat", "cat"]
    names = ("map@all", "map@5", "map@2", "p@5", "p@2", "p@7")
    top_k = per_query_retrieval_metrics(query, q_labels, gallery, g_labels, names)
    voc = per_query_retrieval_metrics(query, q_labels, gallery, g_labels, ("map@5", "map@2"), convention="sake")
    expected_top_k = {
        "map@all": (1 + 2 / 3 + 3 / 6 + 4 / 7) / 4,
        "map@5": (1 + 2 / 3) / 2,
        "map@2": 1.0,
        "p@5": 2 / 5,
        "p@2": 1 / 2,
        "p@7": 4 / 7,
    }
    for name, value in expected_top_k.items():
        assert top_k[name] == pytest.approx([value, 0.0]), name  # "zebra" has no relevant item
    # VOC envelope within the top 5 equals P at the hits here (1, 2/3); divided by min(5, 4) and min(2, 4).
    np.testing.assert_allclose(voc["map@5"], [(1 + 2 / 3) / 4, np.nan])
    np.testing.assert_allclose(voc["map@2"], [1 / 2, np.nan])
    means = retrieval_metrics(query, q_labels, gallery, g_labels, ("mAP@5", "P@5"))
    assert means == pytest.approx({"mAP@5": 5 / 12, "P@5": 1 / 5})
    map5 = mean_average_precision(query, q_labels, gallery, g_labels, k=5, convention="sake")
    assert map5 == pytest.approx(5 / 12)  # "zebra" (R = 0) is left out, not counted as 0
    assert precision_at_k(query, q_labels, gallery, g_labels, k=2) == pytest.approx(1 / 4)
    assert precision_at_k(query, q_labels, gallery, g_labels, k=5, convention="zse") == pytest.approx(2 / 4)


# Five photos [a, a, b, b, b]; rows = queries a, b, c. Relevance down each ranking:
#   a: 0 1 1 0 0 (R = 2)    b: 0 1 0 1 1 (R = 3)    c: 0 0 0 0 0 (R = 0)
HAND_SCORES = np.array([[4, 3, 5, 2, 1], [5, 3, 4, 2, 1], [1, 2, 3, 4, 5]]) / 32
HAND_QUERY_LABELS, HAND_GALLERY_LABELS = ["a", "b", "c"], ["a", "a", "b", "b", "b"]
NAN = float("nan")
HAND_EXPECTED = {
    # sem-pcyc: step AP over the top 3 / hits there. a: (1/2 + 2/3) / 2; b: (1/2) / 1.
    "sem-pcyc": {"map@3": [7 / 12, 1 / 2, 0.0], "p@3": [2 / 3, 1 / 3, 0.0],
                 "map@all": [7 / 12, (1 / 2 + 2 / 4 + 3 / 5) / 3, 0.0]},
    # sake: envelope (a: 2/3, 2/3; b within top 3: 1/2) / min(3, R). b over all: 3/5 at every hit.
    "sake": {"map@3": [2 / 3, 1 / 6, NAN], "p@3": [2 / 3, 1 / 3, 0.0], "map@all": [2 / 3, 3 / 5, NAN]},
    # zse: same AP; P@3 over the top min(3, R): a: 1 hit in the top 2.
    "zse": {"map@3": [2 / 3, 1 / 6, NAN], "p@3": [1 / 2, 1 / 3, NAN], "map@all": [2 / 3, 3 / 5, NAN]},
}
HAND_MEANS = {
    "sem-pcyc": {"map@3": 13 / 36, "p@3": 1 / 3, "map@all": (7 / 12 + 8 / 15) / 3},
    "sake": {"map@3": 5 / 12, "p@3": 1 / 3, "map@all": 19 / 30},
    "zse": {"map@3": 5 / 12, "p@3": 5 / 12, "map@all": 19 / 30},
}


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_hand_computed_conventions_differ(convention: str) -> None:
    query, gallery = embed_scores(HAND_SCORES)
    names = ("map@3", "p@3", "map@all")
    got = per_query_retrieval_metrics(query, HAND_QUERY_LABELS, gallery, HAND_GALLERY_LABELS, names,
                                      convention=convention)
    for name in names:
        np.testing.assert_allclose(got[name], HAND_EXPECTED[convention][name], rtol=1e-12, err_msg=name)
    means = retrieval_metrics(query, HAND_QUERY_LABELS, gallery, HAND_GALLERY_LABELS, names, convention=convention)
    assert means == pytest.approx(HAND_MEANS[convention], rel=1e-12)
    assert mean_average_precision(query, HAND_QUERY_LABELS, gallery, HAND_GALLERY_LABELS, k=3,
                                  convention=convention) == pytest.approx(HAND_MEANS[convention]["map@3"])
    assert precision_at_k(query, HAND_QUERY_LABELS, gallery, HAND_GALLERY_LABELS, 3,
                          convention=convention) == pytest.approx(HAND_MEANS[convention]["p@3"])


def test_hand_computed_case_separates_every_convention() -> None:
    # Guards the table above: each pair of conventions disagrees on some mean, so a swap would fail.
    rows = [tuple(np.round(list(HAND_MEANS[c].values()), 12)) for c in CONVENTIONS]
    assert len(set(rows)) == len(CONVENTIONS)
    assert DEFAULT_CONVENTION == "sem-pcyc" and set(METRIC_CONVENTIONS) == set(CONVENTIONS)
    assert all(isinstance(v, str) and v and "\n" not in v for v in METRIC_CONVENTIONS.values())


@pytest.mark.parametrize("seed", [0, 1])
def test_interpolated_ap_is_at_least_step_ap(seed: int) -> None:
    rng = np.random.default_rng(seed)
    query, gallery = random_unit(rng, 20, 8), random_unit(rng, 50, 8)
    q_labels, g_labels = rng.integers(0, 3, 20), rng.integers(0, 3, 50)
    step = per_query_retrieval_metrics(query, q_labels, gallery, g_labels, ("map@all",))["map@all"]
    voc = per_query_retrieval_metrics(query, q_labels, gallery, g_labels, ("map@all",), convention="zse")["map@all"]
    assert np.all(voc >= step - 1e-15) and np.any(voc > step + 1e-3)


def reference_metrics(scores: np.ndarray, relevant: np.ndarray, names: tuple[str, ...],
                      convention: str) -> dict[str, np.ndarray]:
    """Independent full-sort reference: each row ranked by np.lexsort (similarity descending, then
    gallery index), then every definition applied to the whole ranked relevance table."""
    n_gallery = scores.shape[1]
    order = np.lexsort((np.broadcast_to(np.arange(n_gallery), scores.shape), -scores), axis=-1)
    ranked = np.take_along_axis(relevant, order, axis=1)  # (Q, G) relevance in rank order
    hits = np.cumsum(ranked, axis=1)  # (Q, G) relevant items in ranks 1..k
    precision = hits / np.arange(1, n_gallery + 1)  # (Q, G) P(k)
    n_total = hits[:, -1]  # (Q,) R
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name in names:
            kind, k = name.split("@")
            cut = n_gallery if k == "all" else int(k)
            hits_in_top = hits[:, cut - 1]
            if kind == "p" and convention == "zse":
                m = np.minimum(cut, n_total)
                out[name] = np.where(m > 0, hits[np.arange(len(m)), np.maximum(m - 1, 0)] / m, np.nan)
            elif kind == "p":
                out[name] = hits_in_top / cut
            elif convention == "sem-pcyc":
                denominator = n_total if k == "all" else hits_in_top
                ap_sum = (precision[:, :cut] * ranked[:, :cut]).sum(axis=1)
                out[name] = np.where(denominator > 0, ap_sum / denominator, 0.0)
            else:  # VOC: precision envelope from the right over every position of the top `cut`
                envelope = np.maximum.accumulate(precision[:, :cut][:, ::-1], axis=1)[:, ::-1]
                denominator = np.minimum(cut, n_total)
                ap_sum = (envelope * ranked[:, :cut]).sum(axis=1)
                out[name] = np.where(denominator > 0, ap_sum / denominator, np.nan)
    return out


def test_reference_metrics_match_brute_force() -> None:
    # The vectorised reference against the pure-Python one, ties included.
    rng = np.random.default_rng(5)
    scores = rng.integers(-3, 4, size=(9, 40)) / 32
    relevant = rng.integers(0, 4, size=(9, 1)) == rng.integers(0, 3, size=(1, 40))  # some rows R = 0
    names = ("map@all", "map@1", "map@6", "map@40", "p@1", "p@6", "p@40")
    for convention in CONVENTIONS:
        got = reference_metrics(scores, relevant, names, convention)
        for name in names:
            kind, k = name.split("@")
            k = None if k == "all" else int(k)
            expected = [brute_force(scores[i], relevant[i], k, convention)[0 if kind == "map" else 1]
                        for i in range(9)]
            np.testing.assert_allclose(got[name], expected, rtol=1e-12, atol=1e-15,
                                       err_msg=f"{name} {convention}")


LARGE_NAMES = ("map@all", "map@1", "map@7", "map@100", "map@2500", "p@1", "p@7", "p@100", "p@2500")


def large_tie_case(levels: int, seed: int) -> tuple[np.ndarray, ...]:
    """150 queries x 2,500 gallery items whose float32 similarities take 2 * levels + 1 values
    (exact in float32 for levels <= 2**20).

    Labels: 8 frequent classes, one with 3 items (K > R) and one query label absent from the
    gallery (R = 0). Returns query, gallery (embed_scores), the exact float32 similarities and labels.
    """
    rng = np.random.default_rng(seed)
    n_query, n_gallery = 150, 2500
    scores = rng.integers(-levels, levels + 1, size=(n_query, n_gallery)) / (16 * levels)
    query, gallery = embed_scores(scores)
    g_labels = rng.integers(0, 8, n_gallery)
    g_labels[:3] = 8
    q_labels = rng.integers(0, 10, n_query)  # 9: no gallery item
    q_labels[:3] = [8, 9, 0]
    exact = gallery[:, :n_query].T.astype(np.float64)  # (Q, G) what q @ g.T gives in float32
    return query, gallery, exact, q_labels, g_labels


@pytest.mark.parametrize("levels", [2, 40, 2**20])  # ties everywhere, often, a few per row
@pytest.mark.parametrize("tie_groups_per_row", [0, 4, 10**9])  # always int64 keys, default, always repair
def test_cpu_path_matches_full_sort_reference_on_large_tie_cases(
    levels: int, tie_groups_per_row: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    query, gallery, exact, q_labels, g_labels = large_tie_case(levels, seed=levels)
    relevant = q_labels[:, None] == g_labels[None, :]
    n_relevant = relevant.sum(axis=1)
    assert (n_relevant == 0).any() and (n_relevant == 3).any() and (n_relevant > 100).any()
    monkeypatch.setattr(cpu_ranking, "MAX_TIE_GROUPS_PER_ROW", tie_groups_per_row)
    monkeypatch.setattr(metrics_module, "_BLOCK_ELEMENTS", 7 * 2500)  # 7 rows per block
    for convention in CONVENTIONS:
        expected = reference_metrics(exact, relevant, LARGE_NAMES, convention)
        got = per_query_retrieval_metrics(query, q_labels, gallery, g_labels, LARGE_NAMES, convention,
                                          chunk_size=64)
        for name in LARGE_NAMES:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, atol=1e-15,
                                       err_msg=f"{name} {convention} levels={levels}")
        top_only = ("map@7", "p@100")  # no map@all: ranks below 100 are never looked at
        got = per_query_retrieval_metrics(query, q_labels, gallery, g_labels, top_only, convention)
        for name in top_only:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, atol=1e-15,
                                       err_msg=f"{name} {convention} levels={levels}")


@pytest.mark.parametrize("levels", [2, 40, 2**20])
def test_torch_path_matches_full_sort_reference_on_large_tie_cases(levels: int) -> None:
    # The GPU path, run here on CPU tensors.
    query, gallery, exact, q_labels, g_labels = large_tie_case(levels, seed=levels)
    relevant = q_labels[:, None] == g_labels[None, :]
    for depth in (exact.shape[1], 100):
        names = LARGE_NAMES if depth == exact.shape[1] else ("map@7", "p@100")
        hit_row, hit_col = _torch_hits(torch.from_numpy(query), torch.from_numpy(gallery),
                                       torch.from_numpy(q_labels), torch.from_numpy(g_labels), depth)
        parsed = _parse_metrics(names, exact.shape[1])
        for convention in CONVENTIONS:
            got = _metrics_from_hits(hit_row.numpy(), hit_col.numpy(), relevant.sum(axis=1), parsed,
                                     convention)
            expected = reference_metrics(exact, relevant, names, convention)
            for name in names:
                np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, atol=1e-15,
                                           err_msg=f"{name} {convention} levels={levels} depth={depth}")


@pytest.mark.parametrize("tie_groups_per_row", [0, 10**9])
def test_cpu_ranking_handles_signs_tiny_values_and_signed_zeros(
    tie_groups_per_row: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Similarities fed to the CPU ranking directly: -0.0 ties +0.0, tiny values keep their order.
    monkeypatch.setattr(cpu_ranking, "MAX_TIE_GROUPS_PER_ROW", tie_groups_per_row)
    values = [0.0, -0.5, -0.0, 0.5, -0.0, 1e-30, -1e-30, 0.5, -1.0, 0.0, 1e-30, 1.0]
    rows = np.array([values, values[::-1], values[3:] + values[:3]], dtype=np.float32)  # (3, 12)
    g_codes = np.array([0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1])
    q_codes = np.array([0, 1, 1])
    for depth in (12, 5):
        hit_row, hit_col = block_hits(rows, q_codes.astype(np.int32), g_codes.astype(np.int32), depth, BlockWorkspace(3, 12))
        expected_row, expected_col = [], []
        for i, vals in enumerate(rows.tolist()):
            order = sorted(range(12), key=lambda j: (-vals[j], j))
            ranks = [r for r, j in enumerate(order) if g_codes[j] == q_codes[i] and r < depth]
            expected_row += [i] * len(ranks)
            expected_col += ranks
        assert hit_row.tolist() == expected_row and hit_col.tolist() == expected_col, depth


@pytest.mark.parametrize("ties", [False, True])
def test_chunk_size_does_not_change_results(ties: bool) -> None:
    rng = np.random.default_rng(7)
    if ties:
        scores = rng.integers(-2, 3, size=(10, 60)) / 16
        query, gallery = embed_scores(scores)
    else:
        query, gallery = random_unit(rng, 25, 12), random_unit(rng, 60, 12)
    q_labels, g_labels = rng.integers(0, 4, len(query)), rng.integers(0, 4, 60)
    names = ("map@all", "map@10", "p@10")
    sizes = (1, 3, 1000)
    for convention in CONVENTIONS:
        runs = [per_query_retrieval_metrics(query, q_labels, gallery, g_labels, names, convention, chunk_size=c)
                for c in sizes]
        for run in runs[1:]:
            for name in names:
                np.testing.assert_array_equal(run[name], runs[0][name], err_msg=f"{name} {convention}")
    target = rng.integers(0, 60, len(query))
    accs = [fine_grained_accuracy(query, gallery, target, ks=(1, 3, 10), gallery="all", chunk_size=c)
            for c in sizes]
    assert accs[0] == accs[1] == accs[2]


def test_fine_grained_accuracy_hand_computed() -> None:
    scores = np.array([
        [0.125, 0.25, 0.375, 0.125, 0.3125, 0.0625],  # query 0 (x), target 3 ties with item 0
        [0.25, 0.0, 0.0625, 0.25, 0.125, 0.0],  # query 1 (y), target 4
    ])
    query, gallery = embed_scores(scores)
    q_labels, g_labels, target = ["x", "y"], ["x", "x", "y", "x", "y", "x"], [3, 4]
    # Same class: query 0 ranks {1, 0 (tie, lower index), 3, 5} -> 3rd; query 1 ranks {4, 2} -> 1st.
    same = fine_grained_accuracy(query, gallery, target, q_labels, g_labels, ks=(1, 3, 4, 5))
    assert same == pytest.approx({"acc@1": 0.5, "acc@3": 1.0, "acc@4": 1.0, "acc@5": 1.0})
    # All photos: query 0 -> 5th (behind 2, 4, 1 and tied 0); query 1 -> 3rd (behind 0 and 3).
    every = fine_grained_accuracy(query, gallery, target, ks=(1, 3, 4, 5), gallery="all")
    assert every == pytest.approx({"acc@1": 0.0, "acc@3": 0.5, "acc@4": 0.5, "acc@5": 1.0})


def test_fine_grained_accuracy_matches_brute_force_with_ties() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(-2, 3, size=(10, 30)) / 16
    q_labels, g_labels = rng.integers(0, 3, 10), np.arange(30) % 3
    target = np.array([rng.choice(np.flatnonzero(g_labels == c)) for c in q_labels])
    query, gallery = embed_scores(scores)
    ks = (1, 2, 3, 5)
    for option in ("same_class", "all"):
        ranks = []
        for i in range(10):
            candidates = [j for j in range(30) if option == "all" or g_labels[j] == q_labels[i]]
            order = sorted(candidates, key=lambda j: (-scores[i, j], j))
            ranks.append(order.index(target[i]) + 1)
        expected = {f"acc@{k}": float(np.mean(np.array(ranks) <= k)) for k in ks}
        got = fine_grained_accuracy(query, gallery, target, q_labels, g_labels, ks=ks, gallery=option)
        assert got == pytest.approx(expected), option


def test_fine_grained_accuracy_rejects_target_of_another_class() -> None:
    query, gallery = embed_scores(np.array([[0.25, 0.125]]))
    with pytest.raises(ValueError, match="another class"):
        fine_grained_accuracy(query, gallery, [1], ["a"], ["a", "b"])
    with pytest.raises(ValueError, match="needs query_labels"):
        fine_grained_accuracy(query, gallery, [1])


def test_generalized_zero_shot_sets() -> None:
    sketches, photos = generalized_zero_shot_sets(12694, 12553, 5000, 4000, seed=0)
    assert len(sketches) == 2539 and len(photos) == 2511  # round(0.2 * 12694), round(0.2 * 12553)
    assert len(np.unique(sketches)) == 2539 and len(np.unique(photos)) == 2511
    assert sketches.min() >= 0 and sketches.max() < 5000 and photos.max() < 4000
    again = generalized_zero_shot_sets(12694, 12553, 5000, 4000, seed=0)
    np.testing.assert_array_equal(again[0], sketches)
    np.testing.assert_array_equal(again[1], photos)
    other = generalized_zero_shot_sets(12694, 12553, 5000, 4000, seed=1)
    assert not np.array_equal(other[0], sketches) and not np.array_equal(other[1], photos)
    halves = generalized_zero_shot_sets(10, 5, 10, 10, fraction=0.5)
    assert [len(x) for x in halves] == [5, 3]  # 2.5 rounds up
    with pytest.raises(ValueError, match="2511 seen-class photos.*only 2000"):
        generalized_zero_shot_sets(12694, 12553, 5000, 2000)


def test_bad_inputs_raise_clear_errors() -> None:
    rng = np.random.default_rng(0)
    query, gallery = random_unit(rng, 4, 8), random_unit(rng, 10, 8)
    q_labels, g_labels = [0, 1, 0, 1], [0, 1] * 5
    with pytest.raises(ValueError, match="L2-normalised"):
        retrieval_metrics(query * 2, q_labels, gallery, g_labels, ("map@all",))
    with pytest.raises(ValueError, match="dimension"):
        retrieval_metrics(random_unit(rng, 4, 6), q_labels, gallery, g_labels, ("map@all",))
    with pytest.raises(ValueError, match="unknown metric"):
        retrieval_metrics(query, q_labels, gallery, g_labels, ("ndcg@10",))
    with pytest.raises(ValueError, match="at least 200"):
        retrieval_metrics(query, q_labels, gallery, g_labels, ("p@200",))
    with pytest.raises(ValueError, match=r"convention must be one of \('sem-pcyc', 'sake', 'zse'\), got 'voc'"):
        retrieval_metrics(query, q_labels, gallery, g_labels, ("map@5",), convention="voc")
    with pytest.raises(ValueError, match="convention must be one of"):
        precision_at_k(query, q_labels, gallery, g_labels, 5, convention=None)
    with pytest.raises(TypeError):
        retrieval_metrics(query, q_labels, gallery, g_labels, ("map@5",), map_normalizer="min_k_relevant")
    with pytest.raises(ValueError, match="one label per embedding row"):
        retrieval_metrics(query, q_labels[:3], gallery, g_labels, ("map@all",))


def test_one_positive_gallery_draws_one_same_class_item_per_query() -> None:
    q_labels = np.array(["cat", "dog", "cat", "eel", "dog", "cat"] * 50)
    g_labels = np.array(["dog", "cat", "eel", "cat", "dog", "cat", "dog"])
    idx = one_positive_gallery(q_labels, g_labels, seed=0)
    assert idx.shape == (300,) and idx.dtype == np.int64
    np.testing.assert_array_equal(g_labels[idx], q_labels)  # the drawn item is of the query's class
    # Independent uniform draws, with replacement: over 150 "cat" queries every cat photo turns up.
    assert set(idx[q_labels == "cat"].tolist()) == {1, 3, 5}
    assert set(idx[q_labels == "eel"].tolist()) == {2}
    np.testing.assert_array_equal(one_positive_gallery(list(q_labels), list(g_labels), seed=0), idx)
    np.random.seed(123)  # the global numpy state must not matter
    np.testing.assert_array_equal(one_positive_gallery(q_labels, g_labels, seed=0), idx)
    assert not np.array_equal(one_positive_gallery(q_labels, g_labels, seed=1), idx)
    counts = np.bincount(idx[q_labels == "cat"], minlength=7)[[1, 3, 5]]
    assert counts.min() > 25  # ~50 each: uniform within the class


def test_one_positive_gallery_protocol_and_errors() -> None:
    rng = np.random.default_rng(0)
    q_labels, g_labels = torch.tensor([0, 1, 1, 2]), torch.tensor([2, 1, 0, 0, 1, 2, 2])
    query, gallery = random_unit(rng, 4, 8), random_unit(rng, 7, 8)
    idx = one_positive_gallery(q_labels, g_labels, seed=3)
    # The CLIP-AT gallery: one drawn photo per query, so every query has at least one relevant item.
    per_query = per_query_retrieval_metrics(query, q_labels, gallery[idx], g_labels[idx], ("map@all",))
    assert per_query["map@all"].shape == (4,) and np.all(per_query["map@all"] > 0)
    with pytest.raises(ValueError, match="1 queries have a label with no gallery item \\(3\\)"):
        one_positive_gallery([0, 3], [0, 1], seed=0)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        one_positive_gallery([], [0, 1], seed=0)
