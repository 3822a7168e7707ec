"""Decoders for the real-speech Debian packages, on fixtures built here (no game data needed):
G.722 driven by a closed-loop encoder, RNC ProPack method 1 from a small encoder written below,
Steel Sky's disk index and Huffman text, a drascula.dat fragment, the Asterisk transcript list."""

from __future__ import annotations

import struct
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "recipe"))
import g722  # noqa: E402
from game_formats import (  # noqa: E402
    DRASCULA_TEXT_ARRAYS,
    RNC1_MAGIC,
    SKY_HUFFMAN_00372,
    FormatError,
    SkyDisk,
    crc16,
    drascula_text_arrays,
    queen_joe_lines,
    queen_segments,
    queen_table,
    rnc1_unpack,
    sky_speech_samples,
    sky_text_section,
)
from real_sources import parse_asterisk_transcripts  # noqa: E402
from real_text import clean_transcript, number_words  # noqa: E402

# ----------------------------------------------------------------------------------- G.722


def _closed_loop_codes(low_target: np.ndarray, high_target: np.ndarray) -> bytes:
    """Encode by analysis-by-synthesis: per 8 kHz step, the code whose decoded sub-band
    sample lands nearest the target (the decoder's own state decides, as in a real encoder)."""
    low, high = g722.new_band_state(True), g722.new_band_state(False)
    out = bytearray()
    for tl, th in zip(low_target, high_target):
        best_l = min(range(64), key=lambda c: abs(g722.decode_low(list(low), c) - tl))
        best_h = min(range(4), key=lambda c: abs(g722.decode_high(list(high), c) - th))
        g722.decode_low(low, best_l)
        g722.decode_high(high, best_h)
        out.append(best_h << 6 | best_l)
    return bytes(out)


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


def test_g722_decoder_follows_a_low_band_tone_at_16khz_without_an_image() -> None:
    n = 1200  # 0.15 s of 8 kHz sub-band samples
    tone = (4000 * np.sin(2 * np.pi * 500 * np.arange(n) / 8000)).astype(np.int64)
    codes = _closed_loop_codes(tone, np.zeros(n, np.int64))
    out = g722.decode_g722(codes).astype(np.float64)
    assert out.dtype == np.float64 and len(out) == 2 * n
    tail = out[800:]  # after the step size has adapted
    assert _peak_hz(tail, 16000) == pytest.approx(500, abs=15)
    spec = np.abs(np.fft.rfft(tail * np.hanning(len(tail))))
    f = np.fft.rfftfreq(len(tail), 1 / 16000)
    image = spec[(f > 7300) & (f < 7700)].max()  # swapped output order would put it here
    assert spec.max() > 30 * image
    # the 16 kHz output is the low band's tone: fit a sine and compare
    t = np.arange(len(tail)) / 16000
    basis = np.stack([np.sin(2 * np.pi * 500 * t), np.cos(2 * np.pi * 500 * t)], 1)
    fit = basis @ np.linalg.lstsq(basis, tail, rcond=None)[0]
    snr_db = 10 * np.log10(np.sum(fit**2) / np.sum((tail - fit) ** 2))
    assert snr_db > 15


def test_g722_high_band_lands_in_the_upper_half_mirrored() -> None:
    n = 1200
    tone = (3000 * np.sin(2 * np.pi * 1000 * np.arange(n) / 8000)).astype(np.int64)
    codes = _closed_loop_codes(np.zeros(n, np.int64), tone)
    out = g722.decode_g722(codes).astype(np.float64)[800:]
    # the QMF puts the high band's 0-4 kHz at 8-4 kHz, reversed: 1 kHz -> 7 kHz
    assert _peak_hz(out, 16000) == pytest.approx(7000, abs=20)


def test_g722_length_and_silence() -> None:
    assert len(g722.decode_g722(bytes(100))) == 200
    assert g722.decode_g722(b"").shape == (0,)


# ----------------------------------------------------------------------- RNC ProPack method 1


