"""The frozen CLIP backbone: any open_clip model, with weights from a tag, a local file, or none.

The library only *builds* the open_clip model here; prompting (splip.model) drives its modules
layer by layer and never edits them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import open_clip
import torch

from splip.io import sha256_of

# Our small CLIP architectures (tests, CPU runs) are open_clip configs like any other.
MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)

# OpenAI's published checkpoints: file name -> (SHA-256, download URL). The hash is part of the URL.
OPENAI_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "ViT-B-32.pt": (
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        "https://openaipublic.azureedge.net/clip/models/"
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    ),
    "ViT-B-16.pt": (
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
        "https://openaipublic.azureedge.net/clip/models/"
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    ),
}
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


class WeightsNotFoundError(FileNotFoundError):
    """CLIP weights that cannot be found, downloaded or verified."""


class WeightsMismatchError(WeightsNotFoundError):
    """A weights file whose SHA-256 is not the one recorded for it (on its card, or OpenAI's published one)."""


def card_of(path: str | Path) -> Path:
    """Where the card of weights file `path` lies: beside it, with .json (splip.miniclip, splip.pretrain)."""
    return Path(path).with_suffix(".json")


def read_card(path: str | Path) -> dict | None:
    """The card of weights file `path` (a JSON object with its "sha256"), or None where there is no
    readable one."""
    card = card_of(path)
    try:
        content = json.loads(card.read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) and isinstance(content.get("sha256"), str) else None


def check_weights_card(path: str | Path, required: bool = False) -> dict | None:
    """The card beside weights file `path`, once the file's SHA-256 matches the one it records (None
    where there is no card, unless `required`). A file that differs (changed, cut short, replaced) is
    one clear error naming it, both digests and the remedy, before any loader reads it."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {str(path)!r} not found (looked for {path.resolve()})")
    card = read_card(path)
    if card is None:
        if required:
            raise WeightsNotFoundError(f"{path} has no card: expected {card_of(path)}, a JSON file with its "
                                       "\"sha256\" (written with the weights by splip.miniclip / splip.pretrain)")
        return None
    actual, expected = sha256_of(path), card["sha256"]
    if actual != expected:
        reproduce = card.get("reproduce")
        raise WeightsMismatchError(
            f"{path} does not match its card {card_of(path).name}: its SHA-256 is {actual[:12]}..., the card "
            f"records {expected[:12]}... (the file was changed, cut short or replaced). If it is one of the "
            f"repository's files, restore it with `git checkout weights/`"
            + (f"; or re-create it with: {reproduce}" if reproduce else "") + ".")
    return card


@dataclass
class Backbone:
    """A built open_clip CLIP plus what is needed to feed it and to label results."""

    model: open_clip.model.CLIP
    tokenizer: Callable[..., torch.Tensor]
    model_name: str
    weights: str  # human-readable provenance: "random init (seed 0)", "openai", a file path
    image_size: int

    @property
    def is_pretrained(self) -> bool:
        return not self.weights.startswith("random init")


def _looks_like_path(pretrained: str) -> bool:
    return os.sep in pretrained or "/" in pretrained or pretrained.endswith(_WEIGHT_SUFFIXES)


def _check_openai_checkpoint(path: Path) -> None:
    """Verify a file named like an OpenAI checkpoint against its published SHA-256."""
    expected, url = OPENAI_CHECKPOINTS[path.name]
    actual = sha256_of(path)
    if actual != expected:
        raise WeightsMismatchError(
            f"{path} is named like OpenAI's {path.name} but its SHA-256 is {actual}, not the published "
            f"{expected}: the file is incomplete or corrupt. Download it again from {url}"
        )


def load_backbone(
    model_name: str = "ViT-B-32",
    pretrained: str | Path | None = "openai",
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    seed: int = 0,
) -> Backbone:
    """Build an open_clip CLIP.

    `pretrained` is one of: an open_clip tag (``"openai"``; downloaded by open_clip where the network
    allows, cached in `cache_dir`), a local file (OpenAI's TorchScript ``.pt`` checkpoints, checked
    against their published SHA-256 when named like one, or an open_clip state dict), or None /
    ``"none"`` for a random init drawn from `seed`. OpenAI weights imply QuickGELU.
    """
    architecture(model_name)  # fails early, with the known names, on a typo
    if pretrained is None or str(pretrained).lower() in ("", "none"):
        with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
            torch.manual_seed(seed)
            model = open_clip.create_model(model_name, pretrained=None, device=device)
        weights = f"random init (seed {seed})"
    else:
        pretrained = str(pretrained)
        path = Path(pretrained).expanduser()
        if path.is_file() or _looks_like_path(pretrained):
            model = _load_from_file(model_name, path, device)
            weights = str(path.resolve())
        else:
            model = _load_from_tag(model_name, pretrained, device, cache_dir)
            weights = pretrained
    model.eval()
    image_size = model.visual.image_size
    image_size = image_size[0] if isinstance(image_size, (tuple, list)) else int(image_size)
    return Backbone(
        model=model,
        tokenizer=open_clip.get_tokenizer(model_name),
        model_name=model_name,
        weights=weights,
        image_size=image_size,
    )


def _load_from_file(model_name: str, path: Path, device: str | torch.device) -> torch.nn.Module:
    if not path.is_file():
        hint = ""
        if path.name in OPENAI_CHECKPOINTS:
            hint = f" Download it from {OPENAI_CHECKPOINTS[path.name][1]}"
        raise WeightsNotFoundError(
            f"CLIP weights file {path.name!r} not found: looked for {path.resolve()}.{hint} "
            "Or pass pretrained='openai' to let open_clip download the weights (needs network), "
            "or pretrained=None for a random init."
        )
    is_openai = path.name in OPENAI_CHECKPOINTS
    if is_openai:
        _check_openai_checkpoint(path)
    check_weights_card(path)  # our weights (weights/, runs/backbones/) carry their SHA-256 on a card
    try:
        # OpenAI's .pt files are TorchScript archives: open_clip converts them, which needs the
        # unrestricted loader (the hash check above vouches for the file).
        return open_clip.create_model(
            model_name, pretrained=str(path), device=device,
            force_quick_gelu=is_openai, weights_only=not is_openai,
        )
    except (RuntimeError, AssertionError, KeyError, ValueError) as error:
        # open_clip signals shape mismatches with RuntimeError (load_state_dict) or assertions.
        raise WeightsNotFoundError(
            f"{path} could not be loaded into open_clip model {model_name!r} ({error}). "
            "It must be an open_clip state dict or an OpenAI CLIP checkpoint of that architecture."
        ) from error


def _load_from_tag(
    model_name: str, tag: str, device: str | torch.device, cache_dir: str | Path | None
) -> torch.nn.Module:
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if tag not in tags:
        raise WeightsNotFoundError(
            f"{tag!r} is neither a file nor a pretrained tag of {model_name!r} "
            f"(tags: {', '.join(tags) or 'none'}). Pass a checkpoint path, a tag, or None."
        )
    source = open_clip.get_pretrained_cfg(model_name, tag)
    try:
        return open_clip.create_model(
            model_name, pretrained=tag, device=device,
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
    except RuntimeError as error:
        where = source.get("hf_hub") or source.get("url")
        url = source.get("url", "")
        raise WeightsNotFoundError(
            f"Could not get {model_name!r} weights {tag!r} (looked in the open_clip cache "
            f"{cache_dir or '~/.cache/huggingface and ~/.cache/clip'}, then tried to download from {where}; "
            f"no network?). Download the checkpoint by hand{' from ' + url if url else ''} and pass its "
            "path as `pretrained`."
        ) from error


def architecture(model_name: str) -> dict:
    """open_clip's config of `model_name` (embed_dim, vision_cfg, text_cfg) without building it."""
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ValueError(
            f"Unknown open_clip model {model_name!r}. Known: {', '.join(open_clip.list_models())}"
        )
    return config
