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

from collections.abc import Sequence

import numpy as np

from .arrays import AnyArray, FloatArray

__all__ = ["NORMALIZATION_MODES", "RunningStats", "normalize_utterance", "scale_running"]

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

    def scale_new(self, samples: FloatArray) -> FloatArray:
        """Count new samples in, then scale them with the statistics that now include them:
        the ``running`` step, once per sample, when its first window is cut."""
        self.update(samples)
        return self.scale(samples)


def scale_running(samples: FloatArray, ends: Sequence[int]) -> FloatArray:
    """A whole stream under ``running`` normalisation: samples ``[ends[i-1], ends[i])`` are
    scaled with the statistics of ``[0, ends[i])``, as they would be when the window that
    first holds them is cut.  ``ends`` rise; samples after the last end stay as they are
    (no window holds them).

    [1, 3] first (mean 2, var 1), then [2, 6] with the statistics of all four (mean 3, var 3.5):

    >>> x = np.array([1.0, 3.0, 2.0, 6.0], dtype=np.float32)
    >>> [round(float(v), 4) for v in scale_running(x, [2, 4])]
    [-1.0, 1.0, -0.5345, 1.6036]
    """
    out = samples.astype(np.float32, copy=True)
    stats = RunningStats()
    start = 0
    for end in ends:
        if end < start or end > samples.size:
            raise ValueError(f"segment ends must rise within 0..{samples.size}, got {end} after {start}")
        out[start:end] = stats.scale_new(out[start:end])
        start = end
    return out
