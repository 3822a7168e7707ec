"""Readers for the real-speech Debian packages of ``apt-real-speech.txt``: each builds a
``prepare_real.Source`` (what to list, how to decode one utterance).

Formats are documented in ``recipe/README.md`` ("Real speech"); the decoders live in
``g722.py`` and ``game_formats.py``, the transcript policy in ``real_text.py``.
"""

from __future__ import annotations

import functools
import gzip
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
from g722 import decode_g722
from game_formats import (
    QUEEN_JOE_RESPONSES,
    SKY_SECTION_SPEECH,
    SKY_SPEECH_FIRST,
    SKY_TEXT_FIRST,
    FormatError,
    SkyDisk,
    drascula_text_arrays,
    queen_joe_lines,
    queen_segments,
    queen_table,
    sky_speech_samples,
    sky_text_section,
)
from real_corpus import Item, Source
from real_text import NOT_SPEECH, clean_transcript


def line_item(counts: Counter[str], utt_id: str, speaker: str, raw: str | None,
              locator: tuple[str | int, ...], symbols: dict[str, str] | None = None,
              capitals_are_words: bool = False, no_text: str = "no text line") -> Item | None:
    """The Item for one audio file and its raw text line, or None when the line is not speech.

    A line whose text cannot be written down (a number, an acronym, ...) keeps its audio as
    untranscribed; ``raw=None`` means the data has no usable line for this audio (counted
    under ``no_text``). Counts every case.
    """
    if raw is None:
        counts[f"{no_text} (untranscribed)"] += 1
        return Item(utt_id, speaker, None, locator)
    text, why = clean_transcript(raw, symbols, capitals_are_words=capitals_are_words)
    if text is None:
        if why in NOT_SPEECH:
            counts[f"not speech: {why}"] += 1
            return None
        counts[f"text: {why} (untranscribed)"] += 1
    return Item(utt_id, speaker, text, locator)

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
            item = line_item(counts, utt_id, speaker, said.get(key), (str(path),), ASTERISK_SYMBOLS)
            if item is not None:
                items.append(item)
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


def _unsigned_8bit(raw: bytes) -> npt.NDArray[np.float32]:
    return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0


# ------------------------------------------------------------------------ beneath-a-steel-sky

SKY_DIR = Path("/usr/share/scummvm/beneath-a-steel-sky")
SKY_RATE = 11025
SKY_TAIL_BYTES = 64  # every speech file ends in 64 bytes that are not part of the line
SKY_SPEECH_LAST = 55230  # speech files are 50000-55229


@functools.lru_cache(maxsize=2)
def _sky_disk(dnr: str, dsk: str) -> SkyDisk:
    return SkyDisk(Path(dnr), Path(dsk))


def _load_sky(item: Item) -> tuple[npt.NDArray[np.float32], int]:
    dnr, dsk, num = item.locator
    samples = sky_speech_samples(_sky_disk(str(dnr), str(dsk)).read(int(num)))
    return _unsigned_8bit(samples[:-SKY_TAIL_BYTES]), SKY_RATE


def sky_items(counts: Counter[str], game: Path = SKY_DIR) -> list[Item]:
    """English text sections 60600-60606 paired with speech file 50000 + SKY_SECTION_SPEECH[s]
    + line. The text does not say who speaks, so the speaker id is the block of 32 lines
    (``s2b07``): lines of one conversation, mostly Foster and one other character."""
    dnr, dsk = game / "sky.dnr", game / "sky.dsk"
    disk = _sky_disk(str(dnr), str(dsk))
    items: list[Item] = []
    paired: set[int] = set()
    for section, first in enumerate(SKY_SECTION_SPEECH):
        messages = sky_text_section(disk.read(SKY_TEXT_FIRST + section))
        for line, raw in enumerate(messages):
            num = SKY_SPEECH_FIRST + first + line
            if num not in disk.entries:
                continue  # text shown, never spoken (object names, menus)
            paired.add(num)
            item = line_item(counts, f"{num}", f"s{section}b{line // 32:02d}", raw.decode("latin-1"),
                             (str(dnr), str(dsk), num), capitals_are_words=True)
            if item is not None:
                items.append(item)
    for n in sorted(disk.entries):
        if SKY_SPEECH_FIRST <= n < SKY_SPEECH_LAST and n not in paired:
            items.append(Item(f"{n}", "unpaired", None, (str(dnr), str(dsk), n)))
            counts["speech without text line (untranscribed)"] += 1
    return items


