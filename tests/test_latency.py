"""Latency lab: pure metrics on hand-made timelines, protocol parsing, short runs against a real server."""

from __future__ import annotations

import asyncio
import contextlib
import doctest
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import write_local_checkpoint

import client.websocket
import latency.metrics
import latency.report
import latency.runner
import latency.server_metrics
from client.websocket import ProtocolError, VoskReplyParser, int16_pcm, stream_url
from latency.metrics import (
    Budget,
    CapacitySearch,
    LevelSummary,
    ReceivedEvent,
    StreamTrace,
    budget_failures,
    contained_words,
    final_latency,
    hypothesis_timeline,
    partial_delays,
    percentiles,
    revisions,
    summarize_level,
    time_to_first_partial,
)
from streaming.events import Final, Partial, Word

pytestmark = pytest.mark.timeout(60)


def P(t: float, text: str, segment: int = 0) -> ReceivedEvent:
    return ReceivedEvent(t, Partial(text, "", segment, 0.0, t))


def F(t: float, text: str, segment: int = 0) -> ReceivedEvent:
    return ReceivedEvent(t, Final(text, (), segment, 0.0, t, "silence"))


REF = [
    Word("the", 0.20, 0.40, 1.0),
    Word("cat", 0.50, 0.80, 1.0),
    Word("sat", 0.90, 1.30, 1.0),
    Word("down", 2.00, 2.40, 1.0),
]


@pytest.mark.parametrize(
    "module", [latency.metrics, client.websocket, latency.report, latency.runner, latency.server_metrics]
)
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0


def test_partial_delay_counts_from_word_end_to_first_reply_containing_it() -> None:
    events = [P(0.5, ""), P(1.0, "the"), P(1.5, "the cap"), P(2.0, "the cat sat"), F(3.0, "the cat sat"),
              P(3.2, "down")]
    delays = partial_delays(hypothesis_timeline(events), REF)
    assert delays == pytest.approx([1.0 - 0.4, 2.0 - 0.8, 2.0 - 1.3, 3.2 - 2.4])


def test_partial_delay_is_none_for_words_never_shown_and_a_revised_word_keeps_its_first_arrival() -> None:
    events = [P(1.0, "the cat"), P(1.5, "the hat"), F(2.5, "the cat")]
    delays = partial_delays(hypothesis_timeline(events), REF)
    assert delays[:2] == pytest.approx([0.6, 0.2])
    assert delays[2:] == [None, None]


def test_partial_delay_never_matches_a_word_before_its_audio_was_sent() -> None:
    ref = [Word("a", 0.2, 0.4, 1.0), Word("b", 1.0, 1.5, 1.0), Word("a", 5.0, 5.2, 1.0)]
    # At 2.0 s the hypothesis has two "a"s (one misrecognised); the second reference
    # "a" starts at 5.0 s, so only a reply after that can contain it.
    events = [P(0.9, "a"), P(2.0, "a b a"), P(4.9, "a b a")]
    assert partial_delays(hypothesis_timeline(events), ref) == pytest.approx([0.5, 0.5, None])
    events.append(P(5.6, "a b a"))  # the same text, but now the second "a" has been spoken
    assert partial_delays(hypothesis_timeline(events), ref)[2] == pytest.approx(0.4)


def test_contained_words_matches_in_order_not_as_a_bag() -> None:
    # "cat" appears, but only after where "the" should be: the LCS keeps one of them.
    assert contained_words(["cat", "the"], ["the", "cat"]).count(True) == 1
    assert contained_words(["a", "a"], ["a", "b", "a"]) == [True, False, True]
    assert contained_words([], ["x"]) == [False]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("abc"), max_size=8), st.lists(st.sampled_from("abc"), max_size=8))
def test_contained_words_is_a_common_subsequence(hyp: list[str], ref: list[str]) -> None:
    found = contained_words(hyp, ref)
    matched = [w for w, hit in zip(ref, found, strict=True) if hit]
    it = iter(hyp)
    assert all(any(w == h for h in it) for w in matched)  # matched words occur in hyp, in order
    if hyp == ref:
        assert all(found)


