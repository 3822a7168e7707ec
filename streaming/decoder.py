"""Greedy and incremental CTC beam search, identical to pyctcdecode over the whole utterance.

Why our own beam search: pyctcdecode 0.5.0 only decodes a complete logit
matrix.  Re-decoding the growing prefix on every chunk costs O(utterance) per
chunk, and carrying only the KenLM state across chunks (``lm_start_state``)
throws the beam away at every chunk boundary and cuts words in half.  A
:class:`BeamSearchStream` keeps the *whole* beam between ``accept()`` calls, so
every frame is decoded exactly once, and ``finalize()`` returns exactly the
text and word frame spans of::

    build_ctcdecoder(labels, kenlm_path, unigrams, alpha, beta).decode_beams(
        whole_utterance_log_probs, beam_width=..., beam_prune_logp=...,
        token_min_logp=..., prune_history=..., hotwords=..., hotword_weight=...)[0]

To be bit-identical, each frame follows pyctcdecode's algorithm step by step:
the candidate tokens are visited in the iteration order of the Python set
``set(indices >= token_min_logp) | {argmax}``, beams in their sorted order;
beams with the same (text, partial word, last token) merge with
``log(exp(a) + exp(b))`` at the position of the first one and keep the frame
spans of the last one; the LM score, beam_prune_logp filter, ``heapq.nlargest``
(ties keep input order) and optional history pruning come in the same order
with the same float operations.  KenLM, unknown-word and partial-word scores
are computed by pyctcdecode's own ``LanguageModel``/``HotwordScorer`` objects.

Why the per-chunk cost stays flat: beam text is a chain of interned word nodes
(``_Text``), so a text is compared, hashed and merged by identity in O(1) no
matter how long the utterance is, and each node carries its own LM state and
score (the "LM cache" lives and dies with the nodes; nodes no live beam can
reach are freed by reference counting).  Word frame spans are persistent linked
lists (O(1) append).  pyctcdecode instead joins and splits strings of the whole
text, which is O(text) per beam per frame.

Stable prefix (``Hypothesis.stable_words``): the leading completed words
shared by every live beam.  Every later beam extends a live beam, so these
words can never change.  With ``prune_history=False`` beams that differ in one
early word survive for a long time and the stable prefix lags far behind the
best beam; the default ``prune_history=True`` (pyctcdecode's ``decode()``
setting) keeps it 1-3 words behind.

Input: ``accept()`` takes log-probs ``(frames, vocab)`` (the acoustic model's
log-softmax).  Like pyctcdecode we re-normalise each row with log-softmax and
clip at log(1e-15); pyctcdecode would also accept probabilities (rows summing
to 1) - our contract is log-probs only.

Word confidence (``DecodedWord.confidence``): the geometric mean, over the
frames of the word's span ``[start_frame, end_frame)``, of the probability of
the most likely token at that frame, i.e. ``exp(mean(max_token logp))``.  It is
cheap (a prefix sum), in [0, 1], and low exactly where the acoustic model
hesitated inside the word; it does not include the LM.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import math
import weakref
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

import numpy as np
from pyctcdecode.constants import MIN_TOKEN_CLIP_P

from .arrays import AnyArray
from .errors import StreamStateError, VocabularyError
from .grammar import BOS, EOS, UNK, Grammar
from .language_model import PARTIAL_SCORES_LIMIT, LanguageModel, build_labels

__all__ = [
    "DECODERS",
    "BeamSearchDecoder",
    "BeamSearchStream",
    "DecodedWord",
    "Decoder",
    "DecoderConfig",
    "DecoderStream",
    "GreedyDecoder",
    "GrammarStream",
    "GreedyStream",
    "Hypothesis",
    "ScoredHypothesis",
    "build_decoder",
]

# Beam search implementations DecoderConfig.decoder selects from.
DECODERS = ("pyctcdecode", "flashlight")
_LOG_MIN_P = float(np.log(MIN_TOKEN_CLIP_P))  # -34.54: pyctcdecode's clip floor
# Entries per generation of the partial-word score cache: big enough to keep the
# prefixes of common words across chunks, small enough (~1 MB) to bound memory.
_PARTIAL_CACHE_LIMIT = 8192


# --------------------------------------------------------------------------------------
# Results and configuration
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecodedWord:
    """One word with its frame span; frames count from the start of the decoder stream."""

    text: str
    start_frame: int  # first frame of the word's first token
    end_frame: int  # one past the last frame of its last token (exclusive)
    confidence: float  # exp(mean over [start, end) of the best token's log-prob), in [0, 1]


@dataclass(frozen=True)
class Hypothesis:
    """The best hypothesis of a stream so far (or the final one).

    ``text`` includes the word still being spelled (in a partial); ``words``
    only completed words.  The first ``stable_words`` words of ``text`` are
    shared by every live beam and can never change.
    """

    text: str
    stable_words: int
    words: tuple[DecodedWord, ...]


@dataclass(frozen=True)
class ScoredHypothesis:
    """One entry of a finalized segment's n-best list (``DecoderStream.alternatives``)."""

    text: str
    words: tuple[DecodedWord, ...]
    # Natural-log score the beam search ranked it by: acoustic log-prob plus the
    # weighted LM, word bonus and hotword scores.  Higher is better; only differences
    # between alternatives of one segment mean anything.
    score: float


