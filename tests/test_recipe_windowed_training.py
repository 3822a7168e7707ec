"""Streaming-shaped training batches: windows stitched as the engine does, loss as Wav2Vec2ForCTC's."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "recipe"))
from tiny_models import random_padded_batch
from train import (  # noqa: E402
    ctc_loss_from_logits,
    limit_conv_gradients,
    memory_logits,
    running_normalize,
    stream_plan,
    stream_prob_at,
    stream_prob_schedule,
    windowed_logits,
)

from streaming.windows import num_frames

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    from tiny_models import write_tiny_checkpoint

    path = write_tiny_checkpoint(tmp_path_factory.mktemp("m"), family="layer")
    return transformers.Wav2Vec2ForCTC.from_pretrained(path).eval()


def test_engine_frame_count_matches_the_model(model) -> None:
    for n in [400, 401, 719, 720, 1000, 16000, 16319, 16320, 33333]:
        assert num_frames(n) == int(model._get_feat_extract_output_lengths(torch.tensor(n)))


def test_windows_covering_everything_give_the_full_forward_and_its_loss(model) -> None:
    lengths = [9000, 6400]
    x, mask = random_padded_batch(lengths)
    with torch.no_grad():
        plan = stream_plan(model.config, 7, 500, 500, memory=False)  # 10 s either side: all of it
        logits, frame_lengths = windowed_logits(model, x, mask, plan)
        for i, n in enumerate(lengths):
            full = model(input_values=x[i : i + 1, :n]).logits[0]
            assert int(frame_lengths[i]) == full.shape[0]
            torch.testing.assert_close(logits[i, : full.shape[0]], full, atol=1e-4, rtol=1e-4)
        labels = torch.tensor([[5, 6, 7, 4, 8], [9, 10, -100, -100, -100]])
        ours = ctc_loss_from_logits(logits, frame_lengths, labels, model.config)
        theirs = model(input_values=x, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_short_windows_change_the_logits_but_train(model) -> None:
    x, mask = random_padded_batch([9000, 6400])
    logits, frame_lengths = windowed_logits(model, x, mask, stream_plan(model.config, 5, 3, 2, memory=False))
    with torch.no_grad():
        full = model(input_values=x[:1, :9000]).logits[0]
    assert logits.shape[1] == full.shape[0] == int(frame_lengths[0])
    assert not torch.allclose(logits[0, : full.shape[0]], full, atol=1e-3)  # context does matter
    loss = ctc_loss_from_logits(logits, frame_lengths, torch.tensor([[5, 6], [7, -100]]), model.config)
    loss.backward()
    assert torch.isfinite(loss) and model.lm_head.weight.grad is not None


@pytest.mark.parametrize(("chunk", "left", "right"), [(10, 15, 5), (7, 0, 3), (16, 30, 0)])
def test_windowed_batches_compute_what_the_engine_streams(model, tmp_path, chunk, left, right) -> None:
    """Training's recomputed-context windows give the engine's log-probs for the same plan."""
    from tiny_models import write_tiny_checkpoint

    from streaming import EndpointConfig, Engine, WindowConfig

    path = write_tiny_checkpoint(tmp_path / "m", family="layer")
    engine = Engine.load(path, lm=False, endpoint=EndpointConfig(enabled=False), normalization="none",
                         window=WindowConfig(chunk * 0.02, left * 0.02, right * 0.02, memory=False))
    plan = stream_plan(model.config, chunk, left, right, memory=False)
    assert dataclasses.replace(plan, normalization="none") == engine.plan
    lengths = [9000, 6400]
    x, mask = random_padded_batch(lengths)
    with torch.no_grad():
        logits, frame_lengths = windowed_logits(model, x, mask, plan)
    _assert_engine_streams(engine, x, lengths, logits, frame_lengths)


def _assert_engine_streams(engine, x, lengths, logits, frame_lengths) -> None:
    """Each utterance streamed through ``engine`` gives the batch's frames and log-probs."""
    for i, n in enumerate(lengths):
        rec = engine.new_stream(record_log_probs=True)
        rec.accept_audio(x[i, :n].numpy())
        rec.finish()
        streamed = torch.from_numpy(rec.recorded_log_probs())
        assert int(frame_lengths[i]) == streamed.shape[0]
        ours = torch.log_softmax(logits[i, : streamed.shape[0]], dim=-1)
        torch.testing.assert_close(ours, streamed, atol=2e-4, rtol=1e-4)


def test_plans_the_engine_would_not_use_are_refused(tmp_path: Path) -> None:
    from tiny_models import write_tiny_checkpoint

    group = transformers.Wav2Vec2Config.from_pretrained(write_tiny_checkpoint(tmp_path, family="group"))
    with pytest.raises(ValueError, match="memory=True"):
        stream_plan(group, 10, 30, 5, memory=True)  # GroupNorm convs: the engine recomputes context instead
    assert not stream_plan(group, 10, 30, 5, memory=False).memory


