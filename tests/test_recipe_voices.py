"""The recipe's synthetic voices: held-out voices never reach training, and Kokoro's voice choice."""

from __future__ import annotations

import doctest
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "recipe"))
import synth  # noqa: E402


def test_docstring_examples() -> None:
    result = doctest.testmod(synth)
    assert result.attempted >= 1 and result.failed == 0


def test_held_out_voices_are_in_no_training_pool() -> None:
    training = set(synth.KOKORO_TRAIN) | set(synth.KOKORO_ACCENTED)
    assert not training & set(synth.KOKORO_DEV)
    assert not set(synth.FESTIVAL_TRAIN) & set(synth.FESTIVAL_DEV)
    assert not set(synth.KOKORO_ACCENTED) & set(synth.KOKORO_VOICES)  # the English styles are listed once


class _Session:
    """Stands in for Kokoro's 300 MB ONNX model, which CI does not install: 0.5 s of audio at 24 kHz."""

    def __init__(self) -> None:
        self.styles: list[np.ndarray] = []

    def run(self, _outputs: None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.styles.append(feeds["style"])
        return [np.zeros((1, 12_000), dtype=np.float32)]


def _kokoro() -> tuple[synth.Kokoro, _Session]:
    k = synth.Kokoro.__new__(synth.Kokoro)  # no model files: only the voice choice runs
    k.sess = _Session()
    k.styles = {
        v: np.full((510, 1, 256), i, dtype=np.float32)
        for i, v in enumerate(synth.KOKORO_VOICES + synth.KOKORO_ACCENTED)
    }
    return k, k.sess


def test_kokoro_training_voices_include_accented_styles_and_dev_voices_stay_held_out() -> None:
    k, _ = _kokoro()
    rng = random.Random(0)
    train = [synth.kokoro_styles(k("a short test", rng, dev=False)[1]) for _ in range(200)]
    accented = sum(v[0] in synth.KOKORO_ACCENTED for v in train)
    assert 40 <= accented <= 80  # KOKORO_ACCENTED_SHARE of 200
    for v in train:
        assert set(v[1:]) <= set(synth.KOKORO_TRAIN)  # a blend's second style is always English
        assert v[0] in synth.KOKORO_TRAIN or v[0] in synth.KOKORO_ACCENTED
    dev = [synth.kokoro_styles(k("a short test", rng, dev=True)[1]) for _ in range(50)]
    assert all(set(v) <= set(synth.KOKORO_DEV) for v in dev)


def test_kokoro_blend_mixes_the_two_styles() -> None:
    k, sess = _kokoro()
    rng = random.Random(3)
    for _ in range(30):
        _, name = k("a short test", rng, dev=False)
        style = sess.styles[-1]  # (1, 256), every entry alpha * i + (1 - alpha) * j
        voices = synth.kokoro_styles(name)
        ids = [(synth.KOKORO_VOICES + synth.KOKORO_ACCENTED).index(v) for v in voices]
        if len(voices) == 1:
            assert np.all(style == ids[0])
        else:
            alpha = float(name.split("@")[1].split(" ")[0])
            assert np.allclose(style, alpha * ids[0] + (1 - alpha) * ids[1], atol=0.01 * abs(ids[0] - ids[1]) + 1e-4)


def test_accented_hours_count_only_utterances_led_by_a_non_english_style(tmp_path: Path) -> None:
    import json

    utts = [
        {"voice": "kokoro:zm_yunxia+am_puck@0.28 speed=0.99", "length": 16_000 * 1800},  # accented lead
        {"voice": "kokoro:ef_dora speed=0.80", "length": 16_000 * 1800},
        {"voice": "kokoro:af_bella+zf_xiaoyi@0.50 speed=1.00", "length": 16_000 * 3600},  # English lead
        {"voice": "kokoro:am_adam speed=1.10", "length": 16_000 * 3600},
    ]
    (tmp_path / "kokoro-00001.json").write_text(json.dumps({"seconds": 10800, "utts": utts}))
    (tmp_path / "kokoro-00002.json").write_text("{")  # a shard being written: skipped
    (tmp_path / "piper-00001.json").write_text(json.dumps({"utts": [{"voice": "piper:ef_dora", "length": 16_000}]}))
    assert synth.accented_kokoro_hours(tmp_path) == 1.0
