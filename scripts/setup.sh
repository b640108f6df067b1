#!/usr/bin/env bash
# Create .venv and install redgraph with its test tools. Safe to re-run: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    # torch 2.13.0 first: where a CPU build of it is on disk (pip's find-links), pip takes that
    # instead of downloading several GB of CUDA packages; elsewhere it comes from the registry.
    .venv/bin/python -m pip install --quiet "torch==2.13.0" || .venv/bin/python -m pip install --quiet "torch>=2.4"
fi
.venv/bin/python -m pip install --quiet -e ".[test]"
