"""Drives one engine ``Recognizer`` for one connection, without blocking the loop.

The recognizer is not thread-safe, so every call on it runs in the shared
decode thread pool *under this stream's lock*: calls of one stream are
serialised, calls of different streams run in parallel.  Windows go to the
batching worker; their outputs come back through :meth:`deliver` and are
decoded in order by this stream's decode task.

Backpressure: :meth:`wait_for_room` blocks the reader while more than
``max_backlog_s`` of audio is received but not decoded *and* windows are in
flight (so waiting can end).  The connection then stops reading the socket,
websockets stops reading TCP once its small frame buffer is full, and the
client's sends block.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from streaming.arrays import AnyArray
from streaming.events import Event, Final, Partial
from streaming.recognizer import Engine, Recognizer
from streaming.stitching import WindowOutput, WindowRequest

from .metrics import ServerMetrics
from .protocol import StreamOptions, TimedEvent, Timing
from .worker import BatchingWorker

__all__ = ["StreamDriver"]

T = TypeVar("T")

_ARRIVAL_HISTORY_S = 60.0  # arrival times older than this behind the decoder are dropped


class StreamDriver:
    def __init__(
        self,
        engine: Engine,
        options: StreamOptions,
        *,
        worker: BatchingWorker,
        executor: Executor,
        metrics: ServerMetrics,
        on_events: Callable[[list[TimedEvent]], None],
        max_backlog_s: float,
    ) -> None:
        self._engine = engine
        self.options = options
        self._worker = worker
        self._executor = executor
        self._metrics = metrics
        self._on_events = on_events
        self._max_backlog_s = max_backlog_s
        self._rec: Recognizer | None = None
        self._pending: deque[AnyArray] = deque()  # received blocks not yet given to the recognizer
        self._pumping = False
        self._one_at_a_time = engine.plan.one_window_in_flight
        self._lock = asyncio.Lock()
        self._outputs: asyncio.Queue[tuple[list[WindowRequest], list[WindowOutput]]] = asyncio.Queue()
        self._decode_task: asyncio.Task[None] | None = None
        self._in_flight = 0  # windows submitted, not yet decoded
        self._flushing = False  # eof or reset: the windows left go first (someone waits for their final)
        self._changed = asyncio.Condition()
        self._failure: BaseException | None = None
        self._notifiers: set[asyncio.Task[None]] = set()  # fail() wake-ups, kept until done
        self._closed = False
        # Arrival bookkeeping for latency: cumulative seconds of audio after each
        # message, and when that message arrived (monotonic clock).
        self._arrival_audio: list[float] = []
        self._arrival_time: list[float] = []
        self._finish_time: float | None = None
        self.audio_seconds = 0.0  # received, in seconds of the client's stream
        self.decoded_seconds = 0.0
        self.segments = 0
        self.lm_active = False

    # ---- lifecycle ----

    async def open(self) -> None:
        options = self.options
        self._rec = await self._call(
            functools.partial(
                self._engine.new_stream,
                sample_rate=options.sample_rate,
                hotwords=options.hotwords,
                use_lm=options.use_lm,
                inline=False,
                max_alternatives=options.max_alternatives,
                grammar=options.grammar,
            )
        )
        self.lm_active = bool(options.use_lm and self._engine.lm_description)
        self._decode_task = asyncio.get_running_loop().create_task(self._decode_loop())

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Free everything; windows still queued in the worker are skipped."""
        self._closed = True
        if self._decode_task is not None:
            self._decode_task.cancel()
            try:
                await self._decode_task
            except (asyncio.CancelledError, Exception):
                pass
        # Wait for a recognizer call still running in a thread before dropping it.
        async with self._lock:
            self._rec = None

    # ---- commands ----

    async def feed(self, samples: AnyArray) -> None:
        self._raise_failure()
        now = time.monotonic()
        self.audio_seconds += len(samples) / self.options.sample_rate
        self._arrival_audio.append(self.audio_seconds)
        self._arrival_time.append(now)
        self._metrics.audio_seconds.inc(len(samples) / self.options.sample_rate)
        self._pending.append(samples)
        await self._pump()

    async def _pump(self) -> None:
        """Hand waiting blocks to the recognizer, taking its windows after each.

        With feature reuse a stream has one window in flight at a time, and a
        window's samples are scaled with the statistics of all audio the
        recognizer holds when it is taken.  Giving the recognizer a block only
        when nothing is in flight reproduces exactly the order of an in-process
        ``Recognizer`` fed the same blocks, so results do not depend on server
        load or on how fast the client sends.
        """
        if self._pumping:
            return  # the running pump re-checks after every step
        self._pumping = True
        try:
            while self._pending and not (self._one_at_a_time and self._in_flight):
                block = self._pending.popleft()
                requests = await self._call_rec(functools.partial(self._accept_audio, samples=block))
                self._submit(requests)
        finally:
            self._pumping = False
        await self._notify()  # waiters check "nothing pending" too

    async def reset(self) -> None:
        await self._flush(lambda rec: rec.reset())

    async def finish(self) -> None:
        self._finish_time = time.monotonic()
        await self._flush(lambda rec: rec.finish())

    async def _flush(self, action: Callable[[Recognizer], None]) -> None:
        """Decode what is in flight, run ``action``, then decode what it released."""
        await self.wait_idle()

        def run(rec: Recognizer) -> tuple[list[WindowRequest], list[Event]]:
            action(rec)
            return list(rec.take_windows()), list(rec.events())

        requests, events = await self._call_rec(run)
        self._emit(events)
        self._flushing = True
        try:
            self._submit(requests)
            await self.wait_idle()
        finally:
            self._flushing = False
        # Anything produced after the last outputs (e.g. a Final made by finish()).
        self._emit(await self._call_rec(lambda rec: list(rec.events())))

    async def wait_idle(self) -> None:
        """Until every submitted window is decoded (or the stream failed)."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: (self._in_flight == 0 and not self._pending) or self._failure is not None
            )
        self._raise_failure()

    async def wait_for_room(self) -> None:
        """Backpressure: wait while too much audio is undecoded and waiting can help."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: (
                    self._failure is not None
                    or (self._in_flight == 0 and not self._pending)
                    or self.audio_seconds - self.decoded_seconds <= self._max_backlog_s
                )
            )
        self._raise_failure()

    # ---- worker callbacks ----

    def deliver(self, requests: list[WindowRequest], outputs: list[WindowOutput]) -> None:
        if not self._closed:
            self._outputs.put_nowait((requests, outputs))

    def fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        task = asyncio.get_running_loop().create_task(self._notify())
        self._notifiers.add(task)
        task.add_done_callback(self._notifiers.discard)

    # ---- internals ----

    @staticmethod
    def _accept_audio(rec: Recognizer, samples: AnyArray) -> list[WindowRequest]:
        rec.accept_audio(samples)
        return list(rec.take_windows())

    def _submit(self, requests: list[WindowRequest]) -> None:
        if requests:
            self._in_flight += len(requests)
            self._worker.submit(self, requests, urgent=self._flushing)

    async def _decode_loop(self) -> None:
        while True:
            requests, outputs = await self._outputs.get()
            started = time.perf_counter()
            try:
                events, more = await self._call_rec(
                    functools.partial(self._decode, requests=requests, outputs=outputs)
                )
            except Exception as exc:
                self._failure = exc
                await self._notify()
                return
            self._metrics.decode_seconds.observe(time.perf_counter() - started)
            # Submit the follow-up windows before counting these as done, so that
            # wait_idle() never sees a gap in a chain of windows.
            self._submit(more)
            self._in_flight -= len(requests)
            self._emit(events)
            try:
                await self._pump()
            except Exception as exc:
                self._failure = exc
                await self._notify()
                return
            await self._notify()

    def _decode(
        self, rec: Recognizer, requests: list[WindowRequest], outputs: list[WindowOutput]
    ) -> tuple[list[Event], list[WindowRequest]]:
        """Stitch + decode (runs in a decode thread), and take the windows this
        released: with feature reuse a stream has one window in flight at a time."""
        rec.accept_window_outputs(requests, outputs)
        self.decoded_seconds = float(rec.decoded_seconds)
        return list(rec.events()), list(rec.take_windows())

    def _emit(self, events: list[Event]) -> None:
        if not events or self._closed:
            return
        now_wall = time.time()
        now = time.monotonic()
        timed: list[TimedEvent] = []
        for event in events:
            arrived = self._arrival_of(event.end)
            if isinstance(event, Final):
                self.segments += 1
                if event.reason == "finish" and self._finish_time is not None:
                    arrived = max(arrived, self._finish_time)
                latency = max(0.0, now - arrived)
                self._metrics.final_latency.observe(latency)
            else:
                assert isinstance(event, Partial)
                latency = max(0.0, now - arrived)
                self._metrics.partial_latency.observe(latency)
            timed.append(TimedEvent(event, Timing(latency, self.audio_seconds, now_wall)))
        self._prune_arrivals()
        self._on_events(timed)

    def _arrival_of(self, end_s: float) -> float:
        """When the message that brought the audio up to ``end_s`` arrived.

        Stream seconds 0..0.5 in one message that arrived at t=10.0, 0.5..1.0 at
        t=10.5: an event ending at 0.8 s was complete at t=10.5.
        """
        if not self._arrival_audio:
            return time.monotonic()
        i = bisect.bisect_left(self._arrival_audio, end_s - 1e-6)
        i = min(i, len(self._arrival_audio) - 1)
        return self._arrival_time[i]

    def _prune_arrivals(self) -> None:
        cutoff = bisect.bisect_left(self._arrival_audio, self.decoded_seconds - _ARRIVAL_HISTORY_S)
        if cutoff > 0:
            del self._arrival_audio[:cutoff]
            del self._arrival_time[:cutoff]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _call_rec(self, fn: Callable[[Recognizer], T]) -> T:
        async with self._lock:
            rec = self._rec
            if rec is None:
                raise RuntimeError("stream is closed")
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, rec)
