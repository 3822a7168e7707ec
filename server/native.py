"""The native protocol (version 1), sans I/O.  The wire format is in docs/PROTOCOL.md.

Server -> client: ``hello`` on connect; ``started`` after ``start``; then
``partial`` and ``final`` messages as they are decoded (no reply-per-block
rule), each with a ``timing`` object; ``end`` after ``finish``; ``error``
before any error close.  Client -> server: ``start`` (required first),
binary audio, ``reset``, ``finish``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from streaming.events import Final, Partial

from .errors import ErrorCode, ErrorReport, SessionError
from .protocol import (
    ENCODINGS,
    AudioIn,
    Command,
    Configure,
    Finish,
    Reset,
    StreamOptions,
    TimedEvent,
    Timing,
    decode_pcm,
    dumps,
    field_bool,
    field_object,
    field_phrases,
    field_sample_rate,
    parse_json_object,
    word_json,
)

__all__ = ["PROTOCOL_NAME", "PROTOCOL_VERSION", "NativeProtocol", "PendingResults", "ServerInfo"]

PROTOCOL_NAME = "xlsr-stream"
PROTOCOL_VERSION = 1

_START_FIELDS = {"type", "version", "sample_rate", "encoding", "options"}
_OPTION_FIELDS = {"lm", "hotwords", "partials", "words"}


@dataclass(frozen=True)
class ServerInfo:
    """What ``hello`` tells a client about the server."""

    server_version: str
    model: str  # display name (never a server file path)
    language: str | None  # vocabulary language, when the checkpoint says
    vocab_size: int
    sample_rate: int  # model rate, Hz
    frame_rate: float  # output frames per second (50 for 20 ms hops)
    lm: str | None  # LM description, None without an LM
    max_message_bytes: int
    idle_timeout_s: float
    max_session_s: float


class NativeProtocol:
    """State of one native session's wire protocol."""

    def __init__(self, info: ServerInfo) -> None:
        self.info = info
        self.options: StreamOptions | None = None
        self._finished = False

    def hello(self) -> str:
        info = self.info
        return dumps(
            {
                "type": "hello",
                "protocol": PROTOCOL_NAME,
                "protocol_version": PROTOCOL_VERSION,
                "server_version": info.server_version,
                "model": {
                    "name": info.model,
                    "language": info.language,
                    "vocab_size": info.vocab_size,
                    "sample_rate": info.sample_rate,
                    "frame_rate": info.frame_rate,
                },
                "lm": info.lm,
                "encodings": list(ENCODINGS),
                "limits": {
                    "max_message_bytes": info.max_message_bytes,
                    "idle_timeout_s": info.idle_timeout_s,
                    "max_session_s": info.max_session_s,
                },
            }
        )

    # ---- frames in -> commands out ----

    def receive(self, frame: str | bytes) -> Command:
        if self._finished:
            raise SessionError(ErrorCode.BAD_MESSAGE, "message after finish; the stream has ended")
        if isinstance(frame, (bytes, bytearray, memoryview)):
            if self.options is None:
                raise SessionError(
                    ErrorCode.START_REQUIRED,
                    'binary audio before the start message; send {"type": "start", ...} first',
                )
            return AudioIn(decode_pcm(bytes(frame), self.options.encoding))
        message = parse_json_object(frame)
        kind = message.get("type")
        if not isinstance(kind, str):
            raise SessionError(
                ErrorCode.BAD_MESSAGE, "control messages need a string field 'type' (start, reset or finish)"
            )
        if kind == "start":
            if self.options is not None:
                raise SessionError(ErrorCode.BAD_MESSAGE, "start was already received for this stream")
            self.options = self._parse_start(message)
            return Configure(self.options)
        if kind in ("reset", "finish"):
            extra = sorted(set(message) - {"type"})
            if extra:
                raise SessionError(ErrorCode.BAD_MESSAGE, f"unknown field {extra[0][:40]!r} in {kind}")
            if self.options is None:
                raise SessionError(ErrorCode.START_REQUIRED, f"{kind} before the start message")
            if kind == "reset":
                return Reset()
            self._finished = True
            return Finish()
        raise SessionError(
            ErrorCode.BAD_MESSAGE, f"unknown message type {kind[:40]!r}; expected start, reset or finish"
        )

    @staticmethod
    def _parse_start(message: dict[str, Any]) -> StreamOptions:
        extra = sorted(set(message) - _START_FIELDS)
        if extra:
            raise SessionError(ErrorCode.BAD_MESSAGE, f"unknown field {extra[0][:40]!r} in start")
        version = message.get("version", PROTOCOL_VERSION)
        if isinstance(version, bool) or version != PROTOCOL_VERSION:
            raise SessionError(
                ErrorCode.BAD_MESSAGE,
                f"start.version: this server speaks protocol version {PROTOCOL_VERSION}, "
                f"got {str(version)[:20]}",
            )
        sample_rate = field_sample_rate("start.sample_rate", message.get("sample_rate", 16_000))
        encoding = message.get("encoding", "int16")
        if encoding not in ENCODINGS:
            raise SessionError(
                ErrorCode.BAD_MESSAGE,
                f"start.encoding must be 'int16' or 'float32', got {str(encoding)[:40]!r}",
            )
        options = field_object("start.options", message.get("options", {}))
        extra = sorted(set(options) - _OPTION_FIELDS)
        if extra:
            raise SessionError(ErrorCode.BAD_MESSAGE, f"unknown field {extra[0][:40]!r} in start.options")
        return StreamOptions(
            sample_rate=sample_rate,
            encoding=encoding,
            use_lm=field_bool("start.options.lm", options.get("lm", True)),
            hotwords=field_phrases("start.options.hotwords", options.get("hotwords", [])),
            partials=field_bool("start.options.partials", options.get("partials", True)),
            words=field_bool("start.options.words", options.get("words", True)),
        )

    # ---- events in -> messages out ----

    def started(self, lm_active: bool) -> str:
        assert self.options is not None
        return dumps(
            {
                "type": "started",
                "sample_rate": self.options.sample_rate,
                "encoding": self.options.encoding,
                "lm": lm_active,
                "hotwords": list(self.options.hotwords),
            }
        )

    def wants(self, timed: TimedEvent) -> bool:
        """Whether this session sends the event at all: finals always, partials unless turned off."""
        assert self.options is not None
        return self.options.partials or not isinstance(timed.event, Partial)

    def message(self, timed: TimedEvent) -> str:
        """One result as its message."""
        return self._partial(timed) if isinstance(timed.event, Partial) else self._final(timed)

    def event_messages(self, events: list[TimedEvent]) -> list[str]:
        """Finals always; of a run of partials only the newest is worth sending."""
        pending = PendingResults()
        for timed in events:
            if self.wants(timed):
                pending.put(timed)
        return [self.message(timed) for timed in pending.take_all()]

    def _partial(self, timed: TimedEvent) -> str:
        event = timed.event
        assert isinstance(event, Partial)
        message: dict[str, Any] = {
            "type": "partial",
            "segment": event.segment,
            "text": event.text,
            "stable_text": event.stable_text,
            "start": round(event.start, 3),
            "end": round(event.end, 3),
        }
        if self.options is not None and self.options.words:
            message["words"] = [word_json(w) for w in event.words]
        message["timing"] = _timing(timed.timing)
        return dumps(message)

    def _final(self, timed: TimedEvent) -> str:
        event = timed.event
        assert isinstance(event, Final)
        message: dict[str, Any] = {
            "type": "final",
            "segment": event.segment,
            "text": event.text,
            "start": round(event.start, 3),
            "end": round(event.end, 3),
            "reason": event.reason,
        }
        if self.options is None or self.options.words:
            message["words"] = [word_json(w) for w in event.words]
        message["timing"] = _timing(timed.timing)
        return dumps(message)

    @staticmethod
    def end(segments: int, audio_s: float) -> str:
        return dumps({"type": "end", "segments": segments, "audio_s": round(audio_s, 3)})

    @staticmethod
    def error(report: ErrorReport) -> str:
        return dumps({"type": "error", "code": report.code.text, "message": report.message})


class PendingResults:
    """Results not yet sent: every final, and only the newest partial.

    A partial is stale once anything is queued behind it (a newer partial, or the
    final that ends its segment), so it is dropped then: a slow client gets every
    final and the latest partial, never a backlog.  The one place this is decided,
    on typed events; the session's outbox queues its results here.
    """

    def __init__(self) -> None:
        self._items: deque[TimedEvent] = deque()

    def put(self, timed: TimedEvent) -> None:
        if self._items and isinstance(self._items[-1].event, Partial):
            self._items.pop()
        self._items.append(timed)

    def take(self) -> TimedEvent:
        """The oldest result; IndexError when there is none."""
        return self._items.popleft()

    def take_all(self) -> list[TimedEvent]:
        items, self._items = list(self._items), deque()
        return items

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def _timing(timing: Timing) -> dict[str, float]:
    return {
        "latency_ms": round(timing.latency_s * 1000.0, 1),
        "audio_received_s": round(timing.audio_received_s, 3),
        "server_time": round(timing.server_time, 3),
    }
