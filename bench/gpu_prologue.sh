# The shared start of the one-call GPU scripts (sourced): strict mode, the checkout on PYTHONPATH, $OUT (the
# results folder) and $PY, and the GPU's name, memory and driver first in the log.
set -euo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-$(mktemp -d)}"
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
