"""Replicas behind a real load balancer: the shipped HAProxy configuration
(deploy/haproxy/haproxy.cfg, unchanged: only its environment variables are set)
in front of three ``xlsr-stream serve`` processes with the shipped model, all on
127.0.0.1 with ports picked at run time, every process stopped by its PID at the end.

Each replica admits two streams (--max-connections 2), so a handful of streams
fills the fleet; the audio is 2.8 s, sent flat out.  Results through the balancer
must equal what the same engine makes of the same blocks in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from latency.server_metrics import open_streams
from streaming.decoder import DecoderConfig
from streaming.events import Final
from streaming.loading import DEFAULT_MODEL_DIR
from streaming.recognizer import Engine

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parent.parent
HAPROXY_CFG = REPO / "deploy" / "haproxy" / "haproxy.cfg"
AUDIO = REPO / "samples" / "goforward.wav"  # 2.8 s of real speech, 16 kHz
BLOCK = 4000  # 0.25 s per message
MAX_CONNECTIONS = 2  # per replica
START_TIMEOUT_S = 120.0  # three processes importing torch on a busy 2-core machine
CHECK_TIMEOUT_S = 30.0  # HAProxy checks every 1 s and needs two in a row to change its mind


def run(coro: Coroutine[Any, Any, Any], timeout: float = 90.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def wait_for(what: str, condition: Any, timeout_s: float, poll_s: float = 0.2) -> None:
    """Poll ``condition`` (an endpoint not listening yet counts as False) until true or timeout."""

    def holds() -> bool:
        try:
            return bool(condition())
        except OSError:
            return False

    deadline = time.monotonic() + timeout_s
    while not holds():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)


@dataclass
class Replica:
    name: str  # as in haproxy.cfg: replica1..3
    log: Path
    port: int = 0  # 0 until the first start picks one
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.write_text("")
        command = [
            sys.executable, "-m", "server", "--model", str(DEFAULT_MODEL_DIR), "--no-lm", "--greedy",
            "--dtype", "float32", "--threads", "1", "--port", str(self.port),
            "--max-connections", str(MAX_CONNECTIONS), "--max-wait-ms", "5", "--drain-timeout", "20",
        ]
        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_listening(self) -> None:
        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log.read_text()}")
            for line in self.log.read_text().splitlines():
                if "listening on ws://" in line:
                    self.port = int(line.split("ws://", 1)[1].split()[0].rsplit(":", 1)[1])
                    return True
            return False

        wait_for(f"{self.name} to listen", listening, START_TIMEOUT_S)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.port}/metrics")

    def streams(self) -> int:
        return open_streams(self.metrics()) or 0

    def rejected_for_capacity(self) -> float:
        for line in self.metrics().splitlines():
            if line.startswith('xlsr_rejected_upgrades_total{reason="capacity"}'):
                return float(line.split()[-1])
        return 0.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=30)


@dataclass
class Fleet:
    replicas: list[Replica]
    lb_port: int
    stats_port: int
    lb: subprocess.Popen[bytes] | None = None
    lb_log: Path | None = None
    reference_engine: Engine | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.lb_port}"

    def start_balancer(self, log: Path) -> None:
        env = dict(
            os.environ,
            XLSR_LB_BIND=f"127.0.0.1:{self.lb_port}",
            XLSR_LB_STATS_BIND=f"127.0.0.1:{self.stats_port}",
            **{f"XLSR_REPLICA{i}": f"127.0.0.1:{r.port}" for i, r in enumerate(self.replicas, start=1)},
        )
        self.lb_log = log
        with log.open("wb") as out:
            self.lb = subprocess.Popen(
                [haproxy(), "-f", str(HAPROXY_CFG)], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def status(self) -> dict[str, str]:
        """HAProxy's view of each replica: UP, DOWN, ... from its CSV stats."""
        lines = http_get(f"http://127.0.0.1:{self.stats_port}/stats;csv").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {
            r["svname"]: r["status"]
            for r in rows
            if r["pxname"] == "xlsr_replicas" and r["svname"].startswith("replica")
        }

    def ensure_ready(self) -> None:
        """Every replica running, idle, and UP in HAProxy (restarting those a test stopped)."""
        for replica in self.replicas:
            if not replica.alive:
                replica.start()
        for replica in self.replicas:
            replica.wait_listening()
        assert self.lb is not None and self.lb.poll() is None, "haproxy exited"
        wait_for("every replica UP in HAProxy", lambda: set(self.status().values()) == {"UP"}, CHECK_TIMEOUT_S)
        wait_for("idle replicas", lambda: all(r.streams() == 0 for r in self.replicas), CHECK_TIMEOUT_S)

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()
        if self.lb is not None and self.lb.poll() is None:
            self.lb.terminate()
            try:
                self.lb.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.lb.kill()
                self.lb.wait(timeout=10)


