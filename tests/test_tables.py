"""How outputs show tables and paths: a dash with a note for missing values, no machine paths."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from splip import paper
from splip.io import display_path
from splip.tables import MISSING, missing_note, table_html, table_text, with_missing_note


def test_missing_values_are_dashes_with_the_tables_own_note():
    frame = with_missing_note(pd.DataFrame({"ours": [25.5, np.nan], "paper": [np.nan, 71.9]}), "not run")
    text, html = table_text(frame), table_html(frame)
    assert "NaN" not in text and "NaN" not in html and "nan" not in html.lower().replace("dataframe", "")
    assert text.count(MISSING) == 3 and text.endswith(f"{MISSING} : not run")  # two cells + the note
    assert html.count(f"<td>{MISSING}</td>") == 2 and "not run" in html
    assert missing_note(pd.DataFrame({"a": [1.0]})) is None and "<em>" not in table_html(pd.DataFrame({"a": [1.0]}))
    series = pd.Series({"a": 1.0, "b": np.nan})
    assert MISSING in table_text(series) and "NaN" not in table_text(series)


def test_the_library_tables_say_why_a_cell_is_empty():
    comparison = paper.comparison_table({"trained": {"zs/map@all": 0.5}}, "synthetic")
    assert "paper reports no such number" in missing_note(comparison)
    assert missing_note(paper.paper_table("zs")) == f"{MISSING} : not reported in the paper"
    assert "not reported in the paper" in missing_note(paper.ablation_table())


def test_display_path_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    repo = tmp_path / "checkout"
    (repo / "runs").mkdir(parents=True)
    monkeypatch.chdir(repo)
    assert display_path(repo / "runs" / "x.pt") == "runs/x.pt"
    assert display_path(tmp_path / "shared" / "data") == "../shared/data"  # data beside the checkout
    assert display_path("runs/y.pt") == "runs/y.pt" and display_path("random init (seed 0)") == "random init (seed 0)"
    far = display_path("/usr/lib/python3/site-packages/x.py")
    assert far == "…/site-packages/x.py" and str(tmp_path) not in far


@pytest.mark.parametrize("weights", ["/somewhere/far/away/weights/mini.pt", "weights/mini.pt"])
def test_provenance_note_shows_no_absolute_weights_path(weights):
    run = {"dataset": "quickdraw-mini", "synthetic_data": False, "backbone": "splip-mini", "weights": weights,
           "pretrained_backbone": True, "seed": 0, "hardware": "CPU", "torch": "x", "open_clip": "y", "config": {}}
    note = paper.provenance_note(run)
    assert "mini.pt" in note and "/somewhere/far" not in note
