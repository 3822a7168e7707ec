"""The real-speech output contract: ``Item``/``Source`` (what a reader lists) and
``write_source`` (decode, resample to 16 kHz, write FLAC + tsv + source.json atomically).

The layout it writes is documented in ``prepare_real.py`` (the command) and recipe/README.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr
from common import SAMPLE_RATE, log_line, write_json_atomic

_UTT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Shorter than this, or never louder than this, a clip holds no word worth training on.
MIN_SECONDS = 0.2
MIN_PEAK = 1e-3


@dataclass(frozen=True)
class Item:
    """One utterance as listed by a source, before its audio is decoded (cheap, picklable)."""

    utt_id: str  # file stem, unique within the source: [A-Za-z0-9][A-Za-z0-9_.-]*
    speaker: str  # best speaker id the data gives (a character, a voice actor, a voice folder)
    text: str | None  # normalised transcript; None -> untranscribed/
    locator: tuple[str | int, ...]  # what the source's loader needs (path, offset, ...)

    def __post_init__(self) -> None:
        if not _UTT_ID.match(self.utt_id):
            raise ValueError(f"utt_id must match {_UTT_ID.pattern}, got {self.utt_id!r}")
        if "\t" in self.speaker or "\n" in self.speaker or not self.speaker:
            raise ValueError(f"speaker must be a non-empty id without tabs/newlines, got {self.speaker!r}")
        if self.text is not None and (not self.text or "\t" in self.text or "\n" in self.text):
            raise ValueError(f"text must be a non-empty single line, got {self.text!r}")


Loader = Callable[[Item], tuple[npt.NDArray[np.float32], int]]  # -> (float32 mono samples in [-1, 1], rate)


@dataclass(frozen=True)
class Source:
    name: str  # folder name under <out>
    packages: tuple[str, ...]  # Debian packages read (versions and licences go to source.json)
    list_items: Callable[[Counter[str]], list[Item]]  # counts every skipped line by reason
    load: Loader  # module-level function, so worker processes can run it
    notes: str = ""  # what the speaker ids mean, what was left out


def to_16k_int16(samples: npt.NDArray[np.float32], rate: int) -> npt.NDArray[np.int16]:
    """float mono at ``rate`` -> int16 at 16 kHz (soxr HQ): 11,025 samples at 11,025 Hz -> 16,000."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {x.shape}")
    if rate != SAMPLE_RATE:
        x = np.asarray(soxr.resample(x, rate, SAMPLE_RATE, quality="HQ"), dtype=np.float32)
    out: npt.NDArray[np.int16] = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
    return out


def _decode(job: tuple[Loader, Item]) -> npt.NDArray[np.int16]:
    load, item = job
    samples, rate = load(item)
    return to_16k_int16(samples, rate)


def _decoded(source: Source, items: list[Item], jobs: int) -> Iterator[tuple[Item, npt.NDArray[np.int16]]]:
    work = [(source.load, it) for it in items]
    if jobs <= 1:
        for job in work:
            yield job[1], _decode(job)
        return
    with ProcessPoolExecutor(jobs) as pool:
        yield from zip(items, pool.map(_decode, work, chunksize=8))


def package_info(pkg: str) -> dict[str, object]:
    """Version (dpkg) and licence (the ``Files: *`` paragraph of its DEP-5 copyright file)."""
    try:
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                                 text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        version = None
    path = Path("/usr/share/doc") / pkg / "copyright"
    info: dict[str, object] = {"package": pkg, "version": version, "copyright_file": str(path)}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        info["license"] = None
        return info
    paragraphs = re.split(r"\n\s*\n", text)
    main = next((p for p in paragraphs if re.search(r"^Files:\s*\*\s*$", p, re.M)), None)
    if main is not None:
        lic = re.search(r"^License:\s*(.+)$", main, re.M)
        holder = re.search(r"^Copyright:\s*(.+)$", main, re.M)
        info["license"] = lic.group(1).strip() if lic else None
        info["copyright"] = holder.group(1).strip() if holder else None
    else:  # not machine-readable: keep the first copyright statement as written
        m = re.search(r"Copyright.*", text)
        info["license"] = "see copyright_file (not DEP-5)"
        info["copyright"] = m.group(0).strip()[:200] if m else None
    info["all_licenses"] = sorted(set(re.findall(r"^License:\s*(\S+)", text, re.M)))
    return info


