"""The project's Jupyter kernel and JupyterLab: the kernel spec that `pip install -e '.[dev]'` installs is
the one the notebooks name, and JupyterLab runs train.ipynb's first cells with it in headless chromium
(scripts/check_lab.py, about 20 s; skipped where chromium, chromedriver or selenium are missing).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "share" / "jupyter" / "kernels" / "splip" / "kernel.json"


def test_notebooks_name_the_shipped_kernel():
    spec = json.loads(SHIPPED.read_text())
    assert spec["argv"][0] == "python"  # jupyter_client runs it with the interpreter that runs jupyter
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        named = json.loads(path.read_text())["metadata"]["kernelspec"]
        assert (named["name"], named["display_name"]) == ("splip", spec["display_name"]), path.name


def test_kernel_spec_is_installed_in_this_environment():
    kernelspec = pytest.importorskip("jupyter_client.kernelspec")
    try:
        installed = kernelspec.KernelSpecManager().get_kernel_spec("splip")
    except kernelspec.NoSuchKernel:
        pytest.fail("no kernel 'splip' in this environment: reinstall with `pip install -e '.[dev]'`")
    assert json.loads(Path(installed.resource_dir, "kernel.json").read_text()) == json.loads(SHIPPED.read_text())


def test_jupyterlab_runs_the_train_notebook(tmp_path):
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (Debian: apt-get install -y chromium chromium-driver)")
    pytest.importorskip("selenium", reason="needs selenium (the dev extras)")
    pytest.importorskip("jupyterlab", reason="needs jupyterlab (the dev extras)")
    notebook = ROOT / "notebooks" / "train.ipynb"
    before = notebook.read_bytes()
    shot = tmp_path / "jupyterlab-train.png"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_lab.py"), "--screenshot", str(shot)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "JupyterLab check passed" in result.stdout
    assert shot.is_file()
    assert notebook.read_bytes() == before
