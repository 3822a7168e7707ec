"""Latency lab: real-time simulated clients against a websocket server, and the metrics they yield.

``python -m latency`` / ``xlsr-stream latency`` runs :func:`latency.lab.main`.
"""

from .lab import build_parser, main
from .metrics import (
    Budget,
    CapacitySearch,
    LevelSummary,
    Revisions,
    StreamTrace,
    TimedEvent,
    budget_failures,
    final_latency,
    hypothesis_timeline,
    partial_delays,
    percentiles,
    revisions,
    summarize_level,
    time_to_first_partial,
    word_arrivals,
)
from .protocol import NativeStream, ProtocolError, VoskReplyParser, VoskStream, open_stream

__all__ = [
    "Budget",
    "CapacitySearch",
    "LevelSummary",
    "NativeStream",
    "ProtocolError",
    "Revisions",
    "StreamTrace",
    "TimedEvent",
    "VoskReplyParser",
    "VoskStream",
    "budget_failures",
    "build_parser",
    "final_latency",
    "hypothesis_timeline",
    "main",
    "open_stream",
    "partial_delays",
    "percentiles",
    "revisions",
    "summarize_level",
    "time_to_first_partial",
    "word_arrivals",
]
