"""Reliability of ``xlsr-stream serve`` under hostile and careless clients; one JSON out.

Starts ``python -m server`` (the shipped model unless --model) with short limits,
then runs, on loopback:

- fuzz: --fuzz connections on both protocols, each a seeded random mix of valid
  and broken frames (bad JSON, unknown fields, odd-length and out-of-range PCM,
  oversized messages, audio before start, reset/finish at odd places), then reads
  until the server closes.  A connection *fails* if the server never closes it,
  closes without a close frame (1006) or with internal_error (1011);
- faults, one scenario each: reset (its final covers all audio sent before it),
  half-close, silent peer, a client that never reads, slowloris, capacity (503,
  /readyz), pipelined frames at close, int16-scale float audio, and the cost of a
  maximal hotword list (set-up time, another stream's latency meanwhile, RSS after
  --hotword-lists distinct lists);
- soak: --soak-clients clients streaming real speech at real time for --soak-s
  seconds, one stream after another, RSS of the server sampled every second;
- SIGTERM, on a fresh server: paced (real-time) and flat-out clients on both
  protocols; every one must get its finals (native: final "finish" and end; vosk:
  the final reply) and a 1001 close; close times are from the signal.

The server log is scanned for tracebacks and ERROR lines.  Default run: about
three minutes on 2 busy cores.

Usage:
    .venv/bin/python benchmarks/bench_reliability.py [--model DIR] [--fuzz 200] [--soak-s 60]
        [--soak-clients 4] [--out reliability.json] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from raw_ws import Raw, binary, frame, read_frames, text  # noqa: E402

RATE = 16_000
BLOCK = 1600  # 0.1 s
# Short limits, so that every fault resolves within seconds.
SERVER_ARGS = [
    "--max-connections", "12",
    "--idle-timeout", "3",
    "--send-timeout", "3",
    "--handshake-timeout", "3",
    "--max-message-bytes", "262144",  # a maximal hotword list is ~200 kB
    "--max-handshakes", "16",
]


# ---------------------------------------------------------------- the server process


class ServerProcess:
    def __init__(self, args: argparse.Namespace, extra: list[str]) -> None:
        cmd = [sys.executable, "-m", "server", "--port", "0", *SERVER_ARGS, *extra]
        if args.model:
            cmd += ["--model", args.model]
        cmd += args.server_arg
        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True, env=env)
        self.log: list[str] = []
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 300
        self.port = 0
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise SystemExit(f"server exited with {self.proc.wait()}: {''.join(self.log[-20:])}")
            self.log.append(line)
            found = re.search(r"listening on ws://[\d.]+:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                break
        if not self.port:
            raise SystemExit("server did not start within 300 s")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def log_problems(self) -> dict[str, int]:
        return {
            "tracebacks": sum("Traceback" in line for line in self.log),
            "error_lines": sum(" ERROR " in line or " CRITICAL " in line for line in self.log),
        }

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split()[1]), body


async def metric(port: int, name: str) -> float:
    _, body = await http_get(port, "/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name))


def pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def clip_blocks(audio: np.ndarray) -> list[bytes]:
    return [pcm(audio[i : i + BLOCK]) for i in range(0, len(audio), BLOCK)]


# ---------------------------------------------------------------- clients


async def native_stream(
    port: int,
    blocks: list[bytes],
    *,
    pace: float | None = BLOCK / RATE,
    reset_after: int | None = None,
    stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    """One native stream; returns what came back and how it ended."""
    out: dict[str, Any] = {"finals": [], "end": None, "close": None, "error": None}
    async with connect(f"ws://127.0.0.1:{port}/v1/stream", ping_interval=None, max_size=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "start", "sample_rate": RATE}))
        await ws.recv()
        reader = asyncio.create_task(_collect(ws, out))
        try:
            for i, block in enumerate(blocks):
                if stop is not None and stop.is_set():
                    break
                await ws.send(block)
                if i == reset_after:
                    await ws.send('{"type": "reset"}')
                if pace:
                    await asyncio.sleep(pace)
            if stop is None or not stop.is_set():
                await ws.send('{"type": "finish"}')
        except ConnectionClosed:
            pass
        await asyncio.wait_for(reader, 60)
        out["close"] = ws.close_code
    return out


async def _collect(ws: ClientConnection, out: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            msg = json.loads(message)
            if msg["type"] == "final":
                out["finals"].append(msg)
            elif msg["type"] == "end":
                out["end"] = msg
            elif msg["type"] == "error":
                out["error"] = msg["code"]
    out["closed_at"] = time.monotonic()


async def vosk_stream(port: int, blocks: list[bytes], *, pace: float | None, stop: asyncio.Event) -> dict[str, Any]:
    out: dict[str, Any] = {"final": None, "close": None}
    async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws:
        await ws.send(json.dumps({"config": {"sample_rate": RATE}}))
        with contextlib.suppress(ConnectionClosed):
            for block in blocks:
                await ws.send(block)
                reply = json.loads(await ws.recv())
                if stop.is_set():  # the reply after a drain is the final
                    if "text" in reply:
                        out["final"] = reply
                        break
                if pace:
                    await asyncio.sleep(pace)
            else:
                await ws.send('{"eof" : 1}')
                out["final"] = json.loads(await ws.recv())
            while True:
                message = json.loads(await ws.recv())
                if "text" in message:
                    out["final"] = message
        out["close"] = ws.close_code
        out["closed_at"] = time.monotonic()
    return out


# ---------------------------------------------------------------- fuzz


def fuzz_frames(rng: random.Random, native: bool, speech: list[bytes]) -> list[str | bytes]:
    start = json.dumps({"type": "start", "sample_rate": RATE} if native else {"config": {"sample_rate": RATE}})
    frames: list[str | bytes] = [start] if rng.random() < 0.8 else []
    choices: list[Callable[[], str | bytes]] = [
        lambda: rng.choice(speech),
        lambda: rng.choice(speech),
        lambda: os.urandom(rng.choice([1, 3, 7, 33, 1001])),  # odd byte counts
        lambda: os.urandom(rng.randrange(0, 4000) * 2),
        lambda: "{oops" + "x" * rng.randrange(50),
        lambda: json.dumps(
            {rng.choice(["type", "config", "eof", "reset", "x"]): rng.choice([1, "start", None, [], {}, 1e308])}
        ),
        lambda: json.dumps({"type": rng.choice(["start", "reset", "finish", "stop", ""]), "extra": 1}),
        lambda: "[" * rng.randrange(1, 3000),
        lambda: json.dumps(rng.choice([[0, 1, 2], "text", 3, None, True])),
        lambda: json.dumps({"type": "start", "sample_rate": rng.choice([0, -1, 8000, 96_000_000, "fast", 44100.5])}),
        lambda: json.dumps({"config": {"sample_rate": 8000, "phrase_list": ["x" * 201]}}),
        lambda: b"\x00" * 300_000,  # over --max-message-bytes
        lambda: b"\x00" * 1_100_000,  # over 4x the limit: websockets closes 1009
        lambda: np.full(800, 100.0, dtype="<f4").tobytes(),  # int16-scale floats (int16 stream: just loud PCM)
        lambda: "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),
        lambda: '{"type": "reset"}' if native else '{"reset": 1}',
        lambda: '{"type": "finish"}' if native else '{"eof": 1}',
    ]
    for _ in range(rng.randrange(1, 12)):
        frames.append(rng.choice(choices)())
    return frames


async def fuzz_one(port: int, frames: list[str | bytes], native: bool) -> dict[str, Any]:
    path = "/v1/stream" if native else "/"
    result: dict[str, Any] = {"close": None, "hung": False, "close_s": None}
    try:
        async with connect(f"ws://127.0.0.1:{port}{path}", ping_interval=None, max_size=None, close_timeout=5) as ws:
            reader = asyncio.create_task(_drain_ws(ws))
            with contextlib.suppress(ConnectionClosed):
                for f in frames:
                    await asyncio.wait_for(ws.send(f), 10)
            sent = time.monotonic()
            done, _ = await asyncio.wait({reader}, timeout=8)
            if not done:  # the frames left the stream open: end it as a client would
                with contextlib.suppress(ConnectionClosed):
                    await ws.send('{"type": "finish"}' if native else '{"eof" : 1}')
                done, _ = await asyncio.wait({reader}, timeout=15)
            if not done:
                result["hung"] = True
                reader.cancel()
            result["close"] = ws.close_code
            result["close_s"] = round(time.monotonic() - sent, 3)
    except InvalidStatus as exc:
        result["close"] = f"http {exc.response.status_code}"
    except (OSError, asyncio.TimeoutError) as exc:
        result["close"] = f"client error {type(exc).__name__}"
    return result


async def _drain_ws(ws: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


async def run_fuzz(port: int, count: int, seed: int, speech: list[bytes]) -> dict[str, Any]:
    rng = random.Random(seed)
    jobs = [(fuzz_frames(rng, i % 2 == 0, speech), i % 2 == 0) for i in range(count)]
    results: list[dict[str, Any]] = []
    sem = asyncio.Semaphore(6)

    async def one(frames: list[str | bytes], native: bool) -> None:
        async with sem:
            results.append(await fuzz_one(port, frames, native))

    started = time.monotonic()
    await asyncio.gather(*(one(f, n) for f, n in jobs))
    closes = Counter(str(r["close"]) for r in results)
    failures = [r for r in results if r["hung"] or r["close"] in (1006, 1011, None)]
    close_s = sorted(r["close_s"] for r in results if r["close_s"] is not None)
    return {
        "connections": count,
        "messages": sum(len(f) for f, _ in jobs),
        "closes_by_code": dict(sorted(closes.items())),
        "failures": len(failures),
        "hung": sum(r["hung"] for r in results),
        "close_after_last_frame_s": _spread(close_s),
        "wall_s": round(time.monotonic() - started, 1),
    }


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    values = sorted(values)
    return {
        "p50": round(values[len(values) // 2], 3),
        "p90": round(values[int(len(values) * 0.9)], 3),
        "max": round(values[-1], 3),
    }


# ---------------------------------------------------------------- faults


async def until_idle(port: int, timeout: float = 30.0) -> float:
    """Seconds until the server has no live stream (or timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await metric(port, "xlsr_active_streams{") == 0:
            return round(time.monotonic() - started, 2)
        await asyncio.sleep(0.05)
    return float("inf")


async def run_faults(server: ServerProcess, speech: list[bytes], hotword_lists: int) -> dict[str, Any]:
    port = server.port
    faults: dict[str, Any] = {}

    # reset: the final covers everything sent before it
    blocks = speech[:23]  # 2.3 s: the reset falls inside a window
    result = await native_stream(port, blocks, pace=None, reset_after=len(blocks) - 1)
    reset_final = next((f for f in result["finals"] if f["reason"] == "reset"), None)
    sent_s = sum(len(b) for b in blocks) / 2 / RATE
    faults["reset"] = {
        "audio_sent_s": sent_s,
        "reset_final_end_s": reset_final["end"] if reset_final else None,
        "ok": bool(reset_final and reset_final["end"] >= sent_s - 0.05),
    }

    # half-close: the client shuts its sending side after some audio
    raw = await Raw.open(port)
    await raw.upgrade("/v1/stream")
    raw.send(text(json.dumps({"type": "start", "sample_rate": RATE})), *[binary(b) for b in speech[:5]])
    await raw.writer.drain()
    raw.writer.write_eof()
    closed = time.monotonic()
    await asyncio.wait_for(raw.closed_by_server(), 30)
    faults["half_close"] = {"closed_s": round(time.monotonic() - closed, 2), "freed_s": await until_idle(port)}
    raw.abort()

    # silent peer: upgraded, then nothing (the idle timeout is 3 s)
    raw = await Raw.open(port)
    await raw.upgrade("/")
    silent = time.monotonic()
    await asyncio.wait_for(raw.closed_by_server(), 30)
    # idle timeout 3 s, then 2 s for a close reply that never comes
    faults["silent_peer"] = {"closed_s": round(time.monotonic() - silent, 2), "expected_s": 5.0}
    raw.abort()

    # a client that never reads (the send timeout is 3 s)
    raw = await Raw.open(port, rcvbuf=4096)
    await raw.upgrade("/")
    raw.send(text('{"config": {"max_alternatives": 100}}'), binary(speech[0]))
    started = time.monotonic()
    flood = asyncio.create_task(raw.flood(text('{"reset": 1}'), backlog=2**22))
    freed = await until_idle(port, timeout=60)
    flood.cancel()
    raw.abort()
    faults["never_reads"] = {
        "freed_s": round(time.monotonic() - started, 2) if freed != float("inf") else None,
        "cut_for_send_timeout": await metric(port, 'xlsr_sessions_total{outcome="send_timeout"'),
    }

    # slowloris: an HTTP request one byte at a time (the handshake timeout is 3 s)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    with contextlib.suppress(ConnectionError):
        for byte in request:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.2)
            if reader.at_eof() or writer.transport.is_closing():
                break
    with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(), 30)
    faults["slowloris"] = {"dropped_s": round(time.monotonic() - started, 2), "expected_s": 3.0}
    writer.close()

    # capacity: fill --max-connections, probe, free one
    held = []
    for _ in range(12):
        ws = await connect(f"ws://127.0.0.1:{port}/v1/stream", ping_interval=None)
        await ws.recv()
        held.append(ws)
    readyz_full = await http_get(port, "/readyz")
    try:
        async with connect(f"ws://127.0.0.1:{port}/v1/stream"):
            refused = None
    except InvalidStatus as exc:
        refused = (exc.response.status_code, exc.response.headers.get("Retry-After"))
    await held.pop().close()
    await asyncio.sleep(0.2)
    readyz_after = await http_get(port, "/readyz")
    for ws in held:
        await ws.close()
    faults["capacity"] = {
        "readyz_full": [readyz_full[0], readyz_full[1].strip()],
        "upgrade_when_full": refused,
        "readyz_after_one_left": [readyz_after[0], readyz_after[1].strip()],
    }
    await until_idle(port)

    # pipelined frames when the server closes
    raw = await Raw.open(port)
    await raw.upgrade("/v1/stream")
    started = time.monotonic()
    raw.send(
        text(json.dumps({"type": "start", "sample_rate": RATE})),
        binary(speech[0]),
        text('{"type": "finish"}'),
        *[binary(b) for b in speech[:40]],
    )
    frames = await asyncio.wait_for(read_frames(raw), 30)
    raw.send(frame(0x8, frames[-1][1]))
    await asyncio.wait_for(raw.closed_by_server(), 30)
    raw.writer.close()
    faults["pipelined_close"] = {"closed_s": round(time.monotonic() - started, 2), "websockets_default_s": 10.0}
    await until_idle(port)

    # int16-scale floats: refused with bad_audio, what was recognised is kept
    async with connect(f"ws://127.0.0.1:{port}/v1/stream", ping_interval=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "start", "sample_rate": RATE, "encoding": "float32"}))
        await ws.recv()
        for b in speech[:10]:
            await ws.send((np.frombuffer(b, "<i2") / 32768.0).astype("<f4").tobytes())
        await ws.send((np.frombuffer(speech[10], "<i2").astype("<f4")).tobytes())  # int16 values as floats
        out: dict[str, Any] = {"finals": [], "end": None, "error": None}
        await _collect(ws, out)
        faults["float_out_of_range"] = {
            "error": out["error"], "finals_before_error": len(out["finals"]), "close": ws.close_code
        }

    faults["hotwords"] = await hotword_cost(server, speech, hotword_lists)
    return faults


