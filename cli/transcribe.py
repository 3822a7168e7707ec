"""``xlsr-stream transcribe``: stream audio files through the engine and caption them."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from client.audio_files import AudioFile
from client.captions import TRANSCRIPT, CaptionRenderer, JsonLog
from streaming import Engine, Final, StreamingError
from streaming.events import Event

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


class Captions:
    """A file's captions: the terminal view (:data:`~client.captions.TRANSCRIPT` style), or one
    JSON line per event naming the file."""

    def __init__(self, out: TextIO, *, show_partials: bool, as_json: bool, source: str) -> None:
        self.source = source
        self.json = JsonLog(out, partials=True) if as_json else None
        self.renderer = None if as_json else CaptionRenderer(out, partials=show_partials, style=TRANSCRIPT)

    def show(self, event: Event) -> None:
        if self.json is not None:
            self.json.add(event, file=self.source)
        elif self.renderer is not None:
            self.renderer.show(event)

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()


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
        finally:
            captions.close()
    return status
