from __future__ import annotations

import pytest
import torch

from splip.jigsaw import (
    JigsawSolver,
    _permutation_set_array,
    permutation_set,
    random_permutation_labels,
    shuffle_tiles,
    unshuffle_tiles,
)


def reference_shuffle(images: torch.Tensor, perms: torch.Tensor, grid: int) -> torch.Tensor:
    """Independent per-sample, per-tile slicing implementation of the documented convention."""
    out = images.clone()
    th, tw = images.shape[2] // grid, images.shape[3] // grid
    for b in range(images.shape[0]):
        for i in range(grid * grid):
            src = int(perms[b, i])
            r, c = divmod(i, grid)
            sr, sc = divmod(src, grid)
            out[b, :, r * th : (r + 1) * th, c * tw : (c + 1) * tw] = images[
                b, :, sr * th : (sr + 1) * th, sc * tw : (sc + 1) * tw
            ]
    return out


# --- shuffle / unshuffle ---------------------------------------------------------------------------


def test_shuffle_direction_by_hand() -> None:
    # 6x6 image whose 2x2 tiles carry their row-major tile id.
    ids = torch.arange(9).reshape(3, 3).repeat_interleave(2, 0).repeat_interleave(2, 1)
    image = ids[None, None].float()  # (1, 1, 6, 6)
    perm = torch.tensor([[8, 0, 1, 2, 3, 4, 5, 6, 7]])
    expected = torch.tensor(
        [
            [8, 8, 0, 0, 1, 1],
            [8, 8, 0, 0, 1, 1],
            [2, 2, 3, 3, 4, 4],
            [2, 2, 3, 3, 4, 4],
            [5, 5, 6, 6, 7, 7],
            [5, 5, 6, 6, 7, 7],
        ]
    ).float()
    assert torch.equal(shuffle_tiles(image, perm)[0, 0], expected)


def test_shuffle_keeps_tile_content_and_matches_reference() -> None:
    image = torch.arange(2 * 3 * 6 * 6).float().reshape(2, 3, 6, 6)
    perms = torch.tensor([[1, 0, 2, 3, 4, 5, 6, 7, 8], [4, 3, 5, 0, 8, 2, 7, 6, 1]])
    out = shuffle_tiles(image, perms)
    # swap of tiles 0 and 1 in sample 0: top-left 2x2 block now holds the original columns 2-3
    assert torch.equal(out[0, :, 0:2, 0:2], image[0, :, 0:2, 2:4])
    assert torch.equal(out[0, :, 0:2, 2:4], image[0, :, 0:2, 0:2])
    assert torch.equal(out, reference_shuffle(image, perms, 3))


@pytest.mark.parametrize("size", [(224, 224), (48, 48), (50, 70), (7, 8)])
def test_roundtrip_exact(size: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, *size, generator=g)
    perms = torch.stack([torch.randperm(9, generator=g) for _ in range(4)])
    shuffled = shuffle_tiles(images, perms)
    assert torch.equal(shuffled, reference_shuffle(images, perms, 3))
    assert torch.equal(unshuffle_tiles(shuffled, perms), images)
    assert not torch.equal(shuffled, images)


def test_identity_is_noop() -> None:
    images = torch.rand(3, 3, 224, 224)
    perms = torch.arange(9).expand(3, 9)
    assert torch.equal(shuffle_tiles(images, perms), images)


def test_remainder_strip_untouched() -> None:
    images = torch.rand(2, 3, 224, 224)
    perms = torch.tensor([list(range(8, -1, -1))] * 2)
    out = shuffle_tiles(images, perms)
    # 224 // 3 = 74, so rows and columns 222 and 223 stay put.
    assert torch.equal(out[:, :, 222:, :], images[:, :, 222:, :])
    assert torch.equal(out[:, :, :, 222:], images[:, :, :, 222:])
    assert torch.equal(out[:, :, 0:74, 0:74], images[:, :, 148:222, 148:222])


def test_other_grid_sizes() -> None:
    images = torch.rand(2, 1, 9, 10)
    perms = torch.stack([torch.randperm(4), torch.randperm(4)])
    out = shuffle_tiles(images, perms, grid=2)
    assert torch.equal(out, reference_shuffle(images, perms, 2))
    assert torch.equal(unshuffle_tiles(out, perms, grid=2), images)


def test_shuffle_does_not_modify_input() -> None:
    images = torch.rand(1, 3, 12, 12)
    before = images.clone()
    shuffle_tiles(images, torch.tensor([[8, 7, 6, 5, 4, 3, 2, 1, 0]]))
    assert torch.equal(images, before)


def test_shuffle_input_errors() -> None:
    images = torch.rand(2, 3, 12, 12)
    with pytest.raises(ValueError, match="permutation"):
        shuffle_tiles(images, torch.tensor([[0, 0, 2, 3, 4, 5, 6, 7, 8]] * 2))
    with pytest.raises(ValueError, match="expand"):
        shuffle_tiles(images, torch.arange(9))
    with pytest.raises(ValueError, match="long"):
        shuffle_tiles(images, torch.arange(9).expand(2, 9).float())
    with pytest.raises(ValueError, match="smaller"):
        shuffle_tiles(torch.rand(1, 3, 2, 12), torch.arange(9)[None])
    with pytest.raises(ValueError, match="B, C, H, W"):
        shuffle_tiles(torch.rand(3, 12, 12), torch.arange(9)[None])


