"""Figures for the notebooks: training curves, data examples, retrieval examples, ablation bars
(single runs and seed means), t-SNE maps.

Every function returns a `matplotlib.figure.Figure` built without pyplot, so a notebook shows it
once (as the cell's value) and nothing stays registered in pyplot's global state.

The statistical figures (curves, bars, seed dot plots, t-SNE maps) are drawn with seaborn in one
theme, THEME, applied by the decorator `themed` for the duration of each call only (a
matplotlib.rc_context): importing this module or calling its functions changes no global style. The
image grids (data and retrieval examples) keep matplotlib's defaults.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import matplotlib
import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from cycler import cycler
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.manifold import TSNE

from splip.data import ImageSet, SBIRDataset
from splip.evaluate import Embeddings, embed
from splip.model import SpLIP
from splip.objective import DIAGNOSTICS

CORRECT, WRONG = "#1a9850", "#d73027"
PALETTE = sns.color_palette("colorblind")  # series colours of the statistical figures
OURS, PAPER, REFERENCE = PALETTE[0], "#999999", PALETTE[3]  # this study, the paper, a baseline line
# seaborn's whitegrid style at its "notebook" scale, the colorblind palette, small legends; the
# rcParams of THEME hold while a `themed` function runs.
THEME = {
    **sns.axes_style("whitegrid"),
    **sns.plotting_context("notebook"),
    "axes.prop_cycle": cycler(color=PALETTE),
    "legend.fontsize": 8, "legend.title_fontsize": 8, "legend.frameon": True,
}
MARKERS = {"photo": "o", "sketch": "^"}
_NOT_LOSSES = ("epoch", "seconds")


def themed(function: Callable[..., Figure]) -> Callable[..., Figure]:
    """Run `function` (a figure maker) under THEME: its figure, axes and artists take the theme's
    rcParams; matplotlib's global rcParams are the same before and after."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs) -> Figure:
        with matplotlib.rc_context(THEME):
            return function(*args, **kwargs)
    return wrapper


def _long(history: Sequence[Mapping[str, float]], keys: Sequence[str], name: str, scale: float = 1.0) -> pd.DataFrame:
    """history's `keys` per epoch in long form: columns epoch, `name` (the key), value (times `scale`)."""
    frame = pd.DataFrame([{k: r[k] for k in ("epoch", *keys)} for r in history])
    long = frame.melt(id_vars="epoch", value_vars=list(keys), var_name=name, value_name="value")
    long["value"] *= scale
    return long


@themed
def plot_training_curves(history: Sequence[Mapping[str, float]]) -> Figure:
    """Loss terms per epoch, the triplet diagnostics, and validation metrics per epoch (if any).

    `history` is Trainer.fit()'s list of per-epoch records: "epoch", the loss terms (means over the
    epoch's steps), the diagnostics "margin_mean" (mean triplet margin) and "active_triplets" (share
    of triplets with a non-zero hinge), "val_*" metrics on the held-out seen classes (absent with
    val_fraction=0), "seconds".
    """
    if not history:
        raise ValueError("empty history: nothing was trained (epochs=0?)")
    epochs = [r["epoch"] for r in history]
    losses = [k for k in history[0] if k not in (*_NOT_LOSSES, *DIAGNOSTICS) and not k.startswith("val_")]
    vals = [k for k in history[0] if k.startswith("val_")]
    fig = Figure(figsize=(13, 3.6), layout="constrained")
    ax_loss, ax_margin, ax_val = fig.subplots(1, 3)
    line = dict(x="epoch", y="value", marker="o", markersize=6, errorbar=None)
    loss = _long(history, losses, "term").replace({"term": {"loss": "total"}})
    terms = list(dict.fromkeys(loss["term"]))
    sns.lineplot(loss, hue="term", hue_order=terms, size="term", size_order=terms,
                 sizes={t: 2.5 if t == "total" else 1.2 for t in terms}, ax=ax_loss, **line)
    ax_loss.set(xlabel="epoch", ylabel="mean loss over the epoch", title="training losses")
    sns.move_legend(ax_loss, "best", title=None)
    if all(k in history[0] for k in DIAGNOSTICS):
        hinge = _long(history, DIAGNOSTICS, "diagnostic").replace(
            {"diagnostic": {"margin_mean": "mean margin", "active_triplets": "share of active triplets"}})
        sns.lineplot(hinge, hue="diagnostic", style="diagnostic", markers=["o", "s"], dashes=False, ax=ax_margin,
                     **{k: v for k, v in line.items() if k != "marker"})
        ax_margin.set_ylim(0, 1.05)
        sns.move_legend(ax_margin, "best", title=None)
    ax_margin.set(xlabel="epoch", ylabel="", title="triplet hinge (epoch means)")
    if vals:
        val = _long(history, vals, "metric", scale=100).replace({"metric": {k: k.removeprefix("val_") for k in vals}})
        sns.lineplot(val, hue="metric", ax=ax_val, **line)
        sns.move_legend(ax_val, "best", title=None)
    else:
        ax_val.text(0.5, 0.5, "no held-out classes\n(val_fraction=0: last epoch kept)", ha="center",
                    va="center", transform=ax_val.transAxes)
    ax_val.set(xlabel="epoch", ylabel="%", title="validation (held-out seen classes)")
    for ax in (ax_loss, ax_margin, ax_val):
        ax.set_xlim(epochs[0] - 0.3, epochs[-1] + 0.3)
        if len(epochs) <= 15:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def _show_image(ax, image, color: str | None, title: str, title_color: str = "black") -> None:
    ax.imshow(np.asarray(image.convert("RGB")))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7, color=title_color)
    for spine in ax.spines.values():
        spine.set_visible(color is not None)
        if color is not None:
            spine.set_edgecolor(color)
            spine.set_linewidth(4)


