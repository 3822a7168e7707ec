"""Decoder tests: pyctcdecode identity across chunkings, greedy, stable prefix, errors.

The reference is pyctcdecode itself (``build_ctcdecoder(...).decode_beams`` over
the whole utterance); the LM is the real hand-made 3-gram ``fixtures/tiny.arpa``.
Logits are built from text (one-hot peaks + Gaussian noise) so that several
tokens per frame pass ``token_min_logp`` and the beams really compete.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyctcdecode import build_ctcdecoder

from streaming.decoder import (
    BeamSearchDecoder,
    DecodedWord,
    DecoderConfig,
    GreedyDecoder,
    Hypothesis,
    _renormalize,
    build_decoder,
)
from streaming.errors import GrammarError, StreamStateError, VocabularyError
from streaming.grammar import compile_grammar
from streaming.language_model import LanguageModel, build_labels, load_language_model

ARPA = Path(__file__).resolve().parent / "fixtures" / "tiny.arpa"
# the usual 32-token English wav2vec2 vocabulary (lower-cased), index order
VOCAB = ("<pad>", "<s>", "</s>", "<unk>", "|") + tuple("etaonihsrdlumwcfgypbvk'xjqz")
TOKEN = {t: i for i, t in enumerate(VOCAB)}
WORDS = sorted(
    line.split("\t")[1]
    for line in ARPA.read_text().split("\\1-grams:")[1].split("\\2-grams:")[0].splitlines()
    if line.count("\t") == 2 and line.split("\t")[1].isalpha()
)

# pyctcdecode's own scoring of out-of-vocabulary words: what the identity tests compare
# (the default spells unknown words instead: test_unknown_words_cost_a_spelling_score).
PYCTC: dict[str, Any] = {"oov_word_logp": None}

UTTERANCES = [
    "the cat sat on the mat",
    "a dog ate the fish",
    "we like the big red bal",  # out-of-vocabulary last word
    "hello the quick brown fox jumps",
]


def make_log_probs(
    text: str, seed: int, noise: float = 1.5, quantize: bool = False, peak: tuple[float, float] = (2.0, 8.0)
) -> np.ndarray:
    """(frames, 32) float32 log-probs spelling ``text``: 1-2 frames a token, blanks between."""
    rng = np.random.default_rng(seed)
    path = [0, 0]
    for ch in text:
        path += [TOKEN["|" if ch == " " else ch]] * int(rng.integers(1, 3))
        path += [0] * int(rng.integers(0, 3))
    path += [0, 0]
    frames = len(path)
    logits = rng.normal(0.0, noise, (frames, len(VOCAB)))  # (frames, vocab)
    logits[np.arange(frames), path] += rng.uniform(*peak, frames)
    logits[:, [TOKEN["<s>"], TOKEN["</s>"]]] -= 8.0  # real CTC heads almost never emit these
    if quantize:  # exact score ties exercise merge / sort tie-breaking
        logits = np.round(logits)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return log_probs.astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def _quiet_pyctcdecode() -> None:
    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
    logging.getLogger("streaming").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def lm() -> LanguageModel:
    return load_language_model(ARPA, VOCAB)


@pytest.fixture(scope="module")
def references() -> dict[bool, object]:
    return {True: build_ctcdecoder(list(VOCAB), str(ARPA)), False: build_ctcdecoder(list(VOCAB))}


def run_stream(stream: object, log_probs: np.ndarray, chunk: int) -> tuple[list[Hypothesis], Hypothesis]:
    partials = []
    for start in range(0, len(log_probs), chunk):
        stream.accept(log_probs[start : start + chunk])  # type: ignore[attr-defined]
        partials.append(stream.partial())  # type: ignore[attr-defined]
    return partials, stream.finalize()  # type: ignore[attr-defined]


def as_pyctc(hyp: Hypothesis) -> tuple[str, list[tuple[str, tuple[int, int]]]]:
    return hyp.text, [(w.text, (w.start_frame, w.end_frame)) for w in hyp.words]


# --------------------------------------------------------------------------------------
# identity with pyctcdecode
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("prune_history", [False, True], ids=["all-beams", "prune-history"])
@pytest.mark.parametrize("use_lm", [False, True], ids=["no-lm", "lm"])
@pytest.mark.parametrize("hotwords", [(), ("cat", "brown fox", "bal")], ids=["plain", "hotwords"])
@pytest.mark.parametrize("utterance", range(len(UTTERANCES)))
def test_identical_to_pyctcdecode_for_any_chunking(
    prune_history: bool,
    use_lm: bool,
    hotwords: tuple[str, ...],
    utterance: int,
    lm: LanguageModel,
    references: dict,
) -> None:
    log_probs = make_log_probs(UTTERANCES[utterance], seed=utterance)
    settings_: dict[str, Any] = dict(
        beam_width=24, beam_prune_logp=-10.0, token_min_logp=-5.0, hotword_weight=10.0, prune_history=prune_history
    )
    ref = references[use_lm].decode_beams(log_probs, hotwords=list(hotwords) or None, **settings_)[0]
    config = DecoderConfig(hotwords=hotwords, **settings_, **PYCTC)
    decoder = BeamSearchDecoder(VOCAB, lm=lm if use_lm else None, config=config)
    for chunk in (1, 7, 50, len(log_probs)):
        _, final = run_stream(decoder.new_stream(), log_probs, chunk)
        assert as_pyctc(final) == (ref[0], ref[2]), f"chunk={chunk}"
        assert final.stable_words == len(final.words)


def test_identical_over_random_settings(lm: LanguageModel, references: dict) -> None:
    """A seeded sweep over beam sizes, pruning, history pruning, ties and chunk sizes."""
    rng = np.random.default_rng(1234)
    for case in range(30):
        text = " ".join(rng.choice(WORDS, int(rng.integers(1, 6))))
        log_probs = make_log_probs(text, seed=case, noise=float(rng.uniform(0.5, 2.5)), quantize=case % 3 == 0)
        use_lm = bool(case % 2)
        hotwords = tuple(rng.choice(WORDS, int(rng.integers(0, 3))))
        settings_ = dict(
            beam_width=int(rng.choice([1, 3, 10, 40])),
            beam_prune_logp=float(rng.choice([-10.0, -3.0, -20.0])),
            token_min_logp=float(rng.choice([-5.0, -8.0, -2.5])),
            prune_history=bool(rng.random() < 0.5),
            hotword_weight=float(rng.choice([10.0, 2.5])),
        )
        ref = references[use_lm].decode_beams(log_probs, hotwords=list(hotwords) or None, **settings_)[0]
        config = DecoderConfig(hotwords=hotwords, **settings_, **PYCTC)  # type: ignore[arg-type]
        decoder = BeamSearchDecoder(VOCAB, lm=lm if use_lm else None, config=config)
        _, final = run_stream(decoder.new_stream(), log_probs, int(rng.choice([1, 2, 5, 50])))
        assert as_pyctc(final) == (ref[0], ref[2]), f"case {case}: {settings_}"


@pytest.mark.parametrize("use_lm", [False, True], ids=["no-lm", "lm"])
@pytest.mark.parametrize("utterance", range(len(UTTERANCES)))
def test_alternatives_are_pyctcdecodes_beams(utterance: int, use_lm: bool, lm: LanguageModel, references: dict) -> None:
    """The n-best list: decode_beams()' texts, word frames and combined scores, best first."""
    log_probs = make_log_probs(UTTERANCES[utterance], seed=utterance, noise=2.5)
    settings_: dict[str, Any] = dict(beam_width=24, prune_history=False)
    ref = references[use_lm].decode_beams(log_probs, **settings_)
    config = DecoderConfig(**settings_, **PYCTC)
    stream = BeamSearchDecoder(VOCAB, lm=lm if use_lm else None, config=config).new_stream()
    _, final = run_stream(stream, log_probs, 7)
    alternatives = stream.alternatives(100)
    assert len(ref) >= 2 and len({a.text for a in alternatives}) == len(alternatives)  # distinct
    assert [as_pyctc(Hypothesis(a.text, 0, a.words)) for a in alternatives] == [(b[0], b[2]) for b in ref]
    assert [a.score for a in alternatives] == pytest.approx([b[4] for b in ref], abs=1e-9)
    assert alternatives[0].text == final.text
    assert [a.text for a in stream.alternatives(3)] == [b[0] for b in ref[:3]]


