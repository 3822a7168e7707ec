"""How words outside the LM's vocabulary are scored: WER of each setting on real recordings.

Why: pyctcdecode prices a completed unknown word with KenLM's ``<unk>`` (log10 -100
for the CMU trigram, which lists none) and glues runs of unknown words into one;
``DecoderConfig.oov_word_logp`` / ``oov_char_logp`` price them by their spelling
instead (docs/DECODERS.md, "Unknown words").  The acoustic model runs once per
utterance (full-utterance log-probs, cached with ``--cache-dir``); each setting then
re-runs only the engine's beam search over them, so a sweep takes seconds a setting.

Settings: ``pyctcdecode`` (``oov_word_logp=None``) or ``WORD/CHAR`` in nats, e.g.
``-8/-1`` (the default) or ``-14/0`` (a flat price).  ``--halves`` also scores the
even and odd lines of each folder apart (choose on one half, report the other)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_unknown_words.py samples/librivox-dev \\
        /work/recipe-cache/eval/real-short /work/recipe-cache/eval/held-out-speakers --halves \\
        --cache-dir /tmp/oov-logprobs --settings pyctcdecode,-8/-1,-14/0,-20/0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "language_model"))

from tune_alpha_beta import Utterance, load_eval_dir  # noqa: E402

from scoring import normalize_for_scoring, word_error_rate  # noqa: E402
from streaming.decoder import DecoderConfig, build_decoder  # noqa: E402
from streaming.language_model import LanguageModel, load_language_model  # noqa: E402

DEFAULT_MODEL = ROOT / "models" / "en-small"


def parse_setting(text: str) -> tuple[float | None, float]:
    """``"pyctcdecode"`` -> (None, 0.0); ``"-8/-1"`` -> (-8.0, -1.0)."""
    if text == "pyctcdecode":
        return None, 0.0
    try:
        word, char = (float(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a setting is 'pyctcdecode' or WORD/CHAR like -8/-1, got {text!r}") from None
    return word, char


def wer(vocab: Sequence[str], lm: LanguageModel, config: DecoderConfig, utterances: Sequence[Utterance]) -> float:
    decoder = build_decoder(vocab, lm=lm, config=config)
    hyps, refs = [], []
    for utt in utterances:
        stream = decoder.new_stream()
        stream.accept(np.asarray(utt.logits, dtype=np.float32))
        hyps.append(normalize_for_scoring(stream.finalize().text))
        refs.append(normalize_for_scoring(utt.reference))
    return 100.0 * word_error_rate(refs, hyps)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="folders with transcripts.tsv and audio")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder with language_model/")
    ap.add_argument("--settings", default="pyctcdecode,-8/-1", help="comma-separated: pyctcdecode or WORD/CHAR")
    ap.add_argument("--halves", action="store_true", help="also score even and odd lines apart")
    ap.add_argument("--cache-dir", type=Path, help="keep the log-probs here (<cache>/<folder>/<utt>.npy)")
    ap.add_argument("--beam-width", type=int, default=DecoderConfig.beam_width)
    args = ap.parse_args(argv)
    settings = [parse_setting(s) for s in args.settings.split(",")]
    vocab = [t for t, _ in sorted(json.loads((args.model / "vocab.json").read_text()).items(), key=lambda kv: kv[1])]
    lm = load_language_model(args.model / "language_model", vocab)
    sets: dict[str, Sequence[Utterance]] = {}
    for folder in args.dirs:
        cache = None if args.cache_dir is None else args.cache_dir / folder.name
        utts = load_eval_dir(folder, args.model, cache_dir=cache)
        sets[folder.name] = utts
        if args.halves:
            sets[f"{folder.name} even"], sets[f"{folder.name} odd"] = utts[0::2], utts[1::2]
    print(f"model {args.model}, LM {lm.description}, beam {args.beam_width}; WER % of the finals")
    print("setting      " + "  ".join(f"{name:>22}" for name in sets))
    for word, char in settings:
        config = DecoderConfig(beam_width=args.beam_width, oov_word_logp=word, oov_char_logp=char)
        label = "pyctcdecode" if word is None else f"{word:g}/{char:g}"
        row = [wer(vocab, lm, config, utts) for utts in sets.values()]
        print(f"{label:<12} " + "  ".join(f"{w:>22.2f}" for w in row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
