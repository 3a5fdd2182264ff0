"""Bad parameters fail at once, as the user sees them: papermill runs the real notebook with one bad
value, and it stops in the cell that checks it with one ConfigError that names the parameter and the
value. That cell is the imports cell right after the parameters (a notebook's own parameters), the
cell that builds the first TrainConfig (training settings), or, for what only the machine can answer
(a GPU, a writable output_dir), the cell that starts the Trainer, whose first step that check is:
always before any data, backbone or training.

Each notebook case is one papermill command: a kernel start plus the notebook's imports (about 8 s
on 2 CPU cores); two run at a time, the whole file about 2 minutes. The checks themselves are tested directly at the end.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest
import torch
import yaml

from splip import study, validation
from splip.launch import config_from
from splip.model import SpLIPConfig
from splip.objective import LossConfig
from splip.train import TrainConfig, Trainer
from splip.validation import ConfigError

ROOT = Path(__file__).resolve().parents[1]
# Should a check be missing, the run that follows stays small (and writes only under tmp_path).
SMALL_TRAIN = {"pretrained": None, "epochs": 1, "batch_size": 4,
               "dataset_options": {"num_classes": 6, "num_unseen": 2, "photos_per_class": 2, "sketches_per_photo": 1}}
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")

# (id, notebook, parameters, cell that must raise, substrings of the error message[, mark]). "{tmp}" in a
# string parameter or expected substring is this test's tmp_path. Every message names the parameter
# and the value given.
CASES = [
    # train.ipynb: TrainConfig / SpLIPConfig / LossConfig, in the config cell
    ("epochs-string", "train", {"epochs": "ten"}, "train-03", ["epochs", "'ten'", "positive integer"]),
    ("epochs-negative", "train", {"epochs": -1}, "train-03", ["epochs", "-1"]),
    ("epochs-bool", "train", {"epochs": True}, "train-03", ["epochs", "True"]),
    ("batch_size-zero", "train", {"batch_size": 0}, "train-03", ["batch_size", "0"]),
    ("text_conditioning", "train", {"text_conditioning": "foo"}, "train-03",
     ["text_conditioning", "'foo'", "per_image", "batch_mean"]),
    ("tune_layernorm-string", "train", {"tune_layernorm": "yes"}, "train-03",
     ["tune_layernorm", "'yes'", "True or False"]),
    ("val_fraction", "train", {"val_fraction": 1.5}, "train-03", ["val_fraction", "1.5", "[0, 1)"]),
    ("alpha-negative", "train", {"alpha": -1}, "train-03", ["alpha", "-1"]),
    ("margin", "train", {"margin": "soft"}, "train-03", ["margin", "'soft'", "adaptive", "fixed"]),
    ("lr_prompts-zero", "train", {"lr_prompts": 0}, "train-03", ["lr_prompts", "0", "positive"]),
    ("seed-negative", "train", {"seed": -3}, "train-03", ["seed", "-3"]),
    ("num_workers-negative", "train", {"num_workers": -1}, "train-03", ["num_workers", "-1"]),
    ("dataset-unknown", "train", {"dataset": "imagenet"}, "train-03",
     ["dataset", "'imagenet'", "sketchy", "quickdraw"]),
    ("dataset_options-unknown", "train", {"dataset_options": {"bogus": 1}}, "train-03",
     ["dataset_options", "bogus", "photos_per_class"]),
    ("device-typo", "train", {"device": "gpu"}, "train-03", ["device", "'gpu'", "cuda:N"]),
    ("num_examples", "train", {"num_examples": 0}, "train-02", ["num_examples", "0"]),
    # train.ipynb: what only the machine can answer, first thing when the trainer starts
    ("device-cuda", "train", {"device": "cuda"}, "train-05",
     ["device='cuda'", "no CUDA GPU", "torch.cuda.is_available() is False", "device='cpu'"], NO_CUDA),
    ("output_dir-under-a-file", "train", {"output_dir": "{tmp}/afile/run"}, "train-05",
     ["output_dir", "{tmp}/afile/run", "is a file"]),
    ("output_dir-read-only", "train", {"output_dir": "{tmp}/read-only/run"}, "train-05",
     ["output_dir", "{tmp}/read-only/run", "not writable"]),
    # the other notebooks' own parameters, and TrainConfig's through a study
    ("ablations-variants", "ablations", {"variants": ["B_v only", "no such variant"]}, "ablations-02",
     ["variants", "no such variant", "B_v only"]),
    ("ablations-metric", "ablations", {"metric": "zs/map@999"}, "ablations-02",
     ["metric", "'zs/map@999'", "zs/map@all"]),
    ("ablations-epochs", "ablations", {"epochs": 0}, "ablations-07", ["epochs", "0"]),
    ("tsne-perplexity", "tsne", {"perplexity": -5.0}, "tsne-02", ["perplexity", "-5.0"]),
    ("tsne-per_class", "tsne", {"per_class": "many"}, "tsne-02", ["per_class", "'many'"]),
    ("replica-seeds", "replica", {"seeds": [0, -1]}, "replica-02", ["seeds[1]", "-1"]),
    ("replica-settings", "replica", {"settings": ["full SpLIP", "bogus"]}, "replica-02", ["settings", "bogus"]),
    ("miniclip-pretrain", "miniclip", {"pretrain": "no"}, "miniclip-02", ["pretrain", "'no'", "True or False"]),
    ("results-runs_dir", "results", {"runs_dir": "{tmp}/no-runs-here"}, "results-02",
     ["runs_dir", "{tmp}/no-runs-here"]),
]
# Where a notebook would write if a check were missing: under tmp_path.
WRITES = {"train": "output_dir", "ablations": "output_dir", "tsne": "run_dir", "replica": "output_dir"}


def _fill(value, tmp: Path):
    return value.replace("{tmp}", str(tmp)) if isinstance(value, str) else value


def _kernel() -> str:
    """The notebooks name the kernel "splip" (this environment's); where it is not installed, "python3"."""
    from jupyter_client.kernelspec import KernelSpecManager

    return "splip" if "splip" in KernelSpecManager().find_kernel_specs() else "python3"


def _failure(notebook: str, parameters: dict, out: Path):
    """Run notebooks/`notebook`.ipynb with `parameters` through papermill into `out`; return the
    PapermillExecutionError it must end with."""
    papermill = pytest.importorskip("papermill")
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        papermill.execute_notebook(str(ROOT / "notebooks" / f"{notebook}.ipynb"), str(out), parameters=parameters,
                                   kernel_name=_kernel(), cwd=str(ROOT), progress_bar=False)
    return caught.value


def _start_papermill(notebook: str, parameters: dict, out: Path) -> subprocess.Popen:
    """The papermill command line a user would type, started in the background."""
    command = [str(Path(sys.executable).with_name("papermill")), str(ROOT / "notebooks" / f"{notebook}.ipynb"),
               str(out), "-y", yaml.safe_dump(parameters), "-k", _kernel(), "--cwd", str(ROOT), "--no-progress-bar"]
    with open(out.with_suffix(".log"), "w") as log:  # papermill's own messages, for a failing case
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _notebook_error(out: Path) -> SimpleNamespace | None:
    """The error output of an executed notebook (ename, evalue, traceback), None if no cell failed."""
    for cell in nbformat.read(out, as_version=4).cells if out.is_file() else []:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return SimpleNamespace(ename=output["ename"], evalue=output["evalue"], traceback=output["traceback"])
    return None


def _error_cell(path: Path) -> str | None:
    """The id of the cell whose output is the error."""
    for cell in nbformat.read(path, as_version=4).cells:
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return cell.get("id")
    return None


def _prepare(case_id: str, notebook: str, parameters: dict, tmp: Path) -> dict | None:
    """The case's parameters with its folder `tmp` filled in; None when the case cannot be made here."""
    (tmp / "afile").write_text("a regular file: nothing can be created under it, not even by root\n")
    if "read-only" in str(parameters.get("output_dir", "")):
        read_only = tmp / "read-only"
        read_only.mkdir()
        read_only.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        try:
            (read_only / "probe").write_text("")
        except OSError:
            pass
        else:
            return None  # root writes into a chmod 0o555 folder
    values = {**(SMALL_TRAIN if notebook == "train" else {}), **parameters}
    if notebook in WRITES:
        values.setdefault(WRITES[notebook], str(tmp / "run"))
    return {k: _fill(v, tmp) for k, v in values.items()}


@pytest.fixture(scope="module")
def notebook_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict | None, int | None]]:
    """Every case run once through the papermill command line, two at a time (each is mostly a kernel
    start and the notebook's imports, so two share the cores well): case id -> (its folder, its
    parameters or None where it cannot be made here, papermill's exit status)."""
    pytest.importorskip("papermill")
    cases = {c[0]: (c[1], c[2], tmp_path_factory.mktemp(c[0])) for c in CASES}
    prepared = {case_id: _prepare(case_id, nb, parameters, tmp) for case_id, (nb, parameters, tmp) in cases.items()}
    todo = [case_id for case_id, values in prepared.items() if values is not None]
    status: dict[str, int] = {}
    running: dict[str, subprocess.Popen] = {}
    while todo or running:
        while todo and len(running) < 2:
            case_id = todo.pop(0)
            running[case_id] = _start_papermill(cases[case_id][0], prepared[case_id], cases[case_id][2] / "out.ipynb")
        case_id = next(iter(running))
        status[case_id] = running.pop(case_id).wait(timeout=300)
    return {case_id: (cases[case_id][2], prepared[case_id], status.get(case_id)) for case_id in cases}