def beneath_a_steel_sky() -> Source:
    return Source(
        name="beneath-a-steel-sky", packages=("beneath-a-steel-sky",), list_items=sky_items,
        load=_load_sky,
        notes="CD version 0.0372 speech (8-bit 11,025 Hz); speaker id = section + block of 32 "
              "text lines (a conversation), not a voice actor: hold out by block or whole game",
    )


# ----------------------------------------------------------------------------------- drascula

DRASCULA_DIR = Path("/usr/share/scummvm/drascula")
DRASCULA_RATE = 11025
DRASCULA_EDGE_BYTES = 32  # each .ALS starts and ends with 32 bytes that are not speech
# Speech file prefix -> (text array, speaker), as the engine's talk_* functions pair them.
DRASCULA_VOICES = {
    "": ("text", "hacker"),  # John Hacker, the hero
    "B": ("textb", "drunk"),
    "BJ": ("textbj", "bj"),
    "D": ("textd", "drascula"),
    "E": ("texte", "e"),
    "I": ("texti", "igor"),
    "L": ("textl", "wolf"),
    "P": ("textp", "pianist"),
    "T": ("textt", "bartender"),
    "VB": ("textvb", "vonbraun"),
}
DRASCULA_BLIND_FROM = 68  # D68 onwards: the blind man's lines, still in textd
# D82 is the bartender (textd[82]); D83 is said from the trunk with text[83].
DRASCULA_SPECIAL = {82: ("textd", "bartender"), 83: ("text", "trunk")}
DRASCULA_SOUND_EFFECTS = "S"  # S<n>.ALS: sound effects, not speech


def _load_drascula(item: Item) -> tuple[npt.NDArray[np.float32], int]:
    raw = Path(str(item.locator[0])).read_bytes()
    return _unsigned_8bit(raw[DRASCULA_EDGE_BYTES:len(raw) - DRASCULA_EDGE_BYTES]), DRASCULA_RATE


def drascula_items(counts: Counter[str], game: Path = DRASCULA_DIR,
                   dat: Path = Path("/usr/share/scummvm/drascula.dat")) -> list[Item]:
    texts = drascula_text_arrays(dat.read_bytes(), lang=0)
    items: list[Item] = []
    for path in sorted((game / "en").glob("*.ALS")):
        m = re.fullmatch(r"([A-Z]*)(\d+)\.ALS", path.name)
        if m is None:
            counts["unknown file name"] += 1
            continue
        prefix, index = m.group(1), int(m.group(2))
        if prefix == DRASCULA_SOUND_EFFECTS:
            counts["sound effect"] += 1
            continue
        utt_id = f"{prefix or 'H'}{index}"
        voice = DRASCULA_VOICES.get(prefix)
        if prefix == "D":
            voice = DRASCULA_SPECIAL.get(index, ("textd", "blind" if index >= DRASCULA_BLIND_FROM else "drascula"))
        if voice is None:  # F<n>: said in cut scenes whose text is not in drascula.dat
            items.append(Item(utt_id, prefix.lower(), None, (str(path),)))
            counts[f"prefix {prefix}: no text array (untranscribed)"] += 1
            continue
        array, speaker = voice
        strings = texts[array]
        raw = strings[index].decode("latin-1") if index < len(strings) else None
        item = line_item(counts, utt_id, speaker, raw, (str(path),), capitals_are_words=True)
        if item is not None:
            items.append(item)
    return items


def drascula() -> Source:
    return Source(
        name="drascula", packages=("drascula",), list_items=drascula_items, load=_load_drascula,
        notes="English voices (raw 8-bit 11,025 Hz .ALS) with drascula.dat text (ScummVM's data "
              "file, language 0); speaker = character; S*.ALS are sound effects and left out",
    )


# ------------------------------------------------------------------ flight-of-the-amazon-queen

QUEEN_FILE = Path("/usr/share/scummvm/flight-of-the-amazon-queen/queen.1c")


@functools.lru_cache(maxsize=1)
def _queen_index(path: str) -> tuple[str, dict[str, tuple[int, int]]]:
    with open(path, "rb") as f:
        head = f.read(15)
        (count,) = struct.unpack(">H", head[13:15])
        version, entries = queen_table(head + f.read(21 * count))
    return version, {k: (e.offset, e.size) for k, e in entries.items()}


