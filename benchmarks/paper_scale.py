"""What fits: SpLIP's training step time and activation memory per triplet at paper scale.

Measures, on the machine it runs on, one training step (SpLIPObjective forward + backward through
splip.step.forward_backward, one micro-batch) of full SpLIP (all prompts, LayerNorm tuning, jigsaw,
text_conditioning="per_image", the presets' mode) on an open_clip ViT-B-32 (random init: the
architecture is what matters, not the weights) with each preset's real seen classes, with and
without gradient checkpointing, in float32 and in bf16 autocast, on synthetic images
(torch.randn, seeded). Examples:

    python benchmarks/paper_scale.py                          # Sketchy, float32 + bf16, ckpt off/on
    python benchmarks/paper_scale.py --presets all            # sketchy, sketchy25, tuberlin, quickdraw
    python benchmarks/paper_scale.py --batches 1 2            # slope between b=1 and b=2 (cheaper)
    python benchmarks/paper_scale.py --backbone splip-tiny --classes 4   # seconds, for a smoke test

Method.
* Every (preset, checkpointing, dtype, b) runs in a fresh process (like metrics_memory.py), so
  peaks never mix. The process builds the model, the objective and the batch, then runs step 1 with
  its peak memory recorded, then `--timed-steps` more steps whose fastest wall time is the step time
  (with 0, step 1's time is used).
* Per triplet = the slope between the two batch sizes of `--batches` (default 2 and 4): seconds per
  triplet = (t(b2) - t(b1)) / (b2 - b1), activation bytes per triplet likewise. Not b=1 and b=2 by
  default: on the CPU the bf16 peak at b=1 lies below the line through b=2 and b=4 (Sketchy,
  checkpointed: 0.28 GB measured, 0.42 GB on the line; float32 is on its line), which made the
  b=1-2 slope of that row 0.305 GB per triplet against 0.158 GB from b=2-4. The intercept
  ("const": peak(b1) - b1 * slope) is what a step adds whatever its size: e.g. under autocast the
  bf16 copies of the frozen weights that autograd keeps for the backward of every linear layer, the
  gradients of the trainable parameters.
* Peak memory, CPU: the process's peak resident set (VmHWM, reset through /proc/self/clear_refs just
  before step 1) minus its resident set at that moment, i.e. above the state after model
  construction, minus the file-backed pages (library code) mapped in during the step. The children
  run with MALLOC_MMAP_THRESHOLD_ fixed (128 KiB) so that glibc returns freed large blocks to the OS
  and the resident set follows the live tensors. CUDA: torch.cuda.max_memory_allocated over step 1
  minus memory_allocated before it.
* FLOPs: torch.utils.flop_counter (matmul, convolution, attention; not the elementwise ops) of one
  step, forward + backward + checkpointing's recompute, on fake tensors (no compute, no memory; the
  two input checks that read values are skipped for it), per triplet and checkpointed / plain: the
  compute-bound estimate of the step-time ratio, which a loaded CPU cannot measure. With the
  weights frozen the backward costs about one forward, and the recompute stops early (non-reentrant
  checkpointing does not redo a block's last linear layer, whose output nothing saves).
* Fixed part, computed (not measured): the float32 weights and buffers of model + objective, plus,
  per trainable parameter, its gradient and Adam's two moments (splip.train uses torch.optim.Adam);
  the weights stay float32 under autocast. Projected peak at the preset's batch B (presets/*.yaml:
  192) = fixed + max(const, 0) + B x activation per triplet. The largest micro-batch
  (TrainConfig.micro_batch_size) for a budget is the largest m with fixed + max(const, 0) +
  m x per-triplet <= budget ("all B" when the whole batch fits, "-" when not even 1 does).

bf16 on the CPU as a proxy for CUDA bf16: splip.evaluate.autocast_for (used by forward_backward) is a
no-op on the CPU, so the bf16 rows run the objective under torch.autocast("cpu", dtype=bfloat16)
and call backward outside it with forward_backward's weighting (1 for one micro-batch), which is
what forward_backward does on CUDA. The proxy is sound to first order for memory: CPU autocast sends
the same ops of this model to bf16 as CUDA autocast (linear, matmul/bmm - hence einsum -, scaled
dot-product attention); the residual streams stay float32 on both, because the embeddings are
float32 and open_clip's LayerNorm returns its input's dtype; float32 LayerNorm/softmax on CUDA see
float32 inputs here anyway. What differs: the attention kernels (CUDA's flash / memory-efficient
kernels keep no L x L probabilities; at these sequence lengths, <= 77 text tokens and ~55 image
tokens, that is a small share) and the allocators (page-granular resident set vs the CUDA caching
allocator's blocks). On CUDA the bf16 rows are the real thing (forward_backward's own bf16 autocast);
the float32 rows there call the objective directly without autocast.

Where the CPU proxy is not sound: the bf16 rows carry a batch-independent extra (const ~0.27 GB
checkpointed, ~0.9 GB plain; plain: the bf16 weight copies autograd keeps for four passes, which
CUDA keeps too; checkpointed: not saved tensors - counted with saved_tensors_hooks, bf16 saves less
than float32 outside the recomputed blocks -, so presumably CPU bf16 kernel workspace, unattributed)
and the b=1 point above; the
per-triplet slope between b=2 and b=4 is below float32's, as it must be (float32 block inputs plus a
smaller bf16 recompute). Where a bf16 row's per-triplet figure exceeds its float32 twin the footer
says so: the float32 row is then the upper bound for CUDA bf16.

Timings on a loaded machine are noisy: the checkpointing/plain ratios come from runs made one after
the other (interleaved: for each b and dtype, plain then checkpointed), and the header and footer
print the load average.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_memory import PeakMemory  # noqa: E402  (this folder's shared helper)

ROOT = Path(__file__).resolve().parents[1]
PRESET_SPLITS = {"sketchy": "sketchy21", "sketchy25": "sketchy25", "tuberlin": "tuberlin30",
                 "quickdraw": "quickdraw30"}
DTYPES = ("float32", "bf16")
BUDGETS_GB = (24, 40, 80)
TARGET_GB = 40.0
TARGET_RATIO = 1.4
GB = 1e9
MALLOC_MMAP_THRESHOLD = 128 * 1024


# ------------------------------------------------------------------ one measurement (child process)


@dataclass
class Setting:
    preset: str
    checkpointing: bool
    dtype: str  # "float32" or "bf16"
    batch: int
    backbone: str = "ViT-B-32"
    classes: int = 0  # 0: all of the preset's seen classes; N: the first N (smoke tests)
    device: str = "cpu"
    timed_steps: int = 1
    threads: int = 0  # torch.set_num_threads in the measuring process; 0: torch's default


@dataclass
class Measurement:
    setting: Setting
    num_classes: int
    image_size: int
    seconds: float  # wall time of one step (fastest timed step; step 1 when timed_steps = 0)
    cpu_seconds: float  # process CPU time of that step (all threads)
    first_step_seconds: float
    peak_bytes: int  # activation peak of step 1 above the state after construction
    fixed_bytes: int  # computed: weights + buffers + grads and Adam moments of the trainable params
    weight_bytes: int
    trainable_params: int
    max_text_tokens: int


def seen_class_names(preset: str, limit: int = 0) -> list[str]:
    """The preset's seen (training) classes as prompt text, in split order (first `limit` if > 0)."""
    from splip.data.dataset import class_prompt_name
    from splip.data.official import read_split

    names = [class_prompt_name(name) for name in read_split(PRESET_SPLITS[preset])[0]]
    return names[:limit] if limit > 0 else names


