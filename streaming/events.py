"""Typed results that leave the engine: words, partial and final hypotheses.

All times are seconds from the start of the stream (the first sample given to
``Recognizer.accept_audio``), measured on the 16 kHz model time line, so they
are exact multiples of the 20 ms frame period.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Alternative", "Event", "Final", "Partial", "Word"]


@dataclass(frozen=True)
class Word:
    """One recognised word with its time span and a confidence in [0, 1]."""

    text: str
    start: float  # seconds from stream start, first frame of the word
    end: float  # seconds from stream start, end of the last frame of the word
    confidence: float  # geometric mean of the per-frame best-token probability


@dataclass(frozen=True)
class Partial:
    """The best current hypothesis of the open segment; it may still change.

    ``stable_text`` is a word prefix of ``text`` that can no longer change: every
    live beam shares it, and every future hypothesis extends a live beam.  The
    end of ``text`` may come from the window's look-ahead frames, decoded
    provisionally (``DecoderConfig.peek_beams``) until a later window decodes
    them for good.
    """

    text: str
    stable_text: str
    segment: int  # 0, 1, 2, ... counts endpointed segments in this stream
    start: float  # seconds: where the segment began
    end: float  # seconds: audio the text covers (decoded frames + provisional look-ahead)
    words: tuple[Word, ...] = ()  # completed words of the best beam, with times


@dataclass(frozen=True)
class Alternative:
    """One of a segment's n best hypotheses (``Engine.new_stream(max_alternatives=N)``)."""

    text: str
    words: tuple[Word, ...]
    score: float  # the decoder's natural-log score (higher is better), comparable within a segment


@dataclass(frozen=True)
class Final:
    """A closed segment: its text will never change.  Emitted at an endpoint,
    on ``reset()`` and on ``finish()``."""

    text: str
    words: tuple[Word, ...]
    segment: int
    start: float  # seconds: where the segment began
    end: float  # seconds: where the segment ended (endpoint or end of audio)
    reason: str  # "silence", "max-length", "reset" or "finish"
    # The n best distinct hypotheses, best first (``text`` is the first); empty unless asked for.
    alternatives: tuple[Alternative, ...] = ()


Event = Partial | Final
