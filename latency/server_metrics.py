"""Server-side compute per audio second, from our server's Prometheus ``/metrics``.

The flat-out run (``runner.flat_out_rtf``) measures throughput from outside;
this reads what the server itself spent while the real-time clients ran:

    compute RTF = (forward seconds + decode seconds) / audio seconds received

between a scrape before and one after a level.  Only our server has these
counters; against another vosk server the scrape fails and the figure is None.
Between levels the lab also waits here until the server has closed every
stream of the last one (``wait_until_idle``), so that a level the server could
not keep up with does not leave streams behind that fill the next level's slots.

Behind a load balancer one /metrics request reaches one replica, so both take a
list of endpoints (``--metrics``, one per replica) and sum over them.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ComputeCounters",
    "compute_rtf",
    "metrics_url",
    "open_streams",
    "parse_counters",
    "scrape",
    "scrape_values",
    "unlabelled_values",
    "wait_until_idle",
]

# Sample names as our server exports them (server/metrics.py): histogram sums and a counter.
FORWARD = "xlsr_forward_seconds_sum"
DECODE = "xlsr_decode_seconds_sum"
AUDIO = "xlsr_audio_seconds_total"
ACTIVE = "xlsr_active_streams"  # a gauge, one sample per protocol


@dataclass(frozen=True)
class ComputeCounters:
    forward_s: float  # wall seconds inside batched model forwards
    decode_s: float  # wall seconds decoding window outputs (beam search, LM)
    audio_s: float  # seconds of audio received from all clients


def metrics_url(url: str) -> str:
    """The /metrics endpoint of the server a stream URL points at; an http(s) URL is one already.

    >>> metrics_url("ws://127.0.0.1:2700/v1/stream")
    'http://127.0.0.1:2700/metrics'
    >>> metrics_url("wss://asr.example:443")
    'https://asr.example:443/metrics'
    >>> metrics_url("http://10.0.0.7:2700/metrics")
    'http://10.0.0.7:2700/metrics'
    """
    scheme, _, rest = url.partition("://")
    if scheme in ("http", "https"):
        return url
    host = rest.split("/", 1)[0]
    return f"{'https' if scheme == 'wss' else 'http'}://{host}/metrics"


def _sum_samples(lines: Iterable[str], name: str) -> float | None:
    total: float | None = None
    for line in lines:
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


def parse_counters(text: str) -> ComputeCounters | None:
    """The three counters from Prometheus text (labels summed); None if any is missing.

    >>> parse_counters("xlsr_forward_seconds_sum 1.5\\nxlsr_decode_seconds_sum 0.5\\n"
    ...                'xlsr_audio_seconds_total{a="b"} 20.0\\n')
    ComputeCounters(forward_s=1.5, decode_s=0.5, audio_s=20.0)
    >>> parse_counters("# nothing of ours") is None
    True
    """
    lines = _samples(text)
    values = [_sum_samples(lines, name) for name in (FORWARD, DECODE, AUDIO)]
    if any(v is None for v in values):
        return None
    forward, decode, audio = (float(v) for v in values if v is not None)
    return ComputeCounters(forward, decode, audio)


def compute_rtf(before: ComputeCounters | None, after: ComputeCounters | None) -> float | None:
    """Compute seconds per audio second between two scrapes.

    Worked example: 3 s of forwards and 1 s of decoding for 40 s of audio: 0.1.

    >>> compute_rtf(ComputeCounters(1, 1, 10), ComputeCounters(4, 2, 50))
    0.1
    """
    if before is None or after is None:
        return None
    audio = after.audio_s - before.audio_s
    if audio <= 0:
        return None
    return ((after.forward_s - before.forward_s) + (after.decode_s - before.decode_s)) / audio


async def _metrics_text(url: str, timeout_s: float) -> str | None:
    def get() -> str:
        with urllib.request.urlopen(metrics_url(url), timeout=timeout_s) as response:
            return str(response.read(1 << 22).decode("utf-8", "replace"))

    try:
        return await asyncio.to_thread(get)
    except (OSError, urllib.error.URLError, ValueError):
        return None


def _samples(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _endpoints(urls: str | Sequence[str]) -> list[str]:
    return [urls] if isinstance(urls, str) else list(urls)


async def _scrape_one(url: str, timeout_s: float) -> ComputeCounters | None:
    text = await _metrics_text(url, timeout_s)
    try:
        return None if text is None else parse_counters(text)
    except ValueError:
        return None


async def scrape(urls: str | Sequence[str], *, timeout_s: float = 5.0) -> ComputeCounters | None:
    """The counters of the server(s) behind ``urls``, summed; None when one has no such endpoint."""
    counters = await asyncio.gather(*(_scrape_one(url, timeout_s) for url in _endpoints(urls)))
    if not counters or any(c is None for c in counters):
        return None
    return ComputeCounters(
        sum(c.forward_s for c in counters if c), sum(c.decode_s for c in counters if c),
        sum(c.audio_s for c in counters if c),
    )


def unlabelled_values(text: str) -> dict[str, float]:
    """Every sample without labels, by name, from Prometheus text.

    >>> unlabelled_values('# HELP x\\nxlsr_audio_seconds_total 20.0\\nxlsr_active_streams{protocol="vosk"} 3.0\\n')
    {'xlsr_audio_seconds_total': 20.0}
    """
    values: dict[str, float] = {}
    for line in _samples(text):
        parts = line.split()
        if len(parts) == 2 and "{" not in parts[0]:
            try:
                values[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return values


async def scrape_values(url: str, *, timeout_s: float = 5.0) -> dict[str, float]:
    """All unlabelled samples of the server behind ``url``; empty when it has no /metrics."""
    text = await _metrics_text(url, timeout_s)
    return {} if text is None else unlabelled_values(text)


def open_streams(text: str) -> int | None:
    """Streams the server has open (all protocols), from Prometheus text; None if not ours.

    >>> open_streams('xlsr_active_streams{protocol="vosk"} 3.0\\nxlsr_active_streams{protocol="native"} 1.0\\n')
    4
    """
    total = _sum_samples(_samples(text), ACTIVE)
    return None if total is None else round(total)


async def _open_streams_of(url: str) -> int | None:
    text = await _metrics_text(url, timeout_s=5.0)
    return None if text is None else open_streams(text)


async def wait_until_idle(urls: str | Sequence[str], *, timeout_s: float, poll_s: float = 0.5) -> int | None:
    """Wait until the server(s) behind ``urls`` have no stream open, at most ``timeout_s``.

    Returns the streams still open (0: idle), or None when one has no /metrics of ours.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        counts = await asyncio.gather(*(_open_streams_of(url) for url in _endpoints(urls)))
        count = None if not counts or any(c is None for c in counts) else sum(c for c in counts if c)
        if not count or loop.time() >= deadline:
            return count
        await asyncio.sleep(poll_s)
