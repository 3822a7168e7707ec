"""Per-stream window bookkeeping: audio in, window requests out, outputs in, stitched frames out.

A :class:`WindowScheduler` follows its engine's :class:`~streaming.plan.StreamPlan`:
it buffers the stream's samples (already at the model's rate), scales them once
with running statistics, hands out a :class:`~streaming.stitching.WindowRequest`
for each chunk whose look-ahead has arrived, and takes the model's
:class:`~streaming.stitching.WindowOutput` back, keeping the conv-feature cache
and the attention memory up to date and returning the chunk's frames.  It does
no decoding: that is the recognizer's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .arrays import FloatArray
from .errors import StreamStateError
from .normalization import RunningStats, normalize_utterance, scale_running
from .plan import StreamPlan
from .stitching import FeatureCache, WindowOutput, WindowRequest
from .windows import Window, num_frames

__all__ = ["StitchedFrames", "WindowScheduler", "running_normalized"]


@dataclass(frozen=True, eq=False)
class StitchedFrames:
    """One window's contribution to the stream's frame sequence."""

    frames: FloatArray  # (chunk frames, vocab) log-probs, final: the stream's next frames
    lookahead: FloatArray  # (right frames, vocab) log-probs of the look-ahead, provisional


def running_normalized(plan: StreamPlan, samples: FloatArray) -> FloatArray:
    """A whole stream's samples as its scheduler scales them under ``running`` normalisation:
    each once, with the statistics of the stream up to the end of the first window that
    holds it (the training recipe feeds its streamed batches this way).

    Windows of 0.2 s + 0.1 s look-ahead: the first 0.3 s are scaled with their own
    statistics, and the quiet start comes out louder than a whole-utterance scaling makes it:

    >>> from streaming.plan import plan_stream
    >>> from streaming.windows import FrameGeometry, WindowConfig
    >>> plan = plan_stream(WindowConfig(chunk_s=0.2, left_context_s=0.0, right_context_s=0.1, memory=False),
    ...                    FrameGeometry(), features_are_local=True, pos_context_frames=0, do_normalize=True)
    >>> x = np.concatenate([0.1 * np.sin(np.arange(8000)), np.sin(np.arange(8000))]).astype(np.float32)
    >>> float(np.std(running_normalized(plan, x)[:4000])) > 2 * float(np.std(normalize_utterance(x)[:4000]))
    True
    """
    total = samples.size
    ends = [plan.sample_range(window, total)[1] for window in plan.windows(num_frames(total, plan.geometry))]
    return scale_running(samples, ends)


class WindowScheduler:
    """Windows of one stream, in order; at most one in flight when features are reused."""

    def __init__(self, plan: StreamPlan, *, stream_id: int, vocab_size: int) -> None:
        self.plan = plan
        self.stream_id = stream_id
        self._vocab_size = vocab_size
        self._stats = RunningStats()
        # Audio on the model's time line: samples [_buf_start, _buf_start + len(_buf)).
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0
        self._scaled_upto = 0  # samples before this index are already normalized
        self.total_samples = 0
        self._total_frames: int | None = None  # known once finish() was called
        self._next_request = 0  # chunk index of the next window to hand out
        self._next_output = 0  # chunk index whose output is expected next
        # (chunk index, frame) where the chunk grid starts: moved by each reset,
        # whose last chunk ends early at the reset's frame.
        self._grid = (0, 0)
        self._flush_to: int | None = None  # a flush's frame, until everything before it is decoded
        self._flush_ahead: int | None = None  # a probe's flush: the frames its window may hear past _flush_to
        self._in_flight = 0
        self._features = FeatureCache()
        # Attention memory: each layer's keys and values for the last memory_frames frames.
        self._memory: FloatArray | None = None  # (layers, frames, 2 * hidden)

    # ----------------------------------------------------------------- input
    def accept(self, samples: FloatArray) -> None:
        """Append float32 samples at the model's rate."""
        if samples.size == 0:
            return
        if self._total_frames is not None:
            raise StreamStateError("audio after finish(): open a new stream for more audio")
        self._buf = np.concatenate([self._buf, samples])
        self.total_samples += samples.size

    def finish(self) -> None:
        """No more audio: the last windows may be short."""
        self._total_frames = num_frames(self.total_samples, self.plan.geometry)

    def flush(self, keep_back: int = 0) -> bool:
        """A reset: every frame of the audio so far goes out, the last window without
        the look-ahead it would have waited for; the chunk grid restarts there.

        An endpoint probe between chunks (``keep_back`` > 0): the frames up to that many
        before the end of the audio go out, and the last window hears the rest as a short
        look-ahead.  False (nothing to do) when that leaves no frame to decode.
        """
        available = num_frames(self.total_samples, self.plan.geometry)
        end = available - keep_back
        if keep_back and (self._flush_to is not None or end <= self._chunk_start(self._next_request)):
            return False
        self._flush_to = end
        self._flush_ahead = available if keep_back else None
        return True

    def end_flush(self) -> bool:
        """Once every frame before a pending flush's point has come back, restart the chunk
        grid there; True then if it was a reset's (a probe's leaves the segment to the endpointer)."""
        if self._flush_to is None or self._in_flight or self._chunk_start(self._next_request) < self._flush_to:
            return False
        reset = self._flush_ahead is None
        self._grid = (self._next_request, self._flush_to)
        self._flush_to = self._flush_ahead = None
        return reset

    @property
    def idle(self) -> bool:
        """Nothing in flight or ready to hand out, no flush pending, the end not known: until
        more audio comes, the model has heard every window it is going to."""
        if self._in_flight or self._flush_to is not None or self._total_frames is not None:
            return False
        available = num_frames(self.total_samples, self.plan.geometry)
        return not self.plan.ready(self._next_request, available, grid=self._grid)

    @property
    def memory(self) -> FloatArray | None:
        """The attention memory: (layers, frames, 2 * hidden), None before the first output."""
        return self._memory

    @property
    def done(self) -> bool:
        """After finish(): every window was handed out and came back."""
        return (
            self._flush_to is None
            and self._in_flight == 0
            and self._total_frames is not None
            and self._chunk_start(self._next_output) >= self._total_frames
        )

    # --------------------------------------------------------------- windows
    def take(self) -> list[WindowRequest]:
        """Windows whose audio is complete, in order."""
        plan = self.plan
        if plan.one_window_in_flight and self._in_flight:
            # The next window's overlap features are still being computed.
            return []
        requests: list[WindowRequest] = []
        available = num_frames(self.total_samples, plan.geometry)
        end = self._flush_to if self._flush_to is not None else self._total_frames
        while True:
            k = self._next_request
            if end is not None:
                if self._chunk_start(k) >= end:
                    break
                window = plan.window(k, end if self._flush_ahead is None else self._flush_ahead, grid=self._grid)
                if window.keep_end > end:  # a probe's window: what it hears past its end is look-ahead
                    window = replace(window, keep_end=end)
            elif plan.ready(k, available, grid=self._grid):
                window = plan.window(k, None, grid=self._grid)
            else:
                break
            requests.append(self._request(window))
            self._next_request += 1
            self._in_flight += 1
            if end is not None and window.keep_end == end and self._chunk_start(self._next_request) < end:
                # It kept its look-ahead up to the end (plan_window): the next chunk starts there.
                self._grid = (self._next_request, end)
            if plan.one_window_in_flight:
                break
        self._trim_buffer()
        return requests

    def accept_output(self, request: WindowRequest, output: WindowOutput) -> StitchedFrames:
        """Take the model's output for the oldest window in flight; returns its frames."""
        window = request.window
        if request.stream_id != self.stream_id:
            raise StreamStateError(f"window of stream {request.stream_id} given to stream {self.stream_id}")
        if window.index != self._next_output:
            raise StreamStateError(f"expected output of chunk {self._next_output}, got chunk {window.index}")
        if output.log_probs.ndim != 2 or output.log_probs.shape[1] != self._vocab_size:
            raise ValueError(
                f"log-probs have shape {output.log_probs.shape}, expected (frames, {self._vocab_size})"
            )
        if output.new_features is not None:
            self._features.append(request.new_frame_start, output.new_features)
        kept = output.kept(window)  # (chunk frames, vocab)
        if self.plan.memory:
            self._remember(output, window)
        self._next_output += 1
        self._in_flight -= 1
        self._features.drop_before(self._next_window_start())
        return StitchedFrames(kept, output.log_probs[window.keep_slice().stop :])  # look-ahead: (right, vocab)

    # --------------------------------------------------------------- internals
    def _remember(self, output: WindowOutput, window: Window) -> None:
        """Append the chunk frames' keys and values to the attention memory, keep the newest."""
        if output.keys_values is None:
            raise ValueError("a window with attention memory came back without its keys and values")
        new = output.keys_values[:, window.keep_slice()]  # (layers, chunk frames, 2 * hidden)
        memory = new if self._memory is None else np.concatenate([self._memory, new], axis=1)
        frames = self.plan.memory_frames
        self._memory = memory[:, -frames:] if frames else memory[:, :0]

    def _chunk_start(self, index: int) -> int:
        """First output frame of chunk ``index`` on the current grid; a pending reset's
        frame at the latest, since the grid restarts there."""
        start = self.plan.chunk_start(index, self._grid)
        return start if self._flush_to is None else min(start, self._flush_to)

    def _next_window_start(self) -> int:
        """First frame any window not yet handed out will need (conv features included)."""
        grid = self._grid if self._flush_to is None else (self._next_request, self._chunk_start(self._next_request))
        return self.plan.first_needed_frame(self._next_request, grid=grid)

    def _trim_buffer(self) -> None:
        keep_from = self.plan.geometry.frame_start_sample(self._next_window_start())
        if keep_from > self._buf_start:
            cut = min(keep_from - self._buf_start, self._buf.size)
            self._buf = self._buf[cut:]
            self._buf_start += cut

    def _samples(self, start: int, end: int) -> FloatArray:
        if start < self._buf_start or end > self._buf_start + self._buf.size:
            raise StreamStateError(
                f"samples [{start}, {end}) requested, buffer holds "
                f"[{self._buf_start}, {self._buf_start + self._buf.size})"
            )
        return self._buf[start - self._buf_start : end - self._buf_start]

    def _request(self, window: Window) -> WindowRequest:
        plan = self.plan
        geometry = plan.geometry
        start, end = plan.sample_range(window, self.total_samples if self._total_frames is not None else None)
        if plan.normalization == "running" and end > self._scaled_upto:
            # Scale new samples once, with the statistics of the stream up to this
            # window's end: independent of how the client cut its blocks.
            seg = slice(self._scaled_upto - self._buf_start, end - self._buf_start)
            self._buf[seg] = self._stats.scale_new(self._buf[seg])
            self._scaled_upto = end
        if not plan.reuse_features:
            samples = self._samples(start, end).copy()
            if plan.normalization == "window":
                samples = normalize_utterance(samples)
            return WindowRequest(self.stream_id, window, samples, window.frame_start)
        new_start = max(window.frame_start, min(self._features.end, window.frame_end))
        feature_start = plan.feature_start(window)
        cached = self._features.take(feature_start, new_start)
        samples = self._samples(geometry.frame_start_sample(new_start), end).copy()
        return WindowRequest(
            self.stream_id, window, samples, new_start, cached,
            pos_context=window.frame_start - feature_start, memory=self._memory,
        )

