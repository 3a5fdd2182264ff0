"""Several processes (torchrun, gloo on the CPU) compute the one-process run, and the command line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from splip.data import TripletDataset, load_dataset
from splip.data.sampling import TripletBatchSampler
from splip.distributed import World
from splip.launch import config_from, parse_overrides

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"dataset": "synthetic", "backbone": "splip-tiny", "pretrained": None, "epochs": 2, "batch_size": 7,
         "val_fraction": 0.2, "progress": False, "device": "cpu",
         "dataset_options": {"num_classes": 8, "num_unseen": 2, "photos_per_class": 6, "sketches_per_photo": 1}}


def _run(tmp_path: Path, processes: int) -> Path:
    preset = tmp_path / "small.yaml"
    preset.write_text(yaml.safe_dump(SMALL))
    out = tmp_path / f"run{processes}"
    if processes == 1:
        command = [sys.executable, "-m", "splip.train"]
    else:
        torchrun = Path(sys.executable).with_name("torchrun")
        command = [str(torchrun), "--nproc_per_node", str(processes), "--master_port", "29517", "-m", "splip.train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*command, str(preset), f"output_dir={out}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "zs/map@all" in result.stdout and result.stdout.count("trainable ") == 1  # process 0 alone prints
    return out


def test_two_processes_compute_the_one_process_run(tmp_path):
    one, two = _run(tmp_path, 1), _run(tmp_path, 2)
    a, b = (json.loads((run / "metrics.json").read_text()) for run in (one, two))
    assert b["run"]["hardware"].startswith("2 processes")
    for column in ("frozen_clip", "untrained", "trained"):
        assert a["metrics"][column].keys() == b["metrics"][column].keys()
        for metric, value in a["metrics"][column].items():
            assert b["metrics"][column][metric] == pytest.approx(value, abs=1e-5), (column, metric)
    for x, y in zip(a["metrics"]["history"], b["metrics"]["history"], strict=True):
        for key in x:
            if key != "seconds":
                assert y[key] == pytest.approx(x[key], rel=1e-5, abs=1e-6), key
    # The weights after training: every step's gradient was the one-process gradient, up to float32
    # summation order (~1e-7), which Adam's per-parameter normalisation can lift to ~1e-5 on weights
    # whose gradients are near zero; a wrong share or weighting would move them by ~lr (3e-3).
    wa, wb = (torch.load(run / "last.pt", weights_only=True)["trainable"] for run in (one, two))
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=3e-4), name
    assert not list(two.glob(".*.tmp"))  # one writer, atomic writes


def test_sharded_batches_cover_each_global_batch_once():
    ds = load_dataset("synthetic", image_size=16, num_classes=6, num_unseen=1, photos_per_class=4, seed=0)
    triplets = TripletDataset(ds.train_sketches, ds.train_photos, seed=0)
    one = TripletBatchSampler(triplets, 7, seed=3)
    shares = [TripletBatchSampler(triplets, 7, seed=3, world=World(rank, 3)) for rank in range(3)]
    for sampler in (one, *shares):
        sampler.set_epoch(2)
    whole = list(one)
    assert len(whole) == len(triplets) // 7 and all(len(b) == 7 for b in whole)
    parts = [list(s) for s in shares]
    for step, batch in enumerate(whole):
        assert [k for rank in range(3) for k in parts[rank][step]] == batch
    # The order: randperm of the epoch's generator, the same on every iter().
    expected = torch.randperm(len(triplets), generator=torch.Generator().manual_seed(3 * 100_003 + 2))
    assert [k[0] for b in whole for k in b] == triplets.anchors[expected[:len(whole) * 7].numpy()].tolist()
    assert list(one) == whole


def test_command_line_reads_presets_and_overrides(tmp_path):
    assert parse_overrides(["epochs=5", "pretrained=null", "lr_prompts=1.0e-3", "dataset=sketchy"]) == {
        "epochs": 5, "pretrained": None, "lr_prompts": 1e-3, "dataset": "sketchy"}
    config = config_from(ROOT / "presets" / "sketchy.yaml", {"epochs": 2, "alpha": 0.1})
    assert (config.dataset, config.epochs, config.loss.alpha, config.output_dir) == ("sketchy", 2, 0.1, "runs/sketchy")
    assert config.model.text_conditioning == "per_image" and config.val_fraction == 0
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["epochs"])
    with pytest.raises(ValueError, match="does not exist"):
        config_from(tmp_path / "nothing.yaml", {})
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        config_from(None, {"epoch": 3})
