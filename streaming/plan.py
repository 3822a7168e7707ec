"""The stream plan: every windowing decision of an engine, made once.

What goes through the model for which frames depends on the window settings
(:class:`~streaming.windows.WindowConfig`) *and* on facts of the model: whether
its conv features are local (a frame's features depend only on its own 400
samples, so they can be reused between overlapping windows), how many past
frames its positional convolution needs, and whether it was trained on
normalised audio.  :func:`plan_stream` combines them into one frozen
:class:`StreamPlan`; the engine, the window scheduler, the server and the
command line read it and never work the policy out again.
"""

from __future__ import annotations

from dataclasses import dataclass

from .normalization import NORMALIZATION_MODES
from .windows import (
    RECOMPUTED_LEFT_CONTEXT_S,
    FrameGeometry,
    Window,
    WindowConfig,
    chunk_ready,
    num_frames,
    plan_window,
    seconds_to_frames,
)

__all__ = ["StreamPlan", "plan_stream"]


@dataclass(frozen=True)
class StreamPlan:
    """How one engine cuts every stream into windows (all sizes in frames)."""

    geometry: FrameGeometry
    chunk_frames: int  # output frames each window keeps
    # Left context recomputed inside each window; 0 with attention memory, whose
    # past comes from cached keys and values instead.
    left_frames: int
    right_frames: int  # look-ahead every kept frame hears
    memory: bool  # left context as each layer's cached keys and values (Transformer-XL style)
    memory_frames: int  # frames of keys and values kept per layer (0 without memory)
    pos_context_frames: int  # past conv features the positional conv sees (memory only, else 0)
    normalization: str  # the mode in effect: "running", "window" or "none"
    reuse_features: bool  # overlap conv features are cached, not recomputed
    # Why the plan gives less than the settings asked for (the engine logs it), else None.
    fallback: str | None = None

    @property
    def chunk_seconds(self) -> float:
        """Seconds of stream one window moves the decoder forward: 50 frames -> 1.0."""
        return self.chunk_frames * self.geometry.frame_seconds

    @property
    def one_window_in_flight(self) -> bool:
        """With feature reuse a window needs the features its predecessor computes."""
        return self.reuse_features

    # ``grid`` below is (first chunk index, its first frame) of the chunk grid in
    # effect: a reset ends a chunk early and the grid restarts at its frame.

    def chunk_start(self, index: int, grid: tuple[int, int] = (0, 0)) -> int:
        """First output frame of chunk ``index``: chunk 5 after a reset at frame 180 that began chunk 4 -> 230."""
        return grid[1] + (index - grid[0]) * self.chunk_frames

    def window(self, index: int, total_frames: int | None, *, grid: tuple[int, int] = (0, 0)) -> Window:
        """Chunk ``index``'s window (``total_frames`` once the end of the audio to decode is known)."""
        return plan_window(index, self.chunk_frames, self.left_frames, self.right_frames, total_frames, grid=grid)

    def ready(self, index: int, available_frames: int, *, grid: tuple[int, int] = (0, 0)) -> bool:
        """Whether chunk ``index`` has its full look-ahead in ``available_frames``."""
        return chunk_ready(index, self.chunk_frames, self.right_frames, available_frames, grid=grid)

    def first_needed_frame(self, next_index: int, *, grid: tuple[int, int] = (0, 0)) -> int:
        """First frame (conv features included) any window from chunk ``next_index`` on needs."""
        return max(0, self.chunk_start(next_index, grid) - self.left_frames - self.pos_context_frames)

    def windows(self, total_frames: int) -> list[Window]:
        """Every window of a stream known whole (``total_frames`` of it), in order.

        >>> p = plan_stream(WindowConfig(chunk_s=1.0, left_context_s=0.4, right_context_s=0.2, memory=False),
        ...                 FrameGeometry(), features_are_local=True, pos_context_frames=4, do_normalize=True)
        >>> [(w.frame_start, w.keep_start, w.keep_end, w.frame_end) for w in p.windows(120)]
        [(0, 0, 50, 60), (30, 50, 100, 110), (80, 100, 120, 120)]
        >>> [(w.keep_start, w.keep_end) for w in p.windows(105)]  # the last window keeps its look-ahead
        [(0, 50), (50, 105)]
        """
        out = [self.window(0, total_frames)]
        while out[-1].keep_end < total_frames:
            out.append(self.window(len(out), total_frames))
        return out

    def sample_range(self, window: Window, total_samples: int | None = None) -> tuple[int, int]:
        """Samples ``[start, end)`` that go through the model for ``window``.

        ``total_samples``: the stream's length once it is known.  Its last window
        takes the tail too (< 1 hop): no frame needs those samples, but GroupNorm
        convs normalise over every sample, as a full forward does.  Frames [100, 170)
        of a stream of 54600 samples (170 frames and 120 samples more):

        >>> p = plan_stream(WindowConfig(), FrameGeometry(), features_are_local=True, pos_context_frames=4,
        ...                 do_normalize=True)
        >>> w = Window(index=2, frame_start=100, frame_end=170, keep_start=100, keep_end=150)
        >>> p.sample_range(w), p.sample_range(w, 54_600)
        ((32000, 54480), (32000, 54600))
        """
        start, end = window.sample_range(self.geometry)
        if total_samples is not None and window.frame_end == num_frames(total_samples, self.geometry):
            end = total_samples
        return start, end

    def feature_start(self, window: Window) -> int:
        """First conv-feature frame ``window`` needs: with attention memory the positional
        conv also sees up to ``pos_context_frames`` real frames before the window
        (frames [100, 170) with 4 -> 96; 0 without memory -> 100)."""
        return max(0, window.frame_start - self.pos_context_frames)

    def memory_start(self, window: Window) -> int:
        """First frame whose keys and values ``window`` attends to from attention memory:
        the window's frames attend to ``[memory_start, frame_start)`` as well as to their
        own (frames [400, 470) with 300 frames of memory -> 100; frame 100 -> 0)."""
        return max(0, window.frame_start - self.memory_frames)


