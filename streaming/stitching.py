"""Stitching: from overlapping windows back to one frame sequence.

Each window is computed with left context and right look-ahead, but only its
chunk frames are kept (``Window.keep_slice``): those are the frames for which
this window gives the most context on both sides that any window gives.
Windows start on frame boundaries, so kept frames are the stream's frames in
order, one-to-one with a full-utterance forward.

For models whose conv feature encoder is local (``feat_extract_norm="layer"``),
the conv features of the overlap are not recomputed: a :class:`FeatureCache`
keeps the features of frames that later windows will need again, and a
:class:`WindowRequest` carries the cached part plus only the samples for the
frames no window has computed yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .arrays import FloatArray
from .errors import StreamStateError
from .windows import Window

__all__ = ["FeatureCache", "WindowOutput", "WindowRequest"]


@dataclass(frozen=True, eq=False)
class WindowRequest:
    """Work for the acoustic model: one window of one stream.

    Without feature reuse, ``samples`` is the whole window and
    ``cached_features`` is None.  With reuse, ``cached_features`` holds frames
    ``[window.frame_start - pos_context, new_frame_start)`` and ``samples`` just
    covers frames ``[new_frame_start, window.frame_end)``.
    """

    stream_id: int
    window: Window
    samples: FloatArray  # (samples,) float32, already normalized
    new_frame_start: int
    cached_features: FloatArray | None = None  # (frames, conv_dim) float32
    # Attention memory (``WindowConfig.memory``): the window's first ``pos_context``
    # feature frames only feed the positional convolution, and ``memory`` holds each
    # layer's keys and values for the frames before the window.
    pos_context: int = 0
    memory: FloatArray | None = None  # (layers, mem frames, 2 * hidden) float32

    @property
    def num_new_frames(self) -> int:
        return self.window.frame_end - self.new_frame_start


@dataclass(frozen=True, eq=False)
class WindowOutput:
    """What the model made of a :class:`WindowRequest`."""

    log_probs: FloatArray  # (window frames, vocab) float32 log-softmax
    new_features: FloatArray | None = None  # (new frames, conv_dim) when reusing features
    keys_values: FloatArray | None = None  # (layers, window frames, 2 * hidden) with attention memory

    def kept(self, window: Window) -> FloatArray:
        """The chunk's frames: (keep_end - keep_start, vocab)."""
        if self.log_probs.shape[0] != window.num_frames:
            raise ValueError(
                f"model returned {self.log_probs.shape[0]} frames for a window of {window.num_frames}"
            )
        return self.log_probs[window.keep_slice()]


@dataclass
class FeatureCache:
    """Conv features of frames ``[start, start + len(features))`` of one stream."""

    start: int = 0
    features: FloatArray | None = field(default=None)  # (frames, conv_dim)

    @property
    def end(self) -> int:
        return self.start + (0 if self.features is None else self.features.shape[0])

    def take(self, frame_start: int, frame_end: int) -> FloatArray | None:
        """Cached features for ``[frame_start, min(frame_end, self.end))``, or None if empty."""
        if self.features is None or frame_start >= self.end:
            return None
        if frame_start < self.start:
            raise StreamStateError(
                f"feature cache starts at frame {self.start}, window needs frame {frame_start}"
            )
        return self.features[frame_start - self.start : min(frame_end, self.end) - self.start]

    def append(self, first_frame: int, features: FloatArray) -> None:
        if first_frame != self.end and self.features is not None:
            raise StreamStateError(f"features for frame {first_frame} appended at cache end {self.end}")
        if self.features is None:
            self.start, self.features = first_frame, features
        else:
            self.features = np.concatenate([self.features, features], axis=0)

    def drop_before(self, frame: int) -> None:
        """Forget frames no future window needs (keeps memory flat)."""
        if self.features is None or frame <= self.start:
            return
        cut = min(frame, self.end) - self.start
        self.features = self.features[cut:]
        self.start += cut