def test_greedy_alternative_is_the_best_path() -> None:
    log_probs = make_log_probs("the cat", seed=3)
    stream = GreedyDecoder(VOCAB).new_stream()
    stream.accept(log_probs)
    (only,) = stream.alternatives(20)
    assert only.text == stream.finalize().text
    assert only.score == pytest.approx(float(_renormalize(log_probs.astype(np.float64)).max(axis=1).sum()))


def test_unknown_words_cost_a_spelling_score(lm: LanguageModel, references: dict) -> None:
    """pyctcdecode glues two unknown words into one (one unknown-word price instead of two);
    spelled unknown words keep the space the audio has and the known words around them."""
    log_probs = make_log_probs("the zorb quix sat on the mat", seed=0, noise=0.5)
    glued = references[True].decode(log_probs, beam_width=24)
    assert "zorb" not in glued.split() and glued.endswith("sat on the mat a")  # "the zorbyquix sat ..."
    stream = BeamSearchDecoder(VOCAB, lm=lm, config=DecoderConfig(beam_width=24)).new_stream()
    stream.accept(log_probs)
    words = stream.finalize().text.split()
    assert words[:3] == ["the", "zorb", "quick"] and words[3:6] == ["sat", "on", "the"]


def test_spelled_unknown_word_scores() -> None:
    """Known words score exactly as pyctcdecode scores them; an unknown word costs
    word + per-letter log-probs (plus beta), the same while spelled as when complete."""
    lm = load_language_model(ARPA, VOCAB).with_params(alpha=0.5, beta=1.0)
    spelled = lm.oov_scorer(-8.0, -1.0)
    assert lm.oov_scorer(-8.0, -1.0) is spelled and lm.oov_scorer(None, -1.0) is lm.scorer
    start = spelled.get_start_state()
    for word in ("the", "cat", "mat"):
        assert spelled.score(start, word) == lm.scorer.score(start, word)
        assert spelled.score_partial_token(word[:2]) == 0.0
    assert spelled.score_partial_token("xq") == -10.0
    score, after = spelled.score(start, "xqzt")
    assert score == -8.0 - 4.0 + 1.0
    # the next word is scored in the state KenLM reaches over <unk>, as pyctcdecode does
    assert spelled.score(after, "cat") == lm.scorer.score(lm.scorer.score(start, "xqzt")[1], "cat")
    with pytest.raises(ValueError, match="oov_word_logp must be a finite log-prob"):
        DecoderConfig(oov_word_logp=2.0)
    with pytest.raises(ValueError, match="oov_char_logp must be a finite log-prob"):
        DecoderConfig(oov_char_logp=float("nan"))


