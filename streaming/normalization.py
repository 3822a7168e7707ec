"""``do_normalize`` for streams: zero mean, unit variance without the future.

A checkpoint whose ``preprocessor_config.json`` says ``do_normalize: true`` was
trained on utterances scaled to zero mean and unit variance over the *whole*
utterance.  A stream has no whole utterance, so we offer three modes:

``running`` (default)
    Each sample is scaled exactly once, when it first enters a window, with
    the mean and variance of *all* audio received so far (which includes the
    window's look-ahead).  Because no sample is ever rescaled, the conv
    features of a frame never change, and the engine can reuse them between
    overlapping windows.  The first window already holds chunk + look-ahead
    audio (1.4 s by default), so the statistics start from real speech.
``window``
    Every window is scaled by its own statistics, like chunked pipelines that
    call the feature extractor per chunk.  Silence-only windows get their
    noise blown up to unit variance, and features can't be reused.
``none``
    Samples go in as they are (for checkpoints trained without normalization).

The offline reference (``Engine.transcribe_offline``) scales the whole
utterance, as the checkpoint's own feature extractor would.
``benchmarks/bench_streaming_vs_offline.py`` measures the modes against it.
"""

from __future__ import annotations

import numpy as np

from .arrays import AnyArray, FloatArray

__all__ = ["NORMALIZATION_MODES", "RunningStats", "normalize_utterance"]

NORMALIZATION_MODES = ("running", "window", "none")

# Same epsilon as the Hugging Face feature extractor, so offline output matches it.
_EPS = 1e-7


def normalize_utterance(samples: AnyArray) -> FloatArray:
    """Scale to zero mean and unit variance: (x - mean) / sqrt(var + 1e-7).

    >>> normalize_utterance(np.array([1.0, 3.0], dtype=np.float32)).tolist()
    [-1.0, 1.0]
    """
    x = samples.astype(np.float32, copy=False)
    scaled: FloatArray = ((x - x.mean()) / np.sqrt(x.var() + _EPS)).astype(np.float32)
    return scaled


class RunningStats:
    """Mean and variance of every sample seen, in float64 (no drift over hours)."""

    def __init__(self) -> None:
        self.count = 0
        self._sum = 0.0
        self._sum_sq = 0.0

    def update(self, samples: AnyArray) -> None:
        x = samples.astype(np.float64, copy=False)
        self.count += x.size
        self._sum += float(x.sum())
        # not np.dot: that is an OpenBLAS call, which wakes BLAS threads that then spin
        # against the model's own threads (measured: streaming model time 2x on 2 cores)
        self._sum_sq += float(np.square(x).sum())

    def scale(self, samples: FloatArray) -> FloatArray:
        """Apply the current statistics; identity before any sample is seen."""
        if self.count == 0:
            return samples.astype(np.float32, copy=True)
        mean = self._sum / self.count
        var = max(self._sum_sq / self.count - mean * mean, 0.0)
        scaled: FloatArray = ((samples - mean) / np.sqrt(var + _EPS)).astype(np.float32)
        return scaled
