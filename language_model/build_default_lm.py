"""Rebuild the default English LM shipped beside models/en-small, end to end.

Steps (each one is skipped by nothing; the whole run takes about a minute once KenLM is built):

1. ``build_kenlm_tools.sh``: KenLM's ``build_binary`` from the kenlm sdist, in a cache outside git.
2. ``pocketsphinx_to_arpa.py``: CMU's generic US-English trigram from the pinned ``pocketsphinx``
   wheel (checked by SHA-256) -> ARPA, vocabulary normalised to a-z and '.
3. ``build_binary -q 12 -b 12 -a 64 trie``: 20.6 MB instead of 112 MB ARPA / 34.5 MB unquantised
   trie; the largest log10 error this adds to a score is 0.03 (see README.md).
4. pyctcdecode writes the Hugging Face ``Wav2Vec2ProcessorWithLM`` layout (``save_to_dir``):
   ``<model>/alphabet.json`` and ``<model>/language_model/{attrs.json, unigrams.txt, <name>.bin}``.
5. Checks: ``BeamSearchDecoderCTC.load_from_dir(<model>)`` loads it, decodes one-hot logits, and
   KenLM's perplexity of a few English sentences is far below that of the same words shuffled.

Usage::

    .venv/bin/python language_model/build_default_lm.py            # writes models/en-small/...
    .venv/bin/python language_model/build_default_lm.py --check-only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pocketsphinx_to_arpa  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "en-small"
DEFAULT_WORK_DIR = Path(os.environ.get("LM_WORK_DIR", "/work/recipe-cache/lm"))
DEFAULT_KENLM_CACHE = Path(os.environ.get("KENLM_CACHE", "/work/recipe-cache/kenlm-build"))
KENLM_FILE_NAME = "cmu-en-us-3gram.bin"

# The source model: en-us.lm.bin from the pocketsphinx 5.1.1 wheel (also identical in 5.0.4).
POCKETSPHINX_VERSION = "5.1.1"
SOURCE_SHA256 = "db21d0642286677699e6dbc859d2e5395570222361999387ce60f6e1d01995d6"

# en-small's vocab.json in index order (pad = CTC blank, "|" = word delimiter).
EXPECTED_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz", "'"]

# Tuned with tune_alpha_beta.py for the step-7254 en-small model on every 3rd held-out synthetic
# utterance (100): WER 57.8% vs 81.8% greedy; pyctcdecode's defaults 0.5/1.0 were within 0.1 point.
# Re-tune (tune_alpha_beta.py --write) whenever the acoustic model is re-exported.
ALPHA = 0.6
BETA = 1.5

# KenLM quantisation: 12-bit probabilities and backoffs keep every score within 0.03 (log10) of
# the ARPA's; 8/8 saves 3 MB but errs by up to 0.41.
BUILD_BINARY_ARGS = ["-q", "12", "-b", "12", "-a", "64", "trie"]

SENTENCES = [
    "the weather is nice today",
    "i would like to order a cup of coffee",
    "she went to the store to buy some bread",
    "we need to talk about the budget for next year",
    "the president said that the economy is getting better",
    "can you tell me how to get to the train station",
    "he didn't know what to say",
    "it's going to rain tomorrow afternoon",
]


@dataclass(frozen=True)
class PerplexityRow:
    sentence: str
    perplexity: float
    shuffled: str
    shuffled_perplexity: float


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_model_path() -> Path:
    """en-us.lm.bin from the installed pocketsphinx wheel, checked to be the pinned file."""
    try:
        import pocketsphinx
    except ImportError as exc:
        raise SystemExit(f"pocketsphinx is not installed; pip install "
                         f"pocketsphinx=={POCKETSPHINX_VERSION} (see requirements.txt)") from exc
    path = Path(pocketsphinx.get_model_path("en-us/en-us.lm.bin"))
    digest = sha256(path)
    if digest != SOURCE_SHA256:
        raise SystemExit(f"{path} has SHA-256 {digest}, expected {SOURCE_SHA256} (the file in "
                         f"pocketsphinx {POCKETSPHINX_VERSION}); install that version")
    return path


def read_labels(model_dir: Path) -> list[str]:
    """vocab.json's tokens in index order, if the acoustic model is there; else the expected ones."""
    vocab_path = model_dir / "vocab.json"
    if not vocab_path.exists():
        return list(EXPECTED_VOCAB)
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    labels = [token for token, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    if labels != EXPECTED_VOCAB:
        raise SystemExit(f"{vocab_path} has tokens {labels}, expected {EXPECTED_VOCAB}; the LM's "
                         "words are spelled in a-z and ' only, so check normalise_word first")
    return labels


def run(cmd: Sequence[str | Path]) -> None:
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    subprocess.run([str(c) for c in cmd], check=True)


def build_arpa(work_dir: Path) -> Path:
    arpa = work_dir / "cmu-en-us-3gram.arpa"
    source = source_model_path()
    if arpa.exists() and arpa.stat().st_mtime > source.stat().st_mtime and \
            arpa.stat().st_mtime > Path(pocketsphinx_to_arpa.__file__).stat().st_mtime:
        print(f"{arpa} is up to date", file=sys.stderr)
        return arpa
    pocketsphinx_to_arpa.main([str(source), str(arpa)])
    return arpa


def build_kenlm_binary(arpa: Path, work_dir: Path, kenlm_cache: Path) -> Path:
    run(["nice", REPO_ROOT / "language_model" / "build_kenlm_tools.sh"])
    binary = work_dir / KENLM_FILE_NAME
    run(["nice", kenlm_cache / "bin" / "build_binary", *BUILD_BINARY_ARGS, arpa, binary])
    return binary


def package(binary: Path, model_dir: Path, unigrams: Sequence[str]) -> None:
    """Write alphabet.json and language_model/ exactly as pyctcdecode's save_to_dir does."""
    from pyctcdecode import build_ctcdecoder

    labels = read_labels(model_dir)
    decoder = build_ctcdecoder(labels, kenlm_model_path=str(binary), unigrams=list(unigrams),
                               alpha=ALPHA, beta=BETA)
    with tempfile.TemporaryDirectory() as tmp:
        decoder.save_to_dir(tmp)
        model_dir.mkdir(parents=True, exist_ok=True)
        lm_dir = model_dir / "language_model"
        if lm_dir.exists():
            shutil.rmtree(lm_dir)
        shutil.move(str(Path(tmp) / "language_model"), str(lm_dir))
        shutil.move(str(Path(tmp) / "alphabet.json"), str(model_dir / "alphabet.json"))


def unigrams_from_arpa(arpa: Path) -> list[str]:
    """The ARPA's words, less <s> </s> <unk>: what the decoder may complete a partial word into."""
    words = []
    with arpa.open(encoding="utf-8") as f:
        for line in f:
            if line.startswith("\\1-grams:"):
                break
        for line in f:
            line = line.rstrip("\n")
            if not line:
                break
            word = line.split("\t")[1]
            if word not in pocketsphinx_to_arpa.SENTENCE_TOKENS:
                words.append(word)
    return words


def one_hot_logits(text: str, labels: Sequence[str]) -> np.ndarray:
    """Log-probs that spell ``text`` with a blank between frames: (frames, vocab) float32."""
    index = {label: i for i, label in enumerate(labels)}
    frames = []
    for char in text:
        frames += [index["|" if char == " " else char], index["<pad>"]]
    logits = np.full((len(frames), len(labels)), np.log(1e-4), dtype=np.float32)
    logits[np.arange(len(frames)), frames] = np.log(1 - 1e-4 * (len(labels) - 1))
    return logits


def check(model_dir: Path, seed: int = 0) -> list[PerplexityRow]:
    """Load with pyctcdecode and KenLM; return perplexities; raise if anything looks wrong."""
    import kenlm
    from pyctcdecode import BeamSearchDecoderCTC, LanguageModel

    decoder = BeamSearchDecoderCTC.load_from_dir(str(model_dir))
    lm = LanguageModel.load_from_dir(str(model_dir / "language_model"))
    if (lm.alpha, lm.beta) != (ALPHA, BETA):
        raise AssertionError(f"attrs.json has alpha={lm.alpha}, beta={lm.beta}; "
                             f"expected {ALPHA}, {BETA}")
    labels = read_labels(model_dir)
    for text in ["the cat sat on the mat", "i don't know"]:
        got = decoder.decode(one_hot_logits(text, labels))
        if got != text:
            raise AssertionError(f"decoding one-hot logits for {text!r} gave {got!r}")

    (kenlm_file,) = [p for p in (model_dir / "language_model").iterdir() if p.suffix == ".bin"]
    model = kenlm.Model(str(kenlm_file))
    rng = random.Random(seed)
    rows = []
    for sentence in SENTENCES:
        words = sentence.split()
        oov = [w for w in words if w not in model]
        if oov:
            raise AssertionError(f"test words missing from the LM: {oov}")
        shuffled = words[:]
        while shuffled == words:
            rng.shuffle(shuffled)
        rows.append(PerplexityRow(sentence, model.perplexity(sentence), " ".join(shuffled),
                                  model.perplexity(" ".join(shuffled))))
    worse = [r for r in rows if r.shuffled_perplexity <= r.perplexity]
    if worse:
        raise AssertionError(f"shuffled sentences scored as well as the originals: {worse}")
    return rows


def perplexity_table(rows: Sequence[PerplexityRow]) -> str:
    lines = ["| sentence | ppl | shuffled | ppl |", "|---|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r.sentence} | {r.perplexity:.1f} | {r.shuffled} | "
                     f"{r.shuffled_perplexity:.1f} |")
    geo = lambda xs: float(np.exp(np.mean(np.log(xs))))  # noqa: E731
    lines.append(f"| *geometric mean* | {geo([r.perplexity for r in rows]):.1f} | | "
                 f"{geo([r.shuffled_perplexity for r in rows]):.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    paths = parser.add_argument_group("paths")
    paths.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                       help="checkpoint folder that gets alphabet.json and language_model/")
    paths.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR,
                       help="scratch for the 112 MB ARPA and the binary (outside git)")
    paths.add_argument("--kenlm-cache", type=Path, default=DEFAULT_KENLM_CACHE,
                       help="where build_kenlm_tools.sh puts bin/build_binary")
    parser.add_argument("--check-only", action="store_true",
                        help="only load and score what is already in --model-dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    if not args.check_only:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        arpa = build_arpa(args.work_dir)
        binary = build_kenlm_binary(arpa, args.work_dir, args.kenlm_cache)
        package(binary, args.model_dir, unigrams_from_arpa(arpa))
        print(f"wrote {args.model_dir / 'alphabet.json'} and {args.model_dir / 'language_model'} "
              f"({binary.stat().st_size / 1e6:.1f} MB KenLM binary)", file=sys.stderr)
    rows = check(args.model_dir)
    print(perplexity_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