def haproxy() -> str:
    path = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert Path(path).exists(), "haproxy is not installed: run scripts/setup.sh (Debian package haproxy)"
    return path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    logs = tmp_path_factory.mktemp("fleet")
    replicas = [Replica(f"replica{i}", logs / f"replica{i}.log") for i in (1, 2, 3)]
    fleet = Fleet(replicas, lb_port=free_port(), stats_port=free_port())
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.wait_listening()  # ports picked by the replicas; restarts reuse them
        fleet.start_balancer(logs / "haproxy.log")
        fleet.ensure_ready()
        fleet.reference_engine = Engine.load(DEFAULT_MODEL_DIR, lm=False, decoder=DecoderConfig(greedy=True))
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def ready(fleet: Fleet) -> Fleet:
    fleet.ensure_ready()
    return fleet


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    audio, rate = sf.read(AUDIO, dtype="int16")
    assert rate == 16_000
    return audio


def blocks(audio: np.ndarray) -> list[np.ndarray]:
    return [audio[i : i + BLOCK] for i in range(0, len(audio), BLOCK)]


def reference_text(fleet: Fleet, audio: np.ndarray) -> str:
    assert fleet.reference_engine is not None
    stream = fleet.reference_engine.new_stream(sample_rate=16_000, use_lm=False)
    for block in blocks(audio):
        stream.accept_audio(block)
    stream.finish()
    return " ".join(e.text for e in stream.events() if isinstance(e, Final) and e.text)


# ---------------------------------------------------------------- clients


async def open_native(url: str) -> tuple[ClientConnection, list[dict]]:
    ws = await connect(f"{url}/v1/stream", open_timeout=20)
    hello = json.loads(await ws.recv())
    await ws.send(json.dumps({"type": "start", "sample_rate": 16_000}))
    started = json.loads(await ws.recv())
    return ws, [hello, started]


async def native_rest(
    ws: ClientConnection, messages: list[dict], pieces: list[np.ndarray], *, finish: bool = True
) -> list[dict]:
    """Send pieces (and finish); every message until the server closes, then {"close": code}."""

    async def read() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                messages.append(json.loads(message))

    reader = asyncio.create_task(read())
    with contextlib.suppress(ConnectionClosed):
        for piece in pieces:
            await ws.send(piece.astype("<i2").tobytes())
        if finish:
            await ws.send('{"type": "finish"}')
    await reader
    messages.append({"close": ws.close_code})
    return messages


async def native_stream(url: str, audio: np.ndarray) -> list[dict]:
    ws, messages = await open_native(url)
    return await native_rest(ws, messages, blocks(audio))


async def vosk_stream(url: str, audio: np.ndarray) -> tuple[str, int | None]:
    async with connect(f"{url}/", open_timeout=20) as ws:
        await ws.send(json.dumps({"config": {"sample_rate": 16_000}}))
        texts = []
        for block in blocks(audio):
            await ws.send(block.astype("<i2").tobytes())
            reply = json.loads(await ws.recv())
            texts.append(reply.get("text", ""))
        await ws.send('{"eof" : 1}')
        texts.append(json.loads(await ws.recv())["text"])
        with contextlib.suppress(ConnectionClosed):
            await ws.recv()
    return " ".join(t for t in texts if t), ws.close_code


def final_text(messages: list[dict]) -> str:
    return " ".join(m["text"] for m in messages if m.get("type") == "final" and m["text"])


def finished(messages: list[dict]) -> bool:
    """The stream ended the normal way: its last final, then "end", then a clean close."""
    finals = [m for m in messages if m.get("type") == "final"]
    return bool(finals) and finals[-1]["reason"] == "finish" and messages[-2]["type"] == "end"


async def open_on_replicas(fleet: Fleet, count: int) -> list[tuple[ClientConnection, list[dict], Replica]]:
    """Open native streams through the balancer one by one, noting the replica each landed on."""
    opened = []
    for _ in range(count):
        before = [await asyncio.to_thread(r.streams) for r in fleet.replicas]
        ws, messages = await open_native(fleet.url)
        after = [await asyncio.to_thread(r.streams) for r in fleet.replicas]
        (landed,) = [r for r, b, a in zip(fleet.replicas, before, after, strict=True) if a == b + 1]
        opened.append((ws, messages, landed))
    return opened


