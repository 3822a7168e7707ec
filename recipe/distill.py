"""The wav2vec2 student learns from the Whisper teacher (issue 13, stages 2 and 3); resumable.

The student is the shipped ``Wav2Vec2ForCTC`` (raw 16 kHz waveform in, one frame every 20 ms),
started from ``models/en-small``. Every utterance it trains on has teacher targets written by
``teacher.py targets`` from the *clean* audio; the student hears it augmented (noise, reverb,
equaliser, codec; no speed change, so frames stay aligned with the targets). The loss is

* **posterior distillation**: KL(teacher || student) of the CTC posteriors, frame by frame
  (teacher frames resampled onto the student's, :func:`teacher.align_to_student`);
* **state prediction**: a training-only linear map of the student's last hidden states onto the
  teacher's final encoder states, L1 + (1 - cosine), as DistilHuBERT does (not exported);
* **CTC** on the transcript where there is one: real transcribed speech, synthetic speech, and
  teacher pseudo-labels of untranscribed real speech whose confidence is high enough.

A share of the batches go through as the engine streams them (attention memory, running
normalisation, both from the engine's stream plan: ``train.stream_plan``, ``train.memory_logits``,
``train.running_normalize``) with the posterior and CTC terms, so streaming output keeps following
offline output. Checkpoints go to
``$XLSR_RECIPE_DIR/distill`` (the last two, every ``--ckpt-minutes`` and on SIGTERM); export one
with ``export.py --checkpoint``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import queue
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from augment import AugmentConfig, augment
from common import REPO_ROOT, SAMPLE_RATE, cache_dir, encode, log_line, logs_dir, normalize_text
from teacher import Item, align_to_student, feature_path, read_audio, real_items, synthetic_items
from train import (
    WeightAverage,
    ctc_loss_from_logits,
    evaluate_sets,
    limit_conv_gradients,
    load_latest,
    memory_logits,
    normalize,
    real_sets,
    running_normalize,
    save_ckpt,
    stream_plan,
)


def distill_dir() -> Path:
    return cache_dir() / "distill"


@dataclasses.dataclass(frozen=True)
class Example:
    """An utterance with its teacher targets and the transcript to train CTC on ('' for none)."""

    path: str
    text: str
    targets: str
    seconds: float


def pseudo_labels(real: Path, min_confidence: float) -> dict[str, str]:
    """Teacher transcripts of untranscribed audio (``pseudo.tsv``) at or above ``min_confidence``."""
    out = {}
    for tsv in real.glob("untranscribed/*/pseudo.tsv"):
        for line in tsv.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[1] and float(parts[2]) >= min_confidence:
                out[str(tsv.parent / parts[0])] = normalize_text(parts[1])
    return out


def examples(items: list[Item], dev_speakers: set[str], pseudo: dict[str, str]) -> list[Example]:
    out = []
    for it in items:
        if it.speaker in dev_speakers:
            continue
        t = feature_path(it, "targets").with_suffix(".npz")
        if not t.exists():
            continue
        info = sf.info(it.path)
        out.append(Example(it.path, it.text or pseudo.get(it.path, ""), str(t), info.frames / info.samplerate))
    return out


class Loader:
    """Background thread: length-bucketed batches of augmented audio, teacher targets, labels."""

    def __init__(self, data: list[Example], args: argparse.Namespace, seed: int) -> None:
        from streaming.windows import num_frames  # the engine's frame arithmetic

        self.num_frames = num_frames
        self.data, self.args = data, args
        self.rng = random.Random(seed)
        # no speed change: the student's frames must stay on the teacher's
        self.aug = dataclasses.replace(AugmentConfig(), speed_prob=0.0)
        self.q: queue.Queue = queue.Queue(maxsize=3)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _batches(self) -> list[list[Example]]:
        pool = [e for e in self.data if e.seconds <= self.args.max_utt_s]
        pool.sort(key=lambda e: e.seconds * self.rng.uniform(0.9, 1.1))
        out: list[list[Example]] = []
        cur: list[Example] = []
        longest = 0.0
        for e in pool:
            if cur and (max(longest, e.seconds) * (len(cur) + 1) > self.args.batch_seconds
                        or len(cur) >= self.args.max_batch_utts):
                out.append(cur)
                cur, longest = [], 0.0
            cur.append(e)
            longest = max(longest, e.seconds)
        if cur:
            out.append(cur)
        self.rng.shuffle(out)
        return out

    def _load(self, batch: list[Example]) -> dict:
        waves = [read_audio(e.path) for e in batch]
        out = []
        for w in waves:
            a = augment(w, self.rng, self.aug, self.args.aug_strength, waves)
            a = a[: len(w)] if len(a) >= len(w) else np.pad(a, (0, len(w) - len(a)))  # reverb tails, codecs
            out.append(normalize(a))
        n = max(len(w) for w in out)
        frames = [self.num_frames(len(w)) for w in out]
        width = max(frames)
        inp = np.zeros((len(out), n), np.float32)
        mask = np.zeros((len(out), n), np.int64)
        t_states: np.ndarray | None = None
        t_logp: np.ndarray | None = None
        has_text = np.zeros(len(out), bool)
        for i, (w, e) in enumerate(zip(out, batch)):
            inp[i, : len(w)] = w
            mask[i, : len(w)] = 1
            z = np.load(e.targets)
            s, lp = align_to_student(z["states"], frames[i]), align_to_student(z["logp"], frames[i])
            if t_states is None:
                t_states = np.zeros((len(out), width, s.shape[1]), np.float32)
                t_logp = np.zeros((len(out), width, lp.shape[1]), np.float32)
            assert t_states is not None and t_logp is not None
            t_states[i, : frames[i]] = s
            t_logp[i, : frames[i]] = lp
            has_text[i] = bool(e.text)
        labels = [encode(e.text) if e.text else [] for e in batch]
        lab = np.full((len(batch), max(1, max(len(t) for t in labels))), -100, np.int64)
        for i, t in enumerate(labels):
            lab[i, : len(t)] = t
        return {"input_values": torch.from_numpy(inp), "attention_mask": torch.from_numpy(mask),
                "frames": torch.tensor(frames), "t_states": torch.from_numpy(t_states),
                "t_logp": torch.from_numpy(t_logp), "labels": torch.from_numpy(lab),
                "has_text": torch.from_numpy(has_text), "seconds": sum(len(w) for w in out) / SAMPLE_RATE}

    def _run(self) -> None:
        while True:
            for b in self._batches():
                try:
                    self.q.put(self._load(b))
                except Exception as e:  # one unreadable file must not stop training
                    log_line(logs_dir() / "distill.log", f"loader: skipped a batch: {type(e).__name__}: {e}")

    def get(self) -> dict:
        while True:
            try:
                return self.q.get(timeout=60)
            except queue.Empty:
                if not self.thread.is_alive():
                    raise RuntimeError("data loader thread died; see the traceback above") from None


def frame_mask(frames: torch.Tensor, width: int) -> torch.Tensor:
    return torch.arange(width)[None, :] < frames[:, None]  # (batch, width) True on real frames


def kl_loss(student_logits: torch.Tensor, t_logp: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over real frames of KL(teacher || student) of the CTC posteriors."""
    s_logp = student_logits.float().log_softmax(-1)  # (batch, frames, vocab)
    n = min(s_logp.shape[1], t_logp.shape[1])
    kl = (t_logp[:, :n].exp() * (t_logp[:, :n] - s_logp[:, :n])).sum(-1)  # (batch, frames)
    m = valid[:, :n]
    return (kl * m).sum() / m.sum().clamp(min=1)


