#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One pytest-xdist worker per core, at most 4 (tests/conftest.py gives each worker's torch one
# thread); REDGRAPH_TEST_WORKERS=0 runs in this process, and a later -n in the arguments wins.
workers="${REDGRAPH_TEST_WORKERS:-$(nproc)}"
[ "$workers" -gt 4 ] && workers=4
exec .venv/bin/python -m pytest -n "$workers" --dist worksteal "$@"