@dataclass(frozen=True)
class DecoderConfig:
    """Beam search settings; defaults are pyctcdecode's, so offline HF decoding agrees."""

    # Beams kept per frame; pyctcdecode / Wav2Vec2ProcessorWithLM default. Fewer is faster,
    # but peaked wav2vec2 outputs rarely keep more than a few dozen beams after pruning.
    # The small shipped model is less peaked, so narrower beams cost it WER (docs/MEASUREMENTS.md).
    beam_width: int = 100
    # Drop beams this much (natural log) below the best one; pyctcdecode default -10.
    beam_prune_logp: float = -10.0
    # Tokens below this log-prob at a frame are not expanded (the argmax always is);
    # pyctcdecode default -5 (p < 0.7 %), the main speed knob.
    token_min_logp: float = -5.0
    # Keep only the best of beams whose last (LM order - 1) words, partial word and last
    # token agree.  True, as in pyctcdecode's decode(): it only changes runners-up, and
    # without it beams that differ in one early word live on and the stable prefix
    # trails the best beam by tens of words (60 s synthetic test: mean 43-67 words
    # behind, vs 1-1.4 with it).  False reproduces decode_beams()/HF batch_decode.
    prune_history: bool = True
    # Words to boost (may be out of the LM's vocabulary); per-stream override in new_stream.
    hotwords: tuple[str, ...] = ()
    # Log-score bonus per hotword; pyctcdecode default 10 (a strong nudge).
    hotword_weight: float = 10.0
    # LM weight / word bonus overrides; None keeps the LM's own (attrs.json) values.
    alpha: float | None = None
    beta: float | None = None
    # Best-path decoding (no beam, no LM): the cheapest baseline, for latency work.
    greedy: bool = False
    # Beams that decode the window's look-ahead frames into a provisional tail for partials
    # (peek()), so a partial shows what the look-ahead heard without waiting for those frames
    # to be decoded for good; the tail is redone then, so a narrow beam does.  0: partials
    # show decoded frames only.
    peek_beams: int = 8
    # Grammar mode (a vosk phrase_list): weight of the phrase-list bigram's natural-log
    # probabilities against the acoustic log-probs; pyctcdecode's default LM weight.
    grammar_weight: float = 0.5
    # Log-score of spelling outside the grammar's words ([unk] allowed): a beam leaving the
    # word trie pays grammar_unk_logp once per [unk] word and grammar_unk_char_logp per letter,
    # so [unk] wins only where no grammar word fits the audio nearly as well, and one long
    # [unk] cannot swallow a run of grammar words for a single word's price.  On espeak digits
    # and sentences with the shipped model (docs/PROTOCOL.md), -5/-1 turned half the digits into
    # [unk]; -10/-2 kept every digit the grammar alone finds and still made other speech [unk] on
    # the synthetic-only model; the distilled model (step 6606) heard "call me at" as "one" at -10/-2,
    # while -8/-1.5 (and -6/-1.5) keep the digits and give [unk] (tests/test_vosk_dropin.py).
    grammar_unk_logp: float = -8.0
    grammar_unk_char_logp: float = -1.5
    # Log-score bonus per grammar word (pyctcdecode's beta for the grammar): against the
    # deletions a forced search makes where the model spells a digit badly; 2 recovered a
    # dropped digit, 4 began inserting "oh" into pauses.
    grammar_word_bonus: float = 2.0
    # Which beam search: "pyctcdecode" (this module, bit-identical to pyctcdecode, hotwords)
    # or "flashlight" (flashlight-text's C++ search, lexicon-constrained with an LM, no
    # hotwords; streaming/flashlight_decoder.py).  Figures in docs/DECODERS.md.
    decoder: str = "pyctcdecode"
    # Words outside the LM's unigrams (natural log): each costs oov_word_logp plus
    # oov_char_logp per letter, the same while the word is being spelled (once it leaves
    # the unigram trie) as when it completes, in place of pyctcdecode's KenLM <unk> score
    # plus unk_score_offset.  Why: KenLM scores <unk> at log10 -100 when the ARPA lists
    # none (the CMU trigram does not), so a completed unknown word cost ~150 nats while
    # its partial cost 10: the search glued runs of unknown words into one to pay once
    # ("go forver tain metrs" -> "go forvertanmetrs").  -8/-1 (a 6-letter unknown word
    # costs 14) chosen on even held-out-speaker lines; docs/DECODERS.md has the sweep.
    # None: pyctcdecode's scoring, bit for bit (the reference the tests compare with).
    oov_word_logp: float | None = -8.0
    oov_char_logp: float = -1.0

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if isinstance(self.beam_width, bool) or not isinstance(self.beam_width, int):
            raise ValueError(f"beam_width must be an int in [1, 10000], got {self.beam_width!r}")
        if not 1 <= self.beam_width <= 10000:
            raise ValueError(f"beam_width must be in [1, 10000], got {self.beam_width}")
        if isinstance(self.peek_beams, bool) or not isinstance(self.peek_beams, int) or self.peek_beams < 0:
            raise ValueError(f"peek_beams must be an int >= 0, got {self.peek_beams!r}")
        if not (-math.inf < self.beam_prune_logp <= 0.0):
            raise ValueError(f"beam_prune_logp must be a finite log-prob in (-inf, 0], got {self.beam_prune_logp}")
        if not (-math.inf < self.token_min_logp <= 0.0):
            raise ValueError(f"token_min_logp must be a finite log-prob in (-inf, 0], got {self.token_min_logp}")
        if isinstance(self.hotwords, str):
            raise ValueError(f"hotwords must be a sequence of words, got the str {self.hotwords!r}")
        hotwords = tuple(self.hotwords)
        if not all(isinstance(w, str) for w in hotwords):
            raise ValueError(f"hotwords must all be str, got {hotwords!r}")
        object.__setattr__(self, "hotwords", hotwords)
        if not math.isfinite(self.hotword_weight):
            raise ValueError(f"hotword_weight must be finite, got {self.hotword_weight}")
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha >= 0.0):
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha}")
        if self.beta is not None and not math.isfinite(self.beta):
            raise ValueError(f"beta must be a finite number, got {self.beta}")
        if not (math.isfinite(self.grammar_weight) and self.grammar_weight >= 0.0):
            raise ValueError(f"grammar_weight must be a finite number >= 0, got {self.grammar_weight}")
        if not math.isfinite(self.grammar_word_bonus):
            raise ValueError(f"grammar_word_bonus must be finite, got {self.grammar_word_bonus}")
        if self.oov_word_logp is not None and not (-math.inf < self.oov_word_logp <= 0.0):
            raise ValueError(f"oov_word_logp must be a finite log-prob in (-inf, 0] or None, got {self.oov_word_logp}")
        for name in ("grammar_unk_logp", "grammar_unk_char_logp", "oov_char_logp"):
            value = getattr(self, name)
            if not (-math.inf < value <= 0.0):
                raise ValueError(f"{name} must be a finite log-prob in (-inf, 0], got {value}")


# --------------------------------------------------------------------------------------
# Protocols (the contract in docs/ARCHITECTURE.md)
# --------------------------------------------------------------------------------------
class DecoderStream(Protocol):
    """One segment of one stream."""

    frames: int  # frames accepted so far

    def accept(self, log_probs: AnyArray) -> None: ...  # (frames, vocab) float log-probs

    def partial(self) -> Hypothesis: ...

    # The partial these frames would give, leaving the stream as it was (look-ahead).
    def peek(self, log_probs: AnyArray) -> Hypothesis: ...

    def finalize(self) -> Hypothesis: ...

    # After finalize(): the n best distinct texts, best first (the first is finalize()'s).
    def alternatives(self, n: int) -> tuple[ScoredHypothesis, ...]: ...


