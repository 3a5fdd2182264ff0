"""The SpLIP paper's reported numbers (ECCV 2024, arXiv:2407.04207), as data, and tables that put
this project's results beside them (SPLIP_METHOD.md §8).

All paper numbers are in percent. They are keyed by this project's dataset names and metric keys:

- ``"sketchy"``: Sketchy-2 (Sketchy-Ext, 21 unseen classes of Yelamarthi et al.), mAP@200 and P@200;
  its fine-grained (FG-ZS-SBIR) numbers are on the same 21 classes.
- ``"sketchy25"``: Sketchy-1 (Sketchy-Ext, 25 unseen classes of the SAKE split), mAP@all and P@100.
- ``"tuberlin"``: TU-Berlin-Ext, 30 unseen classes, mAP@all and P@100.
- ``"quickdraw"``: QuickDraw-Extended, 30 unseen classes, mAP@all and P@200.

Metric keys are those of :func:`splip.evaluate.evaluate`: ``"zs/map@200"``, ``"gzs/p@100"``,
``"fg/acc@1"``... The ablation numbers come from a secondary summary of the paper and are marked
unverified. The synthetic benchmark is this project's own: the paper has no numbers for it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from splip.metrics import DEFAULT_CONVENTION
from splip.io import display_path
from splip.tables import with_missing_note
from splip.pretrain import SYNTHETIC_PHOTOS

PAPER_COLUMN = "paper (ECCV'24, ViT-B/32 OpenAI, real data)"
PAPER_SETUP = "CLIP ViT-B/32 with OpenAI weights, trained and tested on the real benchmark"
UNVERIFIED = "unverified, from a secondary summary"
ABLATION_DATASET = "sketchy"
NO_PAPER_NUMBERS = {
    "synthetic": "none: synthetic data, not in the paper",
}

# Table 1: category-level ZS-SBIR. Method -> dataset -> metric -> percent.
ZS_TABLE: dict[str, dict[str, dict[str, float]]] = {
    "SpLIP": {
        "sketchy25": {"zs/map@all": 80.2, "zs/p@100": 86.7},
        "sketchy": {"zs/map@200": 76.4, "zs/p@200": 77.3},
        "tuberlin": {"zs/map@all": 73.1, "zs/p@100": 78.2},
        "quickdraw": {"zs/map@all": 34.2, "zs/p@200": 44.6},
    },
    "CLIP-AT (CVPR'23)": {
        "sketchy": {"zs/map@200": 72.3, "zs/p@200": 72.5},
        "tuberlin": {"zs/map@all": 65.1, "zs/p@100": 73.2},
        "quickdraw": {"zs/map@all": 20.2, "zs/p@200": 38.8},
    },
    "MARL (WACV'24)": {
        "sketchy": {"zs/map@200": 69.1, "zs/p@200": 75.5},
        "tuberlin": {"zs/map@all": 70.5, "zs/p@100": 77.7},
        "quickdraw": {"zs/map@all": 32.7, "zs/p@200": 42.5},
    },
    "ZSE-Ret (CVPR'23)": {
        "sketchy25": {"zs/map@all": 73.6, "zs/p@100": 80.8},
        "tuberlin": {"zs/map@all": 56.9, "zs/p@100": 63.7},
        "quickdraw": {"zs/map@all": 14.2, "zs/p@200": 20.2},
    },
}

# Table 2: generalised ZS-SBIR.
GZS_TABLE: dict[str, dict[str, dict[str, float]]] = {
    "SpLIP": {
        "sketchy": {"gzs/map@200": 68.2, "gzs/p@200": 74.5},
        "tuberlin": {"gzs/map@all": 66.7, "gzs/p@100": 70.3},
    },
    "CLIP-AT (CVPR'23)": {
        "sketchy": {"gzs/map@200": 55.6, "gzs/p@200": 62.7},
        "tuberlin": {"gzs/map@all": 60.9, "gzs/p@100": 63.8},
    },
}

# Table 3: fine-grained ZS-SBIR on Sketchy (the 21 unseen classes of Sketchy-2).
FG_TABLE: dict[str, dict[str, dict[str, float]]] = {
    "SpLIP": {"sketchy": {"fg/acc@1": 33.45, "fg/acc@5": 66.71}},
    "CLIP-AT (CVPR'23)": {"sketchy": {"fg/acc@1": 28.68, "fg/acc@5": 62.34}},
}

TABLE_NAMES = {"zs": "Table 1 (ZS-SBIR)", "gzs": "Table 2 (GZS-SBIR)", "fg": "Table 3 (FG-ZS-SBIR)"}
_TABLES = {"zs": ZS_TABLE, "gzs": GZS_TABLE, "fg": FG_TABLE}


@dataclass(frozen=True)
class AblationRow:
    """One row of the paper's ablations on Sketchy-2 (:data:`ABLATION_DATASET`), marked :data:`UNVERIFIED`.

    ``overrides`` is the setting in TrainConfig terms (nested ``{"model": {...}, "loss": {...}}``
    changes to the defaults, as :meth:`splip.train.TrainConfig.from_dict` reads them), or None where
    our objective cannot express it (its triplet term always has weight 1).
    """

    name: str
    table: str  # "loss" or "module"
    metrics: dict[str, float]  # percent
    overrides: dict[str, dict[str, Any]] | None = field(default=None)


FULL = "full SpLIP"
ABLATIONS: tuple[AblationRow, ...] = (
    AblationRow(FULL, "loss+module",
                {"zs/map@200": 76.4, "zs/p@200": 77.3, "fg/acc@1": 33.45, "fg/acc@5": 66.71}, {}),
    AblationRow("B_t only (without any visual prompt)", "module", {"zs/map@200": 68.8, "fg/acc@1": 26.54},
                {"model": {"text_guided_visual_prompts": False, "multilayer_visual_prompts": False}}),
    AblationRow("without B_v", "module", {"zs/map@200": 71.9, "fg/acc@1": 29.76},
                {"model": {"text_guided_visual_prompts": False}}),
    AblationRow("without B_t", "module", {"zs/map@200": 72.8, "fg/acc@1": 30.41},
                {"model": {"text_prompts": False}}),
    AblationRow("without B_vt", "module", {"zs/map@200": 70.5, "fg/acc@1": 28.92},
                {"model": {"multilayer_visual_prompts": False}}),
    AblationRow("without LayerNorm tuning", "module", {"zs/map@200": 74.2, "fg/acc@1": 31.24},
                {"model": {"tune_layernorm": False}}),
    AblationRow("without jigsaw (L_cls + L_tri, adaptive margin)", "loss",
                {"zs/map@200": 74.5, "zs/p@200": 75.1, "fg/acc@1": 31.23, "fg/acc@5": 63.54},
                {"loss": {"beta": 0.0}}),
    AblationRow("L_cls + L_tri, fixed margin", "loss",
                {"zs/map@200": 73.1, "zs/p@200": 73.9, "fg/acc@1": 30.07, "fg/acc@5": 62.95},
                {"loss": {"beta": 0.0, "margin": "fixed"}}),
    AblationRow("L_tri only, fixed margin", "loss",
                {"zs/map@200": 71.6, "zs/p@200": 72.7, "fg/acc@1": 26.54, "fg/acc@5": 59.92},
                {"loss": {"alpha": 0.0, "beta": 0.0, "margin": "fixed"}}),
    AblationRow("L_cls only", "loss",
                {"zs/map@200": 57.5, "zs/p@200": 58.1, "fg/acc@1": 17.23, "fg/acc@5": 39.41}),
)


def paper_metrics(dataset: str, method: str = "SpLIP") -> dict[str, tuple[float, str]]:
    """Every number the paper reports for `method` on `dataset`: metric key -> (percent, table name).

    Empty for a dataset the paper does not cover (e.g. "synthetic").
    """
    methods = set(ZS_TABLE) | set(GZS_TABLE) | set(FG_TABLE)
    if method not in methods:
        raise ValueError(f"unknown method {method!r}; the paper's tables hold {sorted(methods)}")
    out: dict[str, tuple[float, str]] = {}
    for setting, table in _TABLES.items():
        for key, value in table.get(method, {}).get(dataset, {}).items():
            out[key] = (value, TABLE_NAMES[setting])
    return out


def _metric_order(key: str) -> tuple[int, int, float, str]:
    """ZS, GZS, FG; then mAP, P, Acc; then K ascending with "all" last."""
    setting, _, name = key.partition("/")
    kind, _, k = name.partition("@")
    kinds = ("map", "p", "acc")
    return (list(_TABLES).index(setting) if setting in _TABLES else len(_TABLES),
            kinds.index(kind) if kind in kinds else len(kinds),
            float(k) if k.isdigit() else float("inf"), key)


# Keys of a run's metrics.json "metrics" (splip.train.train_and_evaluate) -> column label.
RUN_COLUMNS = {
    "frozen_clip": "frozen CLIP, no prompts",
    "untrained": "SpLIP before training",
    "trained": "SpLIP trained",
}


def run_columns(results: Mapping[str, Any]) -> dict[str, Mapping[str, float]]:
    """The test metrics of a run's results (those of RUN_COLUMNS it has), keyed by column label."""
    return {label: results[key] for key, label in RUN_COLUMNS.items() if key in results}


