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
    {"alternatives": [{"confidence": -33.9, "result": [...], "text": "hello world"}, ...]}   max_alternatives > 0

``phrase_list`` is vosk's grammar mode: recognition restricted to its words
(``streaming/grammar.py``), not hotword boosting (that is the native protocol's).

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

from streaming.events import Alternative, Final, Partial

from .config import MAX_VOSK_ALTERNATIVES, ServerConfig
from .errors import ErrorCode, SessionError
from .protocol import (
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

    ``config`` gives what a stream gets when its config does not say: its
    ``vosk_sample_rate``, ``vosk_words`` and ``vosk_max_alternatives``
    (vosk-server's ``VOSK_SAMPLE_RATE``, ``VOSK_SHOW_WORDS``, ``VOSK_ALTERNATIVES``).
    """

    def __init__(self, config: ServerConfig | None = None) -> None:
        config = config or ServerConfig()
        self.options = StreamOptions(
            sample_rate=config.vosk_sample_rate,
            words=config.vosk_words,
            max_alternatives=config.vosk_max_alternatives,
        )
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
                changes["max_alternatives"] = vosk_int("config.max_alternatives", value, 0, MAX_VOSK_ALTERNATIVES)
            elif key == "phrase_list":
                # vosk's grammar mode: recognition restricted to the phrases' words
                # ("[unk]" among them lets other speech through as [unk]).
                changes["grammar"] = field_phrases("config.phrase_list", value)
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
        """The reply to one audio message: the finals this block made (merged), else the partial."""
        final = self._take_finals()
        if final is not None:
            return self._result(final)
        return dumps({"partial": self._partial})

    def final_reply(self) -> str:
        """The reply to reset or eof: every waiting final, merged into one result."""
        final = self._take_finals()
        self._partial = ""
        return self._result(final)

    def _take_finals(self) -> Final | None:
        """The waiting finals as one (a vosk client reads one message per reply), or None."""
        finals, self._finals = self._finals, []
        if len(finals) <= 1:
            return finals[0] if finals else None
        earlier = finals[:-1]
        last = finals[-1]
        head_words = tuple(w for f in earlier for w in f.words)
        head_text = [f.text for f in earlier if f.text]
        head_score = sum(_alternatives(f)[0].score for f in earlier)
        # n-best of the whole reply: each alternative of the last segment after the best of the others.
        alternatives = tuple(
            Alternative(_join(head_text, a.text), head_words + a.words, head_score + a.score)
            for a in last.alternatives
        )
        return Final(
            text=_join(head_text, last.text),
            words=head_words + last.words,
            segment=last.segment,
            start=finals[0].start,
            end=last.end,
            reason=last.reason,
            alternatives=alternatives,
        )

    def _result(self, final: Final | None) -> str:
        text = final.text if final is not None else ""
        if self.options.max_alternatives > 0:
            # vosk's n-best layout (vosk-api Recognizer::NbestResult): words without conf.
            entries: list[dict[str, Any]] = []
            for alt in _alternatives(final):
                entry: dict[str, Any] = {"confidence": alt.score}
                if self.options.words and alt.words:
                    entry["result"] = [
                        {"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3)} for w in alt.words
                    ]
                entry["text"] = alt.text
                entries.append(entry)
            return dumps({"alternatives": entries})
        result: dict[str, Any] = {}
        if self.options.words and final is not None and final.words:
            result["result"] = [word_json(w) for w in final.words]
        result["text"] = text
        return dumps(result)


def _join(head: list[str], text: str) -> str:
    return " ".join([*head, text] if text else head)


def _alternatives(final: Final | None) -> tuple[Alternative, ...]:
    """A final's n-best list; a final without one counts as its own single entry.

    An empty result scores 1.0, as vosk's empty n-best reply does.
    """
    if final is None:
        return (Alternative("", (), 1.0),)
    if final.alternatives:
        return final.alternatives
    return (Alternative(final.text, final.words, 1.0 if not final.text else 0.0),)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, int) and not isinstance(value, bool) and value == 1)
