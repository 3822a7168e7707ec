"""Endpointing: decide where a segment ends from trailing non-speech frames.

A frame counts as non-speech when its most likely token is the CTC blank or
the word delimiter.  The rules are those of sherpa-onnx's online recognizer,
with its defaults, checked after every frame:

1. ``silence_without_speech_s`` of trailing non-speech in a segment that has
   no speech at all: close the (empty) segment so state does not grow.
2. ``silence_after_speech_s`` of trailing non-speech after some speech.
3. The segment reached ``max_segment_s``, speech or not.

And one that uses the decoder's view (Kaldi's / vosk's rule 2, "the best path
ends in a final state after 0.5 s of trailing silence"):

2b. ``silence_after_word_s`` (shorter than rule 2) of trailing non-speech,
    when the decoder's best hypothesis ends in a complete word: its last word
    is in the LM's lexicon (:func:`ends_in_word`), so a pause inside a word
    ("stra... tegy") does not cut it.  :meth:`Endpointer.scan` stops at that
    frame with :data:`WORD_END`; the recognizer asks the decoder and closes the
    segment there, or scans on (rule 2 still fires later).

The recognizer also asks :meth:`Endpointer.silence_ahead` about the window's
look-ahead frames (heard, not yet decoded for good): when they already complete
rule 2's silence, the segment ends at once instead of a window later.  Its
speech is all decoded by then (the silence runs from the decoded frames on into
the look-ahead), and the rest of the silence opens the next segment.

Between windows the model hears nothing new, so a rule that completes in the
audio after the last window's look-ahead would wait for the next chunk (up to
``chunk_s`` more).  :class:`QuietAudio` keeps each hop's loudness; when the
pause the model heard (but for its last word's tail) and the audio since that
window are at the stream's floor, and together complete rule 2b or 2, the
recognizer *probes* (``probe_quiet_audio``): one short window decodes for good
the frames that have heard the whole look-ahead and hears the rest as its
look-ahead, and the model's frames decide as at any window.  Loudness only
chooses when to ask the model; it never closes a segment itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrays import BoolArray, FloatArray

__all__ = ["WORD_END", "EndpointConfig", "Endpointer", "QuietAudio", "ends_in_word"]

# scan()'s reason for rule 2b's candidate frame: close only if the hypothesis ends in a word.
WORD_END = "word-end?"


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
    # Rule 2b: trailing non-speech after a hypothesis that ends in a complete word.
    # Kaldi/vosk use 0.5 s; 0.6 s leaves the pauses inside a sentence (0.2-0.5 s)
    # alone while closing about 0.6 s sooner than rule 2.  None: rule 2 only.
    silence_after_word_s: float | None = 0.6
    # Between windows, when the pause and the audio after it are at the stream's floor,
    # ask the model as soon as rule 2b's (or 2's) silence is complete instead of at the
    # next chunk: the endpoint's final comes within a block of the silence.
    probe_quiet_audio: bool = True

    def __post_init__(self) -> None:
        for name in ("silence_without_speech_s", "silence_after_speech_s", "max_segment_s"):
            value = getattr(self, name)
            if not 0.04 <= value <= 3600.0:
                raise ValueError(f"{name} must be in 0.04..3600 s, got {value}")
        # (at or above silence_after_speech_s rule 2 always fires first: allowed, a no-op)
        word = self.silence_after_word_s
        if word is not None and not 0.04 <= word <= 3600.0:
            raise ValueError(f"silence_after_word_s must be None or in 0.04..3600 s, got {word}")


class Endpointer:
    """Counts frames of one segment; ``scan`` finds where the next endpoint fires."""

    def __init__(self, config: EndpointConfig, frame_seconds: float) -> None:
        self.config = config
        self._rule1 = max(1, round(config.silence_without_speech_s / frame_seconds))
        self._rule2 = max(1, round(config.silence_after_speech_s / frame_seconds))
        self._rule3 = max(1, round(config.max_segment_s / frame_seconds))
        word = config.silence_after_word_s
        self._rule2b = None if word is None else max(1, round(word / frame_seconds))
        self.reset()

    def probe_due(self, silence: int, ends_in_word: bool) -> bool:
        """Would ``silence`` frames of trailing non-speech (heard by the model or, past its
        last window, by loudness) complete rule 2b (when the hypothesis ends in a word) or 2?

        >>> ep = Endpointer(EndpointConfig(silence_after_speech_s=0.1, silence_after_word_s=0.06), 0.02)
        >>> ep.scan(np.array([False]))
        >>> ep.probe_due(3, True), ep.probe_due(3, False), ep.probe_due(5, False)
        (True, False, True)
        """
        if not (self.config.enabled and self.config.probe_quiet_audio and self.has_speech):
            return False
        if ends_in_word and self._rule2b is not None and silence >= self._rule2b:
            return True
        return silence >= self._rule2

    def trailing_with(self, ahead: BoolArray) -> int:
        """Trailing non-speech frames counting the look-ahead's flags ``ahead`` after the
        scanned ones (only the look-ahead's own when it holds speech).

        >>> ep = Endpointer(EndpointConfig(), 0.02)
        >>> ep.scan(np.array([False, True, True]))
        >>> ep.trailing_with(np.array([True, True])), ep.trailing_with(np.array([True, False, True]))
        (4, 1)
        """
        if ahead.all():
            return self.trailing_silence + len(ahead)
        return len(ahead) - 1 - int(np.flatnonzero(~ahead)[-1])

    def reset(self) -> None:
        self.frames = 0
        self.trailing_silence = 0
        self.has_speech = False
        self._word_asked = False  # rule 2b already asked in this run of silence

    def scan(self, silent: BoolArray) -> tuple[int, str] | None:
        """Consume per-frame non-speech flags until an endpoint fires.

        Returns ``(n, reason)`` when the endpoint fires after the n-th flag
        (the caller then resets and scans ``silent[n:]``), or None when all
        flags were consumed without one.  Reason :data:`WORD_END` is rule 2b's
        candidate: the caller closes there if the hypothesis ends in a word,
        else scans on from ``silent[n:]``.

        >>> import numpy as np
        >>> ep = Endpointer(EndpointConfig(silence_after_speech_s=0.06, silence_after_word_s=None), 0.02)
        >>> ep.scan(np.array([False, True, True, True, False]))
        (4, 'silence')
        >>> ep = Endpointer(EndpointConfig(silence_after_speech_s=0.08, silence_after_word_s=0.04), 0.02)
        >>> ep.scan(np.array([False, True, True, True, True])), ep.scan(np.array([True, True, True]))
        ((3, 'word-end?'), (2, 'silence'))
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
                self._word_asked = False
            limit = self._rule2 if self.has_speech else self._rule1
            if self.trailing_silence >= limit:
                return i + 1, "silence"
            if self.frames >= self._rule3:
                return i + 1, "max-length"
            if self._word_due(self.trailing_silence):
                self._word_asked = True
                return i + 1, WORD_END
        return None

    def _word_due(self, silence: int) -> bool:
        return (
            self._rule2b is not None and self.has_speech and not self._word_asked and silence >= self._rule2b
        )

    def word_end_ahead(self, silent: BoolArray) -> bool:
        """True when rule 2b's silence is complete counting these upcoming (look-ahead)
        flags: ask the decoder now instead of a window later.

        >>> ep = Endpointer(EndpointConfig(silence_after_word_s=0.06), 0.02)
        >>> ep.scan(np.array([False, True]))
        >>> ep.word_end_ahead(np.array([True, True, False])), ep.word_end_ahead(np.array([True, False, True]))
        (True, False)
        """
        if not self.config.enabled:
            return False
        leading = int(np.argmin(silent)) if not silent.all() else len(silent)
        return self._word_due(self.trailing_silence + leading)

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


class QuietAudio:
    """Loudness (mean square) of each hop of a stream's audio, to tell between windows
    whether the pause the model heard goes on.

    Hop ``i`` is samples ``[i * hop, (i + 1) * hop)``, on the model's frame grid.  A hop
    is quiet when it is no louder than 6 dB over the stream's floor, the 10th percentile
    of its last 5 s (digital silence left out).  The model's own "pause" is not enough: a
    weak model emits a word's letters late, after hearing more of it, so the blank frames
    before they come may be speech; :meth:`quiet_between` asks the loudness of the pause
    it heard as well.

    >>> rng = np.random.default_rng(0)
    >>> quiet = QuietAudio(320)
    >>> quiet.accept(np.concatenate([0.3 * rng.standard_normal(16_000), 0.002 * rng.standard_normal(8_000)]))
    >>> quiet.frames, quiet.quiet_between(55), quiet.quiet_between(45)
    (75, True, False)
    """

    HISTORY_FRAMES = 250  # 5 s of hops kept
    MIN_HISTORY_FRAMES = 25  # below this (0.5 s), nothing is known about the stream's pauses
    MARGIN = 4.0  # mean square: 6 dB
    DIGITAL_SILENCE = 1e-10  # mean square (-100 dBFS): below any microphone's noise, i.e. zeros

    def __init__(self, hop_samples: int) -> None:
        self._hop = hop_samples
        self._carry = np.zeros(0, dtype=np.float32)  # samples of the hop not yet complete
        self._levels = np.zeros(0, dtype=np.float64)  # hops [_start, frames)
        self._start = 0

    @property
    def frames(self) -> int:
        """Complete hops so far."""
        return self._start + self._levels.size

    def accept(self, samples: FloatArray) -> None:
        data = np.concatenate([self._carry, samples]) if self._carry.size else samples
        whole = data.size // self._hop * self._hop
        self._carry = data[whole:].copy()
        if whole:
            hops = data[:whole].reshape(-1, self._hop).astype(np.float64)
            levels = np.concatenate([self._levels, np.mean(hops * hops, axis=1)])
            drop = max(0, levels.size - self.HISTORY_FRAMES)
            self._levels, self._start = levels[drop:], self._start + drop

    def quiet_between(self, frame: int) -> bool:
        """True when hops ``[frame, frames)`` (at least one, all still kept) are all quiet."""
        first = frame - self._start
        if not 0 <= first < self._levels.size:
            return False
        # Digital silence (padding, a muted input) is quiet but says nothing of the room's level.
        heard = self._levels[self._levels > self.DIGITAL_SILENCE]
        if heard.size < self.MIN_HISTORY_FRAMES:
            return False
        floor = float(np.percentile(heard, 10))
        return bool(np.all(self._levels[first:] <= self.MARGIN * floor))


def ends_in_word(text: str, lexicon: frozenset[str] | None) -> bool:
    """Does a hypothesis end in a complete word?  Its last word is in the lexicon (the LM's
    unigrams); without a lexicon (no LM) any last word counts: silence closed it.

    >>> lexicon = frozenset({"strategy", "the"})
    >>> ends_in_word("the strategy", lexicon), ends_in_word("the stra", lexicon), ends_in_word("", None)
    (True, False, False)
    """
    words = text.split()
    if not words:
        return False
    return lexicon is None or words[-1] in lexicon
