"""How tables look in the notebooks and the book: a missing value is a dash, with a note on why.

A table says why its cells may be empty through ``frame.attrs["missing"]`` (set by the library's
table builders, e.g. :func:`splip.paper.comparison_table`, or by a notebook); without one the note
is :data:`DEFAULT_MISSING_NOTE`. :func:`use_in_notebook` makes IPython render every DataFrame and
Series this way, so no table in an executed notebook prints ``NaN``.
"""
from __future__ import annotations

import html

import pandas as pd

MISSING = "–"  # en dash
DEFAULT_MISSING_NOTE = "no value: not reported by the paper, or not measured for this run"


def with_missing_note(frame: pd.DataFrame, note: str) -> pd.DataFrame:
    """``frame`` with ``note`` as the reason its missing cells are empty (returned for chaining)."""
    frame.attrs["missing"] = note
    return frame


def missing_note(frame: pd.DataFrame | pd.Series) -> str | None:
    """The note under a table with missing values: "– : <why>"; None when nothing is missing."""
    if not frame.isna().to_numpy().any():
        return None
    return f"{MISSING} : {frame.attrs.get('missing', DEFAULT_MISSING_NOTE)}"


def _as_frame(data: pd.DataFrame | pd.Series) -> pd.DataFrame:
    if isinstance(data, pd.Series):
        frame = data.to_frame()
        frame.attrs = dict(data.attrs)
        return frame
    return data


def table_html(data: pd.DataFrame | pd.Series) -> str:
    """HTML of a table with dashes for missing values and, where there are any, the note."""
    frame = _as_frame(data)
    note = missing_note(frame)
    body = frame.to_html(na_rep=MISSING, border=0)
    return body if note is None else f'{body}\n<p class="table-note"><em>{html.escape(note)}</em></p>'


def table_text(data: pd.DataFrame | pd.Series) -> str:
    """Plain text of a table (terminals, nbval) with dashes for missing values and the note."""
    frame = _as_frame(data)
    note = missing_note(frame)
    body = frame.to_string(na_rep=MISSING)
    return body if note is None else f"{body}\n{note}"


def use_in_notebook() -> None:
    """Render every DataFrame and Series of this IPython session with :func:`table_html` and
    :func:`table_text`, and give pandas Stylers the same dash. A no-op outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    formatters = shell.display_formatter.formatters
    for kind in (pd.DataFrame, pd.Series):
        formatters["text/html"].for_type(kind, table_html)
        formatters["text/plain"].for_type(kind, lambda data, printer, cycle: printer.text(table_text(data)))
    pd.set_option("styler.format.na_rep", MISSING)
