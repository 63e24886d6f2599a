#!/usr/bin/env bash
# Add pyannote.audio 4.x, and the torch it runs on, to the project's environment for the
# `pyannote` diarization backend (docs/pyannote.md). `uv sync` stays torch-free: torch is
# large and which build fits (CPU, CUDA) is a per-machine choice, so it is installed here.
#   scripts/install-pyannote.sh            install (or repair) into .venv
#   scripts/install-pyannote.sh --remove   back to exactly the locked environment
# Settings (environment):
#   CALLQA_TORCH=cpu|cuda     cpu (default): a local CPU wheel from pip's find-links when there
#                             is one, else the PyTorch CPU index; cuda: torch from PyPI (GBs)
#   CALLQA_TORCH_VERSION=X.Y.Z  pin torch (e.g. the version of the newest torchaudio)
#   CALLQA_TORCH_INDEX=URL    the CPU index (default https://download.pytorch.org/whl/cpu)
# Packages the lock already holds keep their locked versions (uv export as constraints), and
# ./dev syncs with --inexact while the marker file exists, so `./dev test` keeps them.
set -euo pipefail
cd "$(dirname "$0")/.."

PYANNOTE_VERSION=4.0.7 # the version callqa/speech/pyannote_backend.py is tested with
torch_kind="${CALLQA_TORCH:-cpu}"
torch_version="${CALLQA_TORCH_VERSION:-}"
cpu_index="${CALLQA_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
env_dir="$(realpath -m "${UV_PROJECT_ENVIRONMENT:-.venv}")"
python="$env_dir/bin/python"
marker="$env_dir/callqa-pyannote.txt"

say() { echo "install-pyannote: $*" >&2; }
die() { say "$*"; exit 1; }

uv="$(scripts/ensure-uv.sh)"
case "${1:-}" in
  --remove)
    rm -f "$marker"
    "$uv" sync --frozen --quiet # exact: removes every package the lock does not list
    say "removed pyannote.audio and torch from $env_dir"
    exit 0 ;;
  "") ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
case "$torch_kind" in cpu|cuda) ;; *) die "CALLQA_TORCH=$torch_kind: expected cpu or cuda" ;; esac

