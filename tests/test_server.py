"""The websocket server end to end: a real server on port 0, the real engine with a
tiny random model, real speech; results compared with the same engine in-process.

With a random model the transcripts are garbage but deterministic, so a server
result is correct when it equals what an in-process ``Recognizer`` makes of the
same audio in the same blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus

from server import ServerConfig, SpeechServer
from streaming.decoder import DecoderConfig
from streaming.endpointing import EndpointConfig
from streaming.events import Final
from streaming.recognizer import Engine

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parent.parent
BLOCK = 4000  # samples per message: 0.25 s at 16 kHz, what vosk's examples send


def run(coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _engine(model: Path) -> Engine:
    # Greedy decoding keeps random-model tests fast; 1.5 s segments give mid-stream
    # finals and partials between them (windows are 1 s).
    return Engine.load(model, lm=False, decoder=DecoderConfig(greedy=True), endpoint=EndpointConfig(max_segment_s=1.5))


@pytest.fixture(scope="module")
def engine(tiny_layer_model: Path) -> Engine:
    """Layer family: feature reuse, one window in flight per stream."""
    return _engine(tiny_layer_model)


@pytest.fixture(scope="module")
def group_engine(tiny_group_model: Path) -> Engine:
    """Group family: no feature reuse, so results do not depend on server timing."""
    return _engine(tiny_group_model)


@pytest.fixture(scope="module")
def clips(speech: tuple[np.ndarray, int], espeak_wav: Path) -> list[tuple[np.ndarray, int]]:
    """Three int16 clips: two pieces of read speech (16 kHz) and espeak (22.05 kHz)."""
    audio, rate = speech
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    synth, synth_rate = sf.read(espeak_wav, dtype="int16")
    return [(pcm[: 3 * rate], rate), (pcm[2 * rate : 4 * rate], rate), (synth[: 3 * synth_rate], synth_rate)]


def blocks(audio: np.ndarray, size: int = BLOCK) -> list[np.ndarray]:
    return [audio[i : i + size] for i in range(0, len(audio), size)]


def reference(
    engine: Engine, audio: np.ndarray, rate: int, *, reset_after: int | None = None, block: int = BLOCK
) -> list[Final]:
    """The in-process result for the same audio in the same blocks."""
    rec = engine.new_stream(sample_rate=rate, use_lm=False)
    for i, piece in enumerate(blocks(audio, block)):
        rec.accept_audio(piece)
        if i == reset_after:
            rec.reset()
    rec.finish()
    return [e for e in rec.events() if isinstance(e, Final)]


def joined(texts: list[str]) -> str:
    return " ".join(t for t in texts if t)


@contextlib.asynccontextmanager
async def running(engine: Engine, **config: Any) -> AsyncIterator[SpeechServer]:
    server = SpeechServer(engine, ServerConfig(port=0, **config))
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()


async def vosk_session(port: int, audio: np.ndarray, rate: int, **kw: Any) -> tuple[list[dict], dict, int]:
    """What vosk's test_simple.py does: config, blocks each awaited, eof, final."""
    async with connect(f"ws://127.0.0.1:{port}/", **kw) as ws:
        await ws.send(json.dumps({"config": {"sample_rate": rate}}))
        replies = []
        for block in blocks(audio):
            await ws.send(block.astype("<i2").tobytes())
            replies.append(json.loads(await ws.recv()))
        await ws.send('{"eof" : 1}')
        final = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        assert ws.close_code is not None
        return replies, final, ws.close_code


def vosk_texts(replies: list[dict], final: dict) -> str:
    return joined([r["text"] for r in replies if "text" in r] + [final["text"]])


