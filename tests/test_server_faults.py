"""Faults of a live server under hostile or careless clients (issue 14).

A real server on port 0 with the tiny real model.  Where the websockets client
would hide the fault (it reads for you, answers closes, sets one header), a raw
socket client speaks the protocol by hand.  Every wait is bounded: a test that
would hang before the fix fails on its bound instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from raw_ws import Raw, binary, frame, read_frames, text
from test_server import START, _engine, _metric, blocks, http_get, running
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server import ServerConfig, SpeechServer
from streaming.recognizer import Engine

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def engine(tiny_layer_model: Path) -> Engine:
    return _engine(tiny_layer_model)


@pytest.fixture(scope="module")
def clips(speech: tuple[np.ndarray, int]) -> list[tuple[np.ndarray, int]]:
    audio, rate = speech
    return [((np.clip(audio, -1, 1) * 32767).astype(np.int16)[: 3 * rate], rate)]


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def tiny_send_buffers(server: SpeechServer) -> None:
    """Accepted sockets inherit the listener's send buffer: keep it small, so a
    client that stops reading blocks the server after kilobytes, not megabytes."""
    assert server._server is not None
    for sock in server._server.sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


async def metrics(port: int) -> str:
    return (await http_get(port, "/metrics"))[2]


async def until(condition: Any, what: str, timeout: float = 20.0) -> None:
    """Poll an async condition; fail naming it when it does not come true in time."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)


async def active_streams(port: int) -> float:
    text_ = await metrics(port)
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text_.splitlines() if line.startswith("xlsr_active_streams{")
    )


@contextlib.asynccontextmanager
async def serving(engine: Engine, **config: Any) -> AsyncIterator[SpeechServer]:
    async with running(engine, **config) as server:
        yield server


# vosk's n-best layout makes each reply ~45 bytes rather than 12.
VOSK_BIG_REPLIES = '{"config": {"max_alternatives": 100}}'
PCM = (np.sin(np.arange(4000) / 7.0) * 3000).astype("<i2").tobytes()  # 0.25 s


# ---------------------------------------------------------------- 1. clients that never read


@pytest.mark.parametrize("protocol", ["vosk", "native"])
def test_client_that_never_reads_is_cut_and_its_slot_freed(engine: Engine, protocol: str) -> None:
    async def scenario() -> tuple[float, float, int]:
        async with serving(engine, max_connections=1, send_timeout_s=0.5, idle_timeout_s=600) as server:
            tiny_send_buffers(server)
            raw = await Raw.open(server.port, rcvbuf=4096)
            path = "/" if protocol == "vosk" else "/v1/stream"
            assert (await raw.upgrade(path))[0] == 101
            # Each reset makes one reply (vosk) or one final (native, from the sender task).
            reset = '{"reset": 1}' if protocol == "vosk" else '{"type": "reset"}'
            first = [text(VOSK_BIG_REPLIES)] if protocol == "vosk" else [text(START)]
            raw.send(*first, binary(PCM))
            await raw.flood(text(reset))
            port = server.port
            await until(
                lambda: _gauge_zero(port), "the non-reading client's session ended", timeout=30
            )
            ready = await http_get(port, "/readyz")
            async with connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:
                hello = json.loads(await ws.recv())
            cut = _metric(await metrics(port), f'xlsr_sessions_total{{outcome="send_timeout",protocol="{protocol}"}}')
            raw.abort()
            return ready[0], cut, hello["type"] == "hello"

    ready, cut, hello = run(scenario())
    assert ready == 200 and cut == 1.0 and hello


async def _gauge_zero(port: int) -> bool:
    return await active_streams(port) == 0


def test_session_limit_holds_while_a_send_is_blocked(engine: Engine) -> None:
    """--max-session ends a stream even when the server is stuck writing to it."""

    async def scenario() -> float:
        async with serving(engine, max_session_s=1.0, send_timeout_s=300, close_timeout_s=0.5) as server:
            tiny_send_buffers(server)
            raw = await Raw.open(server.port, rcvbuf=4096)
            assert (await raw.upgrade("/"))[0] == 101
            raw.send(text(VOSK_BIG_REPLIES), binary(PCM))
            await raw.flood(text('{"reset": 1}'))
            port = server.port
            await until(lambda: _gauge_zero(port), "the session limit ended the blocked session", timeout=20)
            raw.abort()
            return _metric(await metrics(port), 'xlsr_sessions_total{outcome="session_too_long",protocol="vosk"}')

    assert run(scenario()) == 1.0


