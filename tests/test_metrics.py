"""Tests for splip.metrics against sklearn, a pure-Python brute force and hand-computed values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from splip.metrics import (
    _ranked_gallery_indices,
    fine_grained_accuracy,
    generalized_zero_shot_sets,
    mean_average_precision,
    per_query_retrieval_metrics,
    precision_at_k,
    retrieval_metrics,
)


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


def brute_force(
    scores_row: np.ndarray, relevant_row: np.ndarray, k: int | None, normalizer: str
) -> tuple[float, float]:
    """Pure-Python (AP, P@K) for one query with the documented ranking and definitions."""
    order = sorted(range(len(scores_row)), key=lambda j: (-float(scores_row[j]), j))
    ranked = [bool(relevant_row[j]) for j in order]
    n_total = sum(ranked)
    top = ranked if k is None else ranked[:k]
    hits, ap_sum = 0, 0.0
    for position, is_relevant in enumerate(top, start=1):
        if is_relevant:
            hits += 1
            ap_sum += hits / position
    if k is None:
        denominator = n_total
    elif normalizer == "relevant_in_top_k":
        denominator = hits
    else:
        denominator = min(k, n_total)
    ap = ap_sum / denominator if denominator else 0.0
    precision = sum(top) / k if k is not None else float("nan")
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
    got = per_query_retrieval_metrics(query, q_labels, gallery, g_labels, ("map@all",))["map@all"]
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
    got = per_query_retrieval_metrics(query, q_labels, gallery, g_labels, ("map@all",))["map@all"]
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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_metrics_match_brute_force_with_heavy_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_query, n_gallery = 10, 45
    scores = rng.integers(-2, 3, size=(n_query, n_gallery)) / 16  # 5 values (0 included): many ties
    q_labels, g_labels = rng.integers(0, 5, n_query), rng.integers(0, 4, n_gallery)
    relevant = q_labels[:, None] == g_labels[None, :]
    query, gallery = embed_scores(scores)
    names = ("map@all", "map@5", "map@20", "p@5", "p@20", "p@45")
    for normalizer in ("relevant_in_top_k", "min_k_relevant"):
        got = per_query_retrieval_metrics(
            query, q_labels, gallery, g_labels, names, map_normalizer=normalizer
        )
        for name in names:
            kind, k = name.split("@")
            k = None if k == "all" else int(k)
            expected = [brute_force(scores[i], relevant[i], k, normalizer)[0 if kind == "map" else 1]
                        for i in range(n_query)]
            np.testing.assert_allclose(got[name], expected, rtol=1e-12, err_msg=f"{name} {normalizer}")


def test_hand_computed_map_at_k_and_precision() -> None:
    # Gallery already in rank order; relevance down the ranking: 1 0 1 0 0 1 1 (4 relevant).
    scores = np.array([[7, 6, 5, 4, 3, 2, 1], [7, 6, 5, 4, 3, 2, 1]]) / 32
    query, gallery = (torch.from_numpy(x) for x in embed_scores(scores))
    q_labels, g_labels = ["cat", "zebra"], ["cat", "dog", "cat", "dog", "dog", "cat", "cat"]
    names = ("map@all", "map@5", "map@2", "p@5", "p@2", "p@7")
    top_k = per_query_retrieval_metrics(query, q_labels, gallery, g_labels, names)
    min_k = per_query_retrieval_metrics(query, q_labels, gallery, g_labels, ("map@5", "map@2"),
                                        map_normalizer="min_k_relevant")
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
    assert min_k["map@5"] == pytest.approx([(1 + 2 / 3) / 4, 0.0])
    assert min_k["map@2"] == pytest.approx([1 / 2, 0.0])
    means = retrieval_metrics(query, q_labels, gallery, g_labels, ("mAP@5", "P@5"))
    assert means == pytest.approx({"mAP@5": 5 / 12, "P@5": 1 / 5})
    map5 = mean_average_precision(query, q_labels, gallery, g_labels, k=5, normalizer="min_k_relevant")
    assert map5 == pytest.approx(5 / 24)
    assert precision_at_k(query, q_labels, gallery, g_labels, k=2) == pytest.approx(1 / 4)


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
    runs = [per_query_retrieval_metrics(query, q_labels, gallery, g_labels, names, chunk_size=c)
            for c in sizes]
    for run in runs[1:]:
        for name in names:
            np.testing.assert_array_equal(run[name], runs[0][name])
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
    with pytest.raises(ValueError, match="map_normalizer"):
        retrieval_metrics(query, q_labels, gallery, g_labels, ("map@5",), map_normalizer="min")
    with pytest.raises(ValueError, match="one label per embedding row"):
        retrieval_metrics(query, q_labels[:3], gallery, g_labels, ("map@all",))
