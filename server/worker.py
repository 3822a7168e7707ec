"""One batching worker: windows from all live streams -> one model forward.

Streams put ``(stream, WindowRequest)`` items on one asyncio queue.  The worker
takes the first item, then keeps collecting until it has ``max_batch_size``
windows or ``max_wait_ms`` have passed (urgent windows first: a stream's last
windows after eof or a reset, whose final someone is waiting for), runs ``Engine.run_windows`` on that
batch in its own thread (torch releases the GIL, so the event loop keeps
serving sockets), and hands each stream its outputs in order.  While a
forward runs, new windows pile up in the queue, so under load batches fill
without waiting at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from streaming.stitching import WindowOutput, WindowRequest

from .metrics import ServerMetrics

__all__ = ["BatchingWorker", "WindowSink"]

logger = logging.getLogger("server.worker")


class WindowSink(Protocol):
    """What the worker needs from a stream."""

    @property
    def closed(self) -> bool: ...

    def deliver(self, requests: list[WindowRequest], outputs: list[WindowOutput]) -> None: ...

    def fail(self, exc: BaseException) -> None: ...


class _Engine(Protocol):
    def run_windows(self, requests: Sequence[WindowRequest]) -> list[WindowOutput]: ...


class BatchingWorker:
    def __init__(
        self,
        engine: _Engine,
        *,
        max_batch_size: int,
        max_wait_s: float,
        metrics: ServerMetrics,
        window_seconds: Callable[[WindowRequest], float] | None = None,
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch_size
        self._max_wait = max_wait_s
        self._metrics = metrics
        self._window_seconds = window_seconds  # seconds of stream a window advances, for RTF
        # (0 urgent / 1 normal, arrival number, stream, window): urgent first, else in arrival order,
        # so each stream's windows stay in order.
        self._queue: asyncio.PriorityQueue[tuple[int, int, WindowSink, WindowRequest]] = asyncio.PriorityQueue()
        self._arrivals = 0
        # One thread: forwards run one at a time and torch uses the cores inside each.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self._task: asyncio.Task[None] | None = None
        self._streams: weakref.WeakSet[WindowSink] = weakref.WeakSet()  # every stream that submitted
        self._death: BaseException | None = None
        self.batches = 0

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batching-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True, cancel_futures=True)

    def submit(self, stream: WindowSink, requests: Sequence[WindowRequest], *, urgent: bool = False) -> None:
        """Queue a stream's windows, in order; ``urgent`` ones go before every normal one."""
        if self._death is not None:
            stream.fail(self._death)
            return
        self._streams.add(stream)
        for request in requests:
            self._arrivals += 1
            self._queue.put_nowait((0 if urgent else 1, self._arrivals, stream, request))
        self._metrics.queue_depth.set(self._queue.qsize())

    async def _collect(self) -> list[tuple[WindowSink, WindowRequest]]:
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self._max_wait
        while len(batch) < self._max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        # Streams that went away while their windows waited cost nothing.
        return [(stream, request) for _, _, stream, request in batch if not stream.closed]

    async def _run(self) -> None:
        """The worker loop; if it ever dies, every stream is failed, none waits forever."""
        try:
            while True:
                batch = await self._collect()
                try:
                    await self._forward(batch)
                except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # one bad batch must not kill the worker
                    logger.exception("batching worker: a batch of %d windows failed", len(batch))
                    for stream in {id(s): s for s, _ in batch}.values():
                        stream.fail(exc)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            logger.critical("batching worker died; failing every stream", exc_info=exc)
            self._death = RuntimeError(f"batching worker died: {type(exc).__name__}")
            streams = list(self._streams)
            while not self._queue.empty():
                streams.append(self._queue.get_nowait()[2])
            for stream in {id(s): s for s in streams}.values():
                stream.fail(self._death)

    async def _forward(self, batch: list[tuple[WindowSink, WindowRequest]]) -> None:
        loop = asyncio.get_running_loop()
        self._metrics.queue_depth.set(self._queue.qsize())
        if not batch:
            return
        requests = [request for _, request in batch]
        started = time.perf_counter()
        outputs = await loop.run_in_executor(self._executor, self._engine.run_windows, requests)
        if len(outputs) != len(requests):
            raise RuntimeError(f"run_windows returned {len(outputs)} outputs for {len(requests)} windows")
        elapsed = time.perf_counter() - started
        self.batches += 1
        self._metrics.batch_size.observe(len(requests))
        self._metrics.forward_seconds.observe(elapsed)
        if self._window_seconds is not None:
            audio = sum(self._window_seconds(r) for r in requests)
            if audio > 0:
                self._metrics.rtf.observe(elapsed / audio)
        per_stream: dict[int, tuple[WindowSink, list[WindowRequest], list[WindowOutput]]] = {}
        for (stream, request), output in zip(batch, outputs, strict=True):
            entry = per_stream.setdefault(id(stream), (stream, [], []))
            entry[1].append(request)
            entry[2].append(output)
        for stream, reqs, outs in per_stream.values():
            if not stream.closed:
                stream.deliver(reqs, outs)
