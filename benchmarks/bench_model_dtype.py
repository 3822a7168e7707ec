"""Real-time factor of the acoustic model in float32 vs bfloat16 (and float16 on CUDA).

RTF = seconds of compute / seconds of audio; below 1 keeps up with a live
stream.  Without ``--model`` it writes a randomly initialised ~6.4M-parameter
"layer"-family checkpoint (256-channel conv stack, 6 x 256 pre-LN transformer,
128-tap positional conv) to a temp folder: big enough that matmuls dominate as
they do in real checkpoints, small enough to run in seconds on two cores.  Pass
``--model`` with a real folder (e.g. an XLSR-53 fine-tune) for real figures.

Usage:
    .venv/bin/python benchmarks/bench_model_dtype.py [--model DIR | --random base] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streaming.loading import load_model  # noqa: E402
from streaming.wav2vec2 import Wav2Vec2Config, Wav2Vec2CTC, export_hf_state_dict  # noqa: E402

VOCAB = ("<pad>", "<s>", "</s>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz", "'")


# Random configurations for runs without a checkpoint: "small" (default, ~6.4M
# parameters, seconds to run), "base" (wav2vec2-base sized, ~94M, for figures
# representative of a real model) and "large" (large-lv60 / XLSR-53 sized, ~315M).
PRESETS: dict[str, dict[str, int]] = {
    "small": {"conv": 256, "hidden": 256, "layers": 6, "heads": 4, "ffn": 1024},
    "base": {"conv": 512, "hidden": 768, "layers": 12, "heads": 12, "ffn": 3072},
    "large": {"conv": 512, "hidden": 1024, "layers": 24, "heads": 16, "ffn": 4096},
}


def write_random_checkpoint(folder: Path, *, preset: str = "small", seed: int = 0) -> Path:
    """A random "layer"-family checkpoint in Hugging Face layout, written without transformers."""
    size = PRESETS[preset]
    config = Wav2Vec2Config(
        conv_dim=(size["conv"],) * 7,
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        hidden_size=size["hidden"],
        num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"],
        intermediate_size=size["ffn"],
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
        vocab_size=len(VOCAB),
    )
    torch.manual_seed(seed)
    model = Wav2Vec2CTC(config)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(export_hf_state_dict(model), folder / "model.safetensors")
    raw = {
        "model_type": "wav2vec2",
        "architectures": ["Wav2Vec2ForCTC"],
        **{k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()},
    }
    (folder / "config.json").write_text(json.dumps(raw, indent=1))
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"sampling_rate": 16_000, "do_normalize": True})
    )
    return folder


@dataclass(frozen=True)
class Timing:
    wall_s: float  # median wall-clock seconds of one call
    cpu_s: float  # median process CPU seconds of one call (all threads)
    output: np.ndarray  # (batch, frames, vocab) log-probs of the last call


def measure(
    model_dir: Path, dtype: str, device: str, audio: np.ndarray, repeats: int, threads: int
) -> Timing:
    """Median wall and CPU seconds of one ``log_probs`` call, after a warm-up call."""
    model = load_model(model_dir, dtype=dtype, device=device, threads=threads)
    output = model.log_probs(audio)  # warm-up: allocator, oneDNN kernels
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        output = model.log_probs(audio)  # returns numpy, so CUDA work is finished
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(statistics.median(walls), statistics.median(cpus), output)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_argument_group("model")
    what.add_argument(
        "--model", type=Path, default=None, help="checkpoint folder (default: random ~6.4M params)"
    )
    what.add_argument(
        "--random",
        choices=sorted(PRESETS),
        default="small",
        help="random model size without --model (default: %(default)s)",
    )
    what.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    run = parser.add_argument_group("run")
    run.add_argument("--seconds", type=float, default=10.0, help="audio length (default: %(default)s)")
    run.add_argument("--batch", type=int, default=1, help="utterances per call (default: %(default)s)")
    run.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    run.add_argument("--repeats", type=int, default=5, help="timed calls per dtype (default: %(default)s)")
    args = parser.parse_args(argv)

    dtypes = ["float32", "bfloat16"] + (["float16"] if args.device.startswith("cuda") else [])
    audio = (np.random.default_rng(0).standard_normal((args.batch, int(args.seconds * 16_000))) * 0.1).astype(
        np.float32
    )
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or write_random_checkpoint(Path(tmp) / "random", preset=args.random)
        info = load_model(model_dir).info
        print(
            f"model {args.model or 'random ' + args.random}: {info.num_parameters / 1e6:.1f}M parameters, "
            f"{info.feat_extract_norm} family; audio {args.batch} x {args.seconds:g} s; "
            f"device {args.device}, threads {args.threads}, torch {torch.__version__}"
        )
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores before the run")
        audio_seconds = args.seconds * args.batch
        baseline: Timing | None = None
        for dtype in dtypes:
            timing = measure(model_dir, dtype, args.device, audio, args.repeats, args.threads)
            line = (
                f"{dtype:>9}: wall {timing.wall_s * 1000:6.0f} ms  RTF {timing.wall_s / audio_seconds:.4f}   "
                f"cpu {timing.cpu_s * 1000:6.0f} ms  CPU-RTF {timing.cpu_s / audio_seconds:.4f}"
            )
            if baseline is None:
                baseline = timing
            else:
                delta = float(np.abs(timing.output - baseline.output).max())
                agree = float((timing.output.argmax(-1) == baseline.output.argmax(-1)).mean())
                line += (
                    f"   speed-up wall x{baseline.wall_s / timing.wall_s:.2f} "
                    f"cpu x{baseline.cpu_s / timing.cpu_s:.2f}   "
                    f"max|dlogp| {delta:.3f}  argmax agree {agree:.1%}"
                )
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
