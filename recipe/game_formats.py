"""Decoders for the adventure-game data files that carry real recorded speech.

Formats were learned by reading ScummVM's engines (engines/sky, engines/drascula,
devtools/create_drascula, engines/queen); this is an independent implementation.

- RNC ProPack method 1 (``rnc1_unpack``): LZ77 + three Huffman tables per chunk, LSB-first bits
  read from 16-bit little-endian words, literal runs stored as plain bytes in the bit stream.
- Beneath a Steel Sky's ``sky.dnr`` / ``sky.dsk`` container (``SkyDisk``) and its Huffman-coded
  text sections (``sky_text_section``).
- Drascula's ``drascula.dat`` text tables (``drascula_text_arrays``).
- Flight of the Amazon Queen's ``queen.1c`` table (``queen_table``) and Joe's lines in
  QUEEN.JAS/QUEEN2.JAS (``queen_joe_lines``, ``queen_segments``); its speech is MP3.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path


class FormatError(ValueError):
    """A game data file does not have the layout its reader expects."""


# ------------------------------------------------------------------------ RNC ProPack method 1

RNC1_MAGIC = b"RNC\x01"
RNC_HEADER = 18  # magic(4) unpacked(BE32) packed(BE32) crc_unpacked(BE16) crc_packed(BE16) leeway chunks


def crc16(data: bytes) -> int:
    """CRC-16/ARC (reflected polynomial 0xA001, initial 0), as RNC headers store it.
    ``crc16(b"123456789") == 0xBB3D``."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class _RncBits:
    """RNC's bit reader: LSB-first over 16-bit LE words, always one word ahead (so a literal
    run, which is stored as plain bytes, starts right after the word being looked ahead at)."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos  # next byte to fetch a word from
        self.buf = 0
        self.n = 0  # valid bits in buf
        self._fill()

    def _word(self) -> int:
        lo = self.data[self.pos] if self.pos < len(self.data) else 0
        hi = self.data[self.pos + 1] if self.pos + 1 < len(self.data) else 0
        self.pos += 2
        return lo | hi << 8

    def _fill(self) -> None:
        while self.n < 16:
            self.buf |= self._word() << self.n
            self.n += 16

    def peek(self) -> int:
        return self.buf

    def read(self, k: int) -> int:
        v = self.buf & ((1 << k) - 1)
        self.buf >>= k
        self.n -= k
        self._fill()
        return v

    def raw_bytes(self, count: int) -> bytes:
        # The last fetched word is look-ahead only: the literal bytes begin where it began.
        self.n -= 16
        self.buf &= (1 << self.n) - 1
        self.pos -= 2
        if self.pos + count > len(self.data):
            raise FormatError(f"RNC literal run of {count} bytes passes the end of the data")
        out = self.data[self.pos:self.pos + count]
        self.pos += count
        self._fill()
        return out


def _rnc_table(bits: _RncBits) -> list[tuple[int, int, int]]:
    """One Huffman table: 5-bit symbol count, 4-bit code length per symbol; canonical codes
    (by length, then symbol) matched LSB-first -> [(bit-reversed code, length, symbol)]."""
    count = bits.read(5)
    lengths = [bits.read(4) for _ in range(count)]
    table = []
    code = 0  # MSB-first canonical code, left-aligned in 16 bits
    for length in range(1, 17):
        for sym, ln in enumerate(lengths):
            if ln != length:
                continue
            msb = code >> (16 - length)
            rev = int(f"{msb:0{length}b}"[::-1], 2)
            table.append((rev, length, sym))
            code += 1 << (16 - length)
    return table


def _rnc_value(bits: _RncBits, table: list[tuple[int, int, int]]) -> int:
    """Symbol s -> value: 0 and 1 as is, s >= 2 -> 2**(s-1) + (s-1) further bits."""
    window = bits.peek()
    for rev, length, sym in table:
        if window & ((1 << length) - 1) == rev:
            bits.read(length)
            if sym < 2:
                return sym
            return (1 << (sym - 1)) | bits.read(sym - 1)
    raise FormatError("RNC bit stream holds a code that is not in its Huffman table")


def rnc1_unpack(packed: bytes) -> bytes:
    """RNC ProPack method 1 block (18-byte header + data) -> the unpacked bytes, both CRCs checked."""
    if len(packed) < RNC_HEADER or packed[:4] != RNC1_MAGIC:
        raise FormatError(f"expected an RNC method-1 block (b'RNC\\x01'), got {packed[:4]!r}")
    unpacked_len, packed_len, crc_unpacked, crc_packed = struct.unpack(">IIHH", packed[4:16])
    chunks = packed[17]
    body = packed[RNC_HEADER:RNC_HEADER + packed_len]
    if len(body) != packed_len:
        raise FormatError(f"RNC header says {packed_len} packed bytes, {len(body)} present")
    if crc16(body) != crc_packed:
        raise FormatError("RNC packed-data CRC mismatch")
    bits = _RncBits(packed, RNC_HEADER)
    bits.read(2)  # lock and key flags: unused by these games
    out = bytearray()
    for _ in range(chunks):
        raw, dist, lens = _rnc_table(bits), _rnc_table(bits), _rnc_table(bits)
        steps = bits.read(16)
        for step in range(steps, 0, -1):
            n = _rnc_value(bits, raw)
            if n:
                out += bits.raw_bytes(n)
            if step > 1:
                back = _rnc_value(bits, dist) + 1
                length = _rnc_value(bits, lens) + 2
                if back > len(out):
                    raise FormatError(f"RNC match reaches {back} bytes back, only {len(out)} written")
                start = len(out) - back
                for i in range(length):  # may overlap what it writes
                    out.append(out[start + i])
    if len(out) != unpacked_len:
        raise FormatError(f"RNC header says {unpacked_len} unpacked bytes, got {len(out)}")
    if crc16(bytes(out)) != crc_unpacked:
        raise FormatError("RNC unpacked-data CRC mismatch")
    return bytes(out)


# ------------------------------------------------------------------ Beneath a Steel Sky (0.0372)

SKY_HEADER = 22  # every file starts with a 22-byte header of 11 LE uint16 ("DataFileHeader")


@dataclass(frozen=True)
class SkyEntry:
    offset: int
    size: int
    header_kept: bool  # flags bit 22 clear: the unpacked file keeps its 22-byte header
    stored: bool  # flags bit 23 set: not compressed


class SkyDisk:
    """``sky.dnr`` (index: LE32 count, then 8-byte entries: LE16 file number, LE24 offset whose
    bit 23 means "in units of 16 bytes", LE24 flags = size | bit 22 | bit 23) over ``sky.dsk``."""

    def __init__(self, dnr: Path, dsk: Path) -> None:
        raw = dnr.read_bytes()
        (count,) = struct.unpack_from("<I", raw, 0)
        if len(raw) < 4 + 8 * count:
            raise FormatError(f"{dnr}: index says {count} entries, file holds {(len(raw) - 4) // 8}")
        self.entries: dict[int, SkyEntry] = {}
        for k in range(count):
            e = raw[4 + 8 * k:12 + 8 * k]
            num = e[0] | e[1] << 8
            off = e[2] | e[3] << 8 | e[4] << 16
            flags = e[5] | e[6] << 8 | e[7] << 16
            if off & 0x800000:
                off = (off & 0x7FFFFF) << 4
            self.entries[num] = SkyEntry(off, flags & 0x3FFFFF, not flags & 0x400000, bool(flags & 0x800000))
        self.dsk = dsk

    def read(self, num: int) -> bytes:
        """File ``num`` as the game sees it (RNC-unpacked, header kept where the index says so)."""
        entry = self.entries.get(num)
        if entry is None:
            raise FormatError(f"file {num} is not in the sky.dnr index")
        with open(self.dsk, "rb") as f:
            f.seek(entry.offset)
            data = f.read(entry.size)
        if len(data) != entry.size:
            raise FormatError(f"file {num}: index says {entry.size} bytes, {len(data)} in sky.dsk")
        flag = data[0] | data[1] << 8
        if entry.stored or not flag & 0x80:
            return data
        body = rnc1_unpack(data[SKY_HEADER:])
        return data[:SKY_HEADER] + body if entry.header_kept else body


SKY_SPEECH_FIRST = 50000
SKY_TEXT_FIRST = 60600  # 8 sections per language; English first
SKY_SECTIONS = 8
# Speech file = SKY_SPEECH_FIRST + SKY_SECTION_SPEECH[section] + line, for text number
# section << 12 | line (sections 0-6 are spoken; 7 holds menu text).
SKY_SECTION_SPEECH = (0, 600, 1100, 2430, 3380, 4530, 5080)


def sky_speech_samples(file_data: bytes) -> bytes:
    """Speech file -> its unsigned 8-bit 11,025 Hz samples: the bytes after the header, up to
    the header's total size (s_tot_size, LE16 at byte 12)."""
    if len(file_data) < SKY_HEADER:
        raise FormatError(f"speech file of {len(file_data)} bytes has no 22-byte header")
    total = file_data[12] | file_data[13] << 8
    return file_data[SKY_HEADER:max(SKY_HEADER, min(total, len(file_data)))]


