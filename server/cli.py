"""``xlsr-stream serve``: load the engine, serve until SIGTERM/SIGINT, drain, exit.

``main(argv)`` is the entry point (``cli/main.py`` delegates ``serve`` here);
``python -m server`` runs it too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .config import ServerConfig

if TYPE_CHECKING:
    from streaming.recognizer import Engine

__all__ = ["build_parser", "main"]

_DEFAULTS = ServerConfig()
TOKEN_ENV = "XLSR_STREAM_AUTH_TOKEN"
# vosk-server's own variables, so its deployments keep their settings.
SAMPLE_RATE_ENV = "VOSK_SAMPLE_RATE"
ALTERNATIVES_ENV = "VOSK_ALTERNATIVES"
WORDS_ENV = "VOSK_SHOW_WORDS"


def build_parser() -> argparse.ArgumentParser:
    from cli.options import add_engine_arguments

    parser = argparse.ArgumentParser(
        prog="xlsr-stream serve",
        description="WebSocket speech recognition server: native protocol on "
        f"{_DEFAULTS.native_path}, vosk-server's protocol on every other path (docs/PROTOCOL.md), "
        "/healthz /readyz /metrics over HTTP on the same port.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")

    net = parser.add_argument_group("network")
    net.add_argument("--host", default=_DEFAULTS.host, help="interface to listen on (0.0.0.0: all)")
    net.add_argument("--port", type=int, default=_DEFAULTS.port, help="TCP port (vosk-server's; 0: any free)")
    net.add_argument("--certfile", default=None, help="TLS certificate (PEM); serves wss:// with --keyfile")
    net.add_argument("--keyfile", default=None, help="TLS private key (PEM)")
    net.add_argument(
        "--auth-token",
        default=None,
        help=f"require 'Authorization: Bearer TOKEN' on upgrades, or from browsers a 'bearer.TOKEN' "
        f"subprotocol (or set ${TOKEN_ENV}, which keeps it out of ps)",
    )
    net.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="web page origin (https://app.example.com) that may open streams, besides same-origin and "
        "localhost pages; repeat for more, '*' for any",
    )

    vosk = parser.add_argument_group("vosk protocol")
    vosk.add_argument(
        "--vosk-sample-rate",
        type=int,
        default=None,
        help=f"Hz of vosk streams that send no sample_rate in a config (default: ${SAMPLE_RATE_ENV}, "
        f"else {_DEFAULTS.vosk_sample_rate}, vosk-server's)",
    )
    vosk.add_argument(
        "--vosk-alternatives",
        type=int,
        default=None,
        help=f"n-best entries of vosk results whose config sends no max_alternatives (default: ${ALTERNATIVES_ENV}, "
        f"else {_DEFAULTS.vosk_max_alternatives}: a plain result)",
    )
    vosk.add_argument(
        "--vosk-words",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"word lists in vosk results whose config sends no words (default: ${WORDS_ENV}, else on)",
    )

    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-connections",
        type=int,
        default=_DEFAULTS.max_connections,
        help="concurrent streams; more get HTTP 503 + Retry-After",
    )
    limits.add_argument(
        "--max-message-bytes",
        type=int,
        default=_DEFAULTS.max_message_bytes,
        help="largest WebSocket message; a larger one ends the stream with its finals, an error and close 1009",
    )
    limits.add_argument(
        "--idle-timeout",
        type=float,
        default=_DEFAULTS.idle_timeout_s,
        help="seconds without a message before a stream is closed",
    )
    limits.add_argument(
        "--max-session", type=float, default=_DEFAULTS.max_session_s, help="longest stream, seconds"
    )
    limits.add_argument(
        "--max-backlog",
        type=float,
        default=_DEFAULTS.max_backlog_s,
        help="seconds of undecoded audio per stream before the server stops reading it",
    )
    limits.add_argument(
        "--keepalive-interval",
        type=float,
        default=_DEFAULTS.keepalive_interval_s,
        help="seconds between keepalive pings (a late pong never closes a stream)",
    )
    limits.add_argument(
        "--send-timeout",
        type=float,
        default=_DEFAULTS.send_timeout_s,
        help="seconds a client may leave one message unread before it is cut",
    )
    limits.add_argument(
        "--close-timeout",
        type=float,
        default=_DEFAULTS.close_timeout_s,
        help="seconds to wait for a client's close reply",
    )
    limits.add_argument(
        "--max-handshakes",
        type=int,
        default=_DEFAULTS.max_handshakes,
        help="connections still in the HTTP upgrade; more are closed at once",
    )
    limits.add_argument(
        "--handshake-timeout",
        type=float,
        default=_DEFAULTS.handshake_timeout_s,
        help="seconds an HTTP upgrade may take",
    )
    limits.add_argument(
        "--drain-timeout",
        type=float,
        default=_DEFAULTS.drain_timeout_s,
        help="on SIGTERM, seconds live streams get to receive their finals",
    )

    batching = parser.add_argument_group("batching")
    batching.add_argument(
        "--max-batch-size", type=int, default=_DEFAULTS.max_batch_size, help="windows per model forward"
    )
    batching.add_argument(
        "--max-wait-ms",
        type=float,
        default=_DEFAULTS.max_wait_ms,
        help="longest wait for more windows before a forward",
    )
    batching.add_argument(
        "--decode-threads",
        type=int,
        default=_DEFAULTS.decode_threads,
        help="threads for per-stream beam search",
    )

    add_engine_arguments(parser)
    parser.set_defaults(threads=default_model_threads())
    return parser


def default_model_threads() -> int:
    """Torch threads for the model: all cores but one.

    The spare core runs beam search and the event loop.  Torch's own default
    (every core) lets its OpenMP threads fight the decode threads; on a busy
    2-core machine a batched forward of the tiny test model took 1.37 s with
    2 threads against 0.07 s with 1.
    """
    return max(1, (os.cpu_count() or 2) - 1)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        max_connections=args.max_connections,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_message_bytes=args.max_message_bytes,
        idle_timeout_s=args.idle_timeout,
        max_session_s=args.max_session,
        max_backlog_s=args.max_backlog,
        keepalive_interval_s=args.keepalive_interval,
        drain_timeout_s=args.drain_timeout,
        send_timeout_s=args.send_timeout,
        close_timeout_s=args.close_timeout,
        max_handshakes=args.max_handshakes,
        handshake_timeout_s=args.handshake_timeout,
        allowed_origins=tuple(args.allowed_origin),
        decode_threads=args.decode_threads,
        auth_token=args.auth_token or os.environ.get(TOKEN_ENV) or None,
        vosk_sample_rate=_env_whole(args.vosk_sample_rate, SAMPLE_RATE_ENV, "Hz", _DEFAULTS.vosk_sample_rate),
        vosk_max_alternatives=_env_whole(
            args.vosk_alternatives, ALTERNATIVES_ENV, "entries", _DEFAULTS.vosk_max_alternatives
        ),
        vosk_words=_env_bool(args.vosk_words, WORDS_ENV, _DEFAULTS.vosk_words),
    )


def _env_whole(flag: int | None, env_name: str, unit: str, default: int) -> int:
    """The flag, else the variable (vosk-server reads numbers with float()/int()), else the default."""
    if flag is not None:
        return flag
    env = os.environ.get(env_name, "").strip()
    if not env:
        return default
    try:
        number = float(env)
    except ValueError:
        raise ValueError(f"${env_name} must be a number of {unit}, got {env[:40]!r}") from None
    if not number.is_integer():
        raise ValueError(f"${env_name} must be a whole number of {unit}, got {env[:40]!r}")
    return int(number)


def _env_bool(flag: bool | None, env_name: str, default: bool) -> bool:
    """The flag, else the variable: 1/true/yes/on or 0/false/no/off, else the default.

    (vosk-server takes any non-empty value as true, even "0"; someone who wrote
    VOSK_SHOW_WORDS=0 meant off.)
    """
    if flag is not None:
        return flag
    env = os.environ.get(env_name, "").strip().lower()
    if not env:
        return default
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"${env_name} must be 1/true/yes/on or 0/false/no/off, got {env[:40]!r}")


def ssl_from_args(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.certfile is None and args.keyfile is None:
        return None
    if args.certfile is None:
        raise ValueError("--keyfile needs --certfile")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(args.certfile, args.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load TLS certificate {args.certfile!r}: {exc}") from None
    return context


async def serve_until_signal(
    engine: Engine, config: ServerConfig, ssl_context: ssl.SSLContext | None
) -> None:
    from .app import SpeechServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = SpeechServer(engine, config, ssl_context=ssl_context)
    await server.run(stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.INFO - 10 * min(args.verbose, 1),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # websockets logs every refused or failed handshake at INFO; keep those for -v.
    logging.getLogger("server.websockets").setLevel(logging.INFO if args.verbose else logging.WARNING)
    from cli.options import engine_from_args
    from streaming.errors import StreamingError

    try:
        config = config_from_args(args)
        ssl_context = ssl_from_args(args)
        engine = engine_from_args(args)
    except (StreamingError, ValueError, TypeError) as exc:
        print(f"xlsr-stream serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve_until_signal(engine, config, ssl_context))
    except OSError as exc:  # port in use, permission denied
        print(f"xlsr-stream serve: error: {exc}", file=sys.stderr)
        return 1
    return 0