def comparison_table(runs: Mapping[str, Mapping[str, float]], dataset: str,
                     baselines: bool = False, convention: str = DEFAULT_CONVENTION) -> pd.DataFrame:
    """Our metrics (fractions, shown as percent) beside the paper's SpLIP numbers for `dataset`.

    `runs` maps a column label (e.g. "untrained", "trained") to metrics as returned by
    splip.evaluate.evaluate. Rows: every metric in `runs` or in the paper for `dataset`, ordered
    ZS, GZS, FG. Columns: "<label> (%)" per run, :data:`PAPER_COLUMN` (SpLIP), with `baselines` one
    column per other method the paper reports on `dataset`, and "paper source" (the table a number comes
    from, or why there is none), and "metric convention": ours (`convention`, splip.metrics) and the
    paper's, which the paper does not state. A missing number is NaN (a dash in the notebooks, splip.tables); nothing is invented: for a
    dataset the paper does not cover, every paper cell is NaN and "paper source" says so.
    """
    methods = ["SpLIP"]
    if baselines:
        methods += [m for m in ZS_TABLE if m != "SpLIP"]
    reported = {m: paper_metrics(dataset, m) for m in methods}
    keys = sorted({k for metrics in runs.values() for k in metrics} | set(reported["SpLIP"]), key=_metric_order)
    table = pd.DataFrame(index=pd.Index(keys, name="metric"))
    for label, metrics in runs.items():
        table[f"{label} (%)"] = [100.0 * metrics[k] if k in metrics else np.nan for k in keys]
    for method in methods:
        values = [reported[method][k][0] if k in reported[method] else np.nan for k in keys]
        if method == "SpLIP":
            table[PAPER_COLUMN] = values
        elif reported[method]:  # a baseline the paper has no number for on this dataset adds no column
            table[f"{method}, as reported in the paper"] = values
    if dataset in NO_PAPER_NUMBERS:
        sources = [NO_PAPER_NUMBERS[dataset]] * len(keys)
    else:
        sources = [reported["SpLIP"][k][1] if k in reported["SpLIP"] else "not reported in the paper" for k in keys]
    table["paper source"] = sources
    table["metric convention"] = [
        "Acc@K: rank of the source photo (no variants)" if k.startswith("fg/")
        else f"ours: {convention}; paper: not stated" for k in keys]
    return with_missing_note(table.round(2), "no value: the paper reports no such number for this dataset (see "
                             "\"paper source\"), or the run has no such metric")


