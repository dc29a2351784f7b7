#!/usr/bin/env bash
# The GPU figures #19 asks for, in one run that fits a short loan of a GPU machine (about 8 minutes on an
# H100-class card): full-size SD 1.5 and SDXL checkpoints with random weights (the same speed and memory as
# real ones) are written to models/Stable-diffusion/bench-*.safetensors (git ignores them), then the
# benchmarks run on cuda and print markdown for bench/RESULTS.md. Usage: bash bench/gpu_session.sh [outfile]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-results.md}"
py=.venv/bin/python
[ -x "$py" ] || py=python3
$py - <<'PY'
import sys, torch
sys.path.insert(0, ".")
from pathlib import Path
from tests.random_checkpoint import write_random_checkpoint
folder = Path("models/Stable-diffusion")
for family in ("sd1", "sdxl"):
    path = folder / f"bench-{family}.safetensors"
    if not path.exists():
        write_random_checkpoint(path, family, full_size=True, dtype=torch.float16)
PY
{
  echo "## $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo GPU)"
  echo; echo "### torch.compile, SD 1.5 512 px 20 steps"; echo
  timeout 300 $py bench/bench_compile.py --device cuda --checkpoint bench-sd1 --size 512 --steps 20 || echo "(failed or timed out)"
  echo; echo "### torch.compile, SDXL 1024 px 20 steps"; echo
  timeout 300 $py bench/bench_compile.py --device cuda --checkpoint bench-sdxl --size 1024 --steps 20 || echo "(failed or timed out)"
  echo; echo "### Offload modes, SDXL 1024 px"; echo
  timeout 300 $py bench/bench_memory_plan.py --device cuda --checkpoint bench-sdxl --size 1024 --steps 8 || echo "(failed or timed out)"
  echo; echo "### Cost curves, SD 1.5"; echo
  timeout 400 $py bench/bench_cost_curves.py --device cuda --checkpoint bench-sd1 --sizes 512 1024 2048 || echo "(failed or timed out)"
  echo; echo "### Large images"; echo
  timeout 300 $py bench/bench_large_images.py --device cuda --checkpoint bench-sd1 || echo "(failed or timed out)"
} 2>&1 | tee "$out"
