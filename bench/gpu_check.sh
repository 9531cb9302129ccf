#!/usr/bin/env bash
# The GPU figures of issues 9 and 10 in one run, on a bare GPU machine with only torch (no Ray):
#   part (a) of bench/train_throughput.py for all five networks and every variant, bf16 + channels_last,
#   batch 128, with the fp32 NCHW baseline in the same run; then Wav2Vec2 base (random init, 30 s clips).
# Usage: OUT=/some/dir bash bench/gpu_check.sh [extra args for train_throughput.py]
source "$(dirname "$0")/gpu_prologue.sh"
"$PY" -c "import torch, torchvision, transformers; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'transformers', transformers.__version__)"
"$PY" bench/train_throughput.py --device "${DEVICE:-cuda}" --bf16 --channels-last --batch 128 --steps 20 --warmup 5 \
    --compare-fp32 --wav2vec2 --w2v-batch 8 --json "$OUT/train_throughput.json" "$@" 2>&1 | tee "$OUT/train_throughput.log"