def paper_table(setting: str = "zs") -> pd.DataFrame:
    """One of the paper's result tables, percent: rows = methods, columns = (dataset, metric).

    `setting`: "zs" (Table 1), "gzs" (Table 2) or "fg" (Table 3). NaN: not reported.
    """
    if setting not in _TABLES:
        raise ValueError(f"setting must be one of {list(_TABLES)}, got {setting!r}")
    source = _TABLES[setting]
    datasets = [d for d in ("sketchy25", "sketchy", "tuberlin", "quickdraw")
                if any(d in per_method for per_method in source.values())]
    columns = [(d, k) for d in datasets
               for k in sorted({k for m in source.values() for k in m.get(d, {})}, key=_metric_order)]
    frame = pd.DataFrame([[source[m].get(d, {}).get(k, np.nan) for d, k in columns] for m in source],
                         index=pd.Index(list(source), name="method"),
                         columns=pd.MultiIndex.from_tuples(columns, names=["dataset", "metric"]))
    return with_missing_note(frame, "not reported in the paper")


def ablation_table(table: str | None = None) -> pd.DataFrame:
    """The paper's ablations (:data:`ABLATIONS`), percent, one row per setting, marked unverified.

    `table`: "loss" or "module" to keep one of the two ablation tables, None for both.
    """
    if table not in (None, "loss", "module"):
        raise ValueError(f"table must be 'loss', 'module' or None, got {table!r}")
    rows = [r for r in ABLATIONS if table is None or table in r.table.split("+")]
    keys = sorted({k for r in rows for k in r.metrics}, key=_metric_order)
    frame = pd.DataFrame([[r.metrics.get(k, np.nan) for k in keys] for r in rows],
                         index=pd.Index([r.name for r in rows], name="setting"), columns=keys)
    frame["source"] = f"paper, Sketchy-2, {UNVERIFIED}"
    return with_missing_note(frame, "not reported in the paper for this setting")


