#!/usr/bin/env bash
# Create .venv and install soundscene into it (torch 2.13.0 first, so the resolver keeps it).
# Usage: scripts/setup.sh [test]   -- "test" also installs the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
if [ "${1:-}" = "test" ]; then
  .venv/bin/python -m pip install -q -e ".[test]"
else
  .venv/bin/python -m pip install -q -e .
fi
