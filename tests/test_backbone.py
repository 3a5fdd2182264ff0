"""Backbone loading: tags, local files (open_clip state dicts, OpenAI checkpoints), random init."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from splip.backbone import (OPENAI_CHECKPOINTS, WeightsMismatchError, WeightsNotFoundError, check_weights_card,
                            load_backbone)
from splip.io import sha256_of


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = load_backbone("splip-tiny", None, seed=3)
    assert torch.equal(torch.rand(1), expected_next)
    b = load_backbone("splip-tiny", "none", seed=3)
    c = load_backbone("splip-tiny", None, seed=4)
    assert torch.equal(a.model.visual.conv1.weight, b.model.visual.conv1.weight)
    assert not torch.equal(a.model.visual.conv1.weight, c.model.visual.conv1.weight)
    assert a.weights == "random init (seed 3)" and not a.is_pretrained
    assert a.image_size == 48


def test_local_open_clip_state_dict_round_trips(tmp_path):
    source = load_backbone("splip-tiny", None, seed=1)
    path = tmp_path / "tiny.pt"
    torch.save(source.model.state_dict(), path)
    loaded = load_backbone("splip-tiny", str(path))
    assert loaded.is_pretrained and loaded.weights == str(path.resolve())
    for (name, a), (_, b) in zip(source.model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_missing_file_error_names_file_and_place(tmp_path):
    missing = tmp_path / "nowhere" / "ViT-B-32.pt"
    with pytest.raises(WeightsNotFoundError) as err:
        load_backbone("ViT-B-32", str(missing))
    message = str(err.value)
    assert "ViT-B-32.pt" in message and str(missing) in message
    assert OPENAI_CHECKPOINTS["ViT-B-32.pt"][1] in message  # where to get it


def test_openai_named_file_with_wrong_hash_is_refused(tmp_path):
    fake = tmp_path / "ViT-B-32.pt"
    fake.write_bytes(b"not really a checkpoint")
    with pytest.raises(WeightsNotFoundError, match="SHA-256"):
        load_backbone("ViT-B-32", str(fake))


def test_sha256_of_matches_hashlib(tmp_path):
    path = tmp_path / "blob"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert sha256_of(path, chunk_bytes=1000) == hashlib.sha256(data).hexdigest()


def test_unknown_tag_and_unknown_model_are_clear():
    with pytest.raises(WeightsNotFoundError, match="neither a file nor a pretrained tag"):
        load_backbone("splip-tiny", "laion9000")
    with pytest.raises(ValueError, match="Unknown open_clip model"):
        load_backbone("ViT-Q-99", None)


def test_wrong_architecture_file_is_a_clear_error(tmp_path):
    other = load_backbone("splip-tiny", None)
    path = tmp_path / "tiny.pt"
    torch.save(other.model.state_dict(), path)
    with pytest.raises(WeightsNotFoundError, match="could not be loaded"):
        load_backbone("ViT-B-32", str(path))


# ---------------------------------------------------------------------- weights with a card beside them

MINI = Path(__file__).resolve().parents[1] / "weights" / "splip-mini-tinyimagenet-seed0.pt"


def _copy_with_card(source: Path, folder: Path) -> Path:
    copy = folder / source.name
    shutil.copyfile(source, copy)
    shutil.copyfile(source.with_suffix(".json"), copy.with_suffix(".json"))
    return copy


def test_mini_clip_weights_match_their_card():
    card = check_weights_card(MINI, required=True)
    assert card["sha256"] == sha256_of(MINI) and card["weights"] == MINI.name


def test_corrupted_mini_clip_is_one_clear_error_before_loading(tmp_path):
    copy = _copy_with_card(MINI, tmp_path)
    load_backbone("splip-mini", str(copy))  # the intact copy loads
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: torch.load could well read it, as wrong weights
    copy.write_bytes(bytes(data))
    card = json.loads(copy.with_suffix(".json").read_text())
    with pytest.raises(WeightsMismatchError) as caught:
        load_backbone("splip-mini", str(copy))
    message = str(caught.value)
    assert str(copy) in message and copy.with_suffix(".json").name in message
    assert sha256_of(copy)[:12] in message and card["sha256"][:12] in message
    assert "git checkout weights/" in message and card["reproduce"] in message
    assert isinstance(caught.value, WeightsNotFoundError)  # callers catching the loader's errors still do
    with pytest.raises(WeightsMismatchError):
        check_weights_card(copy)


def test_card_is_optional_unless_required(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(load_backbone("splip-tiny", None).model.state_dict(), path)
    assert check_weights_card(path) is None
    with pytest.raises(WeightsNotFoundError, match="has no card"):
        check_weights_card(path, required=True)
    path.with_suffix(".json").write_text('{"note": "not a card: no sha256"}')
    assert check_weights_card(path) is None
    with pytest.raises(WeightsNotFoundError, match="not found"):
        check_weights_card(tmp_path / "missing.pt", required=True)
