"""An evaluation folder: ``transcripts.tsv`` (``file name<TAB>reference text`` per line) and the
audio it names, as ``xlsr-stream eval``, ``language_model/tune_alpha_beta.py`` and
``benchmarks/bench_streaming_vs_offline.py`` read it."""

from __future__ import annotations

from pathlib import Path

__all__ = ["read_transcripts"]


def read_transcripts(directory: Path) -> list[tuple[Path, str]]:
    """(audio path, reference text as written) for every line of ``directory/transcripts.tsv``.

    Raises ValueError naming the file and line when the folder has no list, a line has no tab,
    or the list is empty.
    """
    tsv = directory / "transcripts.tsv"
    if not tsv.is_file():
        raise ValueError(f"{directory} has no transcripts.tsv (lines: file name<TAB>reference text)")
    items = []
    for lineno, line in enumerate(tsv.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        name, sep, ref = line.partition("\t")
        if not sep:
            raise ValueError(f"{tsv}:{lineno}: expected 'file name<TAB>reference text', got {line[:60]!r}")
        items.append((directory / name.strip(), ref.strip()))
    if not items:
        raise ValueError(f"{tsv} lists no utterances")
    return items