# Huffman code of the 0.0372 text, as (byte, code) with codes read MSB-first. Data from the game
# executable, which Debian does not ship; transcribed from the tree in ScummVM's
# engines/sky/hufftext.cpp (_huffTree_00372) into this form. Two codes give "!" there too.
SKY_HUFFMAN_00372: tuple[tuple[int, str], ...] = (
    (32, "000"), (101, "0010"), (97, "0011"), (114, "0111"), (111, "01000"), (115, "01001"),
    (116, "01010"), (110, "01011"), (46, "01100"), (105, "01101"), (117, "10001"), (109, "10010"),
    (65, "10011"), (84, "10111"), (0, "100000"), (69, "100001"), (108, "101000"), (73, "101001"),
    (100, "101010"), (82, "101011"), (78, "101100"), (83, "101101"), (99, "110001"),
    (68, "110010"), (103, "110011"), (77, "110111"), (79, "1100000"), (104, "1100001"),
    (76, "1101000"), (67, "1101001"), (112, "1101010"), (85, "1101011"), (33, "1101100"),
    (121, "1101101"), (72, "1110001"), (63, "1110010"), (98, "1110011"), (44, "1110101"),
    (71, "1110110"), (66, "1110111"), (80, "11100000"), (118, "11100001"), (39, "11101000"),
    (102, "11101001"), (70, "11110001"), (113, "11110010"), (119, "11110011"), (87, "11110101"),
    (74, "11110110"), (42, "11110111"), (86, "111100000"), (107, "111100001"), (75, "111101000"),
    (45, "111101001"), (122, "111110000"), (89, "111110001"), (106, "111110010"),
    (43, "111110011"), (41, "111110101"), (60, "111110111"), (81, "1111101000"),
    (133, "1111101001"), (90, "1111101100"), (139, "1111101101"), (138, "1111110001"),
    (135, "1111110010"), (58, "1111110011"), (35, "1111110101"), (145, "1111110111"),
    (149, "11111100000"), (126, "11111100001"), (127, "11111101000"), (93, "11111101001"),
    (120, "11111101100"), (88, "11111101101"), (50, "11111110001"), (49, "11111110011"),
    (61, "11111110101"), (134, "11111110110"), (94, "11111110111"), (136, "111111100000"),
    (96, "111111100001"), (48, "111111100100"), (131, "111111100101"), (47, "111111101000"),
    (40, "111111101001"), (51, "111111110000"), (57, "111111110001"), (152, "111111110010"),
    (52, "111111110011"), (92, "111111110101"), (34, "111111110110"), (144, "111111110111"),
    (125, "1111111101000"), (56, "1111111101001"), (38, "1111111110000"), (141, "1111111110001"),
    (53, "1111111110010"), (54, "1111111110011"), (146, "1111111110100"), (143, "1111111110101"),
    (142, "1111111110110"), (147, "1111111110111"), (128, "1111111111001"),
    (140, "11111111110000"), (55, "11111111110001"), (129, "11111111110100"),
    (153, "11111111110101"), (36, "11111111110110"), (64, "11111111110111"),
    (95, "11111111111001"), (62, "11111111111010"), (150, "11111111111011"), (9, "11111111111101"),
    (91, "111111111110000"), (154, "111111111110001"), (130, "111111111111000"),
    (37, "111111111111001"), (156, "111111111111100"), (151, "111111111111101"),
    (123, "111111111111110"), (148, "1111111111111110"), (33, "1111111111111111"),
)


