"""Build the book: execute every notebook with papermill into book/, then run jupyter-book.

    .venv/bin/python scripts/build_book.py            # execute the notebooks, then build
    .venv/bin/python scripts/build_book.py --no-execute   # build from the notebooks already in book/

Notebooks run from the repository root (so runs/ and data/ are the root's), in the order of
NOTEBOOKS, at their default parameters except where NOTEBOOKS names a preset: the replica study runs
presets/studies/replica.yaml (about an hour on 2 CPU cores the first time; its finished runs are
cached in runs/replica/). results.ipynb comes last, since it reads the metrics.json files the others
write. The book is built with warnings as errors into book/_build/html; the book itself
executes nothing (_config.yml: execute_notebooks "off").
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import papermill
import yaml
from papermill.exceptions import PapermillExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"train": None, "ablations": None, "tsne": None, "miniclip": None,
             "replica": "presets/studies/replica.yaml", "results": None}  # name -> parameters file
BOOK = ROOT / "book"


def execute_notebooks() -> None:
    for name, preset in NOTEBOOKS.items():
        source, target = ROOT / "notebooks" / f"{name}.ipynb", BOOK / f"{name}.ipynb"
        parameters = yaml.safe_load((ROOT / preset).read_text()) if preset else {}
        start = time.perf_counter()
        try:
            papermill.execute_notebook(source, target, parameters=parameters, kernel_name="python3", cwd=str(ROOT),
                                       progress_bar=False)
        except PapermillExecutionError as error:
            sys.exit(f"{source.relative_to(ROOT)} failed (its outputs are in {target.relative_to(ROOT)}):{error}")
        print(f"executed {source.relative_to(ROOT)} -> {target.relative_to(ROOT)} "
              f"in {time.perf_counter() - start:.0f} s", flush=True)


def build_book() -> None:
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(ROOT), "--path-output", str(BOOK), "--warningiserror", "--all"]
    print(" ".join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"jupyter-book failed (exit status {result.returncode}); see its messages above")
    print(f"book: {BOOK / '_build' / 'html' / 'index.html'}")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments not in ([], ["--no-execute"]):
        sys.exit(f"usage: {Path(__file__).name} [--no-execute]")
    if not arguments:
        execute_notebooks()
    build_book()
