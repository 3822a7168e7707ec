"""What a client is told when its session fails, and the one place that decides it.

Every deliberate failure of a session is a :class:`SessionError` carrying an
:class:`ErrorCode`; each code has exactly one WebSocket close code.  The
asyncio layer calls :func:`error_report` at one boundary (the end of the
connection handler) to turn *any* exception into what the client sees:
engine errors keep their message (they say what was expected and what came),
everything else becomes ``internal_error`` with a fixed text, so tracebacks,
paths and library messages never reach a client.

    ErrorCode          close code   when
    bad_json           1007         text frame that is not a JSON object
    bad_message        1007         unknown message type, missing or wrong-typed field
    bad_audio          1007         odd-length int16 / ragged float32 PCM, NaN, floats beyond +-2, bad rate
    unsupported_data   1003         text where audio is expected or the reverse
    start_required     1008         audio or control before the native ``start``
    idle_timeout       1008         no message for ``idle_timeout_s``
    session_too_long   1008         session longer than ``max_session_s``
    message_too_big    1009         message over ``max_message_bytes``
    send_timeout       1008         client read nothing for ``send_timeout_s`` (connection cut)
    internal_error     1011         anything unexpected; details only in the server log
    shutting_down      1001         server drained this stream on SIGTERM
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from websockets.frames import CloseCode

from streaming.errors import AudioError, GrammarError, StreamingError

__all__ = ["ErrorCode", "ErrorReport", "SessionError", "error_report"]

logger = logging.getLogger("server")


class ErrorCode(enum.Enum):
    """Stable machine-readable error codes, each with its WebSocket close code."""

    BAD_JSON = ("bad_json", CloseCode.INVALID_DATA)
    BAD_MESSAGE = ("bad_message", CloseCode.INVALID_DATA)
    BAD_AUDIO = ("bad_audio", CloseCode.INVALID_DATA)
    UNSUPPORTED_DATA = ("unsupported_data", CloseCode.UNSUPPORTED_DATA)
    START_REQUIRED = ("start_required", CloseCode.POLICY_VIOLATION)
    IDLE_TIMEOUT = ("idle_timeout", CloseCode.POLICY_VIOLATION)
    SESSION_TOO_LONG = ("session_too_long", CloseCode.POLICY_VIOLATION)
    MESSAGE_TOO_BIG = ("message_too_big", CloseCode.MESSAGE_TOO_BIG)
    SEND_TIMEOUT = ("send_timeout", CloseCode.POLICY_VIOLATION)
    INTERNAL_ERROR = ("internal_error", CloseCode.INTERNAL_ERROR)
    SHUTTING_DOWN = ("shutting_down", CloseCode.GOING_AWAY)

    @property
    def text(self) -> str:
        return self.value[0]

    @property
    def keeps_stream(self) -> bool:
        """Whether the stream is still sound when this error ends the session.

        The client (or a limit) ended it, not the engine, so what was already
        recognised is flushed to the client as finals before the error.
        """
        return self not in (ErrorCode.INTERNAL_ERROR, ErrorCode.SHUTTING_DOWN, ErrorCode.SEND_TIMEOUT)

    @property
    def reaches_client(self) -> bool:
        """Whether an error message and close frame can be written: not to a client that reads nothing."""
        return self is not ErrorCode.SEND_TIMEOUT

    @property
    def close_code(self) -> int:
        return int(self.value[1])


class SessionError(Exception):
    """A session ends because of something the client did (or a server limit)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ErrorReport:
    """What the client is sent: an error message, then a close frame."""

    code: ErrorCode
    message: str  # safe to show a client

    @property
    def close_code(self) -> int:
        return self.code.close_code

    @property
    def close_reason(self) -> str:
        """Close reasons must fit in 123 bytes of UTF-8 (RFC 6455 5.5)."""
        reason = f"{self.code.text}: {self.message}"
        encoded = reason.encode()
        if len(encoded) <= 123:
            return reason
        return encoded[:120].decode(errors="ignore") + "..."


_INTERNAL = "internal server error; the server log has the details"


def error_report(exc: BaseException) -> ErrorReport:
    """The one exception -> client-visible error mapping.

    >>> error_report(SessionError(ErrorCode.BAD_JSON, "expected a JSON object, got 'x'")).close_code
    1007
    >>> error_report(KeyError("secret/path")).message
    'internal server error; the server log has the details'
    """
    if isinstance(exc, SessionError):
        return ErrorReport(exc.code, exc.message)
    if isinstance(exc, AudioError):
        return ErrorReport(ErrorCode.BAD_AUDIO, str(exc))
    if isinstance(exc, GrammarError):  # the client's phrase list
        return ErrorReport(ErrorCode.BAD_MESSAGE, str(exc))
    if isinstance(exc, StreamingError):
        # Other engine errors (state, model, LM) are server faults, not the client's.
        logger.error("engine error in session", exc_info=exc)
        return ErrorReport(ErrorCode.INTERNAL_ERROR, _INTERNAL)
    logger.error("unexpected error in session", exc_info=exc)
    return ErrorReport(ErrorCode.INTERNAL_ERROR, _INTERNAL)