def _queen_read(path: str, name: str) -> bytes:
    offset, size = _queen_index(path)[1][name]
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def _queen_speaker(stem: str) -> str:
    """Dialogue voice files are <dialogue 2><line 4><speaker letter><segment>: J is Joe, other
    letters the person he talks to (per dialogue); anything else is grouped by its prefix."""
    m = re.fullmatch(r"([0-9A-F]{2})[0-9A-Z]{4}([A-Z])\d", stem)
    if m:
        return "joe" if m.group(2) == "J" else f"dlg{m.group(1).lower()}{m.group(2).lower()}"
    p = re.match(r"[A-Z]+[0-9A-F]{0,2}", stem)
    return p.group(0).lower() if p else "other"


def _load_queen(item: Item) -> tuple[npt.NDArray[np.float32], int]:
    import io

    import soundfile as sf

    raw = _queen_read(str(item.locator[0]), str(item.locator[1]))
    samples, rate = sf.read(io.BytesIO(raw), dtype="float32")  # MPEG-2.5 layer III, 11,025 Hz
    return (samples if samples.ndim == 1 else samples.mean(axis=1)), rate


def queen_items(counts: Counter[str], path: Path = QUEEN_FILE) -> list[Item]:
    """Joe's voice files JOE<nnnn><segment>.SB with his lines from QUEEN2.JAS (speaker "joe");
    every other .SB voice file (dialogues, cut scenes: their text is in scripts this reader does
    not parse) goes to untranscribed, speaker = its file-name prefix (dialogue or scene)."""
    version, entries = _queen_index(str(path))
    if version != "CEM10":
        raise FormatError(f"{path}: version {version}, this reader knows the English CD CEM10")
    joe = queen_joe_lines(_queen_read(str(path), "QUEEN.JAS"), _queen_read(str(path), "QUEEN2.JAS"))
    items: list[Item] = []
    for name in sorted(entries):
        if not name.endswith(".SB"):
            continue
        utt_id = name[:-3]
        m = re.fullmatch(r"JOE(\d{4})(\d)\.SB", name)
        if m is None and utt_id.endswith("SSSS"):
            counts["sound effect"] += 1  # <room/number>SSSS.SB: room sound effects
            continue
        if m is None:
            items.append(Item(utt_id, _queen_speaker(utt_id), None, (str(path), name)))
            counts["not Joe's line (untranscribed)"] += 1
            continue
        desc, segment = int(m.group(1)), int(m.group(2))
        segments = queen_segments(joe[desc]) if desc in joe else []
        raw = segments[segment - 1] if 0 < segment <= len(segments) else None
        item = line_item(counts, utt_id, "joe", raw, (str(path), name))
        if item is not None:
            items.append(item)
    return items


def flight_of_the_amazon_queen() -> Source:
    return Source(
        name="flight-of-the-amazon-queen", packages=("flight-of-the-amazon-queen",),
        list_items=queen_items, load=_load_queen,
        notes=f"CD version CEM10; Joe's responses (1-{QUEEN_JOE_RESPONSES}) and object descriptions, "
              "one utterance per *-separated segment; other characters' speech untranscribed",
    )


# -------------------------------------------------------- small sets: word and letter prompts


def _load_soundfile(item: Item) -> tuple[npt.NDArray[np.float32], int]:
    import soundfile as sf

    samples, rate = sf.read(str(item.locator[0]), dtype="float32")
    return (samples if samples.ndim == 1 else samples.mean(axis=1)), rate


def mulaw_decode(raw: bytes) -> npt.NDArray[np.float32]:
    """G.711 mu-law bytes -> float samples in [-1, 1]: 0xFF -> 0.0, 0x80 -> +0.98, 0x00 -> -0.98."""
    x = ~np.frombuffer(raw, dtype=np.uint8).astype(np.int32) & 0xFF
    magnitude = (((x & 0x0F) << 3) + 0x84 << ((x >> 4) & 0x07)) - 0x84
    out: npt.NDArray[np.float32] = (np.where(x & 0x80, -magnitude, magnitude) / 32768.0).astype(np.float32)
    return out


SAYTIME_DIR = Path("/usr/share/saytime")
# Words whose file name is not how they are said.
SAYTIME_WORDS = {"the_time_is": "the time is", "oclock": "o'clock", "am": "a m", "pm": "p m"}


