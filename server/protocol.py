"""Sans-I/O pieces shared by both wire protocols: commands, options, PCM and JSON.

A protocol object (:class:`server.vosk.VoskProtocol`,
:class:`server.native.NativeProtocol`) turns each received WebSocket frame
into one typed :data:`Command` and turns engine events into the text frames
to send.  It never touches a socket, a clock or the engine, so it can be
tested and fuzzed frame by frame; the asyncio layer (``server/app.py``) only
moves frames and runs commands.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from streaming.arrays import AnyArray
from streaming.audio import as_float32_mono, check_float_amplitude, validate_sample_rate
from streaming.errors import AudioError
from streaming.events import Event, Word

from .errors import ErrorCode, SessionError

__all__ = [
    "AudioIn",
    "Command",
    "Configure",
    "Finish",
    "Reset",
    "StreamOptions",
    "TimedEvent",
    "Timing",
    "decode_pcm",
    "parse_json_object",
]

ENCODINGS = ("int16", "float32")
MAX_HOTWORDS = 1000  # a large phrase list; more is a grammar, not hotwords
MAX_HOTWORD_CHARS = 200


@dataclass(frozen=True)
class StreamOptions:
    """How one stream is recognised, as negotiated by its first message."""

    sample_rate: int = 16_000  # the model's rate: no resampling; vosk-server's default is 8000
    encoding: str = "int16"  # what vosk clients send; float32 for browser AudioWorklets
    use_lm: bool = True  # the LM is what makes the default model usable
    hotwords: tuple[str, ...] = ()
    words: bool = True  # vosk-server also sends word lists unless told otherwise
    partials: bool = True
    max_alternatives: int = 0  # vosk: 0 = plain result; >0 = "alternatives" n-best list
    grammar: tuple[str, ...] = ()  # vosk phrase_list: recognition restricted to these phrases

    def __post_init__(self) -> None:
        validate_sample_rate(self.sample_rate)
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")


@dataclass(frozen=True)
class Configure:
    """Create the stream with these options (vosk ``config``, native ``start``)."""

    options: StreamOptions


@dataclass(frozen=True, eq=False)
class AudioIn:
    """One block of samples, already decoded from bytes (int16 or float32, mono)."""

    samples: AnyArray  # (samples,) int16 or float32


@dataclass(frozen=True)
class Reset:
    """Close the current segment now and keep the stream open."""


@dataclass(frozen=True)
class Finish:
    """End of stream: flush everything, send the last finals, close."""


Command = Union[Configure, AudioIn, Reset, Finish]  # noqa: UP007 (a runtime alias on 3.10)


@dataclass(frozen=True)
class Timing:
    """When the server sent an event, relative to the audio that produced it."""

    latency_s: float  # arrival of the audio message that completed the result -> send
    audio_received_s: float  # seconds of audio received from the client so far
    server_time: float  # Unix time at send (for clients that sync clocks)


@dataclass(frozen=True)
class TimedEvent:
    event: Event
    timing: Timing = field(default_factory=lambda: Timing(0.0, 0.0, 0.0))


def parse_json_object(frame: str) -> dict[str, Any]:
    """Parse one text frame as a JSON object, or raise SessionError saying why not.

    >>> parse_json_object('{"eof" : 1}')
    {'eof': 1}
    """
    try:
        value = json.loads(frame, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        snippet = frame[:40] + ("..." if len(frame) > 40 else "")
        raise SessionError(
            ErrorCode.BAD_JSON,
            f"text frames must be JSON control messages (audio goes in binary frames); "
            f"could not parse {snippet!r}: {_json_reason(exc)}",
        ) from None
    if not isinstance(value, dict):
        raise SessionError(
            ErrorCode.UNSUPPORTED_DATA,
            f"text frames must hold a JSON object (audio goes in binary frames), "
            f"got a JSON {_json_type(value)}",
        )
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_reason(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at character {exc.pos}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def decode_pcm(frame: bytes, encoding: str) -> AnyArray:
    """Little-endian PCM bytes -> samples, or SessionError(bad_audio).

    >>> decode_pcm(b"\\x00\\x40\\x00\\x80", "int16")
    array([ 16384, -32768], dtype=int16)
    >>> decode_pcm(b"\\x00\\x40\\x00", "int16")
    Traceback (most recent call last):
    ...
    server.errors.SessionError: audio message has 3 bytes; int16 PCM needs a multiple of 2
    """
    width = 2 if encoding == "int16" else 4
    if len(frame) % width:
        raise SessionError(
            ErrorCode.BAD_AUDIO,
            f"audio message has {len(frame)} bytes; {encoding} PCM needs a multiple of {width}",
        )
    if encoding == "int16":
        return np.frombuffer(frame, dtype="<i2").astype(np.int16)
    samples = np.frombuffer(frame, dtype="<f4").astype(np.float32)
    try:  # here, not in the engine: a bad block is refused whole before it is queued
        samples = as_float32_mono(samples, what="float32 audio")
        check_float_amplitude(samples, what="float32 audio")
        return samples
    except AudioError as exc:
        raise SessionError(ErrorCode.BAD_AUDIO, str(exc)) from None


# --- field validators: each names the field, what was expected and what came ---


def field_sample_rate(where: str, value: Any) -> int:
    try:
        return validate_sample_rate(value)
    except AudioError as exc:
        raise SessionError(ErrorCode.BAD_AUDIO, f"{where}: {exc}") from None


def field_bool(where: str, value: Any) -> bool:
    """JSON booleans, and 0/1 because vosk clients send ``"words": 1``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise SessionError(ErrorCode.BAD_MESSAGE, f"{where} must be true/false or 0/1, got {_show(value)}")


