"""Scoring transcripts: the one text normalisation for WER / CER, the model alphabet's spelling,
the error rates (:mod:`scoring.text`, which says why digits are kept), and the evaluation
folder's reference list (:mod:`scoring.eval_folder`)."""

from .eval_folder import read_transcripts
from .text import char_error_rate, has_digits, normalize_for_scoring, normalize_to_alphabet, word_error_rate

__all__ = [
    "char_error_rate",
    "has_digits",
    "normalize_for_scoring",
    "normalize_to_alphabet",
    "read_transcripts",
    "word_error_rate",
]