def _sky_decoder(codes: tuple[tuple[int, str], ...]) -> dict[str, int]:
    table = {code: byte for byte, code in codes}
    for code in table:  # prefix-free, or decoding would be ambiguous
        for k in range(1, len(code)):
            if code[:k] in table:
                raise FormatError(f"Huffman code {code} has the code {code[:k]} as a prefix")
    return table


def sky_text_section(data: bytes, codes: tuple[tuple[int, str], ...] = SKY_HUFFMAN_00372) -> list[bytes]:
    """One text section file -> its messages (bytes, no terminator), index = line number.

    Layout: LE16 offset of the per-message skip table, LE16 offset of the bit data, then a LE16
    size per block of 32 messages. Positions count in 2-bit units; a skip byte with bit 7 set
    means (byte & 0x7F) * 8 units. Each message is Huffman coded, MSB first, up to a 0 byte.
    """
    if len(data) < 6:
        raise FormatError(f"text section of {len(data)} bytes has no header")
    table = _sky_decoder(codes)
    longest = max(len(c) for c in table)
    skip_at, bits_at = struct.unpack_from("<HH", data, 0)
    nblocks = (skip_at - 4) // 2
    block_sizes = struct.unpack_from(f"<{nblocks}H", data, 4)
    messages: list[bytes] = []
    block_start = 0
    for block in range(nblocks):
        pos = block_start
        for idx in range(32):
            messages.append(_sky_message(data, bits_at, pos, table, longest))
            skip = data[skip_at + block * 32 + idx]
            pos += (skip & 0x7F) << 3 if skip & 0x80 else skip
        block_start += block_sizes[block]
    return messages