def state_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L1 + (1 - cosine) between predicted and teacher states, over real frames (DistilHuBERT)."""
    n = min(pred.shape[1], target.shape[1])
    p, t, m = pred[:, :n].float(), target[:, :n], valid[:, :n]
    l1 = (p - t).abs().mean(-1)
    cos = torch.nn.functional.cosine_similarity(p, t, dim=-1)
    return ((l1 + 1 - cos) * m).sum() / m.sum().clamp(min=1)


def ctc_on_labelled(logits: torch.Tensor, batch: dict, config) -> torch.Tensor:
    keep = batch["has_text"]
    if not keep.any():
        return logits.sum() * 0.0
    return ctc_loss_from_logits(logits[keep], batch["frames"][keep], batch["labels"][keep], config)


def learning_rate(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up, then constant; from --decay-start a cosine decay to --min-lr-ratio of --lr
    over --decay-steps, held there after. The decay lets a run resumed at a plateau settle.

    >>> a = argparse.Namespace(lr=1.0, warmup_steps=10, decay_start=100, decay_steps=50, min_lr_ratio=0.1)
    >>> [round(learning_rate(s, a), 3) for s in (0, 9, 99, 125, 150, 400)]
    [0.1, 1.0, 1.0, 0.55, 0.1, 0.1]
    """
    lr = args.lr * min(1.0, (step + 1) / args.warmup_steps)
    if args.decay_start is None or step < args.decay_start:
        return lr
    done = min(1.0, (step - args.decay_start) / max(1, args.decay_steps))
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * done)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--init", default=str(REPO_ROOT / "models" / "en-small"), help="student to start from")
    ap.add_argument("--real", default=str(cache_dir() / "real"))
    ap.add_argument("--synth-hours", type=float, default=3.0)
    ap.add_argument("--dev-speakers", default="", help="comma-separated speakers held out (dev set)")
    ap.add_argument("--min-pseudo-confidence", type=float, default=0.85)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup-steps", type=int, default=200)
    ap.add_argument("--decay-start", type=int, default=None,
                    help="step at which the learning rate starts a cosine decay (default: constant)")
    ap.add_argument("--decay-steps", type=int, default=3000, help="length of the cosine decay")
    ap.add_argument("--min-lr-ratio", type=float, default=0.05, help="final learning rate / --lr")
    ap.add_argument("--max-steps", type=int, default=10**9)
    ap.add_argument("--batch-seconds", type=float, default=24.0)
    ap.add_argument("--max-batch-utts", type=int, default=16)
    ap.add_argument("--max-utt-s", type=float, default=16.0)
    ap.add_argument("--aug-strength", type=float, default=0.8)
    ap.add_argument("--w-kl", type=float, default=1.0)
    ap.add_argument("--w-state", type=float, default=1.0)
    ap.add_argument("--w-ctc", type=float, default=0.5)
    ap.add_argument("--stream-prob", type=float, default=0.4, help="share of batches as the engine streams")
    ap.add_argument("--conv-frozen-layers", type=int, default=3)
    ap.add_argument("--ema-decay", type=float, default=0.998)
    ap.add_argument("--ckpt-minutes", type=float, default=10.0)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("XLSR_TRAIN_THREADS", "1")))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    log = logs_dir() / "distill.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    ck = load_latest(distill_dir())
    if ck is not None:
        model = Wav2Vec2ForCTC(Wav2Vec2Config.from_dict(ck["config"]))
        model.load_state_dict(ck["model"])
        state = ck["state"]
    else:
        model = Wav2Vec2ForCTC.from_pretrained(args.init)
        model.config.mask_time_prob = 0.05
        state = {"step": 0, "audio_seconds": 0.0, "cpu_seconds": 0.0, "init": args.init}
    state["args"] = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str))}
    state["ema_decay"] = args.ema_decay
    dev_speakers = {s for s in args.dev_speakers.split(",") if s}
    items = real_items(Path(args.real)) + synthetic_items(cache_dir() / "shards" / "train", args.synth_hours * 3600)
    data = examples(items, dev_speakers, pseudo_labels(Path(args.real), args.min_pseudo_confidence))
    if not data:
        raise SystemExit("no utterance has teacher targets yet: run `teacher.py targets` first")
    teacher_dim = int(np.load(data[0].targets)["states"].shape[1])
    proj = torch.nn.Linear(model.config.hidden_size, teacher_dim)  # training only: never exported
    if ck is not None and "proj" in ck:
        proj.load_state_dict(ck["proj"])
    model.train()
    params = list(model.parameters()) + list(proj.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    if ck is not None:
        opt.load_state_dict(ck["opt"])
    ema = WeightAverage(model, args.ema_decay, ck.get("ema") if ck else None)
    limit_conv_gradients(model, args.conv_frozen_layers)
    held = [(it.path, it.text) for it in items if it.speaker in dev_speakers and it.text]
    eval_sets = {**real_sets(), **({"held-out-speakers": held[:150]} if held else {})}
    if held:  # the same set for `evaluate.py --engine --sets`
        from evaluate import eval_folder

        eval_folder("held-out-speakers", held)
    log_line(log, f"start step {state['step']}: {len(data)} utterances "
                  f"({sum(e.seconds for e in data) / 3600:.2f} h, {sum(bool(e.text) for e in data)} with text), "
                  f"args {vars(args)}")
    loader = Loader(data, args, seed=state["step"] + 5)

    stop = {"flag": False}

    def on_signal(signum, frame):  # noqa: ARG001
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rng = random.Random(state["step"] + 11)
    norm_plan = stream_plan(model.config, 50, 300, 20, memory=True)
    last_ckpt, t_cpu = time.time(), time.process_time()
    win: dict[str, float] = {"kl": 0.0, "state": 0.0, "ctc": 0.0, "n": 0, "sec": 0.0, "t": time.time(), "streamed": 0}
    while not stop["flag"] and state["step"] < args.max_steps:
        batch = loader.get()
        step = state["step"]
        for g in opt.param_groups:
            g["lr"] = learning_rate(step, args)
        valid = frame_mask(batch["frames"], int(batch["frames"].max()))
        # spread evenly: with 0.5 every second batch, with 0.4 two in five
        streamed = (step * args.stream_prob) % 1 + args.stream_prob >= 1 - 1e-9
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if streamed:
                # normalised as the engine does it, then streamed with windows drawn from these
                # (0.5 or 1 s chunks around the engine's 0.6 s default, 0.4 s look-ahead or less)
                x = running_normalize(batch["input_values"], batch["attention_mask"], norm_plan)
                plan = stream_plan(model.config, rng.choice([25, 50]), rng.choice([150, 300]), rng.choice([10, 20]),
                                   memory=True)
                logits, _ = memory_logits(model, x, batch["attention_mask"], plan)
                l_state = logits.sum() * 0.0
            else:
                out = model(input_values=batch["input_values"], attention_mask=batch["attention_mask"],
                            output_hidden_states=True)
                logits = out.logits
                l_state = state_loss(proj(out.hidden_states[-1]), batch["t_states"], valid)
        l_kl = kl_loss(logits, batch["t_logp"], valid)
        l_ctc = ctc_on_labelled(logits, batch, model.config)
        loss = args.w_kl * l_kl + args.w_state * l_state + args.w_ctc * l_ctc
        opt.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            if torch.isfinite(torch.nn.utils.clip_grad_norm_(params, 5.0)):
                opt.step()
                ema.update(model)
        state["step"] += 1
        state["audio_seconds"] += batch["seconds"]
        for k, v in (("kl", l_kl), ("state", l_state), ("ctc", l_ctc)):
            win[k] += float(v)
        win["n"] += 1
        win["streamed"] += streamed
        win["sec"] += batch["seconds"]
        if state["step"] % args.log_every == 0:
            dt = time.time() - win["t"]
            log_line(log, f"step {state['step']} kl {win['kl'] / win['n']:.3f} state {win['state'] / win['n']:.3f} "
                          f"ctc {win['ctc'] / win['n']:.3f} speed {win['sec'] / dt:.1f}x rt "
                          f"seen {state['audio_seconds'] / 3600:.2f}h streamed {win['streamed']}/{win['n']}")
            win = {"kl": 0.0, "state": 0.0, "ctc": 0.0, "n": 0, "sec": 0.0, "t": time.time(), "streamed": 0}
        if time.time() - last_ckpt > args.ckpt_minutes * 60 or stop["flag"] or state["step"] >= args.max_steps:
            state["cpu_seconds"] += time.process_time() - t_cpu
            t_cpu = time.process_time()
            if not stop["flag"]:
                res = evaluate_sets(ema.averaged_copy(model), eval_sets)
                state["eval"] = {"step": state["step"], **res}
                log_line(log, "eval " + json.dumps(state["eval"]))
                with open(logs_dir() / "distill-eval.jsonl", "a") as f:
                    f.write(json.dumps(state["eval"]) + "\n")
            path = save_ckpt(distill_dir(), model, opt, state, ema=ema, extra={"proj": proj.state_dict()})
            log_line(log, f"checkpoint {path.name}")
            last_ckpt = time.time()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