# ---------------------------------------------------------------- 2. drain with queued frames


def test_drain_finishes_a_client_that_always_has_frames_queued(
    engine: Engine, clips: list[tuple[np.ndarray, int]]
) -> None:
    """A flat-out client is not read for the whole drain: it gets its finals and end at once."""
    audio, rate = clips[0]
    audio = np.tile(audio, 20)  # 60 s, sent as fast as the server takes it

    async def scenario() -> tuple[list[dict], int | None, int]:
        server = SpeechServer(engine, ServerConfig(port=0, drain_timeout_s=300))
        await server.start()
        messages: list[dict] = []
        async with connect(f"ws://127.0.0.1:{server.port}/v1/stream") as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "start", "sample_rate": rate}))

            async def read() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for message in ws:
                        messages.append(json.loads(message))

            async def write() -> None:
                with contextlib.suppress(ConnectionClosed):
                    for block in blocks(audio):
                        await ws.send(block.tobytes())

            reader = asyncio.create_task(read())
            writer = asyncio.create_task(write())
            await until(lambda: _has_final(messages), "a first final")
            shutdown = asyncio.create_task(server.shutdown())
            await asyncio.wait_for(reader, 30)  # not the 300 s drain timeout
            writer.cancel()
            await asyncio.wait_for(shutdown, 30)
            return messages, ws.close_code, len(blocks(audio))

    messages, close, sent = run(scenario(), timeout=90)
    assert close == 1001
    assert messages[-1]["type"] == "end"
    finals = [m for m in messages if m["type"] == "final"]
    assert finals[-1]["reason"] == "finish"
    assert messages[-1]["audio_s"] < sent * 0.25  # it stopped reading: the tail was never taken


async def _has_final(messages: list[dict]) -> bool:
    return any(m.get("type") == "final" for m in messages)


def test_readyz_is_503_from_the_start_of_a_drain_while_live_streams_get_finals(
    engine: Engine, clips: list[tuple[np.ndarray, int]]
) -> None:
    """What a load balancer sees on SIGTERM: the port still answers, /readyz and new
    upgrades say 503, and the live stream still gets its finals and end."""
    audio, rate = clips[0]

    async def scenario() -> tuple[int, str, int, list[dict], int]:
        # The raw client answers the close late: the drain waits on it meanwhile.
        server = SpeechServer(engine, ServerConfig(port=0, close_timeout_s=60))
        await server.start()
        port = server.port
        raw = await Raw.open(port)
        assert (await raw.upgrade("/v1/stream"))[0] == 101
        raw.send(text(json.dumps({"type": "start", "sample_rate": rate})))
        raw.send(*[binary(b.astype("<i2").tobytes()) for b in blocks(audio)[:8]])
        await until(lambda: _audio_received(port), "audio received")
        shutdown = asyncio.create_task(server.shutdown())
        await until(lambda: _not_ready(port), "/readyz 503")
        status, _, body = await http_get(port, "/readyz")
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{port}/v1/stream"):
                pass
        frames = await asyncio.wait_for(read_frames(raw), 30)
        close = frames[-1]
        raw.send(frame(0x8, close[1]))
        await asyncio.wait_for(raw.closed_by_server(), 10)
        raw.writer.close()
        await asyncio.wait_for(shutdown, 30)
        messages = [json.loads(payload) for opcode, payload in frames if opcode == 0x1]
        return status, body, refused.value.response.status_code, messages, struct.unpack("!H", close[1][:2])[0]

    status, body, upgrade, messages, close = run(scenario())
    assert (status, body.strip(), upgrade) == (503, "not ready: draining", 503)
    finals = [m for m in messages if m["type"] == "final"]
    assert finals and finals[-1]["reason"] == "finish" and messages[-1]["type"] == "end"
    assert close == 1001


async def _audio_received(port: int) -> bool:
    return _metric(await metrics(port), "xlsr_audio_seconds_total") > 0


async def _not_ready(port: int) -> bool:
    return (await http_get(port, "/readyz"))[0] == 503


