#!/usr/bin/env bash
# GPU check, one command (about 5-8 min on one H100/H200-class GPU):
#   sanode/lab/scripts/gpu-check.sh [OUT_DIR]      (default $OUT, else results/gpu)
# Needs CUDA and the MNIST IDX files: set SANODE_DATA_MIRROR to a folder laid out like
# ../shared/data (MNIST/raw/*.gz), else torchvision downloads them into data/.
# Writes under OUT_DIR: bench-<precision>.json (sanode bench on CUDA: float32, TF32 and
# bfloat16 products), paper-epoch.json (one epoch of the paper protocol on full MNIST, T = 60,
# batch 250, with the projected 700-epoch time), pytest-gpu.txt (the GPU tests) and gpu.json
# (the device and versions).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-results/gpu}}"
mkdir -p "$OUT_DIR"
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
"$PY" - "$OUT_DIR/gpu.json" <<'PYEOF'
import json, sys, torch
assert torch.cuda.is_available(), "no CUDA device: this script is for a GPU machine"
p = torch.cuda.get_device_properties(0)
json.dump({"device": p.name, "memory_gib": p.total_memory / 2**30, "torch": torch.__version__,
           "cuda": torch.version.cuda}, open(sys.argv[1], "w"), indent=2)
PYEOF
# bench: float32 (full precision), float32 with TF32 tensor cores, bfloat16 products
"$PY" -m sanode.cli bench --device cuda --train-products float32 bfloat16 --steps 55 600 \
    --batch 250 --eval-batch 2000 --out "$OUT_DIR/bench-highest.json" | tee "$OUT_DIR/bench-highest.txt"
"$PY" -m sanode.cli bench --device cuda --train-products float32 --matmul-precision high --no-naive \
    --steps 55 600 --batch 250 --eval-batch 2000 --out "$OUT_DIR/bench-tf32.json" | tee "$OUT_DIR/bench-tf32.txt"
# one epoch of the paper protocol (full MNIST, T_train = 60, batch 250), float32 and bfloat16
for mm in float32 bfloat16; do
  extra=(); [ "$mm" = bfloat16 ] && extra=(--train-products bfloat16)
  start=$(date +%s.%N)
  "$PY" -m sanode.cli train --dataset mnist --epochs 1 --batch-size 250 --lr 0.001 \
      --t-train 60 --dt 0.1 --ortho-penalty 0.01 --device cuda --quiet --no-resume \
      --eps-test --out "$OUT_DIR/paper-epoch-$mm.pt" "${extra[@]}" > "$OUT_DIR/paper-epoch-$mm.txt"
  end=$(date +%s.%N)
  "$PY" - "$OUT_DIR/paper-epoch-$mm.json" "$mm" "$start" "$end" <<'PYEOF'
import json, sys
out, mm, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
s = end - start
json.dump({"matmul": mm, "epoch_s_with_startup": s, "projected_700_epochs_h": 700 * s / 3600,
           "protocol": "full MNIST, T_train 60, dt 0.1, batch 250, Adam lr 1e-3"},
          open(out, "w"), indent=2)
print(f"paper protocol, {mm}: one epoch {s:.1f} s -> 700 epochs {700 * s / 3600:.1f} h")
PYEOF
done
"$PY" -m pytest -q -m gpu tests/test_gpu.py 2>&1 | tee "$OUT_DIR/pytest-gpu.txt"