async def http_get(port: int, path: str) -> tuple[int, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


# ---------------------------------------------------------------- vosk protocol


def test_vosk_protocol_as_its_clients_use_it(engine: Engine, clips: list[tuple[np.ndarray, int]]) -> None:
    audio, rate = clips[0]

    async def scenario() -> tuple[list[dict], dict, int]:
        async with running(engine) as server:
            return await vosk_session(server.port, audio, rate)

    replies, final, code = run(scenario())
    assert len(replies) == len(blocks(audio))  # exactly one reply per audio message
    assert all(("partial" in r) != ("text" in r) for r in replies)
    assert any(r.get("partial") for r in replies)
    assert code == 1000
    expected = reference(engine, audio, rate)
    assert len(expected) > 1  # 1.5 s segments: finals arrive mid-stream too
    assert vosk_texts(replies, final) == joined([f.text for f in expected])
    words = [w for r in [*replies, final] for w in r.get("result", [])]
    assert words == [
        {"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3), "conf": round(w.confidence, 6)}
        for f in expected
        for w in f.words
    ]


def test_concurrent_clients_each_get_their_own_transcript(engine: Engine, clips: list[tuple[np.ndarray, int]]) -> None:
    """Six streams at once (three vosk, three native) on one batching worker."""

    async def scenario() -> tuple[list[Any], list[Any], str]:
        # A generous batching wait makes windows of different streams share forwards.
        async with running(engine, max_wait_ms=100.0) as server:
            vosk = [vosk_session(server.port, a, r) for a, r in clips]
            native = [native_session(server.port, a, r) for a, r in clips]
            results = await asyncio.gather(*vosk, *native)
            _, _, metrics = await http_get(server.port, "/metrics")
            return results[: len(clips)], results[len(clips) :], metrics

    vosk_results, native_results, metrics = run(scenario())
    for (audio, rate), (replies, final, code), messages in zip(clips, vosk_results, native_results, strict=True):
        expected = joined([f.text for f in reference(engine, audio, rate)])
        assert code == 1000 and messages[-1] == {"close": 1000}
        assert vosk_texts(replies, final) == expected
        assert joined([m["text"] for m in messages if m.get("type") == "final"]) == expected
    batches = _metric(metrics, "xlsr_batch_size_windows_count")
    windows = _metric(metrics, "xlsr_batch_size_windows_sum")
    assert 0 < batches < windows  # streams were batched together
    assert _metric(metrics, 'xlsr_sessions_total{outcome="ok",protocol="vosk"}') == 3
    assert _metric(metrics, 'xlsr_sessions_total{outcome="ok",protocol="native"}') == 3


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"metric {name} not in exposition")


# ---------------------------------------------------------------- native protocol


async def native_session(
    port: int, audio: np.ndarray, rate: int, *, encoding: str = "int16", reset_after: int | None = None
) -> list[dict]:
    async with connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:
        messages = [json.loads(await ws.recv())]
        await ws.send(json.dumps({"type": "start", "sample_rate": rate, "encoding": encoding}))

        async def read() -> None:
            async for message in ws:
                messages.append(json.loads(message))

        reader = asyncio.create_task(read())
        for i, block in enumerate(blocks(audio)):
            if encoding == "float32":
                await ws.send((block / 32768.0).astype("<f4").tobytes())
            else:
                await ws.send(block.astype("<i2").tobytes())
            if i == reset_after:
                await ws.send('{"type": "reset"}')
        await ws.send('{"type": "finish"}')
        await reader
        messages.append({"close": ws.close_code})
        return messages


@pytest.mark.parametrize(("family", "encoding"), [("layer", "int16"), ("group", "float32")])
def test_native_protocol(
    request: pytest.FixtureRequest, clips: list[tuple[np.ndarray, int]], family: str, encoding: str
) -> None:
    engine = request.getfixturevalue("engine" if family == "layer" else "group_engine")
    audio, rate = clips[2]

    async def scenario() -> list[dict]:
        async with running(engine) as server:
            return await native_session(server.port, audio, rate, encoding=encoding, reset_after=3)

    messages = run(scenario())
    hello, started = messages[0], messages[1]
    assert hello["type"] == "hello" and hello["protocol_version"] == 1
    assert hello["model"]["sample_rate"] == 16000 and hello["model"]["frame_rate"] == 50.0
    assert started == {
        "type": "started",
        "sample_rate": rate,
        "encoding": encoding,
        "lm": False,
        "hotwords": [],
    }
    assert messages[-2]["type"] == "end" and messages[-1] == {"close": 1000}
    partials = [m for m in messages if m.get("type") == "partial"]
    finals = [m for m in messages if m.get("type") == "final"]
    assert partials
    for p in partials:
        assert p["text"].startswith(p["stable_text"])
        assert p["timing"]["latency_ms"] >= 0 and p["timing"]["audio_received_s"] >= p["end"] - 1e-6
    expected = reference(engine, audio, rate, reset_after=3)
    assert [(f["text"], f["segment"], f["reason"]) for f in finals] == [(f.text, f.segment, f.reason) for f in expected]
    assert finals[0]["reason"] == "reset" and finals[-1]["reason"] == "finish"
    assert [w["word"] for f in finals for w in f["words"]] == [w.text for f in expected for w in f.words]
    assert messages[-2]["segments"] == len(expected)


# ---------------------------------------------------------------- limits and bad input


def test_over_max_connections_gets_503_with_retry_after(engine: Engine) -> None:
    async def scenario() -> InvalidStatus:
        async with running(engine, max_connections=2) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            async with connect(uri), connect(uri + "v1/stream"):
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(uri):
                        pass
            # Slots come back when sessions end.
            await asyncio.sleep(0.05)
            async with connect(uri) as ws:
                await ws.send(b"\x00\x00" * 100)
                assert "partial" in json.loads(await ws.recv())
            return refused.value

    refused = run(scenario())
    assert refused.response.status_code == 503
    assert refused.response.headers["Retry-After"] == "5"
    assert b"limit of 2 connections" in refused.response.body


async def native_error(port: int, frames: list[str | bytes], **kw: Any) -> tuple[dict, int | None, str | None]:
    async with connect(f"ws://127.0.0.1:{port}/v1/stream", **kw) as ws:
        await ws.recv()  # hello
        for frame in frames:
            await ws.send(frame)
        message: dict = {}
        with contextlib.suppress(ConnectionClosed):
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "error":
                    break
        with contextlib.suppress(ConnectionClosed):
            await ws.recv()
        return message, ws.close_code, ws.close_reason


START = '{"type": "start"}'


@pytest.mark.parametrize(
    ("frames", "code", "close"),
    [
        (["{oops"], "bad_json", 1007),
        (['{"type": "transcribe"}'], "bad_message", 1007),
        (['{"type": "start", "sample_rate": "fast"}'], "bad_audio", 1007),
        (['{"type": "start", "sample_rate": 96000000}'], "bad_audio", 1007),
        ([START, b"\x01\x02\x03"], "bad_audio", 1007),
        ([b"\x00\x00"], "start_required", 1008),
        ([START, "[0, 1, 2]"], "unsupported_data", 1003),
    ],
)
def test_native_bad_input_gets_error_and_close_code_and_nothing_else_breaks(
    engine: Engine, clips: list[tuple[np.ndarray, int]], frames: list[str | bytes], code: str, close: int
) -> None:
    audio, rate = clips[0]

    async def scenario() -> tuple[Any, ...]:
        async with running(engine) as server:
            bystander = asyncio.create_task(vosk_session(server.port, audio[:rate], rate))
            error = await native_error(server.port, frames)
            replies, final, bystander_code = await bystander
            status, _, _ = await http_get(server.port, "/readyz")
            return error, vosk_texts(replies, final), bystander_code, status

    (message, close_code, reason), text, bystander_code, ready = run(scenario())
    assert message["type"] == "error" and message["code"] == code and message["message"]
    assert close_code == close and reason.startswith(code)
    assert bystander_code == 1000 and ready == 200
    assert text == joined([f.text for f in reference(engine, audio[:rate], rate)])


def test_vosk_bad_input_closes_with_reason(engine: Engine) -> None:
    async def scenario() -> list[tuple[int | None, str | None]]:
        out = []
        async with running(engine) as server:
            for frames in (['{"config": {"sample_rate": 3}}'], ['{"config": {"sample_rate": "16k"}}'], ["hello"]):
                async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
                    for frame in frames:
                        await ws.send(frame)
                    with contextlib.suppress(ConnectionClosed):
                        assert "error" in json.loads(await ws.recv())
                        await ws.recv()
                    out.append((ws.close_code, ws.close_reason))
        return out

    results = run(scenario())
    assert [code for code, _ in results] == [1007, 1007, 1007]
    assert "outside 4000..384000" in results[0][1]
    assert 'must be a number of Hz, got string "16k"' in results[1][1]
    assert results[2][1].startswith("bad_json")


def test_message_size_idle_and_session_limits(engine: Engine) -> None:
    async def scenario() -> tuple[Any, ...]:
        async with running(engine, max_message_bytes=4096, idle_timeout_s=0.3, max_session_s=1.0) as server:
            port = server.port
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send(b"\x00" * 8192)
                refused = json.loads(await ws.recv())
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                too_big = (ws.close_code, ws.close_reason, refused)
            # Far over the limit: websockets itself closes, before reading it all.
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send(b"\x00" * 40000)
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                far_too_big = (ws.close_code, ws.close_reason)
            idle = await native_error(port, [START])
            # Keep sending (never idle) until the session limit ends the stream.
            async with connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:
                await ws.send(START)
                started = time.monotonic()
                with contextlib.suppress(ConnectionClosed):
                    while time.monotonic() - started < 10:
                        await ws.send(b"\x00\x00" * 800)
                        await asyncio.sleep(0.05)
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        await ws.recv()
                too_long = (ws.close_code, ws.close_reason, time.monotonic() - started)
            return too_big, far_too_big, idle, too_long

    too_big, far_too_big, idle, too_long = run(scenario())
    assert too_big[0] == 1009 and too_big[1].startswith("message_too_big: message of 8192 bytes")
    assert too_big[2]["code"] == "message_too_big" and "limit of 4096 bytes" in too_big[2]["error"]
    assert far_too_big[0] == 1009 and "exceeds limit of 16384 bytes" in far_too_big[1]
    assert idle[0]["code"] == "idle_timeout" and idle[1] == 1008
    assert too_long[0] == 1008 and too_long[1].startswith("session_too_long") and too_long[2] < 5


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (path, bad)
        for path, odd in (("/", '{"config": {"sample_rate": "16k"}}'), ("/v1/stream", b"\x01\x02\x03"))
        for bad in ("{oops", odd, b"\x00" * 8193)
    ],
)
def test_bad_input_mid_stream_still_delivers_what_was_recognised(
    engine: Engine, clips: list[tuple[np.ndarray, int]], path: str, bad: str | bytes
) -> None:
    """The stream is finished and its finals sent before the error and the close."""
    audio, rate = clips[0]
    sent = blocks(audio)[:8]  # 2 s: one mid-stream final (1.5 s segments), then an open segment

    async def scenario() -> tuple[list[dict], int | None]:
        async with running(engine, max_message_bytes=8192, vosk_sample_rate=rate) as server:
            async with connect(f"ws://127.0.0.1:{server.port}{path}") as ws:
                messages = []
                if path != "/":
                    await ws.recv()
                    await ws.send(START)
                for block in sent:
                    await ws.send(block.tobytes())
                    if path == "/":
                        messages.append(json.loads(await ws.recv()))
                await ws.send(bad)
                with contextlib.suppress(ConnectionClosed):
                    async for message in ws:
                        messages.append(json.loads(message))
                return messages, ws.close_code

    messages, close_code = run(scenario())
    expected = reference(engine, np.concatenate(sent), rate)
    assert len(expected) >= 2 and expected[-1].text  # something was still open
    error = messages[-1]
    assert error.get("code") in ("bad_json", "bad_audio", "message_too_big")
    assert close_code in (1007, 1009)
    if path == "/":
        texts = [m["text"] for m in messages if "text" in m]
    else:
        texts = [m["text"] for m in messages if m.get("type") == "final"]
        assert messages[-2]["type"] == "final" and messages[-2]["reason"] == "finish"
    assert joined(texts) == joined([f.text for f in expected])


