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
from pyctcdecode.language_model import HotwordScorer

from .errors import StreamStateError, VocabularyError
from .language_model import LanguageModel, build_labels

__all__ = [
    "BeamSearchDecoder",
    "BeamSearchStream",
    "DecodedWord",
    "Decoder",
    "DecoderConfig",
    "DecoderStream",
    "GreedyDecoder",
    "GreedyStream",
    "Hypothesis",
    "build_decoder",
]

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
class DecoderConfig:
    """Beam search settings; defaults are pyctcdecode's, so offline HF decoding agrees."""

    # Beams kept per frame; pyctcdecode / Wav2Vec2ProcessorWithLM default. Fewer is faster,
    # but peaked wav2vec2 outputs rarely keep more than a few dozen beams after pruning.
    # The small shipped model is less peaked: at step 14501, 50 cost it 1.7 WER points, 200 gained 1.2
    # for a third more compute per stream (README, command line options).
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

    def __post_init__(self) -> None:
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


# --------------------------------------------------------------------------------------
# Protocols (the contract in docs/ARCHITECTURE.md)
# --------------------------------------------------------------------------------------
class DecoderStream(Protocol):
    """One segment of one stream."""

    frames: int  # frames accepted so far

    def accept(self, log_probs: np.ndarray) -> None: ...  # (frames, vocab) float log-probs

    def partial(self) -> Hypothesis: ...

    # The partial these frames would give, leaving the stream as it was (look-ahead).
    def peek(self, log_probs: np.ndarray) -> Hypothesis: ...

    def finalize(self) -> Hypothesis: ...


class Decoder(Protocol):
    """Shared by all streams of an engine; holds the LM."""

    def new_stream(self, *, hotwords: Sequence[str] | None = None, use_lm: bool = True) -> DecoderStream: ...


# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------
def _check_log_probs(log_probs: Any, vocab_size: int) -> np.ndarray:
    """Validate shape; returns a C-contiguous float array ``(frames, vocab)``."""
    arr = np.asarray(log_probs)
    if arr.ndim != 2:
        raise VocabularyError(f"log_probs must be 2-D (frames, vocab), got shape {tuple(arr.shape)}")
    if arr.shape[1] != vocab_size:
        raise VocabularyError(f"logits have {arr.shape[1]} columns, vocabulary has {vocab_size}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise VocabularyError(f"log_probs must be floating point, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr)


