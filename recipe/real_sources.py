"""Readers for the real-speech Debian packages of ``apt-real-speech.txt``: each builds a
``prepare_real.Source`` (what to list, how to decode one utterance).

Formats are documented in ``recipe/README.md`` ("Real speech"); the decoders live in
``g722.py`` and ``game_formats.py``, the transcript policy in ``real_text.py``.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from g722 import decode_g722
from real_corpus import Item, Source
from real_text import clean_transcript

# ---------------------------------------------------------------- asterisk-core-sounds-en

ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds")
ASTERISK_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
# Spoken the telephone way in these prompts ("press * to pause" is read "press star").
ASTERISK_SYMBOLS = {"*": "star", "#": "pound"}


def parse_asterisk_transcripts(text: str) -> dict[str, str]:
    """``core-sounds-en.txt`` -> {sound path without extension: raw text}.

    Lines are ``path: text``; ``;`` starts a comment. ``"digits/1: One."`` -> {"digits/1": "One."}
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        key, sep, said = line.partition(":")
        if not sep or not key.strip() or " " in key.strip():
            raise ValueError(f"expected 'path: text', got {line[:80]!r}")
        out[key.strip()] = said.strip()
    return out


def _load_asterisk(item: Item) -> tuple[npt.NDArray[np.float32], int]:
    path = Path(str(item.locator[0]))
    if path.suffix == ".g722":
        return decode_g722(path.read_bytes()).astype(np.float32) / 32768.0, 16000
    import soundfile as sf

    samples, rate = sf.read(path, dtype="float32")
    return samples, rate


def asterisk_items(counts: Counter[str], sounds: Path = ASTERISK_SOUNDS,
                   transcripts: Path = ASTERISK_TEXT) -> list[Item]:
    """Every English voice folder (``en*``); the G.722 file (16 kHz) where there is one, else
    the 8 kHz wav. Speaker = the voice folder's name (``en_US_f_Allison`` -> ``allison``)."""
    said = parse_asterisk_transcripts(gzip.decompress(transcripts.read_bytes()).decode("utf-8"))
    items: list[Item] = []
    voices = sorted(d for d in sounds.glob("en*") if d.is_dir() and not d.is_symlink())
    if not voices:
        raise FileNotFoundError(f"no English voice folder (en*) under {sounds}")
    for voice in voices:
        speaker = voice.name.split("_")[-1].lower()
        files: dict[str, Path] = {}
        for ext in (".wav", ".g722"):  # the later one wins: G.722 is the 16 kHz recording
            for f in voice.rglob("*" + ext):
                files[f.relative_to(voice).with_suffix("").as_posix()] = f
        for key, path in sorted(files.items()):
            utt_id = re.sub(r"[^A-Za-z0-9_.-]", "-", key)
            raw = said.get(key)
            if raw is None:
                counts["no transcript line (untranscribed)"] += 1
                items.append(Item(utt_id, speaker, None, (str(path),)))
                continue
            text, why = clean_transcript(raw, ASTERISK_SYMBOLS)
            if text is None:
                counts[f"text: {why}"] += 1
                continue
            items.append(Item(utt_id, speaker, text, (str(path),)))
        counts["transcript lines without audio"] += len(set(said) - set(files))
    return items


def asterisk() -> Source:
    return Source(
        name="asterisk",
        packages=("asterisk-core-sounds-en", "asterisk-core-sounds-en-g722",
                  "asterisk-core-sounds-en-wav"),
        list_items=asterisk_items,
        load=_load_asterisk,
        notes="Allison Smith's prompts, G.722 decoded (16 kHz, 7 kHz band); speaker = voice folder",
    )


SOURCES: dict[str, Callable[[], Source]] = {
    "asterisk": asterisk,
}
