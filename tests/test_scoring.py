"""The one scoring rule and the error rates (``scoring/``), against a plain edit distance."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scoring.text
from scoring import (
    char_error_rate,
    has_digits,
    normalize_for_scoring,
    normalize_to_alphabet,
    read_transcripts,
    word_error_rate,
)


def test_docstring_examples() -> None:
    assert doctest.testmod(scoring.text).failed == 0


def test_normalize_text():
    assert normalize_for_scoring("Don't STOP -- now!") == "don't stop now"


def test_scoring_keeps_digits_and_the_alphabet_does_not() -> None:
    text = "Chapter 12: Don\u2019t  PANIC, 'twas café!"
    assert normalize_for_scoring(text) == "chapter 12 don't panic 'twas café"
    assert normalize_to_alphabet(text) == "chapter don't panic twas caf"
    assert has_digits(text) and not has_digits(normalize_to_alphabet(text))


def _edits(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


sentences = st.lists(st.sampled_from(["a", "b", "cat", "sat"]), max_size=6).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(sentences, sentences), min_size=1, max_size=5))
def test_error_rates_are_corpus_edits_over_reference_length(pairs: list[tuple[str, str]]) -> None:
    scored = [(r, h) for r, h in pairs if r]  # an empty reference has no length to take a rate of
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    words = sum(len(r.split()) for r, _ in scored)
    chars = sum(len(r) for r, _ in scored)
    expected_wer = sum(_edits(r.split(), h.split()) for r, h in scored) / words if words else 0.0
    expected_cer = sum(_edits(list(r), list(h)) for r, h in scored) / chars if chars else 0.0
    assert word_error_rate(refs, hyps) == pytest.approx(expected_wer)
    assert char_error_rate(refs, hyps) == pytest.approx(expected_cer)


def test_error_rates_name_mismatched_lists() -> None:
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_error_rate(["a", "b"], ["a"])


def test_an_eval_folder_lists_its_audio_and_names_bad_lines(tmp_path) -> None:
    (tmp_path / "transcripts.tsv").write_text("a.wav\tHello, world!\n\n b.wav \t It's  fine \n", encoding="utf-8")
    assert read_transcripts(tmp_path) == [(tmp_path / "a.wav", "Hello, world!"), (tmp_path / "b.wav", "It's  fine")]
    (tmp_path / "transcripts.tsv").write_text("a.wav\thello\nb.wav hello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"transcripts.tsv:2: expected 'file name<TAB>reference text'"):
        read_transcripts(tmp_path)
    (tmp_path / "transcripts.tsv").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lists no utterances"):
        read_transcripts(tmp_path)
    with pytest.raises(ValueError, match="has no transcripts.tsv"):
        read_transcripts(tmp_path / "elsewhere")
