"""Latency metrics as pure functions of what one client saw.

A client replays audio at real-time pace: the block holding samples
``[i*B, (i+1)*B)`` is sent ``(i+1)*B / rate`` seconds after the stream
started, i.e. as soon as a microphone would have delivered it.  So "seconds
since the stream started" on the client's wall clock and "seconds into the
audio" are the same time line, and a word that ends at 2.30 s in the audio
and first shows up in a reply received at 3.05 s has a partial delay of
0.75 s.

Every function here takes plain values (timestamped events, reference words)
and returns numbers; nothing reads a clock or a socket, so each is tested with
hand-made timelines.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from streaming.events import Final, Partial, Word

__all__ = [
    "PERCENTILES",
    "Budget",
    "CapacitySearch",
    "LevelSummary",
    "Revisions",
    "StreamTrace",
    "ReceivedEvent",
    "budget_failures",
    "contained_words",
    "after_eof_latency",
    "endpoint_latency",
    "final_latency",
    "hypothesis_timeline",
    "partial_delays",
    "percentiles",
    "revisions",
    "summarize_level",
    "time_to_first_partial",
    "word_arrivals",
]

# The table and the JSON report give these; p99 only means something with
# hundreds of samples, which a sweep of a few streams x dozens of words gives.
PERCENTILES: tuple[int, ...] = (50, 90, 99)


@dataclass(frozen=True)
class ReceivedEvent:
    """One reply as a client saw it: the event and when it arrived on the client's clock.

    (The server's ``server.protocol.TimedEvent`` is the other side: an event with the
    server's own timing, before it is sent.)
    """

    t: float  # seconds since the stream started (its first block was due), client wall clock
    event: Partial | Final


@dataclass
class StreamTrace:
    """Everything one simulated client recorded about its stream."""

    client: int
    audio_seconds: float
    events: list[ReceivedEvent] = field(default_factory=list)
    # vosk: block sent -> its reply received, per block; native: the block holding a result's
    # last decoded sample sent -> the result received (s)
    reply_lags: list[float] = field(default_factory=list)
    lag_times: list[float] = field(default_factory=list)  # when each reply_lags entry was measured (s)
    send_lateness: float = 0.0  # worst delay of a block behind its real-time due time (client overload)
    blocks_sent: int = 0
    replies: int = 0
    eof_t: float | None = None  # when end-of-stream was sent
    closed_t: float | None = None  # when the connection closed
    status: str = "ok"  # "ok", "failed" (never ran: connect/handshake/timeout) or "dropped" (cut mid-stream)
    error: str | None = None


# ----------------------------------------------------------------- timelines
def hypothesis_timeline(events: Iterable[ReceivedEvent]) -> list[tuple[float, tuple[str, ...]]]:
    """The transcript a viewer saw after each reply: committed finals + the open partial.

    >>> from streaming.events import Partial, Final
    >>> p = lambda t, s: ReceivedEvent(t, Partial(s, "", 0, 0.0, t))
    >>> f = lambda t, s: ReceivedEvent(t, Final(s, (), 0, 0.0, t, "silence"))
    >>> hypothesis_timeline([p(1.0, "the"), f(2.0, "the cat"), p(3.0, "sat")])
    [(1.0, ('the',)), (2.0, ('the', 'cat')), (3.0, ('the', 'cat', 'sat'))]
    """
    committed: list[str] = []
    out: list[tuple[float, tuple[str, ...]]] = []
    for timed in events:
        words = timed.event.text.split()
        if isinstance(timed.event, Final):
            committed.extend(words)
            out.append((timed.t, tuple(committed)))
        else:
            out.append((timed.t, tuple(committed) + tuple(words)))
    return out


def contained_words(hypothesis: Sequence[str], reference: Sequence[str]) -> list[bool]:
    """Which reference words a hypothesis contains, by a longest common subsequence.

    Matching in order (not as a bag of words) keeps a repeated word, or a word
    the hypothesis has only at a different place, from counting early.

    >>> contained_words(["the", "cat", "sad"], ["the", "cat", "sat", "down"])
    [True, True, False, False]
    >>> contained_words(["a", "dog"], ["the", "dog"])
    [False, True]
    """
    n, m = len(hypothesis), len(reference)
    if n == 0 or m == 0:
        return [False] * m
    # lcs[i][j]: LCS length of hypothesis[i:] and reference[j:]
    lcs = np.zeros((n + 1, m + 1), dtype=np.int32)
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            if hypothesis[i] == reference[j]:
                lcs[i, j] = lcs[i + 1, j + 1] + 1
            else:
                lcs[i, j] = max(lcs[i + 1, j], lcs[i, j + 1])
    found = [False] * m
    i = j = 0
    while i < n and j < m:
        if hypothesis[i] == reference[j] and lcs[i, j] == lcs[i + 1, j + 1] + 1:
            found[j] = True
            i += 1
            j += 1
        elif lcs[i + 1, j] >= lcs[i, j + 1]:
            i += 1
        else:
            j += 1
    return found


def word_arrivals(
    timeline: Sequence[tuple[float, Sequence[str]]],
    reference: Sequence[str],
    starts: Sequence[float] | None = None,
) -> list[float | None]:
    """For each reference word, when a reply first contained it (None: never).

    ``starts`` (seconds into the audio) keeps matching causal: a reply at
    time t can only contain reference words that had begun by then, since
    at real-time pace no later audio had been sent.  Without it, an early
    "a" in a hypothesis could be matched to a reference "a" spoken seconds
    later and give a negative delay.

    >>> word_arrivals([(1.0, ("the",)), (2.0, ("the", "cat"))], ["the", "cat", "sat"])
    [1.0, 2.0, None]
    >>> word_arrivals([(1.0, ("a",)), (3.0, ("a", "b", "a"))], ["a", "b", "a"], starts=[0.2, 1.5, 2.0])
    [1.0, 3.0, 3.0]
    """
    if starts is not None and len(starts) != len(reference):
        raise ValueError(f"{len(starts)} start times for {len(reference)} reference words")
    arrivals: list[float | None] = [None] * len(reference)
    previous: tuple[tuple[str, ...], int] | None = None
    for t, words in timeline:
        begun = len(reference) if starts is None else sum(1 for s in starts if s < t)
        key = (tuple(words), begun)
        if key == previous:
            continue
        previous = key
        for k, hit in enumerate(contained_words(key[0], reference[:begun])):
            if hit and arrivals[k] is None:
                arrivals[k] = t
    return arrivals


def partial_delays(
    timeline: Sequence[tuple[float, Sequence[str]]], reference: Sequence[Word]
) -> list[float | None]:
    """How long after each reference word ends in the audio it first shows up.

    Worked example: "hello" ends at 0.62 s and first appears in a reply at
    1.50 s, so its delay is 0.88 s; "world" never appears (None).

    >>> ref = [Word("hello", 0.30, 0.62, 1.0), Word("world", 0.70, 1.10, 1.0)]
    >>> [None if d is None else round(d, 2) for d in partial_delays([(1.5, ("hello",))], ref)]
    [0.88, None]
    """
    arrivals = word_arrivals(timeline, [w.text for w in reference], [w.start for w in reference])
    return [None if a is None else a - w.end for a, w in zip(arrivals, reference, strict=True)]


def time_to_first_partial(events: Iterable[ReceivedEvent]) -> float | None:
    """Seconds from stream start to the first reply with any text (None: none had text).

    >>> from streaming.events import Partial
    >>> time_to_first_partial([ReceivedEvent(0.5, Partial("", "", 0, 0.0, 0.5)),
    ...                        ReceivedEvent(1.2, Partial("hi", "", 0, 0.0, 1.2))])
    1.2
    """
    for timed in events:
        if timed.event.text.strip():
            return timed.t
    return None


def final_latency(events: Sequence[ReceivedEvent], speech_end: float) -> float | None:
    """Seconds from the end of speech until the transcript was final.

    That moment is the arrival of the last Final with text: every Final after
    it is empty (trailing silence, or the end-of-stream reply), so the user
    had the complete transcript then.  With trailing silence in the audio, an
    endpointer that fires in the silence gives a shorter latency than waiting
    for end-of-stream, which is what the user feels.

    Worked example: speech ends at 2.0 s; finals "a b" at 2.9 s and "" at
    4.0 s: the latency is 0.9 s.

    >>> from streaming.events import Final
    >>> f = lambda t, s: ReceivedEvent(t, Final(s, (), 0, 0.0, t, "silence"))
    >>> round(final_latency([f(2.9, "a b"), f(4.0, "")], 2.0), 3)
    0.9
    """
    finals = [e for e in events if isinstance(e.event, Final)]
    with_text = [e for e in finals if e.event.text.strip()]
    if not with_text:
        return None
    return with_text[-1].t - speech_end


def endpoint_latency(events: Sequence[ReceivedEvent], speech_end: float, eof_t: float | None) -> float | None:
    """Seconds from the end of speech until an endpoint (not end-of-stream) made the transcript final.

    The last Final with text must have arrived before the client sent eof: the
    endpointer closed the segment on the trailing silence by itself.  None when
    the last words waited for eof (or no Final had text).

    Worked example: speech ends at 2.0 s, eof sent at 4.0 s; finals "a b" at
    2.8 s and "" at 4.1 s: 0.8 s.  Had "a b" come at 4.1 s: None.

    >>> from streaming.events import Final
    >>> f = lambda t, s: ReceivedEvent(t, Final(s, (), 0, 0.0, t, "silence"))
    >>> round(endpoint_latency([f(2.8, "a b"), f(4.1, "")], 2.0, 4.0), 3), endpoint_latency([f(4.1, "a b")], 2.0, 4.0)
    (0.8, None)
    """
    with_text = [e for e in events if isinstance(e.event, Final) and e.event.text.strip()]
    if not with_text or (eof_t is not None and with_text[-1].t >= eof_t):
        return None
    return with_text[-1].t - speech_end


def after_eof_latency(events: Sequence[ReceivedEvent], eof_t: float | None) -> float | None:
    """Seconds from the client's eof until the last Final with text, when the transcript
    waited for eof (None when an endpoint made it final before, or no Final had text).

    What the user of a push-to-talk or file upload waits for once the audio is over;
    ``final_latency`` also counts the audio's own silence after the last word.

    Worked example: eof sent at 3.0 s, finals "the cat" at 2.0 s and "sat down" at 3.4 s:
    0.4 s.  Eof at 4.5 s (after the endpoint's final at 3.4 s): None.

    >>> from streaming.events import Final
    >>> f = lambda t, s: ReceivedEvent(t, Final(s, (), 0, 0.0, t, "finish"))
    >>> round(after_eof_latency([f(2.0, "the cat"), f(3.4, "sat down")], 3.0), 3)
    0.4
    >>> after_eof_latency([f(2.0, "the cat"), f(3.4, "sat down")], 4.5) is None
    True
    """
    with_text = [e for e in events if isinstance(e.event, Final) and e.event.text.strip()]
    if not with_text or eof_t is None or with_text[-1].t < eof_t:
        return None
    return with_text[-1].t - eof_t


@dataclass(frozen=True)
class Revisions:
    """How often words a viewer already saw were taken back."""

    words_shown: int  # words that appeared on screen (a changed word counts again)
    words_revised: int  # shown words later replaced or removed
    updates: int  # replies that changed the transcript
    updates_with_revision: int  # ... of which took back at least one word

    @property
    def revision_rate(self) -> float | None:
        """Revised / shown: 0 means every word, once shown, stayed."""
        return None if self.words_shown == 0 else self.words_revised / self.words_shown


def revisions(timeline: Sequence[tuple[float, Sequence[str]]]) -> Revisions:
    """Count words taken back between consecutive transcripts.

    Going from ``a b c`` to ``a x c d`` keeps the prefix ``a``: two words are
    revised (b, c) and three shown (x, c, d).

    >>> revisions([(0, ("a", "b", "c")), (1, ("a", "x", "c", "d"))])
    Revisions(words_shown=6, words_revised=2, updates=2, updates_with_revision=1)
    """
    shown = revised = updates = with_revision = 0
    previous: tuple[str, ...] = ()
    for _, words in timeline:
        current = tuple(words)
        if current == previous:
            continue
        keep = 0
        for a, b in zip(previous, current, strict=False):
            if a != b:
                break
            keep += 1
        taken_back = len(previous) - keep
        shown += len(current) - keep
        revised += taken_back
        updates += 1
        with_revision += taken_back > 0
        previous = current
    return Revisions(shown, revised, updates, with_revision)


# ----------------------------------------------------------------- summaries
def percentiles(values: Iterable[float | None], qs: Sequence[int] = PERCENTILES) -> dict[str, float | None]:
    """p50/p90/p99 of the values that exist (linear interpolation); None if there are none.

    >>> percentiles([1.0, 2.0, 3.0, None])
    {'p50': 2.0, 'p90': 2.8, 'p99': 2.98, 'n': 3}
    """
    data = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    out: dict[str, float | None] = {}
    for q in qs:
        out[f"p{q}"] = None if data.size == 0 else round(float(np.percentile(data, q)), 6)
    out["n"] = int(data.size)
    return out


@dataclass(frozen=True)
class Budget:
    """The latency a deployment promises its users; a concurrency level passes when it holds."""

    # A word must show up within this long after it was spoken.  The default
    # engine decodes 0.6 s chunks with 0.4 s look-ahead, so a word waits up to
    # 1.0 s for its window before compute and network; 2.5 s leaves slack for
    # --chunk-s 1.0 (up to 1.4 s) too.
    partial_s: float = 2.5
    # The default endpointer closes a segment after 1.2 s of silence, decided
    # at chunk granularity (up to 1.4 s more); 4 s still reads as "right after".
    final_s: float = 4.0
    # Tail latency is what users notice; p90 is stable with tens of words per stream.
    percentile: int = 90
    # Streams that may fail or drop at a level and still pass: none by default.
    max_failures: int = 0

    def __post_init__(self) -> None:
        for name in ("partial_s", "final_s"):
            value = getattr(self, name)
            if not 0.0 < value <= 600.0:
                raise ValueError(f"{name} must be in (0, 600] s, got {value}")
        if self.percentile not in PERCENTILES:
            raise ValueError(f"percentile must be one of {PERCENTILES}, got {self.percentile}")
        if self.max_failures < 0:
            raise ValueError(f"max_failures must be >= 0, got {self.max_failures}")


@dataclass(frozen=True)
class LevelSummary:
    """One concurrency level: percentiles over all its streams."""

    concurrency: int
    streams: int
    failed: int
    dropped: int
    time_to_first_partial: dict[str, float | None]
    partial_delay: dict[str, float | None]
    final_latency: dict[str, float | None]
    reply_lag: dict[str, float | None]
    words_missed: int  # reference words no reply ever contained
    revision_rate: float | None
    updates_with_revision: float | None  # fraction of transcript updates that took a word back
    send_lateness_max: float  # > a block: the clients, not the server, fell behind
    rtf: float | None = None  # wall / audio seconds when the same streams are sent flat out
    compute_rtf: float | None = None  # the server's own compute / audio seconds during the real-time run
    errors: tuple[str, ...] = ()
    # end of speech -> the endpoint's final, without eof (needs trailing silence in the audio)
    endpoint_latency: dict[str, float | None] = field(default_factory=dict)
    # eof sent -> the last final, when the transcript waited for eof
    after_eof_latency: dict[str, float | None] = field(default_factory=dict)


def summarize_level(
    concurrency: int,
    traces: Sequence[StreamTrace],
    reference: Sequence[Word],
    speech_end: float,
    *,
    rtf: float | None = None,
    compute_rtf: float | None = None,
) -> LevelSummary:
    """Pool every stream of one level into percentiles and counts."""
    ttfp: list[float | None] = []
    delays: list[float | None] = []
    finals: list[float | None] = []
    endpoints: list[float | None] = []
    after_eof: list[float | None] = []
    lags: list[float] = []
    missed = 0
    total = Revisions(0, 0, 0, 0)
    for trace in traces:
        lags.extend(trace.reply_lags)
        if trace.status != "ok":
            continue
        timeline = hypothesis_timeline(trace.events)
        ttfp.append(time_to_first_partial(trace.events))
        stream_delays = partial_delays(timeline, reference)
        missed += sum(d is None for d in stream_delays)
        delays.extend(stream_delays)
        finals.append(final_latency(trace.events, speech_end))
        endpoints.append(endpoint_latency(trace.events, speech_end, trace.eof_t))
        after_eof.append(after_eof_latency(trace.events, trace.eof_t))
        r = revisions(timeline)
        total = Revisions(
            total.words_shown + r.words_shown,
            total.words_revised + r.words_revised,
            total.updates + r.updates,
            total.updates_with_revision + r.updates_with_revision,
        )
    return LevelSummary(
        concurrency=concurrency,
        streams=len(traces),
        failed=sum(t.status == "failed" for t in traces),
        dropped=sum(t.status == "dropped" for t in traces),
        time_to_first_partial=percentiles(ttfp),
        partial_delay=percentiles(delays),
        final_latency=percentiles(finals),
        reply_lag=percentiles(lags),
        words_missed=missed,
        revision_rate=total.revision_rate,
        updates_with_revision=None if total.updates == 0 else total.updates_with_revision / total.updates,
        send_lateness_max=max((t.send_lateness for t in traces), default=0.0),
        rtf=rtf,
        compute_rtf=compute_rtf,
        errors=tuple(sorted({t.error for t in traces if t.error})),
        endpoint_latency=percentiles(endpoints),
        after_eof_latency=percentiles(after_eof),
    )


def budget_failures(summary: LevelSummary, budget: Budget) -> list[str]:
    """Why a level misses the budget (empty list: it holds).

    A metric with no samples (e.g. no reference words) cannot fail; the reply
    lag must stay within the partial budget, so a server that falls behind
    fails even when the model recognises nothing.

    >>> s = LevelSummary(4, 4, 0, 1, {}, {"p90": 3.1}, {"p90": 1.0}, {"p90": 0.2}, 0, None, None, 0.0)
    >>> budget_failures(s, Budget())
    ['1 of 4 streams failed or dropped (allowed 0)', 'partial delay p90 3.10 s > 2.50 s']
    """
    key = f"p{budget.percentile}"
    reasons: list[str] = []
    bad = summary.failed + summary.dropped
    if bad > budget.max_failures:
        reasons.append(
            f"{bad} of {summary.streams} streams failed or dropped (allowed {budget.max_failures})"
        )
    for label, stats, limit in (
        ("partial delay", summary.partial_delay, budget.partial_s),
        ("final latency", summary.final_latency, budget.final_s),
        ("reply lag", summary.reply_lag, budget.partial_s),
    ):
        value = stats.get(key)
        if value is not None and value > limit:
            reasons.append(f"{label} {key} {value:.2f} s > {limit:.2f} s")
    return reasons


# -------------------------------------------------------------------- sweep
class CapacitySearch:
    """Which concurrency to try next: double until a level misses the budget, then bisect.

    Sans-I/O: call :meth:`next_level`, run it, :meth:`record` the outcome,
    repeat until ``next_level()`` is None; :attr:`capacity` is the answer.

    >>> search = CapacitySearch(start=1, maximum=16)
    >>> tried = []
    >>> while (level := search.next_level()) is not None:
    ...     tried.append(level); search.record(level, holds=level <= 5)
    >>> tried, search.capacity
    ([1, 2, 4, 8, 6, 5], 5)
    """

    def __init__(self, *, start: int = 1, maximum: int = 64, bisect: bool = True) -> None:
        if not 1 <= start <= maximum:
            raise ValueError(f"start must be in 1..maximum ({maximum}), got {start}")
        self.start, self.maximum, self.bisect = start, maximum, bisect
        self.results: dict[int, bool] = {}

    @property
    def capacity(self) -> int:
        """The largest level that held with every smaller tried level holding (0: none held)."""
        best = 0
        for level in sorted(self.results):
            if not self.results[level]:
                break
            best = level
        return best

    def next_level(self) -> int | None:
        if not self.results:
            return self.start
        passed = [n for n, ok in self.results.items() if ok]
        failed = [n for n, ok in self.results.items() if not ok]
        if not failed:
            top = max(passed)
            return None if top >= self.maximum else min(top * 2, self.maximum)
        low, high = self.capacity, min(failed)
        if not self.bisect or high - low <= 1:
            return None
        return (low + high) // 2 if low else None

    def record(self, level: int, holds: bool) -> None:
        self.results[level] = holds
