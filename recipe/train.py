"""Step 3: train the en-small character CTC model from scratch on CPU; resumable.

Streams over the synthesized shards present in ``$XLSR_RECIPE_DIR/shards/train`` (rescanned every
few minutes, so new shards are picked up while synthesis runs), augments on the fly in a loader
thread, runs the model under bf16 autocast, and writes a checkpoint every ``--ckpt-minutes``
(and on SIGTERM/SIGINT) to ``$XLSR_RECIPE_DIR/checkpoints`` keeping the last two. Kill it at any
time; the same command resumes from the newest checkpoint.

What makes a from-scratch CTC model converge quickly here:
* pre-LN transformer (``do_stable_layer_norm``) + linear warmup to a fairly high peak LR;
* length bucketing (little padding) and a curriculum: short utterances first, the length cap
  grows with the step count;
* clean audio first, augmentation ramps in; SpecAugment-style time masking only once the
  model has started to align (``--mask-from-step``);
* some batches (``--stream-prob``) go through the model the way the streaming engine runs it:
  windows of limited left/right context whose chunks are stitched, or with attention memory
  (:func:`windowed_logits`, :func:`memory_logits`), so the model learns to work without the whole
  utterance and streaming WER stays near offline WER.  Their windows, running normalisation and
  memory come from the engine's own stream plan (:func:`stream_plan`, ``streaming/plan.py``).

It also keeps an exponential moving average of the weights (``--ema-decay``, saved in the
checkpoint): at a constant learning rate the raw weights jitter around the optimum, and the
average of the last ~1/(1-decay) steps is what gets evaluated and exported.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from augment import AugmentConfig, augment
from common import SAMPLE_RATE, VOCAB, ckpt_dir, encode, log_line, logs_dir, read_audio, shards_dir

from scoring import char_error_rate, normalize_for_scoring, word_error_rate
from streaming.plan import StreamPlan, plan_stream
from streaming.wav2vec2 import Wav2Vec2Config as EngineModelConfig
from streaming.window_scheduler import running_normalized
from streaming.windows import WindowConfig, num_frames

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")  # alsa-utils


@dataclass(frozen=True)
class ModelShape:
    # 6M params: runs far faster than real time on one core, so 8+ streams fit on 2 cores.
    hidden_size: int = 256
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    # the raw-waveform conv front end dominates CPU cost: narrow early layers, standard strides
    conv_dim: tuple[int, ...] = (128, 128, 128, 256, 256, 256, 256)
    num_conv_pos_embeddings: int = 64
    num_conv_pos_embedding_groups: int = 16


def build_config(shape: ModelShape):  # -> transformers.Wav2Vec2Config
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        vocab_size=len(VOCAB), pad_token_id=VOCAB["<pad>"], bos_token_id=VOCAB["<s>"], eos_token_id=VOCAB["</s>"],
        hidden_size=shape.hidden_size, num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads, intermediate_size=shape.intermediate_size,
        conv_dim=list(shape.conv_dim), conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2],
        conv_bias=True, feat_extract_norm="layer", do_stable_layer_norm=True,
        num_conv_pos_embeddings=shape.num_conv_pos_embeddings,
        num_conv_pos_embedding_groups=shape.num_conv_pos_embedding_groups,
        hidden_dropout=0.1, activation_dropout=0.05, attention_dropout=0.1, feat_proj_dropout=0.05,
        final_dropout=0.05, layerdrop=0.0,
        apply_spec_augment=True, mask_time_prob=0.05, mask_time_length=10, mask_feature_prob=0.0,
        ctc_loss_reduction="mean", ctc_zero_infinity=True, feat_extract_activation="gelu",
    )


# ---------------------------------------------------------------- data
@dataclass(frozen=True)
class Utt:
    path: str
    offset: int
    length: int
    text: str


class ShardIndex:
    """All complete shards (those with a .json) and their utterances; cheap to refresh."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen: set[str] = set()
        self.utts: list[Utt] = []
        self.seconds = 0.0

    def refresh(self) -> int:
        new = 0
        for meta in sorted(self.root.glob("*.json")):
            if meta.name in self.seen:
                continue
            try:
                d = json.loads(meta.read_text())
            except ValueError:
                continue
            flac = str(meta.with_suffix(".flac"))
            for u in d["utts"]:
                self.utts.append(Utt(flac, u["offset"], u["length"], u["text"]))
                new += 1
            self.seconds += d["seconds"]
            self.seen.add(meta.name)
        return new