def test_abrupt_disconnect_frees_everything(engine: Engine, clips: list[tuple[np.ndarray, int]]) -> None:
    audio, rate = clips[0]

    async def scenario() -> tuple[str, str]:
        async with running(engine, max_connections=1) as server:
            for path in ("/", "/v1/stream"):
                ws = await connect(f"ws://127.0.0.1:{server.port}{path}")
                if path != "/":
                    await ws.recv()
                    await ws.send(START)
                for block in blocks(audio)[:6]:
                    await ws.send(block.tobytes())
                ws.transport.abort()  # no close frame, no eof
                for _ in range(200):
                    if not server._sessions and not server._admitted:
                        break
                    await asyncio.sleep(0.02)
            # The one slot is free again and works.
            replies, final, _ = await vosk_session(server.port, audio[:rate], rate)
            _, _, metrics = await http_get(server.port, "/metrics")
            return vosk_texts(replies, final), metrics

    text, metrics = run(scenario())
    assert text == joined([f.text for f in reference(engine, audio[:rate], rate)])
    assert _metric(metrics, 'xlsr_active_streams{protocol="vosk"}') == 0
    assert _metric(metrics, 'xlsr_active_streams{protocol="native"}') == 0
    assert _metric(metrics, 'xlsr_sessions_total{outcome="disconnected",protocol="native"}') == 1


