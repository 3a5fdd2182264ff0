"""SpLIP training losses (SPLIP_METHOD.md section 4), as pure functions on embeddings.

Notation: f(x) is an image embedding, t_c the text embedding of class c, cos the cosine similarity
and d(a, b) = 1 - cos(a, b). Callers pass L2-normalised embeddings; the functions still compute
true cosines (they normalise inside), so unnormalised inputs give the same result.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FIXED_MARGIN",
    "class_margins",
    "gather_margins",
    "triplet_loss",
    "triplet_hinges",
    "classification_loss",
    "conditional_jigsaw_loss",
]

FIXED_MARGIN = 0.2
"""CLIP-AT's fixed triplet margin, the ablation baseline for the adaptive margin."""


def _check_pair(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must both be (B, D) with the same shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}."
        )


def _check_labels(labels: Tensor, batch: int, num_classes: int, what: str) -> None:
    if labels.shape != (batch,) or labels.dtype != torch.long:
        raise ValueError(
            f"{what} must be a long tensor of shape ({batch},), got {labels.dtype} {tuple(labels.shape)}."
        )
    if batch and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what} must lie in [0, {num_classes}), got values outside that range.")


def class_margins(class_text_emb: Tensor) -> Tensor:
    """Adaptive-margin table ``mu[c+, c-] = cos(t_{c+}, t_{c-})``.

    Args:
        class_text_emb: ``(C, D)`` frozen-CLIP text embeddings of "a photo of a {c}." (normalised
            here, so raw ``encode_text`` outputs are fine).

    Returns:
        ``(C, C)`` symmetric matrix with ones on the diagonal.
    """
    if class_text_emb.dim() != 2:
        raise ValueError(f"class_text_emb must be (C, D), got shape {tuple(class_text_emb.shape)}.")
    t = F.normalize(class_text_emb, dim=-1)  # (C, D)
    return t @ t.T  # (C, C)


def gather_margins(margins: Tensor, pos_labels: Tensor, neg_labels: Tensor) -> Tensor:
    """Per-triplet adaptive margins ``mu[pos_labels[b], neg_labels[b]]``, shape ``(B,)``.

    ``margins`` is the ``(C, C)`` table from :func:`class_margins`; the result is the ``margin``
    argument of :func:`triplet_loss`.
    """
    if margins.dim() != 2 or margins.shape[0] != margins.shape[1]:
        raise ValueError(f"margins must be a square (C, C) table, got shape {tuple(margins.shape)}.")
    if pos_labels.dim() != 1:
        raise ValueError(f"pos_labels must be (B,), got shape {tuple(pos_labels.shape)}.")
    num_classes = margins.shape[0]
    _check_labels(pos_labels, pos_labels.shape[0], num_classes, "pos_labels")
    _check_labels(neg_labels, pos_labels.shape[0], num_classes, "neg_labels")
    return margins[pos_labels, neg_labels]  # (B,)


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: Tensor | float) -> Tensor:
    """Triplet loss ``mean_b max(0, d(a_b, p_b) - d(a_b, n_b) + m_b)`` with ``d = 1 - cos``.

    Args:
        anchor, positive, negative: ``(B, D)`` embeddings (sketch, same-class photo, other-class photo).
        margin: one fixed margin as a float or 0-d tensor (:data:`FIXED_MARGIN` = 0.2 is CLIP-AT's),
            or a ``(B,)`` tensor of per-triplet adaptive margins from :func:`gather_margins`.

    Returns:
        Scalar tensor.
    """
    return triplet_hinges(anchor, positive, negative, margin).mean()


def triplet_hinges(anchor: Tensor, positive: Tensor, negative: Tensor, margin: Tensor | float) -> Tensor:
    """Per-triplet hinges ``max(0, d(a_b, p_b) - d(a_b, n_b) + m_b)``, shape ``(B,)``, in float32.

    Arguments as :func:`triplet_loss` (its mean). A hinge of 0 means the triplet gives no gradient:
    the share of non-zero hinges tells whether a margin still drives training.
    """
    _check_pair("anchor", anchor, "positive", positive)
    _check_pair("anchor", anchor, "negative", negative)
    if isinstance(margin, Tensor) and margin.shape not in ((anchor.shape[0],), ()):
        raise ValueError(
            f"margin tensor must have shape ({anchor.shape[0]},) (one per triplet), got "
            f"{tuple(margin.shape)}; use gather_margins(class_margins(...), pos_labels, neg_labels)."
        )
    with _float32(anchor):
        anchor, positive, negative = anchor.float(), positive.float(), negative.float()
        d_pos = 1 - F.cosine_similarity(anchor, positive, dim=-1)  # (B,)
        d_neg = 1 - F.cosine_similarity(anchor, negative, dim=-1)  # (B,)
        return F.relu(d_pos - d_neg + margin)