def test_time_to_first_partial_skips_empty_replies() -> None:
    assert time_to_first_partial([P(0.1, ""), P(0.2, " "), P(0.9, "hi")]) == 0.9
    assert time_to_first_partial([P(0.1, ""), F(0.5, "")]) is None


def test_final_latency_uses_the_last_final_with_text() -> None:
    events = [P(1.0, "the"), F(2.0, "the cat"), P(2.5, "sat"), F(3.4, "sat down"), F(5.0, "")]
    assert final_latency(events, speech_end=2.4) == pytest.approx(1.0)
    assert final_latency([P(1.0, "x"), F(2.0, "")], speech_end=1.0) is None


def test_endpoint_latency_needs_the_last_words_before_eof() -> None:
    from latency.lab import with_trailing_silence
    from latency.metrics import endpoint_latency

    events = [P(1.0, "the"), F(2.0, "the cat"), P(2.5, "sat"), F(3.4, "sat down"), F(5.0, "")]
    assert endpoint_latency(events, speech_end=2.4, eof_t=4.5) == pytest.approx(1.0)
    assert endpoint_latency(events, speech_end=2.4, eof_t=3.0) is None  # "sat down" waited for eof
    with_eof = StreamTrace(0, 2.5, events=events[:4], eof_t=3.0)
    endpointed = StreamTrace(1, 2.5, events=events, eof_t=4.5)
    summary = summarize_level(2, [with_eof, endpointed], REF, speech_end=2.4)
    assert summary.endpoint_latency["n"] == 1 and summary.endpoint_latency["p50"] == pytest.approx(1.0)
    # the stream whose last words waited for eof: 0.4 s after it; the endpointed one has none
    assert summary.after_eof_latency["n"] == 1 and summary.after_eof_latency["p50"] == pytest.approx(0.4)
    padded = with_trailing_silence(np.zeros(16_000, dtype=np.float32), 1.5)
    assert padded.shape == (40_000,) and 0.0 < float(np.abs(padded[16_000:]).max()) < 0.02
    with pytest.raises(ValueError, match="--trailing-silence-s must be in 0..60 s, got -1"):
        with_trailing_silence(padded, -1)


def test_revisions_count_words_taken_back() -> None:
    timeline = hypothesis_timeline([P(1, "the"), P(2, "the cap"), P(3, "the cat sat"), F(4, "the cat sat")])
    r = revisions(timeline)
    # the | +cap | -cap +cat +sat | (final: no change)
    assert (r.words_shown, r.words_revised, r.updates, r.updates_with_revision) == (4, 1, 3, 1)
    assert r.revision_rate == pytest.approx(0.25)
    assert revisions([]).revision_rate is None


def test_percentiles_ignore_missing_values() -> None:
    assert percentiles([None, None]) == {"p50": None, "p90": None, "p99": None, "n": 0}
    stats = percentiles([float(i) for i in range(101)])
    assert (stats["p50"], stats["p90"], stats["p99"], stats["n"]) == (50.0, 90.0, 99.0, 101)


def test_summarize_level_pools_streams_and_counts_failures() -> None:
    ok = StreamTrace(0, 2.5, events=[P(1.0, "the cat"), F(2.9, "the cat sat down")], reply_lags=[0.1, 0.2])
    dropped = StreamTrace(1, 2.5, status="dropped", error="server closed the stream: code 1011 'x'")
    failed = StreamTrace(2, 2.5, status="failed", error="while connecting: refused")
    summary = summarize_level(3, [ok, dropped, failed], REF, speech_end=2.4, rtf=0.05)
    assert (summary.streams, summary.failed, summary.dropped) == (3, 1, 1)
    assert summary.partial_delay["n"] == 4
    assert summary.final_latency["p50"] == pytest.approx(0.5)
    assert summary.time_to_first_partial["p50"] == pytest.approx(1.0)
    assert summary.reply_lag["n"] == 2
    assert summary.rtf == 0.05
    assert len(summary.errors) == 2
    reasons = budget_failures(summary, Budget(max_failures=1))
    assert reasons == ["2 of 3 streams failed or dropped (allowed 1)"]
    assert budget_failures(summary, Budget(max_failures=2)) == []


