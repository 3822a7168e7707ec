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
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from streaming.recognizer import Engine
from streaming.stitching import WindowRequest

from .config import ServerConfig
from .errors import ErrorCode, ErrorReport, SessionError, error_report
from .metrics import CONTENT_TYPE_LATEST, ServerMetrics
from .native import NativeProtocol, PendingResults, ServerInfo
from .page import StaticSite
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
# Browsers cannot set an Authorization header on a WebSocket, so they offer the
# token as a subprotocol "bearer.<token>" next to this one, which the server
# selects (a browser fails a handshake that selects none of the offered ones).
SUBPROTOCOL = "xlsr-stream"
TOKEN_SUBPROTOCOL_PREFIX = "bearer."
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


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
        self, engine: Engine, config: ServerConfig | None = None, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.engine = engine
        self.config = config = config or ServerConfig()
        self.metrics = ServerMetrics()
        self._ssl = ssl_context
        self.page = StaticSite.from_package()
        info = engine.info
        self.info = ServerInfo(
            server_version=server_version(),
            model=_display_name(str(info.name)),
            language=_card_language(str(info.name)),
            vocab_size=len(info.vocab),
            sample_rate=int(info.sample_rate),
            frame_rate=float(info.sample_rate) / float(info.hop_samples),
            lm=engine.lm_description,
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
            close_timeout=self.config.close_timeout_s,
            open_timeout=self.config.handshake_timeout_s,
            create_connection=self._connection_class(),
            select_subprotocol=_select_subprotocol,
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

    def unready_reason(self) -> str | None:
        """Why a load balancer should send this replica no new streams now (None: ready).

        Draining and full are both "not ready": the live streams go on, new ones
        go elsewhere, and the replica turns ready again as soon as a slot frees.
        """
        if self._server is None:
            return "not started"
        if not self.worker.alive:
            return "batching worker not running"
        if self._draining.is_set():
            return "draining"
        if len(self._admitted) >= self.config.max_connections:
            return f"full ({len(self._admitted)}/{self.config.max_connections} streams)"
        return None

    @property
    def ready(self) -> bool:
        return self.unready_reason() is None

    async def shutdown(self) -> None:
        """Drain: live streams finish and get their finals, then everything stops."""
        if self._server is None:
            return
        logger.info("draining %d live stream(s)", len(self._sessions))
        self._draining.set()
        # Keep listening while streams drain, so /readyz answers 503 (a load
        # balancer sees "draining", not a refused connection) and upgrades get
        # 503 + Retry-After.
        try:
            await asyncio.wait_for(self._no_sessions.wait(), self.config.drain_timeout_s)
        except asyncio.TimeoutError:
            logger.warning("drain timeout: closing %d stream(s) without finals", len(self._sessions))
            for session in list(self._sessions):
                session.abort()
        self._server.close()
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
            why = self.unready_reason()
            if why is None:
                return _text(connection, http.HTTPStatus.OK, "ready\n")
            return _text(connection, http.HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {why}\n")
        if path == "/metrics":
            self.metrics.queue_depth.set(self.worker.depth)
            body = self.metrics.exposition()
            headers = Headers([("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
            return Response(200, "OK", headers, body)
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if not upgrade:
            page = self.page.respond(path, request.headers.get("If-None-Match"))
            if page is not None:
                return Response(page.status.value, page.status.phrase, Headers(page.headers), page.body)
        refused = _origin_problem(request, self.config.allowed_origins)
        if refused is not None:
            self.metrics.rejected.labels("origin").inc()
            logger.info("refused an upgrade: %s", refused)
            return _text(connection, http.HTTPStatus.FORBIDDEN, f"{refused}\n")
        if self.config.auth_token is not None:
            refused = _credential_problem(request, self.config.auth_token)
            if refused is not None:
                self.metrics.rejected.labels("auth").inc()
                response = _text(connection, http.HTTPStatus.UNAUTHORIZED, f"{refused}\n")
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
        if not upgrade:
            # A plain GET of a websocket endpoint learns what its upgrade would get: the
            # page asks this after a failed upgrade, since browsers hide the status.
            response = _text(connection, http.HTTPStatus.UPGRADE_REQUIRED, "a WebSocket endpoint; upgrade to use it\n")
            response.headers["Upgrade"] = "websocket"
            return response
        self._admitted.add(connection)
        self._spawn(self._forget_when_closed(connection))
        return None

    async def _forget_when_closed(self, connection: ServerConnection) -> None:
        try:
            await connection.wait_closed()
        finally:
            self._admitted.discard(connection)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _connection_class(self) -> type[ServerConnection]:
        """Connections counted from the TCP accept, so slow upgrades are bounded too."""
        speech = self

        class Connection(ServerConnection):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                server = self.server
                handshaking = len(server.handler_tasks) - len(server.all_connections)
                if handshaking > speech.config.max_handshakes:
                    speech.metrics.rejected.labels("handshakes").inc()
                    self.transport.abort()

        return Connection

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

    def new_driver(self, options: StreamOptions, on_events: Callable[[list[TimedEvent]], None]) -> StreamDriver:
        return StreamDriver(
            self.engine,
            options,
            worker=self.worker,
            executor=self._decode_pool,
            metrics=self.metrics,
            on_events=on_events,
            max_backlog_s=self.config.max_backlog_s,
        )


def _window_seconds(engine: Engine) -> Callable[[WindowRequest], float]:
    """Seconds of stream one window moves the decoder forward: its chunk."""
    chunk_s = engine.plan.chunk_seconds
    return lambda _request: chunk_s


def _select_subprotocol(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    return Subprotocol(SUBPROTOCOL) if SUBPROTOCOL in offered else None


def _origin_problem(request: Request, allowed: tuple[str, ...]) -> str | None:
    """Why a browser page may not open a stream here (None: it may).

    Clients that are not browsers send no Origin and pass.  A page may when it
    is the server's own (same host and port), served from localhost, or listed.
    """
    origins = request.headers.get_all("Origin")
    if not origins:
        return None
    if len(origins) > 1:
        return "more than one Origin header"
    origin = origins[0].strip().lower()
    if "*" in allowed or origin in (o.lower() for o in allowed):
        return None
    parts = urlsplit(origin)
    host = request.headers.get_all("Host")
    if parts.scheme in ("http", "https") and parts.netloc:
        if len(host) == 1 and parts.netloc == host[0].strip().lower():
            return None
        if parts.hostname is not None and (parts.netloc.rsplit(":", 1)[0] in _LOCAL_HOSTS):
            return None
    return f"pages from origin {origin[:100]!r} may not open streams here (server option --allowed-origin)"


def _credential_problem(request: Request, token: str) -> str | None:
    """Why the upgrade's credentials do not pass (None: they do); the token is never echoed.

    Accepted: "Authorization: Bearer <token>" (one header), a "bearer.<token>"
    subprotocol (browsers), or ?token=<token> (clients that can set neither;
    URLs end up in proxy logs, so prefer the others).
    """
    headers = request.headers.get_all("Authorization")
    if len(headers) > 1:
        return "more than one Authorization header"
    given: list[str] = []
    if headers:
        scheme, _, value = headers[0].strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return "Authorization header must be 'Bearer <token>'"
        given.append(value.strip())
    for header in request.headers.get_all("Sec-WebSocket-Protocol"):
        for offered in header.split(","):
            offered = offered.strip()
            if offered.startswith(TOKEN_SUBPROTOCOL_PREFIX):
                given.append(offered[len(TOKEN_SUBPROTOCOL_PREFIX) :])
    given.extend(parse_qs(urlsplit(request.path).query).get("token", []))
    if not given:
        return "missing bearer token"
    expected = token.encode()
    if all(hmac.compare_digest(candidate.encode(), expected) for candidate in given):
        return None
    return "wrong bearer token"


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
        self._send_failure: SessionError | None = None  # set when a background send timed out

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
            if self._send_failure is not None:
                outcome = self._send_failure.code.text
                metrics.errors.labels(outcome).inc()
            elif exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
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
            if not report.code.reaches_client:
                self.abort()
            else:
                try:
                    if report.code.keeps_stream:
                        await self._salvage()
                    await self.send_error(report)
                    await self.close(report.close_code, report.close_reason)
                except (ConnectionClosed, SessionError):  # the client stopped reading meanwhile
                    self.abort()
        finally:
            drain_waiter.cancel()
            if self.driver is not None:
                await self.driver.close()
            metrics.active_streams.labels(self.protocol_name).dec()
            metrics.sessions.labels(self.protocol_name, outcome).inc()

    def abort(self) -> None:
        self.ws.transport.abort()

    async def send(self, message: str) -> None:
        """Send one message; a client that takes none for ``send_timeout_s`` is cut.

        Without the bound a client that never reads would hold its session and
        its connection slot forever: the send waits for its TCP window.
        """
        # The session limit holds here too; past it, finals still get close_timeout_s.
        session_left = self._started + self.config.max_session_s + self.config.close_timeout_s - time.monotonic()
        timeout = max(0.01, min(self.config.send_timeout_s, session_left))
        try:
            await asyncio.wait_for(self.ws.send(message), timeout)
        except asyncio.TimeoutError:
            if timeout < self.config.send_timeout_s:
                raise self._session_too_long() from None
            raise SessionError(
                ErrorCode.SEND_TIMEOUT, f"client read no message for {timeout:.3g} s; closing"
            ) from None

    async def close(self, code: int, reason: str = "") -> None:
        """The closing handshake, promptly.

        Frames the client sent before our close frame are read and dropped
        meanwhile: websockets stops reading TCP while unread frames wait, and the
        client's close reply would sit behind them until the close timeout.
        """
        discard = asyncio.get_running_loop().create_task(self._discard_frames())
        try:
            await asyncio.wait_for(
                self.ws.close(code, reason), self.config.send_timeout_s + self.config.close_timeout_s
            )
        except asyncio.TimeoutError:  # the client reads nothing, not even our close frame
            self.abort()
        finally:
            discard.cancel()

    async def _discard_frames(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self.ws.recv()

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
        """The next frame, None when the server drains; enforces idle and session limits.

        A drain wins over frames already queued: a client sending faster than
        real time always has one, and would otherwise be read until the drain
        timeout cut it without its finals.
        """
        if drain_waiter.done():
            return None
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
        self.proto = VoskProtocol(server.config)

    def proto_receive(self, frame: str | bytes) -> Command:
        return self.proto.receive(frame)

    async def handle(self, command: Command) -> None:
        if isinstance(command, Configure):
            return  # vosk-server sends nothing for config
        driver = await self.ensure_driver(self.proto.options)
        if isinstance(command, AudioIn):
            await driver.feed(command.samples)
            await driver.wait_idle()  # the reply reflects this block, as vosk's does
            await self.send(self.proto.audio_reply())
        elif isinstance(command, Reset):
            await driver.reset()
            await self.send(self.proto.final_reply())
        elif isinstance(command, Finish):
            await driver.finish()
            await self.send(self.proto.final_reply())
            self.done = True
            await self.close(CloseCode.NORMAL_CLOSURE)

    async def on_drain(self) -> None:
        if self.driver is not None:
            await self.flush_finals(self.driver)
        await self.close(CloseCode.GOING_AWAY, "shutting_down: server is shutting down")

    async def flush_finals(self, driver: StreamDriver) -> None:
        await driver.finish()
        await self.send(self.proto.final_reply())

    def on_events(self, events: list[TimedEvent]) -> None:
        self.proto.accept_events(events)

    async def send_error(self, report: ErrorReport) -> None:
        # Not part of vosk's protocol, but harmless: its clients print what they get.
        await self.send(dumps({"error": report.message, "code": report.code.text}))


class _Outbox:
    """Native results waiting for the sender, kept by :class:`PendingResults`'s rule
    (every final, only the newest partial).

    While a send is blocked the queue holds the finals made meanwhile and at most
    one partial, and a send blocks for at most ``send_timeout_s``.
    """

    def __init__(self) -> None:
        self._items = PendingResults()
        self._queued = asyncio.Event()
        self._idle = asyncio.Event()  # nothing queued and nothing being sent, or failed
        self._idle.set()
        self._sending = False
        self._failure: BaseException | None = None

    def put(self, timed: TimedEvent) -> None:
        if self._failure is not None:
            return
        self._items.put(timed)
        self._queued.set()
        self._idle.clear()

    async def get(self) -> TimedEvent:
        while not self._items:
            self._queued.clear()
            await self._queued.wait()
        self._sending = True
        return self._items.take()

    def task_done(self) -> None:
        self._sending = False
        if not self._items:
            self._idle.set()

    def fail(self, exc: BaseException) -> None:
        self._failure = exc
        self._items.clear()
        self._idle.set()

    async def join(self) -> None:
        """Until everything queued was sent; raises what stopped the sender."""
        await self._idle.wait()
        if self._failure is not None:
            raise self._failure

    def __len__(self) -> int:
        return len(self._items) + self._sending


class _NativeSession(_Session):
    protocol_name = "native"

    def __init__(self, server: SpeechServer, ws: ServerConnection) -> None:
        super().__init__(server, ws)
        self.proto = NativeProtocol(server.info)
        self._outbox = _Outbox()
        self._sender: asyncio.Task[None] | None = None

    def proto_receive(self, frame: str | bytes) -> Command:
        return self.proto.receive(frame)

    async def on_open(self) -> None:
        await self.send(self.proto.hello())

    async def before_read(self) -> None:
        if self.driver is not None:
            await self.driver.wait_for_room()

    async def handle(self, command: Command) -> None:
        if isinstance(command, Configure):
            driver = await self.ensure_driver(command.options)
            await self.send(self.proto.started(driver.lm_active))
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
            await self.close(CloseCode.NORMAL_CLOSURE)

    async def _finish(self, driver: StreamDriver) -> None:
        await self.flush_finals(driver)
        await self.send(self.proto.end(driver.segments, driver.audio_seconds))

    async def flush_finals(self, driver: StreamDriver) -> None:
        await driver.finish()
        if self._sender is not None:
            await self._outbox.join()

    async def on_drain(self) -> None:
        if self.driver is not None:
            await self._finish(self.driver)
        await self.close(CloseCode.GOING_AWAY, "shutting_down: server is shutting down")

    def on_events(self, events: list[TimedEvent]) -> None:
        for timed in events:
            if self.proto.wants(timed):
                self._outbox.put(timed)

    async def _send_loop(self) -> None:
        """Sends results as they come; any failure ends the session, never just the sender."""
        try:
            while True:
                timed = await self._outbox.get()
                try:
                    await self.send(self.proto.message(timed))
                finally:
                    self._outbox.task_done()
        except Exception as exc:
            self._outbox.fail(exc)  # a flush waiting for the outbox raises it
            if isinstance(exc, ConnectionClosed):
                return
            if isinstance(exc, SessionError):
                self._send_failure = exc
                logger.info("%s session closed: %s", self.protocol_name, exc.message)
            else:
                logger.error("native session: sending results failed", exc_info=exc)
            self.abort()  # the reader, wherever it waits, sees the connection close

    async def send_error(self, report: ErrorReport) -> None:
        await self.send(NativeProtocol.error(report))

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._sender is not None:
                self._sender.cancel()