def vosk_sample_rate(where: str, value: Any) -> int:
    """What vosk-server's ``float(sample_rate)`` takes: a number or a numeric string.

    >>> vosk_sample_rate("config.sample_rate", " 8000 ")
    8000
    """
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise SessionError(
                ErrorCode.BAD_AUDIO, f"{where} must be a number of Hz, got {_show(value)}"
            ) from None
    return field_sample_rate(where, value)


def vosk_int(where: str, value: Any, low: int, high: int) -> int:
    """What vosk-server's ``int(value)`` takes (a number, truncated, or an integer string), in range.

    >>> vosk_int("config.max_alternatives", "20", 0, 100)
    20
    """
    number: int | None = None
    if isinstance(value, (int, float)) and math.isfinite(value):
        number = int(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = int(value)
    if number is None:
        raise SessionError(ErrorCode.BAD_MESSAGE, f"{where} must be a whole number, got {_show(value)}")
    if not low <= number <= high:
        raise SessionError(ErrorCode.BAD_MESSAGE, f"{where} must be in {low}..{high}, got {number}")
    return number


def field_phrases(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SessionError(ErrorCode.BAD_MESSAGE, f"{where} must be a list of strings, got {_show(value)}")
    if len(value) > MAX_HOTWORDS:
        raise SessionError(
            ErrorCode.BAD_MESSAGE, f"{where} has {len(value)} entries, at most {MAX_HOTWORDS} allowed"
        )
    phrases: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise SessionError(ErrorCode.BAD_MESSAGE, f"{where}[{i}] must be a string, got {_show(item)}")
        if len(item) > MAX_HOTWORD_CHARS:
            raise SessionError(
                ErrorCode.BAD_MESSAGE,
                f"{where}[{i}] has {len(item)} characters, at most {MAX_HOTWORD_CHARS} allowed",
            )
        text = " ".join(item.split())
        if text:
            phrases.append(text)
    return tuple(phrases)


def field_object(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SessionError(ErrorCode.BAD_MESSAGE, f"{where} must be a JSON object, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    """A short, safe rendering of a client value for an error message."""
    try:
        text = json.dumps(value)
    except (ValueError, RecursionError):
        text = "..."
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{_json_type(value)} {text}"


def word_json(word: Word) -> dict[str, Any]:
    """vosk's word layout (also used by the native protocol)."""
    return {
        "word": word.text,
        "start": round(word.start, 3),
        "end": round(word.end, 3),
        "conf": round(float(word.confidence), 6),
    }


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