def classification_loss(
    image_emb: Tensor, class_text_emb: Tensor, labels: Tensor, logit_scale: float | Tensor = 100.0
) -> Tensor:
    """CLIP-style cross-entropy over classes: ``mean_b CE(logit_scale * cos(f(x_b), t_c), y_b)``.

    Args:
        image_emb: ``(B, D)`` image embeddings.
        class_text_emb: ``(C, D)`` class text embeddings shared by the batch, or ``(B, C, D)`` when
            the text prompts are conditioned on each image (``text_conditioning="per_image"``).
        labels: ``(B,)`` long class indices into the C classes.
        logit_scale: the multiplier itself (CLIP's frozen value is 100 = ``model.logit_scale.exp()``),
            not its logarithm.

    Returns:
        Scalar tensor.
    """
    if image_emb.dim() != 2:
        raise ValueError(f"image_emb must be (B, D), got shape {tuple(image_emb.shape)}.")
    b, d = image_emb.shape
    if class_text_emb.dim() not in (2, 3) or class_text_emb.shape[-1] != d or (
        class_text_emb.dim() == 3 and class_text_emb.shape[0] != b
    ):
        raise ValueError(
            f"class_text_emb must be (C, {d}) or ({b}, C, {d}) to match image_emb {tuple(image_emb.shape)}, "
            f"got {tuple(class_text_emb.shape)}."
        )
    _check_labels(labels, b, class_text_emb.shape[-2], "labels")
    with _float32(image_emb):
        f = F.normalize(image_emb.float(), dim=-1)  # (B, D)
        t = F.normalize(class_text_emb.float(), dim=-1)  # (C, D) or (B, C, D)
        if t.dim() == 2:
            cos = f @ t.T  # (B, C)
        else:
            cos = torch.einsum("bd,bcd->bc", f, t)  # (B, C)
        return F.cross_entropy(logit_scale * cos, labels)


def _float32(like: Tensor):
    """Autocast off on ``like``'s device: with a logit scale of 100, bf16 cosines (8 bits of mantissa,
    steps of ~0.004 near 1) would move the logits by ~0.4, so the losses compute in float32."""
    return torch.autocast(device_type=like.device.type, enabled=False)


def conditional_jigsaw_loss(
    solver: Callable[[Tensor, Tensor], Tensor],
    f_s: Tensor,
    f_shuffled: Tensor,
    f_pos: Tensor,
    f_neg: Tensor,
    perm_labels: Tensor,
) -> Tensor:
    """Conditional cross-modal jigsaw loss.

    With ``r = [f(s), f(s')]``, ``r+ = [f(p+), f(s')]``, ``r- = [f(p-), f(s')]`` and per-sample
    cross-entropies ``CE_b(r) = CE(F_js(r)_b, y_b)``:

        ``L_cjs = mean_b CE_b(r) + mean_b max(0, CE_b(r+) - CE_b(r-))``

    i.e. the hinge is applied per sample and then averaged over the batch.

    Args:
        solver: F_js, called as ``solver(condition (B, D), shuffled (B, D)) -> logits (B, P)``
            (e.g. :class:`splip.jigsaw.JigsawSolver`). It is called once on the three conditions
            stacked into a ``3B`` batch; the result equals three separate calls for any solver without
            cross-sample interaction (no batch norm).
        f_s: ``(B, D)`` embeddings of the intact anchor sketches.
        f_shuffled: ``(B, D)`` embeddings of the tile-shuffled anchor sketches.
        f_pos, f_neg: ``(B, D)`` embeddings of the positive and negative photos.
        perm_labels: ``(B,)`` long puzzle labels y (indices into the permutation set).

    Returns:
        Scalar tensor.
    """
    for name, emb in (("f_shuffled", f_shuffled), ("f_pos", f_pos), ("f_neg", f_neg)):
        _check_pair("f_s", f_s, name, emb)
    b = f_s.shape[0]
    conditions = torch.cat([f_s, f_pos, f_neg])  # (3B, D)
    logits = solver(conditions, f_shuffled.repeat(3, 1))  # (3B, P)
    if logits.dim() != 2 or logits.shape[0] != 3 * b:
        raise ValueError(f"solver must return (batch, P) logits, got shape {tuple(logits.shape)}.")
    _check_labels(perm_labels, b, logits.shape[1], "perm_labels")
    ce = F.cross_entropy(logits, perm_labels.repeat(3), reduction="none").view(3, b)  # (3, B)
    ce_anchor, ce_pos, ce_neg = ce
    return ce_anchor.mean() + F.relu(ce_pos - ce_neg).mean()
