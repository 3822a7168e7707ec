"""The recipe's training augmentation: shapes, levels and bounds of each transform."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "recipe"))
from augment import AugmentConfig, augment, equalize, mp3_round_trip  # noqa: E402


@pytest.mark.parametrize("seed", range(5))
def test_equalizer_stays_within_its_gain_bounds_and_keeps_the_level(seed: int) -> None:
    x = np.random.default_rng(seed).standard_normal(16000).astype(np.float32)
    y = equalize(x, random.Random(seed), max_db=8.0)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.mean(y**2) == pytest.approx(np.mean(x**2), rel=1e-4)
    gain_db = 20 * np.log10(np.abs(np.fft.rfft(y)[1:]) / np.abs(np.fft.rfft(x)[1:]))
    # level matching shifts the whole curve, so the spread is what the bound limits
    assert gain_db.max() - gain_db.min() <= 2 * 8.0 + 1e-3
    assert gain_db.max() - gain_db.min() > 1.0  # it does colour the sound


def test_augment_at_full_strength_gives_finite_audio_and_at_zero_the_input() -> None:
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(24000)).astype(np.float32)
    babble = [(0.1 * rng.standard_normal(8000)).astype(np.float32)]
    for seed in range(20):
        y = augment(x, random.Random(seed), AugmentConfig(), strength=1.0, babble=babble)
        assert y.dtype == np.float32 and np.isfinite(y).all()
        assert 0.8 * len(x) < len(y) < 1.25 * len(x)  # speed perturbation 0.85-1.15
    assert augment(x, random.Random(0), AugmentConfig(), strength=0.0) is x


def test_config_names_a_bad_probability() -> None:
    with pytest.raises(ValueError, match="eq_prob"):
        AugmentConfig(eq_prob=1.5)


@pytest.mark.parametrize("quality", [0.3, 0.9])
def test_mp3_round_trip_keeps_length_and_speech_band_but_loses_detail(speech, quality: float) -> None:
    audio, rate = speech
    x = (audio[: 3 * rate] * 2.5).astype(np.float32)  # peaks past full scale survive too
    assert np.abs(x).max() > 1.0
    y = mp3_round_trip(x, quality)
    assert y.dtype == np.float32 and y.shape == x.shape and np.isfinite(y).all()
    spectrum_x, spectrum_y = np.abs(np.fft.rfft(x)), np.abs(np.fft.rfft(y))
    speech_band = slice(300 * 3, 3000 * 3)  # 3 s: bin k is k/3 Hz
    assert np.corrcoef(spectrum_x[speech_band], spectrum_y[speech_band])[0, 1] > 0.9
    assert 5e-4 < np.mean((y - x) ** 2) / np.mean(x**2) < 0.05  # coding noise -13..-33 dB: lossy, not destroyed
