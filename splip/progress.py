"""Progress bars for the library's long loops: tqdm's auto bar (a widget in a notebook where
ipywidgets is installed, text elsewhere). Import ``tqdm`` from here, not from ``tqdm.auto``."""
from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # Without ipywidgets tqdm.auto warns, naming its own file's absolute path (which would end up in
    # every executed notebook), and falls back to the text bar: the bar the book shows anyway.
    warnings.filterwarnings("ignore", message="IProgress not found")
    from tqdm.auto import tqdm

__all__ = ["tqdm"]