def test_alpha_beta_overrides_match_pyctcdecode(lm: LanguageModel) -> None:
    log_probs = make_log_probs("the dog sat on the log", seed=7, noise=2.0)
    ref = build_ctcdecoder(list(VOCAB), str(ARPA), alpha=1.2, beta=-0.5).decode_beams(
        log_probs, beam_width=16, prune_history=True
    )[0]
    decoder = BeamSearchDecoder(VOCAB, lm=lm, config=DecoderConfig(beam_width=16, alpha=1.2, beta=-0.5))
    _, final = run_stream(decoder.new_stream(), log_probs, 3)
    assert as_pyctc(final) == (ref[0], ref[2])
    assert lm.alpha == 0.5 and decoder.lm is not None and decoder.lm.alpha == 1.2  # shared LM untouched


def test_stream_without_lm_and_with_own_hotwords(lm: LanguageModel, references: dict) -> None:
    log_probs = make_log_probs("a small cat ran", seed=3)
    decoder = BeamSearchDecoder(VOCAB, lm=lm, config=DecoderConfig(beam_width=10, hotwords=("dog",)))
    ref = references[False].decode_beams(log_probs, beam_width=10, hotwords=["cat"], prune_history=True)[0]
    _, final = run_stream(decoder.new_stream(hotwords=["cat"], use_lm=False), log_probs, 4)
    assert as_pyctc(final) == (ref[0], ref[2])


def test_renormalization_is_chunk_invariant() -> None:
    log_probs = make_log_probs("the quick brown fox", seed=11)
    whole = _renormalize(log_probs)
    pieces = np.concatenate([_renormalize(log_probs[i : i + 1]) for i in range(len(log_probs))])
    assert whole.dtype == log_probs.dtype
    np.testing.assert_array_equal(whole, pieces)


