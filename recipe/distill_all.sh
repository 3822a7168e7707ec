#!/usr/bin/env bash
# Issue 13's pipeline, each step resumable and idempotent (run_all.sh --distill starts it in the
# background): real speech from Debian packages -> teacher features -> teacher CTC head ->
# pseudo-labels -> distillation targets -> student distillation (runs until stopped; extra
# arguments go to distill.py).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-$(dirname "$HERE")/.venv/bin/python}"
cd "$HERE"
# Real speakers (or BASS line groups) held out as a dev set, never trained on: two Drascula
# characters and three Beneath a Steel Sky conversations.
DEV="${XLSR_DEV_SPEAKERS:-vonbraun,igor,s5b11,s4b22,s3b10}"
DATA=(--synth-hours "${XLSR_SYNTH_HOURS:-1.5}" --untranscribed-hours "${XLSR_UNTRANSCRIBED_HOURS:-1.5}")
export OMP_NUM_THREADS=1
[ -n "${XLSR_SKIP_PREPARE:-}" ] || "$PY" prepare_real.py
"$PY" teacher.py features "${DATA[@]}"
"$PY" teacher.py train "${DATA[@]}" --dev-speakers "$DEV" \
      --steps "${XLSR_TEACHER_STEPS:-1500}" --head-steps "${XLSR_TEACHER_STEPS:-1500}"
"$PY" teacher.py label "${DATA[@]}"
"$PY" teacher.py targets "${DATA[@]}"
exec "$PY" distill.py --synth-hours "${XLSR_SYNTH_HOURS:-1.5}" --dev-speakers "$DEV" "$@"
