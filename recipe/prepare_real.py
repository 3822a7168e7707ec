"""Real recorded English speech from installed Debian packages -> 16 kHz FLAC + transcripts.

    .venv/bin/python recipe/prepare_real.py [--sources asterisk,drascula,...] [--out DIR]

Default out: ``$XLSR_RECIPE_DIR/real``. The packages are in ``recipe/apt-real-speech.txt``;
``recipe/real_sources.py`` reads each one's own formats (nothing extracted goes into git).

Per source (output contract, the training code reads exactly this):

    <out>/<source>/<utt_id>.flac      16 kHz mono 16-bit
    <out>/<source>/transcripts.tsv    <file name>\\t<text>   (text as common.normalize_text
                                      gives it; numbers spelled out, see real_text.py)
    <out>/<source>/speakers.tsv       <file name>\\t<speaker id>  (hold speakers out by this)
    <out>/<source>/source.json        packages + versions, licences, utterances, hours, skips
    <out>/untranscribed/<source>/     the same for audio with no usable transcript (no
                                      transcripts.tsv): the teacher pseudo-labels it

Idempotent: a source whose source.json exists is skipped; a half-written one is redone (each
source is built in ``<out>/.tmp-<source>/`` and moved into place when complete).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cache_dir, log_line, write_json_atomic  # noqa: E402
from real_corpus import is_complete, write_source  # noqa: E402
from real_sources import SOURCES  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--sources", default=",".join(SOURCES),
                    help=f"comma-separated, from: {', '.join(SOURCES)}")
    ap.add_argument("--out", type=Path, default=None, help="default $XLSR_RECIPE_DIR/real")
    ap.add_argument("--jobs", type=int, default=1, help="decoder processes (the machine is shared)")
    ap.add_argument("--force", action="store_true", help="rebuild sources that are complete")
    args = ap.parse_args(argv)
    out: Path = args.out or cache_dir() / "real"
    names = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        ap.error(f"unknown source(s) {unknown}; known: {list(SOURCES)}")
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        if is_complete(out, name) and not args.force:
            log_line(out / "prepare_real.log", f"{name}: complete, skipped")
            continue
        try:
            write_source(SOURCES[name](), out, jobs=args.jobs)
        except (OSError, ValueError, RuntimeError) as e:  # a missing package must not stop the rest
            log_line(out / "prepare_real.log", f"{name}: FAILED {type(e).__name__}: {e}")
            failed.append(name)
    stats = {}
    for name in SOURCES:
        for d in (out / name, out / "untranscribed" / name):
            if (d / "source.json").exists():
                stats[name] = json.loads((d / "source.json").read_text())
                break
    write_json_atomic(out / "stats.json", stats)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
