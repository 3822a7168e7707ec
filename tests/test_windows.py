"""Properties of the window arithmetic and of stitching with a local 'model'."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.windows import (
    FrameGeometry,
    WindowConfig,
    chunk_ready,
    num_frames,
    plan_window,
    seconds_to_frames,
)

GEO = FrameGeometry()
sizes = st.tuples(st.integers(1, 80), st.integers(0, 80), st.integers(0, 40))


def windows_for(total_frames: int, chunk: int, left: int, right: int):
    k, kept_to = 0, 0
    while kept_to < total_frames:
        w = plan_window(k, chunk, left, right, total_frames)
        kept_to = w.keep_end
        yield w
        k += 1


@given(sizes, st.integers(1, 2_000))
def test_kept_frames_tile_the_stream_exactly(cfg, total):
    chunk, left, right = cfg
    kept = []
    windows = list(windows_for(total, chunk, left, right))
    for w in windows:
        assert w.frame_start <= w.keep_start < w.keep_end <= w.frame_end <= total
        assert w.keep_start - w.frame_start == min(left, w.keep_start)
        assert w.frame_end - w.keep_end == min(right, total - w.keep_end)
        # a chunk keeps its own frames, and the last one also the look-ahead that reaches the end
        kept_here = w.keep_end - w.keep_start
        assert kept_here <= chunk or (w.keep_end == total and kept_here <= chunk + right)
        kept.extend(range(w.keep_start, w.keep_end))
    assert kept == list(range(total))
    # one window per chunk, less one where the look-ahead of the one before reached the end
    assert len(windows) == -(-max(total - right, 1) // chunk)


@given(sizes, st.integers(1, 2_000))
def test_window_samples_make_exactly_its_frames(cfg, total):
    chunk, left, right = cfg
    total_samples = GEO.frames_end_sample(total)
    assert num_frames(total_samples) == total
    for w in windows_for(total, chunk, left, right):
        start, end = w.sample_range()
        assert 0 <= start < end <= total_samples
        assert start == w.frame_start * 320
        assert num_frames(end - start) == w.num_frames


@given(st.integers(0, 10**6))
def test_num_frames_matches_the_conv_stack(n):
    # Apply the standard wav2vec2 conv stack's length formula layer by layer.
    length = n
    for kernel, stride in [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2:
        length = max(0, (length - kernel) // stride + 1) if length >= kernel else 0
    assert num_frames(n) == length


@given(sizes, st.integers(0, 400))
def test_chunk_ready_is_monotonic_and_needs_the_look_ahead(cfg, available):
    chunk, _, right = cfg
    k = 0
    while chunk_ready(k, chunk, right, available):
        w = plan_window(k, chunk, 0, right, None)
        assert w.frame_end <= available
        k += 1
    assert not chunk_ready(k + 1, chunk, right, available)


@settings(max_examples=40, deadline=None)
@given(sizes, st.integers(1, 300), st.integers(0, 2**32 - 1))
def test_stitching_a_local_model_equals_the_full_forward(cfg, total, seed):
    """Frame f of this 'model' depends on samples [320f - 640, 320f + 1040): with at
    least 2 frames of context on each side, stitched windows equal the full pass."""
    chunk, left, right = cfg
    left, right = max(left, 2), max(right, 2)
    samples = np.random.default_rng(seed).standard_normal(GEO.frames_end_sample(total)).astype(np.float32)

    def model(x: np.ndarray) -> np.ndarray:
        frames = num_frames(x.shape[0])
        own = np.array([x[320 * f : 320 * f + 400].sum() for f in range(frames)])
        padded = np.pad(own, 2)  # zero padding at the edges, like a 'same' conv
        return padded[:-4] + 2 * padded[1:-3] + 3 * padded[2:-2] + 5 * padded[3:-1] + 7 * padded[4:]

    full = model(samples)
    stitched = np.concatenate(
        [model(samples[slice(*w.sample_range())])[w.keep_slice()] for w in windows_for(total, chunk, left, right)]
    )
    np.testing.assert_allclose(stitched, full, rtol=1e-5, atol=1e-4)


def test_window_config_rejects_off_grid_and_out_of_range_values():
    assert WindowConfig().frames() == (30, 300, 20)
    with pytest.raises(ValueError, match="chunk_s 0.63 s is not a multiple of the 0.02 s frame"):
        WindowConfig(chunk_s=0.63)
    with pytest.raises(ValueError, match=r"right_context_s must be in 0.0..10.0 s, got -1"):
        WindowConfig(right_context_s=-1)
    assert seconds_to_frames(2.4) == 120
