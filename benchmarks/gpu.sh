#!/usr/bin/env bash
# The prepared GPU check: run once on a lent CUDA machine (under 5 minutes on one H200) and
# record the figures in BENCHMARKS.md ("GPU"). It installs into a fresh venv (the machine is
# bare), runs the GPU tests, then times on the GPU: the dense d2l model against autorec to the
# same validation RMSE (sparse kernels, dense batches, TF32), per-epoch speed at ML-1M and
# ML-10M shapes, recommending, and peak memory. Results land in ${OUT:-/tmp/autorec-bench}.
#   bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/autorec-bench}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if [ ! -x .venv-gpu/bin/python ]; then
  python3 -m venv .venv-gpu && . .venv-gpu/bin/activate \
    && pip install -q torch && pip install -q -e ".[test]"
else
  . .venv-gpu/bin/activate
fi
data="${AUTOREC_DATA_DIR:-$(pwd)/shared/data}"
[ -d "$data/ml-100k" ] || data="$(cd .. && pwd)/shared/data"
export AUTOREC_DATA_DIR="$data"
run() { echo "\$ $*"; timeout 120 "$@"; echo "(exit $?)"; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  run python -m pytest -q -p no:cacheprovider -m gpu tests/
  cd benchmarks
  run python speed_to_rmse.py --device cuda --shape ml-1m --out "$out/gpu-to-rmse-ml-1m.json"
  run python speed_to_rmse.py --device cuda --shape ml-1m --params '{"optimizer": "adam", "dense_batches": true, "tf32": true}' \
    --out "$out/gpu-to-rmse-ml-1m-dense.json"
  run python speed_to_rmse.py --device cuda --shape ml-10m --dense-epochs 5 \
    --out "$out/gpu-to-rmse-ml-10m.json"
  run python speed_dense_vs_sparse.py --device cuda --shape ml-10m --epochs 3 \
    --out "$out/gpu-speed-ml-10m.json"
  run python profile_epoch.py --device cuda --shape ml-10m --epochs 2 \
    --params '{"optimizer": "adam", "dense_batches": true}' --out "$out/gpu-profile-dense.json"
  run python profile_epoch.py --device cuda --shape ml-10m --epochs 2 \
    --out "$out/gpu-profile-sparse.json"
  run python recommend_speed.py --device cuda --out "$out/gpu-recommend.json"
  run python memory_synthetic.py --device cuda --out "$out/gpu-memory.json"
} 2>&1 | tee "$out/gpu.log"
