"""benchmarks/gpu_check.sh, in its CPU dry run: the same script and benchmark code a
CUDA machine runs (tests selected, levels searched, one JSON written), with a tiny
random model on CPU for seconds.  The figures are meaningless here; the shape is not."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


@pytest.mark.timeout(300)
def test_gpu_check_dry_run_writes_the_json_a_gpu_run_would(tmp_path: Path) -> None:
    out = tmp_path / "gpu-check.json"
    run = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=280)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["device"] == "cpu"
    assert report["cuda_tests"].startswith("exit 0:") and "passed" in report["cuda_tests"]
    assert [(r["model"], r["dtype"]) for r in report["results"]] == [("small", "float32"), ("small", "bfloat16")]
    for result in report["results"]:
        assert result["batch_forward_s"] > 0 and result["estimated_streams"] >= 1
        assert result["levels"], "no real-time level ran"
        held = [lv["streams"] for lv in result["levels"] if lv["holds"]]
        assert result["max_realtime_streams"] == max(held, default=0)
        for level in result["levels"]:
            assert level["windows"] > 0 and 0 < level["partial_p50_s"] <= level["partial_p90_s"]
            assert level["holds"] == (level["partial_p90_s"] <= result["budget_p90_s"])
            assert level["gpu_memory_per_stream_mb"] is None  # no GPU: no figure, rather than a made-up one
        if result["at_capacity"] is not None:
            assert result["at_capacity"]["streams"] == result["max_realtime_streams"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without CUDA")
def test_gpu_check_without_a_gpu_says_so_instead_of_measuring_the_cpu(tmp_path: Path) -> None:
    run = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "x.json")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "no CUDA device" in run.stderr and "--dry-run" in run.stderr
    assert not (tmp_path / "x.json").exists()
