"""Streaming vs offline: compute, agreement of log-probs, and text, per window setting.

For each window setting it streams every utterance of a dev folder through the
engine (0.1 s blocks, endpointing off so the text is comparable) and reports:

- compute ratio: streaming model time / offline model time (target <= 1.5 with
  the default windows), with and without conv-feature reuse; the offline pass is
  timed before and after the settings and the faster of the two is the reference
  (on a shared machine one pass can take a quarter longer than the other);
- frame agreement: share of frames whose argmax token equals the offline one,
  and the mean |Δ log-prob| of the best offline token;
- WER of streaming vs offline decoding against the references.

Usage:
    .venv/bin/python benchmarks/bench_streaming_vs_offline.py [--model DIR] [--dev DIR] [--threads 2]
        [--settings 1.0/0.6/0.4,1.0/6.0/0.4m] [--variants default|all] [--limit N]

A setting ending in "m" keeps the left context as attention memory (WindowConfig.memory).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client.audio_files import AudioFile  # noqa: E402
from scoring import normalize_for_scoring, read_transcripts, word_error_rate  # noqa: E402
from streaming import DecoderConfig, EndpointConfig, Engine, Final, WindowConfig  # noqa: E402
from streaming.acoustic_model import AcousticModel  # noqa: E402

SETTINGS = "1.0/0.6/0.4,2.0/1.6/0.4,1.0/6.0/0.4m,1.0/6.0/0.6m"  # chunk/left/right s; m: attention memory

VARIANTS = [("running", True), ("running", False), ("window", False)]  # (normalization, reuse_features)


def _settings(text: str) -> list[WindowConfig]:
    """``1.0/0.6/0.4`` recomputes the left context; ``1.0/6.0/0.4m`` keeps it as attention memory."""
    out = []
    for item in text.split(","):
        memory = item.endswith("m")
        parts = item.removesuffix("m").split("/")
        if len(parts) != 3:
            raise argparse.ArgumentTypeError(f"expected chunk/left/right seconds (m: memory), got {item!r}")
        chunk, left, right = (float(x) for x in parts)
        out.append(WindowConfig(chunk, left, right, memory=memory))
    return out


class TimedModel:
    """Wraps the acoustic model to add up the CPU seconds spent in it (process time,
    so other load on the machine does not skew the ratios)."""

    def __init__(self, model):  # type: ignore[no-untyped-def]
        self.inner = model
        self.seconds = 0.0

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        attr = getattr(self.inner, name)
        if name in ("log_probs", "conv_features", "log_probs_from_features", "log_probs_with_memory"):
            def timed(*a, **k):  # type: ignore[no-untyped-def]
                t0 = time.process_time()
                try:
                    return attr(*a, **k)
                finally:
                    self.seconds += time.process_time() - t0
            return timed
        return attr


def stream(engine: Engine, audio: np.ndarray, rate: int) -> tuple[str, np.ndarray]:
    rec = engine.new_stream(sample_rate=rate, record_log_probs=True)
    step = rate // 10
    for i in range(0, audio.shape[0], step):
        rec.accept_audio(audio[i : i + step])
    rec.finish()
    text = " ".join(e.text for e in rec.events() if isinstance(e, Final) and e.text)
    return text, rec.recorded_log_probs()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--dev", default=str(Path(__file__).resolve().parent.parent / "samples" / "librivox-dev"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-lm", action="store_true")
    ap.add_argument("--greedy", action="store_true", help="greedy CTC (fast; WER then reflects the log-probs only)")
    ap.add_argument("--limit", type=int, default=None, help="first N utterances of --dev")
    ap.add_argument("--settings", type=_settings, default=SETTINGS,
                    help="comma-separated chunk/left/right seconds, e.g. 1.0/0.6/0.4,2.0/1.6/0.4")
    ap.add_argument("--variants", choices=("all", "default"), default="all",
                    help="default: only the engine's own (running normalisation, feature reuse)")
    args = ap.parse_args(argv)

    items = read_transcripts(Path(args.dev))[: args.limit]
    audios = [(AudioFile(p).read(), AudioFile(p).sample_rate, ref) for p, ref in items]
    base = Engine.load(args.model, lm=False if args.no_lm else None, threads=args.threads,
                       endpoint=EndpointConfig(enabled=False), decoder=DecoderConfig(greedy=args.greedy))
    timed = TimedModel(base.model)
    base.model = timed  # type: ignore[assignment]
    refs = [normalize_for_scoring(r) for _, _, r in audios]

    timed.seconds = 0.0
    offline_text, offline_lp = [], []
    for audio, rate, _ in audios:
        offline_lp.append(base.offline_log_probs(audio, rate))
    offline_s = timed.seconds
    for lp in offline_lp:  # one beam search over the whole utterance, as `eval --mode offline`
        dec = base.new_decoder_stream()
        dec.accept(lp)
        offline_text.append(normalize_for_scoring(dec.finalize().text))
    total_audio = sum(a.shape[0] / r for a, r, _ in audios)
    print(f"model {base.info.name}: {base.info.num_parameters / 1e6:.1f}M parameters, "
          f"{total_audio:.1f} s of audio, threads={args.threads}")
    print(f"offline: model {offline_s:.2f} CPU s (CPU-RTF {offline_s / total_audio:.3f}), "
          f"WER {word_error_rate(refs, offline_text):.2%}\n")
    rows: list[tuple[str, str, bool, float, float, float, float, int]] = []
    variants = [("running", True)] if args.variants == "default" else VARIANTS
    for window in args.settings:
        for norm, reuse in [("running", True)] if window.memory else variants:
            # TimedModel stands in for the AcousticModel it wraps (every attribute is the model's).
            engine = Engine(cast(AcousticModel, timed), language_model=base.language_model,
                            decoder_config=base.decoder_config,
                            window=window, endpoint=EndpointConfig(enabled=False),
                            normalization=norm, reuse_features=reuse)
            if reuse and not engine.plan.reuse_features:
                continue
            timed.seconds = 0.0
            texts, agree, delta, same = [], [], [], 0
            for (audio, rate, _), ref_lp, off_text in zip(audios, offline_lp, offline_text):
                text, lp = stream(engine, audio, rate)
                texts.append(normalize_for_scoring(text))
                same += normalize_for_scoring(text) == off_text
                best = ref_lp.argmax(axis=1)
                agree.append(float((lp.argmax(axis=1) == best).mean()))
                delta.append(float(np.abs(lp[np.arange(len(best)), best] - ref_lp[np.arange(len(best)), best]).mean()))
            label = f"{window.chunk_s}/{window.left_context_s}/{window.right_context_s}{'m' * engine.plan.memory}"
            rows.append((label, norm, engine.plan.reuse_features, timed.seconds, float(np.mean(agree)),
                         float(np.mean(delta)), word_error_rate(refs, texts), same))
    timed.seconds = 0.0
    for audio, rate, _ in audios:
        base.offline_log_probs(audio, rate)
    print(f"offline again: model {timed.seconds:.2f} CPU s; compute below is against the faster pass")
    offline_s = min(offline_s, timed.seconds)
    print(f"{'chunk/left/right s':>18} {'norm':>8} {'reuse':>5} {'compute':>8} {'argmax=':>8} "
          f"{'|Δlogp|':>8} {'WER':>7} {'text=offline':>12}")
    for label, norm, reuse, seconds, agreement, mean_delta, wer, same in rows:
        print(f"{label:>18} {norm:>8} {str(reuse):>5} {seconds / offline_s:7.2f}x "
              f"{agreement:8.1%} {mean_delta:8.3f} {wer:7.2%} {same:>5}/{len(audios)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
