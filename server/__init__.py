"""WebSocket speech recognition server: vosk-compatible and native protocols.

Layers: ``protocol``/``vosk``/``native`` (sans I/O: frames <-> typed commands
and messages), ``errors`` (the one exception -> close code mapping),
``stream`` (drives one recognizer off the event loop), ``worker`` (one
batching worker for all streams), ``app`` (asyncio: sockets, HTTP routes,
limits, shutdown), ``cli`` (``xlsr-stream serve``), ``page`` (the captioning page in ``static/``,
served on plain GETs).
"""

from .app import SpeechServer
from .cli import build_parser, main
from .config import ServerConfig
from .errors import ErrorCode, SessionError
from .native import PROTOCOL_VERSION

__all__ = [
    "PROTOCOL_VERSION",
    "ErrorCode",
    "ServerConfig",
    "SessionError",
    "SpeechServer",
    "build_parser",
    "main",
]