# --- permutation set -------------------------------------------------------------------------------


def min_hamming(perms: torch.Tensor) -> int:
    rows = perms.tolist()
    pairs = ((rows[i], rows[j]) for i in range(len(rows)) for j in range(i + 1, len(rows)))
    return min(sum(x != y for x, y in zip(a, b)) for a, b in pairs)


def test_permutation_set_properties() -> None:
    perms = permutation_set(100, 3, seed=0)
    assert perms.shape == (100, 9) and perms.dtype == torch.long
    assert all(sorted(row) == list(range(9)) for row in perms.tolist())
    assert len({tuple(row) for row in perms.tolist()}) == 100
    assert list(range(9)) not in perms.tolist()  # identity excluded
    # Measured 6 for seed 0; random sets of 100 permutations of 9 typically reach only 2 or 3.
    assert min_hamming(perms) >= 6


def test_permutation_set_deterministic_and_seeded() -> None:
    first = permutation_set(100, 3, seed=0).clone()
    _permutation_set_array.cache_clear()  # recompute from scratch, not from the cache
    assert torch.equal(permutation_set(100, 3, seed=0), first)
    mutated = permutation_set(100, 3, seed=0)
    mutated[0, 0] = 99  # mutating a returned tensor must not corrupt the cache
    assert torch.equal(permutation_set(100, 3, seed=0), first)
    assert not torch.equal(first, permutation_set(100, 3, seed=1))


def test_permutation_set_prefix_consistency() -> None:
    # Greedy selection: a smaller set is the prefix of a larger one built from the same pool.
    assert torch.equal(permutation_set(30, 3, seed=0), permutation_set(100, 3, seed=0)[:30])


def test_permutation_set_small_grid_and_errors() -> None:
    perms = permutation_set(23, grid=2)
    assert len({tuple(r) for r in perms.tolist()}) == 23 and [0, 1, 2, 3] not in perms.tolist()
    with pytest.raises(ValueError, match="distinct"):
        permutation_set(24, grid=2)
    with pytest.raises(ValueError, match="grid"):
        permutation_set(10, grid=1)


def test_random_permutation_labels() -> None:
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    labels = random_permutation_labels(1000, 100, g1)
    assert labels.shape == (1000,) and labels.dtype == torch.long
    assert labels.min() >= 0 and labels.max() <= 99 and len(labels.unique()) > 90
    assert torch.equal(labels, random_permutation_labels(1000, 100, g2))


# --- solver ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("embed_dim", [64, 512])
def test_solver_shape_and_gradients(embed_dim: int) -> None:
    torch.manual_seed(0)
    solver = JigsawSolver(embed_dim, num_permutations=100)
    cond = torch.nn.functional.normalize(torch.randn(5, embed_dim), dim=-1)
    shuf = torch.nn.functional.normalize(torch.randn(5, embed_dim), dim=-1)
    logits = solver(cond, shuf)
    assert logits.shape == (5, 100)
    torch.nn.functional.cross_entropy(logits, torch.arange(5)).backward()
    for name, p in solver.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert len(solver.encoder.layers) == 2


def test_solver_distinguishes_token_roles() -> None:
    torch.manual_seed(0)
    solver = JigsawSolver(16, num_permutations=7)
    a, b = torch.randn(3, 16), torch.randn(3, 16)
    assert not torch.allclose(solver(a, b), solver(b, a))


def test_solver_heads() -> None:
    assert JigsawSolver(64).encoder.layers[0].self_attn.num_heads == 8
    assert JigsawSolver(6).encoder.layers[0].self_attn.num_heads == 2
    assert JigsawSolver(7).encoder.layers[0].self_attn.num_heads == 1
    with pytest.raises(ValueError, match="divide"):
        JigsawSolver(64, num_heads=3)


def test_solver_input_errors() -> None:
    solver = JigsawSolver(8, num_permutations=4)
    with pytest.raises(ValueError, match="embed_dim"):
        solver(torch.randn(2, 6), torch.randn(2, 6))
    with pytest.raises(ValueError, match="same shape"):
        solver(torch.randn(2, 8), torch.randn(3, 8))


def test_solver_default_matches_expected_size() -> None:
    # 2 pre-norm layers of width D with 4D feed-forward, 2 token embeddings, final norm, 2D -> P head.
    d, p = 64, 100
    layer = 4 * d * d + 4 * d + 2 * (4 * d * d) + 4 * d + d + 2 * 2 * d
    expected = 2 * layer + 2 * d + 2 * d + 2 * d * p + p
    assert sum(x.numel() for x in JigsawSolver(d, p).parameters()) == expected