class _RncWriter:
    """Bit writer mirroring the RNC reader: LSB-first 16-bit LE words, a word's slot is placed
    when its first bit is written, literal bytes go after the open word."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.slot = -1
        self.used = 16

    def bits(self, value: int, n: int) -> None:
        for i in range(n):
            if self.used == 16:
                self.slot, self.used = len(self.out), 0
                self.out += b"\0\0"
            if value >> i & 1:
                self.out[self.slot + (self.used >> 3)] |= 1 << (self.used & 7)
            self.used += 1

    def raw(self, data: bytes) -> None:
        self.out += data


def _value_symbol(v: int) -> tuple[int, int, int]:
    """value -> (symbol, extra bits, extra count): 0, 1 themselves; else 2**(s-1) + extra."""
    if v < 2:
        return v, 0, 0
    s = v.bit_length()
    return s, v - (1 << (s - 1)), s - 1


def _write_table_and_value(w: _RncWriter, v: int) -> None:
    sym, extra, n_extra = _value_symbol(v)
    code = int(f"{sym:04b}"[::-1], 2)  # 16 symbols of length 4: the canonical code is the symbol
    w.bits(code, 4)
    w.bits(extra, n_extra)


def rnc1_pack(data: bytes, chunk_steps: int = 7) -> bytes:
    """A small RNC method-1 encoder: greedy LZ77 (matches >= 2 bytes), every Huffman table the
    flat 16 x 4-bit code; several chunks so the per-chunk tables are exercised."""
    steps: list[tuple[bytes, int, int]] = []  # (literal run, match distance, match length)
    i = 0
    lit = bytearray()
    while i < len(data):
        best_len, best_dist = 0, 0
        for dist in range(1, min(i, 4000) + 1):
            length = 0
            while i + length < len(data) and data[i + length - dist] == data[i + length] and length < 200:
                length += 1
            if length > best_len:
                best_len, best_dist = length, dist
        if best_len >= 2:
            steps.append((bytes(lit), best_dist, best_len))
            lit = bytearray()
            i += best_len
        else:
            lit.append(data[i])
            i += 1
    steps.append((bytes(lit), 0, 0))  # the last step of the last chunk has no match
    chunks = [steps[k:k + chunk_steps] for k in range(0, len(steps), chunk_steps)]
    w = _RncWriter()
    w.bits(0, 2)  # lock, key
    for c, chunk in enumerate(chunks):
        for _ in range(3):  # raw, distance, length tables: 16 symbols, all 4 bits
            w.bits(16, 5)
            for _ in range(16):
                w.bits(4, 4)
        last_chunk = c == len(chunks) - 1
        # every chunk but the last ends with a match; the reader skips the match of the final step
        w.bits(len(chunk) + (0 if last_chunk else 1), 16)
        for k, (run, dist, length) in enumerate(chunk):
            _write_table_and_value(w, len(run))
            if run:
                w.raw(run)
            if not (last_chunk and k == len(chunk) - 1):
                _write_table_and_value(w, dist - 1)
                _write_table_and_value(w, length - 2)
        if not last_chunk:  # the chunk's final step: empty literal run, no match
            _write_table_and_value(w, 0)
    body = bytes(w.out)
    return RNC1_MAGIC + struct.pack(">IIHHBB", len(data), len(body), crc16(data), crc16(body), 0,
                                    len(chunks)) + body


def test_crc16_is_the_arc_variant() -> None:
    assert crc16(b"123456789") == 0xBB3D
    assert crc16(b"") == 0


@pytest.mark.parametrize("seed", range(3))
def test_rnc1_round_trip_over_literals_matches_and_chunks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    words = [b"foster ", b"joey ", b"linc ", b"the ", b"steel sky ", bytes(rng.integers(0, 256, 5))]
    data = b"".join(words[int(k)] for k in rng.integers(0, len(words), 60)) + bytes(rng.integers(0, 256, 37))
    packed = rnc1_pack(data)
    assert len(packed) < len(data) + 300  # it does compress the repeats (flat tables cost 150 bits each)
    assert rnc1_unpack(packed) == data


def test_rnc1_rejects_bad_magic_and_corrupt_data() -> None:
    packed = bytearray(rnc1_pack(b"abcabcabcabc hello hello hello"))
    with pytest.raises(FormatError, match="RNC method-1"):
        rnc1_unpack(b"XYZ\x01" + bytes(packed[4:]))
    packed[-1] ^= 0xFF
    with pytest.raises(FormatError, match="CRC"):
        rnc1_unpack(bytes(packed))


# ------------------------------------------------------------------------- Beneath a Steel Sky


def _sky_section(messages: list[str]) -> bytes:
    """Build a text section as the game stores it, Huffman-coding each message from the table."""
    enc = {}
    for byte, code in SKY_HUFFMAN_00372:
        enc.setdefault(byte, code)
    nblocks = (len(messages) + 31) // 32
    messages = messages + [""] * (nblocks * 32 - len(messages))
    bitstr = ""
    skips = bytearray()
    sizes = []
    for b in range(nblocks):
        block_units = 0
        for m in messages[32 * b:32 * b + 32]:
            code = "".join(enc[c] for c in m.encode("latin-1")) + enc[0]
            units = (len(code) + 1) // 2
            if units > 127:
                units = (units + 7) // 8 * 8
                skips.append(0x80 | units >> 3)
            else:
                skips.append(units)
            bitstr += code.ljust(2 * units, "0")
            block_units += units
        sizes.append(block_units)
    skip_at = 4 + 2 * nblocks
    bits_at = skip_at + len(skips)
    bitstr = bitstr.ljust((len(bitstr) + 7) // 8 * 8, "0")
    blob = bytes(int(bitstr[k:k + 8], 2) for k in range(0, len(bitstr), 8))
    return struct.pack(f"<HH{nblocks}H", skip_at, bits_at, *sizes) + bytes(skips) + blob


def test_sky_text_section_decodes_messages_built_from_the_huffman_table() -> None:
    msgs = ["?", "What are YOU doing HERE?", "Don't make me JUMP like that!", ""] + [
        f"Line {k} of the test, Foster." for k in range(40)]
    msgs.append("A long one: " + "very " * 60 + "long.")  # > 127 units: the 8-unit skip form
    decoded = sky_text_section(_sky_section(msgs))
    assert [m.decode("latin-1") for m in decoded[:len(msgs)]] == msgs
    assert len(decoded) == 64  # two blocks of 32


def test_sky_huffman_table_is_prefix_free_and_complete() -> None:
    codes = [c for _, c in SKY_HUFFMAN_00372]
    assert sum(2.0 ** -len(c) for c in codes) == pytest.approx(1.0)
    assert not any(a != b and b.startswith(a) for a in codes for b in codes)


def _dnr_entry(num: int, offset: int, size: int, header_kept: bool, stored: bool) -> bytes:
    flags = size | (0 if header_kept else 0x400000) | (0x800000 if stored else 0)
    return struct.pack("<H", num) + offset.to_bytes(3, "little") + flags.to_bytes(3, "little")


def test_sky_disk_reads_stored_and_rnc_packed_files(tmp_path: Path) -> None:
    samples = bytes((128 + 60 * np.sin(np.arange(3000) / 5)).astype(np.uint8))
    total = 22 + len(samples)
    header = struct.pack("<11H", 0x80 | (total >> 16 << 8), 0, 0, 0, 0, 0, total & 0xFFFF, 0, 0, 0, 0)
    packed_file = header + rnc1_pack(samples)
    stored_file = struct.pack("<11H", 0, 0, 0, 0, 0, 0, 30, 0, 0, 0, 0) + b"plain data"
    dsk = tmp_path / "sky.dsk"
    dsk.write_bytes(stored_file + bytes(16 - len(stored_file) % 16) + packed_file)
    off2 = len(stored_file) + (16 - len(stored_file) % 16)
    dnr = tmp_path / "sky.dnr"
    dnr.write_bytes(struct.pack("<I", 2) + _dnr_entry(60600, 0, len(stored_file), True, True)
                    + _dnr_entry(50007, 0x800000 | off2 >> 4, len(packed_file), True, False))
    disk = SkyDisk(dnr, dsk)
    assert disk.read(60600) == stored_file
    speech = disk.read(50007)
    assert speech[:22] == header and sky_speech_samples(speech) == samples
    with pytest.raises(FormatError, match="50008"):
        disk.read(50008)


# ------------------------------------------------------------------------------- Drascula


def _drascula_dat(texts: dict[str, list[list[str]]], langs: int) -> bytes:
    out = bytearray(b"DRASCULA\x06")
    for size, count in zip((4, 4, 4, 2, 4, 2, 4, 2, 2, 20, 20, 10, 8), range(1, 14)):
        out += struct.pack(">H", count) + bytes(size * count)
    out += struct.pack(">H", langs)
    for name in DRASCULA_TEXT_ARRAYS:
        per_lang = texts.get(name, [[""] for _ in range(langs)])
        out += struct.pack(">H", len(per_lang[0]))
        for strings in per_lang:
            body = bytearray()
            for s in strings:
                raw = s.encode("latin-1") + b"\0"
                pad = 4 - (len(raw) + 2) % 4
                body += struct.pack(">H", len(raw) + pad + 2) + raw + bytes(pad)
            out += struct.pack(">H", len(body) + 2) + b"\0\0" + body
    return bytes(out)


def test_drascula_dat_text_arrays_by_language() -> None:
    dat = _drascula_dat({"texti": [["", "MASTER, THIS IS NOT WORKING", "YES"], ["", "AMO", "SI"]],
                         "textd": [["", "HEY IGOR"], ["", "OYE IGOR"]]}, langs=2)
    en = drascula_text_arrays(dat, lang=0)
    assert en["texti"] == [b"", b"MASTER, THIS IS NOT WORKING", b"YES"] and en["textd"][1] == b"HEY IGOR"
    assert drascula_text_arrays(dat, lang=1)["texti"][1] == b"AMO"
    assert set(en) == set(DRASCULA_TEXT_ARRAYS)
    with pytest.raises(FormatError, match="language 2"):
        drascula_text_arrays(dat, lang=2)
    with pytest.raises(FormatError, match="version"):
        drascula_text_arrays(dat[:8] + b"\x05" + dat[9:])


# ---------------------------------------------------------------------- transcripts and text


def test_asterisk_transcript_list() -> None:
    text = ("; Core Asterisk Sounds in English\n\nactivated: Activated.\ndigits/1: One.\n"
            "beep: [this is a simple beep tone]\n")
    assert parse_asterisk_transcripts(text) == {"activated": "Activated.", "digits/1": "One.",
                                                "beep": "[this is a simple beep tone]"}
    with pytest.raises(ValueError, match="path: text"):
        parse_asterisk_transcripts("no colon on this line\n")


@pytest.mark.parametrize(("raw", "expected"), [
    ("Press 1 to mute, 2 to lock.", ("press one to mute two to lock", "ok")),
    ("Dial 500 now", ("dial five hundred now", "ok")),
    ("press * to pause, press # to exit", ("press star to pause press pound to exit", "ok")),
    ("Please leave your message after the tone. (simple tone sound plays)",
     ("please leave your message after the tone", "ok")),
    ("[sound of monkeys screaming]", (None, "annotation only")),
    ("(10 seconds of silence)", (None, "annotation only")),
    ("extension 1234 and 28.8 kilobit", (None, "number")),
    ("3D audio enabled", (None, "number")),
    ("Spy on a PBX channel", (None, "acronym")),
    ("", (None, "empty")),
    ("...", (None, "empty")),
    ("Se\u00f1or, no", (None, "non-english letters")),
])
def test_clean_transcript_policy(raw: str, expected: tuple[str | None, str]) -> None:
    assert clean_transcript(raw, {"*": "star", "#": "pound"}) == expected


def test_all_capitals_game_text_is_not_an_acronym() -> None:
    assert clean_transcript("WHAT ARE YOU DOING HERE?", capitals_are_words=True) == ("what are you doing here", "ok")
    assert clean_transcript("WHAT ARE YOU DOING HERE?")[0] is None


def test_number_words() -> None:
    assert [number_words(n) for n in (0, 7, 13, 20, 42, 100, 105, 999)] == [
        "zero", "seven", "thirteen", "twenty", "forty two", "one hundred", "one hundred five",
        "nine hundred ninety nine"]
    with pytest.raises(ValueError, match="0-999"):
        number_words(1000)


# ------------------------------------------------------------- readers over fixture game folders


def test_drascula_reader_pairs_files_with_their_characters_text(tmp_path: Path) -> None:
    from real_sources import _load_drascula, drascula_items

    text = [""] * 84
    text[1], text[83] = "THAT'S THE SECOND BIGGEST DOOR", "LET ME OUT"
    textd = [""] * 84
    textd[5], textd[70], textd[82] = "HEY IGOR", "I AM BLIND", "A DRINK, SIR?"
    dat = tmp_path / "drascula.dat"
    dat.write_bytes(_drascula_dat({"text": [text], "textd": [textd], "texti": [["", "", "MASTER, 1993 TIMES"]]},
                                  langs=1))
    (tmp_path / "en").mkdir()
    voice = bytes(range(32)) + bytes([128, 200, 56] * 1000) + bytes(range(32))
    for name in ("1", "D5", "D70", "D82", "D83", "I2", "S1", "F1"):
        (tmp_path / "en" / f"{name}.ALS").write_bytes(voice)
    counts: Counter[str] = Counter()
    items = {i.utt_id: i for i in drascula_items(counts, game=tmp_path, dat=dat)}
    assert (items["H1"].speaker, items["H1"].text) == ("hacker", "that's the second biggest door")
    assert (items["D5"].speaker, items["D5"].text) == ("drascula", "hey igor")
    assert (items["D70"].speaker, items["D70"].text) == ("blind", "i am blind")
    assert (items["D82"].speaker, items["D82"].text) == ("bartender", "a drink sir")
    assert (items["D83"].speaker, items["D83"].text) == ("trunk", "let me out")
    assert items["I2"].text is None and items["F1"].text is None  # a number; no text array
    assert "S1" not in items and counts["sound effect"] == 1
    audio, rate = _load_drascula(items["D5"])
    assert rate == 11025 and len(audio) == 3000 and audio[0] == 0.0 and audio[1] == pytest.approx(72 / 128)


def test_steel_sky_reader_pairs_speech_files_with_text_numbers(tmp_path: Path) -> None:
    from real_sources import _load_sky, sky_items

    sections = {s: _sky_section(["?", f"Section {s} line one.", "Line TWO, lad!"]) for s in range(7)}
    samples = bytes([128, 150, 100] * 500) + bytes(64)
    total = 22 + len(samples)
    speech = struct.pack("<11H", 0x80, 0, 0, 0, 0, 0, total, 0, 0, 0, 0) + rnc1_pack(samples)
    files = {60600 + s: blob for s, blob in sections.items()}
    files.update({50001: speech, 50002: speech, 50000 + 600 + 1: speech, 50040: speech})
    dsk, dnr = bytearray(), struct.pack("<I", len(files))
    for num, blob in files.items():
        dsk += bytes(-len(dsk) % 16)
        dnr += _dnr_entry(num, 0x800000 | len(dsk) >> 4, len(blob), True, num >= 60600)
        dsk += blob
    (tmp_path / "sky.dsk").write_bytes(bytes(dsk))
    (tmp_path / "sky.dnr").write_bytes(dnr)
    counts: Counter[str] = Counter()
    items = {i.utt_id: i for i in sky_items(counts, game=tmp_path)}
    assert items["50001"].text == "section zero line one" and items["50001"].speaker == "s0b00"
    assert items["50002"].text == "line two lad"
    assert items["50601"].text == "section one line one" and items["50601"].speaker == "s1b00"
    assert items["50040"].text is None and counts["speech without text line (untranscribed)"] == 1
    audio, rate = _load_sky(items["50001"])
    assert rate == 11025 and len(audio) == 1500  # the 64 tail bytes dropped


def _qtbl(files: dict[str, bytes]) -> bytes:
    table = bytearray(b"QTBLCEM10\0\0\0\x01" + struct.pack(">H", len(files)))
    offset = len(table) + 21 * len(files)
    blobs = bytearray()
    for name, blob in sorted(files.items()):
        table += name.encode().ljust(12, b"\0") + struct.pack(">BII", 1, offset + len(blobs), len(blob))
        blobs += blob
    return bytes(table + blobs)


def test_queen_table_and_joes_lines() -> None:
    rooms, names, objects, descriptions = 2, 3, 9, 4
    jas = bytes(20) + struct.pack(">4H", rooms, names, objects, descriptions)
    lines = ([f"description {k}*03" for k in range(1, 5)] + ["name"] * names + ["room"] * rooms
             + ["verb"] * 12 + ["It doesn't seem to open*03", "No thanks.*14I'm a wild eyed loner...*03"]
             + [f"response {k}*01" for k in range(3, 41)])
    jas2 = "\r\n".join(lines).encode("latin-1")
    version, entries = queen_table(_qtbl({"QUEEN.JAS": jas, "QUEEN2.JAS": jas2, "JOE00011.SB": b"x"}))
    assert version == "CEM10" and entries["JOE00011.SB"].size == 1
    blob = _qtbl({"QUEEN.JAS": jas, "QUEEN2.JAS": jas2})
    e = queen_table(blob)[1]
    joe = queen_joe_lines(blob[e["QUEEN.JAS"].offset:][:e["QUEEN.JAS"].size],
                          blob[e["QUEEN2.JAS"].offset:][:e["QUEEN2.JAS"].size])
    assert joe[1] == "It doesn't seem to open*03"  # response 1 -> JOE0001
    assert queen_segments(joe[2]) == ["No thanks.", "I'm a wild eyed loner..."]  # JOE00021, JOE00022
    assert joe[40 + 3] == "description 3*03"  # object description 3 -> JOE0043
    with pytest.raises(FormatError, match="QTBL"):
        queen_table(b"PEM10...")


def test_mulaw_decode_matches_g711() -> None:
    from real_sources import mulaw_decode

    out = mulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00, 0xF0, 0x70]))
    assert out * 32768 == pytest.approx([0, 0, 32124, -32124, 120, -120])


def test_klettres_reader_keeps_letters_and_leaves_syllables_untranscribed(tmp_path: Path) -> None:
    from real_sources import klettres_items

    (tmp_path / "en" / "alpha").mkdir(parents=True)
    (tmp_path / "en" / "syllab").mkdir()
    for rel in ("alpha/A.ogg", "alpha/B.ogg", "syllab/ch.ogg"):
        (tmp_path / "en" / rel).write_bytes(b"")
    (tmp_path / "en" / "sounds.xml").write_text(
        '<klettres><alphabet><sound name="A" file="en/alpha/A.ogg" />\n<sound name="B" file="en/alpha/B.ogg" />'
        '</alphabet><syllables><sound name="CH" file="en/syllab/ch.ogg" /><sound name="X" file="en/syllab/x.ogg" />'
        '</syllables></klettres>')
    counts: Counter[str] = Counter()
    items = {i.utt_id: i.text for i in klettres_items(counts, folder=tmp_path)}
    assert items == {"en-alpha-A": "a", "en-alpha-B": "b", "en-syllab-ch": None}
    assert counts["listed file missing"] == 1


def test_other_language_sources_are_audio_only_with_speaker_codes(tmp_path: Path) -> None:
    from real_sources import fillets_items

    for rel in ("airplane/cs/let-m-divna.ogg", "airplane/cs/let-v-oko.ogg", "barrel/cs/bar-x-zvuk.ogg",
                "barrel/nl/bar-m-x.ogg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    counts: Counter[str] = Counter()
    got = {i.utt_id: (i.speaker, i.text) for i in fillets_items(counts, "cs", tmp_path)}
    assert got == {"airplane-let-m-divna": ("cs-m", None), "airplane-let-v-oko": ("cs-v", None),
                   "barrel-bar-x-zvuk": ("cs-barrel-x", None)}
    assert counts["audio only (untranscribed)"] == 3
