"""Server limits and batching settings: one frozen dataclass, defaults with reasons."""

from __future__ import annotations

import re
from dataclasses import dataclass

from streaming.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

__all__ = ["HTTP_PATHS", "MAX_VOSK_ALTERNATIVES", "ServerConfig"]

MAX_VOSK_ALTERNATIVES = 100  # n-best entries per result: far more than any client reads
HTTP_PATHS = ("/healthz", "/readyz", "/metrics")  # plain HTTP routes; every other path but native_path is vosk

_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s]+")
_TOKEN = re.compile(r"[\x21-\x7e]{1,512}")  # fits an HTTP header as is


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server enforces, validated on construction."""

    host: str = "127.0.0.1"  # loopback: exposing a speech endpoint is a deliberate choice
    port: int = 2700  # vosk-server's port, so vosk clients work unchanged; 0 = any free port

    # Connections beyond what the CPU can serve in real time would make every
    # stream lag; refusing with 503 + Retry-After lets a load balancer go elsewhere.
    max_connections: int = 16
    # Windows per model forward.  Batching amortises per-call overhead, but a
    # batch's forward time is added to every partial in it; 8 one-second windows
    # take well under a second on 2 cores for a base-size model.
    max_batch_size: int = 8
    # How long the worker waits for more windows before running a partial
    # batch.  Added to every result's latency, so it stays well below a window
    # hop (hundreds of ms) while letting streams that fill a window at the same
    # moment share one forward.
    max_wait_ms: float = 15.0
    # 1 MiB = 32 s of 16 kHz int16 in one message: far above any real block size
    # (vosk clients send 0.1-0.5 s) and a hard bound on per-message memory.
    max_message_bytes: int = 2**20
    # A stream that sends nothing for this long is abandoned (a vosk client that
    # crashed without closing TCP); 30 s is far above any pause between blocks.
    idle_timeout_s: float = 30.0
    # One stream cannot hold a slot forever; an hour covers long meetings.
    max_session_s: float = 3600.0
    # Audio a stream may have buffered but not yet decoded before the server
    # stops reading its socket (backpressure).  Enough to keep the batcher busy
    # for a faster-than-real-time client, small enough to bound memory
    # (10 s of 16 kHz float32 = 640 kB per stream).
    max_backlog_s: float = 10.0
    # Pings keep NAT and proxies from dropping a quiet connection (websockets' default 20 s).
    # A late pong never closes a stream: while its backlog is full the server reads nothing,
    # so the pong waits in TCP behind audio.  The idle timeout reaps dead peers instead.
    keepalive_interval_s: float = 20.0
    # On SIGTERM, live streams get this long to receive their finals.
    drain_timeout_s: float = 30.0
    # Longest wait for a client's TCP window to take one message.  A client that
    # reads nothing for this long is cut and its slot freed; 10 s rides out a
    # mobile link's stall (partials meanwhile collapse into the newest one).
    send_timeout_s: float = 10.0
    # Wait for the client's close reply.  Its unread frames are discarded while
    # the server waits, so a live client answers within a round trip.
    close_timeout_s: float = 2.0
    # Connections still in the HTTP upgrade (slow or silent ones), and how long
    # one may take: each holds a socket, so both are bounded.
    max_handshakes: int = 64
    handshake_timeout_s: float = 10.0
    # Threads for per-stream decoding (beam search, LM); the model forward has its
    # own single thread (torch parallelises inside it).  Two threads let one
    # stream's decode overlap another's on a 2-core machine.
    decode_threads: int = 2
    # When set, WebSocket upgrades need it: "Authorization: Bearer <token>", or for
    # browsers (which cannot set headers) a "bearer.<token>" WebSocket subprotocol.
    auth_token: str | None = None
    # Web pages (Origin values) that may open streams besides same-origin and
    # localhost pages: exact origins ("https://app.example.com") or "*" for any.
    # Without the check any page in a local browser could use a token-less server.
    allowed_origins: tuple[str, ...] = ()
    # vosk-server answers on every path (its Node sample uses /asr/en/), so every
    # path but this one and the HTTP routes speaks vosk.
    native_path: str = "/v1/stream"  # versioned: a v2 protocol would get its own path
    # The rate of vosk streams that send no config: vosk-server's default (its
    # VOSK_SAMPLE_RATE), which its Go, Node, C# and browser samples rely on at 8 kHz.
    vosk_sample_rate: int = 8000
    # What vosk streams get unless their config says otherwise, as vosk-server's
    # VOSK_ALTERNATIVES (0: a plain result) and VOSK_SHOW_WORDS (on) set them.
    vosk_max_alternatives: int = 0
    vosk_words: bool = True

    def __post_init__(self) -> None:
        _check_range("port", self.port, 0, 65535)
        _check_range("max_connections", self.max_connections, 1, 100_000)
        _check_range("max_batch_size", self.max_batch_size, 1, 1024)
        _check_range("max_wait_ms", self.max_wait_ms, 0.0, 10_000.0)
        _check_range("max_message_bytes", self.max_message_bytes, 1024, 2**30)
        _check_range("idle_timeout_s", self.idle_timeout_s, 0.01, 86_400.0)
        _check_range("max_session_s", self.max_session_s, 0.01, 7 * 86_400.0)
        _check_range("max_backlog_s", self.max_backlog_s, 0.1, 3600.0)
        _check_range("keepalive_interval_s", self.keepalive_interval_s, 0.01, 3600.0)
        _check_range("drain_timeout_s", self.drain_timeout_s, 0.0, 3600.0)
        _check_range("decode_threads", self.decode_threads, 1, 64)
        _check_range("send_timeout_s", self.send_timeout_s, 0.01, 3600.0)
        _check_range("close_timeout_s", self.close_timeout_s, 0.01, 600.0)
        _check_range("max_handshakes", self.max_handshakes, 1, 100_000)
        _check_range("handshake_timeout_s", self.handshake_timeout_s, 0.01, 600.0)
        object.__setattr__(self, "allowed_origins", tuple(self.allowed_origins))
        for origin in self.allowed_origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"allowed_origins entries must be * or scheme://host[:port] with no path, got {origin!r}"
                )
        if self.auth_token is not None and not _TOKEN.fullmatch(self.auth_token):
            raise ValueError(
                "auth_token must be 1-512 visible ASCII characters without spaces (browsers can send "
                "it as a subprotocol only if it also avoids ( ) < > @ , ; : \\ \" / [ ] ? = { }), or None"
            )
        if not self.native_path.startswith("/"):
            raise ValueError(f"native_path must start with '/', got {self.native_path!r}")
        if self.native_path in HTTP_PATHS:
            raise ValueError(f"native_path must not be one of the HTTP routes {HTTP_PATHS}, got {self.native_path!r}")
        _check_range("vosk_sample_rate", self.vosk_sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
        if not float(self.vosk_sample_rate).is_integer():
            raise ValueError(f"vosk_sample_rate must be a whole number of Hz, got {self.vosk_sample_rate}")
        _check_range("vosk_max_alternatives", self.vosk_max_alternatives, 0, MAX_VOSK_ALTERNATIVES)
        if not isinstance(self.vosk_words, bool):
            raise TypeError(f"vosk_words must be a bool, got {type(self.vosk_words).__name__}")
