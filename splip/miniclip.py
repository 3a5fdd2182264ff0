"""The mini-CLIP: splip-mini (open_clip ViT, 64 px) pretrained contrastively on Tiny ImageNet photos.

No pretrained CLIP weights can be had on our machines. This rebuilds SpLIP's premise with real
data at CPU scale: a CLIP that has learned photos and words, and has never seen a sketch. Captions
are CAPTION_TEMPLATES filled with every WordNet synonym of a photo's class (words.txt). Only the
train split is used, so Tiny ImageNet val stays unseen: it measures zero-shot accuracy here and
is the photo gallery of quickdraw-mini / tuberlin-mini.
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from splip.backbone import load_backbone
from splip.data.tinyimagenet import load_tiny_imagenet, tiny_imagenet_classes
from splip.io import save_json, save_torch, sha256_of
from splip.pretrain import CAPTION_TEMPLATES, PretrainConfig, pretrain_clip, zero_shot_accuracy

MINI_CLIP = "splip-mini"
MINI_CLIP_RECIPE = PretrainConfig(epochs=10, batch_size=128, lr=1e-3, weight_decay=0.1, augment=True, seed=0)
MINI_CLIP_WEIGHTS = Path("weights") / "splip-mini-tinyimagenet-seed0.pt"  # relative to the repository root
MINI_CLIP_COMMAND = "papermill notebooks/miniclip.ipynb book/miniclip.ipynb -p pretrain True"


def pretrain_mini_clip(tiny_imagenet: str | Path, output: str | Path = MINI_CLIP_WEIGHTS,
                       recipe: PretrainConfig = MINI_CLIP_RECIPE, per_class: int | None = None,
                       num_classes: int | None = None, progress: bool = True) -> dict:
    """Pretrain splip-mini from a random init (seed = recipe.seed) on the Tiny ImageNet train photos
    (the first `per_class` of the first `num_classes` wnids; None: all), then write its weights (an
    open_clip state dict in float16, to keep the file small) to `output` and a card beside it
    (`output` with .json: SHA-256, recipe, zero-shot accuracy on val, timing, hardware). Returns the card.
    """
    output = Path(output)
    wnids, names = tiny_imagenet_classes(tiny_imagenet)
    wnids, names = wnids[:num_classes], names[:num_classes]
    backbone = load_backbone(MINI_CLIP, None, seed=recipe.seed)
    photos = load_tiny_imagenet(tiny_imagenet, "train", backbone.image_size, wnids, per_class)
    start = time.perf_counter()
    history = pretrain_clip(backbone.model, backbone.tokenizer, photos, names, recipe, progress)
    seconds = time.perf_counter() - start
    val = load_tiny_imagenet(tiny_imagenet, "val", backbone.image_size, wnids)
    accuracy = zero_shot_accuracy(backbone.model, backbone.tokenizer, val, names)
    state = {key: value.half() if value.is_floating_point() else value
             for key, value in backbone.model.state_dict().items()}
    save_torch(state, output)
    card = {
        "weights": output.name, "sha256": sha256_of(output), "bytes": output.stat().st_size,
        "model": MINI_CLIP, "init": f"random (seed {recipe.seed})",
        "data": {"train": f"Tiny ImageNet train, {len(photos)} photos of {len(wnids)} classes",
                 "captions": list(CAPTION_TEMPLATES), "class names": "words.txt synonyms"},
        "recipe": asdict(recipe),
        "zero_shot_top1_val": accuracy, "chance": 1 / len(wnids), "val_photos": len(val),
        "history": history, "seconds": round(seconds, 1),
        "hardware": {"device": str(next(backbone.model.parameters()).device), "cpu": platform.processor() or platform.machine(),
                     "torch_threads": torch.get_num_threads()},
        "torch": torch.__version__, "reproduce": MINI_CLIP_COMMAND,
    }
    save_json(card, output.with_suffix(".json"))
    return card

