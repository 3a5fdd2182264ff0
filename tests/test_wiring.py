"""Wiring against independent references: the full SpLIP forward computed by hand from open_clip's
modules (none of the model's own helpers), and what SpLIPObjective feeds to each loss term."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from splip.backbone import load_backbone
from splip.jigsaw import random_permutation_labels, shuffle_tiles
from splip.losses import classification_loss, conditional_jigsaw_loss, gather_margins, triplet_loss
from splip.model import SpLIP, SpLIPConfig
from splip.objective import LossConfig, SpLIPObjective

CLASSES = ["cat", "alarm clock", "hot air balloon"]


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("splip-tiny", None, seed=0)


def _mlp(seq: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Linear -> GELU -> Linear from the raw weights (not the module's forward)."""
    hidden = F.gelu(F.linear(x, seq[0].weight, seq[0].bias))
    return F.linear(hidden, seq[2].weight, seq[2].bias)


def _by_hand(model: SpLIP, images: torch.Tensor, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
    """SpLIP's per_image forward, written out from SPLIP_METHOD.md §3 over the full 77-token context."""
    clip, visual, tok = model.clip, model.clip.visual, model.tokenizer
    m, n = model.config.num_text_prompts, model.config.num_multilayer_prompts
    batch = images.shape[0]
    e0 = visual.conv1(images).flatten(2).transpose(1, 2)  # (B, N, d_v)
    d_t = clip.token_embedding.embedding_dim
    prompts = _mlp(model.text_prompt_generator.mlp, e0.mean(dim=1)).view(batch, m, d_t)  # (B, m, d_t) = T

    tokens = tok([" ".join(["X"] * m) + f" {modality} of a {c}." for c in CLASSES])  # (C, 77), no truncation
    eot = tokens.argmax(dim=-1)  # (C,)
    real = torch.arange(tokens.shape[1])[None, :] <= eot[:, None]  # (C, 77)
    texts, layer_means = [], []
    for b in range(batch):  # one text pass per image, on its own
        x = clip.token_embedding(tokens) + clip.positional_embedding  # (C, 77, d_t)
        per_layer = []
        for block in clip.transformer.resblocks:
            x = x.clone()
            x[:, 1:1 + m] = prompts[b]  # T overwrites the slots after [SOS] before every layer
            x = block(x, attn_mask=clip.attn_mask)
            per_layer.append(torch.stack([x[c, real[c]].mean(dim=0) for c in range(len(CLASSES))]).mean(dim=0))
        x = clip.ln_final(x)[torch.arange(len(CLASSES)), eot] @ clip.text_projection  # (C, D)
        texts.append(F.normalize(x, dim=-1))
        layer_means.append(torch.stack(per_layer))  # (L_t, d_t)

    template = tok([f"{modality} of a"])[0][:4]  # [SOS] <modality> of a
    guided = F.linear(clip.token_embedding(template), model.text_guided_prompts.proj.weight,
                      model.text_guided_prompts.proj.bias)  # (4, d_v) = V^tg
    heads = model.multilayer_prompts
    n_vis, n_txt = len(visual.transformer.resblocks), len(clip.transformer.resblocks)
    out = []
    for b in range(batch):
        x = torch.cat([visual.class_embedding[None], e0[b]]) + visual.positional_embedding  # (1+N, d_v)
        x = visual.ln_pre(x)[None]  # (1, 1+N, d_v)
        keep = x.shape[1]
        for i, block in enumerate(visual.transformer.resblocks):
            feature = layer_means[b][i * n_txt // n_vis] + heads.layer_embedding[i]
            multilayer = _mlp(heads.mlp, feature).view(n, -1)  # (n, d_v) = V^ms_i
            x = block(torch.cat([x[:, :keep], guided[None], multilayer[None]], dim=1))
        cls = visual.ln_post(x[0, 0])
        out.append(F.normalize(cls @ visual.proj, dim=-1))
    return torch.stack(out), torch.stack(texts)


@pytest.mark.parametrize("modality", ["sketch", "photo"])
def test_full_forward_matches_a_hand_computation(backbone, modality):
    torch.manual_seed(0)
    model = SpLIP(backbone.model, backbone.tokenizer, CLASSES).eval()
    with torch.no_grad():  # move every learnt piece well away from its initialisation
        for module in (model.text_prompt_generator, model.text_guided_prompts, model.multilayer_prompts):
            for p in module.parameters():
                p.add_(0.05 * torch.randn_like(p))
        images = torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(2))
        got = model(images, modality)
        image_ref, text_ref = _by_hand(model, images, modality)
    assert torch.allclose(got.image_embeddings, image_ref, atol=1e-5)
    assert torch.allclose(got.class_embeddings, text_ref, atol=1e-5)
    plain = F.normalize(backbone.model.encode_image(images), dim=-1)
    assert not torch.allclose(got.image_embeddings, plain, atol=1e-3)  # the prompts do change the result


class _Recorder(torch.nn.Module):
    """Wraps SpLIP and records every (images, modality) it is called with."""

    def __init__(self, model: SpLIP) -> None:
        super().__init__()
        self.model, self.calls = model, []
        self.clip, self.class_names = model.clip, model.class_names

    def forward(self, images, modality, class_embeddings=True):
        self.calls.append((images.clone(), modality))
        return self.model(images, modality, class_embeddings)


def _batch(size: int = 48) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return {"sketch": torch.randn(4, 3, size, size, generator=g), "positive": torch.randn(4, 3, size, size, generator=g),
            "negative": torch.randn(4, 3, size, size, generator=g),
            "label": torch.tensor([0, 1, 2, 0]), "negative_label": torch.tensor([1, 2, 0, 2])}


def test_objective_shuffles_only_the_sketch_and_weights_the_terms(backbone):
    torch.manual_seed(0)
    model = SpLIP(backbone.model, backbone.tokenizer, CLASSES).eval()
    recorder = _Recorder(model)
    alpha, beta = 0.3, 0.7
    objective = SpLIPObjective(model, 64, LossConfig(alpha=alpha, beta=beta)).eval()
    batch = _batch()
    batch["puzzle"] = objective.draw_puzzles(4, torch.Generator().manual_seed(11))
    with torch.no_grad():
        terms = objective(recorder, batch)

    # Four passes: the sketch, both photos untouched, and the shuffled sketch.
    modalities = [m for _, m in recorder.calls]
    assert modalities == ["sketch", "photo", "photo", "sketch"]
    assert torch.equal(recorder.calls[0][0], batch["sketch"])
    assert torch.equal(recorder.calls[1][0], batch["positive"])
    assert torch.equal(recorder.calls[2][0], batch["negative"])
    puzzles = random_permutation_labels(4, 100, torch.Generator().manual_seed(11))  # the same draw
    expected_shuffle = shuffle_tiles(batch["sketch"], objective.permutations[puzzles], 3)
    assert torch.equal(recorder.calls[3][0], expected_shuffle)
    assert not torch.equal(expected_shuffle, batch["sketch"])

    # Each term from its own loss function on independently computed embeddings.
    with torch.no_grad():
        sketch, positive = model(batch["sketch"], "sketch"), model(batch["positive"], "photo")
        negative = model(batch["negative"], "photo").image_embeddings
        shuffled = model(expected_shuffle, "sketch").image_embeddings
        margin = gather_margins(objective.margins, batch["label"], batch["negative_label"])
        triplet = triplet_loss(sketch.image_embeddings, positive.image_embeddings, negative, margin)
        scale = backbone.model.logit_scale.exp()
        cls = 0.5 * (classification_loss(sketch.image_embeddings, sketch.class_embeddings, batch["label"], scale)
                     + classification_loss(positive.image_embeddings, positive.class_embeddings, batch["label"], scale))
        jigsaw = conditional_jigsaw_loss(objective.solver, sketch.image_embeddings, shuffled,
                                         positive.image_embeddings, negative, puzzles)
        wrong_labels = conditional_jigsaw_loss(objective.solver, sketch.image_embeddings, shuffled,
                                               positive.image_embeddings, negative, (puzzles + 1) % 100)
    assert torch.allclose(terms["triplet"], triplet, atol=1e-6)
    assert torch.allclose(terms["classification"], cls, atol=1e-6)
    assert torch.allclose(terms["jigsaw"], jigsaw, atol=1e-6)
    assert not torch.allclose(terms["jigsaw"], wrong_labels, atol=1e-4)  # the labels are the puzzles used
    assert torch.allclose(terms["loss"], triplet + alpha * cls + beta * jigsaw, atol=1e-6)
    assert torch.allclose(terms["margin_mean"], margin.mean())


def test_losses_compute_in_float32_under_autocast():
    """bf16 autocast must not reach the cosines and logits of L_cls and L_tri (CPU autocast is the proxy)."""
    g = torch.Generator().manual_seed(0)
    image, text = torch.randn(8, 64, generator=g), torch.randn(5, 64, generator=g)
    labels = torch.randint(0, 5, (8,), generator=g)
    reference = classification_loss(image, text, labels, 100.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = classification_loss(image, text, labels, 100.0)
        raw_bf16 = F.cross_entropy(100.0 * (F.normalize(image) @ F.normalize(text).T), labels)
    assert under_autocast.dtype == torch.float32
    assert torch.allclose(under_autocast, reference, atol=1e-6)
    assert not torch.allclose(raw_bf16.float(), reference, atol=1e-4)  # what autocast alone would give
    a, p, n = (torch.randn(8, 64, generator=g) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.allclose(triplet_loss(a, p, n, 0.2), triplet_loss(a.double(), p.double(), n.double(), 0.2).float())
