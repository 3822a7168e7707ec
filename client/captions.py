"""Caption output for every client: a live terminal view, SRT / WebVTT subtitles, JSON Lines.

Everything here takes the engine's events (:class:`~streaming.events.Partial`,
:class:`~streaming.events.Final`) and writes text; none of it knows where the
events came from (in-process engine or a server).  ``xlsr-stream transcribe``,
``xlsr-stream mic`` and ``python -m demos.client`` all write through it.

Live view: the open partial is one line rewritten in place (``\\r`` + erase
line); a final replaces it with a committed line that carries its time span::

    [00:01.24 - 00:03.10] hello world
    [00:03.10 ...] and this is still chang
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from streaming.events import Event, Final, Partial, Word

__all__ = [
    "LIVE",
    "TRANSCRIPT",
    "CaptionRenderer",
    "CaptionStyle",
    "Cue",
    "JsonLog",
    "SubtitleLayout",
    "SubtitleWriter",
    "cues_from_final",
    "event_record",
    "format_clock",
    "srt_document",
    "srt_time",
    "terminal_lines",
    "vtt_time",
    "webvtt_document",
    "wrap_lines",
]

ERASE_LINE = "\r\x1b[2K"
DIM = "\x1b[2m"
RESET = "\x1b[0m"


@dataclass(frozen=True)
class SubtitleLayout:
    """How finals are cut into subtitle cues (the BBC and Netflix guidelines' numbers)."""

    # 42 characters is what fits a 16:9 frame at a readable size, and what players wrap at.
    max_line_chars: int = 42
    # Two lines cover at most a fifth of the picture; three hide faces.
    max_lines: int = 2
    # Longer and viewers re-read the cue; speech moves on while it stays.
    max_cue_s: float = 7.0
    # Shorter and a one-word cue flashes by unread.
    min_cue_s: float = 0.8

    def __post_init__(self) -> None:
        for name, low, high in (("max_line_chars", 10, 200), ("max_lines", 1, 10)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an int in {low}..{high}, got {value!r}")
        if not 0.5 <= self.max_cue_s <= 60.0:
            raise ValueError(f"max_cue_s must be in 0.5..60 s, got {self.max_cue_s}")
        if not 0.0 <= self.min_cue_s <= self.max_cue_s:
            raise ValueError(f"min_cue_s must be in 0..max_cue_s ({self.max_cue_s}) s, got {self.min_cue_s}")


# ------------------------------------------------------------------ time text
def _split(seconds: float) -> tuple[int, int, int, int]:
    ms_total = max(0, round(seconds * 1000))
    hours, rest = divmod(ms_total, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return hours, minutes, secs, ms


def format_clock(seconds: float) -> str:
    """Stream time for the live view: mm:ss.cc, with hours once there are any.

    >>> format_clock(83.456), format_clock(3723.4)
    ('01:23.46', '1:02:03.40')
    """
    cs_total = max(0, round(seconds * 100))
    hours, rest = divmod(cs_total, 360_000)
    minutes, rest = divmod(rest, 6000)
    secs, cs = divmod(rest, 100)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}.{cs:02d}"
    return f"{minutes:02d}:{secs:02d}.{cs:02d}"


def srt_time(seconds: float) -> str:
    """SubRip time: comma before the milliseconds.

    >>> srt_time(3723.4567)
    '01:02:03,457'
    """
    h, m, s, ms = _split(seconds)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def vtt_time(seconds: float) -> str:
    """WebVTT time: dot before the milliseconds.

    >>> vtt_time(1.5)
    '00:00:01.500'
    """
    h, m, s, ms = _split(seconds)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


# ---------------------------------------------------------------------- cues
@dataclass(frozen=True)
class Cue:
    """One subtitle on screen from ``start`` to ``end`` (seconds of the stream)."""

    start: float
    end: float
    lines: tuple[str, ...]


def wrap_lines(words: Sequence[str], width: int = SubtitleLayout.max_line_chars) -> list[str]:
    """Greedy word wrap; a word longer than ``width`` gets a line of its own.

    >>> wrap_lines("the quick brown fox jumps".split(), 10)
    ['the quick', 'brown fox', 'jumps']
    """
    lines: list[str] = []
    current = ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines


def cues_from_final(final: Final, layout: SubtitleLayout = SubtitleLayout()) -> list[Cue]:
    """Cut one final into cues that fit two lines and seven seconds, at word boundaries.

    With word timings each cue spans its own words; without them (a server
    that sends no words) the final's span is shared out by character count.

    >>> w = lambda t, a, b: Word(t, a, b, 1.0)
    >>> f = Final("hi there", (w("hi", 0.5, 0.7), w("there", 0.8, 1.1)), 0, 0.0, 1.5, "silence")
    >>> cues_from_final(f)
    [Cue(start=0.5, end=1.3, lines=('hi there',))]
    """
    words: list[Word] = list(final.words)
    if not words:
        texts = final.text.split()
        if not texts:
            return []
        span = max(final.end - final.start, 0.0)
        total = sum(len(t) + 1 for t in texts)
        t = final.start
        for text in texts:
            step = span * (len(text) + 1) / total
            words.append(Word(text, t, t + step, 1.0))
            t += step
    cues: list[Cue] = []
    group: list[Word] = []

    def flush() -> None:
        if group:
            start, end = group[0].start, max(group[-1].end, group[0].start + layout.min_cue_s)
            cues.append(Cue(start, end, tuple(wrap_lines([w.text for w in group], layout.max_line_chars))))
            group.clear()

    for word in words:
        candidate = [w.text for w in group] + [word.text]
        too_long = len(wrap_lines(candidate, layout.max_line_chars)) > layout.max_lines
        too_slow = bool(group) and word.end - group[0].start > layout.max_cue_s
        if group and (too_long or too_slow):
            flush()
        group.append(word)
    flush()
    # A cue stretched to the minimum must not run into the next one.
    fixed: list[Cue] = []
    for cue, nxt in zip(cues, cues[1:] + [None], strict=True):
        end = cue.end if nxt is None else min(cue.end, nxt.start)
        fixed.append(Cue(cue.start, max(end, cue.start + 0.001), cue.lines))
    return fixed


def srt_document(cues: Sequence[Cue]) -> str:
    """SubRip: numbered blocks, comma before milliseconds.

    >>> srt_document([Cue(0.5, 1.25, ("hello",)), Cue(2.0, 3.0, ("world",))])
    '1\\n00:00:00,500 --> 00:00:01,250\\nhello\\n\\n2\\n00:00:02,000 --> 00:00:03,000\\nworld\\n'
    """
    blocks = [
        f"{i}\n{srt_time(c.start)} --> {srt_time(c.end)}\n" + "\n".join(c.lines) + "\n"
        for i, c in enumerate(cues, 1)
    ]
    return "\n".join(blocks)


def webvtt_document(cues: Sequence[Cue]) -> str:
    """WebVTT: a header, dot before milliseconds; "-->" must not appear in text.

    >>> webvtt_document([Cue(0.5, 1.25, ("hello",))])
    'WEBVTT\\n\\n00:00:00.500 --> 00:00:01.250\\nhello\\n'
    """
    out = ["WEBVTT\n"]
    for c in cues:
        text = "\n".join(line.replace("-->", "->") for line in c.lines)
        out.append(f"{vtt_time(c.start)} --> {vtt_time(c.end)}\n{text}\n")
    return "\n".join(out)


class SubtitleWriter:
    """Keeps every final and rewrites SRT / WebVTT files after each one.

    Rewriting the whole (small) file means that it is complete and valid at
    any moment, even if the demo is killed; it is replaced atomically.
    """

    def __init__(
        self, *, srt: Path | None = None, vtt: Path | None = None, layout: SubtitleLayout = SubtitleLayout()
    ) -> None:
        self.srt, self.vtt, self.layout = srt, vtt, layout
        self.cues: list[Cue] = []

    def add(self, final: Final) -> None:
        new = cues_from_final(final, self.layout)
        if not new:
            return
        if self.cues and new[0].start < self.cues[-1].end:
            last = self.cues[-1]
            self.cues[-1] = Cue(last.start, max(new[0].start, last.start + 0.001), last.lines)
        self.cues.extend(new)
        self.write()

    def write(self) -> None:
        if self.srt is not None:
            _replace(self.srt, srt_document(self.cues))
        if self.vtt is not None:
            _replace(self.vtt, webvtt_document(self.cues))


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def event_record(event: Event) -> dict[str, Any]:
    """One event as a JSON object: the one schema of every JSON Lines output here.

    Words are spelled as both wire protocols spell them (``word``, ``conf``).

    >>> event_record(Final("hi", (Word("hi", 0.1, 0.3, 0.9),), 0, 0.0, 0.5, "finish"))
    {'type': 'final', 'segment': 0, 'start': 0.0, 'end': 0.5, 'text': 'hi', 'reason': 'finish', \
'words': [{'word': 'hi', 'start': 0.1, 'end': 0.3, 'conf': 0.9}]}
    """
    record: dict[str, Any] = {
        "type": "final" if isinstance(event, Final) else "partial",
        "segment": event.segment,
        "start": round(event.start, 3),
        "end": round(event.end, 3),
        "text": event.text,
    }
    if isinstance(event, Final):
        record["reason"] = event.reason
    else:
        record["stable_text"] = event.stable_text
    record["words"] = [
        {"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3), "conf": round(w.confidence, 4)}
        for w in event.words
    ]
    return record


class JsonLog:
    """JSON Lines: one object per final (and per partial with ``partials=True``), flushed each time.

    Writes to ``out``: a path (the file is created) or an open text stream
    (stdout, left open by :meth:`close`).  Each line is :func:`event_record`
    plus ``wall_time`` (Unix seconds at writing) and the ``extra`` fields given
    to :meth:`add`.
    """

    def __init__(self, out: Path | TextIO, *, partials: bool = False) -> None:
        self.partials = partials
        self._owned = isinstance(out, Path)
        self._file: TextIO = out.open("w", encoding="utf-8") if isinstance(out, Path) else out

    def add(self, event: Event, **extra: Any) -> None:
        if isinstance(event, Partial) and not self.partials:
            return
        record = {**event_record(event), "wall_time": round(time.time(), 3), **extra}
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._owned:
            self._file.close()


# --------------------------------------------------------------- live view
@dataclass(frozen=True)
class CaptionStyle:
    """How the live view spells a committed final and the open partial."""

    # Between a final's start and end clock: "[00:01.24 - 00:03.10] hello".
    span: str = " - "
    # Before the open partial's text; ``{start}`` is the segment's start clock.
    partial_head: str = "[{start} ...] "


# The microphone and the websocket client: the partial says where its segment began.
LIVE = CaptionStyle()
# ``xlsr-stream transcribe``: a file's transcript; the partial is only a progress line.
TRANSCRIPT = CaptionStyle(span=" \u2192 ", partial_head="  \u2026 ")


class CaptionRenderer:
    """Writes captions to a terminal: partial rewritten in place, finals committed.

    With ``partials=False`` (output is not a terminal, e.g. piped to a file)
    only finals are written, one line each, so the output stays clean text.
    With ``color=True`` the part of a partial that may still change is dim and
    its stable prefix (``Partial.stable_text``) normal, so readers see what is settled.
    """

    def __init__(
        self,
        out: TextIO,
        *,
        partials: bool = True,
        width: int | None = None,
        color: bool = False,
        style: CaptionStyle = LIVE,
    ) -> None:
        self.out = out
        self.partials = partials
        self.color = color
        self.style = style
        self.width = width or shutil.get_terminal_size((100, 24)).columns
        self._partial_shown = False
        self._last_partial: str | None = None
        self.committed: list[str] = []

    def show(self, event: Event) -> None:
        if isinstance(event, Final):
            self._commit(event)
        elif self.partials:
            self._partial(event)

    def _commit(self, final: Final) -> None:
        text = final.text.strip()
        prefix = ERASE_LINE if self._partial_shown else ""
        self._partial_shown = False
        self._last_partial = None
        if not text:
            self.out.write(prefix)
        else:
            line = f"[{format_clock(final.start)}{self.style.span}{format_clock(final.end)}] {text}"
            self.committed.append(line)
            self.out.write(prefix + line + "\n")
        self.out.flush()

    def _partial(self, partial: Partial) -> None:
        text = partial.text.strip()
        if not text and not self._partial_shown:
            return
        head = self.style.partial_head.format(start=format_clock(partial.start))
        if head + text == self._last_partial:
            return  # vosk servers repeat the partial once per audio block
        self._last_partial = head + text
        stable = partial.stable_text.strip()
        settled = len(stable) if self.color and stable and text.startswith(stable) else 0
        room = max(10, self.width - len(head) - 1)  # one line: a wrapped partial cannot be erased
        if len(text) > room:
            cut = len(text) - (room - 3)
            text = "..." + text[cut:]
            settled = 3 + settled - cut if settled > cut else 0
        body = text
        if self.color and text[settled:]:
            body = text[:settled] + DIM + text[settled:] + RESET
        self.out.write(ERASE_LINE + (head + body if text else ""))
        self.out.flush()
        self._partial_shown = bool(text)

    def close(self) -> None:
        if self._partial_shown:
            self.out.write(ERASE_LINE)
            self._partial_shown = False
        self.out.flush()


def terminal_lines(output: str) -> list[str]:
    """What a terminal shows after ``output``: applies ``\\r``, erase-line and newlines.

    Only the control sequences :class:`CaptionRenderer` writes are understood;
    colours are dropped.

    >>> terminal_lines("[a] one\\n" + ERASE_LINE + "par" + ERASE_LINE + "partial")
    ['[a] one', 'partial']
    """
    lines = [""]
    i = 0
    while i < len(output):
        if output.startswith("\x1b[2K", i):
            lines[-1] = ""
            i += 4
        elif output.startswith("\x1b[", i):  # colours (SGR): invisible
            i = output.index("m", i) + 1
        elif output[i] == "\r":
            lines[-1] = ""  # our renderer always erases after a carriage return
            i += 1
        elif output[i] == "\n":
            lines.append("")
            i += 1
        else:
            lines[-1] += output[i]
            i += 1
    if lines and lines[-1] == "":
        lines.pop()
    return lines
