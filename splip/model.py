"""SpLIP: bi-directional prompt sharing on a frozen open_clip CLIP (SPLIP_METHOD.md §2-3).

Both towers are driven layer by layer through open_clip's own modules (conv1, class/positional
embeddings, ln_pre, transformer.resblocks, _pool, proj; token/positional embeddings, ln_final,
text_projection). Prompt tokens occupy fixed slots that are overwritten before every layer.
With every prompt switched off the encoders reproduce `encode_image` / `encode_text`.
"""
from __future__ import annotations

from dataclasses import dataclass

import open_clip
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from splip import validation
from splip.prompts import MultiLayerVisualPrompts, TextGuidedVisualPrompts, TextPromptGenerator

MODALITIES = ("sketch", "photo")
TEXT_CONDITIONING = ("per_image", "batch_mean")
MULTILAYER_HEADS = ("shared", "per_layer")  # B_vt: one head for every layer, or one per layer
# Placeholder words whose token slots B_t's prompts overwrite (MaPLe-style); "X" is one BPE token.
_PLACEHOLDER = "X"


@dataclass
class SpLIPConfig:
    """Which parts of SpLIP are on, and their sizes. Defaults follow SPLIP_METHOD.md §3."""

    text_prompts: bool = True  # B_t: vision -> text prompts T
    text_guided_visual_prompts: bool = True  # B_v: template words -> V^tg
    multilayer_visual_prompts: bool = True  # B_vt: per-layer text features -> V^ms_l
    tune_layernorm: bool = True  # LayerNorm affine parameters of both towers trainable
    # "per_image" (faithful: T from each image's E_0) or "batch_mean" (one text pass per modality
    # per batch, T from the batch's mean E_0 in training and from the training-set mean in eval)
    text_conditioning: str = "per_image"
    num_text_prompts: int = 4  # m
    num_multilayer_prompts: int = 2  # n
    # CLIP-AT-style (VPT-shallow) learnable visual tokens, one set per modality, fed to the first
    # visual layer and carried through the rest; 0 = none (SpLIP has none: a baseline's part)
    shallow_visual_prompts: int = 0
    multilayer_head: str = "shared"  # or "per_layer"
    # Recompute each transformer block (both towers) in the backward pass instead of storing its
    # activations: exact (the blocks have no randomness), much less memory, ~1/3 more compute.
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        for name in ("text_prompts", "text_guided_visual_prompts", "multilayer_visual_prompts", "tune_layernorm",
                     "gradient_checkpointing"):
            setattr(self, name, validation.boolean(name, getattr(self, name)))
        self.text_conditioning = validation.choice("text_conditioning", self.text_conditioning, TEXT_CONDITIONING)
        self.num_text_prompts = validation.positive_int("num_text_prompts", self.num_text_prompts)
        self.num_multilayer_prompts = validation.positive_int("num_multilayer_prompts", self.num_multilayer_prompts)
        self.shallow_visual_prompts = validation.nonnegative_int("shallow_visual_prompts", self.shallow_visual_prompts)
        self.multilayer_head = validation.choice("multilayer_head", self.multilayer_head, MULTILAYER_HEADS)


@dataclass
class SpLIPOutput:
    """What a forward pass returns, the same in train and eval mode."""

    image_embeddings: torch.Tensor  # (B, D), L2-normalised
    # Prompted text embeddings of the seen classes, L2-normalised: (B, C, D) when the text is
    # conditioned on each image, (C, D) when one text pass serves the batch; None if not asked for.
    class_embeddings: torch.Tensor | None


