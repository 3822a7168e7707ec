"""Audio in: validate samples and bring them to mono float32 at the model's rate.

The engine accepts int16 or float32 mono blocks at any sample rate.  Blocks
of one stream are resampled with a stateful soxr stream so that block
boundaries leave no clicks and the result equals resampling the whole signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from .arrays import AnyArray, FloatArray
from .errors import AudioError

__all__ = [
    "MAX_FLOAT_AMPLITUDE",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "StreamResampler",
    "as_float32_mono",
    "check_float_amplitude",
    "validate_sample_rate",
]

# Telephone audio (8 kHz) is the lowest rate people stream; below 4 kHz nothing
# of speech above 2 kHz survives and the request is almost surely a mistake
# (e.g. a rate given in kHz).  384 kHz is the highest rate consumer hardware
# records; anything above is a unit error.
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 384_000
# Float audio is full scale at 1.0.  Filters and resamplers overshoot a little,
# so up to 2.0 is taken as is; far beyond is not audio in that scale (int16 values
# sent as floats reach 32767), and one such block would swamp the running mean and
# variance that scale the rest of the stream.
MAX_FLOAT_AMPLITUDE = 2.0


def validate_sample_rate(sample_rate: object) -> int:
    """Return ``sample_rate`` as an int, or raise AudioError naming the problem.

    >>> validate_sample_rate(44100)
    44100
    >>> validate_sample_rate(16)
    Traceback (most recent call last):
    ...
    streaming.errors.AudioError: sample rate 16 Hz is outside 4000..384000 Hz
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer, float)):
        raise AudioError(f"sample rate must be a number of Hz, got {type(sample_rate).__name__}")
    if isinstance(sample_rate, float) and not sample_rate.is_integer():
        raise AudioError(f"sample rate must be a whole number of Hz, got {sample_rate}")
    rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
        )
    return rate


def as_float32_mono(samples: AnyArray, *, what: str = "audio") -> FloatArray:
    """Check one block of samples and return it as float32 in [-1, 1].

    int16 is scaled by 1/32768; float32/float64 is taken as is.  A (n, 1)
    column is accepted as mono; anything with two real channels is rejected
    rather than silently mixed, because the caller probably sent the wrong
    stream.

    >>> as_float32_mono(np.array([16384, -32768], dtype=np.int16))
    array([ 0.5, -1. ], dtype=float32)
    """
    if not isinstance(samples, np.ndarray):
        raise AudioError(f"{what} must be a numpy array, got {type(samples).__name__}")
    if samples.ndim == 2 and samples.shape[1] == 1:
        samples = samples[:, 0]
    if samples.ndim != 1:
        raise AudioError(
            f"{what} must be mono (one channel), got an array of shape {samples.shape}"
        )
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / np.float32(32768.0)
    if samples.dtype in (np.float32, np.float64):
        out = samples.astype(np.float32, copy=False)
        if out.size and not np.isfinite(out).all():
            bad = int(np.count_nonzero(~np.isfinite(out)))
            raise AudioError(f"{what} has {bad} NaN or infinite samples out of {out.size}")
        return out
    raise AudioError(f"{what} must be int16 or float32 samples, got {samples.dtype}")


def check_float_amplitude(samples: AnyArray, *, what: str = "audio") -> None:
    """Refuse float audio beyond +-MAX_FLOAT_AMPLITUDE (full scale is 1.0).

    Audio a client sends, and audio the running normalisation scales, must be in
    that scale; samples already normalised by the caller (``normalization="none"``)
    may be larger and are not checked by the engine.

    >>> check_float_amplitude(np.array([0.5, 100.0], dtype=np.float32))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streaming.errors.AudioError: audio has 1 of 2 float samples beyond +-2 (peak 100); float audio ...
    """
    if not samples.size:
        return
    peak = float(np.abs(samples).max())
    if peak > MAX_FLOAT_AMPLITUDE:
        over = int(np.count_nonzero(np.abs(samples) > MAX_FLOAT_AMPLITUDE))
        raise AudioError(
            f"{what} has {over} of {samples.size} float samples beyond +-{MAX_FLOAT_AMPLITUDE:g} "
            f"(peak {peak:.4g}); float audio is full scale at 1.0 - int16 values sent as floats? "
            "divide them by 32768 or send int16"
        )


@dataclass
class StreamResampler:
    """Resample one stream block by block (soxr, high quality).

    ``process`` returns what is ready so far; ``flush`` returns the filter's
    tail at end of stream.  With equal rates it is a pass-through.
    """

    input_rate: int
    output_rate: int = 16_000

    def __post_init__(self) -> None:
        self.input_rate = validate_sample_rate(self.input_rate)
        self._stream = (
            None
            if self.input_rate == self.output_rate
            else soxr.ResampleStream(self.input_rate, self.output_rate, 1, dtype="float32", quality="HQ")
        )

    def process(self, block: FloatArray) -> FloatArray:
        if self._stream is None:
            return block
        return np.asarray(self._stream.resample_chunk(block, last=False), dtype=np.float32)

    def flush(self) -> FloatArray:
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(
            self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True), dtype=np.float32
        )
