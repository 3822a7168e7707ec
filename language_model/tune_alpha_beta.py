"""Grid-search the LM weight (alpha) and word bonus (beta) on a dev set, with pyctcdecode.

The acoustic model runs once per utterance (full-utterance log-probs, the reference streaming
matches); the grid then only re-runs pyctcdecode's beam search, which the engine's incremental
decoder reproduces exactly. Confirm the chosen values with ``xlsr-stream eval`` on the same set.

Two dev set layouts:
* ``--eval-dir DIR``: what ``xlsr-stream eval`` reads, ``DIR/transcripts.tsv`` (``file<TAB>text``)
  and the audio; log-probs come from the model in ``--model-dir`` through the engine and are
  cached as ``<utt>.npy`` in ``--cache-dir`` when given.
* ``--dev-dir DIR``: ``<utt>.npy`` holding log-probabilities, shape ``(frames, vocab)`` float32 in
  vocab.json order, next to ``<utt>.txt`` holding the reference transcript.
References and hypotheses are compared as ``xlsr-stream eval`` compares them
(:func:`scoring.normalize_for_scoring`), so the WER here is eval's offline WER.

Usage::

    .venv/bin/python language_model/tune_alpha_beta.py --model-dir models/en-small \\
        --eval-dir /work/recipe-cache/eval/synth-dev --every 3 [--alphas 0,0.25,...] [--write]

Prints WER for every grid point (and for greedy decoding without the LM); ``--write`` stores the
best alpha/beta in ``<model-dir>/language_model/attrs.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from scoring import normalize_for_scoring, read_transcripts, word_error_rate

# Wide enough to bracket what wav2vec2-style CTC models end up with (alpha 0.3-1.5, beta 0-3);
# refine around the best point with a second, finer run if it lands on an edge.
DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
DEFAULT_BETAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
# pyctcdecode's default beam; tuning with a narrower beam than serving would bias alpha low.
DEFAULT_BEAM_WIDTH = 100

LogProbs = npt.NDArray[np.floating[Any]]  # (frames, vocab) log-probabilities, float32


@dataclass(frozen=True)
class Utterance:
    name: str
    logits: LogProbs  # (frames, vocab) float32 log-probs
    reference: str


@dataclass(frozen=True)
class GridPoint:
    alpha: float | None  # None: greedy decoding without the LM
    beta: float | None
    wer: float


def load_dev_set(dev_dir: Path,
                 get_logits: Callable[[Path], LogProbs] | None = None) -> list[Utterance]:
    """Pair every ``<utt>.txt`` with ``<utt>.npy``, or with ``get_logits(<utt>.wav)`` if given."""
    utterances = []
    for ref_path in sorted(dev_dir.glob("*.txt")):
        npy = ref_path.with_suffix(".npy")
        if npy.exists():
            logits = np.load(npy)
        elif get_logits is not None and ref_path.with_suffix(".wav").exists():
            logits = get_logits(ref_path.with_suffix(".wav"))
        else:
            raise FileNotFoundError(f"{ref_path} has no {npy.name} next to it"
                                    + ("" if get_logits is None else " and no .wav"))
        if logits.ndim != 2:
            raise ValueError(f"{npy.name}: expected (frames, vocab) logits, got shape {logits.shape}")
        utterances.append(Utterance(ref_path.stem, logits.astype(np.float32),
                                    normalize_for_scoring(ref_path.read_text(encoding="utf-8"))))
    if not utterances:
        raise FileNotFoundError(f"no <utt>.txt transcripts in {dev_dir}")
    return utterances


def load_eval_dir(eval_dir: Path, model_dir: Path, limit: int | None = None,
                  cache_dir: Path | None = None, every: int = 1) -> list[Utterance]:
    """Utterances of an ``xlsr-stream eval`` folder with full-utterance log-probs from the engine:
    every ``every``-th line of transcripts.tsv (a spread over voices), at most ``limit`` of them."""
    from client.audio_files import AudioFile
    from streaming import Engine

    items = read_transcripts(eval_dir)[::every][:limit]
    engine: Engine | None = None
    utterances = []
    for audio_path, reference in items:
        cached = None if cache_dir is None else cache_dir / f"{audio_path.stem}.npy"
        if cached is not None and cached.exists():
            log_probs = np.load(cached)
        else:
            if engine is None:  # only when something is not cached
                engine = Engine.load(model_dir, lm=False)
            audio = AudioFile(audio_path)  # read as `xlsr-stream eval` reads it
            log_probs = engine.offline_log_probs(audio.read(), audio.sample_rate)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.save(cached, log_probs)
        utterances.append(Utterance(audio_path.stem, log_probs, normalize_for_scoring(reference)))
    return utterances


_WORKER: dict[str, Any] = {}


def _init_worker(model_dir: Path, utterances: Sequence[Utterance], beam_width: int) -> None:
    from pyctcdecode import BeamSearchDecoderCTC

    _WORKER.update(decoder=BeamSearchDecoderCTC.load_from_dir(str(model_dir)), utterances=utterances,
                   beam_width=beam_width)


def _wer_at(alpha: float, beta: float) -> GridPoint:
    decoder, utterances = _WORKER["decoder"], _WORKER["utterances"]
    decoder.reset_params(alpha=alpha, beta=beta)
    hyps = [normalize_for_scoring(decoder.decode(u.logits, beam_width=_WORKER["beam_width"])) for u in utterances]
    return GridPoint(alpha, beta, word_error_rate([u.reference for u in utterances], hyps))


def grid_search(model_dir: Path, utterances: Sequence[Utterance], alphas: Iterable[float],
                betas: Iterable[float], beam_width: int = DEFAULT_BEAM_WIDTH, jobs: int = 1) -> list[GridPoint]:
    """WER of greedy decoding, then of every (alpha, beta); the model dir is pyctcdecode's layout.

    ``jobs`` > 1 spreads the grid points over that many processes (each loads the LM once).
    """
    from pyctcdecode import Alphabet, BeamSearchDecoderCTC

    alphabet = Alphabet.loads((model_dir / "alphabet.json").read_text(encoding="utf-8"))
    n_labels = len(alphabet.labels)
    for utt in utterances:
        if utt.logits.shape[1] != n_labels:
            raise ValueError(f"{utt.name}: logits have {utt.logits.shape[1]} columns, the alphabet "
                             f"has {n_labels}")
    references = [u.reference for u in utterances]

    no_lm = BeamSearchDecoderCTC(alphabet, language_model=None)
    greedy = [normalize_for_scoring(no_lm.decode(u.logits, beam_width=1)) for u in utterances]
    points = [GridPoint(None, None, word_error_rate(references, greedy))]
    grid = [(float(a), float(b)) for a in alphas for b in betas]

    def report(point: GridPoint) -> GridPoint:
        print(f"alpha={point.alpha:<5} beta={point.beta:<5} WER={point.wer:.4f}", file=sys.stderr, flush=True)
        return point

    if jobs <= 1:
        _init_worker(model_dir, utterances, beam_width)
        points += [report(_wer_at(a, b)) for a, b in grid]
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, initializer=_init_worker,
                                 initargs=(model_dir, list(utterances), beam_width)) as pool:
            points += [report(p) for p in pool.map(_wer_at, *zip(*grid))]
    return points


def best(points: Sequence[GridPoint]) -> GridPoint:
    """Lowest WER among LM points; ties go to the smaller alpha, then the smaller beta."""
    lm_points = [p for p in points if p.alpha is not None]
    return min(lm_points, key=lambda p: (p.wer, p.alpha, p.beta))


def write_attrs(model_dir: Path, point: GridPoint) -> None:
    path = model_dir / "language_model" / "attrs.json"
    attrs = json.loads(path.read_text(encoding="utf-8"))
    attrs["alpha"], attrs["beta"] = point.alpha, point.beta
    path.write_text(json.dumps(attrs), encoding="utf-8")


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--model-dir", type=Path, required=True,
                      help="folder with alphabet.json and language_model/ (pyctcdecode layout)")
    dev = data.add_mutually_exclusive_group(required=True)
    dev.add_argument("--eval-dir", type=Path,
                     help="folder with transcripts.tsv and audio (xlsr-stream eval's layout); the model in "
                          "--model-dir computes the log-probs")
    dev.add_argument("--dev-dir", type=Path,
                     help="folder of <utt>.npy log-probs (frames, vocab) and <utt>.txt references")
    data.add_argument("--limit", type=int, help="at most N utterances of --eval-dir")
    data.add_argument("--every", type=int, default=1, help="take every K-th utterance of --eval-dir")
    data.add_argument("--cache-dir", type=Path, help="keep --eval-dir log-probs here as <utt>.npy")
    grid = parser.add_argument_group("grid")
    grid.add_argument("--alphas", type=_floats, default=DEFAULT_ALPHAS, help="comma-separated")
    grid.add_argument("--betas", type=_floats, default=DEFAULT_BETAS, help="comma-separated")
    grid.add_argument("--beam-width", type=int, default=DEFAULT_BEAM_WIDTH)
    grid.add_argument("--jobs", type=int, default=1, help="decode grid points in this many processes")
    out = parser.add_argument_group("output")
    out.add_argument("--write", action="store_true",
                     help="store the best alpha/beta in <model-dir>/language_model/attrs.json")
    out.add_argument("--json", type=Path, help="also write every grid point here")
    args = parser.parse_args(argv)

    if args.eval_dir is not None:
        utterances = load_eval_dir(args.eval_dir, args.model_dir, args.limit, args.cache_dir, args.every)
    else:
        utterances = load_dev_set(args.dev_dir)
    points = grid_search(args.model_dir, utterances, args.alphas, args.betas, args.beam_width, args.jobs)
    print("| alpha | beta | WER |\n|---:|---:|---:|")
    for p in points:
        print(f"| {'-' if p.alpha is None else p.alpha} | {'-' if p.beta is None else p.beta} | "
              f"{p.wer:.4f} |" + (" (greedy, no LM)" if p.alpha is None else ""))
    chosen = best(points)
    print(f"best: alpha={chosen.alpha} beta={chosen.beta} WER={chosen.wer:.4f} "
          f"(greedy {points[0].wer:.4f}; {len(utterances)} utterances)")
    if args.json:
        args.json.write_text(json.dumps([p.__dict__ for p in points], indent=1), encoding="utf-8")
    if args.write:
        write_attrs(args.model_dir, chosen)
        print(f"wrote alpha/beta to {args.model_dir / 'language_model' / 'attrs.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
