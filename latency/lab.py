"""``xlsr-stream latency``: how many real-time streams does a server hold within a latency budget?

Steps:

1. Decode the audio offline (whole utterance, same model) to get each word's
   end time: the reference that partial delays are measured against.
2. For each concurrency level, run that many clients that replay the audio
   at real-time pace over websocket and timestamp every reply
   (:mod:`latency.runner`), reading our server's /metrics before and after
   (its compute per audio second); then, unless ``--no-rtf``, send the same
   streams flat out to measure the throughput real-time factor at that load.
3. Pool the traces into percentiles (:mod:`latency.metrics`), check the
   budget, pick the next level (double, then bisect), until the largest
   level within budget is known.
4. Write report.json, print a p50/p90/p99 table, draw PNG plots.

Works against our server (``--protocol native`` or ``vosk``) and, with
``--protocol vosk``, against any vosk-protocol server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from websockets.exceptions import WebSocketException

from client.audio_files import read_16k
from client.websocket import PROTOCOLS, ProtocolError, open_stream, stream_url
from streaming.errors import StreamingError
from streaming.events import Word

from .metrics import Budget, CapacitySearch, budget_failures, summarize_level
from .report import LevelResult, Report, format_table, write_plots
from .runner import ClientConfig, flat_out_rtf, run_level
from .server_metrics import compute_rtf, scrape, wait_until_idle

__all__ = ["build_parser", "main", "reference_words", "with_trailing_silence"]

logger = logging.getLogger("latency")

# 7 s of read speech shipped with the repository: long enough for several
# words and an endpoint, short enough that a sweep of six levels takes a minute.
DEFAULT_AUDIO = (
    Path(__file__).resolve().parent.parent / "samples" / "librivox-dev"
    / "sense_and_sensibility_01_austen_64kb-0870.wav"
)

_BUDGET = Budget()
_CLIENT = ClientConfig(url="ws://127.0.0.1:2700")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xlsr-stream latency",
        description="Replay audio from N concurrent real-time clients against a websocket server; "
        "measure partial/final latency, stability, RTF and failures; find the most streams "
        "the server holds within a latency budget.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")

    target = parser.add_argument_group("server")
    target.add_argument("--server", default=_CLIENT.url,
                        help="server URL; the protocol's path is added when the URL has none")
    target.add_argument("--protocol", choices=PROTOCOLS, default="vosk",
                        help="vosk works against any vosk-server; native is ours (/v1/stream)")
    target.add_argument("--open-timeout", type=float, default=_CLIENT.open_timeout_s, metavar="S",
                        help="connect + handshake limit per stream")
    target.add_argument("--metrics", action="append", default=None, metavar="URL",
                        help="a replica's /metrics (repeat for each) when --server is a load balancer; "
                        "default: the server's own")
    target.add_argument("--final-timeout", type=float, default=_CLIENT.final_timeout_s, metavar="S",
                        help="how long after the audio a stream may wait for its final result")

    audio = parser.add_argument_group("audio and reference")
    audio.add_argument("--audio", type=Path, default=DEFAULT_AUDIO, metavar="FILE",
                       help="speech to replay (mono wav/flac/ogg, any rate; resampled to 16 kHz)")
    audio.add_argument("--trailing-silence-s", type=float, default=0.0, metavar="S",
                       help="room-noise silence appended before eof, so the endpointer can close the last "
                            "segment by itself: the 'endpoint final' figure (e.g. 2; default: %(default)s)")
    audio.add_argument("--model", default=None,
                       help="model for the offline reference decode; use the server's model "
                       "(unset: the shipped models/en-small)")
    lm = audio.add_mutually_exclusive_group()
    lm.add_argument("--lm", default=None, help="LM for the reference decode; unset: the model's own")
    lm.add_argument("--no-lm", action="store_true", help="reference decode without an LM")
    audio.add_argument("--greedy", action="store_true",
                       help="greedy reference decode (use when the server decodes greedily)")
    audio.add_argument("--beam-width", type=int, default=None,
                       help="reference beam width; unset: the engine's default (match the server)")
    audio.add_argument("--no-reference", action="store_true",
                       help="skip the offline decode: no partial delays, end of speech = end of audio")

    load = parser.add_argument_group("load")
    load.add_argument("--concurrency", default=None, metavar="N[,N...]",
                      help="run exactly these levels (e.g. 1,2,4,8) instead of searching")
    load.add_argument("--start", type=int, default=1, help="first level of the search")
    load.add_argument("--max-concurrency", type=int, default=64, help="highest level the search tries")
    load.add_argument("--no-bisect", action="store_true",
                      help="stop at the first level that misses the budget instead of bisecting")
    load.add_argument("--block-ms", type=float, default=_CLIENT.block_s * 1000, help="audio per message")
    load.add_argument("--ramp", type=float, default=_CLIENT.ramp_s, metavar="S",
                      help="spread client starts over this many seconds")
    load.add_argument("--settle", type=float, default=1.0, metavar="S", help="pause between levels")
    load.add_argument("--no-rtf", action="store_true", help="skip the flat-out RTF run at each level")

    budget = parser.add_argument_group("latency budget")
    budget.add_argument("--budget-partial", type=float, default=_BUDGET.partial_s, metavar="S",
                        help="partial delay limit (and reply lag limit)")
    budget.add_argument("--budget-final", type=float, default=_BUDGET.final_s, metavar="S",
                        help="final latency after end of speech limit")
    budget.add_argument("--budget-percentile", type=int, default=_BUDGET.percentile, choices=(50, 90, 99))
    budget.add_argument("--max-failures", type=int, default=_BUDGET.max_failures,
                        help="failed or dropped streams a level may have")

    out = parser.add_argument_group("output")
    out.add_argument("--out-dir", type=Path, default=Path("latency-report"),
                     help="report.json and the PNG plots go here")
    out.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return parser


def reference_words(
    samples: np.ndarray,
    *,
    model: str | None,
    lm: str | bool | None,
    greedy: bool = False,
    beam_width: int | None = None,
) -> tuple[list[Word], str]:
    """Words with times from the full-utterance decode of the same audio with the same model."""
    from streaming.decoder import DecoderConfig
    from streaming.recognizer import Engine

    decoder = DecoderConfig(greedy=greedy) if beam_width is None else DecoderConfig(
        greedy=greedy, beam_width=beam_width
    )
    engine = Engine.load(model, lm=lm, decoder=decoder)
    final = engine.transcribe_offline(samples, 16_000)
    return list(final.words), engine.info.name


def with_trailing_silence(samples: np.ndarray, seconds: float) -> np.ndarray:
    """Append ``seconds`` of quiet room noise (std 0.002, seeded) at 16 kHz.

    Not digital zeros: no microphone hears those, and a model may emit letters on them.
    1.5 s at 16 kHz is 24000 samples.
    """
    if not 0.0 <= seconds <= 60.0:
        raise ValueError(f"--trailing-silence-s must be in 0..60 s, got {seconds}")
    noise = np.random.default_rng(0).normal(0.0, 0.002, round(seconds * 16_000)).astype(np.float32)
    return np.concatenate([samples.astype(np.float32), noise])


def _levels(text: str) -> list[int]:
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--concurrency takes numbers like 1,2,4; got {text!r}") from None
    if not levels or levels[0] < 1:
        raise ValueError(f"--concurrency levels must be >= 1, got {text!r}")
    return levels


async def _preflight(config: ClientConfig) -> None:
    """One short stream, so an unreachable server is one clear error, not N timeouts."""
    try:
        async with open_stream(config.url, config.protocol, config.sample_rate,
                               open_timeout=config.open_timeout_s) as stream:
            await stream.send_eof()

            async def drain() -> None:
                async for _ in stream.replies():
                    pass

            await asyncio.wait_for(drain(), config.final_timeout_s)
    except (OSError, asyncio.TimeoutError, ProtocolError) as exc:
        raise ConnectionError(
            f"cannot stream to {stream_url(config.url, config.protocol)} ({type(exc).__name__}: {exc}); "
            "is the server running? start ours with `xlsr-stream serve`, or pass --server"
        ) from exc
    except WebSocketException as exc:  # refused handshake (503, 401, wrong path), close instead of a final
        raise ConnectionError(
            f"{stream_url(config.url, config.protocol)} did not accept a {config.protocol} stream: {exc}"
        ) from exc


async def _wait_for_idle_server(metrics: Sequence[str], audio_s: float, echo: bool) -> None:
    """Let the server finish the last level's streams: left open, they would take the next level's slots."""
    timeout = 60.0 + 2 * audio_s
    still_open = await wait_until_idle(metrics, timeout_s=timeout)
    if still_open and echo:
        print(f"  the server still has {still_open} streams open after {timeout:.0f} s; starting the next level",
              file=sys.stderr, flush=True)


async def run_sweep(
    report: Report,
    config: ClientConfig,
    samples: np.ndarray,
    *,
    levels: Sequence[int] | None,
    search: CapacitySearch | None,
    rtf: bool,
    settle_s: float,
    echo: bool = True,
    metrics: Sequence[str] = (),
) -> None:
    """Run levels (fixed list or search), appending to ``report.levels``.

    ``metrics``: the /metrics endpoints to read (every replica behind a balancer); default the server's own.
    """
    metrics = list(metrics) or [config.url]
    await _preflight(config)
    fixed = list(levels or [])
    while True:
        if search is not None:
            level = search.next_level()
        else:
            level = fixed.pop(0) if fixed else None
        if level is None:
            break
        if report.levels:
            await _wait_for_idle_server(metrics, len(samples) / config.sample_rate, echo)
            await asyncio.sleep(settle_s)
        started = time.monotonic()
        before = await scrape(metrics)
        traces = await run_level(config, samples, level)
        compute = compute_rtf(before, await scrape(metrics))
        level_rtf = await flat_out_rtf(config, samples, level) if rtf else None
        summary = summarize_level(level, traces, report.reference, report.speech_end, rtf=level_rtf,
                                  compute_rtf=compute)
        result = LevelResult(summary, traces, budget_failures(summary, report.budget))
        report.levels.append(result)
        if search is not None:
            search.record(level, result.holds)
        if echo:
            print(f"  {level:4d} streams: {'within budget' if result.holds else 'MISS'} "
                  f"({time.monotonic() - started:.1f} s)", file=sys.stderr, flush=True)
    holds = {lv.summary.concurrency: lv.holds for lv in report.levels}
    capacity = 0
    for level in sorted(holds):
        if not holds[level]:
            break
        capacity = level
    report.capacity = capacity


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    prog = "xlsr-stream latency"
    try:
        budget = Budget(args.budget_partial, args.budget_final, args.budget_percentile, args.max_failures)
        config = ClientConfig(
            url=args.server, protocol=args.protocol, block_s=args.block_ms / 1000.0, ramp_s=args.ramp,
            open_timeout_s=args.open_timeout, final_timeout_s=args.final_timeout,
        )
        stream_url(config.url, config.protocol)  # validates the URL
        for url in args.metrics or ():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"--metrics takes an http(s):// URL of a replica's /metrics, got {url!r}")
        levels = _levels(args.concurrency) if args.concurrency else None
        search = None if levels else CapacitySearch(
            start=args.start, maximum=args.max_concurrency, bisect=not args.no_bisect
        )
        samples = with_trailing_silence(read_16k(args.audio), args.trailing_silence_s)
        audio_seconds = len(samples) / 16_000
        words: list[Word] = []
        model_name: str | None = None
        if not args.no_reference:
            print(f"{prog}: offline reference decode of {args.audio} ...", file=sys.stderr, flush=True)
            words, model_name = reference_words(
                samples, model=args.model, lm=False if args.no_lm else args.lm,
                greedy=args.greedy, beam_width=args.beam_width,
            )
        speech_end = words[-1].end if words else audio_seconds
        report = Report(
            server=stream_url(config.url, config.protocol), protocol=config.protocol,
            audio_path=str(args.audio), audio_seconds=audio_seconds, speech_end=speech_end,
            reference=words, reference_model=model_name, budget=budget, client=asdict(config),
        )
        print(f"{prog}: {audio_seconds:.1f} s of audio, {len(words)} reference words, "
              f"server {report.server}", file=sys.stderr, flush=True)
        asyncio.run(run_sweep(report, config, samples, levels=levels, search=search,
                              rtf=not args.no_rtf, settle_s=args.settle, metrics=args.metrics or ()))
    except ConnectionError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except (StreamingError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130

    report_path = args.out_dir / "report.json"
    report.write_json(report_path)
    print(format_table(report.levels, budget))
    print(f"capacity: {report.capacity} real-time streams within budget")
    written = [report_path]
    if not args.no_plots:
        try:
            written += write_plots(report, args.out_dir)
        except ImportError as exc:  # matplotlib is an optional extra
            print(f"{prog}: no plots: {exc}; `pip install matplotlib` (or the 'plots' extra), "
                  "or pass --no-plots", file=sys.stderr)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
