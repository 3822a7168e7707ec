#!/usr/bin/env bash
# Resume the whole en-small recipe from wherever it stopped, or run a fast CI smoke test.
#
#   recipe/run_all.sh            # text prep (once), then synthesis + training in the background
#   recipe/run_all.sh --status   # what is running, hours of audio, last training/eval lines
#   recipe/run_all.sh --stop     # stop the background jobs (training writes a checkpoint first)
#   recipe/run_all.sh --export   # newest checkpoint -> models/en-small (+ evaluation in the card)
#   recipe/run_all.sh --evaluate-engine  # greedy/LM x streaming/offline via xlsr-stream eval -> the card
#   recipe/run_all.sh --distill [distill.py args]  # issue 13: real speech, Whisper teacher, distilled
#                                # student (background), e.g. --decay-start 7122 --decay-steps 2500
#   recipe/run_all.sh --smoke    # CI: seconds of data, 2 training steps, export to a temp dir,
#                                # load it with transformers and transcribe (< 2 min)
#
# Environment: XLSR_RECIPE_DIR (default /work/recipe-cache) holds text, shards, checkpoints, logs.
# PYTHON (default: the repo's .venv python). XLSR_TRAIN_THREADS (default 1: on a loaded shared box two
# OpenMP threads stall each other; use 2 on an otherwise idle machine). Background jobs run under nice so
# interactive work keeps priority.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
cd "$HERE"

alive() {  # alive PIDFILE SCRIPT -> 0 if the pid in PIDFILE runs SCRIPT
  local pid
  [ -f "$1" ] || return 1
  pid="$(cat "$1")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "$2"
}

start_bg() {  # start_bg NAME NICE SCRIPT ARGS...
  local name="$1" niceness="$2"; shift 2
  local pidf="$CACHE/$name.pid"
  if alive "$pidf" "$1"; then
    echo "$name already running (pid $(cat "$pidf"))"
    return
  fi
  # few malloc arenas: the loader thread's variable-size arrays otherwise fragment RSS upwards
  MALLOC_ARENA_MAX=2 setsid nohup nice -n "$niceness" "$PY" "$@" >> "$CACHE/logs/$name.out" 2>&1 < /dev/null &
  echo $! > "$pidf"
  echo "started $name (pid $!), log $CACHE/logs/$name.out"
}

mode="${1:-run}"
shift || true  # what is left goes to distill.py (--distill)
if [ "$mode" = "--smoke" ]; then
  CACHE="$(mktemp -d /tmp/xlsr-smoke.XXXXXX)"
  export XLSR_RECIPE_DIR="$CACHE"
  trap 'rm -rf "$CACHE"' EXIT
  set -x
  "$PY" prepare_text.py --limit 300
  "$PY" synth.py --weights flite:1,espeak:1 --utts-per-shard 6 --max-shards 2 --fast-first-hours 0 \
        --dev-per-source flite:3,espeak:2
  # step 0 as a whole utterance, step 1 as the engine streams it (attention memory)
  "$PY" train.py --max-steps 2 --batch-seconds 12 --log-every 1 --dev-limit 3 --threads 2 \
        --stream-from-step 1 --stream-prob 1 --stream-memory-from-step 1 --stream-memory-share 1 \
        --stream-running-norm-from-step 1
  "$PY" export.py --out "$CACHE/model" --evaluate
  "$PY" - "$CACHE/model" "$CACHE/eval/synth-dev" <<'EOF'
import sys, json, soundfile as sf, torch
from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor
model_dir, dev = sys.argv[1], sys.argv[2]
proc = Wav2Vec2Processor.from_pretrained(model_dir)
model = Wav2Vec2ForCTC.from_pretrained(model_dir).eval()
assert json.load(open(f"{model_dir}/vocab.json"))["|"] == 4
name = open(f"{dev}/transcripts.tsv").readline().split("\t")[0]
wave, sr = sf.read(f"{dev}/{name}", dtype="float32")
inp = proc(wave, sampling_rate=sr, return_tensors="pt")
with torch.no_grad():
    ids = model(**inp).logits.argmax(-1)
