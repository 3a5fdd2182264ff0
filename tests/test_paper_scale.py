"""Smoke test of benchmarks/paper_scale.py on a tiny CLIP (no timings asserted)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_scale.py"
TINY = ["--backbone", "splip-tiny", "--classes", "4", "--threads", "1", "--timed-steps", "0"]


@pytest.fixture(scope="module")
def paper_scale():
    spec = importlib.util.spec_from_file_location("paper_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["paper_scale"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("paper_scale", None)


def test_table_has_a_row_per_setting_with_positive_numbers(paper_scale, capsys):
    paper_scale.main([*TINY, "--in-process"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("machine: CPU") and "torch" in out[0]
    header = next(i for i, line in enumerate(out) if line.split()[:2] == ["preset", "C"])
    assert out[header].split() == [c for column in paper_scale.COLUMNS for c in column.split()]
    rows = [line.split() for line in out[header + 1:header + 5]]
    assert {(r[2], r[3]) for r in rows} == {("off", "float32"), ("on", "float32"), ("off", "bf16"), ("on", "bf16")}
    for r in rows:
        assert r[0] == "sketchy" and r[1] == "4"
        assert float(r[6]) > 0 and float(r[9]) > 0  # step seconds, fixed GB
        assert float(r[13]) > 0  # GFLOP per triplet (fake-tensor count)
        # step-time and FLOP ratios for the checkpointed rows only (the per-triplet time ratio needs a
        # positive time slope, which a tiny model on a busy machine need not give)
        assert (r[12] == "-") == (r[14] == "-") == (r[2] == "off")
    footer = "\n".join(out[header + 5:])
    assert "Target: sketchy (batch 192" in footer and "float32 projection" in footer


def test_fresh_process_measurement(paper_scale):
    setting = paper_scale.Setting("quickdraw", True, "bf16", 1, "splip-tiny", 4, "cpu", 0, 1)
    m = paper_scale.measure_in_fresh_process(setting)
    assert m.setting == setting and m.num_classes == 4 and m.image_size == 48
    assert m.seconds > 0 and m.peak_bytes >= 0 and m.fixed_bytes > m.weight_bytes > 0


def test_real_class_lists_and_presets(paper_scale):
    counts = {p: len(paper_scale.seen_class_names(p)) for p in paper_scale.PRESET_SPLITS}
    assert counts == {"sketchy": 104, "sketchy25": 100, "tuberlin": 220, "quickdraw": 80}
    names = [n for p in paper_scale.PRESET_SPLITS for n in paper_scale.seen_class_names(p)]
    assert not any("_" in n or "-" in n for n in names)  # prompt text, as the dataset gives it
    assert paper_scale.preset_settings("sketchy") == {"batch_size": 192, "text_conditioning": "per_image"}


def test_largest_micro_batch(paper_scale):
    row = paper_scale.Row("sketchy", True, "bf16", 104, (1, 2), 192, 1.0, 1.0, 2.0,
                          activation_gb_per_triplet=0.5, const_gb=1.0, fixed_gb=1.0, projected_gb=98.0)
    assert [paper_scale.largest_micro_batch(row, b) for b in (2, 24, 40, 200)] == ["-", "44", "76", "all 192"]