class Decoder(Protocol):
    """Shared by all streams of an engine; holds the LM."""

    # With a grammar the stream is restricted to its words (vosk's phrase_list);
    # hotwords and the LM are then not used.
    def new_stream(
        self, *, hotwords: Sequence[str] | None = None, use_lm: bool = True, grammar: Grammar | None = None
    ) -> DecoderStream: ...


# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------
def _check_log_probs(log_probs: Any, vocab_size: int) -> AnyArray:
    """Validate shape; returns a C-contiguous float array ``(frames, vocab)``."""
    arr = np.asarray(log_probs)
    if arr.ndim != 2:
        raise VocabularyError(f"log_probs must be 2-D (frames, vocab), got shape {tuple(arr.shape)}")
    if arr.shape[1] != vocab_size:
        raise VocabularyError(f"logits have {arr.shape[1]} columns, vocabulary has {vocab_size}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise VocabularyError(f"log_probs must be floating point, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr)


def _renormalize(log_probs: AnyArray) -> AnyArray:
    """Row-wise log-softmax, clipped to [log(1e-15), 0], as pyctcdecode prepares its input.

    Every operation is per row, so normalising chunk by chunk gives the same bits
    as normalising the whole utterance at once (tests check this with 1-frame chunks).
    """
    # log_probs  # (frames, vocab)
    row_max = np.amax(log_probs, axis=1, keepdims=True)  # (frames, 1)
    row_max[~np.isfinite(row_max)] = 0
    shifted = log_probs - row_max
    with np.errstate(divide="ignore"):
        log_norm = np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))  # (frames, 1)
    clipped: AnyArray = np.clip(shifted - log_norm, np.log(MIN_TOKEN_CLIP_P), 0)  # (frames, vocab)
    return clipped


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) with the exact float operations pyctcdecode uses for merging."""
    if a >= b:
        return a + math.log(1 + math.exp(b - a))
    return b + math.log(1 + math.exp(a - b))


def _accepted_chunk(final: Hypothesis | None, log_probs: Any, vocab_size: int, best: _FrameBest) -> AnyArray:
    """The input guard of every stream's ``accept()`` (each decoder's, flashlight's too):
    no frames after ``finalize()``, a ``(frames, vocab)`` float chunk, renormalised as
    pyctcdecode prepares its input, its best tokens recorded for word confidences.
    Returns the renormalised chunk (0 frames: nothing to decode)."""
    if final is not None:
        raise StreamStateError("accept() after finalize(): start a new stream")
    chunk = _check_log_probs(log_probs, vocab_size)
    if chunk.shape[0] == 0:
        return chunk
    chunk = _renormalize(chunk)  # (frames, vocab)
    best.extend(chunk)
    return chunk


def _search_frames(chunk: AnyArray, token_min_logp: float) -> list[tuple[list[float], set[int]]]:
    """Per frame of an accepted chunk, its log-probs and the tokens worth expanding, in the
    exact set pyctcdecode iterates (above token_min_logp, and the argmax)."""
    out = []
    for column in chunk:  # (vocab,)
        out.append((column.tolist(), set(np.where(column >= token_min_logp)[0].tolist()) | {int(column.argmax())}))
    return out


class _FrameBest:
    """Prefix sums of the best token log-prob per frame, for O(1) word confidence.

    8 bytes a frame (a double in an ``array``): 1.4 MB for an hour-long segment.
    """

    def __init__(self) -> None:
        self._cum = array("d", [0.0])

    def extend(self, log_probs: AnyArray) -> None:
        best = log_probs.max(axis=1).astype(np.float64)  # (frames,)
        self._cum.extend((np.cumsum(best) + self._cum[-1]).tolist())

    def truncate(self, frames: int) -> None:
        del self._cum[frames + 1 :]

    def total(self) -> float:
        """Sum of the best token log-prob over all frames: the best path's score."""
        return self._cum[-1]

    def confidence(self, start: int, end: int) -> float:
        if end <= start:
            return 0.0
        return math.exp((self._cum[end] - self._cum[start]) / (end - start))


# --------------------------------------------------------------------------------------
# Greedy decoding
# --------------------------------------------------------------------------------------
class GreedyStream:
    """Best-path decoding: argmax per frame, collapse repeats, drop blanks.

    Every completed word is stable (greedy never revisits a frame).  Tokens are
    rendered with the same labels as the beam search (``<unk>`` -> ``⁇``).
    """

    def __init__(self, labels: tuple[str, ...]) -> None:
        self._labels = labels
        self.frames = 0
        self._best = _FrameBest()
        self._words: list[DecodedWord] = []
        self._part = ""
        self._part_start = -1
        self._part_end = -1
        self._last = -1  # previous frame's argmax token id (-1: none yet)
        self._final: Hypothesis | None = None

    def accept(self, log_probs: AnyArray) -> None:
        chunk = _accepted_chunk(self._final, log_probs, len(self._labels), self._best)  # as the beam search's
        for offset, token in enumerate(np.argmax(chunk, axis=1).tolist()):
            frame = self.frames + offset
            label = self._labels[token]
            if token == self._last and label != "":
                if self._part:
                    self._part_end = frame + 1
            elif label == " ":
                self._close_word()
            elif label != "":
                if not self._part:
                    self._part_start = frame
                self._part += label
                self._part_end = frame + 1
            self._last = token
        self.frames += chunk.shape[0]

    def _close_word(self) -> None:
        if self._part:
            conf = self._best.confidence(self._part_start, self._part_end)
            self._words.append(DecodedWord(self._part, self._part_start, self._part_end, conf))
        self._part = ""

    def peek(self, log_probs: AnyArray) -> Hypothesis:
        """The partial after these frames; the stream is left as it was."""
        if self._final is not None:
            return self._final
        saved = (len(self._words), self._part, self._part_start, self._part_end, self._last, self.frames)
        try:
            self.accept(log_probs)
            return self.partial()
        finally:
            n, self._part, self._part_start, self._part_end, self._last, self.frames = saved
            del self._words[n:]
            self._best.truncate(self.frames)

    def partial(self) -> Hypothesis:
        if self._final is not None:
            return self._final
        words = tuple(self._words)
        text = " ".join([w.text for w in words] + ([self._part] if self._part else []))
        return Hypothesis(text, len(words), words)

    def finalize(self) -> Hypothesis:
        if self._final is None:
            self._close_word()
            words = tuple(self._words)
            self._final = Hypothesis(" ".join(w.text for w in words), len(words), words)
        return self._final

    def alternatives(self, n: int) -> tuple[ScoredHypothesis, ...]:
        """Best-path decoding has one hypothesis; its score is the path's log-prob."""
        final = self.finalize()
        return (ScoredHypothesis(final.text, final.words, self._best.total()),)[:n]


