"""Grammar mode (vosk's ``phrase_list``) against open-vocabulary decoding on spoken digits.

Why: vosk clients send a phrase list to restrict recognition (its digits sample
sends ``["zero one two three four five", "six seven eight nine oh"]``).  This
prints, per espeak-ng voice, the WER of digit strings decoded with that grammar
and without it (the model's own LM), the share of output words outside the
grammar, what ``[unk]`` makes of a sentence with no digits, and the decode time
per second of audio of both searches.  Audio is synthesised at run time and
streamed in 0.2 s blocks, as vosk's sample does.

Run: ``nice .venv/bin/python benchmarks/bench_grammar.py`` (about a minute on two
cores; ``--model`` for another checkpoint).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf
import torch

from streaming import Engine, Final

DIGITS = ["zero one two three four five", "six seven eight nine oh"]  # vosk-server's test_words.py
SAID = [
    "four oh seven nine two",
    "one two three four five six seven eight nine zero oh",
    "eight three five",
    "six six zero nine one",
]
OTHER = "the weather is nice today"  # no digit: with [unk] in the list it should come out as [unk]
VOICES = ("en", "en-us+f3", "en-gb-x-rp")


def speak(text: str, voice: str, folder: Path) -> tuple[np.ndarray, int]:
    out = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True)
    audio, rate = sf.read(out, dtype="int16")
    return audio, rate


def decode(engine: Engine, audio: np.ndarray, rate: int, grammar: Sequence[str]) -> tuple[str, float]:
    started = time.perf_counter()
    rec = engine.new_stream(sample_rate=rate, grammar=grammar)
    for i in range(0, len(audio), rate // 5):
        rec.accept_audio(audio[i : i + rate // 5])
    rec.finish()
    text = " ".join(e.text for e in rec.events() if isinstance(e, Final) and e.text)
    return text, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the shipped model)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    engine = Engine.load(args.model)
    digits = set(" ".join(DIGITS).split())
    print(f"model {engine.info.name}, LM {engine.lm_description}")
    print(f"{'voice':12} {'grammar WER':>11} {'LM WER':>7} {'non-digit words':>15}  {'RTF grammar/LM':>14}  "
          "[unk] sentence")
    with tempfile.TemporaryDirectory() as tmp:
        for voice in VOICES:
            heard, free, seconds, cost = [], [], 0.0, [0.0, 0.0]
            for text in SAID:
                audio, rate = speak(text, voice, Path(tmp))
                seconds += len(audio) / rate
                g, tg = decode(engine, audio, rate, DIGITS)
                f, tf = decode(engine, audio, rate, ())
                heard.append(g)
                free.append(f)
                cost[0] += tg
                cost[1] += tf
            def outside(texts: list[str]) -> str:
                words = " ".join(texts).split()
                return format(sum(w not in digits for w in words) / max(1, len(words)), ".1%")

            audio, rate = speak(OTHER, voice, Path(tmp))
            unk, _ = decode(engine, audio, rate, [*DIGITS, "[unk]"])
            print(
                f"{voice:12} {jiwer.wer(SAID, heard):11.1%} {jiwer.wer(SAID, free):7.1%} "
                f"{outside(heard) + ' / ' + outside(free):>15}  {cost[0] / seconds:6.2f} / {cost[1] / seconds:.2f}  "
                f"{unk!r}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
