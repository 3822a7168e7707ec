"""Transcript clean-up for recorded speech: numbers spelled out, annotations removed, text that
cannot be said one way rejected, then ``common.normalize_text``.

Policy (one home for every real-speech reader):
- whole numbers 0-999 are spelled as cardinals ("press 1" -> "press one"); any other number
  ("1234" may be "one two three four" or "twelve thirty-four", "28.8", "3D") rejects the line;
- bracketed stage directions ("[ascending tones]", "(10 seconds of silence)", "<beep>") are
  removed; a line that was nothing but one is not speech and is rejected;
- words of two or more capitals ("PBX", "IAX") are acronyms whose reading is unknown (letters
  or a word): the line is rejected, except in sources that write words in capitals anyway;
- a line with letters outside a-z ("señor") is rejected: dropping them would cut words apart;
- a line with nothing left after normalisation is rejected.

Readers skip lines rejected as not speech (``NOT_SPEECH``) and send the audio of the other
rejected lines to untranscribed/ (real speech whose text we cannot write down reliably).
"""

from __future__ import annotations

import re

from common import normalize_text

NOT_SPEECH = frozenset({"annotation only", "empty"})

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """Cardinal 0-999 in words: ``105`` -> ``"one hundred five"``, ``42`` -> ``"forty two"``."""
    if not 0 <= n <= 999:
        raise ValueError(f"number_words takes 0-999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    rest = n % 100
    return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))


_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>|\{[^}]*\}")
_NUMBER = re.compile(r"(?<![\w.,])\d+(?![\w.,]\d|[\w])")
_ANY_DIGIT = re.compile(r"\d")
_ACRONYM = re.compile(r"\b[A-Z]{2,}\b")


def clean_transcript(raw: str, symbols: dict[str, str] | None = None,
                     *, capitals_are_words: bool = False) -> tuple[str | None, str]:
    """-> (normalised text, "ok") or (None, reason) where reason names why the line was rejected.

    ``symbols`` maps characters that are spoken in this source ("*" -> "star") before clean-up.
    ``capitals_are_words``: the source writes lines in capitals or capitalises words for
    emphasis (game subtitles), so capitals say nothing about acronyms there.

    >>> clean_transcript("Press 1 for sales.  [beep]")
    ('press one for sales', 'ok')
    >>> clean_transcript("Dial 1234 now")
    (None, 'number')
    """
    text = _ANNOTATION.sub(" ", raw)
    if not text.strip(" .,!?;:-\"'"):
        return None, "annotation only" if text != raw else "empty"
    if any(c.isalpha() and not c.isascii() for c in text):
        return None, "non-english letters"  # normalize_text would cut such words apart
    for sym, word in (symbols or {}).items():
        text = text.replace(sym, f" {word} ")
    text = _NUMBER.sub(lambda m: " " + number_words(int(m.group())) + " "
                       if int(m.group()) <= 999 else m.group(), text)
    if _ANY_DIGIT.search(text):
        return None, "number"
    if not capitals_are_words and _ACRONYM.search(text):
        return None, "acronym"
    norm = normalize_text(text)
    if not norm:
        return None, "nothing left"
    return norm, "ok"
