"""Client side of both websocket protocols, for every client: the demos, the latency lab, the benchmarks.

vosk (path "/", what vosk-server and our server speak)::

    -> {"config": {"sample_rate": 16000}}          text, once
    -> int16 little-endian mono PCM                 binary, any size
    <- {"partial": "..."} | {"text": "...", "result": [{"word","start","end","conf"}, ...]}
                                                    exactly one reply per binary block, in order
    -> {"eof" : 1}                                  exactly this text: vosk-server compares strings
    <- the final result, then the server closes

native (path "/v1/stream", docs/PROTOCOL.md): hello, start, audio, finish; results as the
server decodes them (no reply per block), each with its own ``start`` / ``end`` seconds.

Replies are turned into the engine's own :class:`Partial` / :class:`Final`
events, so captions and metrics do not care where they came from.  The
parsing is pure (:class:`VoskReplyParser`); :class:`VoskStream` and
:class:`NativeStream` are the thin asyncio wrappers around one connection,
opened by :class:`open_stream`.  :class:`SendLog` keeps the client's own clock
of what was sent when, to time results against.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK

from streaming.events import Final, Partial, Word

__all__ = [
    "MAX_REPLY_BYTES",
    "PROTOCOLS",
    "NativeOptions",
    "NativeStream",
    "ProtocolError",
    "SendLog",
    "VoskReplyParser",
    "VoskStream",
    "float32_pcm",
    "int16_pcm",
    "open_stream",
    "stream_url",
    "vosk_config_message",
    "vosk_eof_message",
]

# A final of a 20 s segment with word timings is a few kB; 1 MiB means a
# server gone wrong, not a long sentence.
MAX_REPLY_BYTES = 1 << 20


class ProtocolError(Exception):
    """The server said something the protocol does not allow."""


def vosk_config_message(sample_rate: int) -> str:
    """The first message of a vosk stream.

    >>> vosk_config_message(16000)
    '{"config": {"sample_rate": 16000}}'
    """
    return json.dumps({"config": {"sample_rate": int(sample_rate)}})


def vosk_eof_message() -> str:
    """End of stream, byte for byte as vosk's clients send it.

    vosk-server's asr_server.py compares the frame to this exact string (with
    the space before the colon); any other spelling of the same JSON is
    taken for audio there and the final never comes.

    >>> vosk_eof_message()
    '{"eof" : 1}'
    """
    return '{"eof" : 1}'


def int16_pcm(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] (or int16) -> little-endian int16 bytes, clipped.

    >>> int16_pcm(np.array([0.5, -1.0, 2.0], dtype=np.float32))
    b'\\x00@\\x00\\x80\\xff\\x7f'
    """
    if samples.dtype == np.int16:
        return samples.astype("<i2", copy=False).tobytes()
    scaled = np.clip(np.round(samples.astype(np.float32) * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def float32_pcm(samples: np.ndarray) -> bytes:
    """int16 (or float32 in [-1, 1]) -> little-endian float32 bytes, the native protocol's other encoding.

    >>> np.frombuffer(float32_pcm(np.array([16384, -32768], dtype=np.int16)), "<f4").tolist()
    [0.5, -1.0]
    """
    if samples.dtype == np.int16:
        return (samples.astype(np.float32) / 32768.0).astype("<f4").tobytes()
    return samples.astype("<f4", copy=False).tobytes()


class VoskReplyParser:
    """Turns vosk JSON replies into events, counting segments.

    vosk replies carry no segment number or times for partials; the parser
    numbers segments itself and takes times from word timings when there are
    any, else from how much audio had been sent (``audio_seconds``).

    >>> p = VoskReplyParser()
    >>> p.parse('{"partial": "hel"}', audio_seconds=0.5)
    Partial(text='hel', stable_text='', segment=0, start=0.0, end=0.5, words=())
    >>> p.parse('{"text": "hello", "result": [{"word": "hello", "start": 0.1, "end": 0.6, "conf": 0.9}]}',
    ...         audio_seconds=1.0).words
    (Word(text='hello', start=0.1, end=0.6, confidence=0.9),)
    >>> p.segment
    1
    """

    def __init__(self) -> None:
        self.segment = 0
        self._segment_start = 0.0

    def parse(self, message: str | bytes, *, audio_seconds: float) -> Partial | Final:
        if isinstance(message, bytes):
            raise ProtocolError(f"expected a JSON text reply, got {len(message)} bytes of binary data")
        try:
            data: Any = json.loads(message)
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"reply is not JSON ({exc.msg}): {message[:80]!r}") from None
        if not isinstance(data, dict):
            raise ProtocolError(f"expected a JSON object, got {type(data).__name__}: {message[:80]!r}")
        if isinstance(data.get("alternatives"), list) and data["alternatives"]:
            # vosk with max_alternatives > 0: the n-best list; the first is the best.
            best = data["alternatives"][0]
            if not isinstance(best, dict):
                raise ProtocolError(f"expected alternatives of objects, got {best!r}"[:200])
            data = {"text": best.get("text", ""), "result": best.get("result")}
        if "partial" in data:
            return Partial(
                text=str(data["partial"]),
                stable_text="",
                segment=self.segment,
                start=self._segment_start,
                end=audio_seconds,
            )
        if "text" in data:
            words = tuple(_word(w) for w in data.get("result") or ())
            start = words[0].start if words else self._segment_start
            end = words[-1].end if words else audio_seconds
            final = Final(
                text=str(data["text"]),
                words=words,
                segment=self.segment,
                start=start,
                end=end,
                reason=str(data.get("reason", "silence")),
            )
            self.segment += 1
            self._segment_start = end
            return final
        raise ProtocolError(f"expected a reply with 'partial' or 'text', got keys {sorted(data)}")


def _word(item: Any) -> Word:
    try:
        return Word(
            text=str(item["word"]),
            start=float(item["start"]),
            end=float(item["end"]),
            confidence=float(item.get("conf", 1.0)),
        )
    except (KeyError, TypeError, ValueError):
        raise ProtocolError(f"expected a word {{word, start, end, conf}}, got {item!r}") from None


class VoskStream:
    """One vosk-protocol stream over a websocket.

    Open it with ``async with open_stream(url, "vosk", 16000) as stream``; call
    :meth:`send_audio` / :meth:`send_eof` from one task and iterate
    :meth:`replies` in another.
    """

    def __init__(self, websocket: ClientConnection, sample_rate: int) -> None:
        self.websocket = websocket
        self.sample_rate = sample_rate
        self.samples_sent = 0
        self.parser = VoskReplyParser()
        self.eof_sent = False
        # True once a final came after our end-of-stream: vosk's answer to eof is its last final.
        # (A mid-stream final still in flight when eof went out counts too; the protocol has no
        # explicit end message to tell them apart.)
        self.completed = False

    @property
    def audio_seconds(self) -> float:
        return self.samples_sent / self.sample_rate

    async def send_audio(self, samples: np.ndarray) -> None:
        await self.websocket.send(int16_pcm(samples))
        self.samples_sent += int(samples.shape[0])

    async def send_eof(self) -> None:
        self.eof_sent = True
        await self.websocket.send(vosk_eof_message())

    async def replies(self) -> AsyncIterator[Partial | Final]:
        """Replies until the server closes; an abnormal close raises ConnectionClosedError.

        A clean close before the server answered end-of-stream ends the iteration too: check
        :attr:`completed` to tell a finished stream from one the server cut short.
        """
        try:
            async for message in self.websocket:
                reply = self.parser.parse(message, audio_seconds=self.audio_seconds)
                if isinstance(reply, Final) and self.eof_sent:
                    self.completed = True
                yield reply
        except ConnectionClosedOK:
            return


@dataclass(frozen=True)
class NativeOptions:
    """What a native-protocol client asks for in its ``start`` message (docs/PROTOCOL.md)."""

    # int16 is what every capture API and vosk client sends; float32 is for browser AudioWorklets.
    encoding: str = "int16"
    # The server's LM is what makes the default model usable; off only to compare.
    use_lm: bool = True
    hotwords: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.encoding not in ("int16", "float32"):
            raise ValueError(f"encoding must be 'int16' or 'float32', got {self.encoding!r}")

    def start_message(self, sample_rate: int) -> str:
        """The ``start`` message.

        >>> NativeOptions(hotwords=("kenlm",)).start_message(16000)
        '{"type": "start", "version": 1, "sample_rate": 16000, "encoding": "int16", \
"options": {"lm": true, "hotwords": ["kenlm"]}}'
        """
        return json.dumps({
            "type": "start", "version": 1, "sample_rate": int(sample_rate), "encoding": self.encoding,
            "options": {"lm": self.use_lm, "hotwords": list(self.hotwords)},
        })


class NativeStream:
    """One stream of the native protocol (docs/PROTOCOL.md) on /v1/stream.

    Same surface as :class:`VoskStream`.  Results come as the server decodes
    them (no reply per block); each carries the server's own processing
    latency, collected in :attr:`server_latencies`.
    """

    def __init__(self, websocket: ClientConnection, sample_rate: int, options: NativeOptions = NativeOptions()) -> None:
        self.websocket = websocket
        self.sample_rate = sample_rate
        self.options = options
        self.samples_sent = 0
        self.server_latencies: list[float] = []  # seconds, from each result's timing.latency_ms
        self.hello: dict[str, Any] = {}
        self.started: dict[str, Any] = {}  # the server's answer to start: the options it took
        self.completed = False  # True once the server's "end" message came (every final was sent)

    @property
    def audio_seconds(self) -> float:
        return self.samples_sent / self.sample_rate

    async def start(self) -> None:
        self.hello = _native_expect(await self.websocket.recv(), "hello")
        await self.websocket.send(self.options.start_message(self.sample_rate))
        self.started = _native_expect(await self.websocket.recv(), "started")

    async def send_audio(self, samples: np.ndarray) -> None:
        pcm = float32_pcm(samples) if self.options.encoding == "float32" else int16_pcm(samples)
        await self.websocket.send(pcm)
        self.samples_sent += int(samples.shape[0])

    async def send_eof(self) -> None:
        await self.websocket.send(json.dumps({"type": "finish"}))

    async def replies(self) -> AsyncIterator[Partial | Final]:
        try:
            async for message in self.websocket:
                data = _native_message(message)
                kind = data.get("type")
                if kind == "end":
                    self.completed = True
                    return
                if kind not in ("partial", "final"):
                    raise ProtocolError(f"expected a partial, final or end message, got type {kind!r}")
                timing = data.get("timing") or {}
                if isinstance(timing, dict) and isinstance(timing.get("latency_ms"), (int, float)):
                    self.server_latencies.append(float(timing["latency_ms"]) / 1000.0)
                words = tuple(_word(w) for w in data.get("words") or ())
                try:
                    if kind == "partial":
                        yield Partial(
                            text=str(data["text"]), stable_text=str(data.get("stable_text", "")),
                            segment=int(data["segment"]), start=float(data["start"]),
                            end=float(data["end"]), words=words,
                        )
                    else:
                        yield Final(
                            text=str(data["text"]), words=words, segment=int(data["segment"]),
                            start=float(data["start"]), end=float(data["end"]),
                            reason=str(data.get("reason", "")),
                        )
                except (KeyError, TypeError, ValueError):
                    raise ProtocolError(f"malformed {kind} message: {str(message)[:120]!r}") from None
        except ConnectionClosedOK:
            return


def _native_message(message: str | bytes) -> dict[str, Any]:
    if isinstance(message, bytes):
        raise ProtocolError(f"expected a JSON text message, got {len(message)} bytes of binary data")
    try:
        data = json.loads(message)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"message is not JSON ({exc.msg}): {message[:80]!r}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("type") == "error":
        raise ProtocolError(f"server error {data.get('code')}: {data.get('message')}")
    return data


def _native_expect(message: str | bytes, kind: str) -> dict[str, Any]:
    data = _native_message(message)
    if data.get("type") != kind:
        raise ProtocolError(f"expected a {kind!r} message, got type {data.get('type')!r}")
    return data


PROTOCOLS = ("vosk", "native")


def stream_url(url: str, protocol: str) -> str:
    """The endpoint of a protocol on a server given by its base URL.

    >>> stream_url("ws://127.0.0.1:2700", "native")
    'ws://127.0.0.1:2700/v1/stream'
    >>> stream_url("ws://127.0.0.1:2700/custom", "native")
    'ws://127.0.0.1:2700/custom'
    >>> stream_url("ws://127.0.0.1:2700", "vosk")
    'ws://127.0.0.1:2700/'
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("ws", "wss"):
        raise ValueError(f"server URL must start with ws:// or wss://, got {url!r}")
    host, slash, path = rest.partition("/")
    if slash and path:
        return url
    return f"{scheme}://{host}/v1/stream" if protocol == "native" else f"{scheme}://{host}/"


class open_stream:
    """``async with open_stream(url, "vosk", 16000) as stream``: connect and configure.

    ``token`` is sent as a bearer token (the server's ``--auth-token``); ``cafile``
    is a CA or certificate file to trust for ``wss://``; ``native`` are the
    native protocol's stream options.
    """

    def __init__(
        self,
        url: str,
        protocol: str,
        sample_rate: int,
        *,
        open_timeout: float = 10.0,
        token: str | None = None,
        cafile: str | None = None,
        native: NativeOptions = NativeOptions(),
    ) -> None:
        self._url = stream_url(url, protocol)
        self._protocol = protocol
        headers = {"Authorization": f"Bearer {token}"} if token else None
        context = ssl.create_default_context(cafile=cafile) if self._url.startswith("wss:") else None
        # No keepalive timeout: a loaded server reads our pong late (it waits behind audio), and
        # that is lag to measure, not a dead connection to end the stream over.
        self._connect = connect(
            self._url, open_timeout=open_timeout, max_size=MAX_REPLY_BYTES, ping_timeout=None,
            additional_headers=headers, ssl=context,
        )
        self._sample_rate = sample_rate
        self._open_timeout = open_timeout
        self._native = native

    async def __aenter__(self) -> VoskStream | NativeStream:
        websocket = await self._connect.__aenter__()
        try:
            if self._protocol == "vosk":
                await websocket.send(vosk_config_message(self._sample_rate))
                return VoskStream(websocket, self._sample_rate)
            native = NativeStream(websocket, self._sample_rate, self._native)
            await asyncio.wait_for(native.start(), self._open_timeout)
            return native
        except BaseException:
            await self._connect.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self._connect.__aexit__(*exc)  # type: ignore[arg-type]


@dataclass
class SendLog:
    """When each block of audio left, on the client's clock, and how late each result came.

    A result's latency is measured from sending the block that held its last
    audio (its ``end``) to receiving it; for the final after end-of-stream,
    from sending end-of-stream, since the server may hold the last audio until then.
    """

    sent_audio_s: list[float] = field(default_factory=list)  # cumulative seconds after each block
    sent_at: list[float] = field(default_factory=list)  # monotonic time each block was sent
    partial: list[float] = field(default_factory=list)  # latency of every partial, s
    final: list[float] = field(default_factory=list)  # latency of every final, s
    eof_at: float | None = None  # monotonic time end-of-stream was sent

    def sent(self, seconds: float, at: float | None = None) -> None:
        """A block of ``seconds`` of audio left now (or at monotonic time ``at``)."""
        total = (self.sent_audio_s[-1] if self.sent_audio_s else 0.0) + seconds
        self.sent_audio_s.append(total)
        self.sent_at.append(time.monotonic() if at is None else at)

    def eof(self) -> None:
        self.eof_at = time.monotonic()

    @property
    def audio_seconds(self) -> float:
        return self.sent_audio_s[-1] if self.sent_audio_s else 0.0

    def send_time_of(self, end_s: float) -> float:
        """When the block holding stream second ``end_s`` was sent.

        Blocks of 0.5 s sent at t=0 and t=0.5 -> second 0.7 was sent at t=0.5.

        >>> log = SendLog()
        >>> log.sent(0.5, at=0.0); log.sent(0.5, at=0.5)
        >>> log.send_time_of(0.7), log.send_time_of(0.5)
        (0.5, 0.0)
        """
        i = bisect.bisect_left(self.sent_audio_s, end_s - 1e-6)
        return self.sent_at[min(i, len(self.sent_at) - 1)]

    def since(self, event: Partial | Final) -> float:
        """The moment ``event``'s latency counts from (see the class docstring)."""
        since = self.send_time_of(event.end)
        if isinstance(event, Final) and event.reason == "finish" and self.eof_at is not None:
            since = max(since, self.eof_at)
        return since

    def record(self, event: Partial | Final, since: float | None = None) -> float:
        """Note ``event`` as received now; returns its latency (s) from ``since`` or :meth:`since`."""
        start = self.since(event) if since is None else since
        latency = max(0.0, time.monotonic() - start)
        (self.final if isinstance(event, Final) else self.partial).append(latency)
        return latency

    def summary(self, wall_s: float) -> str:
        audio = self.audio_seconds
        lines = [
            f"audio {audio:.2f} s in {wall_s:.2f} s wall ({audio / wall_s if wall_s else 0:.2f}x real time)"
        ]
        for name, values in (("partial", self.partial), ("final", self.final)):
            if values:
                p50, p90 = np.percentile(values, [50, 90])
                lines.append(
                    f"{name} latency: median {p50 * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, "
                    f"max {max(values) * 1000:.0f} ms over {len(values)}"
                )
        return "\n".join(lines)
