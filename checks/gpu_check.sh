#!/usr/bin/env bash
# The GPU path in one prepared check (see checks/gpu_check.py). Runs from the working tree, no install:
#   bash checks/gpu_check.sh [--out DIR] [--nanogpt-steps N] [--skip amp,fp16,cells,gpt2,nanogpt] [--cpu-dry-run]
#   bash checks/gpu_check.sh --prepare   # here, before a device session: fill .gpudata/ (carry it to the GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"  # PYTHON: an interpreter with torch (default python3)
if [ "${1:-}" = "--prepare" ]; then
  # The device machine has no network and no nbdev: the corpus and the package's pure-Python dependencies
  # (fastcore comes with nbdev here; pyyaml falls back to pure Python without its C part) travel in .gpudata/.
  mkdir -p .gpudata/site
  if [ -n "${TT_DATA:-}" ] && [ -f "$TT_DATA" ]; then cp "$TT_DATA" .gpudata/tinyshakespeare.txt; fi
  for mod in fastcore yaml; do
    src=$("$PY" -c "import $mod, os; print(os.path.dirname($mod.__file__))")
    rm -rf ".gpudata/site/$mod" && cp -r "$src" .gpudata/site/ && echo "gpu_check --prepare: .gpudata/site/$mod"
  done
  exit 0
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# The copies made by --prepare (PYTHONPATH comes before site-packages, so they are the ones imported).
if [ -d .gpudata/site ]; then export PYTHONPATH="$PYTHONPATH:$PWD/.gpudata/site"; fi
if [ -z "${TT_DATA:-}" ] && [ -f .gpudata/tinyshakespeare.txt ]; then export TT_DATA="$PWD/.gpudata/tinyshakespeare.txt"; fi
exec "$PY" checks/gpu_check.py "$@"