"$uv" sync --frozen --quiet --inexact
site="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
pytag="$("$python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
size_before="$(du -sm "$site" | cut -f1)"
started=$SECONDS

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Everything the lock pins stays as locked: callqa's own dependencies must not move.
"$uv" export --frozen --no-hashes --no-emit-project --quiet >"$work/locked.txt"
# Run from outside the project: its [tool.uv] overrides drop torch from every resolution.
pip_install() { (cd "$work" && "$uv" pip install --python "$python" --quiet "$@"); }
installed() { "$python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null; }

# --- torch ------------------------------------------------------------------------------
# pip's find-links (PIP_FIND_LINKS or pip.conf) may hold a CPU wheel; uv does not read them.
find_links=()
links="${PIP_FIND_LINKS:-} $(python3 -m pip config get global.find-links 2>/dev/null || true)"
local_torch=""
for dir in $links; do
  [ -d "$dir" ] || continue
  wheel="$(ls "$dir"/torch-*+cpu-"$pytag"-*linux*"$(uname -m)".whl 2>/dev/null | sort -V | tail -1 || true)"
  if [ -n "$wheel" ]; then
    find_links=(--find-links "$dir")
    local_torch="$(basename "$wheel" | cut -d- -f2)"
  fi
done
# --no-deps here: torch's own dependencies are resolved with pyannote.audio's below, under
# the lock's constraints.
if [ "$torch_kind" = cuda ]; then
  say "torch ${torch_version:-(newest)} from PyPI (CUDA build) ..."
  pip_install --no-deps "torch${torch_version:+==$torch_version}"
elif [ -n "$local_torch" ] && { [ -z "$torch_version" ] || [ "${local_torch%+cpu}" = "$torch_version" ]; }; then
  say "torch $local_torch from ${find_links[1]} ..."
  pip_install --no-deps "${find_links[@]}" "torch==$local_torch"
else
  say "torch ${torch_version:-(newest)} from $cpu_index ..."
  pip_install --no-deps --index-url "$cpu_index" "torch${torch_version:+==$torch_version+cpu}" ||
    die "could not install a CPU torch from $cpu_index (offline? set CALLQA_TORCH_INDEX, or CALLQA_TORCH=cuda for PyPI's build)"
fi
torch_installed="$(installed torch)" || die "torch did not install"
torch_base="${torch_installed%%+*}"
major="${torch_base%%.*}"
minor="$(echo "$torch_base" | cut -d. -f2)"

# --- torchaudio -------------------------------------------------------------------------
# pyannote uses only torchaudio's pure-PyTorch parts (resampling, Kaldi fbank, MFCC).
# Prefer the release made for this torch; torchaudio stopped following torch after 2.11, so
# else the newest one before it, without deps (its wheels pin torch exactly).
audio_sources=(--extra-index-url "$cpu_index")
[ "$torch_kind" = cuda ] && audio_sources=()
[ -n "$local_torch" ] && [ "$torch_kind" = cpu ] && audio_sources=()
say "torchaudio for torch $torch_installed ..."
pip_install --no-deps "${audio_sources[@]}" "torchaudio==$torch_base.*" 2>/dev/null ||
  pip_install --no-deps "${audio_sources[@]}" "torchaudio<$major.$((minor + 1))" ||
  die "no torchaudio release fits torch $torch_installed"
if ! "$python" -c 'import torchaudio' 2>"$work/torchaudio.err"; then
  # A torchaudio built for another torch (or for CUDA next to a CPU torch) fails to load
  # its compiled extension. Without the extension files torchaudio runs as pure Python,
  # which is all pyannote needs.
  say "torchaudio $(installed torchaudio): its compiled extension does not load with torch $torch_installed; using it without ($(tail -1 "$work/torchaudio.err"))"
  rm -f "$site"/torchaudio/lib/*.so
  "$python" -c 'import torchaudio' || die "torchaudio still does not import"
fi

# --- torchcodec -------------------------------------------------------------------------
# pyannote decodes files with it; callqa passes decoded audio, so it is only declared.
# torchcodec 0.N goes with torch 2.N from 2.10 on (0.9 with 2.9, 0.7 with 2.8).
case "$minor" in 8) codec=0.7 ;; 9) codec=0.9 ;; *) codec="0.$minor" ;; esac
pip_install --no-deps "torchcodec==$codec.*" 2>/dev/null ||
  say "no torchcodec $codec.* for torch $torch_installed; pyannote will take its newest (decoding files only)"

# --- pyannote.audio ---------------------------------------------------------------------
{
  cat "$work/locked.txt"
  echo "torch==$torch_installed"
  echo "torchaudio==$(installed torchaudio)"
  if codec_installed="$(installed torchcodec)"; then echo "torchcodec==$codec_installed"; fi
} >"$work/constraints.txt"
say "pyannote.audio $PYANNOTE_VERSION and its dependencies ..."
pip_install "${find_links[@]}" --constraints "$work/constraints.txt" \
  "pyannote.audio==$PYANNOTE_VERSION"

# --- check ------------------------------------------------------------------------------
PYANNOTE_METRICS_ENABLED=false "$python" -W ignore -c '
import torch, torchaudio, pyannote.audio
from pyannote.audio import Pipeline  # noqa: F401
print(f"pyannote.audio {pyannote.audio.__version__}, torch {torch.__version__}, "
      f"torchaudio {torchaudio.__version__}, CUDA available: {torch.cuda.is_available()}")
' >"$work/check.txt" || die "pyannote.audio does not import; see the error above"
size_after="$(du -sm "$site" | cut -f1)"
{
  cat "$work/check.txt"
  echo "installed by scripts/install-pyannote.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$marker"
say "$(cat "$work/check.txt")"
say "added $((size_after - size_before)) MB to $site in $((SECONDS - started)) s"
say "next: a local model folder in CALLQA_PYANNOTE_MODEL (docs/pyannote.md)"
