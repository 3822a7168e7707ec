"""The streaming engine end to end with real tiny wav2vec2 checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import write_local_checkpoint

from streaming import (
    AudioError,
    DecoderConfig,
    EndpointConfig,
    Engine,
    Final,
    Partial,
    StreamStateError,
    WindowConfig,
)

NO_ENDPOINTS = EndpointConfig(enabled=False)
# A random model's flat outputs make beam search expand every token: tests that
# are not about decoding use a narrow beam.
NARROW = DecoderConfig(beam_width=4)


def stream_all(engine: Engine, audio: np.ndarray, rate: int = 16_000, block: int = 1600, **kw):
    rec = engine.new_stream(sample_rate=rate, **kw)
    events = []
    for i in range(0, audio.shape[0], block):
        rec.accept_audio(audio[i : i + block])
        events += rec.events()
    rec.finish()
    events += rec.events()
    return rec, events


@pytest.mark.parametrize(("reuse", "memory"), [(True, False), (False, False), (True, True)])
def test_stitched_frames_equal_full_forward_for_a_local_model(tmp_path, speech, reuse, memory):
    """With attention memory the windows hold no left context at all: the
    positional conv gets its 8 past frames from the feature cache."""
    audio, rate = speech
    engine = Engine.load(write_local_checkpoint(tmp_path / "local"), lm=False, endpoint=NO_ENDPOINTS, decoder=NARROW,
                         window=WindowConfig(chunk_s=0.5, left_context_s=0.2, right_context_s=0.2, memory=memory),
                         reuse_features=reuse)
    assert engine.plan.reuse_features is reuse and engine.plan.memory is memory
    assert engine.plan.left_frames == (0 if memory else 10) and engine.plan.pos_context_frames == (8 if memory else 0)
    rec, _ = stream_all(engine, audio, rate, record_log_probs=True)
    stitched = rec.recorded_log_probs()
    full = engine.offline_log_probs(audio, rate)
    assert stitched.shape == full.shape == ((audio.shape[0] - 400) // 320 + 1, 32)
    np.testing.assert_allclose(stitched, full, atol=1e-4)


def test_agreement_with_full_forward_grows_with_left_context(tiny_layer_model, speech):
    """The transformer attends globally, so streaming only approximates a full
    forward; more left context must bring the stitched frames closer."""
    audio, rate = speech
    deltas = []
    for left in (0.0, 0.4, 2.0):
        engine = Engine.load(tiny_layer_model, lm=False, endpoint=NO_ENDPOINTS, decoder=NARROW,
                             window=WindowConfig(chunk_s=0.4, left_context_s=left, right_context_s=0.2))
        rec, _ = stream_all(engine, audio, rate, record_log_probs=True)
        full = engine.offline_log_probs(audio, rate)
        deltas.append(float(np.abs(rec.recorded_log_probs() - full).mean()))
    assert deltas[0] > deltas[1] > deltas[2], deltas


def test_attention_memory_beats_recomputed_context_and_stays_bounded(tiny_layer_model, tiny_group_model, speech):
    """Cached layer inputs of the last 2 s bring frames closer to a full forward
    than recomputing 0.4 s of context, and the memory never grows past 2 s."""
    audio, rate = speech
    deltas = {}
    for left, memory in ((0.4, False), (0.0, True), (0.4, True), (2.0, True)):
        engine = Engine.load(tiny_layer_model, lm=False, endpoint=NO_ENDPOINTS, decoder=NARROW,
                             window=WindowConfig(chunk_s=0.4, left_context_s=left, right_context_s=0.2, memory=memory))
        rec, _ = stream_all(engine, audio, rate, record_log_probs=True)
        full = engine.offline_log_probs(audio, rate)
        deltas[left, memory] = float(np.abs(rec.recorded_log_probs() - full).mean())
        if memory:
            layers = engine.model.num_layers
            assert rec._windows.memory is not None
            assert rec._windows.memory.shape[:2] == (layers, min(engine.plan.memory_frames, full.shape[0]))
    assert deltas[0.0, True] > deltas[0.4, True] > deltas[2.0, True], deltas
    assert deltas[2.0, True] < deltas[0.4, False], deltas
    # GroupNorm conv features are not local: no feature cache, so no memory either.
    group = Engine.load(tiny_group_model, lm=False, window=WindowConfig(memory=True))
    assert not group.plan.memory and group.plan.left_frames == 30


@pytest.mark.parametrize("family", ["layer", "group"])
def test_one_window_stream_matches_offline_text(request, speech, family):
    """With a chunk longer than the audio, the single window holds the whole
    utterance and running normalization sees all of it: streaming == offline."""
    audio, rate = speech
    path = request.getfixturevalue(f"tiny_{family}_model")
    engine = Engine.load(path, lm=False, endpoint=NO_ENDPOINTS,
                         window=WindowConfig(chunk_s=30.0, left_context_s=0.0, right_context_s=0.0),
                         decoder=DecoderConfig(beam_width=8))
    rec, events = stream_all(engine, audio, rate, record_log_probs=True)
    np.testing.assert_allclose(rec.recorded_log_probs(), engine.offline_log_probs(audio, rate), atol=1e-4)
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1 and finals[0].reason == "finish"
    assert finals[0].text == engine.transcribe_offline(audio, rate).text


@pytest.mark.parametrize("memory", [False, True])
def test_batched_external_compute_equals_inline(tiny_layer_model, speech, memory):
    audio, rate = speech
    engine = Engine.load(tiny_layer_model, lm=False, decoder=NARROW, window=WindowConfig(memory=memory))
    inputs = [audio, audio[::-1].copy()]
    inline = [stream_all(engine, x, rate, record_log_probs=True) for x in inputs]

    streams = [engine.new_stream(inline=False, record_log_probs=True) for _ in inputs]
    events: list[list] = [[], []]
    for i in range(0, audio.shape[0] + 3200, 3200):
        for s, x in zip(streams, inputs):
            if i < x.shape[0]:
                s.accept_audio(x[i : i + 3200])
            else:
                s.finish()
        while True:
            requests = [(s, r) for s in streams for r in s.take_windows()]
            if not requests:
                break
            outputs = engine.run_windows([r for _, r in requests])
            assert len({r.window.num_frames for _, r in requests}) <= len(requests)
            for s in streams:
                mine = [(r, o) for (owner, r), o in zip(requests, outputs) if owner is s]
                if mine:
                    s.accept_window_outputs([r for r, _ in mine], [o for _, o in mine])
        for k, s in enumerate(streams):
            events[k] += s.events()
    assert all(s.finished for s in streams)
    # Batched matmuls round differently in the last bits, and a random model's
    # flat outputs make beam ties fragile: compare frames, and the event skeleton.
    for s, (ref, ref_events), got in zip(streams, inline, events):
        np.testing.assert_allclose(s.recorded_log_probs(), ref.recorded_log_probs(), atol=1e-4)
        assert [(type(e), e.segment, e.start) for e in got] == [(type(e), e.segment, e.start) for e in ref_events]


def test_streams_of_different_ages_share_forwards(tiny_layer_model, speech):
    """Attention memory: a stream that started a chunk later holds a shorter memory, yet
    its windows join the older stream's forward (padded and masked), with the frames
    its own forwards give."""
    audio, rate = speech
    engine = Engine.load(tiny_layer_model, lm=False, decoder=NARROW, window=WindowConfig(chunk_s=0.5))
    inline = stream_all(engine, audio, rate, record_log_probs=True)[0].recorded_log_probs()
    model = engine.model
    forwards: list[int] = []
    original = model.log_probs_with_memory

    def counted(features, pos_context, memory, memory_lengths=None):  # type: ignore[no-untyped-def]
        forwards.append(features.shape[0])
        return original(features, pos_context, memory, memory_lengths)

    model.log_probs_with_memory = counted  # type: ignore[method-assign]
    streams = [engine.new_stream(inline=False, record_log_probs=True) for _ in range(2)]
    lag = 8_000  # the second stream starts one chunk later
    for i in range(0, audio.shape[0] + lag, 8_000):
        if i < audio.shape[0]:
            streams[0].accept_audio(audio[i : i + 8_000])
        if i >= lag:
            streams[1].accept_audio(audio[i - lag : i - lag + 8_000])
        requests = [(s, r) for s in streams for r in s.take_windows()]
        if requests:
            outputs = engine.run_windows([r for _, r in requests])
            for s in streams:
                mine = [(r, o) for (owner, r), o in zip(requests, outputs) if owner is s]
                if mine:
                    s.accept_window_outputs([r for r, _ in mine], [o for _, o in mine])
    assert max(forwards) == 2  # windows of both streams in one forward, their memories unequal
    for s in streams:
        s.finish()
        while requests := s.take_windows():
            s.accept_window_outputs(requests, engine.run_windows(requests))
        np.testing.assert_allclose(s.recorded_log_probs(), inline, atol=1e-4)


def test_any_sample_rate_and_int16(tiny_layer_model, espeak_wav):
    import soundfile as sf

    audio, rate = sf.read(espeak_wav, dtype="int16")
    assert rate == 22050
    engine = Engine.load(tiny_layer_model, lm=False, endpoint=NO_ENDPOINTS, decoder=NARROW)
    rec, events = stream_all(engine, audio, rate, block=1234, record_log_probs=True)
    expected_frames = (round(audio.shape[0] * 16000 / rate) - 400) // 320 + 1
    assert abs(rec.recorded_log_probs().shape[0] - expected_frames) <= 1
    assert isinstance(events[-1], Final) and events[-1].reason == "finish"
    assert all(isinstance(e, Partial) for e in events[:-1])


def test_bad_blocks_raise_clear_errors_and_lose_nothing(tiny_layer_model, speech):
    audio, rate = speech
    engine = Engine.load(tiny_layer_model, lm=False, endpoint=NO_ENDPOINTS, decoder=NARROW)
    reference, ref_events = stream_all(engine, audio, rate, record_log_probs=True)

    rec = engine.new_stream(record_log_probs=True)
    half = audio.shape[0] // 2
    rec.accept_audio(audio[:half])
    bad = audio[:800].copy()
    bad[3] = np.nan
    with pytest.raises(AudioError, match="1 NaN or infinite samples out of 800"):
        rec.accept_audio(bad)
    with pytest.raises(AudioError, match=r"mono \(one channel\), got an array of shape \(800, 2\)"):
        rec.accept_audio(np.zeros((800, 2), dtype=np.float32))
    with pytest.raises(AudioError, match="int16 or float32 samples, got int32"):
        rec.accept_audio(np.zeros(800, dtype=np.int32))
    with pytest.raises(AudioError, match="opened at 16000 Hz, this block says 8000 Hz"):
        rec.accept_audio(audio[:800], sample_rate=8000)
    rec.accept_audio(audio[half:])
    rec.finish()
    np.testing.assert_array_equal(rec.recorded_log_probs(), reference.recorded_log_probs())
    assert rec.events() == ref_events
    with pytest.raises(StreamStateError, match="audio after finish"):
        rec.accept_audio(audio[:800])


def test_absurd_sample_rate_is_refused(tiny_layer_model):
    engine = Engine.load(tiny_layer_model, lm=False, decoder=NARROW)
    with pytest.raises(AudioError, match="sample rate 16 Hz is outside 4000..384000 Hz"):
        engine.new_stream(sample_rate=16)


def test_silence_is_endpointed_without_empty_finals(tmp_path, tiny_layer_model):
    """A checkpoint whose output always prefers the blank: 7 s of silence give no
    Final until finish(), while rule 1 keeps resetting the segment."""
    from safetensors.torch import load_file, save_file

    path = tmp_path / "blank"
    path.mkdir()
    for f in tiny_layer_model.iterdir():
        if f.is_file():
            (path / f.name).write_bytes(f.read_bytes())
    weights = load_file(path / "model.safetensors")
    weights["lm_head.bias"][0] += 100.0
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    engine = Engine.load(path, lm=False, decoder=NARROW)
    rec, events = stream_all(engine, np.zeros(7 * 16000, dtype=np.float32))
    assert [type(e) for e in events] == [Final]
    assert events[0].text == "" and events[0].reason == "finish" and events[0].segment == 0
    assert events[0].start == pytest.approx(4.8)  # two 2.4 s silence endpoints before
    assert rec.decoded_seconds == pytest.approx(((7 * 16000 - 400) // 320 + 1) * 0.02)


def test_reset_closes_the_segment_and_keeps_going(tiny_layer_model, speech):
    audio, rate = speech
    engine = Engine.load(tiny_layer_model, lm=False, endpoint=NO_ENDPOINTS, decoder=NARROW)
    rec = engine.new_stream()
    rec.accept_audio(audio[: 3 * rate])
    rec.reset()
    rec.accept_audio(audio[3 * rate :])
    rec.finish()
    finals = [e for e in rec.events() if isinstance(e, Final)]
    assert [f.reason for f in finals] == ["reset", "finish"]
    assert [f.segment for f in finals] == [0, 1]
    assert finals[1].start == finals[0].end
    for f in finals:
        for w in f.words:
            assert f.start <= w.start < w.end <= f.end + 1e-9
            assert 0.0 <= w.confidence <= 1.0


@pytest.mark.parametrize("inline", [True, False])
@pytest.mark.parametrize("family", ["layer", "group"])
def test_reset_decodes_all_audio_sent_before_it(tiny_layer_model, tiny_group_model, speech, inline, family):
    """A reset's final ends where the audio does, not at the last full chunk (issue 14):
    2.3 s (inside the fourth 0.6 s chunk) used to leave what follows the last full chunk to the next segment."""
    audio, rate = speech
    model = tiny_layer_model if family == "layer" else tiny_group_model
    engine = Engine.load(model, lm=False, endpoint=NO_ENDPOINTS, decoder=NARROW)
    rec = engine.new_stream(inline=inline)
    cut = int(2.3 * rate)

    def drive() -> None:  # what a server does with inline=False: batch, decode, repeat
        while requests := rec.take_windows():
            rec.accept_window_outputs(requests, engine.run_windows(requests))

    rec.accept_audio(audio[:cut])
    drive()
    rec.reset()
    drive()
    reset_final = [e for e in rec.events() if isinstance(e, Final)]
    frames_sent = (cut - 400) // 320 + 1
    assert [f.reason for f in reset_final] == ["reset"]
    assert reset_final[0].end == pytest.approx(frames_sent * 0.02)
    assert rec.decoded_seconds == pytest.approx(frames_sent * 0.02)
    # The stream goes on on a grid that starts at the reset; finish covers the rest.
    rec.accept_audio(audio[cut : 2 * cut])
    drive()
    rec.reset()  # a second reset closes the second segment over its own audio
    drive()
    rec.accept_audio(audio[2 * cut :])
    rec.finish()
    drive()
    finals = [e for e in rec.events() if isinstance(e, Final)]
    assert [f.reason for f in finals] == ["reset", "finish"]
    assert finals[0].start == reset_final[0].end
    assert finals[0].end == pytest.approx(((2 * cut - 400) // 320 + 1) * 0.02)
    assert finals[1].start == finals[0].end
    assert finals[1].end == pytest.approx(((len(audio) - 400) // 320 + 1) * 0.02)
    assert rec.finished


def test_reset_right_after_reset_or_before_any_audio(tiny_layer_model):
    engine = Engine.load(tiny_layer_model, lm=False, endpoint=NO_ENDPOINTS, decoder=NARROW)
    rec = engine.new_stream()
    rec.reset()
    rec.reset()
    rec.finish()
    assert [(e.reason, e.start, e.end) for e in rec.events() if isinstance(e, Final)] == [
        ("reset", 0.0, 0.0), ("reset", 0.0, 0.0), ("finish", 0.0, 0.0)
    ]


def test_out_of_range_float_audio_is_refused_and_poisons_nothing(tiny_layer_model, speech):
    """int16 values sent as float32 (amplitude 100) would swamp the running normalisation;
    the block is refused whole and the stream's results are those of a stream without it."""
    audio, rate = speech
    engine = Engine.load(tiny_layer_model, lm=False, endpoint=NO_ENDPOINTS, decoder=NARROW)
    clean, hit = engine.new_stream(), engine.new_stream()
    for i in range(0, len(audio), 1600):
        block = audio[i : i + 1600]
        clean.accept_audio(block)
        hit.accept_audio(block)
        if i == 16000:
            with pytest.raises(AudioError, match=r"beyond \+-2 \(peak 100\).*divide them by 32768"):
                hit.accept_audio(np.full(1600, 100.0, dtype=np.float32))
    clean.finish()
    hit.finish()
    assert hit.events() == clean.events()
    hit2 = engine.new_stream()
    hit2.accept_audio(np.array([1.9, -2.0, 0.5], dtype=np.float32))  # overshoot is audio


