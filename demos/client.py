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
import bisect
import json
import ssl
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

__all__ = ["LatencyLog", "build_parser", "main"]

DEFAULT_URL = "ws://127.0.0.1:2700"


@dataclass
class LatencyLog:
    """Send times of audio and the latency of every result, on the client's clock."""

    sent_audio_s: list[float] = field(default_factory=list)  # cumulative seconds after each block
    sent_at: list[float] = field(default_factory=list)  # monotonic time each block was sent
    partial: list[float] = field(default_factory=list)
    final: list[float] = field(default_factory=list)
    eof_at: float | None = None

    def sent(self, seconds: float) -> None:
        total = (self.sent_audio_s[-1] if self.sent_audio_s else 0.0) + seconds
        self.sent_audio_s.append(total)
        self.sent_at.append(time.monotonic())

    def send_time_of(self, end_s: float) -> float:
        """When the block holding stream second ``end_s`` was sent.

        Blocks of 0.5 s sent at t=0 and t=0.5 -> second 0.7 was sent at t=0.5.
        """
        i = bisect.bisect_left(self.sent_audio_s, end_s - 1e-6)
        return self.sent_at[min(i, len(self.sent_at) - 1)]

    def record(self, kind: str, since: float) -> float:
        latency = max(0.0, time.monotonic() - since)
        (self.final if kind == "final" else self.partial).append(latency)
        return latency

    def summary(self, wall_s: float) -> str:
        audio = self.sent_audio_s[-1] if self.sent_audio_s else 0.0
        lines = [
            f"audio {audio:.2f} s in {wall_s:.2f} s wall ({audio / wall_s if wall_s else 0:.2f}x real time)"
        ]
        for name, values in (("partial", self.partial), ("final", self.final)):
            if values:
                p50, p90 = np.percentile(values, [50, 90])
                lines.append(
                    f"{name} latency: median {p50 * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, "
                    f"max {max(values) * 1000:.0f} ms over {len(values)}"
                )
        return "\n".join(lines)


class Printer:
    """Finals on their own lines; the partial rewritten in place on a terminal."""

    def __init__(self, out: TextIO, *, as_json: bool, show_partials: bool) -> None:
        self.out = out
        self.as_json = as_json
        self.show_partials = show_partials
        self.tty = out.isatty()
        self._open = False

    def partial(self, text: str, latency: float) -> None:
        if self.as_json:
            self._json({"type": "partial", "text": text, "latency_ms": round(latency * 1000, 1)})
        elif self.show_partials and self.tty:
            self.out.write("\r\x1b[2K… " + text[-150:])
            self.out.flush()
            self._open = True

    def final(self, text: str, start: float, end: float, latency: float) -> None:
        if self.as_json:
            self._json(
                {
                    "type": "final",
                    "text": text,
                    "start": start,
                    "end": end,
                    "latency_ms": round(latency * 1000, 1),
                }
            )
            return
        if self._open:
            self.out.write("\r\x1b[2K")
            self._open = False
        self.out.write(f"[{start:7.2f} - {end:7.2f}] {text}\n")
        self.out.flush()

    def _json(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.out.flush()


# ------------------------------------------------------------------ audio in


def read_file(path: str) -> tuple[np.ndarray, int]:
    """A sound file as int16 mono (channels averaged)."""
    import soundfile as sf

    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    return (np.clip(mono, -1.0, 1.0) * 32767.0).astype(np.int16), int(rate)


async def file_blocks(audio: np.ndarray, block: int) -> AsyncIterator[np.ndarray]:
    for i in range(0, len(audio), block):
        yield audio[i : i + block]


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
    ws: Any, blocks: AsyncIterator[np.ndarray], rate: int, pace: Pace, log: LatencyLog, printer: Printer
) -> None:
    await ws.send(json.dumps({"config": {"sample_rate": rate}}))
    async for block in blocks:
        await pace.wait(len(block) / rate)
        await ws.send(block.astype("<i2").tobytes())
        log.sent(len(block) / rate)
        _show_vosk(json.loads(await ws.recv()), log.sent_at[-1], log, printer)
    await ws.send('{"eof" : 1}')
    log.eof_at = time.monotonic()
    _show_vosk(json.loads(await ws.recv()), log.eof_at, log, printer)


