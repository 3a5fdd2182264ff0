"""Training and evaluation of SpLIP: plain PyTorch, resumable, deterministic on the CPU.

A run lives in `output_dir`: `last.pt` (written atomically after every epoch; a rerun resumes from
it), `best.pt` (best validation mAP@all on held-out *seen* classes; absent with val_fraction=0,
where the last epoch is tested), `history.json` (one record per epoch: loss terms, the mean triplet
margin and share of active triplets, validation mAP@all) and `metrics.json` (test metrics, the metric
convention, and what produced them).
"""
from __future__ import annotations

import dataclasses
import inspect
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch

from splip import validation
from splip.backbone import architecture, load_backbone
from splip.data import SBIR_DATASETS, TripletDataset, load_dataset
from splip.data.loading import SYNTHETIC_OPTIONS
from splip.data.protocols import TEST_SUBSETS, select_test_set
from splip.data.sampling import NEGATIVES, POSITIVES, triplet_loader
from splip.data.synthetic import load_synthetic
from splip.distributed import all_reduce_sum, barrier, gather_rows, init_world, local_device, sum_gradients
from splip.evaluate import evaluate
from splip.io import save_json, save_torch
from splip.metrics import METRIC_CONVENTIONS
from splip.model import SpLIP, SpLIPConfig, trainable_parameter_table
from splip.objective import LossConfig, SpLIPObjective
from splip.pretrain import SYNTHETIC_PHOTOS, ensure_synthetic_backbone
from splip.progress import tqdm
from splip.step import forward_backward

# Settings that change how a run executes, not what it computes: a saved run stays valid when only
# these differ (resuming; reusing a finished study run).
EXECUTION_SETTINGS = ("progress", "resume", "device", "num_workers", "eval_batch_size", "data_root",
                      "micro_batch_size")
MODEL_EXECUTION_SETTINGS = ("gradient_checkpointing",)  # the same, inside the nested SpLIPConfig


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or was not written by splip's Trainer."""


def computed_settings(config: dict[str, Any]) -> dict[str, Any]:
    """A saved or current config (asdict form) without its execution-only settings: two runs whose
    computed settings are equal compute the same thing. (micro_batch_size is exact except with
    text_conditioning="batch_mean", see splip.step.)"""
    kept = {k: v for k, v in config.items() if k not in EXECUTION_SETTINGS}
    kept["model"] = {k: v for k, v in kept.get("model", {}).items() if k not in MODEL_EXECUTION_SETTINGS}
    return kept


PRETRAINED_AUTO = "auto"
NO_PROMPTS = SpLIPConfig(text_prompts=False, text_guided_visual_prompts=False, multilayer_visual_prompts=False,
                         tune_layernorm=False)