class GreedyDecoder:
    """Factory of :class:`GreedyStream` for one vocabulary."""

    def __init__(self, vocab: Sequence[str], config: DecoderConfig | None = None) -> None:
        self.vocab = tuple(vocab)
        self.labels = build_labels(self.vocab)
        self.config = config or DecoderConfig(greedy=True)  # beam settings of grammar streams

    def new_stream(
        self, *, hotwords: Sequence[str] | None = None, use_lm: bool = True, grammar: Grammar | None = None
    ) -> GreedyStream | GrammarStream:
        """A new stream; ``hotwords``/``use_lm`` are accepted for the protocol and ignored.

        A grammar needs a search (best-path decoding cannot be constrained): it gets a
        :class:`GrammarStream` with ``config``'s beam settings.
        """
        if grammar is not None:
            return GrammarStream(self.labels, self.config, grammar)
        return GreedyStream(self.labels)


# --------------------------------------------------------------------------------------
# Beam search state
# --------------------------------------------------------------------------------------
class _Text:
    """An interned word sequence: ``parent`` words + ``word``.

    Interning (one node per distinct text among reachable nodes) makes text
    equality an identity test, so merge keys and history keys cost O(1) instead
    of O(len(text)).  The node also caches what pyctcdecode keeps in its
    ``(text, False)`` LM cache entry: raw LM score, KenLM state, LM+hotword score.
    """

    __slots__ = (
        "__weakref__",
        "depth",
        "hot",
        "hot_count",
        "jumps",
        "lm_hw",
        "parent",
        "raw_lm",
        "state",
        "tail",
        "uid",
        "word",
    )

    def __init__(
        self,
        parent: _Text | None,
        word: str,
        uid: int,
        hot_count: int,
        hot: float,
        raw_lm: float,
        state: Any,
        lm_hw: float,
        tail: tuple[str, ...],
    ) -> None:
        self.parent = parent
        self.word = word
        self.uid = uid
        self.depth: int = 0 if parent is None else parent.depth + 1
        # jumps[k] is the ancestor 2**k words up (binary lifting, for the stable prefix)
        jumps: list[_Text] = []
        if parent is not None:
            jumps.append(parent)
            while len(jumps) <= len(jumps[-1].jumps):
                jumps.append(jumps[-1].jumps[len(jumps) - 1])
        self.jumps: tuple[_Text, ...] = tuple(jumps)
        self.hot_count = hot_count  # whole words of the text that are hotwords
        self.hot = hot  # hotword score of the whole text: weight * (hotword count)
        self.raw_lm = raw_lm
        self.state = state
        self.lm_hw = lm_hw
        self.tail = tail  # last (order - 1) words: the history key of prune_history

    def words(self) -> list[str]:
        out: list[str] = []
        node: _Text | None = self
        while node is not None and node.depth > 0:
            out.append(node.word)
            node = node.parent
        out.reverse()
        return out


class _Span:
    """Persistent list of completed-word frame spans: O(1) append, shared between beams."""

    __slots__ = ("conf", "end", "parent", "start")

    def __init__(self, parent: _Span | None, start: int, end: int) -> None:
        self.parent = parent
        self.start = start
        self.end = end
        self.conf = -1.0  # filled on first output


# A live beam (internal hot-loop tuple; never leaves this module):
# (text node, partial word, last label or None, spans, part start, part end, logit score)
# A plain tuple on purpose: _step builds one per beam and candidate token every frame, and a
# NamedTuple costs 7x to build (240 ns against 32 ns, timeit, Python 3.11); the loops unpack
# it into named locals instead.
_Beam = tuple[_Text, str, "str | None", "_Span | None", int, int, float]


def _ancestor_at(node: _Text, depth: int) -> _Text:
    """The ancestor of ``node`` with ``depth`` words, in O(log) jumps."""
    distance, k = node.depth - depth, 0
    while distance:
        if distance & 1:
            node = node.jumps[k]
        distance >>= 1
        k += 1
    return node


def _common_ancestor(a: _Text, b: _Text) -> _Text:
    """Deepest common ancestor (longest common word prefix) of two texts, O(log words)."""
    if a.depth > b.depth:
        a = _ancestor_at(a, b.depth)
    elif b.depth > a.depth:
        b = _ancestor_at(b, a.depth)
    if a is b:
        return a
    for k in range(len(a.jumps) - 1, -1, -1):
        if k < len(a.jumps) and a.jumps[k] is not b.jumps[k]:
            a, b = a.jumps[k], b.jumps[k]
    return a.parent  # type: ignore[return-value]


@dataclass
class _OutputCache:
    """The last materialised word chain, so partial() only converts new words."""

    texts: list[_Text] = field(default_factory=list)
    spans: list[_Span] = field(default_factory=list)
    words: tuple[DecodedWord, ...] = ()


class HotwordSet:
    """Hotword unigrams, scored as pyctcdecode's ``HotwordScorer`` scores them, without its costs.

    pyctcdecode compiles one regex alternation over every unigram and a pure-Python
    trie, for every segment: ~4.6 s of CPU for 1000 phrases of 200 characters,
    holding the GIL, and re's pattern cache kept each distinct list.  Here a sorted
    tuple answers prefix queries with bisect, lengths come from a numpy array, and
    :func:`hotword_set` keeps a few recent sets (streams re-open one per segment).
    """

    def __init__(self, hotwords: tuple[str, ...], weight: float) -> None:
        unigrams = sorted({w for h in hotwords for w in h.split()})
        self.words = frozenset(unigrams)  # whole words: what the regex matched
        self._sorted = tuple(unigrams)
        self._lengths = np.array([len(w) for w in unigrams], dtype=np.int32)  # (unigrams,)
        self._weight = weight

    def __contains__(self, token: str) -> bool:
        """Whether ``token`` starts some hotword (or is one)."""
        i = bisect.bisect_left(self._sorted, token)
        return i < len(self._sorted) and self._sorted[i].startswith(token)

    def score_partial_token(self, token: str) -> float:
        """weight * len(token) / len(shortest hotword starting with token), 0 if none does.

        >>> HotwordSet(("brown fox", "bro"), 10.0).score_partial_token("br")
        6.666666666666667
        """
        lo = bisect.bisect_left(self._sorted, token)
        if lo == len(self._sorted) or not self._sorted[lo].startswith(token) or not token:
            return 0.0
        hi = bisect.bisect_left(self._sorted, token + "\U0010ffff", lo)  # past every word with the prefix
        return self._weight * len(token) / int(self._lengths[lo:hi].min())


