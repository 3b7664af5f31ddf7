#!/usr/bin/env bash
# The GPU path in one prepared check (see checks/gpu_check.py). Runs from the working tree, no install:
#   bash checks/gpu_check.sh [--out DIR] [--nanogpt-steps N] [--skip cells,gpt2,nanogpt]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# The device machine has no network: the corpus travels in .gpudata/ (ignored by git) when TT_DATA is unset.
if [ -z "${TT_DATA:-}" ] && [ -f .gpudata/tinyshakespeare.txt ]; then export TT_DATA="$PWD/.gpudata/tinyshakespeare.txt"; fi
exec "${PYTHON:-python3}" checks/gpu_check.py "$@"  # PYTHON: an interpreter with torch (default python3)
