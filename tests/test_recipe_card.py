"""The model card's engine-evaluation section: written between markers, replaced in place."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "recipe"))
from evaluate import CARD_BEGIN, CARD_END, write_card_section  # noqa: E402


def _rows(wer: float) -> list[dict]:
    return [{"set": "librivox", "decoder": dec, "mode": mode, "wer": wer, "cer": wer / 2, "utterances": 5}
            for dec in ("greedy", "LM") for mode in ("streaming", "offline")]


def test_card_section_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    card = tmp_path / "README.md"
    card.write_text(f"# card\n\n{CARD_BEGIN}\nnot measured\n{CARD_END}\n\n## Speed\nfast\n")
    write_card_section(tmp_path, _rows(0.5), "note one")
    write_card_section(tmp_path, _rows(0.25), "note two")
    text = card.read_text()
    assert text.startswith("# card\n") and text.endswith("## Speed\nfast\n")
    assert "note one" not in text and "not measured" not in text and text.count(CARD_BEGIN) == 1
    assert "| librivox | 5 | LM | 25.0% | 25.0% | 12.5% | 12.5% |" in text


def test_card_without_markers_is_refused(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# an old card\n")
    with pytest.raises(SystemExit, match="ENGINE_EVAL"):
        write_card_section(tmp_path, _rows(0.5), "note")