@functools.lru_cache(maxsize=8)
def hotword_set(hotwords: tuple[str, ...], weight: float) -> HotwordSet:
    """The (shared, immutable) set for one list: a stream builds one per segment."""
    return HotwordSet(hotwords, weight)


class BeamSearchStream:
    """Incremental CTC beam search over one segment (see the module docstring)."""

    def __init__(
        self,
        labels: tuple[str, ...],
        config: DecoderConfig,
        lm: LanguageModel | None,
        hotwords: Sequence[str],
    ) -> None:
        self._labels = labels
        self._config = config
        self._scorer = None if lm is None else lm.oov_scorer(config.oov_word_logp, config.oov_char_logp)
        # partial word -> score, shared by every stream and segment of the engine
        self._shared_partial = None if lm is None or self._scorer is None else lm.partial_scores(self._scorer)
        self._hot = hotword_set(tuple(hotwords), config.hotword_weight)
        self._hot_weight = config.hotword_weight
        self._hot_words = self._hot.words
        order = 1 if lm is None else lm.order
        self._history = max(1, order - 1)
        self._uids = 0
        self._texts: weakref.WeakValueDictionary[tuple[int, str], _Text] = weakref.WeakValueDictionary()
        start_state = None if self._scorer is None else self._scorer.get_start_state()
        self._root = _Text(
            parent=None, word="", uid=0, hot_count=0, hot=0.0, raw_lm=0.0, state=start_state, lm_hw=0.0, tail=()
        )
        self._beams: list[_Beam] = [(self._root, "", None, None, -1, -1, 0.0)]
        self._partial_scores: dict[str, float] = {}
        self._old_partial_scores: dict[str, float] = {}
        self._best = _FrameBest()
        self._stable = self._root
        self._out = _OutputCache()
        self._final: Hypothesis | None = None
        self._ranked: list[tuple[float, _Text, _Span | None]] = []  # closed beams, best first (finalize)
        self._width = config.beam_width  # beams kept per frame (fewer while peeking)
        self.frames = 0

    # -- text nodes ----------------------------------------------------------------------
    def _child(self, parent: _Text, word: str) -> _Text:
        """The interned node for ``parent + word``, scoring it with the LM on creation."""
        key = (parent.uid, word)
        node = self._texts.get(key)
        if node is not None:
            return node
        hot_count = parent.hot_count + (word in self._hot_words)
        hot = self._hot_weight * hot_count  # == HotwordScorer.score(text): weight * matches
        if self._scorer is not None:
            score, state = self._scorer.score(parent.state, word, is_last_word=False)
            raw_lm = parent.raw_lm + score
            lm_hw = raw_lm + hot
        else:
            state, raw_lm, lm_hw = None, 0.0, 0.0
        tail = (parent.tail + (word,))[-self._history :]
        self._uids += 1
        node = _Text(
            parent=parent, word=word, uid=self._uids, hot_count=hot_count, hot=hot, raw_lm=raw_lm,
            state=state, lm_hw=lm_hw, tail=tail,
        )
        self._texts[key] = node
        return node

    def _partial_score(self, word_part: str) -> float:
        """Score of an unfinished word (pure in ``word_part``), via a two-generation cache.

        Misses in the current generation are looked up in the previous one; when the
        current one is full it becomes the previous one.  So memory stays bounded
        and entries no live beam used for a whole generation are dropped, while the
        prefixes of common words stay cached.
        """
        cached = self._partial_scores.get(word_part)
        if cached is None:
            cached = self._old_partial_scores.get(word_part)
        if cached is None:
            shared, scorer = self._shared_partial, self._scorer
            if shared is not None and scorer is not None and word_part not in self._hot:
                cached = shared.get(word_part)
                if cached is None:
                    cached = float(scorer.score_partial_token(word_part))
                    if len(shared) >= PARTIAL_SCORES_LIMIT:
                        shared.clear()
                    shared[word_part] = cached
            else:
                cached = float(self._hot.score_partial_token(word_part))
        if len(self._partial_scores) >= _PARTIAL_CACHE_LIMIT:
            self._old_partial_scores = self._partial_scores
            self._partial_scores = {}
        self._partial_scores[word_part] = cached
        return cached

    # -- decoding ------------------------------------------------------------------------
    def accept(self, log_probs: AnyArray) -> None:
        """Decode a chunk of frames ``(frames, vocab)``; each frame is decoded once."""
        chunk = _accepted_chunk(self._final, log_probs, len(self._labels), self._best)
        frames = _search_frames(chunk, self._config.token_min_logp)
        for offset, (row, candidates) in enumerate(frames):
            self._step(self.frames + offset, row, candidates)
        self.frames += len(frames)

    def _step(self, frame: int, row: list[float], candidates: set[int]) -> None:
        """Expand every beam by every candidate token, merge, score and prune (one frame)."""
        labels = self._labels
        beams = self._beams
        merged: list[_Beam] = []
        end = frame + 1
        for token in candidates:
            p = row[token]
            char = labels[token]
            # Every beam made here ends in ``char`` and labels are unique, so beams of
            # different candidates never merge: one small dict per candidate does it.
            index: dict[tuple[_Text, str], int] = {}
            for text, part, last, spans, ps, pe, score in beams:
                if char == "":
                    new: _Beam = (text, part, char, spans, ps, pe, score + p)
                elif last == char:
                    new = (text, part, char, spans, ps, end, score + p)
                elif char == " ":
                    if part:
                        new = (self._child(text, part), "", char, _Span(spans, ps, pe), -1, -1, score + p)
                    else:
                        new = (text, "", char, spans, -1, -1, score + p)
                elif ps < 0:
                    new = (text, part + char, char, spans, frame, end, score + p)
                else:
                    new = (text, part + char, char, spans, ps, end, score + p)
                key = (new[0], new[1])
                at = index.get(key)
                if at is None:
                    index[key] = len(merged)
                    merged.append(new)
                else:
                    # pyctcdecode keeps the first beam's place, the last beam's fields
                    merged[at] = new[:6] + (_log_add(merged[at][6], new[6]),)
        self._beams = self._prune(merged)

    def _prune(self, beams: list[_Beam]) -> list[_Beam]:
        """LM-score, drop outliers, keep the best beam_width (+ optional history pruning)."""
        scored: list[tuple[float, _Beam]] = []
        cache = self._partial_scores
        if self._scorer is not None:
            for beam in beams:
                lm_score = beam[0].lm_hw
                part = beam[1]
                if part:
                    partial = cache.get(part)
                    lm_score += self._partial_score(part) if partial is None else partial
                scored.append((beam[6] + lm_score, beam))
        else:
            for beam in beams:
                partial = cache.get(beam[1])
                if partial is None:
                    partial = self._partial_score(beam[1])
                scored.append((beam[6] + beam[0].hot + partial, beam))
        return [b for _, b in self._select(scored)]

    def _select(self, scored: list[tuple[float, Any]]) -> list[tuple[float, Any]]:
        config = self._config
        floor = max(map(itemgetter(0), scored)) + config.beam_prune_logp
        kept = heapq.nlargest(self._width, [x for x in scored if x[0] >= floor], key=itemgetter(0))
        if not config.prune_history:
            return kept
        seen: set[tuple[tuple[str, ...], str, str | None]] = set()
        unique = []
        for item in kept:
            beam = item[1]
            key = (beam[0].tail, beam[1], beam[2])
            if key not in seen:
                seen.add(key)
                unique.append(item)
        return unique

    # -- results -------------------------------------------------------------------------
    def _words(self, text: _Text, spans: _Span | None) -> tuple[DecodedWord, ...]:
        """DecodedWords of a beam, reusing the previous output's shared prefix."""
        out = self._out
        fresh: list[tuple[_Text, _Span]] = []
        node, span = text, spans
        while node.depth > 0:
            depth = node.depth
            if depth <= len(out.texts) and out.texts[depth - 1] is node and out.spans[depth - 1] is span:
                break
            assert span is not None
            fresh.append((node, span))
            node, span = node.parent, span.parent  # type: ignore[assignment]
        keep = node.depth
        fresh.reverse()
        new_words = []
        for t, s in fresh:
            if s.conf < 0:
                s.conf = self._best.confidence(s.start, s.end)
            new_words.append(DecodedWord(t.word, s.start, s.end, s.conf))
        words = out.words[:keep] + tuple(new_words)
        self._out = _OutputCache(
            out.texts[:keep] + [t for t, _ in fresh], out.spans[:keep] + [s for _, s in fresh], words
        )
        return words

    def stable_words(self) -> int:
        """Leading completed words shared by every live beam; never decreases.

        The deepest common ancestor of the live texts, by binary lifting: O(beams *
        log(words)), even when (no LM, no history pruning) beams keep disagreeing
        about a word far back and the unstable tail grows long.
        """
        common = self._beams[0][0]
        floor = self._stable.depth
        for beam in self._beams[1:]:
            if common.depth <= floor:
                break
            common = _common_ancestor(common, beam[0])
        if common.depth > floor:
            self._stable = common
        return self._stable.depth

    def partial(self) -> Hypothesis:
        """Best beam now (completed words + the word being spelled) and the stable prefix."""
        if self._final is not None:
            return self._final
        return self._best_beam(self.stable_words())

    def peek(self, log_probs: AnyArray) -> Hypothesis:
        """The partial after these frames, decoded with the best ``peek_beams`` beams
        only; the stream is left as it was, so the frames can be decoded for good later.

        For the engine's look-ahead frames: a partial can show words the look-ahead
        has heard before they are final.  The stable prefix is the stream's own
        (provisional beams all extend live beams, so it still cannot change).
        """
        if self._final is not None:
            return self._final
        stable = self.stable_words()
        saved = (self._beams, self.frames, self._width)
        self._width = min(self._width, max(1, self._config.peek_beams))
        self._beams = self._beams[: self._width]  # sorted best first by _select
        try:
            self.accept(log_probs)
            return self._best_beam(stable)
        finally:
            self._beams, self.frames, self._width = saved
            self._best.truncate(self.frames)

    def _best_beam(self, stable_words: int) -> Hypothesis:
        text, part, _, spans, _, _, _ = self._beams[0]
        words = self._words(text, spans)
        joined = " ".join([w.text for w in words] + ([part] if part else []))
        return Hypothesis(joined, stable_words, words)

    def finalize(self) -> Hypothesis:
        """End of segment: close partial words, add the LM end-of-sentence score, pick the best."""
        if self._final is not None:
            return self._final
        # (new text, pyctcdecode's (text, next_word) split, spans, logit score)
        closing: list[tuple[_Text, _Text, str, _Span | None, float]] = []
        index: dict[_Text, int] = {}
        for text, part, _, spans, ps, pe, score in self._beams:
            new_spans: _Span | None
            if part:
                new_text, new_spans = self._child(text, part), _Span(spans, ps, pe)
            else:
                new_text, new_spans = text, spans
            at = index.get(new_text)
            if at is None:
                index[new_text] = len(closing)
                closing.append((new_text, text, part, new_spans, score))
            else:
                closing[at] = (new_text, text, part, new_spans, _log_add(closing[at][4], score))
        scored: list[tuple[float, Any]] = []
        for item in closing:
            new_text, text, part, _, score = item
            if self._scorer is not None:
                eos, _ = self._scorer.score(text.state, part, is_last_word=True)
                lm_hw = (text.raw_lm + eos) + new_text.hot
                scored.append((score + lm_hw, item))
            else:
                scored.append((score + new_text.hot + self._partial_score(""), item))
        floor = max(map(itemgetter(0), scored)) + self._config.beam_prune_logp
        # max() keeps the first of equal scores, as pyctcdecode's stable nlargest does
        best = max((x for x in scored if x[0] >= floor), key=itemgetter(0))[1]
        words = self._words(best[0], best[3])
        self._final = Hypothesis(" ".join(w.text for w in words), len(words), words)
        # The n-best list is pyctcdecode's decode_beams() output: the same floor, the best
        # beam_width, distinct texts (merged above); nlargest is stable, so best comes first.
        ranked = heapq.nlargest(self._width, [x for x in scored if x[0] >= floor], key=itemgetter(0))
        self._ranked = [(score, item[0], item[3]) for score, item in ranked]
        return self._final

    def alternatives(self, n: int) -> tuple[ScoredHypothesis, ...]:
        """The ``n`` best closed beams of the segment (distinct texts), best first."""
        final = self.finalize()
        out = [ScoredHypothesis(final.text, final.words, self._ranked[0][0])]
        for score, text, spans in self._ranked[1:n]:
            words = self._words(text, spans)
            out.append(ScoredHypothesis(" ".join(w.text for w in words), words, score))
        return tuple(out[:n])


