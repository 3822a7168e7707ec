"""The client library (``client/``): audio files, the websocket streams, caption output.

Against a real server on loopback with a tiny random model; the protocols'
parsing and the latency lab's use of it are in test_latency.py, the caption
view and subtitles in test_mic.py.
"""

from __future__ import annotations

import asyncio
import doctest
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import test_latency
from hypothesis import given, settings
from hypothesis import strategies as st
from test_latency import SPEECH, running_server, websocket_server

import client
import client.audio_files
import client.captions
import client.websocket
from client import (
    TRANSCRIPT,
    AudioFile,
    CaptionRenderer,
    JsonLog,
    NativeOptions,
    NativeStream,
    SendLog,
    open_stream,
    read_16k,
)
from client.captions import terminal_lines
from streaming.errors import AudioError
from streaming.events import Final, Partial

pytestmark = pytest.mark.timeout(60)

local_model = test_latency.local_model


@pytest.mark.parametrize("module", [client.audio_files, client.captions, client.websocket])
def test_docstring_examples(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


def test_the_library_does_not_need_the_server() -> None:
    import subprocess
    import sys

    code = "import sys, client, client.captions; assert not any(m.startswith('server') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_stereo_files_are_refused_unless_mixed_down(tmp_path: Path) -> None:
    left = np.linspace(-0.5, 0.5, 1600, dtype=np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="has 2 channels; the recognizer takes mono"):
        AudioFile(path)
    mixed = AudioFile(path, mix_down=True)
    assert mixed.channels == 2 and mixed.sample_rate == 8000
    assert np.allclose(mixed.read(), left / 2)
    assert [len(b) for b in mixed.blocks(0.1)] == [800, 800]


def test_read_16k_resamples_to_the_model_rate(tmp_path: Path) -> None:
    path = tmp_path / "8k.wav"
    sf.write(path, np.zeros(8000, np.float32), 8000)
    samples = read_16k(path)
    assert samples.dtype == np.float32 and abs(len(samples) - 16000) <= 16


def test_send_log_times_the_final_after_finish_from_the_finish() -> None:
    log = SendLog()
    log.sent(0.5, at=10.0)
    log.sent(0.5, at=10.5)
    final = Final("a", (), 0, 0.0, 1.0, "finish")
    assert log.since(Partial("a", "", 0, 0.0, 0.7)) == 10.5
    assert log.since(final) == 10.5  # no finish sent yet: the block holding its end
    log.eof_at = 11.0
    assert log.since(final) == 11.0
    assert log.since(Final("a", (), 0, 0.0, 1.0, "silence")) == 10.5


def test_native_options_name_a_bad_encoding() -> None:
    with pytest.raises(ValueError, match="encoding must be 'int16' or 'float32', got 'pcm'"):
        NativeOptions(encoding="pcm")


def test_json_lines_on_a_stream_carry_extra_fields_and_leave_it_open() -> None:
    out = io.StringIO()
    log = JsonLog(out, partials=True)
    log.add(Partial("he", "", 0, 0.0, 0.5), file="a.wav")
    log.add(Final("hello", (), 0, 0.0, 1.0, "finish"), file="a.wav", latency_ms=12.5)
    log.close()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["type"], r["file"]) for r in records] == [("partial", "a.wav"), ("final", "a.wav")]
    assert records[1]["latency_ms"] == 12.5 and records[1]["reason"] == "finish"
    assert not out.closed


def test_transcript_style_spells_finals_with_an_arrow() -> None:
    out = io.StringIO()
    r = CaptionRenderer(out, partials=True, width=80, style=TRANSCRIPT)
    r.show(Partial("go for", "", 0, 0.0, 1.0))
    r.show(Final("go forward", (), 0, 0.3, 1.7, "finish"))
    r.close()
    assert terminal_lines(out.getvalue()) == ["[00:00.30 \u2192 00:01.70] go forward"]
    assert "\u2026 go for" in out.getvalue()


def test_native_options_reach_the_server_and_float32_audio_is_recognised(local_model: Path) -> None:
    audio = AudioFile(SPEECH)

    async def stream(options: NativeOptions) -> tuple[dict[str, object], list[str]]:
        async with open_stream(url, "native", audio.sample_rate, native=options) as s:
            assert isinstance(s, NativeStream)
            for block in audio.blocks(0.25):
                await s.send_audio(block)
            await s.send_eof()
            finals = [e.text for e in [e async for e in s.replies()] if isinstance(e, Final)]
            return s.started, finals

    with running_server(local_model) as url:
        started, as_float = asyncio.run(stream(NativeOptions(encoding="float32", hotwords=("forward",))))
        _, as_int16 = asyncio.run(stream(NativeOptions()))
    assert started["encoding"] == "float32" and started["hotwords"] == ["forward"]
    # A 16-bit file read as float32 is k / 32768 exactly, so both encodings carry the same samples.
    assert as_float and as_float == as_int16


def _stream_and_report_completed(url: str, protocol: str) -> bool:
    audio = AudioFile(SPEECH)

    async def run() -> bool:
        async with open_stream(url, protocol, audio.sample_rate) as s:
            for block in audio.blocks(0.5):
                await s.send_audio(block)
            await s.send_eof()
            _ = [e async for e in s.replies()]
            return s.completed

    return asyncio.run(run())


@pytest.mark.parametrize("protocol", ["vosk", "native"])
def test_a_stream_the_server_finished_is_completed(local_model: Path, protocol: str) -> None:
    with running_server(local_model) as url:
        assert _stream_and_report_completed(url, protocol)


def test_a_clean_close_that_does_not_answer_eof_is_not_completed() -> None:
    """A server that closes with 1000 right after our eof (a session limit, a shutdown) sent no
    final for the end of the audio: the stream ends without error but is not completed."""

    async def handler(ws: Any) -> None:
        async for message in ws:
            if message == '{"eof" : 1}':
                await ws.close(1000, "session limit")
                return
            if isinstance(message, bytes):
                await ws.send(json.dumps({"partial": ""}))

    with websocket_server(handler) as url:
        assert not _stream_and_report_completed(url, "vosk")


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4000), st.integers(1, 40), st.integers(0, 160_000))
def test_send_log_finds_the_block_holding_a_results_last_sample(block: int, blocks: int, end_sample: int) -> None:
    log = SendLog()
    for k in range(blocks):
        log.sent(block / 16_000, at=float(k))
    holding = max(0, end_sample - 1) // block  # the block that holds sample end_sample - 1
    assert log.send_time_of(end_sample / 16_000) == float(min(holding, blocks - 1))
