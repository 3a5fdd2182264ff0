"""Build the book: execute every notebook with papermill into book/, then run jupyter-book.

    .venv/bin/python scripts/build_book.py            # execute the notebooks, then build
    .venv/bin/python scripts/build_book.py --no-execute   # build from the notebooks already in book/

Notebooks run from the repository root (so runs/ and data/ are the root's), in the order of
NOTEBOOKS, at their default parameters except where NOTEBOOKS names a preset: the replica study runs
presets/studies/replica.yaml (about an hour on 2 CPU cores the first time; its finished runs are
cached in runs/replica/). results.ipynb comes last, since it reads the metrics.json files the others
write. The book is built with warnings as errors into book/_build/html; the book itself
executes nothing (_config.yml: execute_notebooks "off").

Before the build, every page is prepared (also with --no-execute): its code cells are collapsed
(Jupyter Book's `hide-input` tag; the parameters cells stay open, so a reader sees what the page ran
with) and a "Reproduce this page" line with the exact papermill command goes under its title.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill
import yaml
from papermill.exceptions import PapermillExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"train": None, "ablations": None, "tsne": None, "miniclip": None,
             "replica": "presets/studies/replica.yaml", "results": None}  # name -> parameters file
BOOK = ROOT / "book"


OPEN_CELLS = {"parameters", "injected-parameters"}  # code cells that stay visible
REPRODUCE_TAG = "reproduce"  # marks the title cell that carries the "Reproduce this page" line


def papermill_command(name: str) -> str:
    """The command line that executes page `name` as this script does (run from the repository root)."""
    preset = NOTEBOOKS[name]
    return f"papermill notebooks/{name}.ipynb book/{name}.ipynb" + (f" -f {preset}" if preset else "")


def prepare_page(name: str) -> None:
    """Collapse the code cells of book/<name>.ipynb and put the reproduce line under its title (idempotent)."""
    path = BOOK / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        if not OPEN_CELLS & set(tags) and "hide-input" not in tags:
            tags.append("hide-input")
    title = next(cell for cell in notebook.cells if cell.cell_type == "markdown")
    if REPRODUCE_TAG not in title.metadata.setdefault("tags", []):
        heading, _, rest = title.source.partition("\n")
        line = (f"> **Reproduce this page:** `{papermill_command(name)}` (from the repository root, in the "
                "project's environment; `make book` rebuilds every page).")
        title.source = f"{heading}\n\n{line}\n{rest}"
        title.metadata["tags"].append(REPRODUCE_TAG)
    nbformat.write(notebook, path)


def execute_notebooks() -> None:
    # papermill records the paths it is given in each notebook's metadata: relative ones, as in the
    # reproduce line, so no page carries this machine's checkout path.
    os.chdir(ROOT)
    for name, preset in NOTEBOOKS.items():
        source, target = Path("notebooks") / f"{name}.ipynb", Path("book") / f"{name}.ipynb"
        parameters = yaml.safe_load((ROOT / preset).read_text()) if preset else {}
        start = time.perf_counter()
        try:
            # The notebook's own kernel ("splip"), as the reproduce line's command uses.
            papermill.execute_notebook(source, target, parameters=parameters, cwd=str(ROOT), progress_bar=False)
        except PapermillExecutionError as error:
            sys.exit(f"{source} failed (its outputs are in {target}):{error}")
        print(f"executed {source} -> {target} "
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
    for page in NOTEBOOKS:
        prepare_page(page)
    build_book()
