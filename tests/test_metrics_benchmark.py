"""Smoke test of benchmarks/metrics_memory.py at a tiny size (no timings asserted)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "metrics_memory.py"


def test_table_has_floors_and_each_convention_with_values_equal_to_the_baseline() -> None:
    # The current splip.metrics as its own baseline: the values must then agree exactly.
    metrics_file = Path(__file__).resolve().parents[1] / "splip" / "metrics.py"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--queries", "300", "--gallery", "200", "--dim", "16", "--classes", "5",
         "--repeats", "2", "--convention", "sem-pcyc", "zse", "--baseline", str(metrics_file)],
        capture_output=True, text=True, timeout=600, check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("300 queries x 200 gallery, D=16, 5 classes, device=cpu")
    assert lines[1].split()[:6] == ["run", "chunk_size", "seconds", "floor", "s", "x"]
    rows = {line[:18].strip(): line[18:].split() for line in lines[2:-1]}
    assert list(rows) == ["matmul", "matmul out=", "sem-pcyc", "zse", "baseline sem-pcyc", "baseline zse"]
    for name, cells in rows.items():
        seconds, floor, ratio = float(cells[1]), float(cells[2]), float(cells[3])
        low, high = (float(x) for x in cells[4].split("-"))
        assert seconds >= 0 and floor >= 0 and low <= ratio <= high, name
        if name not in ("matmul", "matmul out="):
            values = [float(x) for x in cells[8:12]]  # map@all, p@100, map@200, p@200
            assert all(0 <= v <= 1 for v in values), name
    assert rows["baseline zse"][-1] == "0.0e+00" and rows["baseline sem-pcyc"][-1] == "0.0e+00"
    assert lines[-1].startswith("load average at the end")
