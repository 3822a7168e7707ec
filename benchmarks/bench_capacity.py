"""CPU seconds per stream-second, for the capacity model in docs/DEPLOY.md.

Runs N streams through the engine the way the server's batching worker does
(``batched_streams.drive_streams``: windows of all streams batched into one
forward, then each stream decodes) and prices the two halves separately:

- model: CPU seconds inside ``run_windows`` per second of one stream, for the
  shipped model (models/en-small) and for base- and large-size wav2vec2
  checkpoints with random weights (written from configs here, nothing
  downloaded; speed does not depend on the weights), greedy decoding;
- decoding: beam search with the shipped LM at several beam widths, on the
  shipped model (a random model's flat outputs would make beam search cost
  what no trained model costs; the decoder's cost depends on the vocabulary
  and the LM, not on the acoustic model's size).

Then it turns the figures into cores and pods for a few fleet sizes.  Measure
on an otherwise idle machine, one torch thread:

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/bench_capacity.py --json capacity.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from batched_streams import DriveResult, drive_streams, speech_audio  # noqa: E402
from bench_model_dtype import write_random_checkpoint  # noqa: E402

from streaming.decoder import DecoderConfig  # noqa: E402
from streaming.loading import DEFAULT_MODEL_DIR  # noqa: E402
from streaming.recognizer import Engine  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in flags if f in {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx2"})
    except OSError:
        pass
    return []


def measure(model: Path, *, dtype: str, streams: int, seconds: float, decoder: DecoderConfig,
            use_lm: bool, max_batch: int) -> DriveResult:
    engine = Engine.load(model, lm=None if use_lm else False, dtype=dtype, threads=1, decoder=decoder)
    warm = speech_audio(2.0)
    drive_streams(engine, warm, 1, max_batch=max_batch, use_lm=use_lm)  # allocator, oneDNN kernels
    return drive_streams(engine, speech_audio(seconds), streams, max_batch=max_batch, use_lm=use_lm)


def plan(per_stream_cpu: float, fleets: Sequence[int], *, pod_cores: int, utilisation: float) -> list[dict]:
    """Cores and pods for each fleet size: every stream costs per_stream_cpu cores, run at utilisation.

    Worked example: 0.05 core per stream at 70 %: 100 streams need 100 * 0.05 / 0.7 = 7.1 cores,
    two 4-core pods (each holds floor(4 * 0.7 / 0.05) = 56 streams).
    """
    per_pod = max(1, math.floor(pod_cores * utilisation / per_stream_cpu))
    return [
        {"streams": n, "cores": round(n * per_stream_cpu / utilisation, 1), "pods": math.ceil(n / per_pod),
         "streams_per_pod": per_pod, "pod_cores": pod_cores}
        for n in fleets
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams per run (batched together)")
    parser.add_argument("--seconds", type=float, default=12.0, help="audio per stream, shipped model")
    parser.add_argument("--big-seconds", type=float, default=6.0, help="audio per stream, base/large")
    parser.add_argument("--max-batch", type=int, default=8, help="windows per forward (the server's default)")
    parser.add_argument("--beams", default="25,50,100,200", help="beam widths to price with the LM")
    parser.add_argument("--sizes", default="base,large", help="random checkpoints to price")
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--pod-cores", type=int, default=4, help="cores per pod in the plan")
    parser.add_argument("--utilisation", type=float, default=0.7, help="share of a core to plan on")
    parser.add_argument("--fleets", default="100,1000,10000")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    dtypes = args.dtypes.split(",")
    header = {
        "cpu": cpu_name(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "torch": torch.__version__,
        "threads": 1, "streams": args.streams, "max_batch": args.max_batch,
        "load_average_before": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(header))
    rows: list[dict] = []

    def record(label: str, model: str, dtype: str, decode: str, result: DriveResult) -> dict:
        row = {
            "label": label, "model": model, "dtype": dtype, "decode": decode,
            "streams": result.streams, "audio_s": result.audio_s,
            "model_cpu_per_stream_s": round(result.model_cpu_per_stream_s, 4),
            "decode_cpu_per_stream_s": round(result.decode_cpu_per_stream_s, 4),
            "windows_per_forward": round(result.windows / max(1, result.forwards), 2),
        }
        rows.append(row)
        print(f"{label:<28} {dtype:>9} {decode:<10} model {row['model_cpu_per_stream_s']:.4f}  "
              f"decode {row['decode_cpu_per_stream_s']:.4f} CPU-s per stream-s", flush=True)
        return row

    greedy = DecoderConfig(greedy=True)
    for dtype in dtypes:
        r = measure(DEFAULT_MODEL_DIR, dtype=dtype, streams=args.streams, seconds=args.seconds, decoder=greedy,
                    use_lm=False, max_batch=args.max_batch)
        record("en-small (5.7M)", "en-small", dtype, "greedy", r)
    for beam in (int(b) for b in args.beams.split(",")):
        r = measure(DEFAULT_MODEL_DIR, dtype=dtypes[0], streams=args.streams, seconds=args.seconds,
                    decoder=DecoderConfig(beam_width=beam), use_lm=True, max_batch=args.max_batch)
        record("en-small (5.7M) + LM", "en-small", dtypes[0], f"beam {beam}", r)
    with tempfile.TemporaryDirectory() as tmp:
        for size in [s for s in args.sizes.split(",") if s]:
            folder = write_random_checkpoint(Path(tmp) / size, preset=size)
            params = Engine.load(folder, lm=False).info.num_parameters
            for dtype in dtypes:
                r = measure(folder, dtype=dtype, streams=args.streams, seconds=args.big_seconds, decoder=greedy,
                            use_lm=False, max_batch=args.max_batch)
                record(f"random {size} ({params / 1e6:.0f}M)", size, dtype, "greedy", r)

    # The plan: model cost of each size in the first dtype + the shipped LM's decoding at beam 100.
    decode_100 = next((r["decode_cpu_per_stream_s"] for r in rows if r["decode"] == "beam 100"), None)
    plans = {}
    if decode_100 is not None:
        for model in ["en-small", *[s for s in args.sizes.split(",") if s]]:
            model_cost = next(r["model_cpu_per_stream_s"] for r in rows
                              if r["model"] == model and r["dtype"] == dtypes[0] and r["decode"] == "greedy")
            per_stream = model_cost + decode_100
            plans[model] = {"cpu_per_stream": round(per_stream, 4),
                            "plan": plan(per_stream, [int(n) for n in args.fleets.split(",")],
                                         pod_cores=args.pod_cores, utilisation=args.utilisation)}
            print(f"plan {model}: {per_stream:.4f} cores per stream ({dtypes[0]}, LM beam 100): "
                  + "; ".join(f"{p['streams']} streams {p['cores']} cores {p['pods']} pods"
                              for p in plans[model]["plan"]))
    header["load_average_after"] = round(os.getloadavg()[0], 2)
    if args.json is not None:
        args.json.write_text(json.dumps({**header, "rows": rows, "plans": plans}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