def test_budget_checks_the_chosen_percentile() -> None:
    s = LevelSummary(2, 2, 0, 0, {}, {"p50": 1.0, "p90": 2.6}, {"p50": 1.0, "p90": 4.5}, {"p90": 0.1},
                     0, None, None, 0.0)
    assert len(budget_failures(s, Budget())) == 2
    assert budget_failures(s, Budget(percentile=50)) == []
    with pytest.raises(ValueError, match="percentile must be one of"):
        Budget(percentile=95)
    with pytest.raises(ValueError, match="partial_s"):
        Budget(partial_s=0)


@pytest.mark.parametrize(
    ("limit", "maximum", "bisect", "tried", "capacity"),
    [
        (100, 16, True, [1, 2, 4, 8, 16], 16),  # everything holds: stop at the maximum
        (0, 16, True, [1], 0),  # nothing holds
        (5, 64, True, [1, 2, 4, 8, 6, 5], 5),
        (5, 64, False, [1, 2, 4, 8], 4),
        (3, 6, True, [1, 2, 4, 3], 3),  # doubling clamps to the maximum
    ],
)
def test_capacity_search(limit: int, maximum: int, bisect: bool, tried: list[int], capacity: int) -> None:
    search = CapacitySearch(start=1, maximum=maximum, bisect=bisect)
    seen = []
    while (level := search.next_level()) is not None:
        seen.append(level)
        search.record(level, level <= limit)
        assert len(seen) < 20
    assert seen == tried
    assert search.capacity == capacity


def test_vosk_parser_numbers_segments_and_reads_words() -> None:
    parser = VoskReplyParser()
    first = parser.parse('{"partial": "hel"}', audio_seconds=0.5)
    assert isinstance(first, Partial) and first.text == "hel" and first.segment == 0
    final = parser.parse(json.dumps({"text": "hello", "result": [
        {"word": "hello", "start": 0.12, "end": 0.6, "conf": 0.9}]}), audio_seconds=1.0)
    assert isinstance(final, Final)
    assert (final.segment, final.start, final.end) == (0, 0.12, 0.6)
    empty = parser.parse('{"text": ""}', audio_seconds=3.0)
    assert isinstance(empty, Final) and empty.segment == 1 and empty.end == 3.0
    alt = parser.parse('{"alternatives": [{"confidence": 0.5, "text": "hi"}]}', audio_seconds=3.5)
    assert isinstance(alt, Final) and alt.text == "hi"
    assert parser.parse('{"partial": ""}', audio_seconds=4.0).segment == 3


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (b"\x00\x01", "binary"),
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"foo": 1}', "'partial' or 'text'"),
        ('{"text": "a", "result": [{"word": "a"}]}', "expected a word"),
    ],
)
def test_vosk_parser_rejects_what_the_protocol_does_not_allow(message: str | bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        VoskReplyParser().parse(message, audio_seconds=0.0)


def test_stream_url_and_pcm() -> None:
    assert stream_url("ws://h:1", "vosk") == "ws://h:1/"
    assert stream_url("wss://h:1/", "native") == "wss://h:1/v1/stream"
    with pytest.raises(ValueError, match="ws://"):
        stream_url("http://h:1", "vosk")
    import numpy as np

    assert int16_pcm(np.array([1, -2], dtype=np.int16)) == b"\x01\x00\xfe\xff"


# ------------------------------------------------------- against a real server
# A real SpeechServer on localhost port 0 with the real engine and a tiny model.
# The model is local (no transformer layers, no input normalization) so the
# streamed frames equal the offline ones and the offline reference words do
# show up in the partials: partial delays are then real numbers, not "-".

SPEECH = Path(__file__).resolve().parent.parent / "samples" / "goforward.wav"  # 2.8 s, 16 kHz


@contextlib.contextmanager
def running_server(model: Path, **config: Any) -> Iterator[str]:
    """Our server in a thread of its own (the lab's main() runs its own event loop)."""
    from server.app import SpeechServer
    from server.config import ServerConfig
    from streaming.decoder import DecoderConfig
    from streaming.recognizer import Engine

    engine = Engine.load(model, lm=False, decoder=DecoderConfig(greedy=True))
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
        async with SpeechServer(engine, ServerConfig(port=0, **config)) as server:
            box["port"] = server.port
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    try:
        yield f"ws://127.0.0.1:{box['port']}"
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)


