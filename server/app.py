"""The asyncio layer: sockets, HTTP routes, limits, sessions, shutdown.

It only moves frames: a protocol object (sans I/O) parses each frame into a
command, a :class:`StreamDriver` runs it on the engine, the protocol turns
events into frames.  Every exception of a session ends at one boundary,
:meth:`_Session.run`, which asks :func:`error_report` what the client may see.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import importlib.metadata
import logging
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from .config import ServerConfig
from .errors import ErrorCode, ErrorReport, SessionError, error_report
from .metrics import CONTENT_TYPE_LATEST, ServerMetrics
from .native import NativeProtocol, ServerInfo
from .protocol import AudioIn, Command, Configure, Finish, Reset, StreamOptions, TimedEvent, dumps
from .stream import StreamDriver
from .vosk import VoskProtocol
from .worker import BatchingWorker

__all__ = ["SpeechServer", "server_version"]

logger = logging.getLogger("server")

# A client refused for capacity should come back after a few seconds: long
# enough for a stream to end, short enough that a retry loop stays responsive.
RETRY_AFTER_S = 5
# A message up to this many times --max-message-bytes is read and refused with an
# error message (after the stream's finals); a larger one websockets closes at once.
OVERSIZE_CAP = 4
# How long finishing a stream may take before an error is sent anyway.
SALVAGE_TIMEOUT_S = 10.0


def server_version() -> str:
    try:
        return importlib.metadata.version("xlsr-stream")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+dev"


def _card_language(name: str) -> str | None:
    """The ``language:`` of a local checkpoint's model card (README.md front matter).

    Hub fine-tunes state it there (``language: en`` or a list); ModelInfo does not.
    """
    card = Path(name) / "README.md"
    try:
        lines = card.read_text(encoding="utf-8", errors="replace").splitlines()[:60]
    except OSError:
        return None
    if not lines or lines[0].strip() != "---":
        return None
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            break
        if line.startswith("language:"):
            value = line.split(":", 1)[1].strip()
            if not value and i + 1 < len(lines) and lines[i + 1].strip().startswith("- "):
                value = lines[i + 1].strip()[2:]
            return value.strip("'\"[] ") or None
    return None


def _display_name(name: str) -> str:
    """The model's name as clients may see it: a hub id as is, a folder by its last part."""
    path = Path(name)
    if path.is_absolute() or path.exists():
        return path.name or name
    return name


