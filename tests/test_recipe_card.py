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


def test_real_dev_sets_read_sphinx_transcriptions_and_alsa_names(tmp_path: Path, monkeypatch) -> None:
    import evaluate
    import train

    sphinx = tmp_path / "sphinx"
    (sphinx / "librivox").mkdir(parents=True)
    (sphinx / "librivox" / "transcription").write_text("<s> He was NOT an ill-disposed man </s> (clip-0870)\n")
    (sphinx / "cards").mkdir()
    (sphinx / "cards" / "cards.transcription").write_text("<s> ten of clubs  </s> (001)\n<s> five five </s> (004)\n")
    alsa = tmp_path / "alsa"
    alsa.mkdir()
    for name in ["Front_Left", "Noise", "Side_Right"]:
        (alsa / f"{name}.wav").write_bytes(b"")
    monkeypatch.setattr(train, "LIBRIVOX_DIR", sphinx / "librivox")
    monkeypatch.setattr(train, "ALSA_SOUNDS", alsa)
    monkeypatch.setenv("XLSR_RECIPE_DIR", str(tmp_path / "cache"))

    assert train.librivox_set() == [(str(sphinx / "librivox" / "clip-0870.wav"), "he was not an ill disposed man")]
    short = train.real_short_set()
    assert short[:2] == [(str(sphinx / "cards" / "001.wav"), "ten of clubs"),
                         (str(sphinx / "cards" / "004.wav"), "five five")]
    assert short[2][1] == "go forward ten meters" and Path(short[2][0]).exists()  # the repo's sample
    assert short[3:] == [(str(alsa / "Front_Left.wav"), "front left"), (str(alsa / "Side_Right.wav"), "side right")]

    folders = evaluate.real_folders()
    assert [f.name for f in folders] == ["librivox", "real-short"]
    lines = (folders[1] / "transcripts.tsv").read_text().splitlines()
    assert lines[0] == "001.wav\tten of clubs" and len(lines) == 5
    assert (folders[1] / "Front_Left.wav").resolve() == (alsa / "Front_Left.wav").resolve()


def test_perturbed_real_sets_score_every_clip_in_every_version(tmp_path: Path, monkeypatch) -> None:
    import evaluate
    import numpy as np
    import soundfile as sf
    import train
    from common import VOCAB
    from tiny_models import write_tiny_checkpoint

    clip = tmp_path / "clip.wav"
    t = np.arange(32000) / 16000
    sf.write(clip, (0.5 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32), 16000)
    original = evaluate.perturbed(str(clip), [])
    assert len(original) == 32000
    assert abs(len(evaluate.perturbed(str(clip), ["tempo", "0.9"])) - 32000 / 0.9) < 400  # slower: longer
    assert abs(np.abs(evaluate.perturbed(str(clip), ["gain", "-n", "-12"])).max() - 10 ** (-12 / 20)) < 0.01

    monkeypatch.setattr(train, "librivox_set", lambda: [(str(clip), "a b")])
    monkeypatch.setattr(train, "real_short_set", lambda: [(str(clip), "c"), (str(clip), "d e")])
    model = write_tiny_checkpoint(tmp_path / "m", family="layer", vocab=dict(VOCAB))
    res = evaluate.evaluate_perturbed(model)
    n = len(evaluate.PERTURBATIONS)
    assert {k: v["n"] for k, v in res.items()} == {"librivox": n, "real-short": 2 * n}
