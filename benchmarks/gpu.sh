#!/usr/bin/env bash
# The prepared GPU check: run once on a lent CUDA machine (about 5 minutes on one GPU) and
# record the figures in BENCHMARKS.md. Needs a venv with a CUDA build of torch and autorec:
#   python3 -m venv .venv && . .venv/bin/activate && pip install torch && pip install -e ".[test]"
# Results land in ${OUT:-/tmp/autorec-bench}/gpu-*.json and gpu.log.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/autorec-bench}"
mkdir -p "$out"
export AUTOREC_DATA_DIR="${AUTOREC_DATA_DIR:-$(cd .. && pwd)/shared/data}"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  python -m pytest -q -p no:cacheprovider -m gpu tests/
  if [ -f "$AUTOREC_DATA_DIR/ml-100k/u.data" ]; then
    python benchmarks/speed_dense_vs_sparse.py --device cuda --out "$out/gpu-speed-ml-100k.json"
  fi
  python benchmarks/speed_dense_vs_sparse.py --device cuda --shape ml-1m --out "$out/gpu-speed-ml-1m.json"
  python benchmarks/speed_dense_vs_sparse.py --device cuda --shape ml-10m --epochs 3 \
    --out "$out/gpu-speed-ml-10m.json"
  python benchmarks/memory_synthetic.py --device cuda --out "$out/gpu-memory.json"
} 2>&1 | tee "$out/gpu.log"
