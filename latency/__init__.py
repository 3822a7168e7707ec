"""Latency lab: real-time simulated clients against a websocket server, and the metrics they yield.

``python -m latency`` / ``xlsr-stream latency`` runs :func:`latency.lab.main`.
"""

from client.websocket import NativeStream, ProtocolError, VoskReplyParser, VoskStream, open_stream

from .lab import build_parser, main
from .metrics import (
    Budget,
    CapacitySearch,
    LevelSummary,
    ReceivedEvent,
    Revisions,
    StreamTrace,
    after_eof_latency,
    budget_failures,
    endpoint_latency,
    final_latency,
    hypothesis_timeline,
    partial_delays,
    percentiles,
    revisions,
    summarize_level,
    time_to_first_partial,
    word_arrivals,
)

__all__ = [
    "Budget",
    "CapacitySearch",
    "LevelSummary",
    "NativeStream",
    "ProtocolError",
    "Revisions",
    "StreamTrace",
    "ReceivedEvent",
    "VoskReplyParser",
    "VoskStream",
    "budget_failures",
    "build_parser",
    "after_eof_latency",
    "endpoint_latency",
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