@dataclass
class TrainConfig:
    """Everything a run depends on.

    Defaults: the embedded CPU run (a few minutes on 2 cores) on synthetic data with the tiny CLIP
    pretrained by us on the synthetic photos (see splip.pretrain). They differ from the paper's
    (SPLIP_METHOD.md §5, presets/*.yaml) where the small scale needs it: 16 classes, 10 epochs,
    and LayerNorm learning rate 3e-3 instead of 1e-6 (a tiny CLIP trained for minutes is far from
    the well-conditioned OpenAI weights that 1e-6 was chosen for).
    """

    dataset: str = "synthetic"
    data_root: str | None = None  # else $SPLIP_DATA, else ./data
    dataset_options: dict[str, Any] = field(default_factory=dict)  # synthetic sizes, see load_synthetic
    backbone: str = "splip-tiny"  # any open_clip model name, e.g. "ViT-B-32"
    # open_clip tag ("openai"), checkpoint path, None (random init), or "synthetic-photos": the
    # backbone contrastively pretrained on the synthetic photos (built on first use, then cached).
    # "auto" (resolved when the config is built): "synthetic-photos" on the synthetic data, else "openai".
    pretrained: str | None = PRETRAINED_AUTO
    model: SpLIPConfig = field(default_factory=SpLIPConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    epochs: int = 10
    batch_size: int = 32
    # Triplets per forward/backward pass; the optimizer still steps once per batch_size triplets
    # (exact, see splip.step). None: the whole batch at once.
    micro_batch_size: int | None = None
    lr_prompts: float = 3e-3  # B_t, B_v, B_vt and the jigsaw solver (paper: 1e-3)
    lr_layernorm: float = 3e-3  # CLIP's LayerNorm affines (paper: 1e-6)
    # Share of seen classes held out for model selection (the epoch with the best validation mAP@all
    # is kept); 0: train on every seen class and keep the last epoch, as the paper's presets do.
    val_fraction: float = 0.2
    positives: str = "same_class"  # or "source_photo": the sketch's own photo (fine-grained training)
    negatives: str = "uniform_photo"  # or "uniform_class": a class first, then its photo (CLIP-AT)
    metric_convention: str = "sem-pcyc"  # how mAP and P@K are computed; see splip.metrics
    test_subset: str = "all"  # or "zse-sbir": that code's default subsampled test set (splip.data.protocols)
    # With "zse-sbir": the folder holding ZSE-SBIR's published file lists (its datasets/), to keep exactly
    # that code's items; None: the same strides over our own item order (same counts, other items).
    test_file_lists: str | None = None
    seed: int = 0
    device: str = "auto"  # "auto": CUDA when available
    num_workers: int = 0
    eval_batch_size: int = 128
    output_dir: str = "runs/synthetic"
    resume: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        """Every setting checked for its type and range (one ConfigError naming it, the value and what
        is allowed); what only the machine can answer (a GPU, a writable output_dir) is
        :meth:`check_can_run`'s."""
        v = validation
        if not isinstance(self.dataset, str) or self.dataset.lower() not in SBIR_DATASETS:
            raise v.fail("dataset", self.dataset, f"one of {SBIR_DATASETS}")
        self.data_root = v.optional_text("data_root", self.data_root, "None or a folder (a string)")
        self.dataset_options = _dataset_options(self.dataset, self.dataset_options)
        self.backbone = v.text("backbone", self.backbone, "an open_clip model name (a string)")
        if open_clip.get_model_config(self.backbone) is None:
            raise v.ConfigError(f"backbone must be an open_clip model name, e.g. 'ViT-B-32', 'splip-tiny' or "
                                f"'splip-mini', got {self.backbone!r}; all names: open_clip.list_models()")
        self.pretrained = v.optional_text(
            "pretrained", self.pretrained, f"None (random init), {PRETRAINED_AUTO!r}, {SYNTHETIC_PHOTOS!r}, an "
            "open_clip tag such as 'openai', or a checkpoint path")
        if self.pretrained == PRETRAINED_AUTO:  # stored resolved, so a saved config says which weights
            self.pretrained = SYNTHETIC_PHOTOS if self.dataset.lower() == "synthetic" else "openai"
        if self.pretrained == SYNTHETIC_PHOTOS and self.dataset.lower() != "synthetic":
            raise v.ConfigError(f"pretrained={SYNTHETIC_PHOTOS!r} is a backbone for the synthetic data only; for "
                                f"dataset={self.dataset!r} pass an open_clip tag (e.g. 'openai') or a checkpoint path")
        for name, config_class in (("model", SpLIPConfig), ("loss", LossConfig)):
            if not isinstance(getattr(self, name), config_class):
                raise v.fail(name, getattr(self, name),
                             f"a {config_class.__name__} (TrainConfig.from_dict takes dicts)")
        self.epochs = v.positive_int("epochs", self.epochs)
        self.batch_size = v.positive_int("batch_size", self.batch_size)
        self.micro_batch_size = v.optional_positive_int("micro_batch_size", self.micro_batch_size)
        if self.micro_batch_size is not None and self.micro_batch_size > self.batch_size:
            raise v.ConfigError(f"micro_batch_size must be at most batch_size ({self.batch_size}), got "
                                f"{self.micro_batch_size}; None passes the whole batch at once")
        self.lr_prompts = v.positive_float("lr_prompts", self.lr_prompts)
        self.lr_layernorm = v.positive_float("lr_layernorm", self.lr_layernorm)
        self.val_fraction = v.fraction("val_fraction", self.val_fraction)
        self.positives = v.choice("positives", self.positives, POSITIVES)
        self.negatives = v.choice("negatives", self.negatives, NEGATIVES)
        self.metric_convention = v.choice("metric_convention", self.metric_convention, tuple(METRIC_CONVENTIONS))
        self.test_subset = v.choice("test_subset", self.test_subset, TEST_SUBSETS)
        self.test_file_lists = v.optional_text("test_file_lists", self.test_file_lists,
                                               "None or ZSE-SBIR's datasets/ folder (a string)")
        self.seed = v.seed("seed", self.seed)
        self.device = v.device("device", self.device)
        self.num_workers = v.nonnegative_int("num_workers", self.num_workers)
        self.eval_batch_size = v.positive_int("eval_batch_size", self.eval_batch_size)
        self.output_dir = v.text("output_dir", self.output_dir, "a folder (a non-empty string)")
        self.resume = v.boolean("resume", self.resume)
        self.progress = v.boolean("progress", self.progress)

    def check_can_run(self) -> None:
        """What only this machine can answer, asked before any data or weights are loaded: a CUDA GPU
        where `device` names one, and an `output_dir` that can be written."""
        validation.device_available("device", self.device)
        validation.writable_dir("output_dir", self.output_dir)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a nested dict ({"model": {...}, "loss": {...}}: checkpoints, study variants) or
        a flat one (presets: SpLIPConfig and LossConfig fields by their own names, e.g. "alpha",
        "text_conditioning"), or a mix; unknown keys are an error."""
        values = dict(values)
        nested = {}
        for part, config_class in (("model", SpLIPConfig), ("loss", LossConfig)):
            names = [f.name for f in dataclasses.fields(config_class)]
            nested[part] = validation.options(part, values.pop(part, {}), names)
            for name in names:
                if name in values:
                    nested[part][name] = values.pop(name)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise validation.ConfigError(f"unknown TrainConfig keys {sorted(unknown)}; known: {sorted(known)} and "
                                         "the fields of SpLIPConfig and LossConfig")
        return cls(**values, model=SpLIPConfig(**nested["model"]), loss=LossConfig(**nested["loss"]))


def _dataset_options(dataset: str, options: Any) -> dict[str, Any]:
    """`options` checked for `dataset`: load_synthetic's sizes for "synthetic", none for the others."""
    if dataset.lower() != "synthetic":
        if options:
            raise validation.ConfigError(f"dataset_options are for dataset='synthetic' only; {dataset!r} takes none, "
                                         f"got {options!r}")
        return {}
    options = validation.options("dataset_options", options, SYNTHETIC_OPTIONS)
    for name, value in options.items():
        if name == "render_size":
            options[name] = validation.optional_positive_int(f"dataset_options[{name!r}]", value)
        else:
            options[name] = validation.positive_int(f"dataset_options[{name!r}]", value)
    defaults = {p.name: p.default for p in inspect.signature(load_synthetic).parameters.values()}
    classes = options.get("num_classes", defaults["num_classes"])
    unseen = options.get("num_unseen", defaults["num_unseen"])
    if classes < 3 or not 1 <= unseen <= classes - 2:
        raise validation.ConfigError(
            f"dataset_options need num_classes >= 3 and 1 <= num_unseen <= num_classes - 2 (at least one training "
            f"and one validation class), got num_classes={classes}, num_unseen={unseen}")
    return options


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


class Trainer:
    """Builds data, backbone, model and objective from a TrainConfig, then trains and evaluates.

    The dataset is loaded first, so a missing dataset fails before any weights are touched.
    """

    def __init__(self, config: TrainConfig) -> None:
        config.check_can_run()
        self.config = config
        self.device = local_device(config.device)
        self.world = init_world(self.device)
        if self.world.size > 1 and config.model.text_conditioning == "batch_mean":
            raise ValueError("text_conditioning='batch_mean' conditions the text on each process's share of a batch "
                             "and keeps a running mean per process, so several processes would not compute the "
                             "one-process run; use 'per_image' (the presets' mode) or a single process")
        self.output_dir = Path(config.output_dir)
        arch = architecture(config.backbone)
        self.dataset = load_dataset(config.dataset, config.data_root, image_size=arch["vision_cfg"]["image_size"],
                                    val_fraction=config.val_fraction, seed=config.seed,
                                    **config.dataset_options)
        # What split="test" scores: every test item, or ZSE-SBIR's default subsample.
        self.test_dataset = select_test_set(self.dataset, config.test_subset, config.test_file_lists)
        pretrained = config.pretrained
        if pretrained == SYNTHETIC_PHOTOS:  # TrainConfig refuses it for any other dataset
            pretrained = str(ensure_synthetic_backbone(config.backbone, len(self.dataset.classes), config.seed,
                                                       progress=config.progress))
        self.backbone = load_backbone(config.backbone, pretrained, self.device, seed=config.seed)
        torch.manual_seed(config.seed)  # prompt modules and solver start the same in every run
        class_names = [self.dataset.class_prompt_name(c) for c in self.dataset.train_ids]
        self.model = SpLIP(self.backbone.model, self.backbone.tokenizer, class_names, config.model).to(self.device)
        self.trainable_names = self.model.freeze()
        self.objective = SpLIPObjective(self.model, arch["embed_dim"], config.loss).to(self.device)

        # Batches carry dataset-wide labels; losses index the training classes.
        local = torch.full((len(self.dataset.classes),), -1, dtype=torch.long)
        local[torch.tensor(self.dataset.train_ids)] = torch.arange(len(self.dataset.train_ids))
        self.local_label = local.to(self.device)

        layernorms = [p for n, p in self.model.named_parameters() if p.requires_grad and n.startswith("clip.")]
        prompts = [p for n, p in self.model.named_parameters() if p.requires_grad and not n.startswith("clip.")]
        prompts += list(self.objective.parameters())
        self.trainable_parameters = prompts + layernorms
        groups = [{"params": prompts, "lr": config.lr_prompts}]
        if layernorms:
            groups.append({"params": layernorms, "lr": config.lr_layernorm})
        self.optimizer = torch.optim.Adam(groups)
        amp_fp16 = self.device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_fp16)
        self.triplets = TripletDataset(
            self.dataset.train_sketches, self.dataset.train_photos, seed=config.seed, positives=config.positives,
            negatives=config.negatives, source_photo=self.dataset.train_fg_source_photo)
        self.batches, self.loader = triplet_loader(self.triplets, config.batch_size, config.seed, self.world,
                                                   config.num_workers, pin_memory=self.device.type == "cuda")
        self.history: list[dict[str, Any]] = []
        self.best_val = -1.0

    # ------------------------------------------------------------------ descriptions

    def parameter_table(self) -> str:
        """Trainable parameters of the model and the jigsaw solver, after freezing."""
        return trainable_parameter_table(torch.nn.ModuleDict({"model": self.model, "objective": self.objective}))

    def run_info(self) -> dict[str, Any]:
        """What produced this run's numbers: data, backbone, weights, seed, hardware, versions."""
        hardware = hardware_description(self.device)
        if self.world.size > 1:
            hardware = f"{self.world.size} processes x {hardware}"
        return {
            "dataset": self.dataset.name,
            "data": self.dataset.describe(),
            "synthetic_data": self.dataset.synthetic,
            "backbone": self.backbone.model_name,
            "weights": self.backbone.weights,
            "pretrained_backbone": self.backbone.is_pretrained,
            "seed": self.config.seed,
            "hardware": hardware,
            "torch": torch.__version__,
            "open_clip": open_clip.__version__,
            "config": asdict(self.config),
        }

    # ------------------------------------------------------------------ checkpoints

    @property
    def validates(self) -> bool:
        """Whether seen classes are held out for model selection (val_fraction > 0)."""
        return bool(self.dataset.val_ids)

    @property
    def selected_checkpoint(self) -> Path:
        """The weights a run is tested with: best.pt (best validation epoch) or, without held-out
        classes, last.pt (the last epoch, as the paper)."""
        return self.output_dir / ("best.pt" if self.validates else "last.pt")

    def _state(self) -> dict[str, Any]:
        trainable = {n: p.detach().cpu() for n, p in self.model.named_parameters() if p.requires_grad}
        return {
            "epoch": len(self.history),
            "trainable": trainable,
            "buffers": _own_buffers(self.model),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            "best_val": self.best_val,
            "config": asdict(self.config),
            "weights": self.backbone.weights,
        }

    def load_checkpoint(self, path: str | Path, training_state: bool = True) -> None:
        """Restore trainable weights (and running statistics) from `path`, and with `training_state`
        the optimizer and history."""
        self._restore(self._read_checkpoint(path), path, training_state)

    def _read_checkpoint(self, path: str | Path) -> dict[str, Any]:
        """A checkpoint written by Trainer, or one clear error naming the file and the remedy."""
        remedy = (f"It is not a complete splip checkpoint (a copy cut short, or another program's file). "
                  f"Delete it, or start this run over with resume=False (or use another output_dir).")
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as error:  # torch reports truncation and foreign formats with many types
            raise CheckpointError(f"cannot read checkpoint {path}: {type(error).__name__}. {remedy}") from None
        needed = {"trainable", "objective", "optimizer", "history", "config", "weights"}
        if not isinstance(state, dict) or not needed <= set(state):
            raise CheckpointError(f"checkpoint {path} lacks {sorted(needed - set(state if isinstance(state, dict) else {}))}. "
                                  f"{remedy}")
        return state

    def _restore(self, state: dict[str, Any], path: str | Path, training_state: bool) -> None:
        # The weights as configured (a tag, a path as given, None), not as resolved on this machine: a run
        # folder moved to another machine or checkout stays loadable.
        saved_setup = (state["config"]["backbone"], state["config"]["pretrained"])
        if saved_setup != (self.config.backbone, self.config.pretrained):
            raise ValueError(
                f"{path} was trained on backbone {state['config']['backbone']} with weights {state['weights']}, "
                f"not {self.config.backbone} with {self.backbone.weights}."
            )
        saved = {**state["trainable"], **state.get("buffers", {})}
        expected = set(self.trainable_names) | set(_own_buffers(self.model))
        missing, unexpected = sorted(expected - set(saved)), sorted(set(saved) - expected)
        if missing or unexpected:
            raise ValueError(
                f"{path} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}. It was saved "
                "by a run with another model config (prompts, text_conditioning, tune_layernorm); load it with "
                "that config, or use resume=False / another output_dir."
            )
        self.model.load_state_dict(saved, strict=False)
        self.objective.load_state_dict(state["objective"])
        if training_state:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            self.history = state["history"]
            self.best_val = state["best_val"]

    def _resume(self) -> None:
        last = self.output_dir / "last.pt"
        if not (self.config.resume and last.is_file()):
            return
        state = self._read_checkpoint(last)
        saved, ours = computed_settings(state["config"]), computed_settings(asdict(self.config))
        # A longer run continues a shorter one, so epochs may differ too.
        differs = sorted(k for k in ours if k != "epochs" and saved.get(k) != ours[k])
        if differs:
            raise ValueError(
                f"{last} belongs to a run with different settings ({', '.join(differs)}). Use another "
                "output_dir, or resume=False to start over in this one."
            )
        self._restore(state, last, training_state=True)
        if self.world.is_main:
            print(f"Resumed from {last} after epoch {len(self.history)}.")

    # ------------------------------------------------------------------ training

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        cfg, world = self.config, self.world
        self.model.train()
        self.objective.train()
        # Every random choice of an epoch derives from (seed, epoch): resuming replays it exactly, and
        # every process draws the same global batches (each loads only its share, see splip.distributed).
        self.batches.set_epoch(epoch)
        puzzles = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch + 50_000)
        sums: dict[str, float] = {}
        steps = 0
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and world.is_main),
                   leave=False)
        for batch in bar:
            # Readable triplets of every share: the global batch (unreadable images are dropped).
            counts = gather_rows(torch.tensor([0 if batch is None else len(batch["label"])], device=self.device),
                                 world)  # (W,)
            total, offset = int(counts.sum()), int(counts[:world.rank].sum())
            if total == 0:
                continue
            puzzle = self.objective.draw_puzzles(total, puzzles)  # drawn for the global batch
            if batch is not None:
                batch = {k: v.to(self.device) for k, v in batch.items()}
                batch["label"] = self.local_label[batch["label"]]
                batch["negative_label"] = self.local_label[batch["negative_label"]]
                if puzzle is not None:
                    batch["puzzle"] = puzzle[offset:offset + len(batch["label"])].to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            terms = forward_backward(self.model, self.objective, batch, cfg.micro_batch_size, self.scaler, total)
            sum_gradients(self.trainable_parameters, world)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            steps += 1
            values = all_reduce_sum(torch.tensor(list(terms.values()), dtype=torch.float64, device=self.device), world)
            for name, value in zip(terms, values.tolist()):
                sums[name] = sums.get(name, 0.0) + value
            bar.set_postfix(loss=f"{sums['loss'] / steps:.3f}")
        if steps == 0:
            raise ValueError("no training batch: fewer readable training sketches than batch_size?")
        return {name: total / steps for name, total in sums.items()}

    def fit(self) -> list[dict[str, Any]]:
        """Train to `config.epochs` (resuming from output_dir/last.pt if present); return the history."""
        self._resume()
        cfg = self.config
        for epoch in range(len(self.history), cfg.epochs):
            start = time.perf_counter()
            record = {"epoch": epoch + 1, **self._train_epoch(epoch)}
            if self.validates:
                record["val_map@all"] = evaluate(
                    self.model, self.dataset, split="val", batch_size=cfg.eval_batch_size,
                    num_workers=cfg.num_workers, convention=cfg.metric_convention, world=self.world)["zs/map@all"]
            record["seconds"] = round(time.perf_counter() - start, 2)
            self.history.append(record)
            state = self._state()
            improved = self.validates and record["val_map@all"] > self.best_val
            if improved:
                self.best_val = record["val_map@all"]
                state["best_val"] = self.best_val
            if self.world.is_main:  # one writer; the others wait until the files are complete
                if improved:
                    save_torch(state, self.output_dir / "best.pt")
                save_torch(state, self.output_dir / "last.pt")
                save_json(self.history, self.output_dir / "history.json")
            barrier(self.world)
            if cfg.progress and self.world.is_main:
                val = f", val mAP@all {record['val_map@all']:.4f}" if self.validates else ""
                print(f"epoch {epoch + 1}: loss {record['loss']:.4f}{val}")
        return self.history

    def evaluate(self, split: str = "test", settings: tuple[str, ...] = ("zs", "gzs", "fg"),
                 model: SpLIP | None = None) -> dict[str, float]:
        """Metrics of `model` (default: the one being trained; see splip.evaluate.evaluate)."""
        cfg = self.config
        return evaluate(model or self.model, self.test_dataset, split, settings, batch_size=cfg.eval_batch_size,
                        num_workers=cfg.num_workers, seed=cfg.seed, progress=cfg.progress,
                        convention=cfg.metric_convention, world=self.world)

    def frozen_clip(self) -> SpLIP:
        """The backbone without any prompt: the zero-shot baseline. It shares the backbone's
        LayerNorms, so evaluate it before training tunes them."""
        return SpLIP(self.backbone.model, self.backbone.tokenizer, self.model.class_names, NO_PROMPTS).to(self.device)

    def save_metrics(self, metrics: dict[str, Any], name: str = "metrics.json") -> Path:
        """Write `metrics` with this run's provenance (run_info) atomically into output_dir (process 0
        writes; every process returns the path once the file is there)."""
        path = self.output_dir / name
        if self.world.is_main:
            save_json({"metrics": metrics, "metric_convention": self.config.metric_convention,
                       "test_subset": self.config.test_subset, "run": self.run_info()}, path)
        barrier(self.world)
        return path