print("smoke transcript:", repr(proc.batch_decode(ids)[0]))
EOF
  # issue 13's stages with a tiny random stand-in teacher (CI has no Whisper wheels): teacher features,
  # head training, pseudo-labels, targets, two distillation steps (one streamed), export, load
  "$PY" teacher.py standin
  "$PY" teacher.py features --synth-hours 1
  "$PY" teacher.py train --synth-hours 1 --steps 3 --head-steps 2 --frames-per-batch 1500
  "$PY" teacher.py label --synth-hours 1
  "$PY" teacher.py targets --synth-hours 1
  "$PY" distill.py --init "$CACHE/model" --synth-hours 1 --max-steps 2 --stream-prob 0.5 --batch-seconds 12 \
        --log-every 2 --decay-start 1 --decay-steps 1
  "$PY" export.py --checkpoint "$(ls "$CACHE"/distill/ckpt-*.pt | tail -n 1)" --out "$CACHE/model-distilled"
  # the default model is a weight average of two exports: check --average-with gives the mean
  "$PY" export.py --checkpoint "$(ls "$CACHE"/distill/ckpt-*.pt | tail -n 1)" --out "$CACHE/model-avg" \
        --average-with "$CACHE/model"
  "$PY" - "$CACHE" <<'CHECK'
import sys
from safetensors.torch import load_file
a, b, m = (load_file(f"{sys.argv[1]}/{d}/model.safetensors") for d in ("model-distilled", "model", "model-avg"))
worst = max(float(((a[k] + b[k]) / 2 - m[k]).abs().max()) for k in m if m[k].is_floating_point())
assert worst < 1e-6, f"--average-with: weights are not the mean of the two models (max |diff| {worst})"
CHECK
  grep -q '"step": 2' "$CACHE/logs/distill-eval.jsonl"
  # ... and with the engine, as users will: streaming transcription through the CLI.
  first="$(head -n 1 "$CACHE/eval/synth-dev/transcripts.tsv" | cut -f1)"
  (cd "$ROOT" && "$PY" -m cli transcribe "$CACHE/eval/synth-dev/$first" --model "$CACHE/model" --no-lm --json) \
    | tail -n 1 | grep -q '"reason": "finish"'
  (cd "$ROOT" && "$PY" -m cli transcribe "$CACHE/eval/synth-dev/$first" --model "$CACHE/model-distilled" --no-lm \
    --json) | tail -n 1 | grep -q '"reason": "finish"'
  echo "smoke OK"
  exit 0
fi

CACHE="${XLSR_RECIPE_DIR:-/work/recipe-cache}"
export XLSR_RECIPE_DIR="$CACHE"
mkdir -p "$CACHE/logs"

case "$mode" in
  --status)
    for n in synth train distill; do
      if alive "$CACHE/$n.pid" "$n"; then echo "$n: running (pid $(cat "$CACHE/$n.pid"))"; else echo "$n: stopped"; fi
    done
    tail -n 2 "$CACHE/logs/synth.log" 2>/dev/null || true
    grep -E "step|eval" "$CACHE/logs/train.log" 2>/dev/null | tail -n 3 || true
    tail -n 2 "$CACHE/logs/teacher.log" "$CACHE/logs/distill.log" 2>/dev/null || true
    ;;
  --stop)
    for n in train synth; do
      if alive "$CACHE/$n.pid" "$n.py"; then kill -TERM "$(cat "$CACHE/$n.pid")" && echo "sent TERM to $n"; fi
    done
    if alive "$CACHE/distill.pid" distill; then kill -TERM -- "-$(cat "$CACHE/distill.pid")" && echo "sent TERM to distill"; fi
    ;;
  --export)
    "$PY" export.py --evaluate
    ;;
  --evaluate-engine)
    "$PY" evaluate.py --engine
    ;;
  --distill)  # issue 13: real speech + Whisper teacher -> distilled student, in the background
    "$PY" prepare_text.py
    start_bg synth 10 synth.py --weights piper:2,flite:1,festival:1,espeak:0.25 --target-hours 3 --fast-first-hours 0
    if alive "$CACHE/distill.pid" distill; then echo "distill already running"; else
      MALLOC_ARENA_MAX=2 setsid nohup nice -n 5 bash distill_all.sh "$@" >> "$CACHE/logs/distill.out" 2>&1 < /dev/null &
      echo $! > "$CACHE/distill.pid"; echo "started distill_all.sh (pid $!), log $CACHE/logs/distill.out"
    fi
    ;;
  run)
    "$PY" prepare_text.py
    start_bg synth 10 synth.py
    start_bg train 5 train.py
    ;;
  *)
    echo "usage: $0 [--smoke|--status|--stop|--export|--evaluate-engine|--distill]" >&2
    exit 2
    ;;
esac
