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

A final is delivered in the reply to the audio message whose decoding made
it (its endpoint fired there).  If several finals are waiting when a reply is
due, they are merged into one result, because a vosk client reads exactly one
message there.

As lenient as vosk-server (``asr_server.py``): a stream without config is
decoded at the server-wide vosk rate (``ServerConfig.vosk_sample_rate``, 8000
as in vosk-server); ``sample_rate`` may be a numeric string, ``words`` any
JSON value (its truthiness), ``max_alternatives`` anything ``int()`` takes; a
second config is merged into the first; a config after audio is ignored with
a warning (vosk-server's recognizer already exists then); an odd byte at the
end of a block is kept for the next block.  What vosk-server itself rejects
(a non-numeric rate, a phrase list that is not a list of strings) stays a
typed error.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from streaming.events import Final, Partial, Word

from .config import ServerConfig
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
    field_object,
    field_phrases,
    parse_json_object,
    vosk_int,
    vosk_sample_rate,
    word_json,
)

__all__ = ["VoskProtocol"]

logger = logging.getLogger("server.vosk")

_CONTROL_KEYS = ("config", "eof", "reset")


class VoskProtocol:
    """State of one vosk session's wire protocol (not of its recognition).

    ``default_sample_rate``: the rate of a stream whose config does not say
    (vosk-server's ``VOSK_SAMPLE_RATE``, 8000 there).
    """

    def __init__(self, default_sample_rate: int = ServerConfig.vosk_sample_rate) -> None:
        self.options = StreamOptions(sample_rate=default_sample_rate)
        self._audio_started = False  # audio, reset or eof seen: options are fixed
        self._finished = False
        self._spare = b""  # the odd byte of the last block: the first half of a sample
        self._partial = ""  # latest partial text of the open segment
        self._partial_segment = -1
        self._finals: list[Final] = []

    # ---- frames in -> commands out ----

    def receive(self, frame: str | bytes) -> Command:
        """Parse one frame; raises SessionError for anything vosk-server refuses too.

        A config after audio changes nothing: its Configure carries the options in force.
        """
        if self._finished:
            raise SessionError(ErrorCode.BAD_MESSAGE, "message after eof; the stream has ended")
        if isinstance(frame, (bytes, bytearray, memoryview)):
            self._audio_started = True
            data = self._spare + bytes(frame)
            cut = len(data) - len(data) % 2
            self._spare = data[cut:]
            return AudioIn(decode_pcm(data[:cut], "int16"))
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
            config = field_object("config", message["config"])
            if self._audio_started:
                # vosk-server parses it (a bad value still ends the stream) but its
                # recognizer already exists, so it changes nothing.
                self._parse_config(config, self.options)
                logger.warning(
                    "vosk config after audio ignored (keys: %s); send config before the first audio",
                    ", ".join(sorted(k[:40] for k in config)[:8]) or "none",
                )
                return Configure(self.options)
            self.options = self._parse_config(config, self.options)
            return Configure(self.options)
        if not _truthy(message[key]):
            raise SessionError(ErrorCode.BAD_MESSAGE, f"{key} must be 1 or true, got {message[key]!r}"[:200])
        self._audio_started = True
        if key == "reset":
            return Reset()
        self._finished = True
        if self._spare:
            logger.debug("vosk stream ended with half a sample (1 byte); dropped")
        return Finish()

    @staticmethod
    def _parse_config(config: dict[str, Any], base: StreamOptions) -> StreamOptions:
        """``base`` with the keys of ``config`` applied (a second config merges into the first)."""
        changes: dict[str, Any] = {}
        for key, value in config.items():
            if key == "sample_rate":
                changes["sample_rate"] = vosk_sample_rate("config.sample_rate", value)
            elif key == "words":
                changes["words"] = bool(value)  # vosk-server: bool(words)
            elif key == "max_alternatives":
                changes["max_alternatives"] = vosk_int("config.max_alternatives", value, 0, MAX_ALTERNATIVES)
            elif key == "phrase_list":
                # vosk restricts decoding to the phrases; we boost them instead.
                phrases = field_phrases("config.phrase_list", value)
                changes["hotwords"] = tuple(p for p in phrases if p.lower() != "[unk]")
            else:
                # vosk-server grew per-connection keys ("model", ...); ignoring the
                # ones we do not serve keeps those clients working.
                logger.debug("ignoring unknown vosk config key %r", key[:40])
        return dataclasses.replace(base, **changes)

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
