"""prepare_real.py's output contract on a fixture source: 16 kHz FLAC, transcripts.tsv,
speakers.tsv, source.json, untranscribed/ for audio without text, idempotent reruns."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "recipe"))
import prepare_real  # noqa: E402
import real_sources  # noqa: E402
from real_corpus import Item, Source, write_source  # noqa: E402


def _tone_8k(item: Item) -> tuple[np.ndarray, int]:
    seconds, freq = float(item.locator[0]), float(item.locator[1])
    t = np.arange(int(seconds * 8000)) / 8000
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 8000


def _fixture_items(counts: Counter[str]) -> list[Item]:
    counts["text: number"] += 2  # as a reader reports lines it dropped
    return [
        Item("line-1", "igor", "master this is not working", (1.0, 300)),
        Item("line-2", "drascula", "hey igor", (0.5, 440)),
        Item("grunt-1", "igor", None, (0.8, 200)),  # no usable transcript
        Item("click", "igor", "too short", (0.05, 300)),  # under MIN_SECONDS: dropped
    ]


def _fixture() -> Source:
    return Source(name="fixture", packages=("dpkg",), list_items=_fixture_items, load=_tone_8k,
                  notes="test tones")


def test_write_source_follows_the_output_contract(tmp_path: Path) -> None:
    summary = write_source(_fixture(), tmp_path)
    src = tmp_path / "fixture"
    rows = [ln.split("\t") for ln in (src / "transcripts.tsv").read_text().splitlines()]
    assert rows == [["line-1.flac", "master this is not working"], ["line-2.flac", "hey igor"]]
    speakers = [ln.split("\t") for ln in (src / "speakers.tsv").read_text().splitlines()]
    assert speakers == [["line-1.flac", "igor"], ["line-2.flac", "drascula"]]
    audio, rate = sf.read(src / "line-1.flac", dtype="int16")
    info = sf.info(src / "line-1.flac")
    assert rate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    assert len(audio) == pytest.approx(16000, abs=2)  # 1 s at 8 kHz resampled to 16 kHz
    spec = np.abs(np.fft.rfft(audio.astype(np.float64)))
    assert np.fft.rfftfreq(len(audio), 1 / 16000)[np.argmax(spec)] == pytest.approx(300, abs=2)

    un = tmp_path / "untranscribed" / "fixture"
    assert sorted(p.name for p in un.iterdir()) == ["grunt-1.flac", "source.json", "speakers.tsv"]
    assert (un / "speakers.tsv").read_text() == "grunt-1.flac\tigor\n"

    meta = json.loads((src / "source.json").read_text())
    assert meta == json.loads((un / "source.json").read_text()) == summary
    assert meta["utterances"] == 2 and meta["speakers"] == 2
    assert meta["hours"] == pytest.approx(1.5 / 3600, abs=1e-4)
    assert meta["untranscribed_utterances"] == 1
    assert meta["skipped"] == {"text: number": 2, "too short or silent": 1}
    pkg = meta["packages"][0]
    assert pkg["package"] == "dpkg" and pkg["version"]  # read from dpkg, every Debian has it
    assert "license" in pkg and pkg["copyright_file"] == "/usr/share/doc/dpkg/copyright"
    assert not list(tmp_path.glob(".tmp-*"))


def test_item_rejects_ids_and_text_that_would_break_the_tsv() -> None:
    with pytest.raises(ValueError, match="utt_id"):
        Item("a b", "s", "text", ())
    with pytest.raises(ValueError, match="speaker"):
        Item("a", "x\ty", "text", ())
    with pytest.raises(ValueError, match="single line"):
        Item("a", "s", "two\nlines", ())


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    src = Source("dup", ("dpkg",), lambda c: [Item("a", "s", "x", (1.0, 300))] * 2, _tone_8k)
    with pytest.raises(ValueError, match="unique"):
        write_source(src, tmp_path)


def test_command_is_idempotent_and_reports_unknown_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(real_sources.SOURCES, "fixture", _fixture)
    assert prepare_real.main(["--sources", "fixture", "--out", str(tmp_path)]) == 0
    first = (tmp_path / "fixture" / "line-1.flac").stat().st_mtime_ns
    assert prepare_real.main(["--sources", "fixture", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fixture" / "line-1.flac").stat().st_mtime_ns == first
    assert "fixture: complete, skipped" in capsys.readouterr().out
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["fixture"]["utterances"] == 2
    # a half-written source (no source.json) is rebuilt
    (tmp_path / "fixture" / "source.json").unlink()
    (tmp_path / "untranscribed" / "fixture" / "source.json").unlink()
    assert prepare_real.main(["--sources", "fixture", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fixture" / "source.json").exists()
    with pytest.raises(SystemExit):
        prepare_real.main(["--sources", "nosuch", "--out", str(tmp_path)])
    assert "unknown source" in capsys.readouterr().err


def test_a_source_whose_package_is_missing_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Source:
        return Source("broken", ("dpkg",), lambda c: real_sources.asterisk_items(
            c, sounds=tmp_path / "nothing", transcripts=tmp_path / "none.gz"), _tone_8k)

    monkeypatch.setitem(real_sources.SOURCES, "broken", broken)
    monkeypatch.setitem(real_sources.SOURCES, "fixture", _fixture)
    assert prepare_real.main(["--sources", "broken,fixture", "--out", str(tmp_path)]) == 1
    assert (tmp_path / "fixture" / "source.json").exists()
    assert "broken: FAILED" in (tmp_path / "prepare_real.log").read_text()


def test_duration_correlation_tells_paired_from_shifted(tmp_path: Path) -> None:
    from check_real import duration_correlation

    rng = np.random.default_rng(0)
    words = ["go", "forward ten meters", "yes", "the cat sat on the mat today", "no", "turn left now please"]
    items = [Item(f"u{k}", "s", " ".join(rng.choice(words, 2)), ()) for k in range(12)]

    def speak(item: Item) -> tuple[np.ndarray, int]:  # ~70 ms of tone per character, like speech
        n = int(0.07 * 8000 * len(item.text or ""))
        return (0.2 * np.sin(np.arange(n) / 3)).astype(np.float32), 8000

    write_source(Source("corr", ("dpkg",), lambda c: items, speak), tmp_path)
    own, shifted = duration_correlation(tmp_path / "corr")
    assert own > 0.99 and shifted < 0.8