# ---------------------------------------------------------------- tests


def test_streams_spread_across_replicas_and_both_protocols_pass_through(ready: Fleet, clip: np.ndarray) -> None:
    expected = reference_text(ready, clip)

    async def scenario() -> tuple[list[int], list[Any]]:
        opened = await open_on_replicas(ready, 3)
        spread = [await asyncio.to_thread(r.streams) for r in ready.replicas]
        results = await asyncio.gather(
            *(native_rest(ws, messages, blocks(clip)) for ws, messages, _ in opened),
            vosk_stream(ready.url, clip),
        )
        return spread, results

    spread, results = run(scenario())
    assert spread == [1, 1, 1]  # leastconn: one stream each, not three on the first
    *native, (vosk_text, vosk_close) = results
    for messages in native:
        assert finished(messages) and messages[-1] == {"close": 1000}
        assert final_text(messages) == expected
    assert vosk_text == expected and vosk_close == 1000
    # HTTP routes pass through too, to whichever replica answers.
    assert http_get(f"http://127.0.0.1:{ready.lb_port}/healthz") == "ok\n"
    assert "xlsr_active_streams" in http_get(f"http://127.0.0.1:{ready.lb_port}/metrics")


def test_a_full_replicas_overflow_lands_on_another_and_503_only_when_all_are_full(
    ready: Fleet, clip: np.ndarray
) -> None:
    full, *others = ready.replicas
    rejected_before = full.rejected_for_capacity()

    async def scenario() -> tuple[list[int], list[tuple[int, str | None]], list[list[dict]]]:
        # Clients connected straight to one replica fill it behind HAProxy's back: its
        # leastconn count for that replica stays 0, so it will send streams there.
        # They open all at once, well within the ~2 s HAProxy's checks need to see the
        # full replica's /readyz 503, so leastconn does pick it and the 503 is retried.
        straight = f"ws://127.0.0.1:{full.port}"
        direct = list(await asyncio.gather(*(open_native(straight) for _ in range(MAX_CONNECTIONS))))
        through = list(await asyncio.gather(*(open_native(ready.url) for _ in range(MAX_CONNECTIONS * len(others)))))
        counts = [await asyncio.to_thread(r.streams) for r in ready.replicas]
        refused = [await refusal()]
        # Full replicas answer /readyz with 503, so the checks take all three out; then
        # HAProxy itself answers, with the same Retry-After.
        await asyncio.to_thread(
            wait_for, "every full replica DOWN", lambda: set(ready.status().values()) == {"DOWN"}, CHECK_TIMEOUT_S
        )
        refused.append(await refusal())
        done = await asyncio.gather(*(native_rest(ws, m, blocks(clip)) for ws, m in direct + through))
        return counts, refused, done

    async def refusal() -> tuple[int, str | None]:
        try:
            ws, _ = await open_native(ready.url)
        except InvalidStatus as exc:
            return exc.response.status_code, exc.response.headers.get("Retry-After")
        await ws.close()
        return 101, None

    counts, refused, done = run(scenario())
    assert counts == [MAX_CONNECTIONS] * 3  # no client saw a 503 while a slot was free
    assert full.rejected_for_capacity() > rejected_before  # HAProxy did try the full one, then went on
    assert refused == [(503, "5"), (503, "5")]  # every replica full: a 503, only then
    expected = reference_text(ready, clip)
    assert all(finished(m) and final_text(m) == expected for m in done)