def _sky_message(data: bytes, bits_at: int, pos: int, table: dict[str, int], longest: int) -> bytes:
    bit = bits_at * 8 + pos * 2  # absolute bit index, MSB first
    out = bytearray()
    code = ""
    end = len(data) * 8
    while bit < end:
        code += "1" if data[bit >> 3] >> (7 - (bit & 7)) & 1 else "0"
        bit += 1
        byte = table.get(code)
        if byte is None:
            if len(code) > longest:
                raise FormatError(f"bit string {code} matches no Huffman code")
            continue
        if byte == 0:
            return bytes(out)
        out.append(byte)
        code = ""
    raise FormatError("text message runs past the end of its section")


# --------------------------------------------------------------------------- Drascula (v6 .dat)

DRASCULA_DAT_VERSION = 6
# Fixed-size records before the texts, in file order: bytes per element of each counted array
# (char map, item locations, x/y polygons, verb bar, menu coordinates, frame x, candles,
# pianist x, drunk x, room pre-updates, room updates, room actions, talk sequences).
_DRASCULA_RECORDS = (4, 4, 4, 2, 4, 2, 4, 2, 2, 20, 20, 10, 8)
# The text arrays that follow, in file order (names as the engine calls them).
DRASCULA_TEXT_ARRAYS = ("text", "textd", "textb", "textbj", "texte", "texti", "textl", "textp",
                        "textt", "textvb", "textsys", "texthis", "textverbs", "textmisc", "textd1")