def plot_retrieval_examples(model: SpLIP, dataset: SBIRDataset, num_queries: int = 4, top_k: int = 10,
                            seed: int = 0, photos: Embeddings | None = None,
                            batch_size: int = 128) -> Figure:
    """ZS-SBIR examples: per row, a query sketch of an unseen class and its `top_k` photos.

    Queries are random test sketches (drawn with `seed`) of distinct classes as far as possible;
    the gallery is every readable test photo (`photos`: their precomputed embeddings, else
    embedded here). Ranking as in splip.metrics: cosine similarity descending, ties by gallery
    index. A green border marks a photo of the query's class, a red one a photo of another class.
    """
    sketches = dataset.test_sketches
    if num_queries < 1 or top_k < 1:
        raise ValueError(f"num_queries and top_k must be >= 1, got {num_queries}, {top_k}")
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(sketches.labels))
    picks = [int(rng.choice(np.flatnonzero(sketches.labels == classes[i % len(classes)])))
             for i in range(num_queries)]
    picks = list(dict.fromkeys(picks))  # few classes with one sketch each: no query twice
    queries = embed(model, sketches.subset(picks), batch_size=batch_size)
    gallery = photos if photos is not None else embed(model, dataset.test_photos, batch_size=batch_size)
    top_k = min(top_k, len(gallery.labels))
    sim = (queries.vectors @ gallery.vectors.T).numpy()  # (Q, G)
    ranked = np.argsort(-sim, axis=1, kind="stable")[:, :top_k]  # (Q, top_k)

    rows = len(queries.labels)
    fig = Figure(figsize=(1.35 * (top_k + 1), 1.6 * rows + 0.5), layout="constrained")
    axes = np.asarray(fig.subplots(rows, top_k + 1, squeeze=False))
    for row in range(rows):
        query = picks[int(queries.indices[row])]
        label = int(queries.labels[row])
        _show_image(axes[row, 0], sketches.raw_image(query), None, f"query: {dataset.classes[label]}")
        for rank, g in enumerate(ranked[row]):
            photo_label = int(gallery.labels[g])
            color = CORRECT if photo_label == label else WRONG
            _show_image(axes[row, rank + 1], dataset.test_photos.raw_image(int(gallery.indices[g])), color,
                        f"{rank + 1}. {dataset.classes[photo_label]}", color)
    fig.suptitle(f"Top-{top_k} photos per query sketch (unseen classes; green: same class, red: other class)",
                 fontsize=10)
    return fig


