#!/usr/bin/env bash
# The checks to run when a GPU is lent (about 8 minutes; run from the repository root, .venv set up):
#   1. the Sketchy preset's model (ViT-B/32 random init, 224 px, synthetic images, batch 192,
#      per_image, bf16 autocast) for 20 steps with gradient checkpointing and the micro-batch
#      MICRO (default 192, the whole batch, as presets/sketchy.yaml: projected 31 GB in bf16): seconds
#      per step and peak GPU memory;
#   2. the QuickDraw-Extended-size evaluation (92,291 x 54,151) on the GPU, every convention;
#   3. with 2 or more GPUs: 2 processes against 1 on a small synthetic run (tests/test_distributed.py
#      on the CPU checks the same with gloo).
# Usage: bash scripts/gpu_check.sh [MICRO]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MICRO=${1:-192}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

echo "== 1. Sketchy preset step, batch 192, micro-batch $MICRO, checkpointing"
timeout 300 "$PY" scripts/paper_step.py --device cuda --batch 192 --micro-batch "$MICRO" --steps 20 2>&1 | grep -v WARNING

echo "== 2. QuickDraw-size metrics on the GPU"
timeout 150 "$PY" benchmarks/metrics_memory.py --device cuda 2>&1 | grep -v WARNING

GPUS=$(nvidia-smi -L | wc -l)
if [ "$GPUS" -ge 2 ]; then
  echo "== 3. 1 vs 2 processes (NCCL)"
  cat > /tmp/splip-small.yaml <<'YAML'
dataset: synthetic
dataset_options: {num_classes: 8, num_unseen: 2, photos_per_class: 6, sketches_per_photo: 1}
backbone: splip-tiny
pretrained: null
epochs: 2
batch_size: 7
progress: false
device: cuda
YAML
  timeout 120 "$PY" -m splip.train /tmp/splip-small.yaml output_dir=/tmp/splip-gpu1 | tail -7
  timeout 120 "$(dirname "$PY")/torchrun" --nproc_per_node 2 -m splip.train /tmp/splip-small.yaml output_dir=/tmp/splip-gpu2 | tail -7
else
  echo "== 3. skipped: $GPUS GPU (the 1-vs-2-process check needs 2)"
fi