def _renormalize(log_probs: np.ndarray) -> np.ndarray:
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
    return np.clip(shifted - log_norm, np.log(MIN_TOKEN_CLIP_P), 0)  # (frames, vocab)


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) with the exact float operations pyctcdecode uses for merging."""
    if a >= b:
        return a + math.log(1 + math.exp(b - a))
    return b + math.log(1 + math.exp(a - b))


class _FrameBest:
    """Prefix sums of the best token log-prob per frame, for O(1) word confidence.

    8 bytes a frame (a double in an ``array``): 1.4 MB for an hour-long segment.
    """

    def __init__(self) -> None:
        self._cum = array("d", [0.0])

    def extend(self, log_probs: np.ndarray) -> None:
        best = log_probs.max(axis=1).astype(np.float64)  # (frames,)
        self._cum.extend((np.cumsum(best) + self._cum[-1]).tolist())

    def truncate(self, frames: int) -> None:
        del self._cum[frames + 1 :]

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

    def accept(self, log_probs: np.ndarray) -> None:
        if self._final is not None:
            raise StreamStateError("accept() after finalize(): start a new stream")
        chunk = _check_log_probs(log_probs, len(self._labels))
        if chunk.shape[0] == 0:
            return
        chunk = _renormalize(chunk)  # same confidences as the beam search
        self._best.extend(chunk)
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

    def peek(self, log_probs: np.ndarray) -> Hypothesis:
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


class GreedyDecoder:
    """Factory of :class:`GreedyStream` for one vocabulary."""

    def __init__(self, vocab: Sequence[str]) -> None:
        self.vocab = tuple(vocab)
        self.labels = build_labels(self.vocab)

    def new_stream(self, *, hotwords: Sequence[str] | None = None, use_lm: bool = True) -> GreedyStream:
        """A new stream; ``hotwords``/``use_lm`` are accepted for the protocol and ignored."""
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
        self._scorer = None if lm is None else lm.scorer
        self._hot = HotwordScorer.build_scorer(list(hotwords), weight=config.hotword_weight)
        self._hot_weight = config.hotword_weight
        # the same unigram split HotwordScorer's regex matches on (whole words)
        self._hot_words = frozenset(w for h in hotwords for w in h.split())
        order = 1 if lm is None else lm.order
        self._history = max(1, order - 1)
        self._uids = 0
        self._texts: weakref.WeakValueDictionary[tuple[int, str], _Text] = weakref.WeakValueDictionary()
        start_state = None if self._scorer is None else self._scorer.get_start_state()
        self._root = _Text(None, "", 0, 0, 0.0, 0.0, start_state, 0.0, ())
        self._beams: list[_Beam] = [(self._root, "", None, None, -1, -1, 0.0)]
        self._partial_scores: dict[str, float] = {}
        self._old_partial_scores: dict[str, float] = {}
        self._best = _FrameBest()
        self._stable = self._root
        self._out = _OutputCache()
        self._final: Hypothesis | None = None
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
        node = _Text(parent, word, self._uids, hot_count, hot, raw_lm, state, lm_hw, tail)
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
            if self._scorer is not None and word_part not in self._hot:
                cached = float(self._scorer.score_partial_token(word_part))
            else:
                cached = float(self._hot.score_partial_token(word_part))
        if len(self._partial_scores) >= _PARTIAL_CACHE_LIMIT:
            self._old_partial_scores = self._partial_scores
            self._partial_scores = {}
        self._partial_scores[word_part] = cached
        return cached

    # -- decoding ------------------------------------------------------------------------
    def accept(self, log_probs: np.ndarray) -> None:
        """Decode a chunk of frames ``(frames, vocab)``; each frame is decoded once."""
        if self._final is not None:
            raise StreamStateError("accept() after finalize(): start a new stream")
        chunk = _check_log_probs(log_probs, len(self._labels))
        if chunk.shape[0] == 0:
            return
        chunk = _renormalize(chunk)  # (frames, vocab)
        self._best.extend(chunk)
        token_min_logp = self._config.token_min_logp
        for offset in range(chunk.shape[0]):
            column = chunk[offset]  # (vocab,)
            # the exact candidate order pyctcdecode iterates: a set built this way
            candidates = set(np.where(column >= token_min_logp)[0].tolist()) | {int(column.argmax())}
            self._step(self.frames + offset, column.tolist(), candidates)
        self.frames += chunk.shape[0]

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
                    merged[at] = new[:6] + (_log_add(merged[at][6], new[6]),)  # type: ignore[assignment]
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

    def peek(self, log_probs: np.ndarray) -> Hypothesis:
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
        return self._final


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

    def new_stream(self, *, hotwords: Sequence[str] | None = None, use_lm: bool = True) -> BeamSearchStream:
        """A stream for one segment; ``hotwords`` replaces ``config.hotwords`` if given."""
        if isinstance(hotwords, str):
            raise ValueError(f"hotwords must be a sequence of words, got the str {hotwords!r}")
        words = self.config.hotwords if hotwords is None else tuple(hotwords)
        return BeamSearchStream(self.labels, self.config, self.lm if use_lm else None, words)


def build_decoder(vocab: Sequence[str], *, lm: LanguageModel | None, config: DecoderConfig) -> Decoder:
    """The decoder for ``config``: greedy (ignores ``lm``) or beam search."""
    if config.greedy:
        return GreedyDecoder(vocab)
    return BeamSearchDecoder(vocab, lm=lm, config=config)
