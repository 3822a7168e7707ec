"""Reading audio files for the CLI, with errors that name the file and the problem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from streaming.errors import AudioError

__all__ = ["AudioFile", "open_audio"]


class AudioFile:
    """A mono audio file read block by block (wav, flac, ogg/vorbis, ... via libsndfile)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise AudioError(f"{self.path}: no such file")
        try:
            info = sf.info(str(self.path))
        except (RuntimeError, sf.LibsndfileError) as exc:
            formats = ", ".join(sorted(k.lower() for k in sf.available_formats()))
            raise AudioError(f"{self.path}: not a readable audio file ({exc}); supported formats: {formats}") from exc
        if info.channels != 1:
            raise AudioError(
                f"{self.path} has {info.channels} channels; the recognizer takes mono audio "
                f"(mix it down first, e.g. `sox {self.path.name} -c 1 mono.wav`)"
            )
        if info.frames == 0:
            raise AudioError(f"{self.path} is empty (0 samples)")
        self.sample_rate = int(info.samplerate)
        self.frames = int(info.frames)

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def blocks(self, seconds: float = 0.1) -> Iterator[np.ndarray]:
        """float32 blocks of ``seconds`` each; the last one may be shorter."""
        size = max(1, int(self.sample_rate * seconds))
        try:
            yield from sf.blocks(str(self.path), blocksize=size, dtype="float32", always_2d=False)
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise AudioError(f"{self.path}: read error ({exc}); the file may be truncated") from exc

    def read(self) -> np.ndarray:
        return np.concatenate(list(self.blocks(10.0)))


def open_audio(path: str | Path) -> AudioFile:
    return AudioFile(path)