@pytest.mark.parametrize("case_id,notebook,parameters,cell,expected",
                         [pytest.param(*c[:5], id=c[0], marks=c[5:]) for c in CASES])
def test_bad_parameter_stops_in_its_check_with_one_clear_error(notebook_runs, case_id, notebook, parameters, cell,
                                                               expected):
    tmp_path, values, status = notebook_runs[case_id]
    if values is None:
        pytest.skip("this user can write into a chmod 0o555 folder (root): no unwritable folder to test with; "
                    "the output_dir-under-a-file case covers unwritable output_dir")
    out = tmp_path / "out.ipynb"
    error = _notebook_error(out)
    assert status != 0 and error is not None, f"papermill exited with {status} and no failing cell"
    assert error.ename == "ConfigError", f"{error.ename}: {error.evalue}"
    for part in expected:
        assert _fill(part, tmp_path) in error.evalue, f"{part!r} not in the message {error.evalue!r}"
    # Stopped where the parameter is checked: before any data, backbone or training.
    assert _error_cell(out) == cell, f"raised in cell {_error_cell(out)}, expected {cell}"
    # One paragraph (%xmode Minimal), no frames from inside the library.
    assert len(error.traceback) <= 2, error.traceback
    deep = [line for line in error.traceback if "splip" + os.sep in line and "validation.py" not in line]
    assert not deep, deep
    assert not (tmp_path / "run").exists() and not (tmp_path / "read-only" / "run").exists()


