"""Reading audio files for every client (the CLI, the demos, the latency lab, the benchmarks).

One reader, so that a file is read the same way wherever it is streamed from,
with errors that name the file and the problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from streaming.audio import StreamResampler
from streaming.errors import AudioError

__all__ = ["AudioFile", "open_audio", "read_16k"]


class AudioFile:
    """A mono audio file read block by block (wav, flac, ogg/vorbis, ... via libsndfile).

    ``mix_down=True`` takes files of any channel count and averages the channels;
    by default a file that is not mono is an error, because the recognizer would
    otherwise hear a mix the user did not ask for.
    """

    def __init__(self, path: str | Path, *, mix_down: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise AudioError(f"{self.path}: no such file")
        try:
            info = sf.info(str(self.path))
        except (RuntimeError, sf.LibsndfileError) as exc:
            formats = ", ".join(sorted(k.lower() for k in sf.available_formats()))
            raise AudioError(f"{self.path}: not a readable audio file ({exc}); supported formats: {formats}") from exc
        if info.channels != 1 and not mix_down:
            raise AudioError(
                f"{self.path} has {info.channels} channels; the recognizer takes mono audio "
                f"(mix it down first, e.g. `sox {self.path.name} -c 1 mono.wav`)"
            )
        if info.frames == 0:
            raise AudioError(f"{self.path} is empty (0 samples)")
        self.sample_rate = int(info.samplerate)
        self.frames = int(info.frames)
        self.channels = int(info.channels)

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def blocks(self, seconds: float = 0.1) -> Iterator[np.ndarray]:
        """float32 mono blocks of ``seconds`` each; the last one may be shorter."""
        size = max(1, int(self.sample_rate * seconds))
        try:
            for block in sf.blocks(str(self.path), blocksize=size, dtype="float32", always_2d=True):
                # block  # (samples, channels) float32
                yield block[:, 0] if self.channels == 1 else block.mean(axis=1, dtype=np.float32)
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise AudioError(f"{self.path}: read error ({exc}); the file may be truncated") from exc

    def read(self) -> np.ndarray:
        """The whole file as float32 mono at its own rate."""
        return np.concatenate(list(self.blocks(10.0)))


def open_audio(path: str | Path, *, mix_down: bool = False) -> AudioFile:
    return AudioFile(path, mix_down=mix_down)


def read_16k(path: str | Path) -> np.ndarray:
    """A mono audio file as float32 at 16 kHz, the model's rate (resampled as streams are)."""
    audio = open_audio(path)
    samples = audio.read()
    resampler = StreamResampler(audio.sample_rate, 16_000)
    return np.concatenate([resampler.process(samples), resampler.flush()]).astype(np.float32)