async def hotword_cost(server: ServerProcess, speech: list[bytes], lists: int) -> dict[str, Any]:
    """A maximal list (1000 phrases x 200 characters): set-up time, a paced bystander's latency, RSS."""
    port = server.port
    rng = random.Random(1)
    letters = "abcdefghijklmnopqrstuvwxyz"

    def phrase_list() -> list[str]:
        return [
            " ".join("".join(rng.choice(letters) for _ in range(9)) for _ in range(20))[:200] for _ in range(1000)
        ]

    rss_before = server.rss_mb()
    bystander_gaps: list[float] = []
    stop = asyncio.Event()

    async def bystander() -> None:
        async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws:
            await ws.send(json.dumps({"config": {"sample_rate": RATE}}))
            i = 0
            while not stop.is_set():
                t0 = time.monotonic()
                await ws.send(speech[i % len(speech)])
                await ws.recv()
                bystander_gaps.append(time.monotonic() - t0)
                i += 1
                await asyncio.sleep(0.1)
            await ws.send('{"eof" : 1}')
            await ws.recv()

    task = asyncio.create_task(bystander())
    await asyncio.sleep(1.0)
    baseline = list(bystander_gaps)
    setups = []
    for _ in range(lists):
        async with connect(f"ws://127.0.0.1:{port}/v1/stream", ping_interval=None, max_size=None) as ws:
            await ws.recv()
            t0 = time.monotonic()
            await ws.send(json.dumps({"type": "start", "sample_rate": RATE, "options": {"hotwords": phrase_list()}}))
            await ws.recv()
            setups.append(time.monotonic() - t0)
            for b in speech[:30]:  # 3 s: two segments, each opening a decoder stream with the list
                await ws.send(b)
            await ws.send('{"type": "finish"}')
            await _drain_ws(ws)
    stop.set()
    await asyncio.wait_for(task, 30)
    during = bystander_gaps[len(baseline) :]
    return {
        "lists": lists,
        "setup_s": _spread(setups),
        "bystander_reply_s_before": _spread(baseline),
        "bystander_reply_s_during": _spread(during),
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_after": round(server.rss_mb(), 1),
    }


