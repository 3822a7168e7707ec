"""Endpointing: decide where a segment ends from trailing non-speech frames.

A frame counts as non-speech when its most likely token is the CTC blank or
the word delimiter.  The rules are those of sherpa-onnx's online recognizer,
with its defaults, checked after every frame:

1. ``silence_without_speech_s`` of trailing non-speech in a segment that has
   no speech at all: close the (empty) segment so state does not grow.
2. ``silence_after_speech_s`` of trailing non-speech after some speech.
3. The segment reached ``max_segment_s``, speech or not.

The recognizer also asks :meth:`Endpointer.silence_ahead` about the window's
look-ahead frames (heard, not yet decoded for good): when they already complete
rule 2's silence, the segment ends at once instead of a window later.  Its
speech is all decoded by then (the silence runs from the decoded frames on into
the look-ahead), and the rest of the silence opens the next segment.
"""

from __future__ import annotations

from dataclasses import dataclass

from .arrays import BoolArray

__all__ = ["EndpointConfig", "Endpointer"]


@dataclass(frozen=True)
class EndpointConfig:
    # Long enough that a pause before speaking doesn't produce empty segments
    # every second, short enough that idle streams don't keep growing state.
    silence_without_speech_s: float = 2.4
    # Between sentences people pause 0.5-1 s; 1.2 s rarely cuts a sentence in
    # two yet finalises soon after the speaker stops.
    silence_after_speech_s: float = 1.2
    # Bounds decoder state and caption line length when nobody pauses.
    max_segment_s: float = 20.0
    # Off: a segment ends only on reset()/finish() (offline-like streaming).
    enabled: bool = True

    def __post_init__(self) -> None:
        for name in ("silence_without_speech_s", "silence_after_speech_s", "max_segment_s"):
            value = getattr(self, name)
            if not 0.04 <= value <= 3600.0:
                raise ValueError(f"{name} must be in 0.04..3600 s, got {value}")


class Endpointer:
    """Counts frames of one segment; ``scan`` finds where the next endpoint fires."""

    def __init__(self, config: EndpointConfig, frame_seconds: float) -> None:
        self.config = config
        self._rule1 = max(1, round(config.silence_without_speech_s / frame_seconds))
        self._rule2 = max(1, round(config.silence_after_speech_s / frame_seconds))
        self._rule3 = max(1, round(config.max_segment_s / frame_seconds))
        self.reset()

    def reset(self) -> None:
        self.frames = 0
        self.trailing_silence = 0
        self.has_speech = False

    def scan(self, silent: BoolArray) -> tuple[int, str] | None:
        """Consume per-frame non-speech flags until an endpoint fires.

        Returns ``(n, reason)`` when the endpoint fires after the n-th flag
        (the caller then resets and scans ``silent[n:]``), or None when all
        flags were consumed without one.

        >>> import numpy as np
        >>> ep = Endpointer(EndpointConfig(silence_after_speech_s=0.06), 0.02)
        >>> ep.scan(np.array([False, True, True, True, False]))
        (4, 'silence')
        """
        if not self.config.enabled:
            self.frames += len(silent)
            return None
        for i, is_silent in enumerate(silent.tolist()):
            self.frames += 1
            if is_silent:
                self.trailing_silence += 1
            else:
                self.trailing_silence = 0
                self.has_speech = True
            limit = self._rule2 if self.has_speech else self._rule1
            if self.trailing_silence >= limit:
                return i + 1, "silence"
            if self.frames >= self._rule3:
                return i + 1, "max-length"
        return None

    def silence_ahead(self, silent: BoolArray) -> bool:
        """True when these upcoming flags (not scanned) complete rule 2 at once: the
        segment has speech and the next ones are all non-speech up to its limit.

        >>> import numpy as np
        >>> ep = Endpointer(EndpointConfig(silence_after_speech_s=0.06), 0.02)
        >>> ep.scan(np.array([False, True]))
        >>> ep.silence_ahead(np.array([True, True, False])), ep.silence_ahead(np.array([True, False, True]))
        (True, False)
        """
        if not (self.config.enabled and self.has_speech):
            return False
        need = self._rule2 - self.trailing_silence
        return 0 < need <= len(silent) and bool(silent[:need].all())