def _own_buffers(model: SpLIP) -> dict[str, torch.Tensor]:
    """SpLIP's persistent buffers outside the frozen CLIP (batch_mean's running E_0 means)."""
    return {n: b.detach().cpu() for n, b in model.state_dict().items() if not n.startswith("clip.")
            and n not in dict(model.named_parameters())}


def train_and_evaluate(config: TrainConfig) -> dict[str, Any]:
    """The whole job: baselines, training, best-on-validation weights, test metrics.

    Returns {"frozen_clip": ..., "untrained": ..., "trained": ..., "history": [...], "run": provenance}
    ("frozen_clip": the backbone with no prompts; "untrained": SpLIP with its initial prompts) and
    writes it to output_dir/metrics.json.
    """
    trainer = Trainer(config)
    if trainer.world.is_main:
        print(trainer.dataset.describe())
        print(trainer.parameter_table())
    frozen = trainer.evaluate(model=trainer.frozen_clip())
    untrained = trainer.evaluate()
    trainer.fit()
    trainer.load_checkpoint(trainer.selected_checkpoint, training_state=False)
    trained = trainer.evaluate()
    results = {"frozen_clip": frozen, "untrained": untrained, "trained": trained, "history": trainer.history}
    trainer.save_metrics(results)
    return {**results, "run": trainer.run_info()}


def summarize(results: dict[str, Any]) -> str:
    """A small text table of test metrics: frozen CLIP (no prompts), untrained and trained SpLIP."""
    columns = ("frozen_clip", "untrained", "trained")
    lines = [f"{'metric':<14}" + "".join(f"{c:>13}" for c in columns)]
    lines += [f"{k:<14}" + "".join(f"{results[c].get(k, np.nan):>13.4f}" for c in columns)
              for k in results["trained"]]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m splip.train PRESET.yaml [key=value ...] (torchrun too)
    from splip.launch import main

    raise SystemExit(main())
