"""The default model's recipe end to end at toy scale: synthesise seconds of speech
(flite, espeak-ng), train two steps, export, load with transformers and with the
engine, and transcribe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_recipe_smoke_runs_every_step():
    env = {**os.environ, "PYTHON": sys.executable, "XLSR_TRAIN_THREADS": "1"}
    proc = subprocess.run(
        ["bash", str(REPO / "recipe" / "run_all.sh"), "--smoke"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "smoke transcript:" in proc.stdout
    assert "streamed 1/1 (memory 1)" in proc.stdout + proc.stderr  # step 1 went through as the engine streams
    assert "streamed 1/2" in proc.stdout + proc.stderr  # distillation: one whole-utterance step, one streamed
    assert proc.stdout.rstrip().endswith("smoke OK")