def _write_tsv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("".join(f"{a}\t{b}\n" for a, b in rows))


def is_complete(out: Path, name: str) -> bool:
    return (out / name / "source.json").exists() or (out / "untranscribed" / name / "source.json").exists()


def write_source(source: Source, out: Path, jobs: int = 1, log: Path | None = None) -> dict[str, object]:
    """Decode every item of ``source`` into the output contract under ``out``; -> the summary."""
    log = log or out / "prepare_real.log"
    counts: Counter[str] = Counter()
    items = source.list_items(counts)
    ids = Counter(it.utt_id for it in items)
    dup = [k for k, v in ids.items() if v > 1]
    if dup:
        raise ValueError(f"source {source.name}: utterance ids must be unique, repeated: {dup[:5]}")
    tmp = out / f".tmp-{source.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    dirs = {True: tmp / "transcribed", False: tmp / "untranscribed"}
    for d in dirs.values():
        d.mkdir(parents=True)
    rows: dict[bool, list[tuple[str, str, str | None]]] = {True: [], False: []}
    seconds = {True: 0.0, False: 0.0}
    speakers: dict[bool, set[str]] = {True: set(), False: set()}
    for k, (item, audio) in enumerate(_decoded(source, items, jobs)):
        if len(audio) < MIN_SECONDS * SAMPLE_RATE or np.abs(audio).max(initial=0) < MIN_PEAK * 32767:
            counts["too short or silent"] += 1
            continue
        has_text = item.text is not None
        fname = f"{item.utt_id}.flac"
        sf.write(dirs[has_text] / fname, audio, SAMPLE_RATE, subtype="PCM_16")
        rows[has_text].append((fname, item.speaker, item.text))
        seconds[has_text] += len(audio) / SAMPLE_RATE
        speakers[has_text].add(item.speaker)
        if (k + 1) % 500 == 0:
            log_line(log, f"{source.name}: {k + 1}/{len(items)} decoded")
    summary: dict[str, object] = {
        "source": source.name,
        "packages": [package_info(p) for p in source.packages],
        "utterances": len(rows[True]),
        "hours": round(seconds[True] / 3600, 4),
        "speakers": len(speakers[True]),
        "untranscribed_utterances": len(rows[False]),
        "untranscribed_hours": round(seconds[False] / 3600, 4),
        "untranscribed_speakers": len(speakers[False]),
        "skipped": dict(sorted(counts.items())),
        "text_policy": "real_text.clean_transcript: numbers 0-999 spelled out, others dropped",
        "notes": source.notes,
    }
    finals = {True: out / source.name, False: out / "untranscribed" / source.name}
    for has_text in (True, False):
        final = finals[has_text]
        shutil.rmtree(final, ignore_errors=True)
        if not rows[has_text]:
            continue
        d = dirs[has_text]
        if has_text:
            _write_tsv(d / "transcripts.tsv", [(f, t or "") for f, _, t in rows[True]])
        _write_tsv(d / "speakers.tsv", [(f, s) for f, s, _ in rows[has_text]])
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(d, final)
    # source.json last: its presence marks the source complete
    for has_text in (True, False):
        if rows[has_text]:
            write_json_atomic(finals[has_text] / "source.json", summary)
    if not rows[True] and not rows[False]:
        raise RuntimeError(f"source {source.name}: no utterance survived; skipped {dict(counts)}")
    shutil.rmtree(tmp, ignore_errors=True)
    log_line(log, f"{source.name}: {summary['utterances']} utterances {summary['hours']} h "
                  f"{summary['speakers']} speakers; untranscribed {summary['untranscribed_utterances']} "
                  f"({summary['untranscribed_hours']} h); skipped {summary['skipped']}")
    return summary
