"""Per-chunk decode time vs utterance length: incremental beam search vs re-decoding.

Why: a streaming decoder must spend the same time on chunk 1000 as on chunk 1,
otherwise long utterances fall behind real time.  This prints, for chunks of
``--chunk`` frames (50 frames = 1 s at wav2vec2's 20 ms hop), the mean time of
``accept(chunk) + partial()`` of :class:`streaming.decoder.BeamSearchStream`
around several utterance lengths, next to what pyctcdecode costs per chunk if
you re-decode the whole prefix every time (``decode_beams(prefix)``, the only
exact streaming option pyctcdecode 0.5.0 offers).  It also checks the final
texts are identical.

Logits are synthetic (text of the tiny ARPA's words -> peaked one-hot + noise),
the LM is ``tests/fixtures/tiny.arpa``; absolute numbers depend on the CPU and
on how peaked real model outputs are, the flatness does not.

Run: ``nice .venv/bin/python benchmarks/bench_decoder.py`` (about a minute on
two cores; ``--seconds 5 20`` for a quick look).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streaming.decoder import BeamSearchDecoder, DecoderConfig  # noqa: E402
from streaming.language_model import load_language_model  # noqa: E402

ARPA = REPO / "tests" / "fixtures" / "tiny.arpa"
VOCAB = ("<pad>", "<s>", "</s>", "<unk>", "|") + tuple("etaonihsrdlumwcfgypbvk'xjqz")
FRAMES_PER_SECOND = 50  # wav2vec2: 16 kHz / 320-sample hop


@dataclass(frozen=True)
class Row:
    """Timings at one utterance length (milliseconds per chunk)."""

    seconds: float
    incremental_ms: float  # mean accept+partial time of the chunks in this span
    redecode_ms: float | None  # pyctcdecode decode_beams over the whole prefix


def synthetic_log_probs(seconds: float, seed: int = 0) -> np.ndarray:
    """(frames, 32) float32 log-probs of random LM words, ~2.5 words/s like read speech."""
    rng = np.random.default_rng(seed)
    text = ARPA.read_text().split("\\1-grams:")[1].split("\\2-grams:")[0]
    words = [line.split("\t")[1] for line in text.splitlines() if line.count("\t") == 2]
    words = [w for w in words if w.isalpha()]
    token = {t: i for i, t in enumerate(VOCAB)}
    path: list[int] = []
    target = int(seconds * FRAMES_PER_SECOND)
    while len(path) < target:
        for ch in str(rng.choice(words)) + " ":
            path += [token["|" if ch == " " else ch]] * int(rng.integers(1, 3))
            path += [0] * int(rng.integers(1, 5))
    path = path[:target]
    logits = rng.normal(0.0, 1.5, (target, len(VOCAB)))  # (frames, vocab)
    logits[np.arange(target), path] += rng.uniform(3.0, 9.0, target)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return log_probs.astype(np.float32)


def run(seconds: Sequence[float], chunk: int, beam_width: int, use_lm: bool, redecode: bool) -> tuple[list[Row], bool]:
    lm = load_language_model(ARPA, VOCAB) if use_lm else None
    config = DecoderConfig(beam_width=beam_width)
    marks = sorted(seconds)
    log_probs = synthetic_log_probs(marks[-1])
    stream = BeamSearchDecoder(VOCAB, lm=lm, config=config).new_stream()
    times: list[tuple[int, float]] = []  # (end frame, seconds)
    for start in range(0, len(log_probs), chunk):
        t0 = time.process_time()
        stream.accept(log_probs[start : start + chunk])
        stream.partial()
        times.append((min(start + chunk, len(log_probs)), time.process_time() - t0))
    final = stream.finalize().text

    reference = None
    if redecode:
        from pyctcdecode import build_ctcdecoder

        reference = build_ctcdecoder(list(VOCAB), str(ARPA) if use_lm else None)
    rows = []
    previous = 0
    identical = True
    for mark in marks:
        end = int(mark * FRAMES_PER_SECOND)
        # the chunks of the last 5 s before this mark (at least 3 chunks): averages out timer noise
        span_start = max(previous, end - max(3 * chunk, 5 * FRAMES_PER_SECOND))
        in_span = [t for frame, t in times if span_start < frame <= end]
        redecode_ms = None
        if reference is not None:
            t0 = time.process_time()
            beams = reference.decode_beams(log_probs[:end], beam_width=beam_width, prune_history=config.prune_history)
            redecode_ms = (time.process_time() - t0) * 1000
            if end == len(log_probs):
                identical = beams[0][0] == final
        rows.append(Row(mark, 1000 * sum(in_span) / len(in_span), redecode_ms))
        previous = end
    return rows, identical


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_argument_group("workload")
    group.add_argument("--seconds", type=float, nargs="+", default=[5, 20, 60, 120], help="(default: %(default)s)")
    group.add_argument("--chunk", type=int, default=50, help="frames per accept() (default: %(default)s)")
    group = parser.add_argument_group("decoder")
    group.add_argument("--beam-width", type=int, default=100, help="(default: %(default)s)")
    group.add_argument("--no-lm", action="store_true", help="decode without the tiny ARPA LM")
    group.add_argument("--no-redecode", action="store_true", help="skip the pyctcdecode comparison")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)

    rows, identical = run(args.seconds, args.chunk, args.beam_width, not args.no_lm, not args.no_redecode)
    chunk_ms = 1000 * args.chunk / FRAMES_PER_SECOND
    print(
        f"chunk = {args.chunk} frames ({chunk_ms:.0f} ms audio), beam_width = {args.beam_width}, "
        f"LM = {'tiny.arpa' if not args.no_lm else 'none'}"
    )
    print(f"{'utterance':>10} | {'incremental ms/chunk':>21} | {'pyctcdecode re-decode ms/chunk':>31}")
    for row in rows:
        redecode = "-" if row.redecode_ms is None else f"{row.redecode_ms:10.1f}"
        print(f"{row.seconds:9.0f}s | {row.incremental_ms:21.2f} | {redecode:>31}")
    if not args.no_redecode:
        print(f"final text identical to pyctcdecode over the whole utterance: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