def drascula_text_arrays(data: bytes, lang: int = 0, alignment: int = 4) -> dict[str, list[bytes]]:
    """``drascula.dat`` -> {array name: its strings in language ``lang``} (0 = English).

    After the fixed records: u16 number of languages, then per text array a BE u16 string
    count and, per language, a BE u16 byte length, ``alignment - 2`` pad bytes and the strings,
    each as BE u16 (its size incl. these 2 bytes) + NUL-terminated bytes + padding.
    """
    if data[:8] != b"DRASCULA":
        raise FormatError(f"expected a drascula.dat (b'DRASCULA'), got {data[:8]!r}")
    if data[8] != DRASCULA_DAT_VERSION:
        raise FormatError(f"drascula.dat version {data[8]}, this reader knows {DRASCULA_DAT_VERSION}")
    pos = 9

    def u16() -> int:
        nonlocal pos
        if pos + 2 > len(data):
            raise FormatError(f"drascula.dat ends at byte {len(data)} inside a record")
        v = data[pos] << 8 | data[pos + 1]
        pos += 2
        return v

    for size in _DRASCULA_RECORDS:
        count = u16()
        pos += count * size
    langs = u16()
    if not 0 <= lang < langs:
        raise FormatError(f"language {lang} asked for, drascula.dat has {langs}")
    out: dict[str, list[bytes]] = {}
    for name in DRASCULA_TEXT_ARRAYS:
        count = u16()
        for k in range(langs):
            length = u16()
            block_end = pos + length
            if k != lang:
                pos = block_end
                continue
            pos += alignment - 2
            strings = []
            for _ in range(count):
                size = u16()
                strings.append(data[pos:pos + size - 2].split(b"\0", 1)[0])
                pos += size - 2
            if pos != block_end:
                raise FormatError(f"array {name}: strings end at byte {pos}, block at {block_end}")
            out[name] = strings
    return out


# --------------------------------------------------------- Flight of the Amazon Queen (CEM10)


@dataclass(frozen=True)
class QueenEntry:
    bundle: int
    offset: int
    size: int


def queen_table(head: bytes) -> tuple[str, dict[str, QueenEntry]]:
    """``queen.1c`` (the rebuilt, compressed CD version) starts with its own table: b"QTBL",
    6-byte version string ("CEM10" = English CD), 2 bytes, a compression byte, BE u16 count,
    then per file a 12-byte NUL-padded name, a bundle byte, BE u32 offset and BE u32 size."""
    if head[:4] != b"QTBL":
        raise FormatError(f"expected a rebuilt FOTAQ resource file (b'QTBL'), got {head[:4]!r}")
    version = head[4:10].split(b"\0", 1)[0].decode("ascii", "replace")
    (count,) = struct.unpack_from(">H", head, 13)
    if len(head) < 15 + 21 * count:
        raise FormatError(f"QTBL table of {count} entries needs {15 + 21 * count} bytes, got {len(head)}")
    entries = {}
    for k in range(count):
        e = head[15 + 21 * k:36 + 21 * k]
        name = e[:12].split(b"\0", 1)[0].decode("ascii", "replace")
        bundle, offset, size = struct.unpack(">BII", e[12:21])
        entries[name] = QueenEntry(bundle, offset, size)
    return version, entries


QUEEN_JOE_RESPONSES = 40  # Joe's fixed responses come before the object descriptions


def queen_joe_lines(jas: bytes, jas2: bytes) -> dict[int, str]:
    """QUEEN.JAS (its counts) + QUEEN2.JAS (its text lines) -> {Joe description number: text}.

    QUEEN.JAS, after 20 bytes, starts with BE u16 counts of rooms, names, objects and
    descriptions; QUEEN2.JAS lists object descriptions, object names, room names, 12 verbs and
    then Joe's 40 responses, one per CRLF line. Joe speaks response k as voice file
    ``JOE%04d`` of k and object description k as that of 40 + k.
    """
    rooms, names, _objects, descriptions = struct.unpack_from(">4H", jas, 20)
    lines = [ln.decode("latin-1") for ln in jas2.split(b"\r\n")]
    first_response = descriptions + names + rooms + 12
    if len(lines) < first_response + QUEEN_JOE_RESPONSES:
        raise FormatError(f"QUEEN2.JAS has {len(lines)} lines, its counts need {first_response + 40}")
    out = {k: lines[first_response + k - 1] for k in range(1, QUEEN_JOE_RESPONSES + 1)}
    out.update({QUEEN_JOE_RESPONSES + k: lines[k - 1] for k in range(1, descriptions + 1)})
    return out


def queen_segments(line: str) -> list[str]:
    """A spoken line is segments each ended by ``*NN`` (a speaking-time code); segment i is
    voice file <prefix><i>. ``"No thanks.*14I'm a loner...*03"`` -> ["No thanks.", "I'm a loner..."]."""
    parts = re.split(r"\*\d+", line)
    if parts and not parts[-1].strip():
        parts = parts[:-1]
    return parts
