"""Studies made of many training runs: the ablation variants and a resumable runner.

A variant is a set of changes to a base TrainConfig (nested {"model": {...}, "loss": {...}} as
TrainConfig.from_dict reads them). `run_variant` trains one, tests it, writes metrics.json and, when
that file already holds the same configuration, returns it without training: an interrupted study
is resumed by running it again.
"""
from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

from splip import paper
from splip.data import SBIRDataset
from splip.evaluate import FG_KS, REPORTED_METRICS, evaluate
from splip.io import load_json
from splip.train import TrainConfig, Trainer, computed_settings

PROMPTS_OFF = {"text_prompts": False, "text_guided_visual_prompts": False, "multilayer_visual_prompts": False}
CLIP_AT_LIKE = "CLIP-AT-like (shallow visual prompts + LN, fixed-margin triplet)"
# CLIP-AT (Sain et al., CVPR'23) as far as our objective can express it: 4 learnable visual tokens
# per modality at the first layer, LayerNorm tuning, L_tri with the fixed margin 0.2, and L_cls
# against the unprompted class texts; no jigsaw (CLIP-AT's patch-shuffling loss is not ours).
CLIP_AT_OVERRIDES = {"model": {**PROMPTS_OFF, "shallow_visual_prompts": 4}, "loss": {"beta": 0.0, "margin": "fixed"}}


def ablation_variants() -> dict[str, dict[str, Any]]:
    """Full SpLIP, "no prompts" and "B_v only" (prompt-sharing study without paper numbers), then
    the paper's ablation rows that our objective can express (splip.paper.ABLATIONS)."""
    rows = {row.name: row.overrides for row in paper.ABLATIONS if row.overrides is not None}
    extra = {
        "no prompts (LayerNorms + losses only)": {"model": PROMPTS_OFF},
        "B_v only": {"model": {"text_prompts": False, "multilayer_visual_prompts": False}},
    }
    return {paper.FULL: rows.pop(paper.FULL)} | extra | rows


def metric_names(dataset: str, settings: tuple[str, ...] = ("zs",)) -> tuple[str, ...]:
    """The metrics a run on `dataset` can be tested with under `settings` (keys of
    splip.evaluate.evaluate, e.g. "zs/map@all"; "fg/..." only where the dataset knows each sketch's photo)."""
    reported = REPORTED_METRICS.get(str(dataset).lower(), ("map@all",))
    out = [f"{setting}/{name}" for setting in ("zs", "gzs") if setting in settings for name in reported]
    if "fg" in settings:
        out += [f"fg/acc@{k}" for k in FG_KS]
    return tuple(out)


def variant_config(base: Mapping[str, Any], changes: Mapping[str, Any], output_dir: str | Path) -> TrainConfig:
    """`base` (flat TrainConfig terms plus optional "model"/"loss" dicts) with `changes` merged in."""
    return TrainConfig.from_dict({
        **base, "output_dir": str(output_dir),
        "model": {**base.get("model", {}), **changes.get("model", {})},
        "loss": {**base.get("loss", {}), **changes.get("loss", {})},
    })


def variant_folder(name: str) -> str:
    """A file-system-safe folder name for a variant: "without B_v" -> "without-b-v"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _same_run(saved: Mapping[str, Any], config: TrainConfig) -> bool:
    """Whether a saved run's config computes what `config` would (a moved folder still counts)."""
    saved, ours = computed_settings(saved), computed_settings(asdict(config))
    return all(saved.get(key) == value for key, value in ours.items() if key != "output_dir")


def run_variant(config: TrainConfig, settings: tuple[str, ...] = ("zs",),
                extra_tests: Mapping[str, SBIRDataset] | None = None) -> dict[str, Any]:
    """Train `config` (resuming from its last.pt), reload its selected epoch, test it on the
    dataset's unseen classes and on each of `extra_tests` (test split; e.g. a cross-dataset set),
    and save {"test": ..., "<name>": ..., "history": ...} with provenance to output_dir/metrics.json.
    Returns the saved record; a metrics.json of the same configuration is returned as it is.
    """
    path = Path(config.output_dir) / "metrics.json"
    if path.is_file():
        saved = load_json(path)
        if _same_run(saved["run"]["config"], config) and set(extra_tests or {}) <= set(saved["metrics"]):
            return saved
    trainer = Trainer(config)
    trainer.fit()
    trainer.load_checkpoint(trainer.selected_checkpoint, training_state=False)
    metrics = {"test": trainer.evaluate(settings=settings), "history": trainer.history}
    for name, dataset in (extra_tests or {}).items():
        metrics[name] = evaluate(trainer.model, dataset, "test", ("zs",), batch_size=config.eval_batch_size,
                                 convention=config.metric_convention)
    return load_json(trainer.save_metrics(metrics))