def test_partials_show_the_look_ahead_and_finals_do_not_change(tmp_path, speech):
    """A partial's provisional tail covers the window's look-ahead (heard, not yet
    decoded for good): 0.4 s more audio than the decoded frames, while finals stay
    exactly those of a stream that never peeks."""
    audio, rate = speech
    path = write_local_checkpoint(tmp_path / "local")
    window = WindowConfig(chunk_s=0.5, left_context_s=0.2, right_context_s=0.4, memory=True)
    first, finals = {}, {}
    for peek in (0, 8):
        engine = Engine.load(path, lm=False, endpoint=NO_ENDPOINTS, window=window,
                             decoder=DecoderConfig(greedy=True, peek_beams=peek))
        rec = engine.new_stream(sample_rate=rate)
        rec.accept_audio(audio[: int(0.95 * rate)])  # the first window: 0.5 s chunk + 0.4 s look-ahead
        [first[peek]] = rec.events()
        rec.accept_audio(audio[int(0.95 * rate) :])
        rec.finish()
        finals[peek] = [e for e in rec.events() if isinstance(e, Final)]
    assert first[0].end == pytest.approx(0.5) and first[8].end == pytest.approx(0.9)
    assert first[8].text.startswith(first[0].text) and len(first[8].text) > len(first[0].text)
    assert first[8].stable_text == first[0].stable_text
    assert finals[8] == finals[0] and finals[0][0].text


