#!/usr/bin/env bash
# Issue 13's pipeline, each step resumable and idempotent (run_all.sh --distill starts it in the
# background): real speech from Debian packages -> teacher features -> teacher CTC head ->
# pseudo-labels -> distillation targets -> student distillation (runs until stopped).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-$(dirname "$HERE")/.venv/bin/python}"
cd "$HERE"
DEV="${XLSR_DEV_SPEAKERS:-vonbraun,igor}"  # real speakers held out as a dev set (never trained on)
export OMP_NUM_THREADS=1
[ -f prepare_real.py ] && "$PY" prepare_real.py
"$PY" teacher.py features --synth-hours "${XLSR_SYNTH_HOURS:-3}"
"$PY" teacher.py train --synth-hours "${XLSR_SYNTH_HOURS:-3}" --dev-speakers "$DEV" \
      --steps "${XLSR_TEACHER_STEPS:-1500}" --head-steps "${XLSR_TEACHER_STEPS:-1500}"
"$PY" teacher.py label --synth-hours "${XLSR_SYNTH_HOURS:-3}"
"$PY" teacher.py targets --synth-hours "${XLSR_SYNTH_HOURS:-3}"
exec "$PY" distill.py --synth-hours "${XLSR_SYNTH_HOURS:-3}" --dev-speakers "$DEV" "$@"