# --------------------------------------------------------------------------------------
# Grammar mode: beam search constrained to a phrase list
# --------------------------------------------------------------------------------------
# A live grammar beam (internal): (completed words, their frame spans, trie node (-1: spelling
# [unk]), partial word, last label or None, partial start, partial end, acoustic score, grammar score)
_GBeam = tuple[
    tuple[str, ...], tuple[tuple[int, int], ...], int, str, "str | None", int, int, float, float
]


class GrammarStream:
    """CTC beam search over one segment, restricted to a :class:`Grammar`'s words.

    vosk's grammar mode for a CTC model: a beam may only spell a prefix of a
    grammar word (the character trie) and end a word, at a word delimiter,
    where a grammar word ends; each completed word adds ``grammar_weight *
    logp(previous, word)`` of the phrase list's bigram, the segment's end adds
    ``logp(last, </s>)``.  With ``[unk]`` in the grammar a beam that leaves the
    trie spells on as ``[unk]`` for ``grammar_unk_logp``; without it the beam
    is dropped.  A grammar word may also end where the next one starts without a
    delimiter (weak models often skip it between short words).  No n-gram LM,
    no hotwords: the grammar replaces both, as in vosk.  Blank and delimiter are
    always expanded, so some beam always survives.
    """

    def __init__(self, labels: tuple[str, ...], config: DecoderConfig, grammar: Grammar) -> None:
        self._labels = labels
        self._config = config
        self._grammar = grammar
        self._blank, self._space = labels.index(""), labels.index(" ")
        self._token = {label: i for i, label in enumerate(labels)}
        # node -> ((token id, letter, child node), ...): the letters that continue a grammar word
        self._moves = tuple(
            tuple((self._token[c], c, child) for c, child in kids.items() if c in self._token)
            for kids in grammar.children
        )
        self._beams: list[_GBeam] = [((), (), 0, "", None, -1, -1, 0.0, 0.0)]
        self._best = _FrameBest()
        self._stable = 0
        self._final: Hypothesis | None = None
        self._ranked: list[tuple[float, tuple[str, ...], tuple[tuple[int, int], ...]]] = []
        self._width = config.beam_width
        self.frames = 0

    def accept(self, log_probs: AnyArray) -> None:
        chunk = _accepted_chunk(self._final, log_probs, len(self._labels), self._best)
        frames = _search_frames(chunk, self._config.token_min_logp)
        for offset, (row, likely) in enumerate(frames):
            self._step(self.frames + offset, row, likely)
        self.frames += len(frames)

    def _close(self, node: int, part: str) -> tuple[str, float] | None:
        """The word a partial at trie ``node`` ends as, and its extra cost; None: it cannot end."""
        word = self._grammar.word_at[node] if node > 0 else None
        if word is not None:
            return word, 0.0
        if node < 0:  # spelled as [unk]: paid letter by letter already
            return UNK, 0.0
        if self._grammar.unk:  # an unfinished grammar word ends as [unk], at [unk]'s price
            config = self._config
            return UNK, config.grammar_unk_logp + config.grammar_unk_char_logp * len(part)
        return None

    def _word_score(self, words: tuple[str, ...], word: str) -> float:
        config = self._config
        bonus = config.grammar_word_bonus if word != EOS else 0.0
        return config.grammar_weight * self._grammar.logp(words[-1] if words else BOS, word) + bonus

    def _step(self, frame: int, row: list[float], likely: set[int]) -> None:
        """Expand every beam by the tokens the grammar allows it, merge, prune (one frame).

        Unlike the open-vocabulary search, a grammar word's next letter is expanded
        even when the model finds it unlikely (below token_min_logp): the grammar has
        few continuations, and forcing speech onto them is the point.  Free spelling
        ([unk]) only expands the likely tokens.
        """
        labels, grammar, config = self._labels, self._grammar, self._config
        moves, root = self._moves, self._moves[0]
        blank, space = self._blank, self._space
        unk_char = config.grammar_unk_char_logp
        free = [(t, labels[t]) for t in likely if t != blank and t != space] if grammar.unk else []
        end = frame + 1
        merged: dict[tuple[tuple[str, ...], str, bool], _GBeam] = {}

        def add(new: _GBeam) -> None:
            key = (new[0], new[3], new[2] < 0)
            old = merged.get(key)
            if old is None:
                merged[key] = new
            else:
                best = new if new[7] > old[7] else old
                merged[key] = best[:7] + (_log_add(old[7], new[7]), best[8])

        p_blank, p_space = row[blank], row[space]
        for words, spans, node, part, last, ps, pe, ac, gs in self._beams:
            add((words, spans, node, part, "", ps, pe, ac + p_blank, gs))
            if last == " ":
                add((words, spans, node, part, " ", ps, pe, ac + p_space, gs))
            elif not part:
                add((words, spans, 0, "", " ", -1, -1, ac + p_space, gs))
            else:
                closed = self._close(node, part)
                if closed is not None:
                    word, cost = closed
                    add((words + (word,), spans + ((ps, pe),), 0, "", " ", -1, -1, ac + p_space,
                         gs + cost + self._word_score(words, word)))
            if last and last != " ":  # the same letter again: CTC collapses it
                add((words, spans, node, part, last, ps, end, ac + row[self._token[last]], gs))
            spelled: set[str] = set()
            if node >= 0:
                for token, char, child in moves[node]:
                    if char != last:
                        spelled.add(char)
                        start = ps if part else frame
                        add((words, spans, child, part + char, char, start, end, ac + row[token], gs))
                ended = grammar.word_at[node] if node > 0 else None
                if ended is not None:  # the next grammar word starts without a delimiter
                    after = gs + self._word_score(words, ended)
                    for token, char, child in root:
                        if char != last and char not in spelled:
                            spelled.add(char)
                            add((words + (ended,), spans + ((ps, pe),), child, char, char, frame, end,
                                 ac + row[token], after))
            for token, char in free:  # spelling on outside the grammar: [unk]
                if char != last and char not in spelled:
                    cost = unk_char if node < 0 else unk_char + config.grammar_unk_logp
                    start = ps if part else frame
                    add((words, spans, -1, part + char, char, start, end, ac + row[token], gs + cost))
        scored = [(b[7] + b[8], b) for b in merged.values()]
        floor = max(map(itemgetter(0), scored)) + config.beam_prune_logp
        kept = heapq.nlargest(self._width, [x for x in scored if x[0] >= floor], key=itemgetter(0))
        self._beams = [b for _, b in kept]

    def stable_words(self) -> int:
        """Leading completed words shared by every live beam; never decreases."""
        first = self._beams[0][0]
        common = len(first)
        for beam in self._beams[1:]:
            words = beam[0]
            n = min(common, len(words))
            i = 0
            while i < n and words[i] == first[i]:
                i += 1
            common = i
            if common <= self._stable:
                break
        self._stable = max(self._stable, common)
        return self._stable

    def _hypothesis(self, words: tuple[str, ...], spans: tuple[tuple[int, int], ...], part: str = "") -> Hypothesis:
        decoded = tuple(DecodedWord(w, s, e, self._best.confidence(s, e)) for w, (s, e) in zip(words, spans))
        return Hypothesis(" ".join([*words, part] if part else words), self.stable_words(), decoded)

    def partial(self) -> Hypothesis:
        """Best beam now; its word being spelled shows only once it is a whole grammar word
        (or as [unk]), so a partial, like vosk's, holds grammar words only."""
        if self._final is not None:
            return self._final
        words, spans, node, part, *_ = self._beams[0]
        shown = UNK if node < 0 and part else (self._grammar.word_at[node] or "")
        return self._hypothesis(words, spans, shown)

    def peek(self, log_probs: AnyArray) -> Hypothesis:
        """The partial after these frames, with the best ``peek_beams`` beams; the stream is left as it was."""
        if self._final is not None:
            return self._final
        stable = self.stable_words()
        saved = (self._beams, self.frames, self._width, self._stable)
        self._width = min(self._width, max(1, self._config.peek_beams))
        self._beams = self._beams[: self._width]
        try:
            self.accept(log_probs)
            hyp = self.partial()
            return Hypothesis(hyp.text, stable, hyp.words)
        finally:
            self._beams, self.frames, self._width, self._stable = saved
            self._best.truncate(self.frames)

    def finalize(self) -> Hypothesis:
        """End of segment: close partial words where the grammar allows, add ``</s>``, pick the best."""
        if self._final is not None:
            return self._final
        closing: dict[tuple[str, ...], tuple[float, float, tuple[tuple[int, int], ...]]] = {}
        for words, spans, node, part, _, ps, pe, ac, gs in self._beams:
            if part:
                closed = self._close(node, part)
                if closed is None:
                    continue  # halfway through a grammar word: not a sentence of the grammar
                word, cost = closed
                gs += cost + self._word_score(words, word)
                words, spans = words + (word,), spans + ((ps, pe),)
            gs += self._word_score(words, EOS)
            old = closing.get(words)
            if old is None:
                closing[words] = (ac, gs, spans)
            else:
                closing[words] = (_log_add(old[0], ac), gs, spans if ac > old[0] else old[2])
        if not closing:  # every beam is inside a word: keep the best beam's completed words
            words, spans, *_ = self._beams[0]
            closing[words] = (self._beams[0][7], self._beams[0][8], spans)
        scored = [(ac + gs, words, spans) for words, (ac, gs, spans) in closing.items()]
        floor = max(map(itemgetter(0), scored)) + self._config.beam_prune_logp
        self._ranked = heapq.nlargest(self._width, [x for x in scored if x[0] >= floor], key=itemgetter(0))
        _, words, spans = self._ranked[0]
        self._stable = len(words)
        self._final = self._hypothesis(words, spans)
        return self._final

    def alternatives(self, n: int) -> tuple[ScoredHypothesis, ...]:
        """The ``n`` best grammar sentences of the segment (distinct texts), best first."""
        final = self.finalize()
        out = [ScoredHypothesis(final.text, final.words, self._ranked[0][0])]
        for score, words, spans in self._ranked[1:n]:
            hyp = self._hypothesis(words, spans)
            out.append(ScoredHypothesis(hyp.text, hyp.words, score))
        return tuple(out[:n])


