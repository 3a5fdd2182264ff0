"""SpLIP's three prompt generators (SPLIP_METHOD.md §3).

- B_t  (TextPromptGenerator):      vision -> text,   image patch embeddings -> m text prompt tokens T.
- B_v  (TextGuidedVisualPrompts):  text -> vision,   template word embeddings -> visual tokens V^tg.
- B_vt (MultiLayerVisualPrompts):  text -> vision,   layer-l text features of the seen classes
                                                     -> n visual tokens V^ms_l for visual layer l.
The paper gives no architecture for these; the defaults below are the team's (see §3) and each
docstring states the choice.
"""
from __future__ import annotations

import torch
from torch import nn


def _mlp(dim_in: int, dim_hidden: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, dim_hidden), nn.GELU(), nn.Linear(dim_hidden, dim_out))


class TextPromptGenerator(nn.Module):
    """B_t: mean-pooled patch embeddings E_0 -> m text prompt tokens (MLP d_v -> d_t -> m*d_t)."""

    def __init__(self, visual_width: int, text_width: int, num_tokens: int = 4) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.text_width = text_width
        self.mlp = _mlp(visual_width, text_width, num_tokens * text_width)

    def forward(self, patch_embeddings: torch.Tensor) -> torch.Tensor:
        """patch_embeddings (B, N, d_v) -> prompt tokens (B, m, d_t)."""
        pooled = patch_embeddings.mean(dim=1)  # (B, d_v)
        return self.mlp(pooled).view(-1, self.num_tokens, self.text_width)  # (B, m, d_t)


class TextGuidedVisualPrompts(nn.Module):
    """B_v: template token embeddings ("[SOS] sketch of a") -> visual tokens V^tg.

    One Linear d_t -> d_v applied to each template token (shared across tokens), so the number of
    visual tokens equals the number of template tokens (4 for "[SOS] <modality> of a"). The tokens
    depend only on the modality, never on the image.
    """

    def __init__(self, text_width: int, visual_width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(text_width, visual_width)

    def forward(self, template_embeddings: torch.Tensor) -> torch.Tensor:
        """template_embeddings (K, d_t) -> visual tokens (K, d_v)."""
        return self.proj(template_embeddings)


class MultiLayerVisualPrompts(nn.Module):
    """B_vt: per-layer pooled text features -> n visual tokens for each visual layer.

    Input is one d_t vector per layer: the text encoder's layer-l output, mean-pooled over the real
    (non-padding) token positions and over all seen classes. Default head ("shared"): one MLP
    d_t -> d_v -> n*d_v for every layer, told apart by a learnable layer embedding added to its
    input. Variant ("per_layer"): an independent MLP per layer.
    """

    def __init__(
        self, text_width: int, visual_width: int, num_layers: int, num_tokens: int = 2,
        head: str = "shared",
    ) -> None:
        super().__init__()
        if head not in ("shared", "per_layer"):
            raise ValueError(f"B_vt head must be 'shared' or 'per_layer', got {head!r}")
        self.num_tokens = num_tokens
        self.visual_width = visual_width
        self.head = head
        if head == "shared":
            self.layer_embedding = nn.Parameter(torch.zeros(num_layers, text_width))  # (L, d_t)
            self.mlp = _mlp(text_width, visual_width, num_tokens * visual_width)
        else:
            self.mlps = nn.ModuleList(
                _mlp(text_width, visual_width, num_tokens * visual_width) for _ in range(num_layers)
            )

    def forward(self, layer_features: torch.Tensor) -> torch.Tensor:
        """layer_features (B, L, d_t) -> visual tokens (B, L, n, d_v)."""
        batch, layers, _ = layer_features.shape
        if self.head == "shared":
            tokens = self.mlp(layer_features + self.layer_embedding)  # (B, L, n*d_v)
        else:
            tokens = torch.stack(
                [mlp(layer_features[:, i]) for i, mlp in enumerate(self.mlps)], dim=1
            )  # (B, L, n*d_v)
        return tokens.view(batch, layers, self.num_tokens, self.visual_width)
