#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian machine, idempotently:
# system packages (when root), the virtual environment .venv, and the project
# installed into it in editable mode with exact versions from constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  libsndfile1          # soundfile: wav/flac/ogg
  libportaudio2        # sounddevice: microphone capture
  espeak-ng            # tests synthesise short speech
  flite                # the recipe smoke test synthesises with it
  fortunes fortunes-min  # ... from sentences taken from these
  sox                  # audio conversions in tests and the recipe
  pocketsphinx-testdata  # real LibriVox clips: the real-speech dev set
  build-essential cmake  # kenlm's Python module builds from source
  haproxy              # the load balancer the replica tests run (deploy/haproxy)
  chromium chromium-driver  # the captioning page's tests run it headless (Selenium)
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.xlsr-stream-installed
if [[ ! -f $stamp || constraints.txt -nt $stamp || pyproject.toml -nt $stamp ]]; then
  echo "setup: installing Python packages (pinned in constraints.txt)"
  .venv/bin/python -m pip install -q --upgrade "pip>=24"
  # torch first and exactly: an unpinned resolve would pull a multi-GB CUDA build.
  .venv/bin/python -m pip install -q -c constraints.txt "torch==$(grep -E '^torch==' constraints.txt | cut -d= -f3 | cut -d+ -f1)"
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test,dev]"
  touch "$stamp"
fi