# --------------------------------------------------------------------------------------
# partial hypotheses, stable prefix, words
# --------------------------------------------------------------------------------------
def test_partial_words_frames_and_confidence(lm: LanguageModel) -> None:
    log_probs = make_log_probs("the cat sat on the mat", seed=0, noise=0.5, peak=(6.0, 9.0))
    stream = BeamSearchDecoder(VOCAB, lm=lm, config=DecoderConfig(beam_width=16)).new_stream()
    partials, final = run_stream(stream, log_probs, 10)
    assert stream.frames == len(log_probs)
    assert final.text == "the cat sat on the mat"
    best = _renormalize(log_probs).max(axis=1).astype(np.float64)
    previous_end = 0
    for word in final.words:
        assert previous_end <= word.start_frame < word.end_frame <= len(log_probs)
        expected = np.exp(best[word.start_frame : word.end_frame].mean())
        assert word.confidence == pytest.approx(expected, rel=1e-9)
        assert 0.0 < word.confidence <= 1.0
        previous_end = word.end_frame
    mid = partials[len(partials) // 2]
    assert mid.text.startswith(" ".join(w.text for w in mid.words))
    stable = [w.text for w in mid.words[: mid.stable_words]]
    assert [w.text for w in final.words[: len(stable)]] == stable
    assert stream.finalize() is final  # idempotent
    assert stream.partial() is final
    with pytest.raises(StreamStateError, match="after finalize"):
        stream.accept(log_probs[:1])


def test_frames_count_from_stream_start(lm: LanguageModel) -> None:
    silence = np.full((40, len(VOCAB)), -30.0, dtype=np.float32)
    silence[:, 0] = 0.0
    speech = make_log_probs("the dog", seed=5, noise=0.3, peak=(6.0, 9.0))
    stream = BeamSearchDecoder(VOCAB, lm=lm).new_stream()
    stream.accept(silence)
    stream.accept(speech)
    final = stream.finalize()
    assert final.text == "the dog"
    assert final.words[0].start_frame >= 40


def test_empty_stream_and_empty_chunks() -> None:
    stream = BeamSearchDecoder(VOCAB).new_stream()
    stream.accept(np.zeros((0, len(VOCAB)), dtype=np.float32))
    assert stream.partial() == Hypothesis("", 0, ())
    assert stream.finalize() == Hypothesis("", 0, ())


def _stable_prefix_never_changes(
    seed: int, chunks: list[int], use_lm: bool, prune_history: bool, lm: LanguageModel
) -> None:
    rng = np.random.default_rng(seed)
    text = " ".join(rng.choice(WORDS, int(rng.integers(2, 7))))
    log_probs = make_log_probs(text, seed=seed, noise=float(rng.uniform(1.0, 3.0)))
    decoder = BeamSearchDecoder(
        VOCAB, lm=lm if use_lm else None, config=DecoderConfig(beam_width=12, prune_history=prune_history)
    )
    stream = decoder.new_stream()
    stable: list[str] = []
    position, turn = 0, 0
    while position < len(log_probs):
        size = chunks[turn % len(chunks)]
        stream.accept(log_probs[position : position + size])
        position, turn = position + size, turn + 1
        hyp = stream.partial()
        words = hyp.text.split()
        assert hyp.stable_words >= len(stable)
        assert words[: len(stable)] == stable, "a stable word changed"
        assert hyp.stable_words <= len(hyp.words)
        live = [beam[0].words() for beam in stream._beams]
        common = 0
        while all(len(w) > common and w[common] == live[0][common] for w in live):
            common += 1
        assert hyp.stable_words == common, "stable prefix is not the live beams' common prefix"
        stable = words[: hyp.stable_words]
    final = stream.finalize().text.split()
    assert final[: len(stable)] == stable


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    chunks=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    use_lm=st.booleans(),
    prune_history=st.booleans(),
)
def test_stable_prefix_never_changes(
    seed: int, chunks: list[int], use_lm: bool, prune_history: bool, lm: LanguageModel
) -> None:
    _stable_prefix_never_changes(seed, chunks, use_lm, prune_history, lm)


def test_stable_prefix_grows_on_clear_speech(lm: LanguageModel) -> None:
    log_probs = make_log_probs("the cat sat on the mat the dog sat on the log", seed=2, noise=0.3, peak=(6.0, 9.0))
    stream = BeamSearchDecoder(VOCAB, lm=lm, config=DecoderConfig(beam_width=8)).new_stream()
    partials, _ = run_stream(stream, log_probs, 10)
    assert partials[-1].stable_words >= 8


