#!/usr/bin/env bash
# Run the whole test suite: unit tests plus the real_model, real_data and browser tests
# (each of those skips with a clear reason when its model, data folder or browser is absent).
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh tests/eval -x   # extra arguments go to pytest
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
VENV="${PERSONAKIT_VENV:-$ROOT/.venv}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
exec "$VENV/bin/python" -m pytest "$@"
