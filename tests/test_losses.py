from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from splip.losses import (
    FIXED_MARGIN,
    class_margins,
    classification_loss,
    conditional_jigsaw_loss,
    gather_margins,
    triplet_loss,
)


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def ce(logits: list[float], y: int) -> float:
    """Cross-entropy by hand: log(sum exp) - logit_y."""
    return math.log(sum(math.exp(v) for v in logits)) - logits[y]


# --- triplet ---------------------------------------------------------------------------------------

# Sample 0: positive at 60 deg (d = 0.5), negative at 90 deg (d = 1.0): satisfied by 0.5 for m < 0.5.
# Sample 1: positive at 90 deg (d = 1.0), negative at 60 deg (d = 0.5): violated by 0.5 + m.
ANCHOR = torch.tensor([unit(0), unit(0)])
POSITIVE = torch.tensor([unit(60), unit(90)])
NEGATIVE = torch.tensor([unit(90), unit(60)])


def test_fixed_margin_constant() -> None:
    assert FIXED_MARGIN == 0.2


def test_triplet_fixed_margin_by_hand() -> None:
    # (max(0, 0.5 - 1 + 0.2) + max(0, 1 - 0.5 + 0.2)) / 2 = (0 + 0.7) / 2
    loss = triplet_loss(ANCHOR, POSITIVE, NEGATIVE, FIXED_MARGIN)
    assert loss.item() == pytest.approx(0.35, abs=1e-6)


def test_triplet_adaptive_margin_by_hand() -> None:
    # (max(0, -0.5 + 0.8) + max(0, 0.5 + 0.1)) / 2 = (0.3 + 0.6) / 2
    loss = triplet_loss(ANCHOR, POSITIVE, NEGATIVE, torch.tensor([0.8, 0.1]))
    assert loss.item() == pytest.approx(0.45, abs=1e-6)


def test_triplet_zero_when_satisfied() -> None:
    loss = triplet_loss(ANCHOR[:1], POSITIVE[:1], NEGATIVE[:1], 0.4)
    assert loss.item() == 0.0


def test_triplet_uses_cosine_distance_on_unnormalised_input() -> None:
    loss = triplet_loss(3 * ANCHOR, 2 * POSITIVE, 5 * NEGATIVE, FIXED_MARGIN)
    assert loss.item() == pytest.approx(0.35, abs=1e-6)


def test_triplet_gradient_flows() -> None:
    anchor = ANCHOR.clone().requires_grad_()
    triplet_loss(anchor, POSITIVE, NEGATIVE, FIXED_MARGIN).backward()
    assert anchor.grad is not None and anchor.grad[1].abs().sum() > 0
    assert anchor.grad[0].abs().sum() == 0  # the satisfied triplet contributes nothing


def test_triplet_bad_margin_shape() -> None:
    with pytest.raises(ValueError, match="margin"):
        triplet_loss(ANCHOR, POSITIVE, NEGATIVE, torch.tensor([0.1, 0.2, 0.3]))


# --- margins ---------------------------------------------------------------------------------------


def test_class_margins_by_hand() -> None:
    text = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 0.0]])
    r = 1 / math.sqrt(2)
    expected = torch.tensor([[1.0, 0.0, r], [0.0, 1.0, r], [r, r, 1.0]])
    assert torch.allclose(class_margins(text), expected, atol=1e-6)


def test_gather_margins_indexes_pos_then_neg() -> None:
    table = torch.tensor([[1.0, 0.1, 0.2], [0.3, 1.0, 0.4], [0.5, 0.6, 1.0]])
    got = gather_margins(table, torch.tensor([0, 2, 1]), torch.tensor([2, 1, 0]))
    assert torch.equal(got, torch.tensor([0.2, 0.6, 0.3]))


def test_gather_margins_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="neg_labels"):
        gather_margins(torch.eye(3), torch.tensor([0]), torch.tensor([3]))


# --- classification --------------------------------------------------------------------------------


