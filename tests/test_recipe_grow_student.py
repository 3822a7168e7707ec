"""recipe/grow_student.py: a deeper student that computes what the trained one does, and trains."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import write_tiny_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "recipe"))
import grow_student  # noqa: E402


def test_grown_student_has_twice_the_layers_the_same_logits_and_streams(tmp_path: Path) -> None:
    from transformers import Wav2Vec2ForCTC

    from streaming import DecoderConfig, Engine

    src = write_tiny_checkpoint(tmp_path / "tiny", family="layer")
    assert grow_student.main([str(src), str(tmp_path / "grown")]) == 0
    model = Wav2Vec2ForCTC.from_pretrained(src).eval()
    grown = Wav2Vec2ForCTC.from_pretrained(tmp_path / "grown").eval()
    assert grown.config.num_hidden_layers == 2 * model.config.num_hidden_layers
    wave = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (2, 8000)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(grown(wave).logits, model(wave).logits, rtol=0, atol=1e-6)
    # a twin is no frozen identity: one training step moves its zeroed output projections
    grown.train()
    grown(wave).logits.logsumexp(-1).mean().backward()
    twin = grown.wav2vec2.encoder.layers[1]
    assert twin.attention.out_proj.weight.grad.abs().sum() > 0
    assert twin.feed_forward.output_dense.weight.grad.abs().sum() > 0
    # the engine's own wav2vec2 loads it like any other checkpoint and computes the original's frames
    dirs = (src, tmp_path / "grown")
    engines = [Engine.load(d, lm=False, decoder=DecoderConfig(greedy=True), threads=1) for d in dirs]
    audio = wave[0].numpy()
    np.testing.assert_allclose(engines[1].offline_log_probs(audio), engines[0].offline_log_probs(audio), atol=1e-5)


def test_post_ln_encoders_are_refused(tmp_path: Path) -> None:
    from transformers import Wav2Vec2ForCTC

    model = Wav2Vec2ForCTC.from_pretrained(write_tiny_checkpoint(tmp_path / "tiny", family="group"))
    with pytest.raises(ValueError, match="only pre-LN"):
        grow_student.deepen(model)
