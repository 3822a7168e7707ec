"""A phrase list compiled for grammar decoding: what vosk's ``phrase_list`` means.

vosk (``Recognizer::UpdateGrammarFst``) turns a phrase list into a bigram
language model estimated from the phrases (discount 0.5) and decodes with it
instead of the big LM, so recognition is restricted to the listed words, in
any order, and the phrases' own word orders are preferred.  ``[unk]`` in the
list lets out-of-grammar speech come out as the word ``[unk]``; without it
everything is forced onto grammar words.  Words the model cannot spell are
dropped with a warning, as vosk drops words missing from its vocabulary.

:func:`compile_grammar` builds the two things the constrained beam search
(:class:`streaming.decoder.GrammarStream`) needs:

* a character trie over the words: a beam may only spell a prefix of a
  grammar word, and may only end a word where a grammar word ends;
* the bigram, as natural-log probabilities ``logp(previous, word)``, with
  ``<s>``/``</s>`` at the segment's start and end (a segment is one sentence).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .errors import GrammarError

__all__ = ["BOS", "EOS", "UNK", "Grammar", "compile_grammar"]

logger = logging.getLogger(__name__)

UNK = "[unk]"  # vosk's out-of-grammar word
BOS = "<s>"
EOS = "</s>"
# vosk's LanguageModelEstimator discount for grammar bigrams (opts.discount = 0.5).
DISCOUNT = 0.5


@dataclass(frozen=True)
class Grammar:
    """A compiled phrase list.  Trie node 0 is the root (nothing spelled yet)."""

    phrases: tuple[tuple[str, ...], ...]  # each phrase's usable words ([unk] included)
    unk: bool  # "[unk]" is in the list: out-of-grammar speech becomes [unk]
    children: tuple[Mapping[str, int], ...] = field(repr=False)  # node -> {label: child node}
    word_at: tuple[str | None, ...] = field(repr=False)  # node -> the grammar word ending there
    _successors: Mapping[str, Mapping[str, int]] = field(repr=False)  # bigram counts c(h, w)
    _unigram: Mapping[str, float] = field(repr=False)  # P(w), w in words + [unk] + </s>
    _cache: dict[tuple[str, str], float] = field(default_factory=dict, repr=False, compare=False)

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(sorted({w for w in self.word_at if w is not None}))

    def logp(self, previous: str, word: str) -> float:
        """Natural-log P(word | previous): absolute discounting interpolated with the unigram.

        ``previous`` is ``<s>`` at a segment's start; ``word`` is ``</s>`` at its end.
        For ``["zero one two", "three"]``: P(one | zero) = (1 - 0.5) / 1 + 0.5 * P(one) > P(three | zero).
        """
        key = (previous, word)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        unigram = self._unigram.get(word, 0.0)
        following = self._successors.get(previous)
        if not following:  # a word no phrase continues (cannot happen for grammar words)
            p = unigram
        else:
            total = sum(following.values())
            seen = max(following.get(word, 0) - DISCOUNT, 0.0) / total
            p = seen + DISCOUNT * len(following) / total * unigram
        value = math.log(p) if p > 0 else -math.inf
        self._cache[key] = value
        return value


def compile_grammar(phrases: Sequence[str], labels: Sequence[str]) -> Grammar:
    """Compile vosk phrases for a CTC vocabulary (``labels`` as the decoder renders them).

    >>> g = compile_grammar(["zero one two", "oh", "[unk]"], ["", " ", *"abcdefghijklmnopqrstuvwxyz'"])
    >>> g.words, g.unk
    (('oh', 'one', 'two', 'zero'), True)
    >>> g.logp("zero", "one") > g.logp("zero", "two")
    True
    """
    spellable = {label for label in labels if len(label) == 1 and not label.isspace()}
    compiled: list[tuple[str, ...]] = []
    dropped: set[str] = set()
    for phrase in phrases:
        words: list[str] = []
        for raw in phrase.split():
            if raw.lower() == UNK:
                words.append(UNK)
                continue
            word = raw if set(raw) <= spellable else raw.lower()
            if set(word) <= spellable:
                words.append(word)
            else:
                dropped.add(raw)
        if words:
            compiled.append(tuple(words))
    if dropped:
        shown = ", ".join(sorted(dropped)[:10])
        logger.warning("grammar: ignoring %d word(s) the model cannot spell: %s", len(dropped), shown)
    unk = any(UNK in p for p in compiled)
    children: list[dict[str, int]] = [{}]
    word_at: list[str | None] = [None]
    for sequence in compiled:
        for word in sequence:
            if word == UNK:
                continue
            node = 0
            for char in word:
                nxt = children[node].get(char)
                if nxt is None:
                    nxt = len(children)
                    children[node][char] = nxt
                    children.append({})
                    word_at.append(None)
                node = nxt
            word_at[node] = word
    if len(children) == 1 and not unk:
        raise GrammarError(
            f"phrase list has no word the model can spell (its alphabet: {''.join(sorted(spellable))}); "
            f"got {len(phrases)} phrase(s)"
        )
    successors: dict[str, Counter[str]] = {}
    unigram: Counter[str] = Counter()
    for sequence in compiled:
        sentence = (BOS, *sequence, EOS)
        for previous, word in zip(sentence, sentence[1:]):
            successors.setdefault(previous, Counter())[word] += 1
            unigram[word] += 1
    total = sum(unigram.values())
    return Grammar(
        phrases=tuple(compiled),
        unk=unk,
        children=tuple(children),
        word_at=tuple(word_at),
        _successors={h: dict(c) for h, c in successors.items()},
        _unigram={w: n / total for w, n in unigram.items()},
    )