# --------------------------------------------------------------------------------------
# peek: provisional partials over look-ahead frames
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_lm", [False, True], ids=["no-lm", "lm"])
@pytest.mark.parametrize("kind", ["beam", "greedy"])
def test_peek_leaves_the_stream_as_it_was(kind: str, use_lm: bool, lm: LanguageModel, references: dict) -> None:
    """Peeking at every chunk's look-ahead changes nothing decoded for good: the final is
    still pyctcdecode's, and each partial equals the one without peeking."""
    config = DecoderConfig(beam_width=24, peek_beams=4, **PYCTC)
    for utterance, text in enumerate(UTTERANCES):
        log_probs = make_log_probs(text, seed=utterance)
        if kind == "beam":
            decoder: Any = BeamSearchDecoder(VOCAB, lm=lm if use_lm else None, config=config)
        else:
            decoder = GreedyDecoder(VOCAB)
        plain, peeking = decoder.new_stream(), decoder.new_stream()
        for start in range(0, len(log_probs), 7):
            plain.accept(log_probs[start : start + 7])
            peeking.accept(log_probs[start : start + 7])
            peeking.peek(log_probs[start + 7 : start + 16])
            assert peeking.frames == plain.frames
            assert peeking.partial() == plain.partial()
        final = peeking.finalize()
        assert final == plain.finalize()
        if kind == "beam":
            settings_ = dict(beam_width=24, beam_prune_logp=-10.0, token_min_logp=-5.0)  # decode(): history pruned
            ref = references[use_lm].decode(log_probs, **settings_)
            assert final.text == ref


def test_peek_shows_the_look_ahead_and_keeps_the_stable_prefix(lm: LanguageModel) -> None:
    """A peek is the partial those frames would give (here with as many beams as the
    search, so exactly), and its stable prefix is the stream's own."""
    log_probs = make_log_probs("the cat sat on the mat the dog ate the fish", seed=5, noise=0.5, peak=(5.0, 8.0))
    half = len(log_probs) // 2
    for config in (DecoderConfig(beam_width=8, peek_beams=8), DecoderConfig(beam_width=8, peek_beams=100)):
        decoder = BeamSearchDecoder(VOCAB, lm=lm, config=config)
        stream, ahead = decoder.new_stream(), decoder.new_stream()
        stream.accept(log_probs[:half])
        stable = stream.partial().stable_words
        peeked = stream.peek(log_probs[half:])
        ahead.accept(log_probs)
        assert peeked.text == ahead.partial().text == "the cat sat on the mat the dog ate the fish"
        assert peeked.stable_words == stable < len(peeked.words)
        assert stream.frames == half and len(stream.partial().text) < len(peeked.text)
    greedy = GreedyDecoder(VOCAB).new_stream()
    greedy.accept(log_probs[:half])
    assert greedy.peek(log_probs[half:]).text == "the cat sat on the mat the dog ate the fish"
    assert greedy.peek(np.zeros((0, len(VOCAB)), dtype=np.float32)) == greedy.partial()


def test_peek_after_finalize_is_the_final() -> None:
    stream = BeamSearchDecoder(VOCAB).new_stream()
    stream.accept(make_log_probs("a dog", seed=1, noise=0.2, peak=(6.0, 9.0)))
    final = stream.finalize()
    assert stream.peek(make_log_probs("ate", seed=2)) == final


# --------------------------------------------------------------------------------------
# greedy
# --------------------------------------------------------------------------------------
def _one_hot(tokens: list[str]) -> np.ndarray:
    log_probs = np.full((len(tokens), len(VOCAB)), np.log(0.01 / 31), dtype=np.float32)  # (frames, vocab)
    for frame, token in enumerate(tokens):
        log_probs[frame, TOKEN[token]] = np.log(0.99)
    return log_probs