def _load_saytime(item: Item) -> tuple[npt.NDArray[np.float32], int]:
    return mulaw_decode(Path(str(item.locator[0])).read_bytes()), 8000  # headerless Sun audio


def saytime_items(counts: Counter[str], folder: Path = SAYTIME_DIR) -> list[Item]:
    """One word per file, the file name says which (``20.au`` -> "twenty")."""
    items = []
    for path in sorted(folder.glob("*.au")):
        raw = SAYTIME_WORDS.get(path.stem, path.stem.replace("_", " "))
        item = line_item(counts, path.stem, "saytime", raw, (str(path),))
        if item is not None:
            items.append(item)
    return items


def saytime() -> Source:
    return Source("saytime", ("saytime",), saytime_items, _load_saytime,
                  notes="spoken clock words, 8 kHz mu-law, one voice")


def _xml_sounds(counts: Counter[str], text: str, folder: Path) -> Iterator[tuple[str, str, Path]]:
    """KDE sound lists (``<sound name="A" file="en/alpha/A.ogg" />``) -> (name, file, path) of
    the files that exist under ``folder``; missing ones are counted."""
    for name, rel in re.findall(r'<sound\s+name="([^"]+)"\s+file="([^"]+)"', text):
        if (folder / rel).exists():
            yield name, rel, folder / rel
        else:
            counts["listed file missing"] += 1


KLETTRES_DIR = Path("/usr/share/klettres")


def klettres_items(counts: Counter[str], folder: Path = KLETTRES_DIR) -> list[Item]:
    """English letter names (alphabet) as transcribed speech; the syllables are phonics sounds
    ("CH", "AW") whose spelling is not what is said: untranscribed."""
    items = []
    for lang in ("en", "en_GB"):
        xml = folder / lang / "sounds.xml"
        if not xml.exists():
            continue
        text = xml.read_text(encoding="utf-8")
        alphabet = text.split("<syllables>")[0]
        for name, rel, path in _xml_sounds(counts, text, folder):
            utt_id = f"{lang}-{path.parent.name}-{path.stem}"
            spoken = name.lower() if f'file="{rel}"' in alphabet else None
            item = line_item(counts, utt_id, f"klettres-{lang.lower()}", spoken, (str(path),), no_text="syllable")
            if item is not None:
                items.append(item)
    return items


def klettres() -> Source:
    return Source("klettres", ("klettres-data",), klettres_items, _load_soundfile,
                  notes="letter names (en, en_GB voices); syllables untranscribed")


KTUBERLING_DIR = Path("/usr/share/ktuberling/sounds")


def ktuberling_items(counts: Counter[str], folder: Path = KTUBERLING_DIR) -> list[Item]:
    """Object names said by the English voice; names like "egypt_camel" are scene ids, not
    what is said: untranscribed."""
    items = []
    for name, _, path in _xml_sounds(counts, (folder / "en.soundtheme").read_text(encoding="utf-8"), folder):
        spoken = None if "_" in name else name
        item = line_item(counts, path.stem, "ktuberling-en", spoken, (str(path),), no_text="scene id, not a word")
        if item is not None:
            items.append(item)
    return items


def ktuberling() -> Source:
    return Source("ktuberling", ("ktuberling-data",), ktuberling_items, _load_soundfile,
                  notes="object names, one English voice")


QABCS_DIR = Path("/usr/share/qabcs/abcs")


def qabcs_items(counts: Counter[str], folder: Path = QABCS_DIR) -> list[Item]:
    """abc1.json of the en and en_gb alphabets: each letter's sound (its name) and each
    picture's spoken word (its "name"); speaker = the alphabet's voice (one per folder)."""
    import json

    items: list[Item] = []
    seen: set[str] = set()
    for lang in ("en", "en_gb"):
        spec = json.loads((folder / lang / "abc1.json").read_text(encoding="utf-8"))
        for entry in spec["letters"]:
            for letter, info in entry.items():
                said = [(f"alpha/{info['sound_letter'].lower()}", letter)] if info.get("sound_letter") else []
                said += [(f"words/{v['sound_pic']}", v["name"]) for v in info.values()
                         if isinstance(v, dict) and v.get("sound_pic") and v.get("name")]
                for rel, raw in said:
                    path = folder / lang / "sounds" / rel
                    utt_id = f"{lang}-{Path(rel).parent.name}-{path.stem}"
                    if utt_id in seen:
                        continue
                    seen.add(utt_id)
                    if not path.exists():
                        counts["listed file missing"] += 1
                        continue
                    item = line_item(counts, utt_id, f"qabcs-{lang}", raw, (str(path),), capitals_are_words=True)
                    if item is not None:
                        items.append(item)
    return items