def test_backpressure_bounds_undecoded_audio(engine: Engine, speech: tuple[np.ndarray, int]) -> None:
    """A client sending 7 s as fast as it can never has more than the backlog limit
    (plus one message and one window) waiting in the server, and still gets exactly
    the in-process result: nothing depends on how fast it sent."""
    audio, rate = speech
    pcm = (audio * 32767).astype(np.int16)

    async def scenario() -> tuple[float, list[dict]]:
        async with running(engine, max_backlog_s=1.0) as server:
            worst = 0.0

            async def watch() -> None:
                nonlocal worst
                while True:
                    for session in list(server._sessions):
                        driver = session.driver
                        if driver is not None:
                            worst = max(worst, driver.audio_seconds - driver.decoded_seconds)
                    await asyncio.sleep(0.005)

            watcher = asyncio.create_task(watch())
            messages = await native_session(server.port, pcm, rate)
            watcher.cancel()
            return worst, messages

    worst, messages = run(scenario())
    assert messages[-1] == {"close": 1000}
    # limit 1.0 s + one 0.25 s message + one window still needing look-ahead (1.4 s)
    assert 0 < worst <= 1.0 + 0.25 + 1.4 + 0.1
    finals = [m["text"] for m in messages if m.get("type") == "final"]
    assert finals == [f.text for f in reference(engine, pcm, rate)]


