"""The window scheduler alone: audio in, window requests out, outputs in, stitched frames out."""

from __future__ import annotations

import numpy as np
import pytest

from streaming.errors import StreamStateError
from streaming.plan import plan_stream
from streaming.stitching import WindowOutput
from streaming.window_scheduler import WindowScheduler
from streaming.windows import FrameGeometry, WindowConfig, num_frames


def _frame_numbers(first: int, last: int, vocab: int = 3) -> np.ndarray:
    """Log-probs whose every column holds the global frame number: (frames, vocab)."""
    return np.repeat(np.arange(first, last, dtype=np.float32)[:, None], vocab, axis=1)


@pytest.mark.parametrize("block", [160, 1234, 40_000])
def test_windows_tile_the_stream_and_stitch_back_in_order(block: int) -> None:
    plan = plan_stream(WindowConfig(chunk_s=0.5, left_context_s=0.2, right_context_s=0.2, memory=False),
                       FrameGeometry(), features_are_local=False, pos_context_frames=0, do_normalize=False)
    scheduler = WindowScheduler(plan, stream_id=7, vocab_size=3)
    total = 40_000
    audio = np.random.default_rng(0).standard_normal(total).astype(np.float32)
    frames, lookaheads = [], []

    def serve() -> None:
        for request in scheduler.take():
            w = request.window
            start, end = w.sample_range(plan.geometry)
            # Whole windows, samples as they came (no normalisation): the window's own audio.
            np.testing.assert_array_equal(request.samples[: end - start], audio[start:end])
            out = scheduler.accept_output(request, WindowOutput(_frame_numbers(w.frame_start, w.frame_end)))
            frames.append(out.frames[:, 0])
            lookaheads.append(out.lookahead.shape[0])

    for i in range(0, total, block):
        scheduler.accept(audio[i : i + block])
        serve()
    assert not scheduler.done
    scheduler.finish()
    serve()
    assert scheduler.done and scheduler.total_samples == total
    np.testing.assert_array_equal(np.concatenate(frames), np.arange(num_frames(total)))
    assert lookaheads[:-1] == [plan.right_frames] * (len(lookaheads) - 1)


def test_outputs_out_of_order_or_of_another_stream_are_refused() -> None:
    plan = plan_stream(WindowConfig(chunk_s=0.2, left_context_s=0.0, right_context_s=0.0, memory=False),
                       FrameGeometry(), features_are_local=False, pos_context_frames=0, do_normalize=False)
    scheduler = WindowScheduler(plan, stream_id=1, vocab_size=3)
    scheduler.accept(np.zeros(16_000, np.float32))
    first, second = scheduler.take()[:2]
    with pytest.raises(StreamStateError, match="expected output of chunk 0, got chunk 1"):
        scheduler.accept_output(second, WindowOutput(_frame_numbers(10, 20)))
    other = WindowScheduler(plan, stream_id=2, vocab_size=3)
    with pytest.raises(StreamStateError, match="window of stream 1 given to stream 2"):
        other.accept_output(first, WindowOutput(_frame_numbers(0, 10)))
    with pytest.raises(ValueError, match=r"expected \(frames, 3\)"):
        scheduler.accept_output(first, WindowOutput(np.zeros((10, 4), np.float32)))
    scheduler.accept_output(first, WindowOutput(_frame_numbers(0, 10)))  # nothing was lost


@pytest.mark.parametrize("seconds", [0.3, 0.9, 1.1, 1.55, 2.0, 3.37])
def test_the_last_window_keeps_the_look_ahead_that_reaches_the_end(seconds: float) -> None:
    """After finish(), a chunk whose look-ahead reaches the end keeps those frames: no
    further window recomputes them (a fifth of the windows of short commands did)."""
    plan = plan_stream(WindowConfig(chunk_s=0.6, left_context_s=0.2, right_context_s=0.4, memory=False),
                       FrameGeometry(), features_are_local=False, pos_context_frames=0, do_normalize=False)
    scheduler = WindowScheduler(plan, stream_id=3, vocab_size=3)
    total = int(seconds * 16_000)
    frames, windows = [], []
    scheduler.accept(np.zeros(total, np.float32))
    scheduler.finish()
    while requests := scheduler.take():
        for request in requests:
            w = request.window
            windows.append(w)
            frames.append(scheduler.accept_output(request, WindowOutput(_frame_numbers(w.frame_start, w.frame_end)))
                          .frames[:, 0])
    n = num_frames(total)
    assert scheduler.done
    np.testing.assert_array_equal(np.concatenate(frames), np.arange(n))
    # every window but the last ends with its full look-ahead; the last ends with the audio
    assert [w.frame_end - w.keep_end for w in windows[:-1]] == [plan.right_frames] * (len(windows) - 1)
    assert windows[-1].frame_end == windows[-1].keep_end == n
    assert len(windows) == -(-max(n - plan.right_frames, 1) // plan.chunk_frames)
