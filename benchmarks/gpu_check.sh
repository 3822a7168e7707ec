#!/usr/bin/env bash
# The GPU check, for a session that is lent a CUDA device (at most 8 minutes):
#   1. the CUDA-only tests (skipped everywhere else), then
#   2. bench_gpu_streams.py: batched streaming throughput of base- and large-size wav2vec2
#      (random weights) in float32, bfloat16 and float16: the most concurrent real-time
#      streams one GPU holds with the worker's batching, p50/p90 partial latency, GPU
#      memory per stream.  Everything lands in one JSON.
#
#   benchmarks/gpu_check.sh [OUT.json]             # default gpu-check.json
#   benchmarks/gpu_check.sh --dry-run [OUT.json]   # CPU, tiny model, well under a minute:
#                                                  # checks the script anywhere (tests/test_gpu_check.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
dry=()
if [[ ${1:-} == --dry-run ]]; then
  dry=(--dry-run --seconds 1.5 --flat-seconds 1.5 --max-batch 8 --max-levels 2 --time-budget 60)
  shift
fi
out=${1:-gpu-check.json}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

if ((${#dry[@]} == 0)) && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check.sh: torch sees no CUDA device; run with --dry-run to check the script on CPU" >&2
  exit 2
fi

# 1. CUDA-only tests: every test whose name says cuda (they skip themselves without a device).
tests_log=$(mktemp)
set +e
timeout 150 "$PY" -m pytest -q -rs -p no:cacheprovider -k cuda tests >"$tests_log" 2>&1
tests_rc=$?
set -e
summary=$(grep -E '(passed|failed|skipped|error|no tests ran)' "$tests_log" | tail -n 1)
echo "gpu_check.sh: CUDA tests (exit $tests_rc): $summary"
((tests_rc == 0 || tests_rc == 5)) || { cat "$tests_log" >&2; rm -f "$tests_log"; exit 1; }
rm -f "$tests_log"

# 2. Throughput, latency and memory per stream: 330 s of levels at most, then the JSON.
timeout 330 "$PY" benchmarks/bench_gpu_streams.py "${dry[@]}" --cuda-tests "exit $tests_rc: $summary" --out "$out"