def test_unanswered_keepalive_pings_never_end_a_stream(engine: Engine, clips: list[tuple[np.ndarray, int]]) -> None:
    """A client that reads nothing for 30 ping intervals (so it answers no ping, as when the
    server's own backpressure leaves a pong unread behind audio) still gets its whole result."""
    audio, rate = clips[0]

    async def scenario() -> tuple[list[dict], int | None, int]:
        async with running(engine, keepalive_interval_s=0.05) as server:
            # max_queue=1: after two unread replies the client stops reading TCP, pings included
            async with connect(f"ws://127.0.0.1:{server.port}/", max_queue=1) as ws:
                await ws.send(json.dumps({"config": {"sample_rate": rate}}))
                for block in blocks(audio):
                    await ws.send(block.astype("<i2").tobytes())
                await asyncio.sleep(1.5)
                await ws.send('{"eof" : 1}')
                replies = [json.loads(m) async for m in ws]
            return replies, ws.close_code, len(blocks(audio))

    replies, code, sent = run(scenario())
    assert code == 1000 and len(replies) == sent + 1  # one reply per block, then the final
    expected = reference(engine, audio, rate)
    assert vosk_texts(replies[:-1], replies[-1]) == joined([f.text for f in expected])


# ---------------------------------------------------------------- HTTP, auth, TLS


def test_http_routes(engine: Engine) -> None:
    async def scenario() -> list[tuple[int, dict[str, str], str]]:
        async with running(engine) as server:
            return [await http_get(server.port, p) for p in ("/healthz", "/readyz", "/metrics", "/nope")]

    health, ready, metrics, missing = run(scenario())
    assert health[0] == 200 and health[2] == "ok\n"
    assert ready[0] == 200
    assert metrics[0] == 200 and metrics[1]["Content-Type"].startswith("text/plain; version=")
    for name in (
        "xlsr_active_streams",
        "xlsr_queue_depth_windows",
        "xlsr_batch_size_windows",
        "xlsr_forward_rtf",
        "xlsr_partial_latency_seconds",
        "xlsr_final_latency_seconds",
    ):
        assert name in metrics[2]
    assert missing[0] == 426  # a vosk path (every path is), but no WebSocket upgrade


