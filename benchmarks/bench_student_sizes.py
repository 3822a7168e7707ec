"""What a bigger student would cost: streaming CPU per audio second of random students by shape.

Why: issue 13 sizes the distilled student by measurement; it must still hold 16
real-time streams with its LM on a 2-core machine.  Compute does not depend on the
weights, so randomly initialised students of each shape (the recipe's
``train.build_config``: the shipped conv front end, ``HIDDEN x LAYERS`` transformer,
feed-forward ``4 x HIDDEN``) stream real audio through the engine at its default
windows (greedy: the model and the window work alone; add the decoder's CPU from
``bench_decoder_backends.py``).  Prints parameters and process CPU-seconds per
audio second on one thread, and how many streams two cores hold at that cost with
the LM decoder's measured CPU (``--decoder-cpu``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_student_sizes.py samples/librivox-dev \\
        --shapes 256x6,256x8,320x8,384x8,512x8 [--decoder-cpu 0.030]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "recipe"))

from client.audio_files import read_16k  # noqa: E402
from scoring import read_transcripts  # noqa: E402
from streaming import DecoderConfig, Engine  # noqa: E402

SHIPPED = ROOT / "models" / "en-small"
SIDE_FILES = ("vocab.json", "tokenizer_config.json", "preprocessor_config.json")
BLOCK = 1600  # 0.1 s of 16 kHz audio per accept_audio call, as a live client sends it


def parse_shape(text: str) -> tuple[int, int]:
    """``"320x8"`` -> (320, 8): hidden size x transformer layers."""
    try:
        hidden, layers = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is HIDDENxLAYERS like 320x8, got {text!r}") from None
    if hidden % 64:
        raise argparse.ArgumentTypeError(f"hidden size must be a multiple of 64 (64 per head), got {hidden}")
    return hidden, layers


def write_student(folder: Path, hidden: int, layers: int) -> int:
    """A random Wav2Vec2ForCTC of that shape, saved beside the shipped vocabulary; returns parameters."""
    from train import ModelShape, build_config
    from transformers import Wav2Vec2ForCTC
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    torch.manual_seed(0)
    shape = ModelShape(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                       intermediate_size=4 * hidden, conv_dim=(*ModelShape().conv_dim[:3], *[hidden] * 4))
    model = Wav2Vec2ForCTC(build_config(shape)).eval()
    model.save_pretrained(folder)
    for name in SIDE_FILES:
        shutil.copy(SHIPPED / name, folder / name)
    return sum(p.numel() for p in model.parameters())


def stream_cpu(model_dir: Path, waves: Sequence[np.ndarray]) -> float:
    """Process CPU-seconds per audio second of streaming every wave through one recognizer each."""
    engine = Engine.load(model_dir, lm=False, decoder=DecoderConfig(greedy=True), threads=1)
    audio_s = sum(len(w) for w in waves) / 16000
    start = time.process_time()
    for wave in waves:
        stream = engine.new_stream()
        for at in range(0, len(wave), BLOCK):
            stream.accept_audio(wave[at : at + BLOCK])
            stream.events()
        stream.finish()
        stream.events()
    return (time.process_time() - start) / audio_s


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, help="folder with transcripts.tsv and audio (real speech)")
    ap.add_argument("--shapes", default="256x6,256x8,320x8,384x8,512x8", help="comma-separated HIDDENxLAYERS")
    ap.add_argument("--decoder-cpu", type=float, default=0.030,
                    help="LM beam search CPU-s per audio s (bench_decoder_backends.py; 0.030 pyctcdecode)")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    waves = [read_16k(path) for path, _ in read_transcripts(args.dir)]
    engine_shipped = stream_cpu(SHIPPED, waves)
    print(f"{sum(len(w) for w in waves) / 16000:.1f} s of audio from {args.dir}, 1 thread, greedy; streams held "
          f"= {args.cores} cores / (CPU + {args.decoder_cpu} decoder)")
    print(f"{'student':<22} {'parameters':>11} {'CPU-s/s':>8} {'streams held':>12}")
    print(f"{'shipped en-small':<22} {'':>11} {engine_shipped:>8.4f} "
          f"{args.cores / (engine_shipped + args.decoder_cpu):>12.0f}")
    for hidden, layers in (parse_shape(s) for s in args.shapes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            params = write_student(Path(tmp), hidden, layers)
            cpu = stream_cpu(Path(tmp), waves)
        print(f"{f'{hidden}x{layers} random':<22} {params / 1e6:>10.2f}M {cpu:>8.4f} "
              f"{args.cores / (cpu + args.decoder_cpu):>12.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
