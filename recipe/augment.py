"""On-the-fly waveform augmentation for training (numpy only, 16 kHz float32 in and out).

Every transform is cheap next to a training step of the acoustic model: speed perturbation
(resampling, so tempo and pitch move together), synthetic room reverberation, coloured or babble
noise at a random SNR, a random smooth equaliser curve (microphone and channel colour), telephone
band-limiting with mu-law quantisation, gain and clipping, and a lossy MP3 round trip.
``strength`` (0..1) scales every probability, so training can start on clean speech and ramp up.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr
from common import SAMPLE_RATE


@dataclass(frozen=True)
class AugmentConfig:
    # 0.85-1.15 is the classic Kaldi 3-way perturbation range, sampled continuously.
    speed_prob: float = 0.6
    speed_range: tuple[float, float] = (0.85, 1.15)
    # most real recordings have some room in them; synthetic TTS has none at all.
    reverb_prob: float = 0.35
    rt60_range: tuple[float, float] = (0.1, 0.7)
    noise_prob: float = 0.5
    snr_db_range: tuple[float, float] = (3.0, 30.0)
    babble_share: float = 0.3  # of noisy utterances, how many get other speech as the noise
    # TTS voices all come out of one kind of vocoder with a flat channel; real microphones, rooms and
    # codecs tilt and colour the spectrum by several dB.
    eq_prob: float = 0.5
    eq_max_db: float = 8.0
    telephone_prob: float = 0.08
    clip_prob: float = 0.03
    # Real audio has mostly been through a lossy codec (LibriVox is MP3, calls and streams use
    # low-rate codecs); TTS output never has.  MP3 at 16 kHz, ~10-16 kbit/s: about -25 to -30 dB
    # of coding noise, smeared highs, pre-echo.
    codec_prob: float = 0.2

    def __post_init__(self) -> None:
        for name in ("speed_prob", "reverb_prob", "noise_prob", "babble_share", "eq_prob", "telephone_prob",
                     "clip_prob", "codec_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {v}")


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """factor 1.1 -> 10% faster and higher: 16000 samples become ~14545."""
    return soxr.resample(x, SAMPLE_RATE, SAMPLE_RATE / factor, quality="MQ").astype(np.float32)


def fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: len(x)]
    return y.astype(np.float32)


def synthetic_rir(rng: random.Random, rt60: float) -> np.ndarray:
    """Exponentially decaying noise tail after a direct path: 60 dB down after ``rt60`` seconds."""
    n = max(int(rt60 * SAMPLE_RATE), 16)
    t = np.arange(n) / SAMPLE_RATE
    nrng = np.random.default_rng(rng.getrandbits(32))
    tail = nrng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    pre = int(rng.uniform(0.001, 0.005) * SAMPLE_RATE)  # early reflections start after a few ms
    tail[:pre] = 0.0
    h = tail * rng.uniform(0.2, 0.6) / (np.sqrt(np.sum(tail**2)) + 1e-9)
    h[0] = 1.0
    return h.astype(np.float32)


def coloured_noise(rng: random.Random, n: int) -> np.ndarray:
    """White (slope 0), pink (1) or brown (2) noise, unit RMS."""
    nrng = np.random.default_rng(rng.getrandbits(32))
    slope = rng.choice([0.0, 1.0, 1.0, 2.0])
    spec = np.fft.rfft(nrng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spec / f ** (slope / 2), n)
    return (y / (np.sqrt(np.mean(y**2)) + 1e-9)).astype(np.float32)


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    if len(noise) < len(x):
        noise = np.tile(noise, len(x) // max(len(noise), 1) + 1)
    noise = noise[: len(x)]
    px = np.mean(x**2) + 1e-9
    pn = np.mean(noise**2) + 1e-9
    return x + noise * np.sqrt(px / (pn * 10 ** (snr_db / 10)))


def equalize(x: np.ndarray, rng: random.Random, max_db: float) -> np.ndarray:
    """A random smooth gain curve over log-frequency (a tilt plus a few broad bumps), at most
    ``max_db`` up or down, applied in the frequency domain; the overall level is kept."""
    spec = np.fft.rfft(x)
    f = np.maximum(np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE), 50.0)
    u = np.log2(f / 50.0) / np.log2((SAMPLE_RATE / 2) / 50.0)  # 0 at 50 Hz .. 1 at Nyquist
    db = rng.uniform(-1.0, 1.0) * (u - 0.5) * 2  # tilt
    for k in range(1, 4):
        db = db + rng.uniform(-0.5, 0.5) * np.cos(np.pi * k * u + rng.uniform(0, 2 * np.pi))
    db = db / (np.abs(db).max() + 1e-9) * rng.uniform(0.3, 1.0) * max_db
    y = np.fft.irfft(spec * 10 ** (db / 20), len(x))
    return (y * np.sqrt((np.mean(x**2) + 1e-12) / (np.mean(y**2) + 1e-12))).astype(np.float32)


def telephone(x: np.ndarray) -> np.ndarray:
    """300-3400 Hz band, 8 kHz, mu-law 8 bit, and back to 16 kHz."""
    y = soxr.resample(x, SAMPLE_RATE, 8000, quality="MQ")
    spec = np.fft.rfft(y)
    freqs = np.fft.rfftfreq(len(y), 1 / 8000)
    spec[(freqs < 300) | (freqs > 3400)] = 0
    y = np.fft.irfft(spec, len(y))
    peak = np.abs(y).max() + 1e-9
    y = y / peak
    mu = 255.0
    q = np.round((np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu)) * 127) / 127
    y = np.sign(q) * ((1 + mu) ** np.abs(q) - 1) / mu * peak
    return soxr.resample(y.astype(np.float32), 8000, SAMPLE_RATE, quality="MQ").astype(np.float32)


def mp3_round_trip(x: np.ndarray, quality: float) -> np.ndarray:
    """Encode to MP3 and back (libsndfile's LAME); quality 0 (~20 kbit/s) .. 0.9 (~10 kbit/s).
    Same length out; audio beyond full scale is scaled down for the codec and back up."""
    peak = max(1.0, float(np.abs(x).max()))
    buf = io.BytesIO()
    sf.write(buf, x / peak, SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III", compression_level=quality)
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    y = y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))
    return (y * peak).astype(np.float32)


def augment(x: np.ndarray, rng: random.Random, cfg: AugmentConfig, strength: float,
            babble: list[np.ndarray] | None = None) -> np.ndarray:
    """x: (samples,) float32 at 16 kHz. Returns a new array (length may change with speed)."""
    if strength <= 0:
        return x
    if rng.random() < cfg.speed_prob * strength:
        x = speed(x, rng.uniform(*cfg.speed_range))
    if rng.random() < cfg.reverb_prob * strength:
        x = fft_convolve(x, synthetic_rir(rng, rng.uniform(*cfg.rt60_range)))
    if rng.random() < cfg.noise_prob * strength:
        lo, hi = cfg.snr_db_range
        snr = rng.uniform(lo + (1 - strength) * (hi - lo) * 0.5, hi)
        if babble and rng.random() < cfg.babble_share:
            noise = np.zeros(len(x), np.float32)
            for _ in range(rng.randint(1, 3)):
                other = rng.choice(babble)
                if len(other) < len(x):  # loop shorter talkers to cover the whole utterance
                    other = np.tile(other, len(x) // max(len(other), 1) + 1)
                start = rng.randint(0, len(other) - len(x))
                noise += other[start: start + len(x)]
            x = add_noise(x, noise, max(snr, 8.0))
        else:
            x = add_noise(x, coloured_noise(rng, len(x)), snr)
    if rng.random() < cfg.eq_prob * strength:
        x = equalize(x, rng, cfg.eq_max_db)
    if rng.random() < cfg.telephone_prob * strength:
        x = telephone(x)
    if rng.random() < cfg.clip_prob * strength:
        lim = rng.uniform(0.3, 0.8) * float(np.abs(x).max() + 1e-9)
        x = np.clip(x, -lim, lim)
    if rng.random() < cfg.codec_prob * strength:
        x = mp3_round_trip(x, rng.uniform(0.3, 0.9))
    return x.astype(np.float32)