def test_greedy_collapses_repeats_and_splits_words() -> None:
    tokens = ["<pad>", "h", "h", "i", "<pad>", "|", "|", "t", "o", "<pad>", "o", "<unk>", "|", "<pad>", "a"]
    log_probs = _one_hot(tokens)
    for chunk in (1, 4, len(tokens)):
        stream = GreedyDecoder(VOCAB).new_stream()
        partials, final = run_stream(stream, log_probs, chunk)
        assert final.text == "hi too⁇ a"
        assert [(w.text, w.start_frame, w.end_frame) for w in final.words] == [
            ("hi", 1, 4),
            ("too⁇", 7, 12),
            ("a", 14, 15),
        ]
        assert final.words[0].confidence == pytest.approx(0.99, rel=1e-5)
        assert final.stable_words == 3
    assert partials[-1] == Hypothesis("hi too⁇ a", 2, final.words[:2])


def test_build_decoder_picks_greedy_or_beam(lm: LanguageModel) -> None:
    assert isinstance(build_decoder(VOCAB, lm=lm, config=DecoderConfig(greedy=True)), GreedyDecoder)
    assert isinstance(build_decoder(VOCAB, lm=None, config=DecoderConfig()), BeamSearchDecoder)


def test_greedy_agrees_with_beam_on_clean_input() -> None:
    log_probs = make_log_probs("we are going home now", seed=9, noise=0.2, peak=(6.0, 9.0))
    greedy = run_stream(GreedyDecoder(VOCAB).new_stream(), log_probs, 5)[1]
    beam = run_stream(BeamSearchDecoder(VOCAB).new_stream(), log_probs, 5)[1]
    assert greedy.text == beam.text == "we are going home now"
    assert [(w.start_frame, w.end_frame) for w in greedy.words] == [(w.start_frame, w.end_frame) for w in beam.words]


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("decoder_type", [BeamSearchDecoder, GreedyDecoder])
def test_logits_width_mismatch(decoder_type: type) -> None:
    stream = decoder_type(VOCAB).new_stream()
    with pytest.raises(VocabularyError, match="logits have 33 columns, vocabulary has 32"):
        stream.accept(np.zeros((4, 33), dtype=np.float32))
    with pytest.raises(VocabularyError, match=r"2-D \(frames, vocab\), got shape \(32,\)"):
        stream.accept(np.zeros(32, dtype=np.float32))
    with pytest.raises(VocabularyError, match="floating point"):
        stream.accept(np.zeros((2, 32), dtype=np.int64))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beam_width": 0}, r"beam_width must be in \[1, 10000\], got 0"),
        ({"beam_width": 2.5}, "beam_width must be an int"),
        ({"beam_prune_logp": 1.0}, r"beam_prune_logp must be a finite log-prob in \(-inf, 0\], got 1.0"),
        ({"token_min_logp": float("-inf")}, "token_min_logp must be a finite log-prob"),
        ({"hotwords": "cat"}, "hotwords must be a sequence of words, got the str 'cat'"),
        ({"hotword_weight": float("nan")}, "hotword_weight must be finite"),
        ({"peek_beams": -1}, "peek_beams must be an int >= 0, got -1"),
        ({"alpha": -1.0}, "alpha must be a finite number >= 0"),
        ({"beta": float("inf")}, "beta must be a finite number"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecoderConfig(**kwargs)


def test_config_is_frozen_and_hotwords_become_a_tuple() -> None:
    config = DecoderConfig(hotwords=["cat", "dog"])  # type: ignore[arg-type]
    assert config.hotwords == ("cat", "dog")
    with pytest.raises(AttributeError):
        config.beam_width = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("vocab", "message"),
    [
        (("a", "b", "|"), "no CTC blank token"),
        (("<pad>", "a", "b"), "no word delimiter"),
        (("<pad>", "|", "a", "a"), "duplicate tokens: \\['a'\\]"),
        (("<pad>", "|", "▁a", "▁b"), "looks like BPE"),
        (("<pad>", "|", "a", "\t"), "must not contain whitespace"),
        ((), "non-empty sequence"),
    ],
)
def test_unusable_vocabularies(vocab: tuple[str, ...], message: str) -> None:
    with pytest.raises(VocabularyError, match=message):
        BeamSearchDecoder(vocab)


def test_decoded_word_and_hypothesis_are_frozen() -> None:
    word = DecodedWord("a", 0, 1, 1.0)
    with pytest.raises(AttributeError):
        word.text = "b"  # type: ignore[misc]


