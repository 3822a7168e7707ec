#!/usr/bin/env bash
# Build KenLM's command-line tools (lmplz, build_binary, query) from the kenlm sdist on PyPI.
#
# Why from the sdist: KenLM's binaries are packaged neither on PyPI (the kenlm wheel has only the
# Python query module) nor in Debian, but the sdist carries the full C++ source and its CMake build.
# We pin the same version as the Python module in .venv so both read the same binary format.
#
# Idempotent: if the tools already exist in the cache they are left alone (pass --force to rebuild).
# Nothing is written inside the git tree.
#
# Needs: cmake, g++, and the Debian packages libboost-program-options-dev libboost-system-dev
#        libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev.
#
# Usage:  language_model/build_kenlm_tools.sh [--force]
#   KENLM_VERSION  (default 0.3.0)
#   KENLM_CACHE    (default /work/recipe-cache/kenlm-build)  -> tools land in $KENLM_CACHE/bin
#   PIP            (default: .venv/bin/pip of this repo, else pip3)
#   JOBS           (default 2; the build box is shared, and we run under nice)
set -euo pipefail

KENLM_VERSION="${KENLM_VERSION:-0.3.0}"
KENLM_CACHE="${KENLM_CACHE:-/work/recipe-cache/kenlm-build}"
JOBS="${JOBS:-2}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PIP:-}" ]]; then
    if [[ -x "$REPO_ROOT/.venv/bin/pip" ]]; then PIP="$REPO_ROOT/.venv/bin/pip"; else PIP=pip3; fi
fi

BIN="$KENLM_CACHE/bin"
TOOLS=(lmplz build_binary query)

if [[ "${1:-}" != "--force" ]]; then
    all_there=1
    for t in "${TOOLS[@]}"; do [[ -x "$BIN/$t" ]] || all_there=0; done
    if [[ $all_there == 1 ]]; then
        echo "KenLM tools already built in $BIN"
        exit 0
    fi
fi

for tool in cmake g++; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (apt-get install cmake g++)" >&2; exit 1; }
done
if [[ ! -e /usr/include/boost/program_options.hpp ]]; then
    echo "error: boost headers not found; apt-get install libboost-program-options-dev" \
         "libboost-system-dev libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev" >&2
    exit 1
fi

mkdir -p "$KENLM_CACHE/sdist" "$BIN"
SDIST="$KENLM_CACHE/sdist/kenlm-$KENLM_VERSION.tar.gz"
if [[ ! -f "$SDIST" ]]; then
    # --no-build-isolation: otherwise pip builds a private cmake from source just to read metadata.
    "$PIP" download --no-deps --no-binary kenlm --no-build-isolation \
        "kenlm==$KENLM_VERSION" -d "$KENLM_CACHE/sdist"
fi

SRC="$KENLM_CACHE/src/kenlm-$KENLM_VERSION"
if [[ ! -f "$SRC/CMakeLists.txt" ]]; then
    mkdir -p "$KENLM_CACHE/src"
    tar -xzf "$SDIST" -C "$KENLM_CACHE/src"
fi

BUILD="$KENLM_CACHE/build-$KENLM_VERSION"
# KENLM_MAX_ORDER=6 is KenLM's own default; enough for anything we would ship.
nice cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=6 \
    -DBUILD_TESTING=OFF -DBUILD_PYTHON=OFF
nice cmake --build "$BUILD" -j "$JOBS" --target "${TOOLS[@]}"

for t in "${TOOLS[@]}"; do
    cp "$BUILD/bin/$t" "$BIN/$t"
done
echo "KenLM $KENLM_VERSION tools built: $(printf "$BIN/%s " "${TOOLS[@]}")"