def preset_settings(preset: str) -> dict:
    """batch_size and text_conditioning of presets/<preset>.yaml (defaults 192, per_image)."""
    import yaml

    path = ROOT / "presets" / f"{preset}.yaml"
    values = yaml.safe_load(path.read_text()) if path.is_file() else {}
    return {"batch_size": int(values.get("batch_size", 192)),
            "text_conditioning": values.get("text_conditioning", "per_image")}


def _step(model, objective, batch, dtype: str, device: torch.device, scaler) -> None:
    """One step's forward + backward, as splip.step.forward_backward with one micro-batch."""
    from splip.step import forward_backward

    if (dtype == "float32") == (device.type == "cpu"):
        # CPU float32, or CUDA bf16: forward_backward's own autocast_for does it.
        forward_backward(model, objective, batch, None, scaler)
        return
    # CPU bf16 (the proxy) or CUDA float32: the same weighting (1: one micro-batch), our autocast.
    context = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()
    with context:
        out = objective(model, batch)
    scaler.scale(out["loss"]).backward()


def measure(setting: Setting) -> Measurement:
    """Build the model, then time and measure the peak of training steps at `setting` (in this process)."""
    from splip.backbone import architecture, load_backbone
    from splip.model import SpLIP, SpLIPConfig
    from splip.objective import SpLIPObjective

    device = torch.device(setting.device)
    cuda = device.type == "cuda"
    if setting.threads > 0:
        torch.set_num_threads(setting.threads)
    if cuda and setting.dtype == "bf16" and not torch.cuda.is_bf16_supported():
        raise RuntimeError("this GPU has no bf16: forward_backward would autocast to float16")
    names = seen_class_names(setting.preset, setting.classes)
    conditioning = preset_settings(setting.preset)["text_conditioning"]
    torch.manual_seed(0)
    backbone = load_backbone(setting.backbone, None, device=device, seed=0)
    model = SpLIP(backbone.model, backbone.tokenizer, names,
                  SpLIPConfig(text_conditioning=conditioning,
                              gradient_checkpointing=setting.checkpointing)).to(device)
    model.freeze()
    objective = SpLIPObjective(model, architecture(setting.backbone)["embed_dim"]).to(device)
    model.train()
    objective.train()
    scaler = torch.amp.GradScaler(device.type, enabled=False)

    size, b, num_classes = backbone.image_size, setting.batch, len(names)
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(num_classes, (b,), generator=gen)
    batch = {
        "sketch": torch.randn(b, 3, size, size, generator=gen),
        "positive": torch.randn(b, 3, size, size, generator=gen),
        "negative": torch.randn(b, 3, size, size, generator=gen),
        "label": labels,
        "negative_label": (labels + torch.randint(1, max(num_classes, 2), (b,), generator=gen)) % num_classes,
        "puzzle": objective.draw_puzzles(b, gen),
    }
    batch = {k: v.to(device) for k, v in batch.items()}

    parameters = list(model.parameters()) + list(objective.parameters())
    trainable = [p for p in parameters if p.requires_grad]
    weight_bytes = sum(t.numel() * t.element_size() for t in
                       [*parameters, *model.buffers(), *objective.buffers()])
    # gradient + Adam's exp_avg and exp_avg_sq, float32 like the parameters
    fixed_bytes = weight_bytes + 3 * sum(p.numel() * p.element_size() for p in trainable)

    def run_step() -> tuple[float, float]:
        for p in trainable:
            p.grad = None  # as optimizer.zero_grad() between steps
        if cuda:
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        _step(model, objective, batch, setting.dtype, device, scaler)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - wall, time.process_time() - cpu

    gc.collect()
    with PeakMemory(device) as peak:
        first = run_step()
    timed = [run_step() for _ in range(setting.timed_steps)] or [first]
    wall, cpu = min(timed)
    return Measurement(
        setting=setting, num_classes=num_classes, image_size=size, seconds=wall, cpu_seconds=cpu,
        first_step_seconds=first[0], peak_bytes=int(peak.bytes), fixed_bytes=int(fixed_bytes),
        weight_bytes=int(weight_bytes), trainable_params=sum(p.numel() for p in trainable),
        max_text_tokens=int(model.sketch_class_tokens.shape[1]),
    )