def test_corrupted_mini_clip_stops_its_notebook_at_the_card_check(tmp_path):
    weights = ROOT / "weights" / "splip-mini-tinyimagenet-seed0.pt"
    copy = tmp_path / weights.name
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    copy.with_suffix(".json").write_bytes(weights.with_suffix(".json").read_bytes())
    out = tmp_path / "out.ipynb"
    error = _failure("miniclip", {"weights": str(copy)}, out)
    assert error.ename == "WeightsMismatchError"
    assert str(copy) in error.evalue and "git checkout weights/" in error.evalue
    assert _error_cell(out) == "miniclip-03" and len(error.traceback) <= 2


@pytest.mark.parametrize("override,expected", [
    # micro_batch_size is no parameter of train.ipynb: the command line is where it is set
    ("micro_batch_size=0", "micro_batch_size must be None or a positive integer, got 0"),
    ("epochs=ten", "epochs must be a positive integer, got 'ten'"),
])
def test_command_line_reports_a_bad_setting_in_one_line(tmp_path, override, expected):
    done = subprocess.run([sys.executable, "-m", "splip.train", override, f"output_dir={tmp_path / 'run'}",
                           "pretrained=null"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"error: {expected}") and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ the checks themselves

def test_numpy_and_yaml_numbers_pass_and_are_stored_as_plain_python():
    config = TrainConfig(epochs=np.int64(3), batch_size=np.int32(8), lr_prompts=1, lr_layernorm=1.0e-6,
                         seed=np.uint16(2), val_fraction=0, loss=LossConfig(alpha=np.float32(0.25), beta=0),
                         model=SpLIPConfig(tune_layernorm=np.bool_(False)), output_dir=Path("runs/x"))
    assert (type(config.epochs), type(config.batch_size), type(config.seed)) == (int, int, int)
    assert (config.lr_prompts, type(config.lr_prompts), config.loss.alpha, config.model.tune_layernorm) == (
        1.0, float, 0.25, False)
    assert config.output_dir == "runs/x"
    json.dumps(dataclasses.asdict(config))  # a checkpoint's and metrics.json's record of it


@pytest.mark.parametrize("field,value", [("epochs", True), ("epochs", 2.0), ("batch_size", "32"), ("seed", 1.5),
                                         ("seed", 2**32), ("lr_prompts", float("nan")), ("lr_layernorm", -1e-3),
                                         ("resume", 1), ("progress", "False"), ("num_workers", None),
                                         ("micro_batch_size", 64), ("eval_batch_size", 0), ("output_dir", ""),
                                         ("device", "cuda:x"), ("positives", "own"), ("backbone", "ViT-Q-99"),
                                         ("pretrained", 3), ("model", {"text_prompts": False})])
def test_train_config_names_the_bad_setting(field, value):
    with pytest.raises(ConfigError, match=re.escape(field)) as caught:
        TrainConfig(**{field: value})
    assert repr(value)[:20] in str(caught.value) or field in ("micro_batch_size", "model")


@pytest.mark.parametrize("config,field,value", [
    (SpLIPConfig, "text_prompts", "yes"), (SpLIPConfig, "num_text_prompts", 0), (SpLIPConfig, "multilayer_head", "x"),
    (SpLIPConfig, "shallow_visual_prompts", -1), (SpLIPConfig, "gradient_checkpointing", None),
    (LossConfig, "beta", float("inf")), (LossConfig, "fixed_margin", -0.2), (LossConfig, "jigsaw_grid", 1),
    (LossConfig, "num_permutations", 24), (LossConfig, "margin", True)])
def test_model_and_loss_configs_name_the_bad_setting(config, field, value):
    kwargs = {field: value, **({"jigsaw_grid": 2} if field == "num_permutations" else {})}  # 2x2: 23 puzzles
    with pytest.raises(ConfigError, match=re.escape(field)):
        config(**kwargs)


def test_from_dict_names_unknown_keys_of_the_nested_configs():
    with pytest.raises(ConfigError, match=r"model has unknown key\(s\) \['text_prompt'\]"):
        TrainConfig.from_dict({"model": {"text_prompt": False}})
    with pytest.raises(ConfigError, match="loss must be"):
        TrainConfig.from_dict({"loss": "fixed"})


def test_presets_and_study_variants_still_build():
    for preset in sorted((ROOT / "presets").glob("*.yaml")):
        assert config_from(preset, {}).epochs == 60
    base = {"epochs": 1, "pretrained": None}
    for name, changes in {study.CLIP_AT_LIKE: study.CLIP_AT_OVERRIDES, **study.ablation_variants()}.items():
        study.variant_config(base, changes, "runs/x")


def test_the_write_check_leaves_nothing_behind(tmp_path):
    assert validation.writable_dir("output_dir", str(tmp_path / "a" / "b")) == str(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        validation.writable_dir("output_dir", str(tmp_path / "file"))


@NO_CUDA
def test_a_cuda_device_without_a_gpu_stops_the_trainer_before_any_data(tmp_path, monkeypatch):
    monkeypatch.setattr("splip.train.load_dataset", lambda *args, **kwargs: pytest.fail("data loaded"))
    config = TrainConfig(device="cuda:1", output_dir=str(tmp_path))  # a valid name: the config is built
    with pytest.raises(ConfigError, match=re.escape("device='cuda:1' but this machine has no CUDA GPU")):
        Trainer(config)
