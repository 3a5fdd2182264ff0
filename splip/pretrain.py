"""Contrastive pretraining of a small open_clip CLIP on labelled photos with class-name captions.

No pretrained CLIP weights can be had on our machines, and a random-init CLIP knows nothing for
prompts to build on. This rebuilds SpLIP's premise at small scale: a CLIP that has learned photos
and words, and has never seen a sketch. Captions are templates filled with a class's names.

Loss: CLIP's symmetric image-text cross-entropy, except that a caption of the same class as the
image also counts as a match (targets spread evenly over them, as in UniCL): with a few dozen
classes, a batch holds many images of one class, and CLIP's one-positive targets would push apart
pairs that are equally true.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from splip.backbone import WeightsMismatchError, WeightsNotFoundError, check_weights_card, load_backbone
from splip.data import ImageSet, collate_skip_unreadable
from splip.data.synthetic import load_synthetic, synthetic_class_names, synthetic_pretraining_photos
from splip.io import save_json, save_torch, sha256_of
from splip.progress import tqdm

CAPTION_TEMPLATES = (
    "a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a photo of the {}.", "a {}.",
    "a close-up photo of a {}.", "a cropped photo of a {}.", "a bright photo of a {}.",
)


@dataclass
class PretrainConfig:
    """Schedule of the contrastive pretraining (AdamW, linear warm-up, cosine decay)."""

    epochs: int = 15
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_fraction: float = 0.1
    augment: bool = False  # random horizontal flips and shifts of up to 1/8 of the image side
    seed: int = 0


def class_caption_tokens(tokenizer, class_names: list[list[str]],
                         templates: tuple[str, ...] = CAPTION_TEMPLATES) -> tuple[torch.Tensor, torch.Tensor]:
    """All captions: every template x every name of every class.

    Returns tokens (M, 77) and their class ids (M,).
    """
    texts, owners = [], []
    for class_id, names in enumerate(class_names):
        for name in names:
            for template in templates:
                texts.append(template.format(name))
                owners.append(class_id)
    return tokenizer(texts), torch.tensor(owners)


def class_matched_clip_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                            labels: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP loss where every same-class image-caption pair is a positive.

    image_features, text_features (B, D) L2-normalised; labels (B,). Targets of row i are uniform
    over the j with labels[j] == labels[i]; with all-distinct labels this is exactly CLIP's loss.
    """
    logits = logit_scale * image_features @ text_features.T  # (B, B)
    same = (labels[:, None] == labels[None, :]).float()  # (B, B)
    targets = same / same.sum(dim=1, keepdim=True)
    image_to_text = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    text_to_image = -(targets * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (image_to_text + text_to_image) / 2


def augment_photos(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random shift (reflect-padded by S/8, then cropped back to S x S)
    of each image in (B, 3, S, S); the small-data regime of our mini-CLIPs overfits without it."""
    batch, _, size, _ = images.shape
    pad = max(1, size // 8)
    flip = torch.rand(batch, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")  # (B, 3, S + 2p, S + 2p)
    dx, dy = torch.randint(0, 2 * pad + 1, (2, batch), generator=generator)
    rows = (dy[:, None] + torch.arange(size))[:, None, :, None]  # (B, 1, S, 1)
    cols = (dx[:, None] + torch.arange(size))[:, None, None, :]  # (B, 1, 1, S)
    return padded[torch.arange(batch)[:, None, None, None], torch.arange(3)[None, :, None, None], rows, cols]


def pretrain_clip(model: torch.nn.Module, tokenizer, photos: ImageSet, class_names: list[list[str]],
                  config: PretrainConfig | None = None, progress: bool = True) -> list[dict[str, float]]:
    """Train every parameter of `model` (an open_clip CLIP, on its device) on `photos`.

    class_names[c] lists the names (synonyms) of class c; each photo gets a random caption of its
    class, drawn from (seed, epoch). Returns one record per epoch (mean loss, learning rate). Torch's
    global CPU generator is seeded with config.seed inside and restored afterwards.
    """
    config = config or PretrainConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _train_contrastive(model, tokenizer, photos, class_names, config, progress)


def _train_contrastive(model: torch.nn.Module, tokenizer, photos: ImageSet, class_names: list[list[str]],
                       config: PretrainConfig, progress: bool) -> list[dict[str, float]]:
    device = next(model.parameters()).device
    tokens, owners = class_caption_tokens(tokenizer, class_names)
    per_class = [torch.nonzero(owners == c).flatten() for c in range(len(class_names))]
    loader_seed = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(photos, batch_size=config.batch_size, shuffle=True, drop_last=True,
                        generator=loader_seed, collate_fn=collate_skip_unreadable)
    total_steps = config.epochs * len(loader)
    if total_steps == 0:
        raise ValueError(f"{len(photos)} photos make no batch of {config.batch_size}; lower batch_size")
    warmup = max(1, int(config.warmup_fraction * total_steps))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(
        (step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, max(0, step - warmup) / max(1, total_steps - warmup))))))
    augment_seed = torch.Generator().manual_seed(config.seed)
    model.train()
    history = []
    for epoch in range(config.epochs):
        rng = np.random.default_rng([config.seed, epoch])
        losses = []
        for batch in tqdm(loader, desc=f"pretrain {epoch + 1}/{config.epochs}", disable=not progress, leave=False):
            if batch is None:
                continue
            images, labels, _ = batch
            if config.augment:
                images = augment_photos(images, augment_seed)
            caption_ids = torch.stack([per_class[c][rng.integers(len(per_class[c]))] for c in labels.tolist()])
            image_features = F.normalize(model.encode_image(images.to(device)), dim=-1)
            text_features = F.normalize(model.encode_text(tokens[caption_ids].to(device)), dim=-1)
            loss = class_matched_clip_loss(image_features, text_features, labels.to(device),
                                           model.logit_scale.exp())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():  # CLIP's clamp: a temperature below 1/100 destabilises training
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": schedule.get_last_lr()[0]})
    model.eval()
    return history


@torch.no_grad()
def zero_shot_accuracy(model: torch.nn.Module, tokenizer, images: ImageSet, class_names: list[list[str]],
                       labels: list[int] | None = None, batch_size: int = 256) -> float:
    """Top-1 zero-shot classification accuracy of `images` against prompt-ensembled class texts
    (mean of the normalised embeddings of every template x name of a class, as in CLIP).

    class_names[i] are the names of the class whose label in `images` is labels[i] (default: i);
    the classifier chooses among those classes only.
    """
    device = next(model.parameters()).device
    model.eval()
    tokens, owners = class_caption_tokens(tokenizer, class_names)
    text = F.normalize(model.encode_text(tokens.to(device)), dim=-1)  # (M, D)
    classifier = torch.stack([F.normalize(text[owners == c].mean(0), dim=0) for c in range(len(class_names))])
    label_of_row = torch.tensor(range(len(class_names)) if labels is None else labels)
    correct = total = 0
    for batch in DataLoader(images, batch_size=batch_size, collate_fn=collate_skip_unreadable):
        if batch is None:
            continue
        pixels, truth, _ = batch
        rows = (F.normalize(model.encode_image(pixels.to(device)), dim=-1) @ classifier.T).argmax(dim=1)
        correct += int((label_of_row[rows.cpu()] == truth).sum())
        total += len(truth)
    return correct / max(total, 1)


SYNTHETIC_PHOTOS = "synthetic-photos"
SYNTHETIC_PRETRAINING = {"photos_per_class": 150, "epochs": 20, "lr": 1e-3, "batch_size": 128}


def synthetic_backbone_path(model_name: str, num_classes: int, seed: int, cache_dir: str | Path = "runs/backbones") -> Path:
    """Where `ensure_synthetic_backbone` keeps the weights for these arguments (the name carries a
    digest of the recipe, so a changed recipe never reuses stale weights)."""
    recipe = hashlib.sha256(json.dumps(SYNTHETIC_PRETRAINING, sort_keys=True).encode()).hexdigest()[:8]
    return Path(cache_dir) / f"{model_name}-synthetic{num_classes}-seed{seed}-{recipe}.pt"


def ensure_synthetic_backbone(model_name: str = "splip-tiny", num_classes: int = 16, seed: int = 0,
                              cache_dir: str | Path = "runs/backbones", progress: bool = True) -> Path:
    """Weights of `model_name` contrastively pretrained on the synthetic photos of (num_classes,
    seed): every class, seen and unseen, with instances no benchmark image uses, and never a
    sketch. Built on first use (about 5 minutes for splip-tiny on 2 CPU cores) and cached as an
    open_clip state dict beside a JSON card (SHA-256, recipe, zero-shot accuracy, timing). Cached
    weights whose SHA-256 is not their card's (or without a card) are rebuilt, with a message.
    """
    path = synthetic_backbone_path(model_name, num_classes, seed, cache_dir)
    card = path.with_suffix(".json")
    if path.is_file():
        try:
            check_weights_card(path, required=True)  # the check load_backbone makes, here to rebuild
            return path
        except WeightsMismatchError:
            problem = f"its SHA-256 is not the one on its card {card.name} (a changed or cut-short file)"
        except WeightsNotFoundError:
            problem = "its card is missing or unreadable"
        print(f"The cached backbone {path} cannot be used: {problem}. Rebuilding it "
              f"(about 5 minutes for splip-tiny on 2 CPU cores).", flush=True)
    recipe = SYNTHETIC_PRETRAINING
    backbone = load_backbone(model_name, None, seed=seed)
    photos = synthetic_pretraining_photos(backbone.image_size, seed, num_classes, recipe["photos_per_class"])
    names = [[name] for name in synthetic_class_names(num_classes)]
    config = PretrainConfig(epochs=recipe["epochs"], lr=recipe["lr"], batch_size=recipe["batch_size"], seed=seed)
    start = time.perf_counter()
    history = pretrain_clip(backbone.model, backbone.tokenizer, photos, names, config, progress)
    seconds = time.perf_counter() - start
    benchmark = load_synthetic(image_size=backbone.image_size, seed=seed, num_classes=num_classes)
    save_torch(backbone.model.state_dict(), path)
    save_json({
        "weights": str(path), "sha256": sha256_of(path), "model": model_name,
        "recipe": {**recipe, "num_classes": num_classes, "seed": seed, "captions": list(CAPTION_TEMPLATES)},
        "reproduce": f"splip.pretrain.ensure_synthetic_backbone({model_name!r}, num_classes={num_classes}, seed={seed})",
        "zero_shot_accuracy": {
            "benchmark unseen photos": zero_shot_accuracy(backbone.model, backbone.tokenizer, benchmark.test_photos, names),
            "benchmark unseen sketches": zero_shot_accuracy(backbone.model, backbone.tokenizer, benchmark.test_sketches, names),
        },
        "history": history, "seconds": round(seconds, 1), "torch": torch.__version__,
    }, card)
    return path
