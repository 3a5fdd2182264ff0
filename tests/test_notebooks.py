"""The notebooks, presets and book helpers: committed clean, parameterised for papermill, presets that
build a valid TrainConfig, the paper's numbers and the comparison tables, and the figures' markings.

Running the notebooks themselves is nbval's job (`pytest --nbval`); here only the missing-data error
is executed, because its shortness is what the user sees.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
import yaml

from splip import paper
from splip.model import SpLIPConfig
from splip.objective import LossConfig
from splip.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PRESETS = sorted((ROOT / "presets").glob("*.yaml"))
# train.ipynb parameter -> TrainConfig field (dotted: nested dataclass) where the names differ or nest.
NESTED = {
    "alpha": "loss.alpha", "beta": "loss.beta", "margin": "loss.margin",
    "text_conditioning": "model.text_conditioning", "text_prompts": "model.text_prompts",
    "text_guided_visual_prompts": "model.text_guided_visual_prompts",
    "multilayer_visual_prompts": "model.multilayer_visual_prompts", "tune_layernorm": "model.tune_layernorm",
    "gradient_checkpointing": "model.gradient_checkpointing",
}
# Notebook-only, or deliberately another default: output_dir None means runs/<dataset>; a notebook
# starts afresh (resume) and keeps progress bars out of its stored outputs (progress).
NOT_CONFIG = {"num_examples", "output_dir", "resume", "progress"}


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def tagged(nb: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if tag in c.metadata.get("tags", [])]


def parameters(path: Path) -> dict:
    """The parameters cell's defaults, by running it (it is plain assignments)."""
    namespace: dict = {}
    exec(tagged(read(path), "parameters")[0].source, namespace)
    return {k: v for k, v in namespace.items() if not k.startswith("__") and k != "Optional"}


def train_config(overrides: dict) -> TrainConfig:
    """What train.ipynb builds: its parameters cell, then `overrides` (as papermill injects them),
    then its config cell."""
    nb = read(ROOT / "notebooks" / "train.ipynb")
    namespace: dict = {"TrainConfig": TrainConfig, "SpLIPConfig": SpLIPConfig, "LossConfig": LossConfig}
    exec(tagged(nb, "parameters")[0].source, namespace)
    namespace.update(overrides)
    exec(tagged(nb, "config")[0].source, namespace)
    return namespace["config"]


def field(config: TrainConfig, dotted: str):
    value = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


# ------------------------------------------------------------------------------ notebooks as files