def test_endpoint_heard_in_the_look_ahead_closes_the_segment_at_once(tmp_path, speech):
    """When the look-ahead frames already complete the silence after speech, the
    Final comes a window early, cut where decoding stands, with nothing lost.
    (Probes off: on digital silence one would fire before that window.)"""
    from safetensors.torch import load_file, save_file

    path = write_local_checkpoint(tmp_path / "local")
    weights = load_file(path / "model.safetensors")
    weights["lm_head.bias"][0] += 1.5  # the blank wins on digital silence, not on loud speech
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    audio, rate = speech
    loud = audio[: 2 * rate] / np.abs(audio[: 2 * rate]).max()
    audio = np.concatenate([loud, np.zeros(3 * rate, dtype=np.float32)])
    engine = Engine.load(path, lm=False, decoder=DecoderConfig(greedy=True),
                         window=WindowConfig(chunk_s=0.5, left_context_s=0.2, right_context_s=0.4, memory=True),
                         endpoint=EndpointConfig(silence_after_speech_s=0.6, probe_quiet_audio=False))
    offline = engine.offline_log_probs(audio, rate)  # == the stitched frames for this local model
    speech_frames = np.flatnonzero(offline.argmax(axis=1) != 0)
    assert 20 < speech_frames.size and speech_frames[-1] < 100
    endpoint = (speech_frames[-1] + 1 + 30) * 0.02  # 0.6 s of blank after the last speech frame

    rec = engine.new_stream(sample_rate=rate)
    arrivals = []
    for i in range(0, audio.shape[0], rate // 10):
        rec.accept_audio(audio[i : i + rate // 10])
        arrivals += [(min(i + rate // 10, audio.shape[0]) / rate, e) for e in rec.events()]
    rec.finish()
    arrivals += [(audio.shape[0] / rate, e) for e in rec.events()]
    finals = [(t, e) for t, e in arrivals if isinstance(e, Final)]
    (heard, final), (_, last) = finals
    assert final.reason == "silence" and last.reason == "finish" and last.text == ""
    assert final.end < endpoint <= heard < endpoint + 0.5 + 0.1  # before the endpoint frame was decoded
    offline_text = engine.new_decoder_stream()
    offline_text.accept(offline)
    assert final.text == offline_text.finalize().text != ""