def measure_in_fresh_process(setting: Setting) -> Measurement:
    """`measure` in a new Python process (its own peak), with glibc's mmap threshold fixed."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MALLOC_MMAP_THRESHOLD))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    child = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(asdict(setting))]
    done = subprocess.run(child, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"measurement {setting} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    values = json.loads(done.stdout.strip().splitlines()[-1])
    values["setting"] = Setting(**values["setting"])
    return Measurement(**values)


@contextmanager
def _without_data_dependent_checks():
    """Fake tensors have no values: skip splip's two input checks that read them (labels in range,
    puzzles are permutations); the FLOP count does not depend on them."""
    import splip.jigsaw
    import splip.losses

    saved = splip.losses._check_labels, splip.jigsaw._check_tiles_input
    splip.losses._check_labels = splip.jigsaw._check_tiles_input = lambda *args, **kwargs: None
    try:
        yield
    finally:
        splip.losses._check_labels, splip.jigsaw._check_tiles_input = saved


def count_flops(preset: str, checkpointing: bool, batches: tuple[int, ...], backbone_name: str = "ViT-B-32",
                classes: int = 0) -> dict[int, int]:
    """Matmul/conv/attention FLOPs (torch.utils.flop_counter) of one training step per batch size,
    forward + backward including checkpointing's recompute, run on fake tensors (no compute, no memory).
    The same in float32 and bf16; elementwise ops are not counted."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    from splip.backbone import architecture, load_backbone
    from splip.model import SpLIP, SpLIPConfig
    from splip.objective import SpLIPObjective

    names = seen_class_names(preset, classes)
    backbone = load_backbone(backbone_name, None, seed=0)
    model = SpLIP(backbone.model, backbone.tokenizer, names,
                  SpLIPConfig(text_conditioning=preset_settings(preset)["text_conditioning"],
                              gradient_checkpointing=checkpointing))
    model.freeze()
    objective = SpLIPObjective(model, architecture(backbone_name)["embed_dim"])
    model.train()
    objective.train()
    trainable = [p for p in [*model.parameters(), *objective.parameters()] if p.requires_grad]
    size, flops = backbone.image_size, {}
    for b in batches:
        puzzles = objective.draw_puzzles(b, torch.Generator().manual_seed(0))
        with _without_data_dependent_checks(), FakeTensorMode(allow_non_fake_inputs=True) as mode:
            batch = {k: torch.empty(b, 3, size, size) for k in ("sketch", "positive", "negative")}
            batch["label"] = torch.zeros(b, dtype=torch.long)
            batch["negative_label"] = torch.ones(b, dtype=torch.long) % len(names)
            batch["puzzle"] = mode.from_tensor(puzzles)
            with FlopCounterMode(display=False) as counter:
                loss = objective(model, batch)["loss"]
                torch.autograd.grad(loss, trainable, allow_unused=True)  # as backward, without .grad
        flops[b] = counter.get_total_flops()
    return flops


