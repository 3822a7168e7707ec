"""Window arithmetic: which samples go through the model for which output frames.

wav2vec2's convolutional feature encoder turns 16 kHz samples into one frame
every ``hop`` = 320 samples (20 ms); frame ``f`` is computed from samples
``[f * hop, f * hop + receptive_field)`` with ``receptive_field`` = 400.  A
stream is cut into *chunks* of ``C`` frames.  Chunk ``k`` owns the output frames
``[k*C, (k+1)*C)`` and is computed in a *window* that adds up to ``L`` frames of
left context before it and ``R`` frames of right look-ahead after it.  Every
window starts on a frame boundary, so window frame ``i`` is exactly global frame
``window.frame_start + i``: stitching is slicing, and the stitched frames line up
one-to-one with those of a full-utterance forward.

All functions here are pure and work in integers (frames and samples); the
worked examples use the standard hop 320 / receptive field 400 at 16 kHz.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "RECOMPUTED_LEFT_CONTEXT_S",
    "FrameGeometry",
    "Window",
    "WindowConfig",
    "MEMORY_LEFT_CONTEXT_S",
    "chunk_ready",
    "default_left_context_s",
    "num_frames",
    "plan_window",
    "seconds_to_frames",
]


@dataclass(frozen=True)
class FrameGeometry:
    """How a model maps samples to frames."""

    hop_samples: int = 320  # product of the conv strides (5*2*2*2*2*2*2)
    receptive_field_samples: int = 400  # samples one conv-encoder frame sees
    sample_rate: int = 16_000

    def __post_init__(self) -> None:
        if self.hop_samples <= 0:
            raise ValueError(f"hop_samples must be > 0, got {self.hop_samples}")
        if self.receptive_field_samples < self.hop_samples:
            raise ValueError(
                f"receptive_field_samples must be >= hop_samples ({self.hop_samples}), "
                f"got {self.receptive_field_samples}"
            )

    @property
    def frame_seconds(self) -> float:
        """Seconds between frames: 320 / 16000 = 0.02."""
        return self.hop_samples / self.sample_rate

    def frame_start_sample(self, frame: int) -> int:
        """First sample of ``frame``: frame 3 starts at sample 960."""
        return frame * self.hop_samples

    def frames_end_sample(self, frame_end: int) -> int:
        """One past the last sample needed for frames ``[.., frame_end)``.

        Frames [0, 50) need samples [0, 49*320 + 400) = [0, 16080).
        """
        if frame_end <= 0:
            return 0
        return (frame_end - 1) * self.hop_samples + self.receptive_field_samples


def num_frames(num_samples: int, geometry: FrameGeometry = FrameGeometry()) -> int:
    """Frames the conv encoder makes from ``num_samples`` samples.

    frames = floor((samples - 400) / 320) + 1, and 0 below 400 samples:

    >>> num_frames(16_000)   # one second
    49
    >>> num_frames(16_080)   # 49*320 + 400: the 50th frame just fits
    50
    >>> num_frames(399)
    0
    """
    if num_samples < geometry.receptive_field_samples:
        return 0
    return (num_samples - geometry.receptive_field_samples) // geometry.hop_samples + 1


def seconds_to_frames(seconds: float, geometry: FrameGeometry = FrameGeometry(), *, name: str = "duration") -> int:
    """Round a duration to whole frames, refusing values more than 1 ms off the grid.

    >>> seconds_to_frames(0.64)
    32
    >>> seconds_to_frames(0.5)
    25
    >>> seconds_to_frames(0.63)
    Traceback (most recent call last):
    ...
    ValueError: duration 0.63 s is not a multiple of the 0.02 s frame period (nearest: 0.62 s or 0.64 s)
    """
    period = geometry.frame_seconds
    frames = round(seconds / period)
    if abs(frames * period - seconds) > 1e-3:
        lower = int(seconds // period)
        raise ValueError(
            f"{name} {seconds:g} s is not a multiple of the {period:g} s frame period "
            f"(nearest: {lower * period:.2f} s or {(lower + 1) * period:.2f} s)"
        )
    return frames


# Left context when it is recomputed in every window (memory=False): its cost
# grows with its length, so it stays short.
RECOMPUTED_LEFT_CONTEXT_S = 0.6
# Left context kept as attention memory: 6 s cost no more than 0.6 s recomputed
# (docs/MEASUREMENTS.md); longer gains nothing.
MEMORY_LEFT_CONTEXT_S = 6.0


def default_left_context_s(memory: bool) -> float:
    """The left context a mode gets unless one is asked for.

    >>> default_left_context_s(True), default_left_context_s(False)
    (6.0, 0.6)
    """
    return MEMORY_LEFT_CONTEXT_S if memory else RECOMPUTED_LEFT_CONTEXT_S


@dataclass(frozen=True)
class WindowConfig:
    """Chunk size and context, in seconds (each a multiple of the 20 ms frame).

    The defaults keep live captions quick (0.6 s chunks, 0.4 s look-ahead: words on
    screen about half a second after they are spoken) and give each chunk 6 s of
    past as attention memory, which costs about what 0.6 s of recomputed context
    does.  1.0 s chunks cost less compute (1.1-1.15x offline rather than 1.4-1.55x) for twice
    the partial delay; longer chunks and look-ahead suit transcripts
    (``--chunk-s 2.0 --right-context-s 1.0``).  The figures behind this, with the
    commands that measured them, are in docs/DECODERS.md and docs/MEASUREMENTS.md.
    """

    # Output frames per window. Partials can't come faster than this, and every
    # window pays for its look-ahead (and recomputed left context) again.
    chunk_s: float = 0.6
    # Past audio the model sees. Attention is global, so frames that see less of
    # the past than a full forward does drift from it. With attention memory 6 s
    # cost no more than 0.6 s recomputed (docs/MEASUREMENTS.md); longer gains nothing.
    left_context_s: float = MEMORY_LEFT_CONTEXT_S
    # Future audio the model sees before a frame is committed. Adds directly to
    # latency; CTC models need ~0.2-0.4 s of look-ahead to place a character.
    right_context_s: float = 0.4
    # How the left context reaches the model.  False: its audio goes through the
    # transformer again in every window (exact for local models, costs
    # left/chunk extra).  True: each layer attends to its cached keys and values for
    # the last ``left_context_s`` of frames (Transformer-XL style), so past
    # context is nearly free and can be long; needs a local conv front end
    # ("layer" family), others fall back to recomputing.
    memory: bool = True

    def __post_init__(self) -> None:
        for name, low, high in (
            ("chunk_s", 0.02, 30.0),
            ("left_context_s", 0.0, 30.0),
            ("right_context_s", 0.0, 10.0),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{name} must be in {low}..{high} s, got {value}")
            seconds_to_frames(value, name=name)

    def frames(self, geometry: FrameGeometry = FrameGeometry()) -> tuple[int, int, int]:
        """(chunk, left, right) in frames: defaults give (30, 300, 20)."""
        return (
            seconds_to_frames(self.chunk_s, geometry, name="chunk_s"),
            seconds_to_frames(self.left_context_s, geometry, name="left_context_s"),
            seconds_to_frames(self.right_context_s, geometry, name="right_context_s"),
        )


@dataclass(frozen=True)
class Window:
    """One model call: frames ``[frame_start, frame_end)``, of which
    ``[keep_start, keep_end)`` are the chunk's output frames."""

    index: int  # chunk number within the stream
    frame_start: int
    frame_end: int
    keep_start: int
    keep_end: int

    @property
    def num_frames(self) -> int:
        return self.frame_end - self.frame_start

    def sample_range(self, geometry: FrameGeometry = FrameGeometry()) -> tuple[int, int]:
        """Samples the window needs: frames [100, 170) -> samples [32000, 54480)."""
        return geometry.frame_start_sample(self.frame_start), geometry.frames_end_sample(self.frame_end)

    def keep_slice(self) -> slice:
        """Rows of the window's output to keep: frames [50, 120) keeping [100, 150) -> 50:100."""
        return slice(self.keep_start - self.frame_start, self.keep_end - self.frame_start)


