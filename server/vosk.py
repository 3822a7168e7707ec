"""The vosk-server protocol, sans I/O: frames in, commands out; events in, replies out.

Client -> server (what vosk's reference clients send)::

    text   {"config": {"sample_rate": 16000, "words": 1, "max_alternatives": 0, "phrase_list": [...]}}
    binary little-endian int16 mono PCM, any number of samples
    text   {"reset": 1}     close the current segment, keep the stream
    text   {"eof" : 1}      end of stream

Server -> client: exactly one text reply per audio message (reference clients
wait for it before sending the next block), one per reset, and one after eof:

    {"partial": "hello wor"}                               nothing final yet
    {"text": "hello world", "result": [{"word": "hello", "start": 0.48, "end": 0.8, "conf": 0.93}, ...]}

A final is delivered in the reply to the first audio message after its
endpoint.  If several finals are waiting when a reply is due (an eof or a
reset right after an endpoint), they are merged into one result, because a
vosk client reads exactly one message there.

Our default sample rate is 16000 (the model's rate); vosk-server's is 8000,
so vosk clients that send 8 kHz audio must say so in ``config`` (they all do).
"""

from __future__ import annotations

import logging
from typing import Any

from streaming.events import Final, Partial, Word

from .errors import ErrorCode, SessionError
from .protocol import (
    MAX_ALTERNATIVES,
    AudioIn,
    Command,
    Configure,
    Finish,
    Reset,
    StreamOptions,
    TimedEvent,
    decode_pcm,
    dumps,
    field_bool,
    field_int,
    field_object,
    field_phrases,
    field_sample_rate,
    parse_json_object,
    word_json,
)

__all__ = ["VoskProtocol"]

logger = logging.getLogger("server.vosk")

_CONTROL_KEYS = ("config", "eof", "reset")


class VoskProtocol:
    """State of one vosk session's wire protocol (not of its recognition)."""

    def __init__(self) -> None:
        self.options = StreamOptions()
        self._configured = False  # a config message was received
        self._audio_started = False  # audio, reset or eof seen: options are fixed
        self._finished = False
        self._partial = ""  # latest partial text of the open segment
        self._partial_segment = -1
        self._finals: list[Final] = []

    # ---- frames in -> commands out ----

    def receive(self, frame: str | bytes) -> Command:
        """Parse one frame; raises SessionError for anything a vosk client would not send."""
        if self._finished:
            raise SessionError(ErrorCode.BAD_MESSAGE, "message after eof; the stream has ended")
        if isinstance(frame, (bytes, bytearray, memoryview)):
            self._audio_started = True
            return AudioIn(decode_pcm(bytes(frame), "int16"))
        message = parse_json_object(frame)
        keys = [key for key in message if key in _CONTROL_KEYS]
        if len(keys) != 1:
            got = ", ".join(sorted(message)[:5]) or "none"
            raise SessionError(
                ErrorCode.BAD_MESSAGE,
                f"expected exactly one of 'config', 'eof', 'reset' in a text message, got keys: {got}",
            )
        key = keys[0]
        if key == "config":
            if self._audio_started:
                raise SessionError(ErrorCode.BAD_MESSAGE, "config must come before the first audio message")
            if self._configured:
                raise SessionError(ErrorCode.BAD_MESSAGE, "config was already received for this stream")
            self.options = self._parse_config(field_object("config", message["config"]))
            self._configured = True
            return Configure(self.options)
        if not _truthy(message[key]):
            raise SessionError(ErrorCode.BAD_MESSAGE, f"{key} must be 1 or true, got {message[key]!r}"[:200])
        self._audio_started = True
        if key == "reset":
            return Reset()
        self._finished = True
        return Finish()

    @staticmethod
    def _parse_config(config: dict[str, Any]) -> StreamOptions:
        sample_rate = 16_000
        words = True
        max_alternatives = 0
        hotwords: tuple[str, ...] = ()
        for key, value in config.items():
            if key == "sample_rate":
                sample_rate = field_sample_rate("config.sample_rate", value)
            elif key == "words":
                words = field_bool("config.words", value)
            elif key == "max_alternatives":
                max_alternatives = field_int("config.max_alternatives", value, 0, MAX_ALTERNATIVES)
            elif key == "phrase_list":
                # vosk restricts decoding to the phrases; we boost them instead.
                phrases = field_phrases("config.phrase_list", value)
                hotwords = tuple(p for p in phrases if p.lower() != "[unk]")
            else:
                # vosk-server grew per-connection keys ("model", ...); ignoring the
                # ones we do not serve keeps those clients working.
                logger.debug("ignoring unknown vosk config key %r", key[:40])
        return StreamOptions(
            sample_rate=sample_rate,
            words=words,
            max_alternatives=max_alternatives,
            hotwords=hotwords,
        )

    # ---- events in -> replies out ----

    def accept_events(self, events: list[TimedEvent]) -> None:
        for timed in events:
            event = timed.event
            if isinstance(event, Final):
                self._finals.append(event)
                if event.segment >= self._partial_segment:
                    self._partial = ""
            elif isinstance(event, Partial):
                if not self._finals or event.segment > self._finals[-1].segment:
                    self._partial = event.text
                    self._partial_segment = event.segment

    def audio_reply(self) -> str:
        """The reply to one audio message: the oldest waiting final, else the partial."""
        if self._finals:
            return self._result(self._finals.pop(0))
        return dumps({"partial": self._partial})

    def final_reply(self) -> str:
        """The reply to reset or eof: every waiting final, merged into one result."""
        finals, self._finals = self._finals, []
        self._partial = ""
        if not finals:
            return self._result(None)
        if len(finals) == 1:
            return self._result(finals[0])
        words: tuple[Word, ...] = tuple(w for f in finals for w in f.words)
        text = " ".join(f.text for f in finals if f.text)
        merged = Final(
            text=text,
            words=words,
            segment=finals[-1].segment,
            start=finals[0].start,
            end=finals[-1].end,
            reason=finals[-1].reason,
        )
        return self._result(merged)

    def _result(self, final: Final | None) -> str:
        text = final.text if final is not None else ""
        words = list(final.words) if final is not None else []
        result: dict[str, Any] = {}
        if self.options.words and words:
            result["result"] = [word_json(w) for w in words]
        result["text"] = text
        if self.options.max_alternatives > 0:
            # vosk's n-best layout; our decoder returns only the best hypothesis.
            confidence = sum(w.confidence for w in words) / len(words) if words else 0.0
            alternative: dict[str, Any] = {"confidence": round(confidence, 6), "text": text}
            if "result" in result:
                alternative["result"] = result["result"]
            return dumps({"alternatives": [alternative]})
        return dumps(result)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, int) and not isinstance(value, bool) and value == 1)