def _show_vosk(reply: dict[str, Any], since: float, log: LatencyLog, printer: Printer) -> None:
    if "error" in reply:
        raise RuntimeError(f"server error: {reply['error']}")
    if "alternatives" in reply:
        reply = reply["alternatives"][0] if reply["alternatives"] else {"text": ""}
    if "partial" in reply:
        printer.partial(reply["partial"], log.record("partial", since))
    elif reply.get("text"):
        words = reply.get("result") or []
        start = words[0]["start"] if words else 0.0
        end = words[-1]["end"] if words else 0.0
        printer.final(reply["text"], start, end, log.record("final", since))


async def run_native(
    ws: Any,
    blocks: AsyncIterator[np.ndarray],
    rate: int,
    pace: Pace,
    log: LatencyLog,
    printer: Printer,
    *,
    encoding: str,
    use_lm: bool,
    hotwords: Sequence[str],
) -> None:
    hello = json.loads(await ws.recv())
    print(
        f"server {hello.get('server_version')}, model {hello['model']['name']}, "
        f"LM {hello.get('lm') or 'none'}",
        file=sys.stderr,
    )
    await ws.send(
        json.dumps(
            {
                "type": "start",
                "version": 1,
                "sample_rate": rate,
                "encoding": encoding,
                "options": {"lm": use_lm, "hotwords": list(hotwords)},
            }
        )
    )

    async def receive() -> None:
        async for message in ws:
            result = json.loads(message)
            kind = result["type"]
            if kind == "error":
                raise RuntimeError(f"server error {result['code']}: {result['message']}")
            if kind not in ("partial", "final"):
                continue
            since = log.send_time_of(result["end"])
            if kind == "final" and result["reason"] == "finish" and log.eof_at is not None:
                since = max(since, log.eof_at)
            if kind == "partial":
                printer.partial(result["text"], log.record("partial", since))
            elif result["text"]:
                printer.final(result["text"], result["start"], result["end"], log.record("final", since))

    receiver = asyncio.create_task(receive())
    async for block in blocks:
        if receiver.done():
            break
        await pace.wait(len(block) / rate)
        if encoding == "float32":
            await ws.send((block.astype(np.float32) / 32768.0).astype("<f4").tobytes())
        else:
            await ws.send(block.astype("<i2").tobytes())
        log.sent(len(block) / rate)
    if not receiver.done():
        await ws.send('{"type": "finish"}')
        log.eof_at = time.monotonic()
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
    from websockets.asyncio.client import connect

    if args.audio == "-":
        rate = args.rate
        block = max(1, int(rate * args.block_ms / 1000))
        blocks = stdin_blocks(block)
        speed = 0.0 if args.speed is None else args.speed
    else:
        audio, rate = read_file(args.audio)
        block = max(1, int(rate * args.block_ms / 1000))
        blocks = file_blocks(audio, block)
        speed = 1.0 if args.speed is None else args.speed
    path = "/" if args.protocol == "vosk" else "/v1/stream"
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    context = ssl.create_default_context(cafile=args.cafile) if args.url.startswith("wss:") else None
    printer = Printer(sys.stdout, as_json=args.json, show_partials=not args.no_partials)
    log = LatencyLog()
    started = time.monotonic()
    async with connect(
        args.url.rstrip("/") + path,
        additional_headers=headers,
        ssl=context,
        max_size=2**22,
        ping_timeout=None,  # a busy server reads our pong late (behind audio); that is lag, not death
    ) as ws:
        pace = Pace(speed)
        if args.protocol == "vosk":
            await run_vosk(ws, blocks, rate, pace, log, printer)
        else:
            await run_native(
                ws,
                blocks,
                rate,
                pace,
                log,
                printer,
                encoding=args.encoding,
                use_lm=not args.no_lm,
                hotwords=args.hotword,
            )
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
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