# ---------------------------------------------------------------- soak


async def run_soak(server: ServerProcess, clips: list[np.ndarray], clients: int, seconds: float) -> dict[str, Any]:
    port = server.port
    samples: list[tuple[float, float]] = []
    stop = asyncio.Event()
    streams = failures = 0
    problems: list[str] = []
    started = time.monotonic()

    async def sample() -> None:
        while not stop.is_set():
            samples.append((round(time.monotonic() - started, 1), round(server.rss_mb(), 1)))
            await asyncio.sleep(1.0)

    async def client(k: int) -> None:
        nonlocal streams, failures
        i = k
        while time.monotonic() - started < seconds:
            clip = clip_blocks(clips[i % len(clips)])
            try:
                if i % 3 == 2:
                    never = asyncio.Event()
                    result = await vosk_stream(port, clip, pace=BLOCK / RATE, stop=never)
                    ok = result["final"] is not None and result["close"] == 1000
                else:
                    result = await native_stream(port, clip)
                    ok = result["end"] is not None and result["close"] == 1000 and bool(result["finals"])
            except Exception as exc:  # a failure of the server, counted
                ok = False
                problems.append(f"{type(exc).__name__}: {exc}"[:200])
            streams += 1
            failures += not ok
            i += clients

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(client(k) for k in range(clients)))
    stop.set()
    await sampler
    rss = [r for _, r in samples]
    return {
        "clients": clients,
        "seconds": seconds,
        "streams": streams,
        "failures": failures,
        "problems": problems[:5],
        "rss_mb_start": rss[0] if rss else None,
        "rss_mb_end": rss[-1] if rss else None,
        "rss_mb_max": max(rss) if rss else None,
        "rss_samples": samples[:: max(1, len(samples) // 30)],
    }


# ---------------------------------------------------------------- SIGTERM


async def run_sigterm(args: argparse.Namespace, speech: list[bytes]) -> dict[str, Any]:
    server = ServerProcess(args, ["--drain-timeout", "30"])
    port = server.port
    stop = asyncio.Event()
    long_clip = speech * 4
    tasks = {
        "native_paced": [asyncio.create_task(native_stream(port, long_clip, stop=None)) for _ in range(2)],
        "native_flat_out": [asyncio.create_task(native_stream(port, long_clip * 5, pace=None)) for _ in range(2)],
        "vosk_paced": [asyncio.create_task(vosk_stream(port, long_clip, pace=BLOCK / RATE, stop=stop))],
        "vosk_flat_out": [asyncio.create_task(vosk_stream(port, long_clip * 5, pace=None, stop=stop))],
    }
    await asyncio.sleep(4.0)
    readyz_before = (await http_get(port, "/readyz"))[0]
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    stop.set()
    await asyncio.sleep(0.3)
    try:
        readyz_draining: Any = list(await http_get(port, "/readyz"))
        readyz_draining[1] = readyz_draining[1].strip()
    except OSError as exc:
        readyz_draining = f"{type(exc).__name__} (the port was closed)"
    results: dict[str, Any] = {}
    lost = 0
    close_times: list[float] = []
    for kind, group in tasks.items():
        entries: list[dict[str, Any]] = []
        for task in group:
            try:
                r = await asyncio.wait_for(task, 60)
            except Exception as exc:
                entries.append({"error": f"{type(exc).__name__}: {exc}"[:200]})
                lost += 1
                continue
            if kind.startswith("native"):
                got = bool(r["finals"]) and r["finals"][-1]["reason"] == "finish" and r["end"] is not None
            else:
                got = r["final"] is not None
            lost += not (got and r["close"] == 1001)
            closed_s = round(r.get("closed_at", signalled) - signalled, 2)
            close_times.append(closed_s)
            entries.append({"finals_ok": got, "close": r["close"], "closed_after_signal_s": closed_s})
        results[kind] = entries
    exit_code = await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, 60)
    return {
        "clients": sum(len(g) for g in tasks.values()),
        "finals_lost": lost,
        "readyz_before": readyz_before,
        "readyz_while_draining": readyz_draining,
        "close_after_signal_s": _spread(close_times),
        "exit_code": exit_code,
        "exit_after_signal_s": round(time.monotonic() - signalled, 2),
        "by_client": results,
        "log": server.log_problems(),
    }


# ---------------------------------------------------------------- main


def load_clips() -> list[np.ndarray]:
    folder = REPO / "samples" / "librivox-dev"
    clips = []
    for path in sorted(folder.glob("*.wav")):
        audio, rate = sf.read(path, dtype="float32")
        assert rate == RATE, path
        clips.append(audio)
    return clips


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    clips = load_clips()
    speech = clip_blocks(np.concatenate(clips)[: 10 * RATE])
    report: dict[str, Any] = {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()[0]}
    server = ServerProcess(args, [])
    try:
        report["rss_mb_at_start"] = round(server.rss_mb(), 1)
        print("fuzz ...", file=sys.stderr)
        report["fuzz"] = await run_fuzz(server.port, args.fuzz, args.seed, speech)
        print("faults ...", file=sys.stderr)
        report["faults"] = await run_faults(server, speech, args.hotword_lists)
        print("soak ...", file=sys.stderr)
        report["soak"] = await run_soak(server, clips, args.soak_clients, args.soak_s)
        report["rss_mb_at_end"] = round(server.rss_mb(), 1)
    finally:
        report["log"] = server.log_problems()
        report["exit_code"] = server.stop()
    print("sigterm ...", file=sys.stderr)
    report["sigterm"] = await run_sigterm(args, speech)
    report["loadavg_end"] = os.getloadavg()[0]
    fuzz, soak, term = report["fuzz"], report["soak"], report["sigterm"]
    report["summary"] = {
        "connections_tried": fuzz["connections"] + soak["streams"] + term["clients"],
        "failures": fuzz["failures"] + soak["failures"],
        "finals_lost": term["finals_lost"],
        "tracebacks": report["log"]["tracebacks"] + term["log"]["tracebacks"],
        "rss_mb_start_end": [soak["rss_mb_start"], soak["rss_mb_end"]],
        "close_after_sigterm_s": term["close_after_signal_s"],
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped default model)")
    parser.add_argument("--fuzz", type=int, default=200, help="fuzzed connections")
    parser.add_argument("--soak-s", type=float, default=60.0, help="soak length, seconds")
    parser.add_argument("--soak-clients", type=int, default=4, help="real-time clients in the soak")
    parser.add_argument("--hotword-lists", type=int, default=6, help="distinct maximal hotword lists")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="reliability.json", help="JSON report")
    parser.add_argument("--server-arg", action="append", default=[], help="extra server flag (repeat)")
    args = parser.parse_args(argv)
    socket.setdefaulttimeout(60)
    report = asyncio.run(run_all(args))
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["summary"], indent=1))
    return 0 if report["summary"]["failures"] == 0 and report["summary"]["finals_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
