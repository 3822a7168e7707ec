"""Streams driven the way the server's batching worker drives them, for the sizing benchmarks.

N streams (``inline=False``) get the same audio block by block; after each block
every window that became ready, from all streams, goes through one
``Engine.run_windows`` call (in slices of at most ``max_batch`` windows, as the
worker's batches), and each stream then decodes its outputs.  Process CPU time
is split between the model (``run_windows``) and decoding
(``accept_window_outputs``: beam search, LM, endpointing, partials), so a
capacity model can price the two separately.

Used by ``bench_capacity.py`` (CPU) and ``bench_gpu_streams.py`` (model side on CUDA).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from streaming.recognizer import Engine, Recognizer
from streaming.stitching import WindowOutput, WindowRequest

__all__ = ["DriveResult", "drive_streams", "speech_audio"]

REPO = Path(__file__).resolve().parent.parent
DEV_DIR = REPO / "samples" / "librivox-dev"


def speech_audio(seconds: float) -> np.ndarray:
    """``seconds`` of real read speech (16 kHz float32): the dev clips, concatenated and repeated."""
    clips = [sf.read(path, dtype="float32")[0] for path in sorted(DEV_DIR.glob("*.wav"))]
    audio = np.concatenate(clips)
    reps = int(np.ceil(seconds * 16_000 / len(audio)))
    return np.tile(audio, reps)[: int(seconds * 16_000)]


@dataclass(frozen=True)
class DriveResult:
    streams: int
    audio_s: float  # per stream
    model_cpu_s: float  # process CPU seconds inside run_windows
    decode_cpu_s: float  # process CPU seconds decoding window outputs
    model_wall_s: float
    forwards: int  # run_windows calls
    windows: int

    @property
    def stream_seconds(self) -> float:
        return self.streams * self.audio_s

    @property
    def model_cpu_per_stream_s(self) -> float:
        """CPU seconds of model compute per second of one stream."""
        return self.model_cpu_s / self.stream_seconds

    @property
    def decode_cpu_per_stream_s(self) -> float:
        return self.decode_cpu_s / self.stream_seconds


@dataclass
class _Clock:
    model_cpu_s: float = 0.0
    decode_cpu_s: float = 0.0
    model_wall_s: float = 0.0
    forwards: int = 0
    windows: int = 0
    batch_walls: list[float] = field(default_factory=list)


def _run(engine: Engine, pending: list[tuple[Recognizer, list[WindowRequest]]], max_batch: int, clock: _Clock) -> None:
    """Forward every pending window in batches of at most max_batch, then let each stream decode."""
    flat = [(stream, request) for stream, requests in pending for request in requests]
    for start in range(0, len(flat), max_batch):
        batch = flat[start : start + max_batch]
        cpu, wall = time.process_time(), time.perf_counter()
        outputs = engine.run_windows([request for _, request in batch])
        clock.model_cpu_s += time.process_time() - cpu
        clock.batch_walls.append(time.perf_counter() - wall)
        clock.model_wall_s += clock.batch_walls[-1]
        clock.forwards += 1
        clock.windows += len(batch)
        by_stream: dict[int, tuple[Recognizer, list[WindowRequest], list[WindowOutput]]] = {}
        for (stream, request), output in zip(batch, outputs, strict=True):
            entry = by_stream.setdefault(id(stream), (stream, [], []))
            entry[1].append(request)
            entry[2].append(output)
        cpu = time.process_time()
        for stream, requests, outs in by_stream.values():
            stream.accept_window_outputs(requests, outs)
            stream.events()
        clock.decode_cpu_s += time.process_time() - cpu


def drive_streams(
    engine: Engine, audio: np.ndarray, streams: int, *, max_batch: int = 8, block_s: float = 0.5, use_lm: bool = True
) -> DriveResult:
    """Run ``streams`` copies of ``audio`` (16 kHz) to the end; see the module docstring."""
    recognizers = [engine.new_stream(inline=False, use_lm=use_lm) for _ in range(streams)]
    block = int(block_s * 16_000)
    clock = _Clock()
    for start in range(0, len(audio), block):
        piece = audio[start : start + block]
        for stream in recognizers:
            stream.accept_audio(piece)
        # With conv feature reuse a stream has one window in flight: loop until none is ready.
        while pending := [(s, r) for s in recognizers if (r := s.take_windows())]:
            _run(engine, pending, max_batch, clock)
    for stream in recognizers:
        stream.finish()
    while pending := [(s, r) for s in recognizers if (r := s.take_windows())]:
        _run(engine, pending, max_batch, clock)
    assert all(s.finished for s in recognizers), "a stream did not reach its last final"
    return DriveResult(
        streams=streams,
        audio_s=len(audio) / 16_000,
        model_cpu_s=clock.model_cpu_s,
        decode_cpu_s=clock.decode_cpu_s,
        model_wall_s=clock.model_wall_s,
        forwards=clock.forwards,
        windows=clock.windows,
    )
