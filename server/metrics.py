"""Prometheus metrics of one server, in its own registry (two servers in one
process, as in the tests, never share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]

# Latency buckets (seconds): tens of ms (batching wait) to seconds (an overloaded box).
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.active_streams = Gauge(
            "xlsr_active_streams", "WebSocket recognition sessions open now", ["protocol"], registry=r
        )
        self.sessions = Counter(
            "xlsr_sessions", "Sessions by protocol and how they ended", ["protocol", "outcome"], registry=r
        )
        self.rejected = Counter(
            "xlsr_rejected_upgrades", "Upgrades refused before the handshake", ["reason"], registry=r
        )
        self.queue_depth = Gauge(
            "xlsr_queue_depth_windows", "Windows waiting for the batching worker", registry=r
        )
        self.batch_size = Histogram(
            "xlsr_batch_size_windows",
            "Windows per model forward",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            registry=r,
        )
        self.forward_seconds = Histogram(
            "xlsr_forward_seconds",
            "Wall time of one batched model forward",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rtf = Histogram(
            "xlsr_forward_rtf",
            "Forward wall time / audio seconds of new frames in the batch",
            buckets=_RTF_BUCKETS,
            registry=r,
        )
        self.decode_seconds = Histogram(
            "xlsr_decode_seconds",
            "Wall time of decoding one stream's window outputs",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter(
            "xlsr_audio_seconds", "Audio received from clients (16 kHz time line)", registry=r
        )
        self.partial_latency = Histogram(
            "xlsr_partial_latency_seconds",
            "Arrival of the audio that completed a partial -> partial sent",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.final_latency = Histogram(
            "xlsr_final_latency_seconds",
            "Arrival of the audio that completed a final (or of eof) -> final sent",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("xlsr_session_errors", "Sessions closed with an error", ["code"], registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