def test_the_notebooks_exist():
    assert {p.stem for p in NOTEBOOKS} >= {"train", "ablations", "tsne", "results", "miniclip", "replica"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean_with_one_leading_parameters_cell(path):
    nb = read(path)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs before committing"
    assert len(tagged(nb, "parameters")) == 1
    assert "parameters" in code[0].metadata.get("tags", []), "the parameters cell must be the first code cell"
    assert nb.metadata["kernelspec"]["name"] == "splip"  # the project kernel the install ships
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "a page title first"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter_with_its_type(path):
    # papermill's parser skips lines it cannot read (e.g. `str | None` annotations, or a second "="
    # in a comment) and then calls their -p values "unknown parameters".
    papermill = pytest.importorskip("papermill")
    seen = papermill.inspect_notebook(str(path))
    assert set(seen) == set(parameters(path))
    assert all(p["inferred_type_name"] != "None" for p in seen.values()), "annotate every parameter"


def test_train_notebook_defaults_are_the_trainconfig_defaults():
    # The notebook spells the defaults out for its readers; TrainConfig is where they are tuned.
    defaults = TrainConfig()
    params = parameters(ROOT / "notebooks" / "train.ipynb")
    for name, value in params.items():
        if name in NOT_CONFIG:
            continue
        if name == "pretrained":  # "auto" is resolved when a TrainConfig is built: compare the declared default
            assert value == TrainConfig.__dataclass_fields__["pretrained"].default == "auto"
            continue
        assert value == field(defaults, NESTED.get(name, name)), (
            f"train.ipynb parameter {name}={value!r} differs from TrainConfig's default "
            f"{field(defaults, NESTED.get(name, name))!r}: update the notebook's parameters cell"
        )
    assert train_config({}).output_dir == "runs/synthetic"


def test_train_notebook_exposes_every_setting_the_issue_names():
    params = parameters(ROOT / "notebooks" / "train.ipynb")
    assert set(NESTED) | {"dataset", "data_root", "backbone", "pretrained", "epochs", "batch_size", "lr_prompts",
                          "lr_layernorm", "seed", "device", "output_dir"} <= set(params)


# ------------------------------------------------------------------------------------------ presets

def test_one_preset_per_benchmark():
    assert {p.stem for p in PRESETS} == {"sketchy", "sketchy25", "tuberlin", "quickdraw", "sketchy-fg"}


@pytest.mark.parametrize("path", sorted((ROOT / "presets" / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_study_preset_sets_only_parameters_of_its_notebook(path):
    preset = yaml.safe_load(path.read_text())
    params = parameters(ROOT / "notebooks" / f"{path.stem}.ipynb")
    assert set(preset) <= set(params), f"{path.name} sets {set(preset) - set(params)}, unknown to {path.stem}.ipynb"
    for name, value in preset.items():
        if params[name] is not None and value is not None:
            assert isinstance(value, type(params[name])), f"{path.name}: {name}={value!r}"


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_preset_builds_the_paper_scale_trainconfig(path):
    preset = yaml.safe_load(path.read_text())
    params = parameters(ROOT / "notebooks" / "train.ipynb")
    unknown = set(preset) - set(params)
    assert not unknown, f"{path.name} sets {unknown}, which train.ipynb does not take"
    for name, value in preset.items():  # e.g. "1e-3" in YAML is a string: it would reach Adam as one
        default = params[name]
        if default is not None:
            assert isinstance(value, type(default)), f"{path.name}: {name}={value!r} is not a {type(default).__name__}"
    config = train_config(preset)
    assert config.dataset == path.stem.removesuffix("-fg")
    assert (config.backbone, config.pretrained, config.epochs, config.batch_size) == ("ViT-B-32", "openai", 60, 192)
    assert math.isclose(config.lr_prompts, 1e-3) and math.isclose(config.lr_layernorm, 1e-6)
    assert config.device == "cuda" and config.output_dir == f"runs/{path.stem}"
    # the full model, with gradient checkpointing on (exact, execution-only) to fit the paper's batch
    assert dataclasses.asdict(config.model) == dataclasses.asdict(SpLIPConfig(gradient_checkpointing=True))
    assert config.micro_batch_size in (None, 96)  # README "What fits": TU-Berlin takes halves
    assert config.val_fraction == 0  # as the paper: every seen class, the last epoch
    assert config.positives == ("source_photo" if path.stem.endswith("-fg") else "same_class")


# ------------------------------------------------------------------------------------ missing data

def test_missing_dataset_stops_at_the_load_with_the_short_library_error(tmp_path):
    papermill = pytest.importorskip("papermill")
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        papermill.execute_notebook(
            str(ROOT / "notebooks" / "train.ipynb"), str(tmp_path / "out.ipynb"),
            # the README's own command, -p dataset quickdraw (pretrained "auto" is then "openai"), with no data
            parameters={"dataset": "quickdraw", "data_root": str(tmp_path / "nothing-here")},
            kernel_name="splip", cwd=str(ROOT), progress_bar=False,
        )
    error = caught.value
    assert error.ename == "DatasetNotFoundError"
    assert str(tmp_path / "nothing-here") in error.evalue and "Download" in error.evalue
    assert len(error.traceback) <= 2, "expected the one-line %xmode Minimal report, not a traceback"


# ---------------------------------------------------------------------------------- paper numbers

def test_paper_numbers_as_in_the_method_note():
    assert paper.paper_metrics("sketchy") == {
        "zs/map@200": (76.4, "Table 1 (ZS-SBIR)"), "zs/p@200": (77.3, "Table 1 (ZS-SBIR)"),
        "gzs/map@200": (68.2, "Table 2 (GZS-SBIR)"), "gzs/p@200": (74.5, "Table 2 (GZS-SBIR)"),
        "fg/acc@1": (33.45, "Table 3 (FG-ZS-SBIR)"), "fg/acc@5": (66.71, "Table 3 (FG-ZS-SBIR)"),
    }
    assert {k: v for k, (v, _) in paper.paper_metrics("sketchy25").items()} == {"zs/map@all": 80.2, "zs/p@100": 86.7}
    assert {k: v for k, (v, _) in paper.paper_metrics("tuberlin").items()} == {
        "zs/map@all": 73.1, "zs/p@100": 78.2, "gzs/map@all": 66.7, "gzs/p@100": 70.3}
    assert {k: v for k, (v, _) in paper.paper_metrics("quickdraw").items()} == {"zs/map@all": 34.2, "zs/p@200": 44.6}
    assert {k: v for k, (v, _) in paper.paper_metrics("quickdraw", "CLIP-AT (CVPR'23)").items()} == {
        "zs/map@all": 20.2, "zs/p@200": 38.8}
    assert paper.paper_metrics("synthetic") == {}
    with pytest.raises(ValueError, match="unknown method"):
        paper.paper_metrics("sketchy", "SpLIP++")


def test_comparison_table_puts_percent_beside_the_paper():
    ours = {"zs/map@200": 0.5, "zs/p@200": 0.25, "zs/map@all": 0.125}
    table = paper.comparison_table({"trained": ours}, "sketchy")
    assert list(table.index) == ["zs/map@200", "zs/map@all", "zs/p@200", "gzs/map@200", "gzs/p@200",
                                 "fg/acc@1", "fg/acc@5"]
    assert table.loc["zs/map@200", "trained (%)"] == 50.0 and table.loc["zs/p@200", "trained (%)"] == 25.0
    assert table.loc["zs/map@200", paper.PAPER_COLUMN] == 76.4
    assert np.isnan(table.loc["zs/map@all", paper.PAPER_COLUMN])
    assert table.loc["zs/map@all", "paper source"] == "not reported in the paper"
    assert np.isnan(table.loc["fg/acc@1", "trained (%)"]) and table.loc["fg/acc@1", paper.PAPER_COLUMN] == 33.45
    assert paper.PAPER_COLUMN == "paper (ECCV'24, ViT-B/32 OpenAI, real data)"
    assert table.loc["zs/map@200", "metric convention"] == "ours: sem-pcyc; paper: not stated"
    assert table.loc["fg/acc@1", "metric convention"].startswith("Acc@K")
    assert paper.comparison_table({"t": ours}, "sketchy", convention="zse").loc[
        "zs/p@200", "metric convention"] == "ours: zse; paper: not stated"


def test_comparison_table_baselines_only_where_the_paper_has_them():
    table = paper.comparison_table({"r": {"zs/map@all": 0.1}}, "sketchy25", baselines=True)
    assert "ZSE-Ret (CVPR'23), as reported in the paper" in table.columns
    assert not any("CLIP-AT" in c or "MARL" in c for c in table.columns)  # no Sketchy-1 numbers in the paper
    assert table.loc["zs/map@all", "ZSE-Ret (CVPR'23), as reported in the paper"] == 73.6


def test_synthetic_has_no_paper_numbers_and_says_so():
    table = paper.comparison_table({"trained": {"zs/map@all": 0.4, "fg/acc@1": 0.1}}, "synthetic", baselines=True)
    assert list(table.columns) == ["trained (%)", paper.PAPER_COLUMN, "paper source", "metric convention"]
    assert table[paper.PAPER_COLUMN].isna().all()
    assert all("synthetic" in s and "not in the paper" in s for s in table["paper source"])


def test_run_columns_label_what_each_number_is():
    results = {"trained": {"zs/map@all": 0.5}, "frozen_clip": {"zs/map@all": 0.25}, "history": []}
    assert paper.run_columns(results) == {"frozen CLIP, no prompts": {"zs/map@all": 0.25},
                                          "SpLIP trained": {"zs/map@all": 0.5}}
    table = paper.comparison_table(paper.run_columns(results), "quickdraw")
    assert list(table.columns[:2]) == ["frozen CLIP, no prompts (%)", "SpLIP trained (%)"]
    assert table.loc["zs/map@all", "frozen CLIP, no prompts (%)"] == 25.0


def test_ablation_rows_are_marked_and_their_switches_are_valid():
    table = paper.ablation_table()
    assert (table["source"].str.contains("unverified")).all()
    assert table.loc["without B_vt", "zs/map@200"] == 70.5 and table.loc["L_cls only", "fg/acc@5"] == 39.41
    assert list(paper.ablation_table("module").index) == [
        paper.FULL, "B_t only (without any visual prompt)", "without B_v", "without B_t", "without B_vt",
        "without LayerNorm tuning"]
    for row in paper.ABLATIONS:
        if row.overrides is not None:  # every expressible row is a valid TrainConfig
            config = TrainConfig.from_dict({k: dict(v) for k, v in row.overrides.items()})
            assert config is not None
    rows = {r.name: r.overrides for r in paper.ABLATIONS}
    assert rows["without jigsaw (L_cls + L_tri, adaptive margin)"] == {"loss": {"beta": 0.0}}
    assert rows["L_cls only"] is None


def test_provenance_note_refuses_to_pass_toy_runs_off_as_the_paper():
    run = {"dataset": "synthetic", "synthetic_data": True, "backbone": "splip-tiny", "weights": "random init (seed 0)",
           "pretrained_backbone": False, "seed": 0, "hardware": "CPU", "torch": "x", "open_clip": "y",
           "config": {"epochs": 8, "batch_size": 32}}
    note = paper.provenance_note(run)
    assert "Not a reproduction of the paper" in note and "synthetic" in note and "randomly initialised" in note
    real = dict(run, dataset="sketchy", synthetic_data=False, backbone="ViT-B-32", weights="openai",
                pretrained_backbone=True)
    assert "Not a reproduction" not in paper.provenance_note(real)
    other = dict(real, weights="/ckpt/my-clip.pt")
    assert "not the paper's" in paper.provenance_note(other)
    assert "real data at a smaller scale" in paper.provenance_note(other)
    assert "pipeline runs and learns" in note and "smaller scale" not in note
    ours = dict(run, weights="runs/backbones/x.pt", pretrained_backbone=True,
                config={"epochs": 1, "batch_size": 2, "pretrained": "synthetic-photos"})
    assert "pretrained by this project on the synthetic photos" in paper.provenance_note(ours)
    assert "not the paper's" in paper.provenance_note(ours)


# ------------------------------------------------------------------------------------------ figures

@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from splip.train import Trainer

    matplotlib.use("Agg")
    options = {"num_classes": 8, "num_unseen": 3, "photos_per_class": 6}
    return Trainer(TrainConfig(dataset_options=options, pretrained=None, val_fraction=0.25, progress=False, device="cpu",
                               output_dir=str(tmp_path_factory.mktemp("run"))))


def test_retrieval_borders_mark_same_class_green_and_other_red(trainer):
    from splip import plotting

    fig = plotting.plot_retrieval_examples(trainer.model, trainer.dataset, num_queries=3, top_k=5, seed=1)
    axes = np.asarray(fig.axes).reshape(3, 6)
    classes = trainer.dataset.classes
    seen_wrong = seen_right = False
    for row in axes:
        query_class = row[0].get_title().removeprefix("query: ")
        assert query_class in [classes[c] for c in trainer.dataset.unseen_ids]
        for rank, ax in enumerate(row[1:], start=1):
            number, photo_class = ax.get_title().split(". ", 1)
            assert int(number) == rank
            edge = matplotlib.colors.to_hex(ax.spines["top"].get_edgecolor())
            assert edge == (plotting.CORRECT if photo_class == query_class else plotting.WRONG)
            seen_right |= photo_class == query_class
            seen_wrong |= photo_class != query_class
    assert seen_right and seen_wrong  # 3 unseen classes, 5 photos per row: both kinds must occur
    assert len({row[0].get_title() for row in axes}) == 3  # distinct query classes


def test_tsne_frame_same_images_for_any_model_and_seen_flags(trainer):
    from splip import plotting

    a = plotting.tsne_frame(trainer.model, trainer.dataset, classes_per_split=2, per_class=3, seed=0)
    b = plotting.tsne_frame(trainer.model, trainer.dataset, classes_per_split=2, per_class=3, seed=0)
    assert len(a) == 2 * 2 * 2 * 3  # (seen, unseen) x 2 classes x (sketch, photo) x 3 images
    assert a[["label", "modality", "seen"]].equals(b[["label", "modality", "seen"]])
    assert a.loc[a["seen"], "label"].isin(trainer.dataset.train_ids).all()
    assert a.loc[~a["seen"], "label"].isin(trainer.dataset.unseen_ids).all()
    fig = plotting.plot_tsne({"before": a, "after": b})
    assert len(fig.axes) == 2