def test_benchmark_entry_point_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_decoder.py"
    spec = importlib.util.spec_from_file_location("bench_decoder", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    assert bench.main(["--seconds", "1", "3", "--beam-width", "8"]) == 0
    out = capsys.readouterr().out
    assert "incremental ms/chunk" in out and "identical to pyctcdecode over the whole utterance: True" in out


# --------------------------------------------------------------------------------------
# grammar mode (vosk's phrase_list)
# --------------------------------------------------------------------------------------
LABELS = build_labels(VOCAB)


def grammar_stream(phrases: list[str], **config: Any) -> Any:
    return BeamSearchDecoder(VOCAB, config=DecoderConfig(**config)).new_stream(
        grammar=compile_grammar(phrases, LABELS)
    )


def decode_grammar(phrases: list[str], log_probs: np.ndarray, chunk: int = 5, **config: Any) -> Hypothesis:
    return run_stream(grammar_stream(phrases, **config), log_probs, chunk)[1]


def test_grammar_restricts_recognition_to_the_phrase_words() -> None:
    log_probs = make_log_probs("the cat sat on the mat", seed=1, noise=0.5)
    words = decode_grammar(["cat sat", "mat"], log_probs).text.split()
    assert words and set(words) <= {"cat", "sat", "mat"}
    free = run_stream(BeamSearchDecoder(VOCAB).new_stream(), log_probs, 5)[1].text
    assert free == "the cat sat on the mat"  # the unconstrained search hears every word


def test_grammar_unk_takes_out_of_grammar_speech() -> None:
    log_probs = make_log_probs("the cat sat on the mat", seed=1, noise=0.5)
    final = decode_grammar(["cat", "sat", "mat", "[unk]"], log_probs)
    # "on the" may come out as one [unk] or two: a delimiter skipped costs about what a word's [unk] does
    assert final.text.startswith("[unk] cat sat [unk]") and final.text.endswith("[unk] mat")
    assert [w.text for w in final.words] == final.text.split()
    frames = [(w.start_frame, w.end_frame) for w in final.words]
    assert frames == sorted(frames) and all(s < e for s, e in frames)


def test_grammar_forces_unlikely_letters_and_missing_delimiters() -> None:
    """A grammar word is found when the model spells it badly (a letter below
    token_min_logp) or runs two words together without a delimiter."""
    assert decode_grammar(["cat", "dog"], make_log_probs("cet", seed=2, noise=0.1)).text == "cat"
    assert decode_grammar(["cat", "dog"], make_log_probs("catdog", seed=2, noise=0.1)).text == "cat dog"
    elephant = make_log_probs("elephant", seed=2, noise=0.1, peak=(6.0, 10.0))
    assert decode_grammar(["cat", "dog", "[unk]"], elephant).text == "[unk]"
    assert set(decode_grammar(["cat", "dog"], elephant).text.split()) <= {"cat", "dog"}  # forced, as in vosk


def test_grammar_prefers_the_phrases_word_order() -> None:
    """Two words the audio cannot tell apart: the bigram of the phrases decides."""
    log_probs = make_log_probs("one x", seed=4, noise=0.1)
    x = TOKEN["x"]
    log_probs[:, x] = np.log(0.5)  # "x" frames become an even choice between "i" and "a"
    lp = log_probs.copy()
    spots = np.where(make_log_probs("one x", seed=4, noise=0.1).argmax(axis=1) == x)[0]
    lp[spots, TOKEN["i"]] = lp[spots, TOKEN["a"]] = np.log(0.45)
    assert decode_grammar(["one i", "a"], lp).text == "one i"
    assert decode_grammar(["one a", "i"], lp).text == "one a"


def test_grammar_stream_peek_alternatives_and_stable_prefix() -> None:
    log_probs = make_log_probs("cat sat mat", seed=5)
    stream = grammar_stream(["cat", "sat", "mat", "hat"], peek_beams=4)
    stable = 0
    for start in range(0, len(log_probs), 3):
        before = stream.partial()
        peeked = stream.peek(log_probs[start : start + 6])
        assert stream.partial() == before  # peek leaves the stream as it was
        assert peeked.stable_words >= before.stable_words
        stream.accept(log_probs[start : start + 3])
        assert stream.partial().stable_words >= stable
        stable = stream.partial().stable_words
    final = stream.finalize()
    assert final.text == "cat sat mat"
    alternatives = stream.alternatives(5)
    assert alternatives[0].text == final.text and alternatives[0].words == final.words
    assert len({a.text for a in alternatives}) == len(alternatives) >= 2
    assert [a.score for a in alternatives] == sorted((a.score for a in alternatives), reverse=True)
    assert all(set(a.text.split()) <= {"cat", "sat", "mat", "hat"} for a in alternatives)
    with pytest.raises(StreamStateError):
        stream.accept(log_probs[:2])


def test_greedy_decoder_searches_when_given_a_grammar() -> None:
    stream = GreedyDecoder(VOCAB).new_stream(grammar=compile_grammar(["cat"], LABELS))
    stream.accept(make_log_probs("cet", seed=2, noise=0.1))
    assert stream.finalize().text == "cat"


def test_compile_grammar_like_vosk(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streaming.grammar"):
        grammar = compile_grammar(["Zero ONE two", "naïve oh", "[UNK]"], LABELS)
    assert grammar.words == ("oh", "one", "two", "zero") and grammar.unk
    assert "cannot spell: naïve" in caplog.text  # dropped, as vosk drops words missing in its vocabulary
    for previous in ("<s>", "zero", "one", "two", "oh", "[unk]"):
        following = [*grammar.words, "[unk]", "</s>"]
        assert sum(math.exp(grammar.logp(previous, w)) for w in following) == pytest.approx(1.0)
    assert grammar.logp("zero", "one") > grammar.logp("zero", "oh")
    assert grammar.logp("<s>", "zero") > grammar.logp("<s>", "two")
    with pytest.raises(GrammarError, match="no word the model can spell"):
        compile_grammar(["ñ", "  "], LABELS)


def test_hotword_set_scores_as_pyctcdecode_and_is_cached_with_a_bound() -> None:
    """Our HotwordSet replaces pyctcdecode's regex + trie (seconds of CPU per segment for a
    maximal list, and a pattern cache that kept every list): same scores, built once."""
    from pyctcdecode.language_model import HotwordScorer

    from streaming.decoder import hotword_set

    rng = np.random.default_rng(3)
    letters = list("abcde")
    phrases = tuple(" ".join("".join(rng.choice(letters, rng.integers(1, 6))) for _ in range(3)) for _ in range(40))
    ours = hotword_set(phrases, 7.5)
    ref = HotwordScorer.build_scorer(list(phrases), weight=7.5)
    for _ in range(500):
        token = "".join(rng.choice(letters + ["x"], rng.integers(0, 6)))
        assert ours.score_partial_token(token) == pytest.approx(ref.score_partial_token(token)), token
        assert (token in ours) == (token in ref), token
    assert ours.words == frozenset(w for p in phrases for w in p.split())
    assert hotword_set(phrases, 7.5) is ours  # a stream opens one decoder stream per segment
    assert hotword_set.cache_info().maxsize == 8


@settings(max_examples=30, deadline=None)
@given(
    words=st.lists(st.text(alphabet="etaonihs", min_size=1, max_size=5), min_size=1, max_size=6),
    unk=st.booleans(),
    seed=st.integers(0, 10_000),
    chunk=st.integers(1, 20),
)
def test_grammar_output_is_always_grammar_words(words: list[str], unk: bool, seed: int, chunk: int) -> None:
    """Whatever the audio: every partial and final word, and every alternative, is a grammar word
    ([unk] only when listed), frame spans stay in order, and a stable prefix never changes."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (int(rng.integers(1, 60)), len(VOCAB)))  # (frames, vocab)
    log_probs = (logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))).astype(np.float32)
    phrases = [" ".join(words[: len(words) // 2 + 1]), *words[len(words) // 2 + 1 :]] + (["[unk]"] if unk else [])
    allowed = set(words) | ({"[unk]"} if unk else set())
    stream = grammar_stream(phrases, beam_width=16)
    partials, final = run_stream(stream, log_probs, chunk)
    stable: list[str] = []
    for hyp in [*partials, final]:
        assert set(hyp.text.split()) <= allowed
        frames = [(w.start_frame, w.end_frame) for w in hyp.words]
        assert all(s < e <= len(log_probs) for s, e in frames) and frames == sorted(frames)
        assert hyp.text.split()[: len(stable)] == stable, "a stable word changed"
        assert len(stable) <= hyp.stable_words <= len(hyp.words)
        stable = [w.text for w in hyp.words[: hyp.stable_words]]
    for alternative in stream.alternatives(10):
        assert set(alternative.text.split()) <= allowed
