"""Exactness of the memory savers: gradient checkpointing and micro-batches give the plain
full-batch step's loss and gradients (float64, CPU), with the same random draws."""
from __future__ import annotations

import pytest
import torch

from splip.backbone import load_backbone
from splip.model import SpLIP, SpLIPConfig
from splip.objective import SpLIPObjective
from splip.step import forward_backward, micro_batches

CLASSES = ["cat", "alarm clock", "hot air balloon", "wrist watch"]
BATCH = 6


def _step(checkpointing: bool, micro_batch_size: int | None, conditioning: str = "per_image"):
    backbone = load_backbone("splip-tiny", None, seed=0)
    torch.manual_seed(0)
    config = SpLIPConfig(gradient_checkpointing=checkpointing, text_conditioning=conditioning)
    model = SpLIP(backbone.model, backbone.tokenizer, CLASSES, config)
    model.freeze()
    objective = SpLIPObjective(model, 64)
    model.double().train()
    objective.double().train()
    g = torch.Generator().manual_seed(5)
    batch = {k: torch.randn(BATCH, 3, 48, 48, generator=g, dtype=torch.float64) for k in ("sketch", "positive", "negative")}
    batch["label"] = torch.tensor([0, 1, 2, 3, 0, 1])
    batch["negative_label"] = torch.tensor([1, 2, 3, 0, 3, 2])
    batch["puzzle"] = objective.draw_puzzles(BATCH, torch.Generator().manual_seed(9))
    terms = forward_backward(model, objective, batch, micro_batch_size, torch.amp.GradScaler("cpu", enabled=False))
    params = [(n, p) for n, p in [*model.named_parameters(), *objective.named_parameters()] if p.requires_grad]
    return terms, {n: p.grad.clone() for n, p in params}


@pytest.fixture(scope="module")
def plain():
    return _step(checkpointing=False, micro_batch_size=None)


@pytest.mark.parametrize("checkpointing,micro", [(True, None), (False, 1), (False, 4), (True, 4)])
def test_step_equals_the_plain_full_batch_step(plain, checkpointing, micro, monkeypatch):
    import splip.model
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return torch.utils.checkpoint.checkpoint(*args, **kwargs)

    monkeypatch.setattr(splip.model, "checkpoint", counting)
    terms, grads = _step(checkpointing, micro)
    # Every block of both towers, for each of the four passes of every micro-batch, or none at all.
    assert (len(calls) > 0) == checkpointing
    ref_terms, ref_grads = plain
    assert terms.keys() == ref_terms.keys()
    for name in ref_terms:
        assert terms[name] == pytest.approx(ref_terms[name], rel=1e-6, abs=1e-12), name
    assert grads.keys() == ref_grads.keys() and len(grads) > 10
    for name, ref in ref_grads.items():
        scale = ref.abs().max().clamp_min(1e-12)
        assert ((grads[name] - ref).abs().max() / scale) < 1e-6, name
    assert any(g.abs().max() > 0 for g in grads.values())


def test_micro_batches_cut_consecutive_pieces():
    batch = {"label": torch.arange(7), "sketch": torch.arange(7) * 10}
    pieces = micro_batches(batch, 3)
    assert [p["label"].tolist() for p in pieces] == [[0, 1, 2], [3, 4, 5], [6]]
    assert torch.equal(torch.cat([p["sketch"] for p in pieces]), batch["sketch"])
    assert micro_batches(batch, None) == [batch] and micro_batches(batch, 7) == [batch]


def test_batch_mean_micro_batches_differ_as_documented(plain):
    """batch_mean conditions T on each pass's mean E_0: micro-batches change it (splip.step says so)."""
    whole, _ = _step(False, None, "batch_mean")
    split, _ = _step(False, 2, "batch_mean")
    assert whole["loss"] != pytest.approx(split["loss"], rel=1e-9)