@themed
def plot_ablation(table: pd.DataFrame, ours: str, paper: str | None = None, ours_title: str = "this study",
                  paper_title: str = "paper (reference)") -> Figure:
    """Horizontal bars per setting (rows of `table`): column `ours` on the left and, if given, column
    `paper` on the right, each on its own axis (the two come from different data and backbones, so
    only the order of the settings is comparable). NaN bars are left out and marked "n/a".
    """
    panels = [(ours, ours_title)] + ([(paper, paper_title)] if paper is not None else [])
    fig = Figure(figsize=(5 * len(panels) + 2, 0.45 * len(table) + 1.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    names = [str(i) for i in table.index]
    y = np.arange(len(names))
    for ax, (column, title), color in zip(axes, panels, (OURS, PAPER)):
        values = table[column].to_numpy(dtype=float)
        sns.barplot(x=np.nan_to_num(values), y=y, orient="h", native_scale=True, color=color, ax=ax,
                    errorbar=None, width=0.8, saturation=1)
        top = np.nanmax(values) if np.isfinite(values).any() else 1.0
        for yi, v in zip(y, values):
            ax.text((v if np.isfinite(v) else 0) + 0.01 * top, yi, f"{v:.1f}" if np.isfinite(v) else "n/a",
                    va="center", fontsize=8)
        ax.set(title=title, xlabel=column, xlim=(0, 1.15 * top))
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(y, names)
    axes[0].set_ylim(len(names) - 0.5, -0.5)  # the first setting on top
    return fig


@themed
def plot_seed_means(runs: pd.DataFrame, metric: str, order: Sequence[str] | None = None, title: str = "",
                    reference: float | None = None, reference_label: str = "reference") -> Figure:
    """Mean over seeds (diamond), std (error bar) and every seed (dots) of `metric` per setting.

    `runs`: one row per (setting, seed), columns "setting", "seed" and `metric` (percent). Settings
    in `order` (default: first appearance), top to bottom. The axis spans the data, not zero, so
    that differences of a point stay visible; `reference` draws a dashed vertical line (a baseline).
    """
    order = list(dict.fromkeys(runs["setting"])) if order is None else list(order)
    grouped = runs.groupby("setting")[metric]
    means, stds = grouped.mean().reindex(order), grouped.std(ddof=1).reindex(order).fillna(0.0)
    fig = Figure(figsize=(9, 0.42 * len(order) + 1.4), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(order))
    # the seeds as dots just below each setting's row, the mean and std (ddof=1) on the row
    seeds = runs.loc[runs["setting"].isin(order), ["setting", metric]].copy()
    seeds["row"] = seeds["setting"].map({s: i + 0.18 for i, s in enumerate(order)})
    sns.scatterplot(seeds, x=metric, y="row", color="black", s=12, alpha=0.7, linewidth=0, ax=ax,
                    label="one seed", zorder=3)
    ax.errorbar(means.to_numpy(), y, xerr=stds.to_numpy(), fmt="D", color=OURS, ms=6, capsize=3,
                label="mean ± std over seeds", zorder=4)
    for yi, setting in zip(y, order):
        ax.annotate(f"{means[setting]:.2f} ± {stds[setting]:.2f}", (means[setting] + stds[setting], yi),
                    xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
    if reference is not None:
        ax.axvline(reference, color=REFERENCE, ls="--", lw=1.2, label=reference_label)
    ax.set_yticks(y, order)
    ax.set(ylabel="", ylim=(len(order) - 0.5, -0.5))  # the first setting on top
    ax.grid(axis="y", visible=False)
    low = float(np.nanmin(runs[metric])) if reference is None else min(float(np.nanmin(runs[metric])), reference)
    high = float(np.nanmax(means + stds))
    ax.set(xlabel=f"{metric} (%)", title=title, xlim=(low - 0.1 * (high - low), high + 0.25 * (high - low)))
    ax.legend(loc="lower right")
    return fig


def plot_class_examples(dataset: SBIRDataset, class_ids: Sequence[int], per_class: int = 3,
                        split: str = "test", seed: int = 0) -> Figure:
    """Per row, one class: `per_class` random sketches, then `per_class` random photos of `split`."""
    sketches = dataset.test_sketches if split == "test" else dataset.train_sketches
    photos = dataset.test_photos if split == "test" else dataset.train_photos
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(1.3 * 2 * per_class, 1.35 * len(class_ids)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(class_ids), 2 * per_class))
    for row, class_id in zip(axes, class_ids):
        for images, cells in ((sketches, row[:per_class]), (photos, row[per_class:])):
            members = np.flatnonzero(images.labels == class_id)
            picks = rng.choice(members, min(per_class, len(members)), replace=False)
            for ax in cells:
                ax.axis("off")
            for ax, index in zip(cells, picks):
                _show_image(ax, images.raw_image(int(index)), None, dataset.classes[class_id])
    return fig


def _sample_classes(images: ImageSet, class_ids: np.ndarray, per_class: int, rng: np.random.Generator) -> ImageSet:
    """Up to `per_class` random items of each class in `class_ids`, class by class."""
    chosen = []
    for c in class_ids:
        members = np.flatnonzero(images.labels == c)
        chosen.append(np.sort(rng.choice(members, min(per_class, len(members)), replace=False)))
    return images.subset(np.concatenate(chosen))


def tsne_frame(model: SpLIP, dataset: SBIRDataset, classes_per_split: int = 8, per_class: int = 20,
               perplexity: float = 30.0, seed: int = 0, batch_size: int = 128) -> pd.DataFrame:
    """2-D t-SNE (scikit-learn, PCA init, `seed`) of sketch and photo embeddings of `model`.

    Takes up to `classes_per_split` seen (training) and unseen (test) classes and up to `per_class`
    sketches and photos of each, all chosen with `seed` (so the same images for any model).
    Perplexity is capped at (n - 1) / 3 for small samples. Returns one row per image: x, y,
    class, label, modality ("sketch"/"photo"), seen (bool).
    """
    rng = np.random.default_rng(seed)
    parts = []
    for seen, ids, sketch_set, photo_set in (
        (True, dataset.train_ids, dataset.train_sketches, dataset.train_photos),
        (False, dataset.unseen_ids, dataset.test_sketches, dataset.test_photos),
    ):
        class_ids = np.sort(rng.choice(np.asarray(ids), min(classes_per_split, len(ids)), replace=False))
        for images in (sketch_set, photo_set):
            emb = embed(model, _sample_classes(images, class_ids, per_class, rng), batch_size=batch_size)
            parts.append((emb.vectors, emb.labels, images.modality, seen))
    vectors = torch.cat([p[0] for p in parts]).numpy()  # (N, D)
    n = len(vectors)
    coords = TSNE(n_components=2, perplexity=min(perplexity, (n - 1) / 3), init="pca",
                  random_state=seed).fit_transform(vectors)  # (N, 2)
    labels = np.concatenate([p[1] for p in parts])
    return pd.DataFrame({
        "x": coords[:, 0], "y": coords[:, 1], "label": labels,
        "class": [dataset.classes[c] for c in labels],
        "modality": np.concatenate([[p[2]] * len(p[1]) for p in parts]),
        "seen": np.concatenate([[p[3]] * len(p[1]) for p in parts]).astype(bool),
    })


@themed
def plot_tsne(frames: Mapping[str, pd.DataFrame]) -> Figure:
    """One t-SNE panel per entry of `frames` (title -> tsne_frame output), same legend for all.

    Colour = class (the same colour in every panel), marker = modality (o photo, ^ sketch),
    filled = seen (training) class, hollow = unseen (zero-shot test) class.
    """
    if not frames:
        raise ValueError("no t-SNE frame to plot")
    classes = sorted({(bool(s), c) for f in frames.values() for s, c in zip(f["seen"], f["class"])},
                     key=lambda sc: (not sc[0], sc[1]))
    palette = sns.color_palette("tab20" if len(classes) <= 20 else "husl", len(classes))
    color = {c: mcolors.to_hex(palette[i]) for i, (_, c) in enumerate(classes)}
    fig = Figure(figsize=(5.2 * len(frames) + 2.6, 5.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(frames)))
    for ax, (title, frame) in zip(axes, frames.items()):
        for (modality, seen), part in frame.groupby(["modality", "seen"]):
            colors = [color[c] for c in part["class"]]
            ax.scatter(part["x"], part["y"], marker=MARKERS[modality], s=22, linewidths=1.0,
                       facecolors=colors if seen else "none", edgecolors=colors, alpha=0.85)
        ax.set(title=title, xticks=[], yticks=[], xlabel="", ylabel="")
    handles = [Line2D([], [], ls="", marker="s", ms=7, color=color[c], label=f"{c} ({'seen' if s else 'unseen'})")
               for s, c in classes]
    handles += [Line2D([], [], ls="", marker=MARKERS[m], ms=7, mfc="gray", mec="gray", label=m) for m in MARKERS]
    handles += [Line2D([], [], ls="", marker="o", ms=7, mfc="gray", mec="gray", label="seen class: filled"),
                Line2D([], [], ls="", marker="o", ms=7, mfc="none", mec="gray", label="unseen class: hollow")]
    fig.legend(handles=handles, loc="outside right center", fontsize=7, ncols=1 if len(handles) <= 30 else 2)
    return fig
