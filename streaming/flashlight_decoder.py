"""Incremental CTC beam search in C++ (flashlight-text), behind the same protocol as decoder.py.

Why: the Python beam search in ``decoder.py`` (bit-identical to pyctcdecode) is
most of a stream's CPU time.  flashlight-text's decoders (the ones torchaudio's
``ctc_decoder`` wraps) run the same kind of search in C++ and can be fed frame
by frame (``decode_begin`` / ``decode_step`` / ``decode_end``).

Which flashlight decoder:

* with a word n-gram LM, the **lexicon-constrained** ``LexiconDecoder``: its
  lexicon-free sibling scores the LM per *token*, so it needs a character LM.
  The lexicon is the LM's unigram list, each word spelled in the model's
  labels and closed by the word delimiter (``"the" -> t h e |``), in a trie
  smeared with each word's unigram score (look-ahead).  Words outside the
  unigram list cannot be produced; pyctcdecode instead lets them through at
  ``unk_score_offset``.
* without an LM, ``LexiconFreeDecoder`` with a zero LM (any spelling).

Scores: KenLM returns log10 probabilities; pyctcdecode scales them by
``alpha / log10(e)`` and adds ``beta`` per word, so ``lm_weight = alpha *
ln(10)`` and ``word_score = beta`` put both decoders on the same scale.
``token_min_logp`` is applied as in pyctcdecode (tokens below it at a frame,
the argmax excepted, are not expanded), by flooring them before the C++ call.

Streaming: the C++ state keeps every live beam between ``accept()`` calls, so
each frame is decoded once.  To bound memory and the per-partial cost, every
``PRUNE_EVERY`` frames the stream commits the best path up to the last
complete word at least ``LOOK_BACK`` frames back and drops the history before
it (``prune``); prune points depend on frame counts only, so any chunking of
the same frames gives the same result.  A segment shorter than ``PRUNE_EVERY``
frames decodes exactly as flashlight's one-shot ``decode()``.

Partials and peeks: the best beam's token path.  ``peek()`` (the engine's
look-ahead frames) appends the best-path (argmax) tokens of those frames to
it, since the C++ state cannot be copied or rolled back; finals never see that
tail.  Stable prefix: completed words inside the committed path or the token
prefix shared by every live beam.

Grammar mode (vosk's phrase_list) runs the Python grammar search of
``decoder.py`` (:class:`~streaming.decoder.GrammarStream`), as with the other
decoders.

Not supported (a clear error): hotwords (flashlight has no per-word bonus
without a Python LM callback per word, which would undo the speed-up).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .arrays import AnyArray, FloatArray
from .decoder import (
    DecodedWord,
    DecoderConfig,
    GrammarStream,
    Hypothesis,
    ScoredHypothesis,
    _accepted_chunk,
    _check_log_probs,
    _FrameBest,
    _renormalize,
)
from .errors import LanguageModelError
from .grammar import Grammar
from .language_model import LanguageModel, build_labels

__all__ = ["LOOK_BACK", "PRUNE_EVERY", "FlashlightDecoder", "FlashlightStream"]

# Frames between prunes (10 s): long enough that a typical segment never prunes
# (and decodes exactly as one-shot), short enough to bound the C++ history.
PRUNE_EVERY = 500
# Frames (2 s) of history every live beam keeps after a prune: a word is only
# committed once the search has had that long to change its mind.
LOOK_BACK = 100
# Emission given to tokens below token_min_logp: far below any beam threshold.
_FLOOR = -1.0e4
_LN10 = math.log(10.0)


def _flashlight() -> Any:
    try:
        from flashlight.lib.text import decoder as fl_decoder
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ImportError(
            "decoder='flashlight' needs the flashlight-text package (pip install flashlight-text==0.0.7)"
        ) from exc
    return fl_decoder


class FlashlightDecoder:
    """Shared by every stream of an engine: the KenLM model, word list and trie."""

    def __init__(
        self,
        vocab: Sequence[str],
        *,
        lm: LanguageModel | None = None,
        config: DecoderConfig | None = None,
    ) -> None:
        config = config or DecoderConfig()
        if config.hotwords:
            raise ValueError(
                f"hotwords are not supported with decoder='flashlight', got {list(config.hotwords)!r}; "
                "use decoder='pyctcdecode' for hotwords"
            )
        fl = _flashlight()
        self.vocab = tuple(vocab)
        self.labels = build_labels(self.vocab)
        self.config = config
        self._fl = fl
        self.blank = self.labels.index("")
        self.sil = self.labels.index(" ")
        self._lexicon: Any = None  # (trie, kenlm, unk word index) with an LM
        self.lm = None
        if lm is not None:
            lm.check_vocab(self.vocab)
            self.lm = lm.with_params(alpha=config.alpha, beta=config.beta)
            self._lexicon = self._build_lexicon(self.lm)
        self._options_free = fl.LexiconFreeDecoderOptions(
            beam_size=config.beam_width,
            beam_size_token=len(self.vocab),
            beam_threshold=-config.beam_prune_logp,
            lm_weight=0.0,
            sil_score=0.0,
            log_add=True,
            criterion_type=fl.CriterionType.CTC,
        )
        self._zero_lm = fl.ZeroLM()

    def _build_lexicon(self, lm: LanguageModel) -> tuple[Any, Any, int, Any]:
        """Trie of the LM's unigrams spelled in our labels, smeared with unigram scores."""
        fl = self._fl
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary

        index = {label: i for i, label in enumerate(self.labels) if len(label) == 1 and label != " "}
        words = sorted(w for w in lm.unigrams if w and all(c in index for c in w))
        if not words:
            raise LanguageModelError(
                f"none of the {len(lm.unigrams)} unigrams of {lm.kenlm_path.name} can be spelled with "
                f"the model's labels {self.labels!r}"
            )
        word_dict = Dictionary()
        for w in words:
            word_dict.add_entry(w)
        word_dict.add_entry("<unk>")
        try:
            kenlm = KenLM(str(lm.kenlm_path), word_dict)
        except Exception as exc:  # flashlight raises RuntimeError with KenLM's message
            raise LanguageModelError(f"flashlight could not load {lm.kenlm_path}: {exc}") from exc
        trie = fl.Trie(len(self.labels), self.sil)
        start = kenlm.start(False)
        for i, w in enumerate(words):
            _, score = kenlm.score(start, i)
            trie.insert([index[c] for c in w] + [self.sil], i, score)
        trie.smear(fl.SmearingMode.MAX)
        options = fl.LexiconDecoderOptions(
            beam_size=self.config.beam_width,
            beam_size_token=len(self.vocab),
            beam_threshold=-self.config.beam_prune_logp,
            lm_weight=lm.alpha * _LN10,
            word_score=lm.beta,
            unk_score=-math.inf,
            sil_score=0.0,
            log_add=True,
            criterion_type=fl.CriterionType.CTC,
        )
        return trie, kenlm, word_dict.get_index("<unk>"), options

    def new_stream(
        self, *, hotwords: Sequence[str] | None = None, use_lm: bool = True, grammar: Grammar | None = None
    ) -> FlashlightStream | GrammarStream:
        """A stream for one segment; hotwords are refused (see the module docstring).
        With ``grammar`` the Python grammar search (no LM, no hotwords)."""
        if grammar is not None:
            return GrammarStream(self.labels, self.config, grammar)
        if isinstance(hotwords, str):
            raise ValueError(f"hotwords must be a sequence of words, got the str {hotwords!r}")
        if hotwords:
            raise ValueError(
                f"hotwords are not supported with decoder='flashlight', got {list(hotwords)!r}; "
                "use decoder='pyctcdecode' for hotwords"
            )
        fl = self._fl
        if use_lm and self._lexicon is not None:
            trie, kenlm, unk, options = self._lexicon
            native = fl.LexiconDecoder(options, trie, kenlm, self.sil, self.blank, unk, [], False)
            lexicon = True
        else:
            native = fl.LexiconFreeDecoder(self._options_free, self._zero_lm, self.sil, self.blank, [])
            lexicon = False
        return FlashlightStream(self.labels, self.config, native, sil=self.sil, blank=self.blank, lexicon=lexicon)