# ------------------------------------------------------------------ table


@dataclass
class Row:
    preset: str
    checkpointing: bool
    dtype: str
    num_classes: int
    batches: tuple[int, int]
    preset_batch: int
    seconds_per_triplet: float
    cpu_seconds_per_triplet: float
    step_seconds: float  # step time at the larger batch
    activation_gb_per_triplet: float
    const_gb: float  # intercept of the peak line (batch-independent part of a step)
    fixed_gb: float  # computed weights + optimizer state
    projected_gb: float  # at preset_batch
    ratio_per_triplet: float | None = None  # checkpointing / plain, seconds per triplet
    ratio_step: float | None = None  # checkpointing / plain, step time at the larger batch
    gflops_per_triplet: float | None = None  # matmul/conv/attention FLOPs of a step, per triplet
    ratio_flops: float | None = None  # checkpointing / plain
    max_micro_batch: tuple[str, ...] = ()

    @property
    def base_gb(self) -> float:
        return self.fixed_gb + max(self.const_gb, 0.0)


def largest_micro_batch(row: Row, budget_gb: float) -> str:
    if row.activation_gb_per_triplet <= 0:
        return f"all {row.preset_batch}" if row.base_gb <= budget_gb else "-"
    fits = int((budget_gb - row.base_gb) // row.activation_gb_per_triplet)
    if fits >= row.preset_batch:
        return f"all {row.preset_batch}"
    return str(fits) if fits >= 1 else "-"


def make_rows(measurements: list[Measurement], flops: dict[tuple[str, bool], dict[int, int]] | None = None
              ) -> list[Row]:
    """One row per (preset, checkpointing, dtype): slopes between its two batch sizes.
    `flops`: count_flops per (preset, checkpointing), optional."""
    flops = flops or {}
    groups: dict[tuple, dict[int, Measurement]] = {}
    for m in measurements:
        s = m.setting
        groups.setdefault((s.preset, s.checkpointing, s.dtype), {})[s.batch] = m
    rows = []
    for (preset, ckpt, dtype), by_batch in groups.items():
        if len(by_batch) < 2:
            raise ValueError(f"{preset} ckpt={ckpt} {dtype}: need two batch sizes, got {sorted(by_batch)}")
        lo, hi = sorted(by_batch)[:2]
        m_lo, m_hi = by_batch[lo], by_batch[hi]
        span = hi - lo
        act = (m_hi.peak_bytes - m_lo.peak_bytes) / span / GB
        const = m_lo.peak_bytes / GB - lo * act
        fixed = m_hi.fixed_bytes / GB
        preset_batch = preset_settings(preset)["batch_size"]
        rows.append(Row(
            preset=preset, checkpointing=ckpt, dtype=dtype, num_classes=m_hi.num_classes, batches=(lo, hi),
            preset_batch=preset_batch,
            seconds_per_triplet=(m_hi.seconds - m_lo.seconds) / span,
            cpu_seconds_per_triplet=(m_hi.cpu_seconds - m_lo.cpu_seconds) / span,
            step_seconds=m_hi.seconds, activation_gb_per_triplet=act, const_gb=const, fixed_gb=fixed,
            projected_gb=fixed + max(const, 0.0) + preset_batch * act,
        ))
        counted = flops.get((preset, ckpt))
        if counted and lo in counted and hi in counted:
            rows[-1].gflops_per_triplet = (counted[hi] - counted[lo]) / span / 1e9
    by_key = {(r.preset, r.checkpointing, r.dtype): r for r in rows}
    for row in rows:
        row.max_micro_batch = tuple(largest_micro_batch(row, budget) for budget in BUDGETS_GB)
        plain = by_key.get((row.preset, False, row.dtype))
        if row.checkpointing and plain is not None:
            if plain.seconds_per_triplet > 0 and row.seconds_per_triplet > 0:  # else noise won
                row.ratio_per_triplet = row.seconds_per_triplet / plain.seconds_per_triplet
            row.ratio_step = row.step_seconds / plain.step_seconds
            if row.gflops_per_triplet and plain.gflops_per_triplet:
                row.ratio_flops = row.gflops_per_triplet / plain.gflops_per_triplet
    rows.sort(key=lambda r: (list(PRESET_SPLITS).index(r.preset), DTYPES.index(r.dtype), r.checkpointing))
    return rows


COLUMNS = ("preset", "C", "ckpt", "dtype", "s/trip", "cpu-s/trip", "step s", "act GB/trip", "const GB",
           "fixed GB", "proj GB", "ratio/trip", "ratio step", "GFLOP/trip", "ratio FLOP",
           *(f"mb@{b}GB" for b in BUDGETS_GB))


def format_table(rows: list[Row]) -> str:
    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    cells = [COLUMNS]
    for r in rows:
        cells.append((
            r.preset, str(r.num_classes), "on" if r.checkpointing else "off", r.dtype,
            f"{r.seconds_per_triplet:.2f}", f"{r.cpu_seconds_per_triplet:.2f}", f"{r.step_seconds:.1f}",
            f"{r.activation_gb_per_triplet:.3f}", f"{r.const_gb:.2f}", f"{r.fixed_gb:.2f}",
            f"{r.projected_gb:.1f}", ratio(r.ratio_per_triplet), ratio(r.ratio_step),
            "-" if r.gflops_per_triplet is None else f"{r.gflops_per_triplet:.0f}", ratio(r.ratio_flops),
            *r.max_micro_batch,
        ))
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells)


