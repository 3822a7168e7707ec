"""The client library: what every program that feeds audio in and shows text out shares.

- :mod:`client.audio_files`: reading audio files (one reader, the same errors everywhere);
- :mod:`client.websocket`: both websocket protocols (vosk and native) as streams of the
  engine's own events, and :class:`SendLog`, the client's clock for timing results;
- :mod:`client.captions`: the terminal caption view, SRT / WebVTT subtitles, JSON Lines.

Used by ``xlsr-stream transcribe`` / ``eval`` (:mod:`cli`), the demos (:mod:`demos.mic`,
:mod:`demos.client`), the latency lab (:mod:`latency`) and ``benchmarks/``.  It needs the
engine's event types (:mod:`streaming.events`), never the server.
"""

from .audio_files import AudioFile, open_audio, read_16k
from .captions import LIVE, TRANSCRIPT, CaptionRenderer, CaptionStyle, JsonLog, SubtitleWriter, event_record
from .websocket import (
    PROTOCOLS,
    NativeOptions,
    NativeStream,
    ProtocolError,
    SendLog,
    VoskReplyParser,
    VoskStream,
    open_stream,
    stream_url,
)

__all__ = [
    "LIVE",
    "PROTOCOLS",
    "TRANSCRIPT",
    "AudioFile",
    "CaptionRenderer",
    "CaptionStyle",
    "JsonLog",
    "NativeOptions",
    "NativeStream",
    "ProtocolError",
    "SendLog",
    "SubtitleWriter",
    "VoskReplyParser",
    "VoskStream",
    "event_record",
    "open_audio",
    "open_stream",
    "read_16k",
    "stream_url",
]
