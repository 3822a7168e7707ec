"""Language model loading: HF ``language_model/`` folders, bare KenLM files, errors."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.make_tiny_arpa import CORPUS, build_arpa
from pyctcdecode import Alphabet, BeamSearchDecoderCTC
from pyctcdecode.language_model import LanguageModel as PyctcLanguageModel

from streaming.decoder import BeamSearchDecoder, DecoderConfig
from streaming.errors import LanguageModelError, StreamingError, VocabularyError
from streaming.language_model import LanguageModelConfig, build_labels, load_language_model

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ARPA = FIXTURES / "tiny.arpa"
VOCAB = ("<pad>", "<s>", "</s>", "<unk>", "|") + tuple("etaonihsrdlumwcfgypbvk'xjqz")


@pytest.fixture(autouse=True)
def _quiet_pyctcdecode() -> None:
    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)


def write_hf_folder(folder: Path, attrs: dict | None = None, arpa_text: str | None = None) -> Path:
    """The layout Wav2Vec2ProcessorWithLM.save_pretrained writes under language_model/."""
    folder.mkdir(parents=True, exist_ok=True)
    attrs = attrs or {"alpha": 0.8, "beta": 2.0, "unk_score_offset": -10.0, "score_boundary": True}
    (folder / "attrs.json").write_text(json.dumps(attrs))
    text = ARPA.read_text() if arpa_text is None else arpa_text
    (folder / "tiny.arpa").write_text(text)
    words = sorted({line.split("\t")[1] for line in text.split("\\2-grams:")[0].splitlines() if "\t" in line})
    (folder / "unigrams.txt").write_text("".join(w + "\n" for w in words))
    return folder


def test_bare_arpa_reads_unigrams_and_defaults() -> None:
    lm = load_language_model(ARPA, VOCAB)
    assert lm.order == 3
    assert (lm.alpha, lm.beta, lm.unk_score_offset, lm.score_boundary) == (0.5, 1.5, -10.0, True)
    assert lm.num_unigrams == 56  # 54 words + <s>, </s> (KenLM does not "contain" <unk>)
    assert "tiny.arpa (3-gram, 56 unigrams, alpha=0.5, beta=1.5)" == str(lm)
    assert lm.kenlm_path == ARPA


def test_hf_folder_uses_attrs_and_matches_pyctcdecode_load_from_dir(tmp_path: Path) -> None:
    folder = write_hf_folder(tmp_path / "language_model")
    lm = load_language_model(folder, VOCAB)
    assert (lm.alpha, lm.beta) == (0.8, 2.0)
    reference = BeamSearchDecoderCTC(
        Alphabet.build_alphabet(list(VOCAB)), PyctcLanguageModel.load_from_dir(str(folder))
    )
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, (60, len(VOCAB)))  # (frames, vocab)
    log_probs = (logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))).astype(np.float32)
    expected = reference.decode_beams(log_probs, beam_width=8, prune_history=True)[0]
    # oov_word_logp=None: pyctcdecode's own scoring of unknown words (the default spells them)
    stream = BeamSearchDecoder(VOCAB, lm=lm, config=DecoderConfig(beam_width=8, oov_word_logp=None)).new_stream()
    for start in range(0, 60, 9):
        stream.accept(log_probs[start : start + 9])
    final = stream.finalize()
    assert (final.text, [(w.text, (w.start_frame, w.end_frame)) for w in final.words]) == (
        expected[0],
        expected[2],
    )


def test_config_overrides_win_over_attrs(tmp_path: Path) -> None:
    folder = write_hf_folder(tmp_path / "language_model")
    config = LanguageModelConfig(alpha=0.1, beta=0.0, unk_score_offset=-3.0, score_boundary=False)
    lm = load_language_model(folder, config=config)
    assert (lm.alpha, lm.beta, lm.unk_score_offset, lm.score_boundary) == (0.1, 0.0, -3.0, False)


def test_with_params_shares_the_kenlm_model() -> None:
    lm = load_language_model(ARPA)
    other = lm.with_params(alpha=2.0)
    assert other.alpha == 2.0 and lm.alpha == 0.5
    assert other.scorer._kenlm_model is lm.scorer._kenlm_model
    assert lm.with_params() is lm


def test_explicit_unigrams_replace_the_arpa_ones(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("the\ncat\nnotinlm\n")
    lm = load_language_model(ARPA, unigrams=words)
    assert lm.num_unigrams == 2  # pyctcdecode keeps only words KenLM knows
    assert load_language_model(ARPA, unigrams=["the", "dog"]).num_unigrams == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -0.5}, "alpha must be a finite number >= 0, got -0.5"),
        ({"beta": float("nan")}, "beta must be a finite number"),
        ({"unk_score_offset": 1.0}, "unk_score_offset must be a finite number <= 0"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LanguageModelConfig(**kwargs)


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------
def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(LanguageModelError, match="language model not found: .*nope.arpa"):
        load_language_model(tmp_path / "nope.arpa")


def test_corrupt_arpa(tmp_path: Path) -> None:
    bad = tmp_path / "bad.arpa"
    bad.write_text("this is not an arpa file\n")
    with pytest.raises(LanguageModelError, match="bad.arpa"):
        load_language_model(bad)


def test_corrupt_binary(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(LanguageModelError, match="cannot load KenLM model .*bad.bin"):
        load_language_model(bad, unigrams=["the"])


def test_binary_without_unigrams_is_refused(tmp_path: Path) -> None:
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"\x00" * 64)
    with pytest.raises(LanguageModelError, match="binary KenLM file, which does not list its words: pass unigrams="):
        load_language_model(binary)


def test_wrong_suffix(tmp_path: Path) -> None:
    path = tmp_path / "lm.txt"
    path.write_text("x")
    with pytest.raises(LanguageModelError, match=r"ending in \.arpa/\.bin/\.binary"):
        load_language_model(path)


def test_folder_without_kenlm_file(tmp_path: Path) -> None:
    folder = write_hf_folder(tmp_path / "language_model")
    (folder / "tiny.arpa").unlink()
    with pytest.raises(LanguageModelError, match=r"exactly one KenLM file .* found \[\]"):
        load_language_model(folder)


def test_folder_with_two_kenlm_files(tmp_path: Path) -> None:
    folder = write_hf_folder(tmp_path / "language_model")
    shutil.copy(ARPA, folder / "other.arpa")
    with pytest.raises(LanguageModelError, match=r"found \['other.arpa', 'tiny.arpa'\]"):
        load_language_model(folder)


def test_folder_with_bad_attrs(tmp_path: Path) -> None:
    folder = write_hf_folder(tmp_path / "language_model", attrs={"alpha": 0.5})
    with pytest.raises(LanguageModelError, match=r"attrs.json must hold exactly .*found \['alpha'\]"):
        load_language_model(folder)


def test_folder_without_unigrams(tmp_path: Path) -> None:
    folder = write_hf_folder(tmp_path / "language_model")
    (folder / "unigrams.txt").unlink()
    with pytest.raises(LanguageModelError, match="expected unigrams.txt"):
        load_language_model(folder)


def test_lm_for_another_alphabet_names_the_characters(tmp_path: Path) -> None:
    """An upper-case LM with a lower-case acoustic model: every word would be unknown."""
    folder = write_hf_folder(tmp_path / "language_model", arpa_text=build_arpa(CORPUS.upper()))
    with pytest.raises(LanguageModelError) as info:
        load_language_model(folder, VOCAB)
    message = str(info.value)
    assert "does not fit the vocabulary" in message
    assert "54 of its 54 unigrams (100%)" in message
    assert "'T' (in " in message and "'A' (in " in message
    # the decoder checks too, for LMs loaded without a vocab
    lm = load_language_model(folder)
    with pytest.raises(LanguageModelError, match="cannot emit"):
        BeamSearchDecoder(VOCAB, lm=lm)


def test_a_few_unspellable_words_only_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    arpa = tmp_path / "cafe.arpa"
    arpa.write_text(build_arpa("the cat\nthe dog\nun caf\u00e9\n"), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="streaming.language_model"):
        lm = load_language_model(arpa, VOCAB)
    assert lm.num_unigrams == 7
    assert "1 of 5 LM unigrams" in caplog.text and "'\u00e9'" in caplog.text


def test_errors_share_one_base() -> None:
    assert issubclass(LanguageModelError, StreamingError)
    assert issubclass(VocabularyError, ValueError)


def test_build_labels_like_wav2vec2_processor_with_lm() -> None:
    labels = build_labels(VOCAB)
    assert labels[:6] == ("", "<s>", "</s>", "⁇", " ", "e")
    assert len(labels) == len(VOCAB)
