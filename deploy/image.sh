#!/usr/bin/env bash
# The container image's steps, in one script that the Dockerfile runs and that
# tests/test_deploy.py runs outside a container, so the recipe cannot rot:
#
#   deploy/image.sh build PREFIX   builder stage: PREFIX/venv with the pinned dependencies and
#                                  the project (a wheel, not editable), PREFIX/models/en-small
#                                  (the shipped model and its LM); run from the repository root
#   deploy/image.sh serve [ARGS]   entry point: `xlsr-stream serve` on $XLSR_HOST:$XLSR_PORT with
#                                  the model at $XLSR_STREAM_MODEL (mount another one and point
#                                  this at it); ARGS go to `xlsr-stream serve` (--help lists them)
#   deploy/image.sh healthcheck    HEALTHCHECK: exit 0 when /healthz answers 200
#
# Environment (with the image's values): XLSR_PREFIX=/opt/xlsr-stream,
# XLSR_STREAM_MODEL=$XLSR_PREFIX/models/en-small, XLSR_HOST=0.0.0.0, XLSR_PORT=2700,
# XLSR_TORCH_INDEX (build only: the index torch comes from; the CPU wheels by default,
# e.g. https://download.pytorch.org/whl/cu128 for a CUDA image; empty: pip's own configuration).
set -euo pipefail

usage() {
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

build() {
  local prefix=${1:?build needs a PREFIX}
  [[ -f pyproject.toml && -f constraints.txt ]] || { echo "image.sh build: run it from the repository root" >&2; exit 2; }
  local venv=$prefix/venv py=${PYTHON:-python3}
  mkdir -p "$prefix"
  # An existing venv is kept (the tests bring one whose packages are already satisfied).
  [[ -x $venv/bin/python ]] || "$py" -m venv "$venv"
  local pip=("$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check -q)
  local torch_pin index=${XLSR_TORCH_INDEX-https://download.pytorch.org/whl/cpu}
  torch_pin=$(grep -E '^torch==' constraints.txt)
  # torch first and exactly: an unpinned resolve would pull a multi-GB CUDA build.
  if [[ -n $index ]]; then
    "${pip[@]}" -c constraints.txt --index-url "$index" --extra-index-url https://pypi.org/simple "$torch_pin"
  else
    "${pip[@]}" -c constraints.txt "$torch_pin"
  fi
  # The project as a wheel (what the image runs is what was built, not this checkout).
  local wheels had_build=0
  wheels=$(mktemp -d)
  [[ -d build ]] && had_build=1
  "${pip[@]}" -c constraints.txt "setuptools>=77"  # the build backend (pyproject.toml)
  "$venv/bin/python" -m pip wheel --no-deps --no-build-isolation --disable-pip-version-check -q -w "$wheels" .
  ((had_build)) || rm -rf build  # setuptools' scratch folder, not ours to leave behind
  local wheel=("$wheels"/xlsr_stream-*.whl)
  "${pip[@]}" -c constraints.txt "${wheel[0]}"
  "${pip[@]}" --no-deps --force-reinstall "${wheel[0]}"
  rm -rf "$wheels"
  # The shipped model and LM, beside the venv: the package does not carry them.
  rm -rf "$prefix/models/en-small"
  mkdir -p "$prefix/models"
  cp -r models/en-small "$prefix/models/en-small"
  # The installed package must import from anywhere, without this checkout.
  (cd / && "$venv/bin/python" -c "import cli.main, server, streaming")
  echo "image.sh: built $prefix ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
}

serve() {
  local prefix=${XLSR_PREFIX:-/opt/xlsr-stream}
  export XLSR_STREAM_MODEL=${XLSR_STREAM_MODEL:-$prefix/models/en-small}
  [[ -d $XLSR_STREAM_MODEL ]] || { echo "image.sh serve: no model folder at XLSR_STREAM_MODEL=$XLSR_STREAM_MODEL" >&2; exit 2; }
  # exec: the server becomes the container's main process, so SIGTERM from
  # `docker stop` or the kubelet reaches it directly and drains its streams.
  exec "$prefix/venv/bin/xlsr-stream" serve --host "${XLSR_HOST:-0.0.0.0}" --port "${XLSR_PORT:-2700}" "$@"
}

healthcheck() {
  local prefix=${XLSR_PREFIX:-/opt/xlsr-stream}
  # The slim image has no curl: ask Python.
  exec "$prefix/venv/bin/python" -c '
import sys, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/healthz"
try:
    with urllib.request.urlopen(url, timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as exc:
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
' "${XLSR_PORT:-2700}"
}

case ${1:-} in
  build) shift; build "$@" ;;
  serve) shift; serve "$@" ;;
  healthcheck) shift; healthcheck ;;
  *) usage ;;
esac
