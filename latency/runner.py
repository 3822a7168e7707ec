"""Simulated clients: replay audio over websocket at real-time pace and record what came back.

Each client is one asyncio task with two halves: a sender that sends block
``i`` when a microphone would have delivered it (``(i + 1) * block_s`` after
the stream started) and a receiver that timestamps every reply.  Timestamps
go straight into a :class:`~latency.metrics.StreamTrace`; every number in the
report is computed afterwards from traces by :mod:`latency.metrics`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from websockets.exceptions import ConnectionClosed, WebSocketException

from client.websocket import NativeStream, ProtocolError, SendLog, VoskStream, open_stream
from streaming.events import Final

from .metrics import ReceivedEvent, StreamTrace

__all__ = ["ClientConfig", "flat_out_rtf", "run_level", "split_blocks"]

logger = logging.getLogger("latency.runner")

# What a stream can fail with: network, handshake (e.g. 503 when the server is
# full), a close mid-stream, a reply the protocol does not allow, a timeout.
STREAM_ERRORS = (OSError, WebSocketException, ProtocolError, asyncio.TimeoutError, TimeoutError)


@dataclass(frozen=True)
class ClientConfig:
    """How every simulated client behaves."""

    url: str
    protocol: str = "vosk"
    sample_rate: int = 16_000
    # 100 ms blocks: what most capture APIs deliver and vosk's own clients send
    # (0.2 s at 8 kHz = 0.1 s at 16 kHz of 4000-sample reads).  Smaller blocks
    # mean more replies but cannot make results faster than the engine's chunk.
    block_s: float = 0.1
    # Users do not arrive in lockstep; spreading starts over a second keeps
    # every client's windows from landing on the server at the same instant.
    ramp_s: float = 1.0
    open_timeout_s: float = 10.0
    # After the last block, how long to wait for the final result.  The
    # default endpointing and chunking need ~3 s; more is a stuck server.
    final_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0.01 <= self.block_s <= 2.0:
            raise ValueError(f"block_s must be in 0.01..2.0 s, got {self.block_s}")
        if not 0.0 <= self.ramp_s <= 60.0:
            raise ValueError(f"ramp_s must be in 0..60 s, got {self.ramp_s}")
        for name in ("open_timeout_s", "final_timeout_s"):
            if not 0.1 <= getattr(self, name) <= 3600.0:
                raise ValueError(f"{name} must be in 0.1..3600 s, got {getattr(self, name)}")


def split_blocks(samples: np.ndarray, block_samples: int) -> list[np.ndarray]:
    """Cut audio into blocks of ``block_samples``; the last may be shorter.

    2.5 s at 16 kHz in 0.1 s blocks: 40000 samples -> 25 blocks of 1600.

    >>> [len(b) for b in split_blocks(np.zeros(3500, np.float32), 1600)]
    [1600, 1600, 300]
    """
    if block_samples < 1:
        raise ValueError(f"block_samples must be >= 1, got {block_samples}")
    return [samples[i : i + block_samples] for i in range(0, len(samples), block_samples)]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        if rcvd is not None:
            return f"server closed the stream: code {rcvd.code} {rcvd.reason!r}"[:200]
        return "connection lost without a close frame"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]


async def _replay(
    client: int, config: ClientConfig, blocks: Sequence[np.ndarray], audio_seconds: float, delay: float
) -> StreamTrace:
    """One real-time client.  Never raises: failures end up in the trace."""
    loop = asyncio.get_running_loop()
    trace = StreamTrace(client=client, audio_seconds=audio_seconds)
    await asyncio.sleep(delay)
    connected = False
    try:
        async with open_stream(
            config.url, config.protocol, config.sample_rate, open_timeout=config.open_timeout_s
        ) as stream:
            connected = True
            t0 = loop.time()
            log = SendLog()  # on the loop's clock

            async def send() -> None:
                due_samples = 0
                for block in blocks:
                    due_samples += len(block)
                    due = t0 + due_samples / config.sample_rate
                    wait = due - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    now = loop.time()
                    trace.send_lateness = max(trace.send_lateness, now - due)
                    log.sent(len(block) / config.sample_rate, at=now)
                    await stream.send_audio(block)
                    trace.blocks_sent += 1
                trace.eof_t = loop.time() - t0
                await stream.send_eof()

            async def receive() -> bool:
                got_final_after_eof = False
                async for event in stream.replies():
                    now = loop.time()
                    if isinstance(stream, VoskStream) and trace.replies < len(log.sent_at):
                        trace.reply_lags.append(now - log.sent_at[trace.replies])
                        trace.lag_times.append(now - t0)
                    elif isinstance(stream, NativeStream) and log.sent_at and event.end > 0:
                        # No reply per block: measure from when the audio at the result's
                        # ``end`` was sent, i.e. the block holding its last decoded sample.
                        trace.reply_lags.append(now - log.send_time_of(event.end))
                        trace.lag_times.append(now - t0)
                    trace.replies += 1
                    trace.events.append(ReceivedEvent(now - t0, event))
                    if trace.eof_t is not None and isinstance(event, Final):
                        got_final_after_eof = True
                return got_final_after_eof

            sender = asyncio.create_task(send())
            try:
                deadline = audio_seconds + config.final_timeout_s
                got_final = await asyncio.wait_for(receive(), deadline)
                await sender
            finally:
                sender.cancel()
                if sender.done() and not sender.cancelled():
                    sender.exception()  # retrieved: the receiver's error already says what happened
            trace.closed_t = loop.time() - t0
            if not got_final:
                trace.status, trace.error = "dropped", "connection closed before the final result"
            elif isinstance(stream, VoskStream) and trace.replies != trace.blocks_sent + 1:
                # Not fatal, but reply lags are then matched to the wrong blocks.
                trace.error = (f"vosk protocol: {trace.replies} replies to {trace.blocks_sent} "
                               "audio messages + eof (expected one each)")
    except STREAM_ERRORS as exc:
        trace.status = "dropped" if connected else "failed"
        trace.error = ("while connecting: " if not connected else "") + _describe(exc)
    return trace


async def run_level(config: ClientConfig, samples: np.ndarray, concurrency: int) -> list[StreamTrace]:
    """``concurrency`` real-time clients replaying ``samples`` (16 kHz float32), started over ramp_s."""
    blocks = split_blocks(samples, max(1, round(config.block_s * config.sample_rate)))
    audio_seconds = len(samples) / config.sample_rate
    tasks = [
        _replay(i, config, blocks, audio_seconds, config.ramp_s * i / concurrency)
        for i in range(concurrency)
    ]
    return list(await asyncio.gather(*tasks))


async def flat_out_rtf(config: ClientConfig, samples: np.ndarray, concurrency: int) -> float | None:
    """Server real-time factor at this concurrency: send every stream as fast as it is taken.

    RTF = wall seconds from the first block to the last final / seconds of audio
    served (all streams together).  2 streams of 3 s each done in 0.6 s: RTF 0.1,
    so the server could in principle keep ~10 real-time streams busy.
    None when any stream failed (the time would not be the server's work).
    """
    loop = asyncio.get_running_loop()
    blocks = split_blocks(samples, max(1, round(config.block_s * config.sample_rate)))

    async def one() -> tuple[float, float] | None:
        try:
            async with open_stream(
                config.url, config.protocol, config.sample_rate, open_timeout=config.open_timeout_s
            ) as stream:
                start = loop.time()

                async def send() -> None:
                    for block in blocks:
                        await stream.send_audio(block)
                    await stream.send_eof()

                async def drain() -> None:
                    async for _ in stream.replies():
                        pass

                sender = asyncio.create_task(send())
                try:
                    timeout = len(samples) / config.sample_rate * concurrency + config.final_timeout_s
                    await asyncio.wait_for(drain(), timeout)
                    await sender
                finally:
                    sender.cancel()
                return start, loop.time()
        except STREAM_ERRORS as exc:
            logger.warning("flat-out stream failed: %s", _describe(exc))
            return None

    spans = await asyncio.gather(*(one() for _ in range(concurrency)))
    if any(s is None for s in spans):
        return None
    starts = [s[0] for s in spans if s is not None]
    ends = [s[1] for s in spans if s is not None]
    audio = len(samples) / config.sample_rate * concurrency
    return (max(ends) - min(starts)) / audio if audio > 0 else None