class BeamSearchDecoder:
    """CTC beam search with an optional n-gram LM and hotwords; one per engine.

    ``lm`` is shared by every stream (KenLM is read-only); alpha/beta overrides
    in ``config`` make a cheap copy of it with other weights.
    """

    def __init__(
        self,
        vocab: Sequence[str],
        *,
        lm: LanguageModel | None = None,
        config: DecoderConfig = DecoderConfig(),
    ) -> None:
        self.vocab = tuple(vocab)
        self.labels = build_labels(self.vocab)
        self.config = config
        if lm is not None:
            lm.check_vocab(self.vocab)
            lm = lm.with_params(alpha=config.alpha, beta=config.beta)
        self.lm = lm

    def new_stream(
        self, *, hotwords: Sequence[str] | None = None, use_lm: bool = True, grammar: Grammar | None = None
    ) -> BeamSearchStream | GrammarStream:
        """A stream for one segment; ``hotwords`` replaces ``config.hotwords`` if given.

        With ``grammar`` (a compiled vosk phrase list) the stream is a
        :class:`GrammarStream`: restricted to its words, no LM, no hotwords.
        """
        if grammar is not None:
            return GrammarStream(self.labels, self.config, grammar)
        if isinstance(hotwords, str):
            raise ValueError(f"hotwords must be a sequence of words, got the str {hotwords!r}")
        words = self.config.hotwords if hotwords is None else tuple(hotwords)
        return BeamSearchStream(self.labels, self.config, self.lm if use_lm else None, words)


def build_decoder(vocab: Sequence[str], *, lm: LanguageModel | None, config: DecoderConfig) -> Decoder:
    """The decoder for ``config``: greedy (ignores ``lm``) or beam search."""
    if config.greedy:
        return GreedyDecoder(vocab, config)
    if config.decoder == "flashlight":
        from .flashlight_decoder import FlashlightDecoder  # imports this module

        return FlashlightDecoder(vocab, lm=lm, config=config)
    return BeamSearchDecoder(vocab, lm=lm, config=config)