def test_sigterm_drains_one_replica_without_losing_a_final_and_new_streams_go_elsewhere(
    ready: Fleet, clip: np.ndarray
) -> None:
    expected = reference_text(ready, clip)
    half = len(blocks(clip)) // 2

    async def scenario() -> tuple[Replica, list[tuple[Replica, list[dict]]], list[list[dict]]]:
        opened = await open_on_replicas(ready, 3)
        for ws, _, _ in opened:
            for piece in blocks(clip)[:half]:
                await ws.send(piece.astype("<i2").tobytes())
        victim = opened[0][2]
        assert victim.proc is not None
        # A draining server stops reading: audio still in TCP buffers is never received. Wait for
        # the victim's first reply, so it has read (part of) the first half before the SIGTERM.
        victim_ws, victim_messages, _ = opened[0]
        victim_messages.append(json.loads(await asyncio.wait_for(victim_ws.recv(), 60)))
        victim.proc.send_signal(signal.SIGTERM)
        # New streams right away: the draining replica refuses them (503 or no listener),
        # HAProxy retries on another, the client never sees it.
        fresh = asyncio.gather(native_stream(ready.url, clip), native_stream(ready.url, clip))
        rests = [
            native_rest(ws, messages, [], finish=False) if replica is victim
            else native_rest(ws, messages, blocks(clip)[half:])
            for ws, messages, replica in opened
        ]
        old = await asyncio.gather(*rests)
        return victim, [(r, m) for (_, _, r), m in zip(opened, old, strict=True)], list(await fresh)

    victim, old, fresh = run(scenario())
    for replica, messages in old:
        if replica is victim:
            # Drained: what it had received decoded and sent as finals, then "end", close 1001.
            assert finished(messages) and messages[-1] == {"close": 1001}, messages
            received = messages[-2]["audio_s"]
            assert 0 < received <= half * BLOCK / 16_000
            assert final_text(messages) == reference_text(ready, clip[: round(received * 16_000)])
        else:
            assert finished(messages) and messages[-1] == {"close": 1000}
            assert final_text(messages) == expected
    for messages in fresh:
        assert finished(messages) and final_text(messages) == expected
    assert victim.proc is not None and victim.proc.wait(timeout=30) == 0
    wait_for(f"{victim.name} DOWN in HAProxy", lambda: ready.status()[victim.name] == "DOWN", CHECK_TIMEOUT_S)


def test_a_killed_replica_costs_only_its_own_streams_and_the_health_check_takes_it_out(
    ready: Fleet, clip: np.ndarray
) -> None:
    expected = reference_text(ready, clip)
    half = len(blocks(clip)) // 2

    async def scenario() -> tuple[Replica, list[tuple[Replica, list[dict]]]]:
        opened = await open_on_replicas(ready, 3)
        for ws, _, _ in opened:
            for piece in blocks(clip)[:half]:
                await ws.send(piece.astype("<i2").tobytes())
        victim = opened[1][2]
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGKILL)
        old = await asyncio.gather(*(native_rest(ws, m, blocks(clip)[half:]) for ws, m, _ in opened))
        return victim, [(r, m) for (_, _, r), m in zip(opened, old, strict=True)]

    victim, old = run(scenario())
    for replica, messages in old:
        if replica is victim:
            assert not finished(messages) and messages[-1]["close"] != 1000  # lost: the process is gone
        else:
            assert finished(messages) and final_text(messages) == expected
    wait_for(f"{victim.name} DOWN in HAProxy", lambda: ready.status()[victim.name] == "DOWN", CHECK_TIMEOUT_S)
    alive = [r for r in ready.replicas if r is not victim]
    assert all(ready.status()[r.name] == "UP" for r in alive)
    async def fresh_streams() -> list[list[dict]]:
        return list(await asyncio.gather(*(native_stream(ready.url, clip) for _ in range(3))))

    fresh = run(fresh_streams())
    assert all(finished(m) and final_text(m) == expected for m in fresh)


def test_latency_lab_through_the_balancer_reports_what_it_reports_for_one_server(
    ready: Fleet, tmp_path: Path
) -> None:
    from latency.lab import main

    def lab(server: str, out: Path, *extra: str) -> dict:
        code = main(["--server", server, "--audio", str(AUDIO), "--model", str(DEFAULT_MODEL_DIR), "--no-lm",
                     "--greedy", "--concurrency", "2", "--ramp", "0.2", "--settle", "0.2", "--no-plots",
                     "--out-dir", str(out), *extra])
        assert code == 0
        return dict(json.loads((out / "report.json").read_text()))

    direct = ready.replicas[0]
    one = lab(f"ws://127.0.0.1:{direct.port}", tmp_path / "one")
    metrics = [arg for r in ready.replicas for arg in ("--metrics", f"http://127.0.0.1:{r.port}/metrics")]
    balanced = lab(ready.url, tmp_path / "lb", *metrics)

    def shape(value: Any) -> Any:
        """Keys and which values are present, not the numbers."""
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items() if k not in ("streams", "events")}
        if isinstance(value, list):
            return [shape(v) for v in value[:1]]
        return value is not None

    assert shape(balanced) == shape(one)
    summary = balanced["levels"][0]["summary"]
    assert summary["failed"] == summary["dropped"] == 0
    assert summary["compute_rtf"] is not None and summary["rtf"] is not None