def test_stream_prob_schedule_changes_the_share_at_the_given_steps() -> None:
    schedule = stream_prob_schedule("0.3,7650:0.5,9000:0.7")
    assert [stream_prob_at(schedule, step) for step in (0, 7649, 7650, 8999, 9000, 10**6)] == [
        0.3, 0.3, 0.5, 0.5, 0.7, 0.7
    ]
    assert stream_prob_at(stream_prob_schedule("1"), 1) == 1.0
    for bad in ("x", "1.5", "0.3,7650:0.5,7000:0.6", "10:0.3", "0.3,a:0.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            stream_prob_schedule(bad)


@pytest.mark.parametrize(("chunk", "memory", "right"), [(10, 30, 5), (7, 0, 3), (16, 100, 0)])
def test_memory_batches_compute_what_the_engine_streams(model, tmp_path, chunk, memory, right) -> None:
    """Training's attention-memory forward gives the engine's log-probs for the same windows."""
    from tiny_models import write_tiny_checkpoint

    from streaming import EndpointConfig, Engine, WindowConfig

    path = write_tiny_checkpoint(tmp_path / "m", family="layer")
    engine = Engine.load(path, lm=False, endpoint=EndpointConfig(enabled=False), normalization="none",
                         window=WindowConfig(chunk * 0.02, memory * 0.02, right * 0.02, memory=True))
    assert engine.plan.memory
    plan = stream_plan(model.config, chunk, memory, right, memory=True)
    assert dataclasses.replace(plan, normalization="none") == engine.plan  # the engine's plan, not a copy
    lengths = [9000, 6400]
    x, mask = random_padded_batch(lengths)
    with torch.no_grad():
        logits, frame_lengths = memory_logits(model, x, mask, plan)
    _assert_engine_streams(engine, x, lengths, logits, frame_lengths)
    loss = ctc_loss_from_logits(memory_logits(model.train(), x, mask, plan)[0], frame_lengths,
                                torch.tensor([[5, 6], [7, -100]]), model.config)
    model.eval()
    loss.backward()
    assert torch.isfinite(loss) and model.lm_head.weight.grad is not None


def test_running_normalize_scales_as_the_engine_does(tiny_layer_model: Path, speech) -> None:
    """What the engine's windows carry (running do_normalize, each sample scaled once
    with the statistics up to its first window's end) is what training feeds."""
    from streaming import EndpointConfig, Engine, WindowConfig
    from streaming.normalization import normalize_utterance

    audio, rate = speech
    audio = audio[: 4 * rate] * 3.0 + 0.01  # a level and DC offset of its own
    engine = Engine.load(tiny_layer_model, lm=False, endpoint=EndpointConfig(enabled=False), reuse_features=False,
                         window=WindowConfig(chunk_s=0.5, left_context_s=0.2, right_context_s=0.2, memory=False))
    assert engine.plan.normalization == "running"
    rec = engine.new_stream(sample_rate=rate, inline=False)
    scaled = torch.full((audio.shape[0],), float("nan"), dtype=torch.float64)
    for i in range(0, audio.shape[0] + 1, 1600):
        if i < audio.shape[0]:
            rec.accept_audio(audio[i : i + 1600])
        else:
            rec.finish()
        for request in rec.take_windows():
            start = request.window.frame_start * 320
            got = torch.from_numpy(request.samples).double()
            seen = scaled[start : start + got.shape[0]]
            known = ~torch.isnan(seen)
            assert torch.allclose(seen[known], got[known])  # every sample is scaled once
            scaled[start : start + got.shape[0]] = got
    assert not torch.isnan(scaled).any()

    x = torch.from_numpy(normalize_utterance(audio))[None]
    hf = transformers.Wav2Vec2Config.from_pretrained(tiny_layer_model)
    plan = stream_plan(hf, 25, 10, 10, memory=False)
    assert plan == dataclasses.replace(engine.plan, reuse_features=True)
    ours = running_normalize(torch.cat([x, torch.zeros(1, 800)], dim=1), torch.cat(
        [torch.ones_like(x, dtype=torch.long), torch.zeros(1, 800, dtype=torch.long)], dim=1), plan)
    torch.testing.assert_close(ours[0, : audio.shape[0]].double(), scaled, atol=2e-4, rtol=0)
    assert ours[0, audio.shape[0] :].abs().max() == 0  # padding stays zero
    assert (ours[0, :8000] - x[0, :8000]).abs().max() > 0.01  # the first windows differ from offline


@pytest.mark.parametrize("path", ["full", "memory"])
def test_frozen_conv_layers_get_no_gradient_and_the_rest_still_train(tmp_path: Path, path: str) -> None:
    from tiny_models import write_tiny_checkpoint

    model = transformers.Wav2Vec2ForCTC.from_pretrained(write_tiny_checkpoint(tmp_path, family="layer")).train()
    limit_conv_gradients(model, 2)
    x, mask = random_padded_batch([9000, 6400])
    asked = []  # transformers' own request for the waveform's gradient shows on the first conv's input
    conv = model.wav2vec2.feature_extractor.conv_layers
    conv[0].register_forward_pre_hook(lambda module, inputs: asked.append(inputs[0].requires_grad))
    labels = torch.tensor([[5, 6, 7, 4, 8], [9, 10, -100, -100, -100]])
    if path == "full":
        loss = model(input_values=x, attention_mask=mask, labels=labels).loss
    else:
        logits, frame_lengths = memory_logits(model, x, mask, stream_plan(model.config, 7, 10, 2, memory=True))
        loss = ctc_loss_from_logits(logits, frame_lengths, labels, model.config)
    loss.backward()
    assert asked == [False]
    assert all(p.grad is None for layer in conv[:2] for p in layer.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for layer in conv[2:] for p in layer.parameters())
    assert model.lm_head.weight.grad.abs().sum() > 0
