"""The two beam searches on real recordings: WER, decoder CPU per audio second, partial stability.

Why: decoding is most of a stream's CPU time (issue 18); ``DecoderConfig.decoder``
picks pyctcdecode (the Python reference) or flashlight (C++).  This streams each
recording through a real :class:`streaming.Recognizer` (the shipped model and
LM unless ``--model``/``--lm``, default windows and endpoints) once per decoder,
with one shared acoustic model, and prints per decoder:

* WER of the finals against ``transcripts.tsv`` (scoring/, as ``xlsr-stream eval``);
* decoder CPU-seconds per audio second (process time inside the decoder's
  accept/partial/peek/finalize calls: what one stream costs on one core) and the
  whole stream's CPU per audio second (model + decoder + the rest);
* partial stability: the latency lab's revision rate (shown words later taken
  back / words shown), with the transcript a viewer sees after each event.

Run (1 thread, a few minutes on two busy cores)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_decoder_backends.py \\
        samples/librivox-dev /work/recipe-cache/eval/synth-dev --limit 50
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

os.environ.setdefault("OMP_NUM_THREADS", "1")

from client.audio_files import AudioFile  # noqa: E402
from latency.metrics import ReceivedEvent, hypothesis_timeline, revisions  # noqa: E402
from scoring import normalize_for_scoring, read_transcripts, word_error_rate  # noqa: E402
from streaming import DecoderConfig, Engine, Final  # noqa: E402
from streaming.decoder import DECODERS, Decoder, DecoderStream, Hypothesis, ScoredHypothesis  # noqa: E402
from streaming.grammar import Grammar  # noqa: E402

BLOCK_S = 0.1


class _Clock:
    """Process time spent inside decoder calls."""

    def __init__(self) -> None:
        self.seconds = 0.0


class _TimedStream:
    def __init__(self, inner: DecoderStream, clock: _Clock) -> None:
        self._inner, self._clock = inner, clock

    @property
    def frames(self) -> int:
        return self._inner.frames

    @frames.setter
    def frames(self, value: int) -> None:
        self._inner.frames = value

    def _timed(self, name: str, *args: Any) -> Any:
        t0 = time.process_time()
        try:
            return getattr(self._inner, name)(*args)
        finally:
            self._clock.seconds += time.process_time() - t0

    def accept(self, log_probs: np.ndarray) -> None:
        self._timed("accept", log_probs)

    def partial(self) -> Hypothesis:
        return self._timed("partial")  # type: ignore[no-any-return]

    def peek(self, log_probs: np.ndarray) -> Hypothesis:
        return self._timed("peek", log_probs)  # type: ignore[no-any-return]

    def finalize(self) -> Hypothesis:
        return self._timed("finalize")  # type: ignore[no-any-return]

    def alternatives(self, n: int) -> tuple[ScoredHypothesis, ...]:
        return self._timed("alternatives", n)  # type: ignore[no-any-return]


class _TimedDecoder:
    def __init__(self, inner: Decoder, clock: _Clock) -> None:
        self._inner, self._clock = inner, clock

    def new_stream(
        self, *, hotwords: Sequence[str] | None = None, use_lm: bool = True, grammar: Grammar | None = None
    ) -> DecoderStream:
        inner = self._inner.new_stream(hotwords=hotwords, use_lm=use_lm, grammar=grammar)
        return _TimedStream(inner, self._clock)


@dataclass(frozen=True)
class Result:
    decoder: str
    dataset: str
    utterances: int
    audio_s: float
    wer: float
    decoder_cpu_per_s: float
    stream_cpu_per_s: float
    revision_rate: float | None


def run(engine: Engine, name: str, directory: Path, limit: int | None) -> Result:
    clock = _Clock()
    engine._decoder = _TimedDecoder(engine._decoder, clock)  # noqa: SLF001 - benchmark instrumentation
    refs, hyps = [], []
    shown = revised = 0
    audio_s = cpu_s = 0.0
    for path, reference in read_transcripts(directory)[:limit]:
        audio = AudioFile(path)
        stream = engine.new_stream(sample_rate=audio.sample_rate)
        received: list[ReceivedEvent] = []
        t0 = time.process_time()
        done = 0
        for block in audio.blocks(BLOCK_S):
            stream.accept_audio(block)
            done += len(block)
            received += [ReceivedEvent(done / audio.sample_rate, e) for e in stream.events()]
        stream.finish()
        received += [ReceivedEvent(done / audio.sample_rate, e) for e in stream.events()]
        cpu_s += time.process_time() - t0
        audio_s += audio.duration
        refs.append(normalize_for_scoring(reference))
        hyps.append(normalize_for_scoring(" ".join(r.event.text for r in received if isinstance(r.event, Final))))
        rev = revisions(hypothesis_timeline(received))
        shown += rev.words_shown
        revised += rev.words_revised
    wer = word_error_rate(refs, hyps)
    return Result(name, directory.name, len(refs), audio_s, wer, clock.seconds / audio_s, cpu_s / audio_s,
                  revised / shown if shown else None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path, help="folders with transcripts.tsv and audio")
    parser.add_argument("--limit", type=int, default=None, help="first N utterances of each folder")
    parser.add_argument("--decoders", nargs="+", choices=DECODERS, default=list(DECODERS))
    parser.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--beam-width", type=int, default=DecoderConfig().beam_width)
    parser.add_argument("--alpha", type=float, default=None, help="LM weight (default: the LM's attrs.json)")
    parser.add_argument("--beta", type=float, default=None, help="word bonus (default: the LM's attrs.json)")
    parser.add_argument("--beam-prune-logp", type=float, default=DecoderConfig().beam_prune_logp,
                        help="beam threshold: drop beams this far (natural log) below the best")
    parser.add_argument("--token-min-logp", type=float, default=DecoderConfig().token_min_logp,
                        help="tokens below this log-prob at a frame are not expanded")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    base = Engine.load(args.model, dtype="float32", threads=1)
    results = []
    for name in args.decoders:
        config = DecoderConfig(decoder=name, beam_width=args.beam_width, alpha=args.alpha, beta=args.beta,
                               beam_prune_logp=args.beam_prune_logp, token_min_logp=args.token_min_logp)
        engine = Engine(base.model, language_model=base.language_model, decoder_config=config)
        for directory in args.dirs:
            results.append(run(engine, name, directory, args.limit))
            r = results[-1]
            print(f"  {r.decoder:<12} {r.dataset:<16} done ({r.utterances} utt, {r.audio_s:.0f} s)", file=sys.stderr)
    print(f"model {base.info.name}, LM {base.lm_description}, beam_width {args.beam_width}, "
          f"beam_prune_logp {args.beam_prune_logp}, token_min_logp {args.token_min_logp}, "
          f"alpha {args.alpha or 'LM'}, beta {args.beta if args.beta is not None else 'LM'}, 1 thread, float32")
    print(f"{'decoder':<12} {'set':<16} {'utt':>4} {'audio s':>8} {'WER %':>6} "
          f"{'decoder CPU-s/s':>16} {'stream CPU-s/s':>15} {'revised/shown':>14}")
    for r in results:
        rate = "-" if r.revision_rate is None else f"{r.revision_rate:.3f}"
        print(f"{r.decoder:<12} {r.dataset:<16} {r.utterances:>4} {r.audio_s:>8.1f} {100 * r.wer:>6.2f} "
              f"{r.decoder_cpu_per_s:>16.4f} {r.stream_cpu_per_s:>15.4f} {rate:>14}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
