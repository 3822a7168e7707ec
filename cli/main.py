"""``xlsr-stream``: one command, a subcommand per job.  ``main(argv)`` is testable."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from streaming.errors import StreamingError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from . import evaluate, transcribe

    parser = argparse.ArgumentParser(
        prog="xlsr-stream",
        description="Streaming wav2vec2/XLSR speech recognition.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str, adder: Callable[[argparse.ArgumentParser], None]) -> None:
        p = sub.add_parser(name, help=help_, description=help_,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        adder(p)

    add("transcribe", "caption audio files as a stream", transcribe.add_arguments)
    add("eval", "WER/CER/RTF over a folder with transcripts.tsv", evaluate.add_arguments)
    for name, help_, _module in _delegated():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def _delegated() -> list[tuple[str, str, str]]:
    """Subcommands whose own parsers live with their code (server, demos, latency lab)."""
    return [
        ("serve", "websocket server (vosk-compatible and native protocols)", "server.cli"),
        ("mic", "live microphone captions", "demos.mic"),
        ("latency", "latency and load lab against a websocket server", "latency.lab"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    for name, _, module in _delegated():
        if args_list[:1] == [name]:
            import importlib

            return int(importlib.import_module(module).main(args_list[1:]))
    parser = build_parser()
    args = parser.parse_args(args_list)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from . import evaluate, transcribe

    runner = {"transcribe": transcribe.run, "eval": evaluate.run}[args.command]
    try:
        return runner(args)
    except (StreamingError, ValueError) as exc:
        print(f"xlsr-stream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
