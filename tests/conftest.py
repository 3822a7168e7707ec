"""Shared fixtures: tiny real checkpoints, real speech, a real KenLM file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# Tests never touch the network, and keep the two cores for parallel work.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEV_DIR = REPO / "samples" / "librivox-dev"


@pytest.fixture(scope="session")
def tiny_layer_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-layer"), family="layer")


@pytest.fixture(scope="session")
def tiny_group_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-group"), family="group")


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    """About 7 s of real read speech (LibriVox, 16 kHz mono float32)."""
    audio, rate = sf.read(DEV_DIR / "sense_and_sensibility_01_austen_64kb-0870.wav", dtype="float32")
    return audio, rate


@pytest.fixture(scope="session")
def espeak_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic speech written by espeak-ng at 22.05 kHz (exercises resampling)."""
    out = tmp_path_factory.mktemp("espeak") / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(out), "hello world this is a streaming test"], check=True)
    return out