def normalize(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / np.sqrt(x.var() + 1e-7)


class Loader:
    """Background thread: length-bucketed batches, augmented, as padded torch tensors."""

    def __init__(self, index: ShardIndex, args: argparse.Namespace, state: dict, seed: int) -> None:
        self.index, self.args, self.state = index, args, state
        self.rng = random.Random(seed)
        self.q: queue.Queue = queue.Queue(maxsize=4)
        self.aug_cfg = AugmentConfig()
        self.last_refresh = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def max_len_s(self, step: int) -> float:
        a = self.args
        return min(a.max_utt_s, a.curriculum_start_s + step * a.curriculum_growth_s_per_1k / 1000)

    def _batches(self) -> list[list[Utt]]:
        step = self.state["step"]
        cap = self.max_len_s(step) * SAMPLE_RATE
        pool = [u for u in self.index.utts if u.length <= cap]
        if len(pool) < 64:  # too few short ones yet: take the shortest available
            pool = sorted(self.index.utts, key=lambda u: u.length)[:256]
        # sort by length with jitter, cut into batches of ~batch_seconds of padded audio
        pool.sort(key=lambda u: u.length * self.rng.uniform(0.9, 1.1))
        batches: list[list[Utt]] = []
        cur: list[Utt] = []
        longest = 0
        budget = self.args.batch_seconds * SAMPLE_RATE
        for u in pool:
            longest2 = max(longest, u.length)
            if cur and (longest2 * (len(cur) + 1) > budget or len(cur) >= self.args.max_batch_utts):
                batches.append(cur)
                cur, longest2 = [], u.length
            cur.append(u)
            longest = longest2
        if cur:
            batches.append(cur)
        self.rng.shuffle(batches)
        # a "pass" covers at most this many batches, so the curriculum and new shards get in quickly
        return batches[: self.args.batches_per_pass]

    def _load(self, batch: list[Utt]) -> dict:
        step = self.state["step"]
        strength = min(1.0, max(0.0, (step - self.args.aug_from_step) / max(self.args.aug_ramp_steps, 1)))
        waves = []
        for u in batch:
            x, _ = sf.read(u.path, start=u.offset, frames=u.length, dtype="float32")
            waves.append(x)
        babble = [w for w in waves]
        out = [normalize(augment(w, self.rng, self.aug_cfg, strength, babble)) for w in waves]
        n = max(len(w) for w in out)
        inp = np.zeros((len(out), n), np.float32)
        mask = np.zeros((len(out), n), np.int64)
        for i, w in enumerate(out):
            inp[i, : len(w)] = w
            mask[i, : len(w)] = 1
        labels = [encode(u.text) for u in batch]
        lab = np.full((len(batch), max(len(t) for t in labels)), -100, np.int64)
        for i, t in enumerate(labels):
            lab[i, : len(t)] = t
        return {"input_values": torch.from_numpy(inp), "attention_mask": torch.from_numpy(mask),
                "labels": torch.from_numpy(lab), "seconds": sum(len(w) for w in out) / SAMPLE_RATE}

    def _run(self) -> None:
        while True:
            if time.time() - self.last_refresh > self.args.rescan_minutes * 60:
                self.index.refresh()
                self.last_refresh = time.time()
            if not self.index.utts:
                time.sleep(10)
                self.last_refresh = 0
                continue
            for b in self._batches():
                try:
                    item = self._load(b)
                except Exception as e:  # one bad utterance or augmentation must not stop training
                    log_line(logs_dir() / "train.log", f"loader: skipped a batch: {type(e).__name__}: {e}")
                    continue
                self.q.put(item)
                if time.time() - self.last_refresh > self.args.rescan_minutes * 60:
                    break

    def get(self) -> dict:
        while True:
            try:
                return self.q.get(timeout=30)
            except queue.Empty:
                if not self.thread.is_alive():
                    raise RuntimeError("data loader thread died; see the traceback above") from None


# ---------------------------------------------------------------- evaluation
def sphinx_transcription(folder: Path, name: str) -> list[tuple[str, str]]:
    """(wav path, normalised text) from a CMU Sphinx ``<s> text </s> (file id)`` transcription."""
    trans = folder / name
    if not trans.exists():
        return []
    out = []
    for line in trans.read_text().splitlines():
        text, _, fid = line.rpartition("(")
        text = text.replace("<s>", "").replace("</s>", "").strip()
        out.append((str(folder / (fid.strip(" )") + ".wav")), normalize_for_scoring(text)))
    return out


def librivox_set() -> list[tuple[str, str]]:
    return sphinx_transcription(LIBRIVOX_DIR, "transcription")


def real_short_set() -> list[tuple[str, str]]:
    """Short real recordings by other speakers than LibriVox's, with known words (dev only): the
    card-game commands of pocketsphinx-testdata, its "go forward ten meters" and alsa-utils'
    spoken channel names (48 kHz)."""
    rows = sphinx_transcription(LIBRIVOX_DIR.parent / "cards", "cards.transcription")
    goforward = Path(__file__).resolve().parent.parent / "samples" / "goforward.wav"
    if goforward.exists():
        rows.append((str(goforward), "go forward ten meters"))
    rows += [(str(f), normalize_for_scoring(f.stem.replace("_", " "))) for f in sorted(ALSA_SOUNDS.glob("*.wav"))
             if f.stem != "Noise"]
    return rows


def real_sets() -> dict[str, list[tuple[str, str]]]:
    """The real-speech dev sets by name: scored, never trained on."""
    return {"librivox": librivox_set(), "real-short": real_short_set()}


def folder_set(folder: Path, limit: int = 0) -> list[tuple[str, str]]:
    tsv = folder / "transcripts.tsv"
    if not tsv.exists():
        return []
    fields = [line.split("\t", 1) for line in tsv.read_text().splitlines() if "\t" in line]
    rows = [(str(folder / f), normalize_for_scoring(t)) for f, t in fields]
    return rows[:limit] if limit else rows


@torch.no_grad()
def transcribe(model, wave: np.ndarray) -> str:
    from common import greedy_decode

    x = torch.from_numpy(normalize(wave.astype(np.float32)))[None]
    logits = model(x).logits  # (1, frames, vocab)
    return greedy_decode(logits.argmax(-1)[0].tolist())


def evaluate_sets(model, sets: dict[str, list[tuple[str, str]]]) -> dict[str, dict]:
    was_training = model.training
    model.eval()
    res = {}
    for name, rows in sets.items():
        if not rows:
            continue
        refs, hyps = [], []
        for path, ref in rows:
            wave = read_audio(path)
            refs.append(ref)
            hyps.append(transcribe(model, wave))
        res[name] = {"wer": word_error_rate(refs, hyps), "cer": char_error_rate(refs, hyps), "n": len(rows),
                     "example": {"ref": refs[0], "hyp": hyps[0]}}
    if was_training:
        model.train()
    return res


# ---------------------------------------------------------------- streaming-shaped batches


def stream_prob_schedule(spec: str) -> list[tuple[int, float]]:
    """``"0.3"`` or ``"0.3,7650:0.5"`` -> [(0, 0.3), (7650, 0.5)]: the share from each step on.

    >>> stream_prob_schedule("0.3,7650:0.5")
    [(0, 0.3), (7650, 0.5)]
    """
    schedule: list[tuple[int, float]] = []
    for i, part in enumerate(spec.split(",")):
        step, _, prob = part.rpartition(":")
        try:
            entry = (int(step) if step else 0, float(prob))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected P or P,STEP:P,..., got {spec!r}") from None
        if not 0.0 <= entry[1] <= 1.0 or (i and entry[0] <= schedule[-1][0]) or (i == 0 and step):
            raise argparse.ArgumentTypeError(f"expected P or P,STEP:P,... with rising steps, P in 0..1, got {spec!r}")
        schedule.append(entry)
    return schedule


def stream_prob_at(schedule: list[tuple[int, float]], step: int) -> float:
    """The share of streaming-shaped batches at ``step``.

    >>> stream_prob_at([(0, 0.3), (7650, 0.5)], 7649), stream_prob_at([(0, 0.3), (7650, 0.5)], 7650)
    (0.3, 0.5)
    """
    return [prob for start, prob in schedule if start <= step][-1]


def stream_plan(config, chunk: int, left: int, right: int, *, memory: bool) -> StreamPlan:
    """The engine's stream plan (``streaming.plan.plan_stream``) for a model with this transformers
    config and ``WindowConfig(chunk, left, right, memory)``, sizes in frames, running do_normalize:
    streamed batches take their windows, normalisation and memory from it, as the engine does.
    With ``memory`` the left context is the attention memory.  Raises ValueError where the engine
    would stream the model otherwise (attention memory on a GroupNorm conv front end).
    """
    facts = EngineModelConfig.from_dict(config.to_dict())
    geometry = facts.geometry()
    seconds = geometry.frame_seconds
    window = WindowConfig(chunk * seconds, left * seconds, right * seconds, memory=memory)
    plan = plan_stream(window, geometry, features_are_local=facts.features_are_local,
                       pos_context_frames=facts.pos_context_frames, do_normalize=True)
    if plan.memory != memory:
        raise ValueError(f"the engine would not stream this model with memory={memory}: {plan.fallback}")
    return plan


def running_normalize(input_values: torch.Tensor, attention_mask: torch.Tensor, plan: StreamPlan) -> torch.Tensor:
    """The engine's ``running`` do_normalize for the windows of ``plan``, utterance by utterance
    (``streaming.window_scheduler.running_normalized``): each sample is scaled once, with the
    statistics of the stream up to the end of the first window that holds it, so early windows see
    other statistics than the whole utterance's.  Scaling is affine-invariant, so applying it to
    utterance-normalised audio gives what the engine makes of the raw audio.
    input_values: (batch, samples); padding stays 0.
    """
    out = torch.zeros_like(input_values)
    for b, n in enumerate(attention_mask.sum(dim=1).tolist()):
        wave = input_values[b, :n].detach().float().numpy()  # (samples,) float32
        out[b, :n] = torch.from_numpy(running_normalized(plan, wave)).to(out.dtype)
    return out


def windowed_logits(model, input_values: torch.Tensor, attention_mask: torch.Tensor,
                    plan: StreamPlan) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits as the streaming engine computes them without attention memory: the windows of
    ``plan`` (each chunk with up to ``plan.left_frames`` of recomputed past and
    ``plan.right_frames`` of look-ahead), the chunk's frames kept (stitched).  All windows of the
    batch go through the transformers model in one forward, so dropout and gradients are its own.

    input_values: (batch, samples) normalised audio; attention_mask: (batch, samples) 1 = audio.
    Returns (logits (batch, frames, vocab), frame lengths (batch,)).
    """
    if plan.memory:
        raise ValueError("windowed_logits recomputes the left context; a plan with memory needs memory_logits")
    lengths = [int(n) for n in attention_mask.sum(-1).tolist()]
    n_frames = [num_frames(n, plan.geometry) for n in lengths]
    wins = []  # (utterance, window, its samples [s0, s1))
    for b, (n, nf) in enumerate(zip(lengths, n_frames)):
        for window in plan.windows(nf):
            wins.append((b, window, *plan.sample_range(window, n)))
    longest = max(s1 - s0 for _, _, s0, s1 in wins)
    x = input_values.new_zeros((len(wins), longest))  # (windows, samples)
    m = attention_mask.new_zeros((len(wins), longest))
    for i, (b, _, s0, s1) in enumerate(wins):
        x[i, : s1 - s0] = input_values[b, s0:s1]
        m[i, : s1 - s0] = 1
    win_logits = model(input_values=x, attention_mask=m).logits  # (windows, window frames, vocab)
    out = win_logits.new_zeros((input_values.shape[0], max(n_frames), win_logits.shape[-1]))
    for i, (b, window, _, _) in enumerate(wins):
        out[b, window.keep_start : window.keep_end] = win_logits[i, window.keep_slice()]
    return out, torch.tensor(n_frames)


def memory_logits(model, input_values: torch.Tensor, attention_mask: torch.Tensor,
                  plan: StreamPlan) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits as the engine computes them with attention memory (``WindowConfig.memory``), on the
    transformers model so that dropout, SpecAugment and gradients are its own: window by window of
    ``plan`` (each its chunk and ``plan.right_frames`` of look-ahead), the positional conv sees the
    real past frames from ``plan.feature_start``, and every layer also attends to its own inputs for
    the frames from ``plan.memory_start`` (kept from earlier chunks, no gradient through them, as in
    Transformer-XL; the engine caches their keys and values, which are the same numbers).  The
    utterances of the batch go through together, window after window.  Pre-LN models only.

    input_values: (batch, samples) normalised audio; attention_mask: (batch, samples) 1 = audio.
    Returns (logits (batch, frames, vocab), frame lengths (batch,)).
    """
    if not plan.memory:
        raise ValueError("memory_logits needs a plan with attention memory")
    if not model.config.do_stable_layer_norm:
        raise ValueError("memory_logits supports pre-LN (do_stable_layer_norm) models")
    w2v, enc = model.wav2vec2, model.wav2vec2.encoder
    n_frames = [num_frames(int(n), plan.geometry) for n in attention_mask.sum(-1).tolist()]
    width = max(n_frames)
    valid = torch.arange(width)[None, :] < torch.tensor(n_frames)[:, None]  # (batch, frames)
    features = w2v.feature_extractor(input_values).transpose(1, 2)[:, :width]  # (batch, frames, conv_dim)
    x, _ = w2v.feature_projection(features)  # (batch, frames, hidden)
    x = w2v._mask_hidden_states(x, attention_mask=valid.long())  # SpecAugment time masks, as forward()
    x = x * valid[..., None]  # the engine's last window ends with the stream: zeros beyond, as padding
    heads = model.config.num_attention_heads

    def split(t: torch.Tensor) -> torch.Tensor:  # (batch, n, hidden) -> (batch, heads, n, head_dim)
        return t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

    # per layer: its inputs for the kept frames so far, [0, window start), without gradient
    held = [x[:, :0].detach() for _ in enc.layers]  # (batch, frames, hidden) each
    out = []
    for window in plan.windows(width):
        start, end, first = window.frame_start, window.frame_end, plan.feature_start(window)
        position = enc.pos_conv_embed(x[:, first:end])[:, start - first :]  # (batch, window, hidden)
        h = enc.dropout(x[:, start:end] + position)  # (batch, window, hidden)
        mem_start = plan.memory_start(window)
        keys = valid[:, mem_start:end]  # (batch, mem + window)
        keys = keys | ~keys.any(-1, keepdim=True)  # rows past an utterance's end: anything, never NaN
        mask = keys[:, None, None, :]
        for i, layer in enumerate(enc.layers):
            context = torch.cat([held[i][:, mem_start:start], h], dim=1)  # (batch, mem + window, hidden)
            if plan.memory_frames:
                held[i] = torch.cat([held[i], h[:, window.keep_slice()].detach()], dim=1)
            att = layer.attention
            normed = layer.layer_norm(context)
            q = split(att.q_proj(normed[:, context.shape[1] - h.shape[1] :]))
            y = torch.nn.functional.scaled_dot_product_attention(
                q, split(att.k_proj(normed)), split(att.v_proj(normed)), attn_mask=mask,
                dropout_p=att.dropout if model.training else 0.0)  # (batch, heads, window, head_dim)
            h = h + layer.dropout(att.out_proj(y.transpose(1, 2).reshape(h.shape)))
            h = h + layer.feed_forward(layer.final_layer_norm(h))
        out.append(enc.layer_norm(h)[:, window.keep_slice()])
    return model.lm_head(model.dropout(torch.cat(out, dim=1))), torch.tensor(n_frames)


def limit_conv_gradients(model, frozen_layers: int) -> None:
    """Spend no backward pass where it buys nothing.  transformers asks for a gradient of the raw
    waveform (only gradient checkpointing needs it): never.  And the first ``frozen_layers`` conv
    layers, which run at 3,200-400 frames a second, stop training: on one core, freezing the
    first three makes a step ~1.8x faster (2.1 s -> 1.2 s for 24 s of audio), while the later conv
    layers and the transformer still adapt."""
    extractor = model.wav2vec2.feature_extractor
    extractor._requires_grad = False
    for layer in extractor.conv_layers[:frozen_layers]:
        layer.requires_grad_(False)


def ctc_loss_from_logits(logits: torch.Tensor, frame_lengths: torch.Tensor, labels: torch.Tensor,
                         config) -> torch.Tensor:
    """Wav2Vec2ForCTC's loss on given logits, with the config's blank, reduction and zero_infinity."""
    mask = labels >= 0
    log_probs = torch.nn.functional.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (frames, batch, vocab)
    with torch.backends.cudnn.flags(enabled=False):
        return torch.nn.functional.ctc_loss(log_probs, labels.masked_select(mask), frame_lengths, mask.sum(-1),
                                            blank=config.pad_token_id, reduction=config.ctc_loss_reduction,
                                            zero_infinity=config.ctc_zero_infinity)


# ---------------------------------------------------------------- checkpoints
def list_ckpts(d: Path) -> list[Path]:
    return sorted(d.glob("ckpt-*.pt"))


class WeightAverage:
    """Exponential moving average of every floating-point tensor of a model's state dict."""

    def __init__(self, model, decay: float, saved: dict[str, torch.Tensor] | None = None) -> None:
        self.decay = decay
        live = self._live(model)
        if saved is not None and {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in live.items()}:
            self.avg = {k: v.float().clone() for k, v in saved.items()}
        else:  # first run with averaging (or a changed model): start from the current weights
            self.avg = {k: v.float().clone() for k, v in live.items()}

    @staticmethod
    def _live(model) -> dict[str, torch.Tensor]:
        return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model) -> None:
        live = self._live(model)
        keys = list(self.avg)
        torch._foreach_lerp_([self.avg[k] for k in keys], [live[k].float() for k in keys], 1.0 - self.decay)

    def averaged_copy(self, model):
        """A copy of ``model`` holding the averaged weights."""
        import copy

        twin = copy.deepcopy(model)
        twin.load_state_dict({**twin.state_dict(), **self.avg})
        return twin