def test_bearer_token_auth(engine: Engine) -> None:
    async def scenario() -> tuple[int, int, dict]:
        async with running(engine, auth_token="s3cret") as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            codes = []
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(uri, additional_headers=headers):
                        pass
                codes.append(refused.value.response.status_code)
            async with connect(uri, additional_headers={"Authorization": "Bearer s3cret"}) as ws:
                await ws.send(b"\x00\x00")
                reply = json.loads(await ws.recv())
            return codes[0], codes[1], reply

    missing, wrong, reply = run(scenario())
    assert missing == wrong == 401 and reply == {"partial": ""}


def test_tls(engine: Engine, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def scenario() -> dict:
        server = SpeechServer(engine, ServerConfig(port=0), ssl_context=server_ctx)
        async with server:
            async with connect(f"wss://127.0.0.1:{server.port}/v1/stream", ssl=client_ctx) as ws:
                return json.loads(await ws.recv())

    assert run(scenario())["type"] == "hello"


# ---------------------------------------------------------------- shutdown


def test_drain_gives_live_streams_their_finals(engine: Engine, clips: list[tuple[np.ndarray, int]]) -> None:
    audio, rate = clips[0]
    half = blocks(audio)[:6]

    async def scenario() -> tuple[dict, tuple, list[dict], tuple]:
        server = SpeechServer(engine, ServerConfig(port=0, vosk_sample_rate=rate))
        await server.start()
        vosk = await connect(f"ws://127.0.0.1:{server.port}/")
        native = await connect(f"ws://127.0.0.1:{server.port}/v1/stream")
        await native.recv()
        await native.send(START)
        await native.recv()
        for block in half:
            await vosk.send(block.tobytes())
            await vosk.recv()
            await native.send(block.tobytes())
        shutdown = asyncio.create_task(server.shutdown())
        vosk_final = json.loads(await vosk.recv())
        with contextlib.suppress(ConnectionClosed):
            await vosk.recv()
        native_messages = []
        with contextlib.suppress(ConnectionClosed):
            async for message in native:
                native_messages.append(json.loads(message))
        await shutdown
        return vosk_final, (vosk.close_code, vosk.close_reason), native_messages, (native.close_code,)

    vosk_final, vosk_close, native_messages, native_close = run(scenario())
    expected = reference(engine, np.concatenate(half), rate)
    assert vosk_close[0] == 1001 and "shutting down" in vosk_close[1]
    assert native_close == (1001,)
    finals = [m for m in native_messages if m["type"] == "final"]
    assert finals and finals[-1]["reason"] == "finish" and native_messages[-1]["type"] == "end"
    assert expected[-1].reason == "finish"
    # The vosk stream's last reply holds what was still open (earlier finals went out with replies).
    assert vosk_final["text"] in joined([f.text for f in expected])


def test_cli_serves_and_drains_on_sigterm(tiny_layer_model: Path, clips: list[tuple[np.ndarray, int]]) -> None:
    audio, rate = clips[1]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "--model",
            str(tiny_layer_model),
            "--no-lm",
            "--greedy",
            "--port",
            "0",
            "--max-wait-ms",
            "5",
        ],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        log = []
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            log.append(line)
            if "listening on ws://" in line:
                port = int(line.split("ws://", 1)[1].split()[0].rsplit(":", 1)[1])
        assert port is not None, "".join(log)
        assert any("LM: none" in line for line in log) or "LM: none" in proc.stderr.readline()

        async def scenario() -> tuple[dict, int | None]:
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send(json.dumps({"config": {"sample_rate": rate}}))
                for block in blocks(audio)[:4]:
                    await ws.send(block.tobytes())
                    await ws.recv()
                proc.send_signal(signal.SIGTERM)
                final = json.loads(await ws.recv())
                with contextlib.suppress(ConnectionClosed):
                    await ws.recv()
                return final, ws.close_code

        final, code = run(scenario())
        assert "text" in final and code == 1001
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- demo client


