"""``xlsr-stream eval``: WER/CER and real-time factor over a folder of recordings.

DIR holds ``transcripts.tsv`` (``file name<TAB>reference text`` per line) and
the audio files it names.  Texts are compared as :func:`scoring.normalize_for_scoring`
spells them: lowercased, punctuation other than apostrophes removed, digits kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from client.audio_files import AudioFile
from scoring import char_error_rate, normalize_for_scoring, read_transcripts, word_error_rate
from streaming import Engine, Final

from .options import add_engine_arguments, engine_from_args

__all__ = ["EvalResult", "add_arguments", "evaluate", "run"]

BLOCK_S = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="folder with transcripts.tsv and the audio files it names")
    parser.add_argument("--mode", choices=("streaming", "offline"), default="streaming",
                        help="streaming: windows + incremental decoding + endpoints; "
                             "offline: whole-utterance logits and one beam search (the reference)")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object with the scores")
    parser.add_argument("--limit", type=int, default=None, help="only the first N utterances")
    add_engine_arguments(parser)


@dataclass(frozen=True)
class Utterance:
    name: str
    reference: str
    hypothesis: str
    audio_s: float
    compute_s: float
    wer: float


@dataclass(frozen=True)
class EvalResult:
    wer: float
    cer: float
    rtf: float
    audio_s: float
    compute_s: float
    utterances: int
    mode: str
    items: tuple[Utterance, ...]

    def summary(self) -> dict[str, object]:
        return {
            "wer": round(self.wer, 4), "cer": round(self.cer, 4), "rtf": round(self.rtf, 4),
            "audio_s": round(self.audio_s, 2), "compute_s": round(self.compute_s, 2),
            "utterances": self.utterances, "mode": self.mode,
        }


def recognize(engine: Engine, audio: AudioFile, mode: str) -> str:
    if mode == "offline":
        return engine.transcribe_offline(audio.read(), audio.sample_rate).text
    stream = engine.new_stream(sample_rate=audio.sample_rate)
    texts: list[str] = []
    for block in audio.blocks(BLOCK_S):
        stream.accept_audio(block)
        texts += [e.text for e in stream.events() if isinstance(e, Final) and e.text]
    stream.finish()
    texts += [e.text for e in stream.events() if isinstance(e, Final) and e.text]
    return " ".join(texts)


def evaluate(engine: Engine, directory: Path, *, mode: str = "streaming", limit: int | None = None,
             progress: bool = False) -> EvalResult:
    items = read_transcripts(directory)[:limit]
    results = []
    for i, (path, reference) in enumerate(items, 1):
        audio = AudioFile(path)
        t0 = time.perf_counter()
        hyp = recognize(engine, audio, mode)
        compute = time.perf_counter() - t0
        ref_n, hyp_n = normalize_for_scoring(reference), normalize_for_scoring(hyp)
        results.append(Utterance(path.name, ref_n, hyp_n, audio.duration, compute, word_error_rate([ref_n], [hyp_n])))
        if progress:
            print(f"\r{i}/{len(items)}", end="", file=sys.stderr, flush=True)
    if progress:
        print("\r", end="", file=sys.stderr)
    refs = [u.reference for u in results]
    hyps = [u.hypothesis for u in results]
    audio_s = sum(u.audio_s for u in results)
    compute_s = sum(u.compute_s for u in results)
    return EvalResult(
        wer=word_error_rate(refs, hyps), cer=char_error_rate(refs, hyps), rtf=compute_s / audio_s if audio_s else 0.0,
        audio_s=audio_s, compute_s=compute_s, utterances=len(results), mode=mode, items=tuple(results),
    )


def print_table(result: EvalResult) -> None:
    width = max([len(u.name) for u in result.items] + [9])
    print(f"{'utterance':<{width}}  {'audio_s':>7}  {'rtf':>6}  {'wer':>6}  hypothesis")
    for u in result.items:
        rtf = u.compute_s / u.audio_s if u.audio_s else 0.0
        print(f"{u.name:<{width}}  {u.audio_s:7.2f}  {rtf:6.3f}  {u.wer:6.1%}  {u.hypothesis[:80]}")
    print(
        f"\n{result.mode}: WER {result.wer:.2%}  CER {result.cer:.2%}  RTF {result.rtf:.3f}  "
        f"({result.utterances} utterances, {result.audio_s:.1f} s of audio)"
    )


def run(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    read_transcripts(directory)  # fail fast before loading the model
    engine = engine_from_args(args)
    result = evaluate(engine, directory, mode=args.mode, limit=args.limit, progress=sys.stderr.isatty())
    print_table(result)
    if args.json:
        print(json.dumps(result.summary()))
    return 0
