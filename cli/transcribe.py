"""``xlsr-stream transcribe``: stream audio files through the engine and caption them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import TextIO

from streaming import Engine, Final, Partial, StreamingError
from streaming.events import Event

from .audio_files import AudioFile
from .options import add_engine_arguments, engine_from_args

__all__ = ["add_arguments", "run"]

BLOCK_S = 0.1  # what a microphone or websocket client typically sends at once


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", nargs="+", help="wav/flac/ogg files (mono, any sample rate)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="one JSON line per event")
    out.add_argument("--realtime", action="store_true", help="feed audio at real-time pace (live captions)")
    out.add_argument("--partials", choices=("auto", "on", "off"), default="auto",
                     help="show the partial line (auto: when stdout is a terminal)")
    add_engine_arguments(parser)


def format_time(seconds: float) -> str:
    """00:07.25 style, hours when needed: 3725.5 -> '1:02:05.50'."""
    minutes, sec = divmod(seconds, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{sec:05.2f}" if hours else f"{minutes:02d}:{sec:05.2f}"


class Captions:
    """Terminal captions: the partial line is rewritten in place, finals are committed."""

    def __init__(self, out: TextIO, *, show_partials: bool, as_json: bool, source: str) -> None:
        self.out = out
        self.show_partials = show_partials
        self.as_json = as_json
        self.source = source
        self._partial_shown = False

    def show(self, event: Event) -> None:
        if self.as_json:
            kind = "final" if isinstance(event, Final) else "partial"
            self.out.write(json.dumps({"type": kind, "file": self.source, **asdict(event)}) + "\n")
            self.out.flush()
            return
        if isinstance(event, Partial):
            if self.show_partials:
                self.out.write("\r\x1b[2K" + f"  … {event.text}"[-200:])
                self.out.flush()
                self._partial_shown = True
            return
        if self._partial_shown:
            self.out.write("\r\x1b[2K")
            self._partial_shown = False
        if event.text:
            self.out.write(f"[{format_time(event.start)} → {format_time(event.end)}] {event.text}\n")
            self.out.flush()


def transcribe_file(engine: Engine, path: str, args: argparse.Namespace, captions: Captions) -> str:
    """Stream one file; returns the joined final text.  On an error mid-file the
    audio accepted so far is still finalised and shown before the error propagates."""
    audio = AudioFile(path)
    stream = engine.new_stream(sample_rate=audio.sample_rate)
    finals: list[str] = []
    progress = None
    if not args.realtime and not args.json and sys.stderr.isatty() and audio.duration > 30:
        from tqdm import tqdm

        progress = tqdm(total=round(audio.duration, 1), unit="s", desc=path, leave=False, file=sys.stderr)
    t0 = time.monotonic()
    fed = 0.0

    def drain() -> None:
        for event in stream.events():
            if isinstance(event, Final) and event.text:
                finals.append(event.text)
            captions.show(event)

    try:
        for block in audio.blocks(BLOCK_S):
            if args.realtime:
                delay = t0 + fed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            stream.accept_audio(block)
            fed += block.shape[0] / audio.sample_rate
            if progress is not None:
                progress.update(round(block.shape[0] / audio.sample_rate, 3))
            drain()
    finally:
        if progress is not None:
            progress.close()
        stream.finish()
        drain()
    return " ".join(finals)


def run(args: argparse.Namespace) -> int:
    for path in args.audio:  # fail fast on unreadable inputs before loading the model
        AudioFile(path)
    engine = engine_from_args(args)
    show_partials = args.partials == "on" or (args.partials == "auto" and sys.stdout.isatty())
    status = 0
    for path in args.audio:
        if len(args.audio) > 1 and not args.json:
            print(f"== {path}", flush=True)
        captions = Captions(sys.stdout, show_partials=show_partials, as_json=args.json, source=path)
        try:
            transcribe_file(engine, path, args, captions)
        except StreamingError as exc:
            print(f"xlsr-stream: error: {exc}", file=sys.stderr)
            status = 1
    return status
