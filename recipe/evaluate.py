"""Step 5: greedy-CTC WER/CER of an exported model folder on the dev sets.

Sets: ``librivox`` (the 5 real LibriVox clips from pocketsphinx-testdata; dev only, never
trained on), ``real-short`` (14 short real commands by other speakers: pocketsphinx-testdata's
cards and "go forward", alsa-utils' channel names; dev only) and any folder holding
``transcripts.tsv`` (``filename<TAB>reference``) plus audio, by default the held-out synthetic
set ``$XLSR_RECIPE_DIR/eval/synth-dev``. The engine CLI measures
the same folders through the streaming path (windows, running normalisation, LM):
``xlsr-stream eval $XLSR_RECIPE_DIR/eval/synth-dev`` and, after ``--write-real-folders``,
``xlsr-stream eval $XLSR_RECIPE_DIR/eval/librivox`` (and ``eval/real-short``).

``--engine`` runs that whole matrix (each set x greedy / LM x streaming / offline, through
``xlsr-stream eval --json`` in parallel processes) and writes the table into the model card
between the ``ENGINE_EVAL`` markers that ``export.py`` leaves there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import cache_dir


def eval_folder(name: str, rows: list[tuple[str, str]]) -> Path:
    """``$XLSR_RECIPE_DIR/eval/<name>``: symlinks to the audio of ``rows`` (path, transcript) and a
    transcripts.tsv, for ``xlsr-stream eval``. Files of the same name in different folders get the
    parent folder's name as a prefix."""
    out = cache_dir() / "eval" / name
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    names = [Path(p).name for p, _ in rows]
    for path, ref in rows:
        base = Path(path).name
        link = out / (base if names.count(base) == 1 else f"{Path(path).parent.name}-{base}")
        if not link.exists():
            link.symlink_to(path)
        lines.append(f"{link.name}\t{ref}")
    (out / "transcripts.tsv").write_text("\n".join(lines) + "\n")
    return out


def real_folders() -> list[Path]:
    """The real-speech dev sets (``librivox``, ``real-short``) as folders for ``xlsr-stream eval``."""
    from train import real_sets

    return [eval_folder(name, rows) for name, rows in real_sets().items()]


def evaluate_model_dir(model_dir: Path, folders: list[Path] | None = None, limit: int = 0,
                       show: int = 0) -> dict[str, dict]:
    import torch
    from train import evaluate_sets, folder_set, real_sets
    from transformers import Wav2Vec2ForCTC

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = Wav2Vec2ForCTC.from_pretrained(str(model_dir))
    model.eval()
    sets = real_sets()
    for f in folders if folders is not None else [cache_dir() / "eval" / "synth-dev"]:
        sets[f.name] = folder_set(f, limit)
    return evaluate_sets(model, {k: v for k, v in sets.items() if v})


# sox effects: each real clip is also scored slowed, sped up, pitch-shifted, filtered, reverberated and
# quietened.  The real sets are 19 clips by a handful of speakers: one clip's luck moves their CER by
# points between checkpoints; scored over these 11 versions it moves far less.
PERTURBATIONS: list[list[str]] = [
    [], ["tempo", "0.9"], ["tempo", "1.1"], ["pitch", "-150"], ["pitch", "150"], ["highpass", "100"],
    ["lowpass", "4000"], ["treble", "6"], ["bass", "-6"], ["reverb", "30"], ["gain", "-n", "-12"],
]


def perturbed(path: str, effects: list[str]):  # -> np.ndarray (samples,) float32 at 16 kHz
    """The clip at 16 kHz mono after the sox ``effects``."""
    import numpy as np

    raw = subprocess.run(["sox", path, "-t", "raw", "-e", "float", "-b", "32", "-r", "16000", "-c", "1", "-",
                          *effects], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float32).copy()


def evaluate_perturbed(model_dir: Path) -> dict[str, dict]:
    """Greedy WER/CER of the real dev sets over every clip x ``PERTURBATIONS``."""
    import torch
    from train import real_sets, transcribe
    from transformers import Wav2Vec2ForCTC

    from scoring import char_error_rate, word_error_rate

    model = Wav2Vec2ForCTC.from_pretrained(str(model_dir)).eval()
    res = {}
    with torch.no_grad():
        for name, rows in real_sets().items():
            refs = [ref for _ in PERTURBATIONS for _, ref in rows]
            hyps = [transcribe(model, perturbed(path, effects)) for effects in PERTURBATIONS for path, _ in rows]
            if refs:
                res[name] = {"wer": word_error_rate(refs, hyps), "cer": char_error_rate(refs, hyps), "n": len(refs)}
    return res


CARD_BEGIN = "<!-- ENGINE_EVAL:BEGIN -->"
CARD_END = "<!-- ENGINE_EVAL:END -->"
DECODERS = {"greedy": ["--greedy"], "LM": []}