def qabcs() -> Source:
    return Source("qabcs", ("qabcs-data",), qabcs_items, _load_soundfile,
                  notes="letter names and picture words of the en and en_gb alphabets")


# ------------------------------------- other languages: audio only, for distillation targets


def _audio_only(counts: Counter[str], files: list[tuple[str, str, Path]]) -> list[Item]:
    """(utt_id, speaker, path) -> untranscribed items (the teacher gives states and posteriors)."""
    counts["audio only (untranscribed)"] += len(files)
    return [Item(utt_id, speaker, None, (str(path),)) for utt_id, speaker, path in files]


def _asterisk_voice(lang: str) -> Source:
    def items(counts: Counter[str], sounds: Path = ASTERISK_SOUNDS) -> list[Item]:
        voices = sorted(d for d in sounds.glob(f"{lang}_*") if d.is_dir() and not d.is_symlink())
        if not voices:
            raise FileNotFoundError(f"no {lang} voice folder under {sounds}")
        files = []
        for voice in voices:
            for f in sorted(voice.rglob("*.g722")):
                key = f.relative_to(voice).with_suffix("").as_posix()
                files.append((re.sub(r"[^A-Za-z0-9_.-]", "-", key), voice.name.split("_")[-1].lower(), f))
        return _audio_only(counts, files)

    return Source(f"asterisk-{lang}", (f"asterisk-core-sounds-{lang}-g722",), items, _load_asterisk,
                  notes=f"Asterisk {lang} prompts (G.722, 16 kHz), audio only; the voice's licence is the "
                        f"copyright file's 'Files: {lang}-*' paragraph where there is one (ru, it: CC-BY-3.0)")


FESTVOX_RU_WAV = Path("/usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav")


def festvox_ru() -> Source:
    def items(counts: Counter[str], folder: Path = FESTVOX_RU_WAV) -> list[Item]:
        files = [(f.stem, "nsh", f) for f in sorted(folder.glob("*.wav"))]
        if not files:
            raise FileNotFoundError(f"no recordings under {folder}")
        return _audio_only(counts, files)

    return Source("festvox-ru", ("festvox-ru",), items, _load_soundfile,
                  notes="the recorded Russian sentences of the msu_ru_nsh unit-selection voice, audio only")


FILLETS_SOUND = Path("/usr/share/games/fillets-ng/sound")


def fillets_items(counts: Counter[str], lang: str, folder: Path = FILLETS_SOUND) -> list[Item]:
    """<level>/<lang>/<level prefix>-<speaker code>-<line>.ogg; code m = the small fish,
    v = the big one, other codes are a level's own characters."""
    files = []
    for f in sorted(folder.glob(f"*/{lang}/*.ogg")):
        parts = f.stem.split("-")
        code = parts[1] if len(parts) > 2 else "other"
        speaker = code if code in ("m", "v") else f"{f.parent.parent.name}-{code}"
        files.append((f"{f.parent.parent.name}-{f.stem}", f"{lang}-{speaker}", f))
    if not files:
        raise FileNotFoundError(f"no {lang} voices under {folder}")
    return _audio_only(counts, files)


def _fillets(lang: str) -> Source:
    return Source(f"fillets-{lang}", (f"fillets-ng-data-{lang}",), functools.partial(fillets_items, lang=lang),
                  _load_soundfile, notes=f"Fish Fillets NG dialogue in {lang}, audio only; speaker m/v = the two fish")


SOURCES: dict[str, Callable[[], Source]] = {
    "asterisk": asterisk,
    "drascula": drascula,
    "beneath-a-steel-sky": beneath_a_steel_sky,
    "flight-of-the-amazon-queen": flight_of_the_amazon_queen,
    "qabcs": qabcs,
    "klettres": klettres,
    "ktuberling": ktuberling,
    "saytime": saytime,
    **{f"asterisk-{lang}": functools.partial(_asterisk_voice, lang) for lang in ("es", "fr", "it", "ru")},
    "festvox-ru": festvox_ru,
    "fillets-cs": functools.partial(_fillets, "cs"),
    "fillets-nl": functools.partial(_fillets, "nl"),
}
