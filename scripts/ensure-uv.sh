#!/usr/bin/env bash
# Print the path of a uv binary, installing a pinned uv into .tools/ if none is on PATH.
# Needs only Python 3.11+ with venv; uv then installs everything else from uv.lock.
set -euo pipefail
UV_VERSION=0.13.9
if command -v uv >/dev/null 2>&1; then
  command -v uv
  exit 0
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x "$root/.tools/bin/uv" ]; then
  python3 -m venv "$root/.tools" >&2
  "$root/.tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION" >&2
fi
echo "$root/.tools/bin/uv"
