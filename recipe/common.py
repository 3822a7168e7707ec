"""Shared paths and vocabulary for the en-small training recipe (text normalisation: :mod:`scoring`).

Everything heavy (sentences, synthesized shards, checkpoints, logs) lives under one cache
folder outside the git tree: ``$XLSR_RECIPE_DIR`` (default ``/work/recipe-cache``).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np

# Training text is spelled in the model's alphabet (a-z, apostrophes inside words); the rule lives
# in scoring/text.py. It drops digits: callers reject text that holds any (scoring.has_digits).
from scoring import normalize_to_alphabet as normalize_text  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent
RECIPE_DIR = Path(__file__).resolve().parent

SAMPLE_RATE = 16000  # the engine and preprocessor_config.json both assume 16 kHz mono

# The engine and the LM engineer assume exactly this table: pad = CTC blank, "|" = word delimiter.
VOCAB: dict[str, int] = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
for _i, _c in enumerate("abcdefghijklmnopqrstuvwxyz'"):
    VOCAB[_c] = 5 + _i
ID_TO_CHAR = {i: c for c, i in VOCAB.items()}
BLANK_ID = VOCAB["<pad>"]
DELIM_ID = VOCAB["|"]


def cache_dir() -> Path:
    """Root of all generated artefacts; overridable so CI and smoke runs use a temp dir."""
    return Path(os.environ.get("XLSR_RECIPE_DIR", "/work/recipe-cache"))


def shards_dir() -> Path:
    return cache_dir() / "shards"


def text_dir() -> Path:
    return cache_dir() / "text"


def ckpt_dir() -> Path:
    return cache_dir() / "checkpoints"


def logs_dir() -> Path:
    return cache_dir() / "logs"


_SPACES = re.compile(r"\s+")


def encode(text: str) -> list[int]:
    """Characters -> label ids; spaces become the word delimiter "|"."""
    return [DELIM_ID if c == " " else VOCAB.get(c, VOCAB["<unk>"]) for c in text]


def greedy_decode(ids: list[int]) -> str:
    """Collapse repeats, drop blanks, map "|" to space. ``[0,8,8,0,4,4,9]`` -> ``"d e"``."""
    out: list[str] = []
    prev = -1
    for i in ids:
        if i != prev and i != BLANK_ID and i >= DELIM_ID:
            out.append(" " if i == DELIM_ID else ID_TO_CHAR[i])
        prev = i
    return _SPACES.sub(" ", "".join(out)).strip()


def write_json_atomic(path: Path, obj: object) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def log_line(path: Path, msg: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} {msg}"
    print(line, flush=True)
    with open(path, "a") as f:
        f.write(line + "\n")


def read_audio(path: str) -> np.ndarray:
    """An audio file as mono float32 at 16 kHz (channels averaged, soxr resampling): what the
    recipe's evaluations, teacher and student read."""
    import soundfile as sf
    import soxr

    wave, sr = sf.read(path, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if sr != SAMPLE_RATE:
        wave = soxr.resample(wave, sr, SAMPLE_RATE)
    return wave
