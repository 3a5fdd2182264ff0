"""SpLIP's training objective L = L_tri + alpha * L_cls + beta * L_cjs (SPLIP_METHOD.md §4).

It owns the trainable jigsaw solver F_js and the fixed class-margin table, and turns one triplet
batch into the loss terms. It always returns the loss terms, in train and eval mode alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from splip import validation
from splip.jigsaw import JigsawSolver, permutation_set, random_permutation_labels, shuffle_tiles
from splip.losses import (
    FIXED_MARGIN, class_margins, classification_loss, conditional_jigsaw_loss, gather_margins,
    triplet_hinges,
)
from splip.model import SpLIP

MARGIN_MODES = ("adaptive", "fixed")
TERMS = ("loss", "triplet", "classification", "jigsaw")
"""Loss terms of SpLIPObjective's output ("loss" is the weighted total)."""
DIAGNOSTICS = ("margin_mean", "active_triplets")
"""Keys of SpLIPObjective's output that are statistics of the batch, not loss terms."""


@dataclass
class LossConfig:
    """Loss weights and options. alpha and beta are not given in the paper (our defaults: 0.5)."""

    alpha: float = 0.5  # weight of L_cls
    beta: float = 0.5  # weight of L_cjs; 0 switches the jigsaw off (and skips its forward passes)
    margin: str = "adaptive"  # "adaptive": mu = cos(t_c+, t_c-); "fixed": mu = fixed_margin
    fixed_margin: float = FIXED_MARGIN
    num_permutations: int = 100
    jigsaw_grid: int = 3

    def __post_init__(self) -> None:
        self.alpha = validation.nonnegative_float("alpha", self.alpha)
        self.beta = validation.nonnegative_float("beta", self.beta)
        self.margin = validation.choice("margin", self.margin, MARGIN_MODES)
        self.fixed_margin = validation.nonnegative_float("fixed_margin", self.fixed_margin)
        self.jigsaw_grid = validation.integer("jigsaw_grid", self.jigsaw_grid, 2,
                                              allowed="an integer >= 2 (tiles per side of the jigsaw)")
        # The identity is never a puzzle: (grid^2)! - 1 permutations exist.
        most = math.factorial(self.jigsaw_grid ** 2) - 1
        self.num_permutations = validation.integer(
            "num_permutations", self.num_permutations, 1, most,
            allowed=f"an integer from 1 to {most} (the non-identity permutations of a {self.jigsaw_grid}x"
                    f"{self.jigsaw_grid} grid)")


class SpLIPObjective(nn.Module):
    """Loss terms of SpLIP for a batch of (anchor sketch, positive photo, negative photo).

    Labels in the batch index the model's seen classes. The adaptive margins use the frozen CLIP's
    text embeddings of "a photo of a {c}.", computed once here, before any LayerNorm is tuned.
    L_cls is applied to the sketch and to the positive photo and the two are averaged.
    """

    def __init__(self, model: SpLIP, embed_dim: int, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()
        cfg = self.config
        names = [f"a photo of a {name}." for name in model.class_names]
        self.register_buffer("margins", class_margins(model.encode_plain_text(names)))  # (C, C)
        self.register_buffer(
            "permutations", permutation_set(cfg.num_permutations, cfg.jigsaw_grid)
        )  # (P, grid*grid)
        self.solver = JigsawSolver(embed_dim, cfg.num_permutations) if cfg.beta > 0 else None

    def draw_puzzles(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """The jigsaw puzzle labels y of one batch, (B,) long (CPU generator; seeded per epoch by the
        trainer), or None without the jigsaw. Drawn per whole batch, so micro-batches share them."""
        if self.solver is None:
            return None
        return random_permutation_labels(batch_size, self.config.num_permutations, generator)

    def forward(self, model: SpLIP, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Returns {"loss", "triplet", "classification", "jigsaw"} (scalars; "loss" is the total) and
        the diagnostics {"margin_mean", "active_triplets"}: the batch's mean triplet margin and the
        share of triplets whose hinge is non-zero (detached).

        `batch` holds "sketch", "positive", "negative" (B, 3, S, S), "label", "negative_label" (B,) and,
        with the jigsaw, "puzzle" (B,) from :meth:`draw_puzzles`.
        """
        cfg = self.config
        labels, negative_labels = batch["label"], batch["negative_label"]  # (B,), (B,)
        sketch = model(batch["sketch"], "sketch")
        positive = model(batch["positive"], "photo")
        negative = model(batch["negative"], "photo", class_embeddings=False)

        if cfg.margin == "adaptive":
            margin = gather_margins(self.margins, labels, negative_labels)  # (B,)
        else:
            margin = torch.full_like(labels, cfg.fixed_margin, dtype=torch.float32)  # (B,)
        hinges = triplet_hinges(
            sketch.image_embeddings, positive.image_embeddings, negative.image_embeddings, margin)  # (B,)
        terms = {"triplet": hinges.mean()}

        logit_scale = model.clip.logit_scale.exp().detach()
        terms["classification"] = 0.5 * (
            classification_loss(sketch.image_embeddings, sketch.class_embeddings, labels, logit_scale)
            + classification_loss(positive.image_embeddings, positive.class_embeddings, labels, logit_scale)
        )

        if self.solver is not None:
            puzzles = batch["puzzle"]  # (B,)
            shuffled_images = shuffle_tiles(batch["sketch"], self.permutations[puzzles], cfg.jigsaw_grid)
            shuffled = model(shuffled_images, "sketch", class_embeddings=False)
            terms["jigsaw"] = conditional_jigsaw_loss(
                self.solver, sketch.image_embeddings, shuffled.image_embeddings,
                positive.image_embeddings, negative.image_embeddings, puzzles,
            )
        else:
            terms["jigsaw"] = torch.zeros((), device=labels.device)

        terms["loss"] = terms["triplet"] + cfg.alpha * terms["classification"] + cfg.beta * terms["jigsaw"]
        # Diagnostics, not losses: does the (adaptive) margin still leave triplets with a gradient?
        terms[DIAGNOSTICS[0]] = margin.detach().float().mean()
        terms[DIAGNOSTICS[1]] = (hinges.detach() > 0).float().mean()
        return terms
