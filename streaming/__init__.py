"""Streaming wav2vec2 / XLSR CTC speech recognition engine.  No I/O: numpy in, events out.

Usage::

    from streaming import Engine, Final
    engine = Engine.load()                        # the shipped default model + LM
    stream = engine.new_stream(sample_rate=16000)
    stream.accept_audio(samples)                  # int16/float32 mono blocks, any length
    stream.finish()
    texts = [e.text for e in stream.events() if isinstance(e, Final)]
"""

from .acoustic_model import AcousticModel, ModelInfo
from .decoder import (
    BeamSearchDecoder,
    DecodedWord,
    DecoderConfig,
    GreedyDecoder,
    Hypothesis,
    ScoredHypothesis,
    build_decoder,
)
from .endpointing import EndpointConfig
from .errors import (
    AudioError,
    GrammarError,
    LanguageModelError,
    ModelLoadError,
    StreamingError,
    StreamStateError,
    VocabularyError,
)
from .events import Alternative, Event, Final, Partial, Word
from .grammar import Grammar, compile_grammar
from .language_model import LanguageModel, LanguageModelConfig, load_language_model
from .loading import DEFAULT_MODEL_DIR, default_model_path, load_model
from .recognizer import Engine, Recognizer
from .stitching import WindowOutput, WindowRequest
from .windows import WindowConfig

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL_DIR",
    "AcousticModel",
    "Alternative",
    "AudioError",
    "BeamSearchDecoder",
    "DecodedWord",
    "DecoderConfig",
    "EndpointConfig",
    "Engine",
    "Event",
    "Final",
    "Grammar",
    "GrammarError",
    "GreedyDecoder",
    "Hypothesis",
    "LanguageModel",
    "LanguageModelConfig",
    "LanguageModelError",
    "ModelInfo",
    "ModelLoadError",
    "Partial",
    "Recognizer",
    "ScoredHypothesis",
    "StreamStateError",
    "StreamingError",
    "VocabularyError",
    "WindowConfig",
    "WindowOutput",
    "WindowRequest",
    "Word",
    "__version__",
    "build_decoder",
    "compile_grammar",
    "default_model_path",
    "load_language_model",
    "load_model",
]