class SpeechServer:
    """A recognition server for one loaded ``streaming.Engine``.

    Use as ``async with SpeechServer(engine, config) as server: ...`` (tests) or
    ``await server.run(stop_event)`` (the CLI).
    """

    def __init__(
        self, engine: Any, config: ServerConfig | None = None, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.engine = engine
        self.config = config = config or ServerConfig()
        self.metrics = ServerMetrics()
        self._ssl = ssl_context
        info = engine.info
        self.info = ServerInfo(
            server_version=server_version(),
            model=_display_name(str(info.name)),
            language=getattr(info, "language", None) or _card_language(str(info.name)),
            vocab_size=len(info.vocab),
            sample_rate=int(info.sample_rate),
            frame_rate=float(info.sample_rate) / float(info.hop_samples),
            lm=getattr(engine, "lm_description", None),
            max_message_bytes=config.max_message_bytes,
            idle_timeout_s=config.idle_timeout_s,
            max_session_s=config.max_session_s,
        )
        self.worker = BatchingWorker(
            engine,
            max_batch_size=config.max_batch_size,
            max_wait_s=config.max_wait_ms / 1000.0,
            metrics=self.metrics,
            window_seconds=_window_seconds(engine),
        )
        self._decode_pool = ThreadPoolExecutor(max_workers=config.decode_threads, thread_name_prefix="decode")
        self._server: Server | None = None
        self._admitted: set[ServerConnection] = set()  # upgraded, not yet disconnected
        self._sessions: set[_Session] = set()
        self._no_sessions = asyncio.Event()
        self._no_sessions.set()
        self._draining = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()

    # ---- lifecycle ----

    async def start(self) -> None:
        self.worker.start()
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            # Messages over the limit but under this hard cap are refused by the
            # session with an error message and the stream's finals; beyond it
            # websockets closes with 1009 straight away.
            max_size=OVERSIZE_CAP * self.config.max_message_bytes,
            # At most 4 frames wait unread per connection (<= 4 MiB), after which
            # websockets stops reading TCP: the last stage of backpressure.
            max_queue=4,
            # Pings go out, but a late pong closes nothing (ServerConfig.keepalive_interval_s):
            # an overloaded server would otherwise cut streams off with 1011, finals lost.
            ping_interval=self.config.keepalive_interval_s,
            ping_timeout=None,
            # PCM barely compresses and deflate costs CPU the model needs.
            compression=None,
            ssl=self._ssl,
            logger=logging.getLogger("server.websockets"),
        )
        scheme = "wss" if self._ssl else "ws"
        logger.info(
            "listening on %s://%s:%d (native protocol on %s, vosk on every other path, %d Hz without config; "
            "/healthz /readyz /metrics)",
            scheme,
            self.config.host,
            self.port,
            self.config.native_path,
            self.config.vosk_sample_rate,
        )
        logger.info(
            "model %s (%d-token vocabulary, %d Hz), LM: %s",
            self.info.model,
            self.info.vocab_size,
            self.info.sample_rate,
            self.info.lm or "none",
        )

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def ready(self) -> bool:
        return self._server is not None and self.worker.alive and not self._draining.is_set()

    async def shutdown(self) -> None:
        """Drain: live streams finish and get their finals, then everything stops."""
        if self._server is None:
            return
        logger.info("draining %d live stream(s)", len(self._sessions))
        self._draining.set()
        # Stop listening; handshakes in progress are answered with 503.
        self._server.close(close_connections=False)
        try:
            await asyncio.wait_for(self._no_sessions.wait(), self.config.drain_timeout_s)
        except asyncio.TimeoutError:
            logger.warning("drain timeout: closing %d stream(s) without finals", len(self._sessions))
            for session in list(self._sessions):
                session.abort()
        await self._server.wait_closed()
        await self.worker.stop()
        self._decode_pool.shutdown(wait=True, cancel_futures=True)
        for task in list(self._background):
            task.cancel()
        self._server = None
        logger.info("server stopped")

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.shutdown()

    async def __aenter__(self) -> SpeechServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    # ---- HTTP: routes, auth, admission ----

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            return _text(connection, http.HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            if self.ready:
                return _text(connection, http.HTTPStatus.OK, "ready\n")
            why = "draining" if self._draining.is_set() else "batching worker not running"
            return _text(connection, http.HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {why}\n")
        if path == "/metrics":
            self.metrics.queue_depth.set(self.worker.depth)
            body = self.metrics.exposition()
            headers = Headers([("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
            return Response(200, "OK", headers, body)
        token = self.config.auth_token
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                self.metrics.rejected.labels("auth").inc()
                response = _text(connection, http.HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token\n")
                response.headers["WWW-Authenticate"] = 'Bearer realm="xlsr-stream"'
                return response
        if self._draining.is_set():
            self.metrics.rejected.labels("draining").inc()
            return _unavailable(connection, "server is shutting down\n")
        if len(self._admitted) >= self.config.max_connections:
            self.metrics.rejected.labels("capacity").inc()
            return _unavailable(
                connection,
                f"server is at its limit of {self.config.max_connections} connections; retry later\n",
            )
        self._admitted.add(connection)
        self._spawn(self._forget_when_closed(connection))
        return None

    async def _forget_when_closed(self, connection: ServerConnection) -> None:
        try:
            await connection.wait_closed()
        finally:
            self._admitted.discard(connection)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- WebSocket sessions ----

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        path = urlsplit(ws.request.path).path
        session: _Session = (
            _NativeSession(self, ws) if path == self.config.native_path else _VoskSession(self, ws)
        )
        self._sessions.add(session)
        self._no_sessions.clear()
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            if not self._sessions:
                self._no_sessions.set()

    def new_driver(self, options: StreamOptions, on_events: Any) -> StreamDriver:
        return StreamDriver(
            self.engine,
            options,
            worker=self.worker,
            executor=self._decode_pool,
            metrics=self.metrics,
            on_events=on_events,
            max_backlog_s=self.config.max_backlog_s,
        )


def _window_seconds(engine: Any) -> Any:
    """Seconds of stream one window moves the decoder forward: its chunk."""
    try:
        chunk_s = float(engine.chunk_frames) * float(engine.geometry.frame_seconds)
    except AttributeError:
        return None
    return lambda _request: chunk_s


def _text(connection: ServerConnection, status: http.HTTPStatus, text: str) -> Response:
    return connection.respond(status, text)


def _unavailable(connection: ServerConnection, text: str) -> Response:
    response = connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, text)
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


class _Session:
    """One connection: the read loop, limits, drain, and the error boundary."""

    protocol_name = ""

    def __init__(self, server: SpeechServer, ws: ServerConnection) -> None:
        self.server = server
        self.ws = ws
        self.config = server.config
        self.driver: StreamDriver | None = None
        self.done = False
        self._started = time.monotonic()

    async def run(self) -> None:
        metrics = self.server.metrics
        metrics.active_streams.labels(self.protocol_name).inc()
        outcome = "ok"
        drain_waiter = asyncio.get_running_loop().create_task(self.server._draining.wait())
        try:
            await self.on_open()
            while not self.done:
                await self.before_read()
                frame = await self._next_frame(drain_waiter)
                if frame is None:
                    outcome = "drained"
                    await self.on_drain()
                    break
                await self.handle(self.proto_receive(frame))
        except ConnectionClosed as exc:
            outcome = "disconnected"
            if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
                outcome = ErrorCode.MESSAGE_TOO_BIG.text
                metrics.errors.labels(outcome).inc()
        except asyncio.CancelledError:
            outcome = "aborted"
            raise
        except Exception as exc:  # the one boundary: everything becomes an ErrorReport
            report = error_report(exc)
            outcome = report.code.text
            metrics.errors.labels(outcome).inc()
            if report.code is not ErrorCode.INTERNAL_ERROR:
                logger.info("%s session closed: %s", self.protocol_name, report.close_reason)
            with contextlib.suppress(ConnectionClosed):
                if report.code.keeps_stream:
                    await self._salvage()
                await self.send_error(report)
                await self.ws.close(report.close_code, report.close_reason)
        finally:
            drain_waiter.cancel()
            if self.driver is not None:
                await self.driver.close()
            metrics.active_streams.labels(self.protocol_name).dec()
            metrics.sessions.labels(self.protocol_name, outcome).inc()

    def abort(self) -> None:
        self.ws.transport.abort()

    async def _salvage(self) -> None:
        """Before an error closes the session, send what was already recognised.

        The bad message itself was refused whole, so the stream is sound: finish
        it and send its finals, bounded in time so a stuck stream cannot hold
        the error back.
        """
        if self.driver is None:
            return
        try:
            await asyncio.wait_for(self.flush_finals(self.driver), SALVAGE_TIMEOUT_S)
        except ConnectionClosed:
            raise
        except Exception:  # the error report still goes out; the log says why not the finals
            logger.warning("%s session: could not flush finals before the error", self.protocol_name, exc_info=True)

    async def _next_frame(self, drain_waiter: asyncio.Task[Any]) -> str | bytes | None:
        """The next frame, None when the server drains; enforces idle and session limits."""
        now = time.monotonic()
        session_left = self._started + self.config.max_session_s - now
        timeout = min(self.config.idle_timeout_s, session_left)
        if timeout <= 0:
            raise self._session_too_long()
        recv = asyncio.get_running_loop().create_task(self.ws.recv())
        try:
            done, _ = await asyncio.wait(
                {recv, drain_waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            recv.cancel()
            raise
        if recv in done:
            frame: str | bytes = recv.result()
            size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
            if size > self.config.max_message_bytes:
                raise SessionError(
                    ErrorCode.MESSAGE_TOO_BIG,
                    f"message of {size} bytes is over the limit of {self.config.max_message_bytes} bytes; "
                    "send audio in blocks of about 0.1 s",
                )
            return frame
        recv.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await recv
        if drain_waiter in done:
            return None
        if self.config.idle_timeout_s < session_left:
            raise SessionError(
                ErrorCode.IDLE_TIMEOUT,
                f"no message for {self.config.idle_timeout_s:g} s; closing idle stream",
            )
        raise self._session_too_long()

    def _session_too_long(self) -> SessionError:
        return SessionError(
            ErrorCode.SESSION_TOO_LONG,
            f"stream exceeded the session limit of {self.config.max_session_s:g} s",
        )

    async def ensure_driver(self, options: StreamOptions) -> StreamDriver:
        if self.driver is None:
            self.driver = self.server.new_driver(options, self.on_events)
            await self.driver.open()
        return self.driver

    # ---- protocol specific ----

    def proto_receive(self, frame: str | bytes) -> Command:
        raise NotImplementedError

    async def on_open(self) -> None:
        pass

    async def before_read(self) -> None:
        pass

    async def handle(self, command: Command) -> None:
        raise NotImplementedError

    async def on_drain(self) -> None:
        raise NotImplementedError

    async def flush_finals(self, driver: StreamDriver) -> None:
        """Finish the stream and send its finals (not the end of the session)."""
        raise NotImplementedError

    def on_events(self, events: list[TimedEvent]) -> None:
        raise NotImplementedError

    async def send_error(self, report: ErrorReport) -> None:
        raise NotImplementedError


class _VoskSession(_Session):
    protocol_name = "vosk"

    def __init__(self, server: SpeechServer, ws: ServerConnection) -> None:
        super().__init__(server, ws)
        self.proto = VoskProtocol(server.config.vosk_sample_rate)

    def proto_receive(self, frame: str | bytes) -> Command:
        return self.proto.receive(frame)

    async def handle(self, command: Command) -> None:
        if isinstance(command, Configure):
            return  # vosk-server sends nothing for config
        driver = await self.ensure_driver(self.proto.options)
        if isinstance(command, AudioIn):
            await driver.feed(command.samples)
            await driver.wait_idle()  # the reply reflects this block, as vosk's does
            await self.ws.send(self.proto.audio_reply())
        elif isinstance(command, Reset):
            await driver.reset()
            await self.ws.send(self.proto.final_reply())
        elif isinstance(command, Finish):
            await driver.finish()
            await self.ws.send(self.proto.final_reply())
            self.done = True
            await self.ws.close(CloseCode.NORMAL_CLOSURE)

    async def on_drain(self) -> None:
        if self.driver is not None:
            await self.flush_finals(self.driver)
        await self.ws.close(CloseCode.GOING_AWAY, "shutting_down: server is shutting down")

    async def flush_finals(self, driver: StreamDriver) -> None:
        await driver.finish()
        await self.ws.send(self.proto.final_reply())

    def on_events(self, events: list[TimedEvent]) -> None:
        self.proto.accept_events(events)

    async def send_error(self, report: ErrorReport) -> None:
        # Not part of vosk's protocol, but harmless: its clients print what they get.
        await self.ws.send(dumps({"error": report.message, "code": report.code.text}))


class _NativeSession(_Session):
    protocol_name = "native"

    def __init__(self, server: SpeechServer, ws: ServerConnection) -> None:
        super().__init__(server, ws)
        self.proto = NativeProtocol(server.info)
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None

    def proto_receive(self, frame: str | bytes) -> Command:
        return self.proto.receive(frame)

    async def on_open(self) -> None:
        await self.ws.send(self.proto.hello())

    async def before_read(self) -> None:
        if self.driver is not None:
            await self.driver.wait_for_room()

    async def handle(self, command: Command) -> None:
        if isinstance(command, Configure):
            driver = await self.ensure_driver(command.options)
            await self.ws.send(self.proto.started(driver.lm_active))
            self._sender = asyncio.get_running_loop().create_task(self._send_loop())
            return
        current = self.driver
        assert current is not None  # the protocol refuses anything else before start
        if isinstance(command, AudioIn):
            await current.feed(command.samples)
        elif isinstance(command, Reset):
            await current.reset()
        elif isinstance(command, Finish):
            await self._finish(current)
            self.done = True
            await self.ws.close(CloseCode.NORMAL_CLOSURE)

    async def _finish(self, driver: StreamDriver) -> None:
        await self.flush_finals(driver)
        await self.ws.send(self.proto.end(driver.segments, driver.audio_seconds))

    async def flush_finals(self, driver: StreamDriver) -> None:
        await driver.finish()
        if self._sender is not None:
            await self._outbox.join()

    async def on_drain(self) -> None:
        if self.driver is not None:
            await self._finish(self.driver)
        await self.ws.close(CloseCode.GOING_AWAY, "shutting_down: server is shutting down")

    def on_events(self, events: list[TimedEvent]) -> None:
        for message in self.proto.event_messages(events):
            self._outbox.put_nowait(message)

    async def _send_loop(self) -> None:
        while True:
            message = await self._outbox.get()
            try:
                # A partial with anything queued behind it is already stale.
                if not (message.startswith('{"type":"partial"') and not self._outbox.empty()):
                    await self.ws.send(message)
            except ConnectionClosed:
                pass
            finally:
                self._outbox.task_done()

    async def send_error(self, report: ErrorReport) -> None:
        await self.ws.send(NativeProtocol.error(report))

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._sender is not None:
                self._sender.cancel()
