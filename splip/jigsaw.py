"""Pixel-space jigsaw puzzles for the conditional cross-modal jigsaw loss (SPLIP_METHOD.md section 4).

Conventions used throughout:

- Tiles of a ``grid x grid`` puzzle are numbered row-major: tile ``i`` sits at row ``i // grid``,
  column ``i % grid``.
- A permutation ``p`` (length ``grid * grid``) is applied as a *gather*: the output tile at grid
  position ``i`` is the input tile ``p[i]``.  ``unshuffle_tiles`` applies the inverse permutation.
- A puzzle *label* ``y`` is an index into the fixed permutation set returned by
  :func:`permutation_set`; the solver :class:`JigsawSolver` predicts ``y``.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "permutation_set",
    "random_permutation_labels",
    "shuffle_tiles",
    "unshuffle_tiles",
    "JigsawSolver",
]

# Candidate pool for the greedy selection: large enough that the maximin distance saturates
# (measured: P=100 on a 3x3 grid reaches a minimum Hamming distance of 6 from 2,000 candidates on),
# small enough to stay well under a second.
_MIN_POOL = 5000
_POOL_PER_PERMUTATION = 10


@functools.lru_cache(maxsize=16)
def _permutation_set_array(num_permutations: int, grid: int, seed: int) -> np.ndarray:
    n = grid * grid
    identity = np.arange(n)
    pool_size = max(_MIN_POOL, _POOL_PER_PERMUTATION * num_permutations)
    if math.factorial(n) <= pool_size:
        # Small puzzles (2x2): every permutation fits, so use them all, shuffled by the seed.
        pool = np.array(list(itertools.permutations(range(n))))
        pool = pool[np.random.default_rng(seed).permutation(len(pool))]
    else:
        pool = np.random.default_rng(seed).random((pool_size, n)).argsort(axis=1)  # (N, n)
    # The identity leaves the sketch intact, so it would be a class with no jigsaw signal.
    pool = pool[(pool != identity).any(axis=1)]
    _, first = np.unique(pool, axis=0, return_index=True)
    pool = pool[np.sort(first)]  # deduplicated, original (seeded) order kept
    if num_permutations > len(pool):
        raise ValueError(
            f"num_permutations={num_permutations} is more than the {len(pool)} distinct non-identity "
            f"permutations available for grid={grid}; ask for fewer permutations or a larger grid."
        )

    # Greedy maximin: repeatedly add the candidate whose minimum Hamming distance to the chosen
    # set is largest; ties go to the larger summed distance, then to the lower pool index.
    chosen = [0]
    min_dist = (pool != pool[0]).sum(axis=1)  # (N,)
    sum_dist = min_dist.copy()
    tie_scale = n * num_permutations + 1  # sum_dist < tie_scale, so min_dist always dominates
    for _ in range(num_permutations - 1):
        score = min_dist * tie_scale + sum_dist
        score[chosen] = -1
        pick = int(score.argmax())
        chosen.append(pick)
        dist = (pool != pool[pick]).sum(axis=1)
        np.minimum(min_dist, dist, out=min_dist)
        sum_dist += dist
    return pool[chosen]


def permutation_set(num_permutations: int = 100, grid: int = 3, seed: int = 0) -> Tensor:
    """Fixed set of jigsaw permutations with large mutual Hamming distance.

    Draws a seeded pool of random permutations of ``grid * grid`` tiles (all of them when there
    are at most a few thousand), drops the identity and duplicates, and picks greedily: start from
    the first pool element, then repeatedly add the candidate maximising its minimum Hamming
    distance to the chosen set (ties: larger summed distance, then pool order). Deterministic for a
    given ``(num_permutations, grid, seed)``; results are cached.

    Returns:
        ``(P, grid * grid)`` long tensor; row ``y`` is the permutation of puzzle label ``y``.
        The identity is never included. For P=100, grid=3, seed=0 the minimum pairwise Hamming
        distance is 6 (mean about 8.1).
    """
    if num_permutations < 1:
        raise ValueError(f"num_permutations must be >= 1, got {num_permutations}.")
    if grid < 2:
        raise ValueError(f"grid must be >= 2 (a 1x1 grid cannot be shuffled), got {grid}.")
    # Clone so callers cannot corrupt the cached array.
    return torch.from_numpy(_permutation_set_array(num_permutations, grid, seed).copy()).long()


def random_permutation_labels(
    batch_size: int, num_permutations: int, generator: torch.Generator | None = None
) -> Tensor:
    """Uniform puzzle labels ``y`` in ``[0, num_permutations)``, shape ``(batch_size,)``, long.

    Use ``permutation_set(...)[labels]`` to get the ``(B, grid * grid)`` permutations to shuffle with.
    """
    if batch_size < 0 or num_permutations < 1:
        raise ValueError(
            f"need batch_size >= 0 and num_permutations >= 1, got {batch_size} and {num_permutations}."
        )
    device = generator.device if generator is not None else None
    return torch.randint(num_permutations, (batch_size,), generator=generator, device=device)


def _check_tiles_input(images: Tensor, perms: Tensor, grid: int) -> None:
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}.")
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}.")
    b, _, h, w = images.shape
    if h < grid or w < grid:
        raise ValueError(f"images of size {h}x{w} are smaller than the {grid}x{grid} grid.")
    n = grid * grid
    if perms.shape != (b, n):
        raise ValueError(
            f"perms must be (B, grid*grid) = ({b}, {n}), got {tuple(perms.shape)}; "
            "for one permutation shared by the batch use perms.expand(B, -1)."
        )
    if perms.dtype != torch.long:
        raise ValueError(f"perms must be a long tensor of tile indices, got dtype {perms.dtype}.")
    identity = torch.arange(n, device=perms.device)
    if not torch.equal(perms.sort(dim=1).values, identity.expand(b, n)):
        raise ValueError(f"every row of perms must be a permutation of 0..{n - 1}.")


def shuffle_tiles(images: Tensor, perms: Tensor, grid: int = 3) -> Tensor:
    """Shuffle the tiles of each image: output tile at position ``i`` is input tile ``perms[b, i]``.

    Tiles are numbered row-major. Tile size is ``(H // grid, W // grid)``; when H or W is not a
    multiple of ``grid`` (224 / 3 -> 74 px tiles) the remainder strip at the bottom and right
    (2 px for 224) is left untouched. Returns a new tensor; ``images`` is not modified.

    Args:
        images: ``(B, C, H, W)`` pixel tensor.
        perms: ``(B, grid * grid)`` long; each row a permutation of ``0 .. grid*grid - 1``.
    """
    _check_tiles_input(images, perms, grid)
    b, c, h, w = images.shape
    th, tw = h // grid, w // grid
    core = images[:, :, : grid * th, : grid * tw]  # (B, C, g*th, g*tw)
    tiles = core.reshape(b, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5)  # (B, g, g, C, th, tw)
    tiles = tiles.reshape(b, grid * grid, c, th, tw)  # (B, n, C, th, tw)
    rows = torch.arange(b, device=images.device).unsqueeze(1)  # (B, 1)
    moved = tiles[rows, perms.to(images.device)]  # (B, n, C, th, tw)
    moved = moved.reshape(b, grid, grid, c, th, tw).permute(0, 3, 1, 4, 2, 5)  # (B, C, g, th, g, tw)
    out = images.clone()
    out[:, :, : grid * th, : grid * tw] = moved.reshape(b, c, grid * th, grid * tw)
    return out


def unshuffle_tiles(images: Tensor, perms: Tensor, grid: int = 3) -> Tensor:
    """Exact inverse of :func:`shuffle_tiles` with the same ``perms`` (shuffles by ``argsort(perms)``)."""
    _check_tiles_input(images, perms, grid)
    return shuffle_tiles(images, perms.argsort(dim=1), grid)


def _default_num_heads(embed_dim: int) -> int:
    return next(h for h in (8, 4, 2, 1) if embed_dim % h == 0)


class JigsawSolver(nn.Module):
    """Jigsaw solver F_js: predicts the puzzle label from ``[condition, shuffled-sketch]`` embeddings.

    The two ``(B, D)`` inputs form a 2-token sequence; a learnable ``(2, D)`` embedding marks which
    token is which. A pre-norm ``nn.TransformerEncoder`` (``num_layers`` layers, feed-forward width
    ``4 * D``, GELU) mixes them, a final LayerNorm follows, and the two output tokens are
    concatenated (keeping their roles apart, unlike mean pooling) and mapped by a Linear ``2D -> P``.

    Args:
        embed_dim: D, the image-embedding width (512 for CLIP ViT-B/32).
        num_permutations: P, the size of the permutation set.
        num_layers: encoder depth (the paper's F_js has 2).
        num_heads: attention heads; must divide ``embed_dim``. ``None`` picks the largest of
            8, 4, 2, 1 that divides it.
        dropout: dropout inside the encoder layers.
    """

    def __init__(
        self,
        embed_dim: int,
        num_permutations: int = 100,
        num_layers: int = 2,
        num_heads: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if embed_dim < 1 or num_permutations < 1 or num_layers < 1:
            raise ValueError(
                "embed_dim, num_permutations and num_layers must all be >= 1, got "
                f"{embed_dim}, {num_permutations}, {num_layers}."
            )
        if num_heads is None:
            num_heads = _default_num_heads(embed_dim)
        if num_heads < 1 or embed_dim % num_heads != 0:
            raise ValueError(
                f"num_heads={num_heads} must divide embed_dim={embed_dim}; pass a divisor or None."
            )
        self.embed_dim = embed_dim
        self.num_permutations = num_permutations
        self.token_embedding = nn.Parameter(torch.randn(2, embed_dim) * 0.02)  # (2, D)
        layer = nn.TransformerEncoderLayer(
            d_model=embed_dim,
            nhead=num_heads,
            dim_feedforward=4 * embed_dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # Pre-norm layers leave the residual stream un-normalised, hence the final norm.
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=num_layers, norm=nn.LayerNorm(embed_dim), enable_nested_tensor=False
        )
        self.head = nn.Linear(2 * embed_dim, num_permutations)

    def forward(self, condition: Tensor, shuffled: Tensor) -> Tensor:
        """``condition`` (B, D), ``shuffled`` (B, D) -> puzzle logits (B, P)."""
        if condition.dim() != 2 or condition.shape != shuffled.shape:
            raise ValueError(
                "condition and shuffled must both be (B, D) with the same shape, got "
                f"{tuple(condition.shape)} and {tuple(shuffled.shape)}."
            )
        if condition.shape[1] != self.embed_dim:
            raise ValueError(
                f"embedding width {condition.shape[1]} does not match the solver's "
                f"embed_dim={self.embed_dim}."
            )
        tokens = torch.stack([condition, shuffled], dim=1) + self.token_embedding  # (B, 2, D)
        encoded = self.encoder(tokens)  # (B, 2, D)
        return self.head(encoded.flatten(1))  # (B, P)