# ---------------------------------------------------------------- 3. prompt closes


@pytest.mark.parametrize("how", ["finish", "bad frame"])
def test_server_close_is_prompt_when_the_client_pipelined_frames(engine: Engine, how: str) -> None:
    """The client's close reply is not stuck behind its unread frames until the close timeout."""

    async def scenario() -> float:
        async with serving(engine, close_timeout_s=60) as server:
            raw = await Raw.open(server.port)
            assert (await raw.upgrade("/v1/stream"))[0] == 101
            end = text('{"type": "finish"}') if how == "finish" else text("{oops")
            raw.send(text(START), binary(PCM), end, *[binary(PCM)] * 40)
            port = server.port
            # Read like a client would, answering the server's close frame.
            frames = await asyncio.wait_for(read_frames(raw), 20)
            raw.send(frame(0x8, frames[-1][1]))
            closed = await asyncio.wait_for(raw.closed_by_server(), 10)  # the server's FIN
            raw.writer.close()
            await until(lambda: _gauge_zero(port), "the session ended after the close reply", timeout=10)
            return float(closed)

    assert run(scenario()) == 1.0


# ---------------------------------------------------------------- 5. malformed auth


@pytest.mark.parametrize(
    "headers",
    [
        [("Authorization", "Bearer s3cret"), ("Authorization", "Bearer s3cret")],
        [("Authorization", "Basic czNjcmV0")],
        [("Authorization", "Bearer")],
    ],
)
def test_malformed_authorization_is_401_and_one_log_line(
    engine: Engine, headers: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[int, str]:
        async with serving(engine, auth_token="s3cret") as server:
            raw = await Raw.open(server.port)
            status, head = await raw.upgrade("/v1/stream", tuple(headers))
            raw.abort()
            return status, head

    with caplog.at_level(logging.INFO):
        status, head = run(scenario())
    assert status == 401 and "s3cret" not in head
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]


# ---------------------------------------------------------------- limits on connections


def test_readyz_is_503_when_full_and_ready_again_when_a_slot_frees(engine: Engine) -> None:
    async def scenario() -> list[tuple[int, str]]:
        async with serving(engine, max_connections=1) as server:
            seen = [(await http_get(server.port, "/readyz"))[::2]]
            async with connect(f"ws://127.0.0.1:{server.port}/v1/stream") as ws:
                await ws.recv()
                seen.append((await http_get(server.port, "/readyz"))[::2])
            port = server.port
            await until(lambda: _gauge_zero(port), "the stream ended")
            await until(lambda: _ready(port), "ready again")
            seen.append((await http_get(server.port, "/readyz"))[::2])
            return [(status, body.strip()) for status, body in seen]

    assert run(scenario()) == [(200, "ready"), (503, "not ready: full (1/1 streams)"), (200, "ready")]


async def _ready(port: int) -> bool:
    return (await http_get(port, "/readyz"))[0] == 200


def test_connections_still_in_the_handshake_are_bounded(engine: Engine) -> None:
    """Silent TCP connections (slowloris) past max_handshakes are dropped at once; the
    others when the handshake timeout ends; then a real client gets in."""

    async def scenario() -> tuple[list[bool], str, float]:
        async with serving(engine, max_handshakes=2, handshake_timeout_s=3.0) as server:
            silent = [await Raw.open(server.port) for _ in range(4)]
            await asyncio.sleep(0.2)
            dropped_at_once = []
            for raw in silent:
                try:
                    data = await asyncio.wait_for(raw.reader.read(1), 0.3)
                    dropped_at_once.append(data == b"")
                except asyncio.TimeoutError:
                    dropped_at_once.append(False)
                except ConnectionError:
                    dropped_at_once.append(True)
            for raw in silent:
                await asyncio.wait_for(raw.closed_by_server(), 10)
            async with connect(f"ws://127.0.0.1:{server.port}/v1/stream") as ws:
                hello = json.loads(await ws.recv())["type"]
            refused = _metric(await metrics(server.port), 'xlsr_rejected_upgrades_total{reason="handshakes"}')
            return dropped_at_once, hello, refused

    dropped, hello, refused = run(scenario())
    assert dropped == [False, False, True, True] and hello == "hello" and refused == 2.0


