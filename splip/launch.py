"""The command line beside the notebooks, for long runs and several GPUs.

    python -m splip.train presets/sketchy.yaml data_root=/data epochs=5
    torchrun --nproc_per_node 4 -m splip.train presets/sketchy.yaml data_root=/data

A preset holds the train notebook's parameters (the same YAML papermill takes with -f); each
`key=value` overrides one, its value read as YAML (`epochs=5`, `pretrained=null`,
`lr_prompts=1.0e-3`). It runs splip.train.train_and_evaluate: baselines, training, test metrics;
under torchrun every process takes its share of each batch (splip.distributed) and process 0
writes the run folder and prints.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from splip.train import TrainConfig, summarize, train_and_evaluate

# Notebook parameters that only shape the notebook's figures: accepted, unused here.
NOTEBOOK_ONLY = ("num_examples",)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["epochs=5", "pretrained=null"] -> {"epochs": 5, "pretrained": None} (values read as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not key=value (e.g. epochs=5)")
        out[key.strip()] = yaml.safe_load(value)
    return out


def config_from(preset: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a preset file plus overrides; output_dir defaults to runs/<dataset>, as in
    the train notebook."""
    values: dict[str, Any] = {}
    if preset is not None:
        path = Path(preset)
        if not path.is_file():
            raise ValueError(f"preset file {path} does not exist; the presets are in presets/ (e.g. presets/sketchy.yaml)")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"preset file {path} must hold `key: value` lines, got {type(values).__name__}")
    values.update(overrides)
    for key in NOTEBOOK_ONLY:
        values.pop(key, None)
    values.setdefault("output_dir", f"runs/{values.get('dataset', TrainConfig.dataset)}")
    return TrainConfig.from_dict(values)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m splip.train`; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m splip.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", nargs="?", help="a YAML file of train-notebook parameters (presets/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="parameters overriding the preset")
    args = parser.parse_args(argv)
    preset, overrides = args.preset, list(args.overrides)
    if preset is not None and "=" in preset:  # no preset, only overrides
        preset, overrides = None, [preset, *overrides]
    try:
        config = config_from(preset, parse_overrides(overrides))
        config.check_can_run()  # a GPU where device names one, a writable output_dir: before any work
    except (ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results = train_and_evaluate(config)
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: process 0 speaks
        print(summarize(results))
        print(f"run folder: {config.output_dir}")
    return 0
