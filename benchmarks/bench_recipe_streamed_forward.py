"""Time the training recipe's streamed forward + backward (recipe/train.py), as a training step runs it.

The recipe's streaming-shaped batches take their windows, running normalisation and attention
memory from the engine's stream plan (``train.stream_plan``); this prints what one batch costs on
a randomly initialised tiny model (the tests' 2 x 32 transformer) and on the recipe's en-small
shape (6 x 256), bf16 autocast as training runs it, one thread.  The batch is 4 utterances of
6, 5, 4 and 3 s (18 s of audio); the plans are 1 s chunks (the recipe's streamed batches draw
0.5 or 1 s), 0.4 s look-ahead, 6 s of attention memory or 0.6 s of recomputed left context.

Usage:
    .venv/bin/python benchmarks/bench_recipe_streamed_forward.py [--reps 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "recipe"))  # the recipe's modules import each other by bare name
sys.path.insert(0, str(ROOT / "tests"))

import transformers  # noqa: E402
from tiny_models import random_padded_batch, tiny_config  # noqa: E402
from train import (  # noqa: E402
    ModelShape,
    build_config,
    ctc_loss_from_logits,
    memory_logits,
    running_normalize,
    stream_plan,
    windowed_logits,
)


def _time(fn: Callable[[], object], reps: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def _step(model: torch.nn.Module, forward: Callable[..., tuple[torch.Tensor, torch.Tensor]], plan: object,
          x: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    """One training batch's streamed forward, CTC loss and backward."""

    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, frames = forward(model, x, mask, plan)
        ctc_loss_from_logits(logits, frames, labels, model.config).backward()

    return run


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5, help="timed runs per figure (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (training uses 1 on a shared box)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, mask = random_padded_batch([16000 * 6, 16000 * 5, 16000 * 4, 16000 * 3])
    labels = torch.tensor([[5, 6, 7], [8, 9, 10], [5, 6, -100], [7, -100, -100]])
    configs = (("tiny", transformers.Wav2Vec2Config(**tiny_config("layer"))), ("en-small", build_config(ModelShape())))
    for name, config in configs:
        torch.manual_seed(0)
        model = transformers.Wav2Vec2ForCTC(config).train()
        model.config.mask_time_prob = 0.0
        with_memory = stream_plan(model.config, 50, 300, 20, memory=True)
        recomputed = stream_plan(model.config, 50, 30, 20, memory=False)
        for label, fn in (
            ("running_normalize", functools.partial(running_normalize, x, mask, with_memory)),
            ("memory fwd+bwd", _step(model, memory_logits, with_memory, x, mask, labels)),
            ("windowed fwd+bwd", _step(model, windowed_logits, recomputed, x, mask, labels)),
        ):
            best, median = _time(fn, args.reps)
            print(f"{name:8s} {label:18s} min {best * 1e3:8.1f} ms  median {median * 1e3:8.1f} ms  "
                  f"({args.reps} runs, 18 s of audio)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
