"""Step 1: collect clean English sentences from Debian text packages and split train / held-out.

Sources (see apt-packages.txt): fortunes, fortunes-min, bible-kjv-text (via the ``bible`` tool),
sword-text-web (zText module read directly), wordnet-base (gloss examples), jargon-text.
Sentences are lowercased, reduced to letters/apostrophes, kept at 5-25 words; any sentence that
contained digits is dropped (we cannot speak "42" consistently). The held-out split is by a stable
hash of the normalised sentence, so reruns give the same split.

Writes ``$XLSR_RECIPE_DIR/text/{train,dev}.tsv`` (``transcript<TAB>speakable text`` a line) and
``stats.json``.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import html
import re
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

from common import log_line, text_dir, write_json_atomic

from scoring import has_digits, normalize_to_alphabet

_SENT_SPLIT = re.compile(r"(?<=[.!?;:])\s+|\n\s*\n")
_TAGS = re.compile(r"<[^>]+>")


def _split_sentences(block: str) -> Iterator[str]:
    for s in _SENT_SPLIT.split(block):
        s = s.strip()
        if s:
            yield s


def fortunes() -> Iterator[str]:
    for path in sorted(glob.glob("/usr/share/games/fortunes/*")):
        if "." in Path(path).name or Path(path).is_dir():
            continue
        try:
            raw = Path(path).read_text(errors="ignore")
        except OSError:
            continue
        for entry in raw.split("\n%\n"):
            # drop attribution lines ("-- Mark Twain") and indented quote layout
            lines = [ln for ln in entry.splitlines() if not ln.strip().startswith("--")]
            yield from _split_sentences(" ".join(ln.strip() for ln in lines))


def bible_kjv() -> Iterator[str]:
    try:
        out = subprocess.run(["bible", "-l10000", "gen1:1-rev22:21"], capture_output=True,
                             text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        return
    for line in out.splitlines():
        m = re.match(r"\s*\d+\s+(.*)", line)
        if m:
            yield from _split_sentences(m.group(1))


def sword_web() -> Iterator[str]:
    base = "/usr/share/sword/modules/texts/ztext/engWEB2015eb/"
    for testament in ("ot", "nt"):
        try:
            bzs = Path(base + testament + ".bzs").read_bytes()
            bzz = Path(base + testament + ".bzz").read_bytes()
        except OSError:
            continue
        for k in range(0, len(bzs) - 11, 12):
            off, size, _usize = struct.unpack("<III", bzs[k:k + 12])
            try:
                text = zlib.decompress(bzz[off:off + size]).decode("utf-8", "ignore")
            except zlib.error:
                continue
            text = re.sub(r"<note.*?</note>", " ", text, flags=re.S)
            text = re.sub(r"<title.*?</title>", " ", text, flags=re.S)
            text = html.unescape(_TAGS.sub("", text)).replace("\x00", " ")
            yield from _split_sentences(text)


def wordnet() -> Iterator[str]:
    for path in glob.glob("/usr/share/wordnet/data.*"):
        for line in Path(path).read_text(errors="ignore").splitlines():
            if line.startswith(" ") or "|" not in line:
                continue
            yield from re.findall(r'"([^"]+)"', line.split("|", 1)[1])


def jargon() -> Iterator[str]:
    path = "/usr/share/doc/jargon-text/jargon.txt.gz"
    try:
        raw = gzip.open(path, "rt", errors="ignore").read()
    except OSError:
        return
    for para in raw.split("\n\n"):
        yield from _split_sentences(" ".join(para.split()))


SOURCES = {"fortunes": fortunes, "bible_kjv": bible_kjv, "sword_web": sword_web,
           "wordnet": wordnet, "jargon": jargon}


_ABBREV = re.compile(r"\b(mr|mrs|ms|dr|st|jr|sr|vs|etc|prof|co|inc|ltd|no|vol|fig)\.|[&%@#$+=/\\]", re.I)
_NOT_SPEAKABLE = re.compile(r"[^A-Za-z' ,.;:!?-]+")


def speakable(raw: str, norm: str) -> str:
    """Text handed to the synthesizers: the original casing and clause punctuation (for prosody),
    but nothing a TTS front end could expand differently from our transcript. Falls back to the
    normalised transcript when the two would not agree. All-caps words ("LORD") are re-cased so
    they are read as words, not spelled."""
    t = _NOT_SPEAKABLE.sub(" ", raw.replace("\u2019", "'"))
    t = re.sub(r"\b[A-Z]{2,}\b", lambda m: m.group(0).capitalize(), t)
    t = re.sub(r"\s+", " ", t).strip()
    t = re.sub(r"^[^A-Za-z]+", "", t)
    return t if normalize_to_alphabet(t) == norm else norm


def is_dev(sentence: str, dev_fraction: float) -> bool:
    h = int(hashlib.sha1(sentence.encode()).hexdigest()[:8], 16)
    return h < dev_fraction * 0xFFFFFFFF


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--min-words", type=int, default=5)
    ap.add_argument("--max-words", type=int, default=25)
    ap.add_argument("--dev-fraction", type=float, default=0.01,
                    help="share of sentences held out from training (by stable hash)")
    ap.add_argument("--limit", type=int, default=0, help="keep at most N sentences (smoke runs)")
    ap.add_argument("--force", action="store_true", help="rebuild even if train.tsv exists")
    args = ap.parse_args(argv)

    out = text_dir()
    out.mkdir(parents=True, exist_ok=True)
    if (out / "train.tsv").exists() and not args.force:
        print(f"{out}/train.tsv exists; --force to rebuild")
        return 0
    seen: set[str] = set()
    per_source: dict[str, int] = {}
    train: list[str] = []
    dev: list[str] = []
    for name, fn in SOURCES.items():
        n = 0
        for raw in fn():
            if has_digits(raw):  # normalize_to_alphabet would drop them from the transcript
                continue
            if _ABBREV.search(raw):
                continue
            s = normalize_to_alphabet(raw)
            nw = len(s.split())
            if nw < args.min_words or nw > args.max_words or s in seen:
                continue
            seen.add(s)
            (dev if is_dev(s, args.dev_fraction) else train).append(s + "\t" + speakable(raw, s))
            n += 1
            if args.limit and len(seen) >= args.limit:
                break
        per_source[name] = n
        if args.limit and len(seen) >= args.limit:
            break
    if args.limit and not dev:
        dev.append(train.pop())
    (out / "train.tsv").write_text("\n".join(train) + "\n")
    (out / "dev.tsv").write_text("\n".join(dev) + "\n")
    stats = {"train": len(train), "dev": len(dev), "per_source": per_source,
             "min_words": args.min_words, "max_words": args.max_words}
    write_json_atomic(out / "stats.json", stats)
    log_line(out / "prepare_text.log", f"sentences {stats}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
