"""ITU-T G.722 (64 kbit/s mode) decoder: 16 kHz wideband speech from 2-bit high + 6-bit low
sub-band ADPCM codes, one byte per pair of output samples.

Written from the ITU-T G.722 (11/1988) block descriptions (INVQBL, INVQAL, LOGSCL, SCALEL,
RECONS, PARREC, UPPOL1/2, UPZERO, FILTEP/FILTEZ, receive QMF); the tables below are the
standard's. Used for Asterisk's ``.g722`` prompts (asterisk-core-sounds-*-g722), which carry
the 16 kHz recordings that the ``-wav`` packages only hold at 8 kHz.

The ADPCM recursion is sequential (pure Python, ~0.2-0.3 s per second of speech); the QMF synthesis
is a linear filter and runs in numpy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# 6-bit low-band inverse quantiser outputs (Table 6/G.722), indexed by the 6-bit code.
_QM6 = (
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192,
    -10232, -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576,
    -3168, -2776, -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704,
    14984, 13512, 12280, 11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456,
    4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
)
# 4-bit inverse quantiser used for the predictor update (the code's top 4 bits).
_QM4 = (0, -20456, -12896, -8968, -6288, -4240, -2584, -1200,
        20456, 12896, 8968, 6288, 4240, 2584, 1200, 0)
_QM2 = (-7408, -1616, 7408, 1616)  # high band
_ILB = (2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714,
        2774, 2834, 2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676,
        3756, 3838, 3922, 4008)  # antilog table of the scale factor
_WL = (-60, -30, 58, 172, 334, 538, 1198, 3042)  # low-band log scale-factor multipliers
_RL42 = (0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0)
_WH = (0, -214, 798)
_RH2 = (2, 1, 2, 1)
# 24-tap receive QMF, as 12 coefficients applied to the even and (reversed) odd history.
_QMF = np.array([3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11], dtype=np.int64)


def _sat(x: int) -> int:
    return -32768 if x < -32768 else 32767 if x > 32767 else x


def _adapt(st: list[int], d: int) -> None:
    """Blocks 4L/4H for one sub-band: reconstruct, adapt the pole (a1, a2) and zero (b1..b6)
    predictor, predict the next signal estimate.

    ``st`` = [s, sz, r1, r2, a1, a2, p1, p2, d1..d6, b1..b6] (20 ints, updated in place).
    """
    s, sz, r1, r2, a1, a2, p1, p2 = st[0:8]
    r0 = _sat(s + d)
    p0 = _sat(sz + d)
    s0, s1, s2 = p0 >> 15, p1 >> 15, p2 >> 15
    # UPPOL2: second pole coefficient
    wd1 = _sat(a1 << 2)
    wd2 = -wd1 if s0 == s1 else wd1
    if wd2 > 32767:
        wd2 = 32767
    wd3 = (128 if s0 == s2 else -128) + (wd2 >> 7) + ((a2 * 32512) >> 15)
    ap2 = -12288 if wd3 < -12288 else 12288 if wd3 > 12288 else wd3
    # UPPOL1: first pole coefficient, limited by the second
    ap1 = _sat((192 if s0 == s1 else -192) + ((a1 * 32640) >> 15))
    lim = _sat(15360 - ap2)
    ap1 = -lim if ap1 < -lim else lim if ap1 > lim else ap1
    # UPZERO (sixth-order zero section) with DELAYA: d1..d6 <- d, d1..d5
    step = 0 if d == 0 else 128
    sd = d >> 15
    ds = st[8:14]
    bs = st[14:20]
    nb = [_sat((step if (di >> 15) == sd else -step) + ((bi * 32640) >> 15))
          for di, bi in zip(ds, bs)]
    nd = [d] + ds[:5]
    # FILTEP, FILTEZ, PREDIC
    sp = _sat(((ap1 * _sat(r0 + r0)) >> 15) + ((ap2 * _sat(r1 + r1)) >> 15))
    z = 0
    for di, bi in zip(nd, nb):
        z += (bi * _sat(di + di)) >> 15
    z = _sat(z)
    st[0:8] = [_sat(sp + z), z, r0, r1, ap1, ap2, p0, p1]
    st[8:14] = nd
    st[14:20] = nb


def _scale(nb: int, offset: int) -> int:
    """SCALEL/SCALEH: log scale factor -> linear step size (nb=0, offset 8 -> 32)."""
    shift = offset - (nb >> 11)
    lin = _ILB[(nb >> 6) & 31]
    return (lin << -shift if shift < 0 else lin >> shift) << 2


def new_band_state(low: bool) -> list[int]:
    """Initial state of one sub-band decoder: the 20 predictor values of ``_adapt``, then the
    log scale factor and the step size (32 for the low band, 8 for the high band)."""
    return [0] * 21 + [32 if low else 8]


def decode_low(st: list[int], ilow: int) -> int:
    """One 6-bit low-band code -> reconstructed low-band sample (8 kHz); updates ``st``."""
    det = st[21]
    rlow = st[0] + ((det * _QM6[ilow]) >> 15)  # INVQBL + RECONS
    rlow = -16384 if rlow < -16384 else 16383 if rlow > 16383 else rlow
    i4 = ilow >> 2
    dlow = (det * _QM4[i4]) >> 15  # INVQAL
    nb = ((st[20] * 127) >> 7) + _WL[_RL42[i4]]  # LOGSCL
    st[20] = nb = 0 if nb < 0 else 18432 if nb > 18432 else nb
    st[21] = _scale(nb, 8)  # SCALEL
    _adapt(st, dlow)
    return rlow


def decode_high(st: list[int], ihigh: int) -> int:
    """One 2-bit high-band code -> reconstructed high-band sample (8 kHz); updates ``st``."""
    dhigh = (st[21] * _QM2[ihigh]) >> 15  # INVQAH
    rhigh = dhigh + st[0]
    rhigh = -16384 if rhigh < -16384 else 16383 if rhigh > 16383 else rhigh
    nb = ((st[20] * 127) >> 7) + _WH[_RH2[ihigh]]  # LOGSCH
    st[20] = nb = 0 if nb < 0 else 22528 if nb > 22528 else nb
    st[21] = _scale(nb, 10)  # SCALEH
    _adapt(st, dhigh)
    return rhigh


def qmf_synthesis(rlow: npt.NDArray[np.int64], rhigh: npt.NDArray[np.int64]) -> npt.NDArray[np.int16]:
    """Receive QMF: two 8 kHz sub-band signals -> int16 at 16 kHz (two samples per pair)."""
    sums = np.asarray(rlow, dtype=np.int64) + rhigh
    diffs = np.asarray(rlow, dtype=np.int64) - rhigh
    n = len(sums)
    if n == 0:
        return np.zeros(0, np.int16)
    # Receive QMF over the interleaved history x = [..., sum_k, diff_k, ...]: the first output
    # of pair k weights the odd (diff) taps by the reversed coefficients, the second the even
    # (sum) taps. With 11 pairs of zero history in front, both are plain FIR filters.
    xs = np.concatenate([np.zeros(11, np.int64), sums])
    xd = np.concatenate([np.zeros(11, np.int64), diffs])
    out1 = np.convolve(xd, _QMF, mode="valid")  # sum_i diff[k-11+i] * c[11-i]
    out2 = np.convolve(xs, _QMF[::-1], mode="valid")  # sum_i sum[k-11+i] * c[i]
    out = np.empty(2 * n, dtype=np.int64)
    out[0::2] = out1 >> 11
    out[1::2] = out2 >> 11
    return np.clip(out, -32768, 32767).astype(np.int16)


def decode_g722(data: bytes) -> npt.NDArray[np.int16]:
    """Raw 64 kbit/s G.722 bytes (high 2 bits: high band, low 6 bits: low band) -> int16
    samples at 16 kHz, two per byte. Example: 8000 bytes (one second) -> 16000 samples."""
    low, high = new_band_state(True), new_band_state(False)
    rlow = np.fromiter((decode_low(low, c & 0x3F) for c in data), dtype=np.int64, count=len(data))
    rhigh = np.fromiter((decode_high(high, c >> 6) for c in data), dtype=np.int64, count=len(data))
    return qmf_synthesis(rlow, rhigh)
