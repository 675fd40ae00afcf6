# shellcheck shell=bash
# Sourced by scripts/sonic-gateway and scripts/test. Finds a Python >= 3.12 (PATH first, then
# pyenv's versions folder), installs uv into .cache/ if none is on PATH, and syncs .venv from
# uv.lock exactly (--frozen: the lockfile is never rewritten here). Nothing is downloaded but
# packages from the registry; uv is told never to download an interpreter.
set -euo pipefail
SG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SG_UV_VERSION="0.13.8"
export UV_PYTHON_DOWNLOADS=never

_sg_python_ok() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

sg_find_python() {
  local c
  for c in "${SONIC_GATEWAY_PYTHON:-}" python3.12 python3.13 python3; do
    [ -n "$c" ] || continue
    # pyenv shims exist for versions that are not selected; running them is the only real test.
    if command -v "$c" >/dev/null 2>&1 && _sg_python_ok "$c"; then
      "$c" -c 'import sys; print(sys.executable)'
      return 0
    fi
  done
  local root="${PYENV_ROOT:-$HOME/.pyenv}"
  for c in "$root"/versions/3.12*/bin/python3 "$root"/versions/3.1[3-9]*/bin/python3; do
    if [ -x "$c" ] && _sg_python_ok "$c"; then
      echo "$c"
      return 0
    fi
  done
  echo "sonic-gateway: no Python >= 3.12 found (set SONIC_GATEWAY_PYTHON=/path/to/python3.12)" >&2
  return 1
}

sg_find_uv() {
  if command -v uv >/dev/null 2>&1; then
    command -v uv
    return 0
  fi
  local venv="$SG_ROOT/.cache/uv-$SG_UV_VERSION"
  if [ ! -x "$venv/bin/uv" ]; then
    "$SG_PYTHON" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet "uv==$SG_UV_VERSION" >&2
  fi
  echo "$venv/bin/uv"
}

SG_PYTHON="$(sg_find_python)"
SG_UV="$(sg_find_uv)"
"$SG_UV" sync --quiet --frozen --python "$SG_PYTHON" --project "$SG_ROOT" >&2
export PATH="$SG_ROOT/.venv/bin:$PATH"
