#!/usr/bin/env bash
# Part (b) of bench/paper_time.py in one call on a bare GPU machine with only torch (+ torchvision): the real
# training loop for the 17 exp1/exp2 rows at paper settings (seconds, device busy fraction, peak memory per row),
# then the memory count beside it. Expected: ~3-6 min on one H100/H200 (estimate: bench/README.md, paper_time).
# Usage: OUT=/some/dir bash bench/paper_time_gpu.sh [extra args for `paper_time.py loop`]
source "$(dirname "$0")/gpu_prologue.sh"
"$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
"$PY" bench/paper_time.py loop --device "${DEVICE:-cuda}" --json "$OUT/paper_time_loop.json" "$@" 2>&1 \
    | tee "$OUT/paper_time_loop.log"
"$PY" bench/paper_time.py memory --json "$OUT/paper_time_memory.json" 2>&1 | tee "$OUT/paper_time_memory.log"
echo "results in $OUT"
