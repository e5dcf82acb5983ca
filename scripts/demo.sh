#!/usr/bin/env bash
# A first look at personakit: set up the environment, then run `personakit demo`
# (a small end-to-end run on the embedded models). Extra arguments go to the demo:
#
#   bash scripts/demo.sh
#   bash scripts/demo.sh --help
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
VENV="${PERSONAKIT_VENV:-$ROOT/.venv}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
exec "$VENV/bin/personakit" demo "$@"