@contextlib.contextmanager
def server_in_thread(engine: Engine, **config: Any) -> Iterator[int]:
    """A server on its own event loop, for clients that run their own (demos.client.main)."""
    box: dict[str, Any] = {}
    ready = threading.Event()

    async def serve() -> None:
        stop = asyncio.Event()
        box["loop"], box["stop"] = asyncio.get_running_loop(), stop
        async with SpeechServer(engine, ServerConfig(port=0, **config)) as server:
            box["port"] = server.port
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    try:
        yield box["port"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)


@pytest.mark.parametrize("protocol", ["vosk", "native"])
def test_demo_client_streams_a_file_and_reports_latency(
    group_engine: Engine, espeak_wav: Path, protocol: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from demos.client import main as client_main

    audio, rate = sf.read(espeak_wav, dtype="int16")
    expected = joined([f.text for f in reference(group_engine, audio, rate, block=int(rate * 0.25))])
    with server_in_thread(group_engine) as port:
        code = client_main(
            [
                str(espeak_wav),
                "--url",
                f"ws://127.0.0.1:{port}",
                "--protocol",
                protocol,
                "--speed",
                "0",
                "--block-ms",
                "250",
                "--json",
            ]
        )
    out, err = capsys.readouterr()
    assert code == 0, err
    finals = [json.loads(line) for line in out.splitlines() if '"final"' in line]
    assert joined([f["text"] for f in finals]) == expected
    assert all(f["latency_ms"] >= 0 for f in finals)
    assert "x real time" in err and "final latency: median" in err


def test_xlsr_stream_serve_is_wired_to_the_server_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main as xlsr_stream
    from server.cli import build_parser, config_from_args

    with pytest.raises(SystemExit) as exited:
        xlsr_stream(["serve", "--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--max-connections", "--max-batch-size", "--max-wait-ms", "--certfile", "--auth-token"):
        assert flag in help_text
    assert config_from_args(build_parser().parse_args([])) == ServerConfig()
    with pytest.raises(ValueError, match="max_wait_ms must be in"):
        config_from_args(build_parser().parse_args(["--max-wait-ms", "-1"]))


# ---------------------------------------------------------------- fuzzing a live server

_fuzz_frames = st.lists(
    st.one_of(
        st.binary(max_size=48),
        st.text(max_size=24),
        st.sampled_from(
            [
                '{"type": "start"}',
                '{"type": "start", "encoding": "float32"}',
                '{"type": "reset"}',
                '{"type": "finish"}',
                '{"config": {"sample_rate": 8000}}',
                '{"reset": 1}',
                '{"eof" : 1}',
                '{"type": "start", "sample_rate": 1e9}',
            ]
        ),
    ),
    max_size=5,
)


def test_fuzz_live_server_survives_any_frames(engine: Engine) -> None:
    """Random frames on both endpoints: every session ends with an allowed close code,
    and afterwards the server still serves a normal stream and reports ready."""
    from websockets.sync.client import connect as sync_connect

    allowed = {None, 1000, 1003, 1007, 1008}
    seen: set[int | None] = set()
    with server_in_thread(engine, idle_timeout_s=5.0) as port:

        @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(path=st.sampled_from(["/", "/v1/stream"]), frames=_fuzz_frames)
        def session(path: str, frames: list[str | bytes]) -> None:
            with sync_connect(f"ws://127.0.0.1:{port}{path}", open_timeout=10, close_timeout=5) as ws:
                with contextlib.suppress(ConnectionClosed):
                    for frame in frames:
                        ws.send(frame)
                    # Let a refused frame's error (sent after the stream's finals) win the race
                    # with our own close.
                    with contextlib.suppress(TimeoutError):
                        while True:
                            ws.recv(timeout=0.5)
                    ws.close()
                with contextlib.suppress(ConnectionClosed, TimeoutError):
                    while True:
                        ws.recv(timeout=5)
                seen.add(ws.close_code)
                assert ws.close_code in allowed, (ws.close_code, ws.close_reason)

        session()
        with sync_connect(f"ws://127.0.0.1:{port}/") as ws:
            ws.send(b"\x00\x00" * 400)
            assert "partial" in json.loads(ws.recv(timeout=10))
            ws.send('{"eof" : 1}')
            assert "text" in json.loads(ws.recv(timeout=10))
        status, _, _ = asyncio.run(http_get(port, "/readyz"))
    assert status == 200
    assert seen & {1003, 1007, 1008}  # the fuzzer did hit the error paths