def machine_description(device: str, threads: int = 0) -> str:
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
        total = torch.cuda.get_device_properties(torch.device(device)).total_memory / GB
        where = f"GPU {name} ({total:.0f} GB)"
    else:
        model = platform.processor() or "unknown CPU"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        where = f"CPU {model}, {os.cpu_count()} logical cores, torch threads {threads or torch.get_num_threads()}"
    return f"{where}; torch {torch.__version__}"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def footer(rows: list[Row], device: str, loaded: bool = False) -> str:
    lines = [
        "Per triplet: slope between the two batch sizes. fixed = weights + buffers + grads and Adam moments of "
        "the trainable parameters (computed, float32); proj = fixed + max(const, 0) + batch x act/trip; "
        "mb@N GB = largest TrainConfig.micro_batch_size with fixed + max(const, 0) + mb x act/trip <= N GB. "
        "ratio = checkpointing / plain (per triplet; step time at the larger batch; FLOPs: matmul/conv/attention "
        "FLOPs of forward + backward + recompute, counted on fake tensors, the compute-bound estimate).",
    ]
    if not device.startswith("cuda"):
        lines.append(
            "bf16 rows on the CPU run torch.autocast('cpu', bfloat16) as the proxy for CUDA bf16: the same ops "
            "go to bf16 and the residual streams stay float32 on both; CUDA's fused attention kernels and "
            "caching allocator are not modelled (small at these sequence lengths).")
        for r in rows:
            twin = next((f for f in rows if (f.preset, f.checkpointing, f.dtype) == (r.preset, r.checkpointing,
                                                                                   "float32")), None)
            if r.dtype == "bf16" and twin is not None and r.activation_gb_per_triplet > twin.activation_gb_per_triplet:
                lines.append(
                    f"NOTE {r.preset} ckpt {'on' if r.checkpointing else 'off'}: CPU bf16 needs more per triplet "
                    f"than float32 ({r.activation_gb_per_triplet:.3f} vs {twin.activation_gb_per_triplet:.3f} GB). "
                    "Autocast keeps float32 block inputs and adds bf16 copies, never more than float32 in total, "
                    "so this is CPU-specific (or the b=1 point, see the docstring): not a sound proxy here; "
                    "the float32 row is the upper bound for CUDA bf16.")
    if loaded:
        lines.append("LOADED MACHINE: other processes competed for the cores (load average above this run's "
                     "threads), so the wall-clock columns and time ratios are unreliable; the FLOP ratio is not.")
    target = f"Target: sketchy (batch {{b}}, per_image), checkpointing, bf16: projected <= {TARGET_GB:.0f} GB " \
             f"at <= {TARGET_RATIO}x the step time without checkpointing"
    ckpt_bf16 = next((r for r in rows if r.preset == "sketchy" and r.checkpointing and r.dtype == "bf16"), None)
    if ckpt_bf16 is None:
        lines.append(target.format(b=192) + ": not measured (needs --presets sketchy, --dtypes bf16, ckpt on).")
    else:
        def verdict(ok: bool) -> str:
            return "MET" if ok else "NOT MET"

        def times(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}x"

        memory_ok = ckpt_bf16.projected_gb <= TARGET_GB
        lines.append(target.format(b=ckpt_bf16.preset_batch) + ":")
        lines.append(f"  memory: projected {ckpt_bf16.projected_gb:.1f} GB -> {verdict(memory_ok)}"
                     + ("" if memory_ok else f" (largest micro-batch within 40 GB: {ckpt_bf16.max_micro_batch[1]})"))
        ratio = ckpt_bf16.ratio_per_triplet
        lines.append(f"  time (measured): {times(ratio)} per triplet ({times(ckpt_bf16.ratio_step)} per step) -> "
                     + ("-" if ratio is None else verdict(ratio <= TARGET_RATIO))
                     + (" (unreliable: loaded machine)" if loaded else ""))
        if ckpt_bf16.ratio_flops is not None:
            lines.append(f"  time (FLOPs): {times(ckpt_bf16.ratio_flops)} -> {verdict(ckpt_bf16.ratio_flops <= TARGET_RATIO)}")
    for r in rows:
        if r.dtype == "float32":
            lines.append(f"float32 projection: {r.preset} ckpt {'on' if r.checkpointing else 'off'}: "
                         f"{r.projected_gb:.1f} GB at batch {r.preset_batch}")
    return "\n".join(lines)