class SpLIP(nn.Module):
    """Frozen CLIP + SpLIP prompts. `class_names` are the seen (training) classes, in label order."""

    def __init__(self, clip: open_clip.model.CLIP, tokenizer, class_names: list[str],
                 config: SpLIPConfig | None = None) -> None:
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer
        self.class_names = list(class_names)
        self.config = config or SpLIPConfig()
        visual = clip.visual
        if not isinstance(visual, open_clip.transformer.VisionTransformer):
            raise ValueError("SpLIP needs an open_clip ViT image tower (e.g. ViT-B-32).")
        if not (visual.transformer.batch_first and clip.transformer.batch_first):
            raise ValueError("SpLIP drives batch-first open_clip transformers (open_clip >= 2.24).")
        visual_width = visual.conv1.out_channels
        text_width = clip.token_embedding.embedding_dim
        self.visual_layers = len(visual.transformer.resblocks)
        self.text_layers = len(clip.transformer.resblocks)
        cfg = self.config

        for modality in MODALITIES:
            prefix = " ".join([_PLACEHOLDER] * cfg.num_text_prompts) + " " if cfg.text_prompts else ""
            tokens = self._tokenize([f"{prefix}{modality} of a {name}." for name in self.class_names])
            self.register_buffer(f"{modality}_class_tokens", tokens, persistent=False)  # (C, L)
            template = tokenizer([f"{modality} of a"])[0]
            template = template[: int(template.argmax())]  # "[SOS] <modality> of a", no EOT
            self.register_buffer(f"{modality}_template_tokens", template, persistent=False)  # (K,)

        self.text_prompt_generator = (
            TextPromptGenerator(visual_width, text_width, cfg.num_text_prompts)
            if cfg.text_prompts else None
        )
        self.text_guided_prompts = (
            TextGuidedVisualPrompts(text_width, visual_width) if cfg.text_guided_visual_prompts else None
        )
        self.multilayer_prompts = (
            MultiLayerVisualPrompts(
                text_width, visual_width, self.visual_layers, cfg.num_multilayer_prompts,
                cfg.multilayer_head,
            )
            if cfg.multilayer_visual_prompts else None
        )
        # (2, k, d_v), one row per modality; CoOp/VPT-style small init keeps the first steps near CLIP
        self.shallow_prompts = (
            nn.Parameter(0.02 * torch.randn(len(MODALITIES), cfg.shallow_visual_prompts, visual_width))
            if cfg.shallow_visual_prompts > 0 else None
        )
        if cfg.text_prompts and cfg.text_conditioning == "batch_mean":
            # Running (count-weighted) mean of the mean-pooled E_0 over every training image seen, per
            # modality. Eval mode conditions T on it, so a test embedding never depends on the rest of
            # its batch. conv1 is frozen, so E_0 of an image never changes and this converges to the
            # training-set mean. Persistent: checkpoints carry it.
            for modality in MODALITIES:
                self.register_buffer(f"{modality}_patch_mean", torch.zeros(visual_width))  # (d_v,)
                self.register_buffer(f"{modality}_patch_count", torch.zeros((), dtype=torch.float64))
        # Visual layer i reads the text features of the text layer at the same relative depth.
        self.register_buffer(
            "text_layer_for_visual_layer",
            torch.tensor([i * self.text_layers // self.visual_layers for i in range(self.visual_layers)]),
            persistent=False,
        )

    def _tokenize(self, texts: list[str]) -> torch.Tensor:
        """Tokenize and cut to the longest real prompt: under the causal mask the positions after a
        sequence's EOT never influence it, so dropping the padding changes nothing numerically."""
        tokens = self.tokenizer(texts)  # (N, 77)
        return tokens[:, : int(tokens.argmax(dim=-1).max()) + 1]

    # ------------------------------------------------------------------ freezing

    def freeze(self) -> list[str]:
        """Freeze CLIP (except LayerNorm affines when tuned); return the trainable parameter names."""
        self.clip.requires_grad_(False)
        if self.config.tune_layernorm:
            for module in self.clip.modules():
                if isinstance(module, nn.LayerNorm):
                    module.requires_grad_(True)
        for generator in (self.text_prompt_generator, self.text_guided_prompts, self.multilayer_prompts):
            if generator is not None:
                generator.requires_grad_(True)
        if self.shallow_prompts is not None:
            self.shallow_prompts.requires_grad_(True)
        return [name for name, p in self.named_parameters() if p.requires_grad]

    # ------------------------------------------------------------------ text tower

    @torch.no_grad()
    def encode_plain_text(self, texts: list[str]) -> torch.Tensor:
        """Unprompted CLIP text embeddings (N, D), L2-normalised (e.g. for the adaptive margins)."""
        tokens = self.tokenizer(texts).to(self.clip.token_embedding.weight.device)
        return F.normalize(self.clip.encode_text(tokens), dim=-1)

    def _encode_class_text(
        self, modality: str, text_prompts: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompted text pass over all seen classes, for G prompt groups.

        text_prompts: (G, m, d_t) or None (G = 1). Returns class embeddings (G, C, D), normalised, and
        per-layer features (G, L_t, d_t): each layer's output mean-pooled over real token positions
        and over classes (B_vt's input).
        """
        clip = self.clip
        tokens = getattr(self, f"{modality}_class_tokens")  # (C, L)
        num_classes, length = tokens.shape
        groups = 1 if text_prompts is None else text_prompts.shape[0]
        x = clip.token_embedding(tokens) + clip.positional_embedding[:length]  # (C, L, d_t)
        x = x.unsqueeze(0).expand(groups, -1, -1, -1).reshape(groups * num_classes, length, -1)
        eot = tokens.argmax(dim=-1)  # (C,)
        real = (torch.arange(length, device=tokens.device) <= eot[:, None]).to(x.dtype)  # (C, L)
        real = (real / real.sum(dim=1, keepdim=True)).repeat(groups, 1)  # (G*C, L) pooling weights
        attn_mask = clip.attn_mask[:length, :length]

        layer_features = []
        for block in clip.transformer.resblocks:
            if text_prompts is not None:
                m = text_prompts.shape[1]
                slots = text_prompts.repeat_interleave(num_classes, dim=0)  # (G*C, m, d_t)
                x = torch.cat([x[:, :1], slots, x[:, 1 + m:]], dim=1)
            x = self._block(block, x, attn_mask)  # (G*C, L, d_t)
            pooled = torch.einsum("nl,nld->nd", real, x)  # (G*C, d_t)
            layer_features.append(pooled.view(groups, num_classes, -1).mean(dim=1))  # (G, d_t)

        x = clip.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot.repeat(groups)]  # (G*C, d_t) at EOT
        x = clip.text_projection(x) if isinstance(clip.text_projection, nn.Linear) else x @ clip.text_projection
        class_embeddings = F.normalize(x, dim=-1).view(groups, num_classes, -1)  # (G, C, D)
        return class_embeddings, torch.stack(layer_features, dim=1)  # (G, L_t, d_t)

    def _block(self, block: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One open_clip residual block, checkpointed when configured and gradients are being taken.
        Non-reentrant checkpointing: the frozen block's inputs need no requires_grad for it to work."""
        if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, attn_mask=attn_mask, use_reentrant=False)
        return block(x, attn_mask=attn_mask)

    # ------------------------------------------------------------------ image tower

    def _patch_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """E_0: output of the patch-embedding convolution, (B, N, d_v)."""
        x = self.clip.visual.conv1(images)  # (B, d_v, g, g)
        return x.flatten(2).transpose(1, 2)

    def _encode_image_tokens(
        self, patches: torch.Tensor, guided: torch.Tensor | None, multilayer: torch.Tensor | None,
        shallow: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """patches (B, N, d_v); guided V^tg (K, d_v) or None; multilayer V^ms (G, L_v, n, d_v) or
        None with G in {1, B}; shallow (k, d_v) or None. Returns unnormalised image embeddings (B, D)."""
        visual = self.clip.visual
        batch, num_patches, _ = patches.shape
        cls = visual.class_embedding.to(patches.dtype).expand(batch, 1, -1)
        x = torch.cat([cls, patches], dim=1) + visual.positional_embedding.to(patches.dtype)
        x = visual.patch_dropout(x)  # (B, 1+N, d_v)
        tokens = x.shape[1]
        if shallow is not None:
            # VPT-shallow, as CLIP-AT's code: appended after the positional embedding and before
            # ln_pre (no position of their own), then updated by every layer like a patch.
            x = torch.cat([x, shallow.to(x.dtype).unsqueeze(0).expand(batch, -1, -1)], dim=1)  # (B, 1+N+k, d_v)
        x = visual.ln_pre(x)
        keep = x.shape[1]
        for layer, block in enumerate(visual.transformer.resblocks):
            prompts = []
            if guided is not None:
                prompts.append(guided.unsqueeze(0).expand(batch, -1, -1))  # (B, K, d_v)
            if multilayer is not None:
                prompts.append(multilayer[:, layer].expand(batch, -1, -1))  # (B, n, d_v)
            if prompts:
                x = torch.cat([x[:, :keep], *prompts], dim=1)  # (B, 1+N+K+n, d_v)
            x = self._block(block, x)
        pooled, _ = visual._pool(x[:, :tokens])  # prompt slots never enter the pooling
        return pooled @ visual.proj if visual.proj is not None else pooled

    def _conditioning_patches(self, patches: torch.Tensor, modality: str) -> torch.Tensor:
        """What B_t reads: (B, N, d_v) per image, or (1, N', d_v) for the whole batch (batch_mean).

        batch_mean, train mode: the batch's mean E_0 (and the running mean is updated). Eval mode:
        the running training-set mean, so an embedding does not depend on its batch; before any
        training step (count 0) each image conditions its own text, which is what a batch of one
        would give in training.
        """
        if self.config.text_conditioning == "per_image":
            return patches
        mean = getattr(self, f"{modality}_patch_mean")  # (d_v,)
        count = getattr(self, f"{modality}_patch_count")  # ()
        if self.training:
            with torch.no_grad():
                batch_mean = patches.detach().float().mean(dim=(0, 1))  # (d_v,)
                count += patches.shape[0]
                mean += (batch_mean - mean) * (patches.shape[0] / count).to(mean.dtype)
            return patches.mean(0, keepdim=True)  # (1, N, d_v)
        if count == 0:
            return patches
        return mean.to(patches.dtype).view(1, 1, -1)  # (1, 1, d_v): B_t mean-pools over positions

    # ------------------------------------------------------------------ forward

    def forward(self, images: torch.Tensor, modality: str, class_embeddings: bool = True) -> SpLIPOutput:
        """Embed a batch of images of one modality ("sketch" or "photo").

        class_embeddings=False skips the text pass when the image embedding does not need it
        (B_vt off), which is all retrieval needs.
        """
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        cfg = self.config
        patches = self._patch_embeddings(images)  # (B, N, d_v)

        text_prompts = None
        if self.text_prompt_generator is not None:
            text_prompts = self.text_prompt_generator(self._conditioning_patches(patches, modality))  # (G, m, d_t)

        texts = multilayer = None
        if class_embeddings or self.multilayer_prompts is not None:
            texts, layer_features = self._encode_class_text(modality, text_prompts)
            if self.multilayer_prompts is not None:
                per_visual_layer = layer_features[:, self.text_layer_for_visual_layer]  # (G, L_v, d_t)
                multilayer = self.multilayer_prompts(per_visual_layer)  # (G, L_v, n, d_v)

        guided = None
        if self.text_guided_prompts is not None:
            template = getattr(self, f"{modality}_template_tokens")
            guided = self.text_guided_prompts(self.clip.token_embedding(template))  # (K, d_v)

        shallow = None if self.shallow_prompts is None else self.shallow_prompts[MODALITIES.index(modality)]
        embeddings = F.normalize(self._encode_image_tokens(patches, guided, multilayer, shallow), dim=-1)
        if texts is not None and texts.shape[0] == 1:
            texts = texts[0]  # (C, D): one text pass served the whole batch
        return SpLIPOutput(embeddings, texts if class_embeddings else None)


def trainable_parameter_table(module: nn.Module) -> str:
    """A printable table of the trainable parameters (name, shape, count) with the totals."""
    rows = [(n, tuple(p.shape), p.numel()) for n, p in module.named_parameters() if p.requires_grad]
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(count for _, _, count in rows)
    width = max((len(n) for n, _, _ in rows), default=10)
    lines = [f"{'parameter':<{width}}  {'shape':<16} {'count':>10}"]
    lines += [f"{n:<{width}}  {str(s):<16} {c:>10,}" for n, s, c in rows]
    lines.append(f"trainable {trainable:,} of {total:,} parameters ({100 * trainable / max(total, 1):.2f}%)")
    return "\n".join(lines)