# ---------------------------------------------------------------- the batching worker


class _Fatal(BaseException):
    """Not an Exception: what a worker that only catches Exception dies of."""


class _DyingEngine:
    """The real engine, whose model forward fails once in the way the test asks."""

    def __init__(self, engine: Engine, error: BaseException) -> None:
        self._engine, self._error = engine, error
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def run_windows(self, requests: Any) -> Any:
        if not self.failed:
            self.failed = True
            raise self._error
        return self._engine.run_windows(requests)


@pytest.mark.parametrize("fatal", [False, True])
def test_a_failing_worker_fails_streams_loudly_and_readyz_says_so(
    engine: Engine, clips: list[tuple[np.ndarray, int]], fatal: bool
) -> None:
    audio, rate = clips[0]
    error: BaseException = _Fatal("boom") if fatal else RuntimeError("boom")

    async def scenario() -> tuple[Any, Any, int, int | None]:
        server = SpeechServer(_DyingEngine(engine, error), ServerConfig(port=0))
        async with server:
            port = server.port
            closes = []
            for _ in range(2):
                async with connect(f"ws://127.0.0.1:{port}/") as ws:
                    await ws.send(json.dumps({"config": {"sample_rate": rate}}))
                    with contextlib.suppress(ConnectionClosed):
                        for block in blocks(audio):
                            await ws.send(block.tobytes())
                            await asyncio.wait_for(ws.recv(), 20)
                        await ws.send('{"eof" : 1}')
                        while True:
                            await asyncio.wait_for(ws.recv(), 20)
                    closes.append(ws.close_code)
            status = (await http_get(port, "/readyz"))[0]
            return closes[0], closes[1], status, None

    first, second, status, _ = run(scenario())
    assert first == 1011  # internal_error, not a hang
    if fatal:
        assert second == 1011 and status == 503
    else:
        assert second == 1000 and status == 200  # the worker survived the bad batch


# ---------------------------------------------------------------- 8. browsers: Origin and credentials


@pytest.mark.parametrize(
    ("allowed", "host", "origin", "status"),
    [
        ((), "127.0.0.1", None, 101),  # not a browser
        ((), "127.0.0.1", "http://evil.example", 403),  # any page in a local browser: refused
        ((), "127.0.0.1", "null", 403),  # file:// pages and sandboxed frames
        ((), "127.0.0.1", "http://localhost:8000", 101),  # a local page
        ((), "127.0.0.1", "http://127.0.0.1:5173", 101),
        ((), "speech.example:2700", "https://speech.example:2700", 101),  # the server's own page
        ((), "speech.example:2700", "https://speech.example.evil:2700", 403),
        (("https://app.example",), "speech.example", "https://app.example", 101),
        (("https://app.example",), "speech.example", "https://app.example:444", 403),
        (("*",), "speech.example", "https://anything.example", 101),
    ],
)
def test_origin_check(engine: Engine, allowed: tuple[str, ...], host: str, origin: str | None, status: int) -> None:
    async def scenario() -> tuple[int, str]:
        async with serving(engine, allowed_origins=allowed) as server:
            raw = await Raw.open(server.port)
            headers = () if origin is None else (("Origin", origin),)
            got = await raw.upgrade("/v1/stream", headers, host=host)
            raw.abort()
            return got

    got, head = run(scenario())
    assert got == status
    if status == 403:
        assert "may not open streams here" in head