# ------------------------------------------------------------------ driver


def settings_for(args: argparse.Namespace) -> list[Setting]:
    """Interleaved order: for each preset, batch size and dtype, plain then checkpointed."""
    checkpointing = {"both": (False, True), "off": (False,), "on": (True,)}[args.checkpointing]
    return [Setting(preset, ckpt, dtype, b, args.backbone, args.classes, args.device, args.timed_steps,
                    args.threads)
            for preset in args.presets for b in args.batches for dtype in args.dtypes for ckpt in checkpointing]


def run(args: argparse.Namespace, log=lambda text: print(text, file=sys.stderr, flush=True)) -> list[Row]:
    settings = settings_for(args)
    measurements = []
    for i, setting in enumerate(settings, 1):
        label = (f"{setting.preset} ckpt={'on' if setting.checkpointing else 'off'} {setting.dtype} "
                 f"b={setting.batch}")
        log(f"[{i}/{len(settings)}] {label} ...")
        m = measure(setting) if args.in_process else measure_in_fresh_process(setting)
        log(f"[{i}/{len(settings)}] {label}: step {m.seconds:.1f} s (first {m.first_step_seconds:.1f} s), "
            f"peak {m.peak_bytes / GB:.2f} GB, load {load_average()}")
        measurements.append(m)
        if args.log_jsonl:
            with open(args.log_jsonl, "a") as log_file:  # survives an interrupted run
                log_file.write(json.dumps(asdict(m)) + "\n")
    flops = {}
    if args.flops:
        for preset in args.presets:
            for ckpt in sorted({s.checkpointing for s in settings}):
                log(f"FLOP count (fake tensors): {preset} ckpt={'on' if ckpt else 'off'} ...")
                try:
                    flops[preset, ckpt] = count_flops(preset, ckpt, tuple(args.batches), args.backbone, args.classes)
                except Exception as error:  # a count is a bonus: report, do not lose the measurements
                    log(f"FLOP count failed: {type(error).__name__}: {error}")
    return make_rows(measurements, flops)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["sketchy"],
                        help=f"presets to measure, or 'all' ({', '.join(PRESET_SPLITS)}); default sketchy")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--checkpointing", choices=("both", "off", "on"), default="both")
    parser.add_argument("--batches", nargs=2, type=int, default=None, metavar=("B1", "B2"),
                        help="the two batch sizes of the slope (default: 2 4)")
    parser.add_argument("--backbone", default="ViT-B-32", help="open_clip model name (random init)")
    parser.add_argument("--classes", type=int, default=0,
                        help="use only the first N seen classes of each preset (0: all; for smoke tests)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--timed-steps", type=int, default=1,
                        help="steps timed after the measured first step (fastest counts; 0: time step 1)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of the measuring process (0: torch's default, all cores)")
    parser.add_argument("--no-flops", dest="flops", action="store_false",
                        help="skip the FLOP count (fake tensors, in this process)")
    parser.add_argument("--log-jsonl", help="append each measurement to this file as JSON, as it completes")
    parser.add_argument("--in-process", action="store_true",
                        help="measure in this process (peaks then mix; for smoke tests only)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # fresh-process mode: a Setting as JSON
    args = parser.parse_args(argv)
    if args.presets == ["all"]:
        args.presets = list(PRESET_SPLITS)
    unknown = [p for p in args.presets if p not in PRESET_SPLITS]
    if unknown:
        parser.error(f"unknown presets {unknown}; choose from {', '.join(PRESET_SPLITS)} or 'all'")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.batches is None:
        args.batches = [2, 4]
    if len(set(args.batches)) != 2 or min(args.batches) < 1:
        parser.error("--batches needs two different positive batch sizes")
    args.batches = sorted(args.batches)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        values = json.loads(args.child)
        print(json.dumps(asdict(measure(Setting(**values)))))
        return
    start_load = load_average()
    print(f"machine: {machine_description(args.device, args.threads)}; load average at start {start_load}")
    print(f"backbone {args.backbone} (random init), per_image text conditioning, full SpLIP "
          f"(all prompts, LayerNorm tuning, jigsaw); slope between b={args.batches[0]} and b={args.batches[1]}; "
          f"{'in-process' if args.in_process else 'one fresh process per setting'}; device {args.device}",
          flush=True)
    rows = run(args)
    print(format_table(rows))
    end_load = load_average()
    threads = args.threads or torch.get_num_threads()
    loaded = not args.device.startswith("cuda") and any(
        float(value.split()[0]) > threads + 0.5 for value in (start_load, end_load) if value != "unknown")
    print(footer(rows, args.device, loaded))
    print(f"load average at end {end_load} (1, 5, 15 min; this run's own threads: {threads})")


if __name__ == "__main__":
    main()