def save_ckpt(d: Path, model, opt, state: dict, keep: int = 2, ema: WeightAverage | None = None,
              extra: dict | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"ckpt-{state['step']:08d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state,
                "config": model.config.to_dict(), "ema": None if ema is None else ema.avg, **(extra or {})}, tmp)
    os.replace(tmp, path)
    for old in list_ckpts(d)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_latest(d: Path) -> dict | None:
    for path in reversed(list_ckpts(d)):
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # a truncated file from a kill mid-write: fall back to the older one
            print(f"cannot read {path}: {e}")
    return None


def lr_at(step: int, a: argparse.Namespace) -> float:
    """Linear warmup to --lr, hold, then halve every --lr-halflife steps after --decay-from."""
    warm = min(1.0, (step + 1) / a.warmup_steps)
    decay = 0.5 ** (max(0, step - a.decay_from) / a.lr_halflife)
    return a.lr * warm * decay


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = ap.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--warmup-steps", type=int, default=300)
    g.add_argument("--decay-from", type=int, default=18000)
    g.add_argument("--lr-halflife", type=int, default=8000)
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--clip-grad", type=float, default=5.0)
    g.add_argument("--max-steps", type=int, default=10**9)
    g.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--ema-decay", type=float, default=0.999,
                   help="weight averaging for evaluation/export (0: off); horizon ~1/(1-decay) steps")
    g.add_argument("--conv-frozen-from-step", type=int, default=16869,
                   help="from this step the first --conv-frozen-layers conv layers stop training")
    g.add_argument("--conv-frozen-layers", type=int, default=3)
    g.add_argument("--threads", type=int, default=int(os.environ.get("XLSR_TRAIN_THREADS", "1")))
    g = ap.add_argument_group("batches and curriculum")
    g.add_argument("--batch-seconds", type=float, default=24.0, help="padded audio per batch")
    g.add_argument("--max-batch-utts", type=int, default=16)
    g.add_argument("--max-utt-s", type=float, default=14.0)
    g.add_argument("--curriculum-start-s", type=float, default=3.5, help="length cap at step 0")
    g.add_argument("--curriculum-growth-s-per-1k", type=float, default=3.0, help="cap growth per 1000 steps")
    g.add_argument("--batches-per-pass", type=int, default=200)
    g.add_argument("--rescan-minutes", type=float, default=5.0)
    g = ap.add_argument_group("augmentation")
    g.add_argument("--aug-from-step", type=int, default=1000)
    g.add_argument("--aug-ramp-steps", type=int, default=3000)
    g.add_argument("--mask-from-step", type=int, default=4000)
    g.add_argument("--mask-time-prob", type=float, default=0.05)
    g = ap.add_argument_group("streaming-shaped batches")
    g.add_argument("--stream-prob", type=stream_prob_schedule, default="0.3,8292:0.5",
                   help="share of batches computed as the engine streams them (windows, stitched; they cost ~2x): "
                        "P, or P,STEP:P,... to change it at those steps")
    g.add_argument("--stream-from-step", type=int, default=7000)
    g.add_argument("--stream-chunks", default="50,75,100", help="chunk sizes in frames (20 ms) to draw from")
    g.add_argument("--stream-lefts", default="30,50,80", help="left contexts in frames to draw from")
    g.add_argument("--stream-rights", default="20", help="right look-aheads in frames to draw from")
    g.add_argument("--stream-running-norm-from-step", type=int, default=12400,
                   help="from this step streaming-shaped batches get the engine's running do_normalize")
    g.add_argument("--stream-memory-from-step", type=int, default=9126,
                   help="from this step some streaming-shaped batches use attention memory, as the engine does")
    g.add_argument("--stream-memory-share", type=float, default=0.7,
                   help="share of streaming-shaped batches with attention memory (the rest recompute the left)")
    g.add_argument("--stream-memories", default="150,300", help="attention memories in frames to draw from")
    g = ap.add_argument_group("checkpoints and logs")
    g.add_argument("--ckpt-minutes", type=float, default=10.0)
    g.add_argument("--eval-every-ckpt", type=int, default=1, help="evaluate every Nth checkpoint (0: never)")
    g.add_argument("--dev-limit", type=int, default=150, help="synthetic dev utterances per eval")
    g.add_argument("--log-every", type=int, default=25)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from transformers import Wav2Vec2ForCTC

    log = logs_dir() / "train.log"
    ck = load_latest(ckpt_dir())
    if ck is not None:
        from transformers import Wav2Vec2Config

        cfg = Wav2Vec2Config.from_dict(ck["config"])
        cfg.mask_time_prob = max(cfg.mask_time_prob, 0.05)  # may have been saved while masking was off
        model = Wav2Vec2ForCTC(cfg)
        model.load_state_dict(ck["model"])
        state = ck["state"]
    else:
        # mask_time_prob > 0 in the config so the mask embedding exists; train() switches masking on/off
        model = Wav2Vec2ForCTC(build_config(ModelShape()))
        state = {"step": 0, "audio_seconds": 0.0, "cpu_seconds": 0.0, "wall_seconds": 0.0, "ckpts": 0,
                 "shape": asdict(ModelShape())}
    model.train()
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in n or "bias" in n else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    if ck is not None:
        opt.load_state_dict(ck["opt"])
    ema = WeightAverage(model, args.ema_decay, ck.get("ema") if ck else None) if args.ema_decay > 0 else None
    state["ema_decay"] = args.ema_decay if ema is not None else None
    nparams = sum(p.numel() for p in model.parameters())
    log_line(log, f"start step={state['step']} params={nparams / 1e6:.2f}M threads={args.threads} "
                  f"bf16={args.bf16} args={vars(args)}")

    stop = {"flag": False}

    def on_signal(signum, frame):  # noqa: ARG001
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    index = ShardIndex(shards_dir() / "train")
    index.refresh()
    loader = Loader(index, args, state, seed=state["step"] + 17)
    eval_sets = {**real_sets(),
                 "synth-dev": folder_set(shards_dir().parent / "eval" / "synth-dev", args.dev_limit)}

    stream_rng = random.Random(state["step"] + 29)
    stream_shapes = [[int(v) for v in spec.split(",")] for spec in (args.stream_chunks, args.stream_lefts,
                                                                   args.stream_rights)]
    stream_memories = [int(v) for v in args.stream_memories.split(",")]
    last_ckpt = time.time()
    t_cpu, t_wall = time.process_time(), time.time()
    win = {"loss": 0.0, "n": 0, "sec": 0.0, "t": time.time(), "streamed": 0, "memory": 0}
    steps_this_run = 0
    while not stop["flag"] and state["step"] < args.max_steps:
        batch = loader.get()
        step = state["step"]
        limit_conv_gradients(model, args.conv_frozen_layers if step >= args.conv_frozen_from_step else 0)
        model.config.mask_time_prob = args.mask_time_prob if step >= args.mask_from_step else 0.0
        for g_ in opt.param_groups:
            g_["lr"] = lr_at(step, args)
        streamed = step >= args.stream_from_step and stream_rng.random() < stream_prob_at(args.stream_prob, step)
        with_memory = (streamed and step >= args.stream_memory_from_step
                       and stream_rng.random() < args.stream_memory_share)
        if streamed:
            # as the engine streams: windows with limited context, so streaming WER follows offline WER
            chunk, left, right = [stream_rng.choice(choices) for choices in stream_shapes]
            if with_memory:  # the engine's default: past context as attention memory
                plan = stream_plan(model.config, chunk, stream_rng.choice(stream_memories), right, memory=True)
            else:
                plan = stream_plan(model.config, chunk, left, right, memory=False)
            if step >= args.stream_running_norm_from_step:  # and scales the audio as it arrives
                batch["input_values"] = running_normalize(batch["input_values"], batch["attention_mask"], plan)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                streamed_logits = memory_logits if plan.memory else windowed_logits
                logits, frame_lengths = streamed_logits(model, batch["input_values"], batch["attention_mask"], plan)
            loss = ctc_loss_from_logits(logits, frame_lengths, batch["labels"], model.config)
        else:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                loss = model(input_values=batch["input_values"], attention_mask=batch["attention_mask"],
                             labels=batch["labels"]).loss
        opt.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
            if torch.isfinite(gn):
                opt.step()
                if ema is not None:
                    ema.update(model)
        state["step"] += 1
        steps_this_run += 1
        state["audio_seconds"] += batch["seconds"]
        win["loss"] += loss.item()
        win["n"] += 1
        win["streamed"] += streamed
        win["memory"] += with_memory
        win["sec"] += batch["seconds"]
        if state["step"] % args.log_every == 0:
            dt = time.time() - win["t"]
            log_line(log, f"step {state['step']} loss {win['loss'] / win['n']:.3f} lr {lr_at(step, args):.2e} "
                          f"maxlen {loader.max_len_s(step):.1f}s speed {win['sec'] / dt:.1f}x rt "
                          f"data {index.seconds / 3600:.2f}h ({len(index.utts)} utts) "
                          f"seen {state['audio_seconds'] / 3600:.2f}h streamed {win['streamed']}/{win['n']} "
                          f"(memory {win['memory']})")
            win = {"loss": 0.0, "n": 0, "sec": 0.0, "t": time.time(), "streamed": 0, "memory": 0}
        if time.time() - last_ckpt > args.ckpt_minutes * 60 or stop["flag"] or state["step"] >= args.max_steps:
            now_cpu, now_wall = time.process_time(), time.time()
            state["cpu_seconds"] += now_cpu - t_cpu
            state["wall_seconds"] += now_wall - t_wall
            t_cpu, t_wall = now_cpu, now_wall
            state["ckpts"] += 1
            state["data_hours"] = index.seconds / 3600
            if args.eval_every_ckpt and state["ckpts"] % args.eval_every_ckpt == 0 and not stop["flag"]:
                if not eval_sets["synth-dev"]:
                    eval_sets["synth-dev"] = folder_set(shards_dir().parent / "eval" / "synth-dev", args.dev_limit)
                res = evaluate_sets(model if ema is None else ema.averaged_copy(model), eval_sets)
                state["eval"] = {"step": state["step"], "weights": "raw" if ema is None else "ema", **res}
                log_line(log, "eval " + json.dumps(state["eval"]))
                with open(logs_dir() / "eval.jsonl", "a") as f:
                    f.write(json.dumps(state["eval"]) + "\n")
            path = save_ckpt(ckpt_dir(), model, opt, state, ema=ema)
            log_line(log, f"checkpoint {path.name} cpu {state['cpu_seconds'] / 3600:.2f}h "
                          f"wall {state['wall_seconds'] / 3600:.2f}h")
            last_ckpt = time.time()
    log_line(log, f"stop at step {state['step']} after {steps_this_run} steps this run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
