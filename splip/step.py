"""One training step's forward and backward passes, optionally split into micro-batches.

Every loss term of SpLIPObjective is a mean over the batch's triplets, so a batch of B split into
micro-batches of b_i triplets gives exactly the full-batch loss and gradients when each micro-batch
loss is weighted by b_i / B before its backward pass: gradients accumulate in `.grad` and the
optimizer steps once per batch. Every random draw of a step is made for the whole batch before the
split (the jigsaw puzzles; the triplets come from the loader), so the step is the same whatever the
micro-batch size.

One exception: with `text_conditioning="batch_mean"` the text prompts T come from the mean E_0 of
the images in one forward pass, i.e. of the micro-batch, not of the whole batch; such a step is not
the full-batch step (per_image, the faithful mode the presets use, is exact).
"""
from __future__ import annotations

import torch

from splip.evaluate import autocast_for
from splip.model import SpLIP
from splip.objective import DIAGNOSTICS, TERMS, SpLIPObjective


def micro_batches(batch: dict[str, torch.Tensor], size: int | None) -> list[dict[str, torch.Tensor]]:
    """`batch` (every value (B, ...)) cut into consecutive pieces of at most `size` items (None: whole)."""
    total = len(batch["label"])
    if size is None or size >= total:
        return [batch]
    return [{k: v[start:start + size] for k, v in batch.items()} for start in range(0, total, size)]


def forward_backward(model: SpLIP, objective: SpLIPObjective, batch: dict[str, torch.Tensor] | None,
                     micro_batch_size: int | None, scaler: torch.amp.GradScaler,
                     total: int | None = None) -> dict[str, float]:
    """Accumulate the gradients of one batch's loss (the caller zeroes them before and steps after).

    `batch` may be this process's share of a global batch of `total` triplets (default: the batch
    itself is the whole; None: an empty share). Returns the loss terms and diagnostics
    (objective.TERMS + DIAGNOSTICS) as floats, each weighted by the share's size over `total`, so
    that they sum to the global batch's values over micro-batches and processes.
    """
    terms = dict.fromkeys((*TERMS, *DIAGNOSTICS), 0.0)
    if batch is None:
        return terms
    total = total or len(batch["label"])
    for piece in micro_batches(batch, micro_batch_size):
        weight = len(piece["label"]) / total
        with autocast_for(piece["label"].device):
            out = objective(model, piece)
        scaler.scale(out["loss"] * weight).backward()
        for name, value in out.items():
            terms[name] += weight * float(value.detach())
    return terms