def test_browser_usable_credentials_and_the_token_is_never_logged(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    token = "tok-3f9a.b_c~d"

    async def scenario() -> tuple[str | None, str, list[int], str]:
        async with serving(engine, auth_token=token) as server:
            base = f"ws://127.0.0.1:{server.port}/v1/stream"
            # What a browser does: new WebSocket(url, ["xlsr-stream", "bearer." + token])
            async with connect(base, subprotocols=["xlsr-stream", f"bearer.{token}"]) as ws:  # type: ignore[list-item]
                selected = ws.subprotocol
                assert ws.response is not None
                response_headers = str(ws.response.headers)
                hello = json.loads(await ws.recv())["type"]
            async with connect(f"{base}?token={token}") as ws:
                assert json.loads(await ws.recv())["type"] == hello
            refused = []
            for kw in (
                {"subprotocols": ["xlsr-stream", "bearer.wrong"]},
                {"subprotocols": ["xlsr-stream"]},
                {"additional_headers": {"Authorization": f"Bearer {token}"}, "subprotocols": ["bearer.wrong"]},
            ):
                with pytest.raises(InvalidStatus) as error:
                    async with connect(base, **kw):  # type: ignore[arg-type]
                        pass
                refused.append(error.value.response.status_code)
            return selected, response_headers, refused, hello

    # What `serve -v` logs at most: our loggers at DEBUG, websockets' at INFO (its DEBUG dumps headers).
    with caplog.at_level(logging.DEBUG, logger="server"), caplog.at_level(logging.INFO, logger="server.websockets"):
        selected, response_headers, refused, hello = run(scenario())
    assert selected == "xlsr-stream" and token not in response_headers and hello == "hello"
    assert refused == [401, 401, 401]
    assert not [r for r in caplog.records if token in r.getMessage()]


# ---------------------------------------------------------------- 4. reset, 7. float range


def test_reset_final_covers_all_audio_sent_before_it(engine: Engine, clips: list[tuple[np.ndarray, int]]) -> None:
    audio, rate = clips[0]
    cut = int(2.3 * rate)  # inside the fourth 0.6 s chunk

    async def scenario() -> list[dict]:
        async with serving(engine) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/v1/stream") as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "start", "sample_rate": rate, "options": {"partials": False}}))
                await ws.recv()
                for block in blocks(audio[:cut]):
                    await ws.send(block.tobytes())
                await ws.send('{"type": "reset"}')
                await ws.send('{"type": "finish"}')
                return [json.loads(m) for m in [m async for m in ws]]

    messages = run(scenario())
    finals = [m for m in messages if m["type"] == "final"]
    assert [f["reason"] for f in finals][-2:] == ["reset", "finish"]
    assert finals[-2]["end"] == pytest.approx(((cut - 400) // 320 + 1) * 0.02)  # was 2.0: the last full chunk
    assert finals[-1]["start"] == finals[-1]["end"] == finals[-2]["end"]  # nothing was left for after it


def test_int16_scale_float_audio_is_refused_with_finals_kept(
    engine: Engine, clips: list[tuple[np.ndarray, int]]
) -> None:
    audio, rate = clips[0]

    async def scenario() -> tuple[list[dict], int | None]:
        async with serving(engine) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/v1/stream") as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "start", "sample_rate": rate, "encoding": "float32"}))
                await ws.recv()
                for block in blocks(audio[: 2 * rate]):
                    await ws.send((block / 32768.0).astype("<f4").tobytes())
                await ws.send(blocks(audio)[8].astype("<f4").tobytes())  # the same samples, int16 scale
                messages = []
                with contextlib.suppress(ConnectionClosed):
                    async for m in ws:
                        messages.append(json.loads(m))
                return messages, ws.close_code

    messages, close = run(scenario())
    assert close == 1007
    assert messages[-1]["type"] == "error" and messages[-1]["code"] == "bad_audio"
    assert "int16 values sent as floats" in messages[-1]["message"]
    finals = [m for m in messages if m["type"] == "final"]
    assert finals and finals[-1]["end"] == pytest.approx(((2 * rate - 400) // 320 + 1) * 0.02)


def test_native_outbox_keeps_every_final_and_only_the_newest_partial() -> None:
    """While a send is blocked the outbox cannot grow with stale partials (issue 14)."""
    from server.app import _Outbox
    from server.protocol import TimedEvent
    from streaming.events import Final, Partial

    async def scenario() -> tuple[list[str], int]:
        box = _Outbox()
        for i in range(1000):
            box.put(TimedEvent(Partial(f"partial {i}", "", i // 100, 0.0, 0.1)))
            if i % 100 == 99:
                box.put(TimedEvent(Final(f"final {i}", (), i // 100, 0.0, 0.1, "silence")))
        queued = len(box)
        sent = []
        while len(box):
            sent.append((await box.get()).event.text)
            box.task_done()
        await asyncio.wait_for(box.join(), 1)
        box.fail(ConnectionError("gone"))
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(box.join(), 1)
        return sent, queued

    sent, queued = run(scenario())
    assert queued == 10 and sent == [f"final {i}" for i in range(99, 1000, 100)]