def plan_stream(
    window: WindowConfig,
    geometry: FrameGeometry,
    *,
    features_are_local: bool,
    pos_context_frames: int,
    do_normalize: bool,
    normalization: str = "running",
    reuse_features: bool = True,
) -> StreamPlan:
    """The plan for ``window`` settings on a model with these facts.

    The defaults on a local ("layer") model with a 4-frame positional context:
    0.6 s chunks, 0.4 s look-ahead, 6 s of attention memory and no recomputed context:

    >>> local = dict(features_are_local=True, pos_context_frames=4, do_normalize=True)
    >>> p = plan_stream(WindowConfig(), FrameGeometry(), **local)
    >>> p.chunk_frames, p.left_frames, p.right_frames, p.memory_frames, p.pos_context_frames
    (30, 0, 20, 300, 4)
    >>> p.normalization, p.reuse_features, p.chunk_seconds
    ('running', True, 0.6)

    Per-window normalisation rescales every sample in every window, so features
    cannot be reused, and memory falls back to 0.6 s of recomputed context:

    >>> p = plan_stream(WindowConfig(), FrameGeometry(), **local, normalization="window")
    >>> p.memory, p.left_frames, p.reuse_features, p.pos_context_frames
    (False, 30, False, 0)

    A model trained without ``do_normalize`` gets its samples as they are:

    >>> plan_stream(WindowConfig(), FrameGeometry(), features_are_local=True, pos_context_frames=4,
    ...             do_normalize=False).normalization
    'none'
    """
    if normalization not in NORMALIZATION_MODES:
        raise ValueError(f"normalization must be one of {NORMALIZATION_MODES}, got {normalization!r}")
    chunk, left, right = window.frames(geometry)
    mode = normalization if do_normalize else "none"
    # Reusing conv features is exact only when a frame's features depend on
    # its own 400 samples: a local encoder, and samples scaled once.
    reuse = reuse_features and features_are_local and mode != "window"
    # Attention memory: windows hold no recomputed left context; the left
    # context is each layer's cached inputs (memory_frames of them), and the
    # positional convolution sees pos_context_frames of real past features.
    memory = window.memory and reuse
    fallback = None
    if window.memory and not memory:
        # Recomputing seconds of context in every window would cost several
        # offline passes: fall back to the short recomputed context.
        recomputed = seconds_to_frames(RECOMPUTED_LEFT_CONTEXT_S, geometry)
        if left > recomputed:
            fallback = (
                "attention memory needs a local conv front end (feat_extract_norm='layer') and running "
                f"or no normalization; recomputing {RECOMPUTED_LEFT_CONTEXT_S:.1f} s of left context "
                f"instead of {window.left_context_s:.1f} s"
            )
            left = recomputed
    return StreamPlan(
        geometry=geometry,
        chunk_frames=chunk,
        left_frames=0 if memory else left,
        right_frames=right,
        memory=memory,
        memory_frames=left if memory else 0,
        pos_context_frames=pos_context_frames if memory else 0,
        normalization=mode,
        reuse_features=reuse,
        fallback=fallback,
    )
