"""Transcripts as they are compared: the one scoring rule, the model alphabet's spelling, WER and CER.

Two normalisations, for two jobs:

- :func:`normalize_for_scoring` is how every WER / CER here is taken (``xlsr-stream eval``,
  ``language_model/tune_alpha_beta.py``, ``benchmarks/``, the recipe's dev-set scores):
  lowercase, punctuation dropped, **digits and letters of any script kept**.  The model
  cannot write "42", so a reference that says "42" costs an error when the model hears
  "forty two", as it does for a reader; dropping the digits would hide words from the
  reference and flatter the score.  Keep references spelled out to score them fairly.
- :func:`normalize_to_alphabet` is how training text and LM words are spelled: only the
  default model's letters (a-z and the apostrophe inside words).  It drops digits, so text
  that holds any must be rejected (:func:`has_digits`) rather than silently mangled:
  "it's 42" would otherwise become a transcript "it's" for audio that says more.

Error rates are corpus-level (edits summed over utterances / reference length summed),
computed by jiwer; utterances whose reference is empty are left out (no word count to
take a rate of), and an empty hypothesis is all deletions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "char_error_rate",
    "has_digits",
    "normalize_for_scoring",
    "normalize_to_alphabet",
    "word_error_rate",
]

_APOSTROPHES = str.maketrans({"\u2019": "'", "`": "'"})
_NOT_WORD = re.compile(r"[^\w\s']|_")
_NOT_ALPHABET = re.compile(r"[^a-z' ]+")
_EDGE_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")
_DIGIT = re.compile(r"\d")


def normalize_for_scoring(text: str) -> str:
    """Lowercase, drop punctuation except apostrophes, keep digits, collapse spaces.

    >>> normalize_for_scoring("Hello, World!  It's   fine.")
    "hello world it's fine"
    >>> normalize_for_scoring("Don\u2019t pay 42 €")
    "don't pay 42"
    """
    return " ".join(_NOT_WORD.sub(" ", text.lower().translate(_APOSTROPHES)).split())


def normalize_to_alphabet(text: str) -> str:
    """Lowercase, keep a-z, apostrophes inside words and single spaces: the model's spelling.

    Digits are dropped, so callers reject sentences that contain any (:func:`has_digits`).

    >>> normalize_to_alphabet("Don't panic -- it's 42! 'Quoted'")
    "don't panic it's quoted"
    """
    t = _NOT_ALPHABET.sub(" ", text.lower().translate(_APOSTROPHES))
    # apostrophes only inside words ("don't"), not as quotes ("'hello'")
    return " ".join(_EDGE_APOSTROPHE.sub(" ", t).split())


def has_digits(text: str) -> bool:
    """True when the text holds a digit, which :func:`normalize_to_alphabet` would drop.

    >>> has_digits("chapter 12"), has_digits("chapter twelve")
    (True, False)
    """
    return _DIGIT.search(text) is not None


def _scored(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r.strip()]
    return [r for r, _ in pairs], [h for _, h in pairs]


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER: total word edits / total reference words (texts as given: normalise first).

    >>> word_error_rate(["the cat sat", "hello"], ["the cat sad", "hello there"])
    0.5
    >>> word_error_rate(["a b", "c", ""], ["a b", "", "noise"])  # empty hypothesis: deletions
    0.3333333333333333
    """
    import jiwer

    refs, hyps = _scored(references, hypotheses)
    return float(jiwer.wer(refs, hyps)) if refs else 0.0


def char_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus CER: total character edits (spaces count) / total reference characters.

    >>> char_error_rate(["abc", "d"], ["abd", ""])
    0.5
    """
    import jiwer

    refs, hyps = _scored(references, hypotheses)
    return float(jiwer.cer(refs, hyps)) if refs else 0.0
