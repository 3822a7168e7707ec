"""Scoring transcripts: the one text normalisation for WER / CER, the model alphabet's spelling,
and the error rates.  See :mod:`scoring.text` for the rules and why digits are kept."""

from .text import char_error_rate, has_digits, normalize_for_scoring, normalize_to_alphabet, word_error_rate

__all__ = ["char_error_rate", "has_digits", "normalize_for_scoring", "normalize_to_alphabet", "word_error_rate"]
