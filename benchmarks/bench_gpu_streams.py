"""How many concurrent real-time streams one GPU holds with the worker's batching.

For each model size (base- and large-size wav2vec2 with random weights, written
from configs here; speed does not depend on the weights) and dtype:

1. Throughput: ``max_batch`` streams driven flat out through batched forwards
   (``batched_streams.drive_streams``) give the wall time of one full batch,
   hence an estimate of the streams it sustains: max_batch * chunk_s / batch_s.
2. Real time: that many streams (then more or fewer, while the time budget
   lasts) get audio on a wall clock, each a chunk per chunk_s, starts spread
   over one chunk; one loop plays the batching worker (FIFO, at most
   ``max_batch`` windows per forward) and the streams decode their outputs
   (greedy: the GPU's share, not the LM's).  Partial latency = a window's audio
   complete -> its outputs decoded, the server's xlsr_partial_latency_seconds.
   A level holds when p90 stays within --budget (one chunk by default).
3. GPU memory per stream: peak allocated during the level, less what the
   loaded model holds, over the streams.

Writes one JSON.  ``benchmarks/gpu_check.sh`` runs it (with the CUDA-only
tests first); ``--dry-run`` is the same code on CPU with a tiny model for seconds.

    .venv/bin/python benchmarks/bench_gpu_streams.py --out gpu.json            # on a CUDA machine
    .venv/bin/python benchmarks/bench_gpu_streams.py --dry-run --out dry.json  # anywhere
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from batched_streams import drive_streams, speech_audio  # noqa: E402
from bench_model_dtype import write_random_checkpoint  # noqa: E402

from streaming.decoder import DecoderConfig  # noqa: E402
from streaming.recognizer import Engine  # noqa: E402
from streaming.stitching import WindowRequest  # noqa: E402


@dataclass(frozen=True)
class Level:
    streams: int
    holds: bool
    windows: int  # windows decoded during the level
    partial_p50_s: float | None
    partial_p90_s: float | None
    mean_batch: float
    gpu_memory_per_stream_mb: float | None  # None on CPU


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None when empty.

    >>> percentile([0.1, 0.2, 0.3, 0.4], 50), percentile([0.1, 0.2, 0.3, 0.4], 90), percentile([], 50)
    (0.2, 0.4, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def chunk_seconds(engine: Engine) -> float:
    return engine.plan.chunk_seconds


def real_time_level(engine: Engine, streams: int, *, seconds: float, max_batch: int, budget_s: float) -> Level:
    """``streams`` real-time streams for ``seconds`` of wall clock; see the module docstring."""
    chunk = chunk_seconds(engine)
    rate = engine.info.sample_rate
    geo = engine.plan.geometry
    # Audio that completes window 0: its chunk, the look-ahead, and the conv's receptive field past the last hop.
    first_samples = round((chunk + engine.plan.right_frames * geo.frame_seconds) * rate) + (
        geo.receptive_field_samples - geo.hop_samples
    )
    audio = speech_audio(seconds + 2 * chunk + 1)
    cuda = torch.device(engine.model.device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        resident = torch.cuda.memory_allocated()
    recognizers = [engine.new_stream(inline=False, use_lm=False) for _ in range(streams)]
    sent = [0] * streams  # samples given to each stream
    next_at = [i * chunk / streams for i in range(streams)]  # when its next block arrives
    arrivals: list[collections.deque[float]] = [collections.deque() for _ in range(streams)]
    in_flight = [False] * streams
    queue: collections.deque[tuple[int, float, WindowRequest]] = collections.deque()  # (stream, ready, request)
    latencies: list[float] = []
    batches: list[int] = []
    start = time.perf_counter()

    def take(i: int) -> None:
        if in_flight[i]:
            return
        for request in recognizers[i].take_windows():
            queue.append((i, arrivals[i].popleft() if arrivals[i] else time.perf_counter() - start, request))
            in_flight[i] = True

    while True:
        now = time.perf_counter() - start
        if now >= seconds:
            break
        for i in range(streams):
            if next_at[i] <= now:
                size = first_samples if sent[i] == 0 else round(chunk * rate)
                recognizers[i].accept_audio(audio[sent[i] : sent[i] + size])
                sent[i] += size
                arrivals[i].append(next_at[i])  # each block completes one window
                next_at[i] += chunk
                take(i)
        if not queue:
            time.sleep(max(0.0, min(next_at) - (time.perf_counter() - start)))
            continue
        batch = [queue.popleft() for _ in range(min(max_batch, len(queue)))]
        outputs = engine.run_windows([request for _, _, request in batch])
        done = time.perf_counter() - start
        batches.append(len(batch))
        for (i, ready, request), output in zip(batch, outputs, strict=True):
            recognizers[i].accept_window_outputs([request], [output])
            recognizers[i].events()
            latencies.append(done - ready)
            in_flight[i] = False
            take(i)
    memory = None
    if cuda:
        memory = (torch.cuda.max_memory_allocated() - resident) / streams / 2**20
    # Windows still waiting at the end count as late as they already are.
    end = time.perf_counter() - start
    latencies += [end - ready for _, ready, _ in queue]
    p90 = percentile(latencies, 90)
    return Level(
        streams=streams,
        holds=p90 is not None and p90 <= budget_s,
        windows=len(latencies),
        partial_p50_s=None if not latencies else round(percentile(latencies, 50) or 0.0, 4),
        partial_p90_s=None if p90 is None else round(p90, 4),
        mean_batch=round(float(np.mean(batches)), 2) if batches else 0.0,
        gpu_memory_per_stream_mb=None if memory is None else round(memory, 2),
    )


def search(engine: Engine, estimate: int, *, seconds: float, max_batch: int, budget_s: float,
           deadline: float, max_levels: int) -> tuple[int, list[Level]]:
    """Levels from 80 % of the estimate: up by 25 % while they hold, down by 20 % while they do not."""
    levels: list[Level] = []
    n = max(1, int(estimate * 0.8))
    best = 0
    tried: set[int] = set()
    while len(levels) < max_levels and time.monotonic() + seconds < deadline and n not in tried:
        tried.add(n)
        level = real_time_level(engine, n, seconds=seconds, max_batch=max_batch, budget_s=budget_s)
        levels.append(level)
        print(f"    {n:5d} streams: p50 {level.partial_p50_s} s  p90 {level.partial_p90_s} s  "
              f"batch {level.mean_batch}  {'holds' if level.holds else 'MISS'}", flush=True)
        if level.holds:
            best = max(best, n)
            n = max(n + 1, int(n * 1.25))
            if any(not lv.holds and lv.streams <= n for lv in levels):
                break
        else:
            n = max(1, int(n * 0.8))
            if n <= best:
                break
    return best, levels


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny random model, seconds: checks the code")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    parser.add_argument("--sizes", default=None, help="random checkpoints (default base,large; small with --dry-run)")
    parser.add_argument("--dtypes", default=None, help="default float32,bfloat16,float16 (float32,bfloat16 on CPU)")
    parser.add_argument("--max-batch", type=int, default=64, help="windows per forward (server --max-batch-size)")
    parser.add_argument("--seconds", type=float, default=None, help="wall seconds per real-time level (10; 3 dry)")
    parser.add_argument("--flat-seconds", type=float, default=None,
                        help="audio per stream for warm-up and the throughput estimate (8: the attention "
                        "memory fills up, every window shape is seen; 2 dry)")
    parser.add_argument("--budget", type=float, default=None, help="p90 partial latency that holds (one chunk)")
    parser.add_argument("--max-levels", type=int, default=4, help="real-time levels per model and dtype")
    parser.add_argument("--time-budget", type=float, default=330.0, help="stop starting levels after this many s")
    parser.add_argument("--cuda-tests", default=None, help="the CUDA-only tests' summary line, for the JSON")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    device = args.device or ("cpu" if args.dry_run else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu_streams: no CUDA device here; use --dry-run to check the code on CPU", file=sys.stderr)
        return 2
    sizes = (args.sizes or ("small" if args.dry_run else "base,large")).split(",")
    dtypes = (args.dtypes or ("float32,bfloat16" if device == "cpu" else "float32,bfloat16,float16")).split(",")
    seconds = args.seconds or (3.0 if args.dry_run else 10.0)
    flat_seconds = args.flat_seconds or (2.0 if args.dry_run else 8.0)
    deadline = time.monotonic() + args.time_budget
    torch.set_num_threads(1 if device == "cpu" else torch.get_num_threads())
    report: dict = {
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "dry_run": args.dry_run,
        "max_batch": args.max_batch,
        "level_seconds": seconds,
        "cuda_tests": args.cuda_tests,
        # One Python thread plays the batching worker and every stream's decoding, as the server's
        # event loop and decode threads do; with hundreds of streams it, not the GPU, may be the limit.
        "host_loop": "one thread",
        "results": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            folder = write_random_checkpoint(Path(tmp) / size, preset=size)
            for dtype in dtypes:
                if time.monotonic() >= deadline:
                    print(f"  time budget spent: {size} {dtype} skipped", flush=True)
                    continue
                engine = Engine.load(folder, lm=False, dtype=dtype, device=device, decoder=DecoderConfig(greedy=True))
                budget = args.budget or chunk_seconds(engine)
                audio = speech_audio(flat_seconds)
                drive_streams(engine, audio, 2, max_batch=args.max_batch, use_lm=False)  # warm-up: every memory length
                flat = drive_streams(engine, audio, args.max_batch, max_batch=args.max_batch, use_lm=False)
                batch_s = flat.model_wall_s / max(1, flat.forwards)
                per_forward = flat.windows / max(1, flat.forwards)
                estimate = int(per_forward * chunk_seconds(engine) / batch_s)
                print(f"  {size} {dtype}: {engine.info.num_parameters / 1e6:.0f}M params, {per_forward:.1f} windows "
                      f"per forward in {batch_s * 1000:.1f} ms: ~{estimate} real-time streams", flush=True)
                capacity, levels = search(engine, estimate, seconds=seconds, max_batch=args.max_batch,
                                          budget_s=budget, deadline=deadline, max_levels=args.max_levels)
                held = [lv for lv in levels if lv.holds and lv.streams == capacity]
                report["results"].append({
                    "model": size,
                    "parameters": engine.info.num_parameters,
                    "dtype": dtype,
                    "batch_forward_s": round(batch_s, 5),
                    "windows_per_forward": round(per_forward, 2),
                    "estimated_streams": estimate,
                    "max_realtime_streams": capacity,
                    "budget_p90_s": budget,
                    "at_capacity": asdict(held[0]) if held else None,
                    "levels": [asdict(lv) for lv in levels],
                })
                del engine
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
