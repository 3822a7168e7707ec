"""Listening proxy for prepared real speech: are audio and transcripts paired correctly?

    .venv/bin/python recipe/check_real.py [--out DIR] [--sources asterisk,...] [--n 40]

Transcribes ``--n`` utterances per source (evenly spread through transcripts.tsv) with
pocketsphinx (PyPI, its bundled en-us model) and prints the WER against their own transcripts
and against the transcripts shifted by one line. Correct pairing shows up as paired WER far
below the shifted one (pocketsphinx itself is ~25-40% WER on clean real speech); an off-by-one
or wrong-array mapping makes the two figures equal.

A second figure needs no recogniser and covers every utterance: the correlation of audio
duration with transcript length, own pairing against shifted. Where pocketsphinx is weak (game
voices at 11 kHz) this one still separates paired from misaligned (e.g. 0.94 against 0.14).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cache_dir, normalize_text  # noqa: E402

from scoring import word_error_rate  # noqa: E402


def pocketsphinx_transcribe(paths: Sequence[Path]) -> list[str]:
    from pocketsphinx import Config, Decoder

    config = Config(loglevel="FATAL")  # bundled en-us acoustic model, dictionary and LM
    decoder = Decoder(config)
    hyps = []
    for path in paths:
        audio, rate = sf.read(path, dtype="int16")
        if rate != 16000:
            raise ValueError(f"{path}: expected 16 kHz audio, got {rate} Hz")
        decoder.start_utt()
        decoder.process_raw(np.ascontiguousarray(audio).tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        hyps.append(normalize_text(hyp.hypstr) if hyp is not None else "")
    return hyps


def duration_correlation(folder: Path) -> tuple[float, float]:
    """Pearson correlation of each file's duration with its transcript's characters, for the
    pairing as written and shifted by one line (needs three or more utterances)."""
    rows = [ln.split("\t", 1) for ln in (folder / "transcripts.tsv").read_text().splitlines() if ln]
    if len(rows) < 3:
        raise ValueError(f"{folder}: need 3 or more transcribed utterances, got {len(rows)}")
    seconds = np.array([sf.info(folder / f).duration for f, _ in rows])
    chars = np.array([len(t) for _, t in rows], dtype=np.float64)
    if chars.std() == 0:  # one letter each (klettres): nothing to correlate
        return float("nan"), float("nan")
    own = float(np.corrcoef(seconds, chars)[0, 1])
    shifted = float(np.corrcoef(seconds[1:], chars[:-1])[0, 1])
    return own, shifted


def check_source(folder: Path, n: int, show: bool = False) -> dict[str, float | int]:
    rows = [ln.split("\t", 1) for ln in (folder / "transcripts.tsv").read_text().splitlines() if ln]
    step = max(1, len(rows) // n)
    picked = rows[::step][:n]
    refs = [t for _, t in picked]
    hyps = pocketsphinx_transcribe([folder / f for f, _ in picked])
    shifted = refs[1:] + refs[:1]
    if show:
        for (f, r), h in zip(picked, hyps):
            print(f"  {f:24s} {100 * word_error_rate([r], [h]):5.0f}%  ref: {r}\n{'':33s}hyp: {h}")
    own, off = duration_correlation(folder)
    return {
        "n": len(picked),
        "paired_wer": word_error_rate(refs, hyps),
        "shifted_wer": word_error_rate(shifted, hyps),
        "duration_corr": own,
        "shifted_duration_corr": off,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="prepare_real.py's --out (default $XLSR_RECIPE_DIR/real)")
    ap.add_argument("--sources", default=None, help="comma-separated (default: every prepared source)")
    ap.add_argument("--n", type=int, default=40, help="utterances per source")
    ap.add_argument("--show", action="store_true", help="print each utterance's reference and hypothesis")
    args = ap.parse_args(argv)
    out: Path = args.out or cache_dir() / "real"
    names = args.sources.split(",") if args.sources else sorted(
        p.parent.name for p in out.glob("*/transcripts.tsv"))
    for name in names:
        r = check_source(out / name, args.n, args.show)
        print(f"{name:28s} n={r['n']:3d}  pocketsphinx WER vs own transcript {100 * r['paired_wer']:5.1f}%  "
              f"vs shifted transcript {100 * r['shifted_wer']:5.1f}%;  corr(duration, characters) over all "
              f"{r['duration_corr']:.2f}, shifted {r['shifted_duration_corr']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
