"""A small client for ``xlsr-stream serve``: stream a file (or raw PCM on stdin), print
partials and finals, report latency.

    python -m demos.client samples/goforward.wav                       # vosk protocol, real time
    python -m demos.client talk.flac --protocol native --speed 4       # 4x faster than real time
    python -m demos.client talk.wav --speed 0                          # as fast as the server allows
    arecord -q -f S16_LE -r 16000 -c 1 | python -m demos.client - --rate 16000

Latency is measured on the client's clock: for each result, from sending the
block that contained the result's last audio to receiving the result.  With
the vosk protocol every block gets a reply, so that is the reply time of the
block; with the native protocol results carry ``end`` (seconds of audio they
cover), which the client maps back to its own send log.  For the final after
eof/finish the clock starts at eof.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence

import numpy as np

from client.audio_files import open_audio
from client.captions import CaptionRenderer, JsonLog
from client.websocket import NativeOptions, NativeStream, ProtocolError, SendLog, VoskStream, open_stream
from streaming.errors import StreamingError
from streaming.events import Event, Final

__all__ = ["build_parser", "main"]

DEFAULT_URL = "ws://127.0.0.1:2700"

# Shows one event and records its latency, counted from the given monotonic time
# (None: from when its audio was sent, SendLog.since).
Show = Callable[[Event, "float | None"], None]


# ------------------------------------------------------------------ audio in


async def file_blocks(path: str, block_s: float) -> AsyncIterator[np.ndarray]:
    """A sound file as float32 mono blocks (channels averaged)."""
    for block in open_audio(path, mix_down=True).blocks(block_s):
        yield block


async def stdin_blocks(block: int) -> AsyncIterator[np.ndarray]:
    """Raw little-endian int16 PCM from stdin, as it comes (e.g. from arecord)."""
    loop = asyncio.get_running_loop()
    stream = sys.stdin.buffer
    carry = b""
    while True:
        data = await loop.run_in_executor(None, stream.read, 2 * block)
        if not data:
            break
        data = carry + data
        usable = len(data) - len(data) % 2
        carry = data[usable:]
        yield np.frombuffer(data[:usable], dtype="<i2")


class Pace:
    """Sleep so that block i leaves at i * block_s / speed; speed 0 = no waiting."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.start = time.monotonic()
        self.audio_s = 0.0

    async def wait(self, seconds: float) -> None:
        if self.speed > 0:
            delay = self.start + self.audio_s / self.speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        self.audio_s += seconds


# ------------------------------------------------------------------ protocols


async def run_vosk(
    stream: VoskStream, blocks: AsyncIterator[np.ndarray], rate: int, pace: Pace, log: SendLog, show: Show
) -> None:
    """Lock step: every block gets exactly one reply, so a reply's latency is its block's."""
    replies = stream.replies().__aiter__()
    async for block in blocks:
        await pace.wait(len(block) / rate)
        await stream.send_audio(block)
        log.sent(len(block) / rate)
        show(await replies.__anext__(), log.sent_at[-1])
    await stream.send_eof()
    log.eof()
    show(await replies.__anext__(), log.eof_at)


async def run_native(
    stream: NativeStream, blocks: AsyncIterator[np.ndarray], rate: int, pace: Pace, log: SendLog, show: Show
) -> None:
    """Results come as the server decodes them; each is timed from the block holding its ``end``."""
    hello = stream.hello
    print(
        f"server {hello.get('server_version')}, model {hello.get('model', {}).get('name')}, "
        f"LM {hello.get('lm') or 'none'}",
        file=sys.stderr,
    )

    async def receive() -> None:
        async for event in stream.replies():
            show(event, None)

    receiver = asyncio.create_task(receive())
    async for block in blocks:
        if receiver.done():
            break
        await pace.wait(len(block) / rate)
        await stream.send_audio(block)
        log.sent(len(block) / rate)
    if not receiver.done():
        await stream.send_eof()
        log.eof()
    await receiver


# ------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demos.client",
        description="Stream audio to an xlsr-stream server and print what it hears.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("audio", help="sound file (wav/flac/ogg), or - for raw int16 PCM on stdin")
    parser.add_argument("--url", default=DEFAULT_URL, help="server address (ws:// or wss://, no path)")
    parser.add_argument("--protocol", choices=("vosk", "native"), default="vosk")
    parser.add_argument("--rate", type=int, default=16000, help="sample rate of stdin PCM")
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        help="pace relative to real time; 0 = as fast as the server takes it "
        "(default: 1 for files, 0 for stdin, which its producer paces)",
    )
    parser.add_argument("--block-ms", type=float, default=100.0, help="audio per message")
    native = parser.add_argument_group("native protocol")
    native.add_argument("--encoding", choices=("int16", "float32"), default="int16")
    native.add_argument("--no-lm", action="store_true", help="ask the server not to use its LM")
    native.add_argument("--hotword", action="append", default=[], help="boost a word (repeatable)")
    conn = parser.add_argument_group("connection")
    conn.add_argument("--token", default=None, help="bearer token (server --auth-token)")
    conn.add_argument("--cafile", default=None, help="CA/certificate file to trust for wss://")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="one JSON line per result")
    out.add_argument("--no-partials", action="store_true", help="print finals only")
    return parser


async def _main(args: argparse.Namespace) -> int:
    blocks: AsyncIterator[np.ndarray]
    if args.audio == "-":
        rate = args.rate
        blocks = stdin_blocks(max(1, int(rate * args.block_ms / 1000)))
        speed = 0.0 if args.speed is None else args.speed
    else:
        rate = open_audio(args.audio, mix_down=True).sample_rate
        blocks = file_blocks(args.audio, args.block_ms / 1000)
        speed = 1.0 if args.speed is None else args.speed
    renderer = None if args.json else CaptionRenderer(sys.stdout, partials=not args.no_partials and sys.stdout.isatty())
    json_out = JsonLog(sys.stdout, partials=not args.no_partials) if args.json else None

    log = SendLog()

    def show(event: Event, since: float | None) -> None:
        if isinstance(event, Final) and not event.text:
            return  # an empty segment (silence): nothing to show or time
        latency = log.record(event, since)
        if json_out is not None:
            json_out.add(event, latency_ms=round(latency * 1000, 1))
        elif renderer is not None:
            renderer.show(event)

    started = time.monotonic()
    native = NativeOptions(encoding=args.encoding, use_lm=not args.no_lm, hotwords=tuple(args.hotword))
    try:
        async with open_stream(args.url, args.protocol, rate, token=args.token, cafile=args.cafile,
                               native=native) as stream:
            pace = Pace(speed)
            if isinstance(stream, VoskStream):
                await run_vosk(stream, blocks, rate, pace, log, show)
            else:
                await run_native(stream, blocks, rate, pace, log, show)
    finally:
        if renderer is not None:
            renderer.close()
    print(log.summary(time.monotonic() - started), file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from websockets.exceptions import ConnectionClosedError, InvalidStatus

    try:
        return asyncio.run(_main(args))
    except InvalidStatus as exc:
        body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
        retry = exc.response.headers.get("Retry-After")
        print(
            f"server refused: HTTP {exc.response.status_code} {body}"
            + (f" (retry after {retry} s)" if retry else ""),
            file=sys.stderr,
        )
        return 1
    except ConnectionClosedError as exc:
        rcvd = exc.rcvd
        why = f"code {rcvd.code} {rcvd.reason!r}" if rcvd else "without a close frame"
        print(f"server closed the stream: {why}", file=sys.stderr)
        return 1
    except (OSError, ProtocolError, StreamingError, StopAsyncIteration) as exc:
        print(f"error: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
