"""Step 5: greedy-CTC WER/CER of an exported model folder on the dev sets.

Sets: ``librivox`` (the 5 real LibriVox clips from pocketsphinx-testdata; dev only, never
trained on) and any folder holding ``transcripts.tsv`` (``filename<TAB>reference``) plus audio,
by default the held-out synthetic set ``$XLSR_RECIPE_DIR/eval/synth-dev``. The engine CLI measures
the same folders through the streaming path (windows, running normalisation, LM):
``xlsr-stream eval $XLSR_RECIPE_DIR/eval/synth-dev`` and, after ``--write-librivox-folder``,
``xlsr-stream eval $XLSR_RECIPE_DIR/eval/librivox``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import cache_dir


def librivox_folder() -> Path:
    """The LibriVox dev clips as a transcripts.tsv folder (symlinks), for ``xlsr-stream eval``."""
    from train import librivox_set

    out = cache_dir() / "eval" / "librivox"
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for path, ref in librivox_set():
        link = out / Path(path).name
        if not link.exists():
            link.symlink_to(path)
        lines.append(f"{link.name}\t{ref}")
    (out / "transcripts.tsv").write_text("\n".join(lines) + "\n")
    return out


def evaluate_model_dir(model_dir: Path, folders: list[Path] | None = None, limit: int = 0,
                       show: int = 0) -> dict[str, dict]:
    import torch
    from train import evaluate_sets, folder_set, librivox_set
    from transformers import Wav2Vec2ForCTC

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = Wav2Vec2ForCTC.from_pretrained(str(model_dir))
    model.eval()
    sets = {"librivox": librivox_set()}
    for f in folders if folders is not None else [cache_dir() / "eval" / "synth-dev"]:
        sets[f.name] = folder_set(f, limit)
    return evaluate_sets(model, {k: v for k, v in sets.items() if v})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path(__file__).resolve().parent.parent / "models" / "en-small")
    ap.add_argument("--sets", type=Path, nargs="*", default=None,
                    help="folders with transcripts.tsv (default: $XLSR_RECIPE_DIR/eval/synth-dev)")
    ap.add_argument("--limit", type=int, default=0, help="at most N utterances per folder (0: all)")
    ap.add_argument("--write-librivox-folder", action="store_true",
                    help="also write $XLSR_RECIPE_DIR/eval/librivox (for `xlsr-stream eval`) and exit")
    args = ap.parse_args(argv)
    if args.write_librivox_folder:
        print(librivox_folder())
        return 0
    res = evaluate_model_dir(args.model, args.sets, args.limit)
    for name, r in res.items():
        print(f"{name:12s} n={r['n']:4d}  WER {100 * r['wer']:6.2f}%  CER {100 * r['cer']:6.2f}%")
        print(f"{'':12s} ref: {r['example']['ref']}\n{'':12s} hyp: {r['example']['hyp']}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