def plan_window(
    index: int, chunk: int, left: int, right: int, total_frames: int | None, *, grid: tuple[int, int] = (0, 0)
) -> Window:
    """The window for chunk ``index`` given chunk/left/right sizes in frames.

    ``total_frames`` is where the audio to decode ends when that is known (after
    ``finish()``, or a reset's flush point), else None (more audio will come).  Then a
    chunk whose look-ahead reaches that end keeps the look-ahead frames as well: they
    already see all the audio there is, and a further window for them alone would
    compute them again (a short utterance's last window; a fifth of all windows on
    short commands with 0.6 s chunks).  Such a window is the last one.
    ``grid`` is (first chunk index, its first frame) of the current chunk grid: a
    reset ends a chunk early, and the chunks after it start at its frame.

    >>> plan_window(0, 50, 50, 20, None)   # first chunk: no left context exists yet
    Window(index=0, frame_start=0, frame_end=70, keep_start=0, keep_end=50)
    >>> plan_window(3, 50, 50, 20, None)   # steady state: 50 + 50 + 20 frames
    Window(index=3, frame_start=100, frame_end=220, keep_start=150, keep_end=200)
    >>> plan_window(3, 50, 50, 20, 180)    # last, short chunk at end of stream
    Window(index=3, frame_start=100, frame_end=180, keep_start=150, keep_end=180)
    >>> plan_window(3, 50, 50, 20, 215)    # the stream ends in its look-ahead: it keeps all
    Window(index=3, frame_start=100, frame_end=215, keep_start=150, keep_end=215)
    >>> plan_window(4, 50, 50, 20, None, grid=(4, 180))  # the first chunk after a reset at frame 180
    Window(index=4, frame_start=130, frame_end=250, keep_start=180, keep_end=230)
    """
    keep_start = grid[1] + (index - grid[0]) * chunk
    keep_end = keep_start + chunk
    frame_end = keep_end + right
    if total_frames is not None:
        frame_end = min(frame_end, total_frames)
        keep_end = total_frames if frame_end == total_frames else keep_end
    if keep_end <= keep_start:
        raise ValueError(f"chunk {index} starts at frame {keep_start}, past the stream's {total_frames} frames")
    return Window(index, max(0, keep_start - left), frame_end, keep_start, keep_end)


def chunk_ready(
    index: int, chunk: int, right: int, available_frames: int, *, grid: tuple[int, int] = (0, 0)
) -> bool:
    """Whether enough audio has arrived to compute chunk ``index`` with its full look-ahead.

    Chunk 0 with C=50, R=20 needs 70 frames, i.e. 69*320 + 400 = 22480 samples (1.405 s):

    >>> chunk_ready(0, 50, 20, 69), chunk_ready(0, 50, 20, 70)
    (False, True)
    """
    return available_frames >= grid[1] + (index - grid[0] + 1) * chunk + right
