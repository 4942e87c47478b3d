#!/usr/bin/env bash
# Create .venv (Python 3.11, the pyenv one when present) and install requirements.txt.
# Idempotent and fast when done: a stamp under .cache/stamps/ keyed on the content of
# requirements.txt, this script and the interpreter; a changed key rebuilds the venv from scratch.
#
#   scripts/setup-venv.sh                 set up (or verify) .venv
#   scripts/setup-venv.sh --print-python  print the interpreter it would use (exit 1 if none)
#
# FV_PYTHON=/path/to/python3.x overrides the interpreter choice.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/.venv"
REQ="$ROOT/requirements.txt"
STAMP_DIR="$ROOT/.cache/stamps"
STAMP="$STAMP_DIR/venv"

log() { printf 'setup-venv: %s\n' "$*"; }
die() { printf 'setup-venv: ERROR: %s\n' "$*" >&2; exit 1; }

# ansible-core 2.19 runs on a controller Python 3.11 - 3.13.
py_ok() {
  "$1" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 13)))' 2>/dev/null
}

find_python() {
  local c cands=()
  [ -n "${FV_PYTHON:-}" ] && cands+=("$FV_PYTHON")
  local pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
  if [ -d "$pyenv_root/versions" ]; then
    # newest installed 3.11.x first
    while IFS= read -r c; do cands+=("$c"); done < <(
      printf '%s\n' "$pyenv_root"/versions/3.11.*/bin/python3.11 | grep -v '[*]' | sort -V -r)
  fi
  for c in python3.11 python3; do
    command -v "$c" >/dev/null 2>&1 && cands+=("$(command -v "$c")")
  done
  for c in "${cands[@]}"; do
    if [ -x "$c" ] && py_ok "$c"; then
      # resolve pyenv shims to the real interpreter
      "$c" -c 'import sys; print(sys.executable)'
      return 0
    fi
  done
  return 1
}

if [ "${1:-}" = "--print-python" ]; then
  find_python || exit 1
  exit 0
fi

PY=$(find_python) || die "no Python 3.11-3.13 found (set FV_PYTHON, or run scripts/setup-host.sh)"
"$PY" -c 'import venv, ensurepip' 2>/dev/null ||
  die "$PY cannot create venvs (ensurepip missing): run scripts/setup-host.sh (python3-venv)"

mkdir -p "$STAMP_DIR"
exec 9>"$STAMP_DIR/venv.lock"
flock 9  # one setup at a time

key=$( { sha256sum <"$REQ"; sha256sum <"$0"; echo "$PY"; "$PY" -V 2>&1; } | sha256sum | cut -d' ' -f1)

venv_works() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c 'import libvirt, ansible, jmespath' >/dev/null 2>&1
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ] && venv_works; then
  log "up to date: $VENV ($("$VENV/bin/python" -V 2>&1))"
  exit 0
fi

log "creating $VENV with $PY ($("$PY" -V 2>&1))"
rm -f "$STAMP"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$VENV/bin/python" -m pip install --quiet --no-input -r "$REQ" ||
  die "pip install -r requirements.txt failed (libvirt-python needs gcc, pkg-config, libvirt-dev)"
"$VENV/bin/python" -m pip check || die "pip check failed"

v=$("$VENV/bin/python" -c 'import libvirt; print(libvirt.getVersion())') ||
  die "import libvirt failed in $VENV"
log "libvirt-python OK (libvirt.getVersion() = $v)"
v=$("$VENV/bin/ansible" --version) || die "ansible does not run in $VENV"
log "${v%%$'\n'*}"

echo "$key" >"$STAMP"
log "done: $VENV"
