"""Studies (splip.study): variant names and configurations, and the resumable run_variant."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from splip import paper
from splip.data import load_dataset
from splip.study import (CLIP_AT_LIKE, CLIP_AT_OVERRIDES, ablation_variants, run_variant, variant_config,
                         variant_folder)
from splip.train import TrainConfig

# A seconds-long configuration (as in tests/test_training.py, one epoch): random-init tiny CLIP,
# a very small synthetic benchmark.
SMALL = dict(pretrained=None, epochs=1, batch_size=8, progress=False,
             dataset_options={"num_classes": 8, "num_unseen": 2, "photos_per_class": 6, "sketches_per_photo": 1})
EXTRA = "synthetic again"


# ---------------------------------------------------------------------- names and configurations


def test_variant_folder_makes_safe_slugs():
    assert variant_folder("without B_v") == "without-b-v"
    assert variant_folder(CLIP_AT_LIKE) == "clip-at-like-shallow-visual-prompts-ln-fixed-margin-triplet"
    assert variant_folder("L_cls + L_tri, fixed margin") == "l-cls-l-tri-fixed-margin"
    for name in ablation_variants():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", variant_folder(name)), name
    folders = [variant_folder(name) for name in ablation_variants()]
    assert len(folders) == len(set(folders))


def test_variant_config_merges_nested_changes_into_the_base(tmp_path):
    base = {"epochs": 3, "lr_prompts": 0.01, "model": {"tune_layernorm": False, "num_text_prompts": 2},
            "loss": {"margin": "fixed", "alpha": 0.25}}
    changes = {"model": {"num_text_prompts": 6, "text_prompts": False}, "loss": {"beta": 0.0}}
    config = variant_config(base, changes, tmp_path / "v")
    assert config.epochs == 3 and config.lr_prompts == 0.01
    assert config.output_dir == str(tmp_path / "v")
    assert config.model.tune_layernorm is False  # kept from the base
    assert config.model.num_text_prompts == 6 and config.model.text_prompts is False  # changed
    assert config.model.text_guided_visual_prompts is True  # untouched default
    assert (config.loss.margin, config.loss.alpha, config.loss.beta) == ("fixed", 0.25, 0.0)
    assert base["model"] == {"tune_layernorm": False, "num_text_prompts": 2}  # the base is not modified
    plain = variant_config({}, {}, "out")
    assert plain.model == TrainConfig().model and plain.loss == TrainConfig().loss


def test_ablation_variants_cover_the_paper_rows_that_have_overrides():
    variants = ablation_variants()
    names = list(variants)
    assert names[0] == paper.FULL and variants[paper.FULL] == {}
    assert variants["no prompts (LayerNorms + losses only)"] == {"model": {
        "text_prompts": False, "text_guided_visual_prompts": False, "multilayer_visual_prompts": False}}
    assert variants["B_v only"] == {"model": {"text_prompts": False, "multilayer_visual_prompts": False}}
    with_overrides = [row for row in paper.ABLATIONS if row.overrides is not None]
    for row in with_overrides:
        assert variants[row.name] == row.overrides
    assert "L_cls only" not in variants  # the paper row our objective cannot express
    assert len(variants) == len(with_overrides) + 2
    for changes in variants.values():  # every variant is a valid configuration
        variant_config({}, changes, "out")


def test_clip_at_overrides_give_shallow_prompts_and_a_fixed_margin():
    config = variant_config({}, CLIP_AT_OVERRIDES, "out")
    model = config.model
    assert not (model.text_prompts or model.text_guided_visual_prompts or model.multilayer_visual_prompts)
    assert model.shallow_visual_prompts > 0
    assert config.loss.beta == 0.0 and config.loss.margin == "fixed"


# ---------------------------------------------------------------------- run_variant


class TrainerBuilt(Exception):
    pass


def refuse_training(*args, **kwargs):
    raise TrainerBuilt("run_variant built a Trainer")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished one-epoch run with an extra test set (the same synthetic benchmark)."""
    config = TrainConfig(output_dir=str(tmp_path_factory.mktemp("variant")), **SMALL)
    extra = load_dataset("synthetic", image_size=48, val_fraction=config.val_fraction, seed=config.seed,
                         **SMALL["dataset_options"])
    return config, run_variant(config, extra_tests={EXTRA: extra})


def test_run_variant_trains_tests_and_saves(finished):
    config, record = finished
    metrics = record["metrics"]
    assert set(metrics) == {"test", "history", EXTRA}
    assert [h["epoch"] for h in metrics["history"]] == [1]
    assert 0.0 <= metrics["test"]["zs/map@all"] <= 1.0
    assert not any(key.startswith(("gzs/", "fg/")) for key in metrics["test"])  # settings=("zs",)
    # The extra set is the same benchmark, so the same (best) model scores the same on it.
    assert metrics[EXTRA]["zs/map@all"] == pytest.approx(metrics["test"]["zs/map@all"], abs=1e-6)
    saved = json.loads((Path(config.output_dir) / "metrics.json").read_text())
    assert saved == record
    assert saved["run"]["config"]["lr_prompts"] == config.lr_prompts


def test_run_variant_returns_a_finished_run_without_training(finished, monkeypatch):
    config, record = finished
    monkeypatch.setattr("splip.study.Trainer", refuse_training)
    assert run_variant(replace(config)) == record
    assert run_variant(replace(config), extra_tests={EXTRA: None}) == record  # already tested on it
    assert run_variant(replace(config, progress=True, eval_batch_size=7)) == record  # run-only settings


@pytest.mark.parametrize("change", [{"lr_prompts": 0.5}, {"epochs": 2}, {"seed": 1}])
def test_run_variant_retrains_when_a_setting_that_matters_changes(finished, monkeypatch, change):
    config, _ = finished
    monkeypatch.setattr("splip.study.Trainer", refuse_training)
    with pytest.raises(TrainerBuilt):
        run_variant(replace(config, **change))


def test_run_variant_retrains_for_a_new_model_or_test_set(finished, monkeypatch):
    config, _ = finished
    monkeypatch.setattr("splip.study.Trainer", refuse_training)
    other_model = variant_config(dict(SMALL), {"model": {"text_prompts": False}},
                                 config.output_dir)
    with pytest.raises(TrainerBuilt):
        run_variant(other_model)
    with pytest.raises(TrainerBuilt):
        run_variant(replace(config), extra_tests={"another set": None})
