"""How many concurrent real-time streams does the server hold, and at what latency?

Starts ``python -m server`` (the default model unless --model; or use --url for a
running server), then runs rounds of N simultaneous native-protocol streams, each
sending real speech at real-time pace in 100 ms blocks, and measures on the
client's clock:

- partial latency: a partial covering stream second ``end`` arrives this long
  after the block holding ``end`` was sent.  Partials cover their window's
  look-ahead (decoded provisionally), so this is compute and queueing after
  the window's last block; how long after a *word* is spoken it shows up is
  what ``xlsr-stream latency`` measures;
- final latency: for the final after ``finish``, from sending ``finish``; for
  endpoint finals, like partials (includes the endpointer's trailing silence);
- lag: how far the decoded audio trails the sent audio at the end of the run.

A load is *held* when the p90 partial latency stays under --max-latency, every
stream's last final arrives within --max-latency of ``finish``, and nothing
failed.  N doubles until a load is not held, then a bisection finds the largest
N that is.  The machine's load average is printed because other work on a
shared box changes the answer.

Usage:
    .venv/bin/python benchmarks/bench_server_load.py [--model DIR] [--duration 20]
        [--max-streams 32] [--max-latency 2.0] [--server-arg=--max-batch-size=8 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from client.audio_files import AudioFile  # noqa: E402
from client.websocket import SendLog, open_stream  # noqa: E402
from latency.metrics import CapacitySearch  # noqa: E402
from latency.server_metrics import scrape_values  # noqa: E402
from streaming.events import Final  # noqa: E402

BLOCK_S = 0.1


@dataclass
class StreamResult:
    log: SendLog = field(default_factory=SendLog)  # partial and final latencies on the client's clock
    last_final: float | None = None  # finish -> last final
    lag_s: float = 0.0  # sent audio - decoded audio when finish was sent
    error: str | None = None


@dataclass
class Round:
    streams: int
    results: list[StreamResult]
    wall_s: float
    loadavg: float
    server: dict[str, float] = field(default_factory=dict)  # /metrics deltas over the round

    def p(self, kind: str, q: float) -> float:
        values = [v for r in self.results for v in getattr(r.log, kind)]
        return float(np.percentile(values, q)) if values else float("nan")

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.results if r.error]

    @property
    def worst_last_final(self) -> float:
        values = [r.last_final for r in self.results if r.last_final is not None]
        return max(values) if len(values) == len(self.results) else float("inf")

    def held(self, max_latency: float) -> bool:
        return not self.errors and self.p("partial", 90) <= max_latency and self.worst_last_final <= max_latency


def load_speech(duration: float) -> np.ndarray:
    """Concatenated LibriVox dev clips as 16 kHz float32, looped to ``duration`` seconds."""
    clips = []
    for path in sorted((REPO / "samples" / "librivox-dev").glob("*.wav")):
        audio = AudioFile(path)
        if audio.sample_rate != 16_000:
            raise SystemExit(f"{path} is {audio.sample_rate} Hz; expected 16000")
        clips.append(audio.read())
    speech = np.concatenate(clips)
    reps = int(np.ceil(duration * 16_000 / len(speech)))
    return np.tile(speech, reps)[: int(duration * 16_000)]


async def one_stream(url: str, audio: np.ndarray, start_delay: float) -> StreamResult:
    result = StreamResult()
    log = result.log
    decoded = 0.0
    await asyncio.sleep(start_delay)
    try:
        async with open_stream(url, "native", 16_000, open_timeout=30) as stream:

            async def receive() -> None:
                nonlocal decoded
                async for event in stream.replies():
                    decoded = max(decoded, event.end)
                    latency = log.record(event)
                    if isinstance(event, Final) and event.reason == "finish" and log.eof_at is not None:
                        result.last_final = latency

            receiver = asyncio.create_task(receive())
            block = int(BLOCK_S * 16_000)
            t0 = time.monotonic()
            for k, i in enumerate(range(0, len(audio), block)):
                delay = t0 + k * BLOCK_S - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await stream.send_audio(audio[i : i + block])
                log.sent(len(audio[i : i + block]) / 16_000)
            result.lag_s = log.audio_seconds - decoded
            await stream.send_eof()
            log.eof()
            await receiver
    except Exception as exc:  # a failed stream is a data point, not a crash
        result.error = f"{type(exc).__name__}: {exc}"[:200]
    return result


async def run_round(url: str, streams: int, audio: np.ndarray) -> Round:
    rng = random.Random(streams)
    before = await scrape_values(url)
    started = time.monotonic()
    # Streams start spread over one second, as real clients do, so their windows
    # do not all complete in the same instant.
    results = await asyncio.gather(*(one_stream(url, audio, rng.uniform(0, 1.0)) for _ in range(streams)))
    after = await scrape_values(url)
    r = Round(streams, list(results), time.monotonic() - started, os.getloadavg()[0])
    r.server = {k: after[k] - before.get(k, 0.0) for k in after}
    return r


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "server", "--port", "0", "--max-connections", str(args.max_streams + 4)]
    if args.model:
        cmd += ["--model", args.model]
    cmd += args.server_arg
    proc = subprocess.Popen(
        cmd, cwd=REPO, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO))
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit(f"server exited with {proc.wait()}")
        print("  server:", line.rstrip(), file=sys.stderr)
        found = re.search(r"listening on (wss?://[\d.:a-z]+)", line)
        if found:
            # Keep reading the model line, then leave stderr to a drain thread.
            print("  server:", proc.stderr.readline().rstrip(), file=sys.stderr)
            import threading

            threading.Thread(target=_drain, args=(proc.stderr,), daemon=True).start()
            return proc, found.group(1)
    raise SystemExit("server did not start within 300 s")


def report(r: Round, max_latency: float) -> str:
    ms = lambda x: f"{x * 1000:6.0f}"  # noqa: E731
    lags = [res.lag_s for res in r.results]
    return (
        f"{r.streams:4d} | {ms(r.p('partial', 50))} {ms(r.p('partial', 90))} | "
        f"{ms(r.p('final', 50))} {ms(r.p('final', 90))} | {ms(r.worst_last_final)} | "
        f"{max(lags):5.2f} | {r.loadavg:5.2f} | {'yes' if r.held(max_latency) else 'NO':4s}"
        + _server_line(r)
        + (f"  errors: {r.errors[:2]}" if r.errors else "")
    )


def _server_line(r: Round) -> str:
    s = r.server
    audio = s.get("xlsr_audio_seconds_total", 0.0)
    batches = s.get("xlsr_batch_size_windows_count", 0.0)
    if not audio or not batches:
        return ""
    return (
        f" | {s.get('xlsr_batch_size_windows_sum', 0.0) / batches:4.1f} | "
        f"{s.get('xlsr_forward_seconds_sum', 0.0) / audio:5.3f} | {s.get('xlsr_decode_seconds_sum', 0.0) / audio:5.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped default model)")
    parser.add_argument("--url", default=None, help="use a running server instead of starting one")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of audio per stream")
    parser.add_argument("--max-streams", type=int, default=32)
    parser.add_argument(
        "--max-latency",
        type=float,
        default=2.0,
        help="p90 partial latency and finish->final bound for a held load, seconds",
    )
    parser.add_argument("--start", type=int, default=1, help="first N")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra argument for python -m server (repeatable, use --server-arg=--x=y)",
    )
    args = parser.parse_args(argv)

    audio = load_speech(args.duration)
    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(args)
    print(
        f"{os.cpu_count()} CPUs, load average before: {os.getloadavg()[0]:.2f}; "
        f"{args.duration:.0f} s of speech per stream, real-time pace, {BLOCK_S * 1000:.0f} ms blocks"
    )
    print(
        "   N | partial p50  p90 ms | final p50  p90 ms | finish->final ms | lag s | load | held"
        " | batch | fwd s/audio s | decode s/audio s"
    )
    rounds: dict[int, Round] = {}

    def measure(n: int) -> Round:
        r = asyncio.run(run_round(url, n, audio))
        rounds[n] = r
        print(report(r, args.max_latency), flush=True)
        return r

    try:
        search = CapacitySearch(start=args.start, maximum=args.max_streams)
        while (n := search.next_level()) is not None:
            search.record(n, measure(n).held(args.max_latency))
        best = search.capacity
        held = rounds.get(best)
        print(
            f"\nheld: {best} concurrent real-time streams "
            f"(p90 partial latency <= {args.max_latency:.1f} s, "
            f"finals within {args.max_latency:.1f} s of finish)"
        )
        if held is not None:
            print(
                json.dumps(
                    {
                        "streams": best,
                        "partial_latency_p50_ms": round(held.p("partial", 50) * 1000),
                        "partial_latency_p90_ms": round(held.p("partial", 90) * 1000),
                        "final_latency_p50_ms": round(held.p("final", 50) * 1000),
                        "final_latency_p90_ms": round(held.p("final", 90) * 1000),
                        "finish_to_final_max_ms": round(held.worst_last_final * 1000),
                        "loadavg": round(held.loadavg, 2),
                        "cpus": os.cpu_count(),
                    }
                )
            )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
