#!/usr/bin/env bash
# Print the path of a uv binary, installing a pinned uv into .tools/ if none is on PATH.
# Needs only Python 3.11+ (with venv); uv then installs everything else from uv.lock.
set -euo pipefail
UV_VERSION=0.13.9
if command -v uv >/dev/null 2>&1; then
  command -v uv
  exit 0
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
if [ ! -x "$tools/bin/uv" ]; then
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "callqa needs Python 3.11 or newer as python3 (or uv on PATH)" >&2
    exit 1
  fi
  rm -rf "$tools"
  if ! python3 -m venv "$tools" >/dev/null 2>&1; then
    # Debian and Ubuntu ship venv separately; install it when we may.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing python3-venv (Debian package) ..." >&2
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
      rm -rf "$tools"
      python3 -m venv "$tools" >&2
    else
      echo "python3 -m venv failed: install python3-venv (or uv) and retry" >&2
      exit 1
    fi
  fi
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION" >&2
fi
echo "$tools/bin/uv"