def test_classification_shared_text_by_hand() -> None:
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    image = torch.tensor([unit(60), unit(0)])
    labels = torch.tensor([0, 1])
    # cosines: image 0 -> (0.5, sqrt(3)/2), image 1 -> (1, 0); logits = 10 * cos
    expected = (ce([5.0, 10 * math.sqrt(3) / 2], 0) + ce([10.0, 0.0], 1)) / 2
    loss = classification_loss(image, text, labels, logit_scale=10.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_classification_default_scale_is_100() -> None:
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    image = torch.tensor([unit(45 + 0.5)])
    c0, c1 = math.cos(math.radians(45.5)), math.sin(math.radians(45.5))
    expected = ce([100 * c0, 100 * c1], 1)
    assert classification_loss(image, text, torch.tensor([1])).item() == pytest.approx(expected, rel=1e-4)


def test_classification_per_image_text_by_hand() -> None:
    # Image 0 sees classes at 0, 90, 180 deg; image 1 sees them at 90, 30 (unnormalised), 0 deg.
    text = torch.tensor(
        [[unit(0), unit(90), unit(180)], [unit(90), [2 * v for v in unit(30)], unit(0)]]
    )  # (B=2, C=3, D=2)
    image = torch.tensor([unit(60), [3.0, 0.0]])
    labels = torch.tensor([1, 1])
    s3 = math.sqrt(3) / 2
    expected = (ce([0.5 * 4, s3 * 4, -0.5 * 4], 1) + ce([0.0, s3 * 4, 4.0], 1)) / 2
    loss = classification_loss(image, text, labels, logit_scale=torch.tensor(4.0))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_classification_shape_errors() -> None:
    image = torch.randn(2, 4)
    with pytest.raises(ValueError, match="class_text_emb"):
        classification_loss(image, torch.randn(3, 2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        classification_loss(image, torch.randn(3, 4), torch.tensor([0, 3]))


# --- conditional jigsaw ----------------------------------------------------------------------------


class StubSolver(nn.Module):
    """Logits = condition + shuffled (D = P = 2), so every CE is computable by hand."""

    def forward(self, condition: Tensor, shuffled: Tensor) -> Tensor:
        return condition + shuffled


def test_conditional_jigsaw_hinge_inactive() -> None:
    f_s, f_shuf = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.5]])
    f_pos, f_neg = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    # CE(r+) = ce([1, .5], 0) < CE(r-) = ce([0, .5], 0): hinge is 0.
    expected = ce([2.0, 0.5], 0)
    loss = conditional_jigsaw_loss(StubSolver(), f_s, f_shuf, f_pos, f_neg, torch.tensor([0]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_conditional_jigsaw_hinge_active() -> None:
    f_s, f_shuf = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.5]])
    f_pos, f_neg = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    expected = ce([2.0, 0.5], 0) + ce([0.0, 0.5], 0) - ce([1.0, 0.5], 0)
    loss = conditional_jigsaw_loss(StubSolver(), f_s, f_shuf, f_pos, f_neg, torch.tensor([0]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_conditional_jigsaw_hinge_per_sample_then_mean() -> None:
    # Sample 0 has an active hinge, sample 1 an inactive one with a larger gap; a batch-level hinge
    # max(0, mean CE+ - mean CE-) would be 0 here, the per-sample one is not.
    f_s = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    f_shuf = torch.zeros(2, 2)
    f_pos = torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    f_neg = torch.tensor([[0.5, 0.0], [0.0, -3.0]])
    labels = torch.tensor([0, 1])
    anchor = (ce([2.0, 0.0], 0) + ce([0.0, 1.0], 1)) / 2
    hinge0 = max(0.0, ce([0.0, 0.0], 0) - ce([0.5, 0.0], 0))
    hinge1 = max(0.0, ce([0.0, 3.0], 1) - ce([0.0, -3.0], 1))
    assert hinge0 > 0 and hinge1 == 0
    loss = conditional_jigsaw_loss(StubSolver(), f_s, f_shuf, f_pos, f_neg, labels)
    assert loss.item() == pytest.approx(anchor + (hinge0 + hinge1) / 2, rel=1e-6)


def test_conditional_jigsaw_gradients_reach_solver() -> None:
    from splip.jigsaw import JigsawSolver

    torch.manual_seed(0)
    solver = JigsawSolver(embed_dim=8, num_permutations=5)
    emb = [torch.nn.functional.normalize(torch.randn(4, 8), dim=-1) for _ in range(4)]
    loss = conditional_jigsaw_loss(solver, *emb, torch.tensor([0, 1, 2, 4]))
    loss.backward()
    assert solver.head.weight.grad is not None and solver.head.weight.grad.abs().sum() > 0


def test_conditional_jigsaw_label_errors() -> None:
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="perm_labels"):
        conditional_jigsaw_loss(StubSolver(), x, x, x, x, torch.tensor([2]))
