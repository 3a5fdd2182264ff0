"""Train steps of the Sketchy preset's model on synthetic images: seconds per step and peak memory.

    python scripts/paper_step.py --device cuda                 # the preset: ViT-B/32, 224 px, batch 192
    python scripts/paper_step.py --device cpu --backbone splip-tiny --batch 4 --micro-batch 2 --steps 2

The model is the presets' (ViT-B/32 with random weights: the cost does not depend on the weights;
full SpLIP, text_conditioning per_image, the 104 seen classes of Sketchy-2), trained with Adam on
random images (no data needed), with gradient checkpointing and micro-batches as chosen, under
bf16 autocast on CUDA. Prints one line per step and a summary: median seconds per step after the
first (warm-up) and the peak memory (CUDA: torch.cuda.max_memory_allocated).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from splip.backbone import load_backbone
from splip.data.dataset import class_prompt_name
from splip.data.official import read_split
from splip.distributed import local_device
from splip.model import SpLIP, SpLIPConfig
from splip.objective import SpLIPObjective
from splip.step import forward_backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", default="ViT-B-32")
    parser.add_argument("--split", default="sketchy21", help="class split whose seen classes the text tower reads")
    parser.add_argument("--batch", type=int, default=192)
    parser.add_argument("--micro-batch", type=int, default=None)
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    device = local_device(args.device)
    backbone = load_backbone(args.backbone, None, device, seed=0)
    classes = [class_prompt_name(c) for c in read_split(args.split)[0]]
    torch.manual_seed(0)
    config = SpLIPConfig(gradient_checkpointing=not args.no_checkpointing)
    model = SpLIP(backbone.model, backbone.tokenizer, classes, config).to(device)
    model.freeze()
    objective = SpLIPObjective(model, backbone.model.visual.output_dim).to(device)
    parameters = [p for p in [*model.parameters(), *objective.parameters()] if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # bf16 needs no loss scaling
    size, g = backbone.image_size, torch.Generator().manual_seed(0)
    print(f"{args.backbone} at {size} px, {len(classes)} seen classes, batch {args.batch}, micro-batch "
          f"{args.micro_batch or args.batch}, checkpointing {config.gradient_checkpointing}, on "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}", flush=True)
    model.train()
    objective.train()
    seconds = []
    for step in range(args.steps):
        batch = {k: torch.randn(args.batch, 3, size, size, generator=g).to(device)
                 for k in ("sketch", "positive", "negative")}
        batch["label"] = torch.randint(0, len(classes), (args.batch,), generator=g).to(device)
        batch["negative_label"] = (batch["label"] + 1) % len(classes)
        batch["puzzle"] = objective.draw_puzzles(args.batch, g).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        terms = forward_backward(model, objective, batch, args.micro_batch, scaler)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
        print(f"step {step + 1}: {seconds[-1]:.2f} s, loss {terms['loss']:.4f}", flush=True)
    median = statistics.median(seconds[1:] or seconds)
    peak = (f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB (torch.cuda.max_memory_allocated)"
            if device.type == "cuda" else "not measured on the CPU (see benchmarks/paper_scale.py)")
    print(f"median {median:.2f} s per step ({median / args.batch:.3f} s per triplet) after the first; peak {peak}")


if __name__ == "__main__":
    main()
