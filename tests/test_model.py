"""SpLIP model: parity with open_clip when prompts are off, switches, freezing, text truncation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from splip.backbone import load_backbone
from splip.model import SpLIP, SpLIPConfig

CLASSES = ["cat", "alarm clock", "hot air balloon", "wrist watch"]
ALL_OFF = SpLIPConfig(text_prompts=False, text_guided_visual_prompts=False,
                      multilayer_visual_prompts=False, tune_layernorm=False)


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("splip-tiny", None, seed=0)


@pytest.fixture
def images():
    return torch.randn(5, 3, 48, 48, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("model_name", ["splip-tiny", "ViT-B-32"])
@pytest.mark.parametrize("modality", ["sketch", "photo"])
def test_prompts_off_reproduces_open_clip(model_name, modality):
    backbone = load_backbone(model_name, None, seed=0)
    size = backbone.image_size
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    model = SpLIP(backbone.model, backbone.tokenizer, CLASSES, ALL_OFF).eval()
    with torch.no_grad():
        out = model(images, modality)
        image_ref = F.normalize(backbone.model.encode_image(images), dim=-1)
        # encode_text runs the full 77-token context: equality also checks our truncation.
        text_ref = F.normalize(backbone.model.encode_text(
            backbone.tokenizer([f"{modality} of a {c}." for c in CLASSES])), dim=-1)
    assert torch.allclose(out.image_embeddings, image_ref, atol=1e-5)
    assert out.class_embeddings.shape == (len(CLASSES), text_ref.shape[1])
    assert torch.allclose(out.class_embeddings, text_ref, atol=1e-5)


def test_text_is_truncated_to_longest_prompt(backbone):
    model = SpLIP(backbone.model, backbone.tokenizer, CLASSES)
    tokens = model.sketch_class_tokens
    # "[SOS] X X X X sketch of a hot air balloon . [EOT]" is the longest: 13 tokens.
    assert tokens.shape == (len(CLASSES), 13)
    assert int(tokens[2].argmax()) == 12


def test_full_model_shapes_and_conditioning(backbone, images):
    per_image = SpLIP(backbone.model, backbone.tokenizer, CLASSES).eval()
    out = per_image(images, "sketch")
    assert out.image_embeddings.shape == (5, 64)
    assert out.class_embeddings.shape == (5, len(CLASSES), 64)  # text depends on each image
    assert torch.allclose(out.image_embeddings.norm(dim=-1), torch.ones(5), atol=1e-5)
    # Image i's embedding must not depend on the other images of the batch.
    alone = per_image(images[:1], "sketch")
    assert torch.allclose(alone.image_embeddings[0], out.image_embeddings[0], atol=1e-5)

    batch_mean = SpLIP(backbone.model, backbone.tokenizer, CLASSES,
                       SpLIPConfig(text_conditioning="batch_mean"))
    batch_mean.load_state_dict(per_image.state_dict(), strict=False)
    batch_mean.train()(images, "sketch")  # one training pass fills the running mean of E_0
    out_mean = batch_mean.eval()(images, "sketch")
    assert out_mean.class_embeddings.shape == (len(CLASSES), 64)
    assert not torch.allclose(out_mean.image_embeddings, out.image_embeddings, atol=1e-4)


@pytest.mark.parametrize("conditioning", ["per_image", "batch_mean"])
@pytest.mark.parametrize("trained", [False, True])
def test_eval_embedding_does_not_depend_on_the_batch(backbone, images, conditioning, trained):
    """An image embedded alone and inside a batch of other images gives the same vector (eval mode)."""
    model = SpLIP(backbone.model, backbone.tokenizer, CLASSES, SpLIPConfig(text_conditioning=conditioning))
    if trained:  # training-mode passes fill batch_mean's running mean of E_0
        others = torch.randn(7, 3, 48, 48, generator=torch.Generator().manual_seed(3))
        model.train()(others, "sketch")
    model.eval()
    with torch.no_grad():
        crowd = torch.cat([images[2:3], torch.randn(6, 3, 48, 48, generator=torch.Generator().manual_seed(4))])
        in_batch = model(crowd, "sketch").image_embeddings[0]
        alone = model(images[2:3], "sketch").image_embeddings[0]
        in_other_batch = model(images, "sketch").image_embeddings[2]
    assert torch.allclose(alone, in_batch, atol=1e-5)
    assert torch.allclose(alone, in_other_batch, atol=1e-5)


def test_batch_mean_running_mean_is_the_mean_of_every_training_image(backbone):
    model = SpLIP(backbone.model, backbone.tokenizer, CLASSES, SpLIPConfig(text_conditioning="batch_mean")).train()
    batches = [torch.randn(n, 3, 48, 48, generator=torch.Generator().manual_seed(n)) for n in (3, 5, 2)]
    for batch in batches:
        model(batch, "photo", class_embeddings=False)
    visual = backbone.model.visual
    with torch.no_grad():
        every = torch.cat([visual.conv1(b).flatten(2).mean(dim=2) for b in batches])  # (10, d_v) per-image pooled E_0
    assert model.photo_patch_count.item() == 10
    assert torch.allclose(model.photo_patch_mean, every.mean(dim=0), atol=1e-6)
    assert model.sketch_patch_count.item() == 0  # per modality
    assert {"photo_patch_mean", "sketch_patch_count"} <= set(model.state_dict())  # checkpoints carry them


def test_modality_changes_embedding_only_through_prompts(backbone, images):
    full = SpLIP(backbone.model, backbone.tokenizer, CLASSES).eval()
    assert not torch.allclose(full(images, "sketch").image_embeddings, full(images, "photo").image_embeddings)
    off = SpLIP(backbone.model, backbone.tokenizer, CLASSES, ALL_OFF).eval()
    assert torch.allclose(off(images, "sketch").image_embeddings, off(images, "photo").image_embeddings)


@pytest.mark.parametrize("switch,module", [
    ("text_prompts", "text_prompt_generator"),
    ("text_guided_visual_prompts", "text_guided_prompts"),
    ("multilayer_visual_prompts", "multilayer_prompts"),
])
def test_each_component_can_be_switched_off(backbone, images, switch, module):
    full = SpLIP(backbone.model, backbone.tokenizer, CLASSES)
    ablated = SpLIP(backbone.model, backbone.tokenizer, CLASSES, SpLIPConfig(**{switch: False}))
    assert getattr(full, module) is not None and getattr(ablated, module) is None
    names = ablated.freeze()
    assert not any(n.startswith(module) for n in names)
    ablated.load_state_dict(full.state_dict(), strict=False)
    with torch.no_grad():
        assert not torch.allclose(full.eval()(images, "photo").image_embeddings,
                                  ablated.eval()(images, "photo").image_embeddings, atol=1e-5)


def test_freeze_leaves_only_layernorms_and_prompts(backbone, images):
    model = SpLIP(backbone.model, backbone.tokenizer, CLASSES)
    names = model.freeze()
    clip_names = [n for n in names if n.startswith("clip.")]
    assert clip_names and all(".ln_" in n or n.split(".")[1].startswith("ln_") for n in clip_names)
    assert {"clip.visual.ln_pre.weight", "clip.ln_final.bias"} <= set(names)
    assert not any("attn" in n or "mlp" in n or "proj" in n.split(".")[-1] for n in clip_names)
    frozen_before = backbone.model.visual.transformer.resblocks[0].attn.in_proj_weight.clone()
    out = model(images, "sketch")
    (out.image_embeddings.sum() + out.class_embeddings.sum()).backward()
    assert backbone.model.visual.transformer.resblocks[0].attn.in_proj_weight.grad is None
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, f"{name} gets no gradient"
    assert torch.equal(frozen_before, backbone.model.visual.transformer.resblocks[0].attn.in_proj_weight)

    no_ln = SpLIP(backbone.model, backbone.tokenizer, CLASSES, SpLIPConfig(tune_layernorm=False))
    assert not any(n.startswith("clip.") for n in no_ln.freeze())


def test_per_layer_head_variant(backbone, images):
    model = SpLIP(backbone.model, backbone.tokenizer, CLASSES, SpLIPConfig(multilayer_head="per_layer"))
    assert len(model.multilayer_prompts.mlps) == 4
    assert model(images, "photo").image_embeddings.shape == (5, 64)


def test_bad_arguments_are_clear(backbone, images):
    with pytest.raises(ValueError, match="text_conditioning"):
        SpLIPConfig(text_conditioning="sometimes")
    model = SpLIP(backbone.model, backbone.tokenizer, CLASSES)
    with pytest.raises(ValueError, match="modality"):
        model(images, "painting")


def test_shallow_visual_prompts_are_vpt_shallow(backbone, images):
    """CLIP-AT-style prompts: k tokens appended once before ln_pre (as CLIP-AT's code), then the
    unchanged open_clip transformer over all tokens, the class token pooled; one set per modality."""
    config = SpLIPConfig(text_prompts=False, text_guided_visual_prompts=False, multilayer_visual_prompts=False,
                         shallow_visual_prompts=3)
    model = SpLIP(backbone.model, backbone.tokenizer, CLASSES, config).eval()
    assert model.shallow_prompts.shape == (2, 3, backbone.model.visual.conv1.out_channels)
    with torch.no_grad():
        model.shallow_prompts.normal_(0, 1)  # far from zero, so they visibly change the output
        visual = backbone.model.visual
        x = visual.conv1(images).flatten(2).transpose(1, 2)
        x = torch.cat([visual.class_embedding.expand(len(images), 1, -1), x], dim=1) + visual.positional_embedding
        for row, modality in enumerate(("sketch", "photo")):
            tokens = visual.ln_pre(torch.cat([x, model.shallow_prompts[row].expand(len(images), -1, -1)], dim=1))
            cls = visual.ln_post(visual.transformer(tokens)[:, 0])
            expected = F.normalize(cls @ visual.proj, dim=-1)
            assert torch.allclose(model(images, modality, class_embeddings=False).image_embeddings,
                                  expected, atol=1e-5)
        plain = F.normalize(backbone.model.encode_image(images), dim=-1)
        assert not torch.allclose(model(images, "sketch", class_embeddings=False).image_embeddings, plain, atol=1e-3)
    assert "shallow_prompts" in model.freeze()