@pytest.fixture(scope="session")
def local_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared with test_mic.py (imported there), so the model is written once per run."""
    return write_local_checkpoint(tmp_path_factory.mktemp("local-model"))


@pytest.fixture(scope="module")
def server_url(local_model: Path) -> Iterator[str]:
    # Two connections at most, so a level of three streams shows a refused one.
    with running_server(local_model, max_connections=2) as url:
        yield url


def test_lab_sweeps_a_real_server_and_reports_failures(
    server_url: str, local_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from latency.lab import main

    out = tmp_path / "report"
    code = main(["--server", server_url, "--audio", str(SPEECH), "--model", str(local_model), "--no-lm",
                 "--greedy", "--concurrency", "1,3", "--ramp", "0.2", "--settle", "0.3",
                 "--out-dir", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "p50/p90/p99" in printed and "capacity: 1 real-time streams" in printed

    report = json.loads((out / "report.json").read_text())
    assert report["capacity"] == 1
    assert report["reference"]["words"], "the offline decode found no words"
    one, three = report["levels"]
    assert one["within_budget"] and not three["within_budget"]
    s1 = one["summary"]
    assert s1["failed"] == s1["dropped"] == 0
    assert s1["partial_delay"]["n"] >= 1  # the reference words were found in the partials
    # A partial can show a word before its reference span ends: the look-ahead's provisional
    # tail spells it out while its last letter's repeats are still coming.
    assert -1.0 < s1["partial_delay"]["p50"] < 2.5
    assert 0 < s1["time_to_first_partial"]["p50"] < 5
    assert s1["final_latency"]["n"] == 1
    assert s1["rtf"] is not None and 0 < s1["rtf"] < 1
    assert s1["compute_rtf"] is not None and 0 < s1["compute_rtf"] < 1  # from the server's /metrics
    stream = one["streams"][0]
    assert stream["replies"] == stream["blocks_sent"] + 1  # vosk: one reply per block, then the final
    assert stream["events"][-1]["type"] == "final"
    # Level 3: the server admits two connections; the third is refused with 503.
    assert three["summary"]["failed"] == 1
    assert any("503" in e for e in three["summary"]["errors"])
    assert three["summary"]["rtf"] is None  # flat-out run could not get all streams in
    for name in ("latency_vs_concurrency.png", "timeline.png", "timeline_capacity.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lab_native_protocol(server_url: str, tmp_path: Path) -> None:
    from latency.lab import main

    out = tmp_path / "native"
    code = main(["--server", server_url, "--protocol", "native", "--audio", str(SPEECH), "--no-reference",
                 "--concurrency", "2", "--ramp", "0.2", "--no-rtf", "--no-plots", "--out-dir", str(out)])
    assert code == 0
    level = json.loads((out / "report.json").read_text())["levels"][0]
    assert level["summary"]["streams"] == 2 and level["summary"]["failed"] == 0
    lags = level["summary"]["reply_lag"]
    assert lags["n"] >= 2 and 0 < lags["p50"] < 3  # audio at each result's end sent -> result
    assert all(s["events"][-1]["type"] == "final" for s in level["streams"])


def test_lab_says_when_no_server_listens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from latency.lab import main

    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = main(["--server", f"ws://127.0.0.1:{port}", "--audio", str(SPEECH), "--no-reference",
                 "--concurrency", "1", "--open-timeout", "2", "--out-dir", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot stream to" in err and "xlsr-stream serve" in err
    assert "Traceback" not in err


def test_lab_says_when_the_server_refuses_the_stream(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from latency.lab import main

    code = main(["--server", server_url + "/healthz", "--audio", str(SPEECH), "--no-reference",
                 "--concurrency", "1", "--out-dir", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert "/healthz did not accept a vosk stream" in err and "200" in err


def test_lab_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from latency.lab import main

    assert main(["--audio", str(SPEECH), "--concurrency", "0,2", "--no-reference"]) == 2
    assert "--concurrency levels must be >= 1" in capsys.readouterr().err
    assert main(["--audio", str(SPEECH), "--server", "http://x", "--no-reference"]) == 2
    assert main(["--audio", "/nonexistent.wav", "--no-reference", "--concurrency", "1"]) == 2
    assert "no such file" in capsys.readouterr().err


@contextlib.contextmanager
def vosk_server_lookalike(*, fail_after: int | None = None, close_code: int = 1011) -> Iterator[str]:
    """The wire behaviour of vosk-server's asr_server.py (which cannot run here: no vosk model).

    Like the original it recognises end of stream only by the exact text
    '{"eof" : 1}', takes any other message for audio, replies once per message,
    and closes after the final result.
    """

    async def handler(ws: Any) -> None:
        count = 0
        async for message in ws:
            if isinstance(message, str) and "config" in message:
                continue
            if message == '{"eof" : 1}':
                words = [{"conf": 1.0, "end": 0.5 * i + 0.4, "start": 0.5 * i, "word": "word"}
                         for i in range(count // 5)]
                await ws.send(json.dumps({"text": " ".join(["word"] * (count // 5)), "result": words}))
                break
            count += 1
            if count == fail_after:
                await ws.close(close_code, "recognizer crashed" if close_code == 1011 else "session limit")
                return
            await ws.send(json.dumps({"partial": " ".join(["word"] * (count // 5))}))

    with websocket_server(handler) as url:
        yield url


@contextlib.contextmanager
def websocket_server(handler: Any) -> Iterator[str]:
    """A websockets server running ``handler`` on a loopback port in a thread; yields its URL."""
    from websockets.asyncio.server import serve

    ready = threading.Event()
    box: dict[str, Any] = {}

    async def run() -> None:
        box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
        async with serve(handler, "127.0.0.1", 0) as server:
            box["port"] = server.sockets[0].getsockname()[1]
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"ws://127.0.0.1:{box['port']}"
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)


def test_lab_works_against_a_vosk_server(tmp_path: Path) -> None:
    from latency.lab import main

    with vosk_server_lookalike() as url:
        code = main(["--server", url, "--audio", str(SPEECH), "--no-reference", "--concurrency", "2",
                     "--ramp", "0.1", "--no-rtf", "--no-plots", "--final-timeout", "5",
                     "--out-dir", str(tmp_path)])
    assert code == 0
    level = json.loads((tmp_path / "report.json").read_text())["levels"][0]
    assert level["within_budget"], level["budget_failures"]
    summary = level["summary"]
    assert (summary["failed"], summary["dropped"], summary["errors"]) == (0, 0, [])
    assert summary["final_latency"]["n"] == 2
    assert summary["revision_rate"] == 0.0  # "word word ..." only ever grows, and the final agrees
    assert summary["compute_rtf"] is None  # no /metrics there


def test_lab_counts_a_stream_the_server_drops(tmp_path: Path) -> None:
    from latency.lab import main

    with vosk_server_lookalike(fail_after=5) as url:
        code = main(["--server", url, "--audio", str(SPEECH), "--no-reference", "--concurrency", "1",
                     "--no-rtf", "--no-plots", "--out-dir", str(tmp_path)])
    assert code == 0
    level = json.loads((tmp_path / "report.json").read_text())["levels"][0]
    assert not level["within_budget"]
    assert level["summary"]["dropped"] == 1
    assert level["streams"][0]["error"] == "server closed the stream: code 1011 'recognizer crashed'"


def test_wait_until_idle_waits_for_open_streams_to_close(server_url: str) -> None:
    from client.websocket import open_stream
    from latency.server_metrics import wait_until_idle

    async def scenario() -> tuple[int | None, int | None, int | None]:
        idle = await wait_until_idle(server_url, timeout_s=5)
        async with open_stream(server_url, "vosk", 16_000, open_timeout=5):
            busy = await wait_until_idle(server_url, timeout_s=0.6, poll_s=0.2)  # gives up, says how many
        return idle, busy, await wait_until_idle(server_url, timeout_s=10, poll_s=0.1)

    assert asyncio.run(scenario()) == (0, 1, 0)


def test_wait_until_idle_is_none_without_our_metrics() -> None:
    from latency.server_metrics import wait_until_idle

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert asyncio.run(wait_until_idle(f"ws://127.0.0.1:{port}", timeout_s=1)) is None
