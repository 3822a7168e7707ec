# Quick start:  make demo   (set up, then caption real speech with the shipped model)
#               make test   (set up, then run the test suite)
.PHONY: setup demo test lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/xlsr-stream transcribe samples/*.wav
	.venv/bin/xlsr-stream eval samples/librivox-dev --mode streaming

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy streaming client scoring demos cli latency benchmarks language_model
	.venv/bin/mypy --strict streaming server
	cd recipe && ../.venv/bin/mypy .  # its modules import each other by bare name

bench: setup
	.venv/bin/python benchmarks/bench_streaming_vs_offline.py
