"""The one exception tree of the engine.

Every error the engine raises on purpose derives from :class:`StreamingError`,
so callers (the CLI, the server) can catch one type at one boundary and turn it
into an exit status or a close code.  Each message says what was expected and
what came instead, e.g. ``"logits have 33 columns, vocabulary has 32"``.

    StreamingError
    ├── AudioError            bad samples: NaN/inf, stereo, empty, odd rate, bad file
    ├── ModelLoadError        missing/corrupt checkpoint files, unknown hub id, offline
    ├── VocabularyError       logits/vocabulary size mismatch, unusable vocab.json
    ├── LanguageModelError    missing/corrupt KenLM file, alphabet that does not fit
    ├── GrammarError          a phrase list with no word the model can spell
    └── StreamStateError      API used out of order (audio after finish(), ...)
"""

from __future__ import annotations

__all__ = [
    "AudioError",
    "GrammarError",
    "LanguageModelError",
    "ModelLoadError",
    "StreamStateError",
    "StreamingError",
    "VocabularyError",
]


class StreamingError(Exception):
    """Base class of every error the engine raises deliberately."""


class AudioError(StreamingError, ValueError):
    """Audio that cannot be recognised as given (shape, dtype, rate, values, file)."""


class ModelLoadError(StreamingError):
    """An acoustic model checkpoint that cannot be found or loaded."""


class VocabularyError(StreamingError, ValueError):
    """A vocabulary that does not match the model's output or the decoder."""


class LanguageModelError(StreamingError):
    """A language model that cannot be loaded or does not fit the vocabulary."""


class GrammarError(StreamingError, ValueError):
    """A grammar (vosk phrase list) that cannot restrict decoding to anything."""


class StreamStateError(StreamingError, RuntimeError):
    """The recognizer API was used out of order, e.g. audio after ``finish()``."""