class FlashlightStream:
    """One segment decoded by a flashlight decoder (see the module docstring)."""

    def __init__(
        self,
        labels: tuple[str, ...],
        config: DecoderConfig,
        native: Any,
        *,
        sil: int,
        blank: int,
        lexicon: bool,
    ) -> None:
        self._labels = labels
        self._config = config
        self._native = native
        self._sil = sil
        self._blank = blank
        self._lexicon = lexicon
        self._best = _FrameBest()
        self._committed: list[int] = []  # best-path tokens of frames [0, pruned)
        self._pruned = 0
        self._stable = 0
        self._final: Hypothesis | None = None
        self._ranked: list[tuple[float, tuple[DecodedWord, ...]]] = []  # final beams, distinct texts
        self.frames = 0
        native.decode_begin()

    # -- decoding ------------------------------------------------------------------------
    def accept(self, log_probs: AnyArray) -> None:
        """Decode a chunk ``(frames, vocab)`` of log-probs; each frame is decoded once."""
        chunk = _accepted_chunk(self._final, log_probs, len(self._labels), self._best)  # as the Python decoder's
        if chunk.shape[0] == 0:
            return
        emissions = self._emissions(chunk)
        pos = 0
        while pos < len(emissions):
            # cut at multiples of PRUNE_EVERY so prunes do not depend on the chunking
            n = min(len(emissions) - pos, PRUNE_EVERY - self.frames % PRUNE_EVERY)
            self._step(emissions[pos : pos + n])
            pos += n
            if self.frames % PRUNE_EVERY == 0:
                self._prune()

    def _emissions(self, chunk: AnyArray) -> FloatArray:
        """float32 C-contiguous ``(frames, vocab)`` with tokens below token_min_logp floored."""
        out = np.array(chunk, dtype=np.float32, order="C")  # (frames, vocab)
        keep = out >= self._config.token_min_logp
        keep[np.arange(out.shape[0]), out.argmax(axis=1)] = True
        out[~keep] = _FLOOR
        return out

    def _step(self, emissions: FloatArray) -> None:
        frames, vocab = emissions.shape
        self._native.decode_step(emissions.ctypes.data, frames, vocab)
        self.frames += frames

    def _prune(self) -> None:
        best = self._native.get_best_hypothesis(LOOK_BACK)
        cut = list(best.tokens)[1:]  # tokens of frames [pruned, pruned + len)
        if not cut:
            return
        self._committed.extend(cut)
        self._pruned += len(cut)
        self._native.prune(LOOK_BACK)

    # -- results -------------------------------------------------------------------------
    def _path(self) -> list[int]:
        """Best-path tokens of frames [0, frames)."""
        best = self._native.get_best_hypothesis(0)
        return self._committed + list(best.tokens)[1 : 1 + self.frames - self._pruned]

    def _words(self, path: Sequence[int], *, close: bool) -> tuple[list[DecodedWord], str]:
        """Completed words of a token path (CTC collapse) and the word still being spelled."""
        words: list[DecodedWord] = []
        part: list[str] = []
        start = end = -1
        previous = -1
        for frame, token in enumerate(path):
            if token == previous and token != self._blank:
                if part:
                    end = frame + 1
            elif token == self._sil:
                if part:
                    words.append(self._word(part, start, end))
                    part = []
            elif token != self._blank and token >= 0:
                if not part:
                    start = frame
                part.append(self._labels[token])
                end = frame + 1
            previous = token
        if close and part:
            words.append(self._word(part, start, end))
            part = []
        return words, "".join(part)

    def _word(self, part: list[str], start: int, end: int) -> DecodedWord:
        return DecodedWord("".join(part), start, end, self._best.confidence(start, end))

    def _stable_words(self, words: list[DecodedWord]) -> int:
        """Completed words that end before the first frame where live beams disagree; never decreases."""
        hyps = self._native.get_all_final_hypothesis()
        if hyps:
            paths = np.array([h.tokens for h in hyps])  # (beams, buffered frames + 1)
            differs = np.flatnonzero((paths != paths[0]).any(axis=0))
            shared = (len(paths[0]) if differs.size == 0 else int(differs[0])) - 1
            agreed = self._pruned + max(0, shared)
        else:
            agreed = self._pruned
        # a word is settled once a delimiter after it is agreed on too
        stable = sum(1 for w in words if w.end_frame < agreed)
        self._stable = max(self._stable, min(stable, len(words)))
        return self._stable

    def _hypothesis(self, path: Sequence[int], stable: int) -> Hypothesis:
        words, part = self._words(path, close=False)
        text = " ".join([w.text for w in words] + ([part] if part else []))
        return Hypothesis(text, min(stable, len(words)), tuple(words))

    def partial(self) -> Hypothesis:
        if self._final is not None:
            return self._final
        path = self._path()
        words, _ = self._words(path, close=False)
        return self._hypothesis(path, self._stable_words(words))

    def peek(self, log_probs: AnyArray) -> Hypothesis:
        """The partial with the best-path tokens of these (look-ahead) frames appended;
        the stream is left as it was."""
        if self._final is not None:
            return self._final
        chunk = _check_log_probs(log_probs, len(self._labels))
        path = self._path()
        words, _ = self._words(path, close=False)
        stable = self._stable_words(words)
        if chunk.shape[0] == 0:
            return self._hypothesis(path, stable)
        self._best.extend(_renormalize(chunk))  # confidences of the provisional words
        try:
            return self._hypothesis(path + np.argmax(chunk, axis=1).tolist(), stable)
        finally:
            self._best.truncate(self.frames)

    def finalize(self) -> Hypothesis:
        """End of segment: close the last word, add the LM end-of-sentence score, pick the best."""
        if self._final is not None:
            return self._final
        if self._lexicon and self.frames:
            # A lexicon word ends on its delimiter; wav2vec2 rarely emits one after the
            # last word, so feed one delimiter frame (not counted) to close it.
            closing = np.full((1, len(self._labels)), _FLOOR, dtype=np.float32)  # (1, vocab)
            closing[0, self._sil] = 0.0
            closing[0, self._blank] = 0.0
            self._native.decode_step(closing.ctypes.data, 1, len(self._labels))
        self._native.decode_end()
        seen: set[str] = set()
        for hyp in sorted(self._native.get_all_final_hypothesis(), key=lambda h: -h.score):
            path = self._committed + list(hyp.tokens)[1 : 1 + self.frames - self._pruned]
            words, _ = self._words(path, close=True)
            text = " ".join(w.text for w in words)
            if text not in seen:
                seen.add(text)
                self._ranked.append((float(hyp.score), tuple(words)))
        if not self._ranked:  # no frames: the empty hypothesis
            words, _ = self._words(self._committed, close=True)
            self._ranked.append((0.0, tuple(words)))
        best = self._ranked[0][1]
        self._final = Hypothesis(" ".join(w.text for w in best), len(best), best)
        return self._final

    def alternatives(self, n: int) -> tuple[ScoredHypothesis, ...]:
        """The ``n`` best final beams of the segment (distinct texts), best first."""
        self.finalize()
        return tuple(
            ScoredHypothesis(" ".join(w.text for w in words), words, score) for score, words in self._ranked[:n]
        )