def _openai_weights(weights: str) -> bool:
    # A local file named like OpenAI's checkpoint was checked against its published SHA-256 on load.
    return weights == "openai" or Path(weights).name == "ViT-B-32.pt"


def provenance_note(run: Mapping[str, Any]) -> str:
    """A Markdown paragraph saying what produced a run's numbers and how they relate to the paper.

    `run` is :meth:`splip.train.Trainer.run_info` (also stored as "run" in a metrics.json).
    """
    config = run.get("config", {})
    weights = f"`{display_path(run['weights'])}`"
    if config.get("pretrained") == SYNTHETIC_PHOTOS:
        weights += " (pretrained by this project on the synthetic photos, never on a sketch: splip.pretrain)"
    lines = [
        f"**What produced these numbers:** dataset `{run['dataset']}` "
        f"({'synthetic data' if run['synthetic_data'] else 'real data'}), backbone `{run['backbone']}` "
        f"with weights {weights}, seed {run['seed']}, {config.get('epochs', '?')} epochs of batch "
        f"{config.get('batch_size', '?')}, on {run['hardware']} (torch {run['torch']}, open_clip {run['open_clip']})."
    ]
    caveats = []
    if run["synthetic_data"]:
        caveats.append("the data is synthetic (the paper has no numbers for it)")
    if not run["pretrained_backbone"]:
        caveats.append("the backbone is randomly initialised, not a pretrained CLIP")
    elif run["backbone"] != "ViT-B-32" or not _openai_weights(str(run["weights"])):
        caveats.append(f"the backbone is not the paper's ({PAPER_SETUP})")
    if caveats:
        scope = ("These numbers test that the pipeline runs and learns"
                 if run["synthetic_data"] or not run["pretrained_backbone"] else
                 "These numbers test the method on real data at a smaller scale")
        lines.append(
            "**Not a reproduction of the paper:** " + "; ".join(caveats) + f". {scope}; they say nothing about how SpLIP "
            "compares with the paper's results."
        )
    else:
        lines.append(f"Same backbone and weights as the paper ({PAPER_SETUP}); other settings are listed above.")
    return "\n\n".join(lines)