def engine_matrix(model_dir: Path, folders: list[Path], jobs: int = 2) -> list[dict]:
    """WER/CER of every (set, decoder, mode) through the engine CLI, as ``xlsr-stream eval`` reports."""
    repo = Path(__file__).resolve().parent.parent
    runs = [(f, dec, mode) for f in folders for dec in DECODERS for mode in ("streaming", "offline")]

    def one(run: tuple[Path, str, str]) -> dict:
        folder, dec, mode = run
        cmd = [sys.executable, "-m", "cli", "eval", str(folder), "--model", str(model_dir), "--mode", mode,
               "--json", *DECODERS[dec]]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one core per run; runs go in parallel
        out = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, check=True).stdout
        summary = json.loads(out.strip().splitlines()[-1])
        print(f"{folder.name:12s} {dec:6s} {mode:9s} WER {100 * summary['wer']:6.2f}%  "
              f"CER {100 * summary['cer']:6.2f}%  RTF {summary['rtf']:.3f}", flush=True)
        return {"set": folder.name, "decoder": dec, "mode": mode, **summary}

    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, runs))


def engine_table(rows: list[dict]) -> str:
    by = {(r["set"], r["decoder"], r["mode"]): r for r in rows}
    lines = ["| eval set | utterances | decoder | streaming WER | offline WER | streaming CER | offline CER |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["set"] for r in rows):
        for dec in DECODERS:
            s, o = by[(name, dec, "streaming")], by[(name, dec, "offline")]
            lines.append(f"| {name} | {s['utterances']} | {dec} | {100 * s['wer']:.1f}% | {100 * o['wer']:.1f}% | "
                         f"{100 * s['cer']:.1f}% | {100 * o['cer']:.1f}% |")
    return "\n".join(lines)


def write_card_section(model_dir: Path, rows: list[dict], note: str) -> None:
    card = model_dir / "README.md"
    text = card.read_text(encoding="utf-8")
    if CARD_BEGIN not in text or CARD_END not in text:
        raise SystemExit(f"{card} has no {CARD_BEGIN} ... {CARD_END} section; re-export with recipe/export.py")
    head, rest = text.split(CARD_BEGIN, 1)
    tail = rest.split(CARD_END, 1)[1]
    card.write_text(f"{head}{CARD_BEGIN}\n{note}\n\n{engine_table(rows)}\n{CARD_END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path(__file__).resolve().parent.parent / "models" / "en-small")
    ap.add_argument("--sets", type=Path, nargs="*", default=None,
                    help="folders with transcripts.tsv (default: $XLSR_RECIPE_DIR/eval/synth-dev)")
    ap.add_argument("--limit", type=int, default=0, help="at most N utterances per folder (0: all)")
    ap.add_argument("--write-real-folders", action="store_true",
                    help="write $XLSR_RECIPE_DIR/eval/librivox and eval/real-short (for `xlsr-stream eval`) and exit")
    ap.add_argument("--engine", action="store_true",
                    help="greedy/LM x streaming/offline through `xlsr-stream eval`, written into the model card")
    ap.add_argument("--perturbed", action="store_true",
                    help="greedy WER/CER of the real dev sets over 11 sox versions of every clip (a steadier "
                         "figure for comparing checkpoints; export one with export.py --checkpoint CK --out DIR)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel `xlsr-stream eval` runs (--engine)")
    args = ap.parse_args(argv)
    if args.engine:
        folders = [*real_folders(), *(args.sets or [cache_dir() / "eval" / "synth-dev"])]
        rows = engine_matrix(args.model, folders, args.jobs)
        attrs_path = args.model / "language_model" / "attrs.json"
        attrs = json.loads(attrs_path.read_text()) if attrs_path.exists() else {}
        from streaming import DecoderConfig, WindowConfig

        w, d = WindowConfig(), DecoderConfig()
        note = (f"Through the engine (`xlsr-stream eval DIR --mode streaming|offline [--greedy]`), default "
                f"windows (chunk {w.chunk_s} s, left {w.left_context_s} s{' as attention memory' * w.memory}, "
                f"right {w.right_context_s} s), beam "
                f"{d.beam_width}, LM alpha {attrs.get('alpha')} beta {attrs.get('beta')}:")
        write_card_section(args.model, rows, note)
        print(json.dumps(rows))
        return 0
    if args.perturbed:
        res = evaluate_perturbed(args.model)
        for name, r in res.items():
            print(f"{name:12s} n={r['n']:4d}  WER {100 * r['wer']:6.2f}%  CER {100 * r['cer']:6.2f}%  (perturbed)")
        print(json.dumps(res))
        return 0
    if args.write_real_folders:
        print(*real_folders(), sep="\n")
        return 0
    res = evaluate_model_dir(args.model, args.sets, args.limit)
    for name, r in res.items():
        print(f"{name:12s} n={r['n']:4d}  WER {100 * r['wer']:6.2f}%  CER {100 * r['cer']:6.2f}%")
        print(f"{'':12s} ref: {r['example']['ref']}\n{'':12s} hyp: {r['example']['hyp']}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
