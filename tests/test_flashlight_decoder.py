"""The flashlight-text (C++) beam search behind the decoder protocol.

Real parts: flashlight-text's LexiconDecoder with the hand-made 3-gram
``fixtures/tiny.arpa`` on text-built logits, and the shipped model with its
own LM on real read speech.  What is checked: any chunking (1 frame, random,
across prune points) gives the one-shot result, partials and peeks behave like
the Python decoder's (stable prefix never revised, peek leaves no trace), word
timings increase, and what is not supported fails clearly.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import DEV_DIR
from test_decoder import ARPA, VOCAB, WORDS, make_log_probs

from scoring import read_transcripts, word_error_rate
from streaming import DecoderConfig, EndpointConfig, Engine, Final
from streaming.decoder import build_decoder
from streaming.errors import StreamStateError, VocabularyError
from streaming.flashlight_decoder import PRUNE_EVERY, FlashlightDecoder, FlashlightStream
from streaming.language_model import LanguageModel, load_language_model
from streaming.loading import DEFAULT_MODEL_DIR

FLASHLIGHT = DecoderConfig(decoder="flashlight")


@pytest.fixture(scope="module", autouse=True)
def _quiet() -> None:
    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def lm() -> LanguageModel:
    return load_language_model(ARPA, VOCAB)


@pytest.fixture(scope="module")
def decoder(lm: LanguageModel) -> FlashlightDecoder:
    built = build_decoder(VOCAB, lm=lm, config=FLASHLIGHT)
    assert isinstance(built, FlashlightDecoder)
    return built


def _long_text(seed: int, words: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(str(w) for w in rng.choice(WORDS, words))


def _chunked(stream: FlashlightStream, log_probs: np.ndarray, cuts: list[int]) -> FlashlightStream:
    start = 0
    for cut in [*cuts, len(log_probs)]:
        stream.accept(log_probs[start:cut])
        stream.partial()
        start = cut
    return stream


@pytest.mark.parametrize("use_lm", [True, False])
def test_any_chunking_gives_the_one_shot_result(decoder: FlashlightDecoder, use_lm: bool) -> None:
    # long enough for two prune points, so committed history is part of the result
    log_probs = make_log_probs(_long_text(1, 90), seed=3)
    assert len(log_probs) > 2 * PRUNE_EVERY
    one = decoder.new_stream(use_lm=use_lm)
    one.accept(log_probs)
    reference = one.finalize()
    assert len(reference.words) > 60
    rng = np.random.default_rng(0)
    for cuts in (list(range(1, len(log_probs))), sorted(rng.choice(len(log_probs), 40, replace=False).tolist())):
        assert _chunked(decoder.new_stream(use_lm=use_lm), log_probs, cuts).finalize() == reference


def test_lm_decodes_lm_words_and_timings_increase(decoder: FlashlightDecoder) -> None:
    text = "the cat sat on the mat"
    stream = decoder.new_stream()
    stream.accept(make_log_probs(text, seed=5))
    final = stream.finalize()
    assert final.text == text
    assert final.stable_words == len(final.words) == 6
    ends = [w.end_frame for w in final.words]
    starts = [w.start_frame for w in final.words]
    assert all(s < e for s, e in zip(starts, ends, strict=True))
    assert all(e <= s for e, s in zip(ends, starts[1:], strict=False))
    assert all(0.0 < w.confidence <= 1.0 for w in final.words)


def test_stable_prefix_is_never_revised_and_peek_leaves_no_trace(decoder: FlashlightDecoder) -> None:
    log_probs = make_log_probs(_long_text(2, 30), seed=7, noise=2.0)
    stream, twin = decoder.new_stream(), decoder.new_stream()
    stable: list[str] = []
    for start in range(0, len(log_probs), 20):
        chunk, ahead = log_probs[start : start + 20], log_probs[start + 20 : start + 40]
        stream.accept(chunk)
        twin.accept(chunk)
        peeked = stream.peek(ahead)
        partial = stream.partial()
        assert partial == twin.partial()  # the peek changed nothing
        words = partial.text.split()
        assert words[: len(stable)] == stable  # what was stable stays
        assert peeked.text.split()[: partial.stable_words] == words[: partial.stable_words]
        stable = words[: partial.stable_words]
    final = stream.finalize()
    assert final == twin.finalize()
    assert final.text.split()[: len(stable)] == stable
    assert len(stable) > 10  # the prefix does grow


def test_peek_shows_the_look_ahead(decoder: FlashlightDecoder) -> None:
    log_probs = make_log_probs("the cat sat on the mat", seed=5)
    stream = decoder.new_stream()
    half = len(log_probs) // 2
    stream.accept(log_probs[:half])
    assert len(stream.peek(log_probs[half:]).text) > len(stream.partial().text)


def test_shipped_model_on_real_speech(speech: tuple[np.ndarray, int]) -> None:
    """Streaming through the engine == one-shot over the same frames; sensible words, increasing times."""
    audio, rate = speech
    engines = {
        name: Engine.load(DEFAULT_MODEL_DIR, decoder=DecoderConfig(decoder=name), threads=1,
                          endpoint=EndpointConfig(enabled=False))
        for name in ("flashlight", "pyctcdecode")
    }
    finals = {}
    for name, engine in engines.items():
        stream = engine.new_stream(sample_rate=rate, record_log_probs=True)
        for start in range(0, len(audio), 1600):
            stream.accept_audio(audio[start : start + 1600])
        stream.finish()
        events = stream.events()
        finals[name] = [e for e in events if isinstance(e, Final) and e.text]
        if name == "flashlight":
            one = engine.new_decoder_stream()
            one.accept(stream.recorded_log_probs())
            assert [e.text for e in finals[name]] == [one.finalize().text]
    words = [w for f in finals["flashlight"] for w in f.words]
    assert len(words) >= 8
    assert all(w.start < w.end for w in words)
    assert all(a.end <= b.start for a, b in zip(words, words[1:], strict=False))
    assert words[-1].end <= len(audio) / rate
    lexicon = engines["flashlight"].language_model
    assert lexicon is not None and all(w.text in lexicon.unigrams for w in words)
    # As good as the reference search against what was said (the two differ where the model is
    # unsure, so word overlap between them says little), and better than no LM at all.
    said = dict((p.name, t) for p, t in read_transcripts(DEV_DIR))["sense_and_sensibility_01_austen_64kb-0870.wav"]
    heard = {name: " ".join(f.text for f in fs) for name, fs in finals.items()}
    greedy = engines["flashlight"].transcribe_offline(audio, rate, use_lm=False).text
    wer = {name: word_error_rate([said], [text]) for name, text in heard.items()}
    assert wer["flashlight"] <= wer["pyctcdecode"] + 0.1, heard
    assert wer["flashlight"] < word_error_rate([said], [greedy]), (heard, greedy)


def test_errors_say_what_is_wrong(decoder: FlashlightDecoder, lm: LanguageModel) -> None:
    with pytest.raises(ValueError, match="hotwords are not supported with decoder='flashlight'"):
        decoder.new_stream(hotwords=["kubernetes"])
    with pytest.raises(ValueError, match="hotwords are not supported"):
        FlashlightDecoder(VOCAB, lm=lm, config=DecoderConfig(decoder="flashlight", hotwords=("x",)))
    with pytest.raises(ValueError, match="decoder must be one of"):
        DecoderConfig(decoder="kaldi")
    stream = decoder.new_stream()
    with pytest.raises(VocabularyError, match="logits have 31 columns, vocabulary has 32"):
        stream.accept(np.zeros((3, 31), dtype=np.float32))
    stream.accept(make_log_probs("the cat", seed=1))  # the bad chunk lost nothing
    assert stream.finalize().text == "the cat"
    with pytest.raises(StreamStateError, match="after finalize"):
        stream.accept(make_log_probs("the", seed=1))


def test_empty_stream(decoder: FlashlightDecoder) -> None:
    stream = decoder.new_stream()
    stream.accept(np.zeros((0, len(VOCAB)), dtype=np.float32))
    assert stream.partial().text == ""
    assert stream.finalize().text == ""


def test_alternatives_are_distinct_and_ranked(decoder: FlashlightDecoder) -> None:
    stream = decoder.new_stream()
    stream.accept(make_log_probs("the cat sat on the mat", seed=2, noise=2.5))
    final = stream.finalize()
    alternatives = stream.alternatives(5)
    assert alternatives[0].text == final.text and alternatives[0].words == final.words
    assert len({a.text for a in alternatives}) == len(alternatives) > 1
    assert [a.score for a in alternatives] == sorted((a.score for a in alternatives), reverse=True)
    assert stream.alternatives(1) == alternatives[:1]


def test_grammar_streams_use_the_grammar_search(decoder: FlashlightDecoder) -> None:
    from streaming.decoder import GrammarStream
    from streaming.grammar import compile_grammar

    stream = decoder.new_stream(grammar=compile_grammar(["cat sat", "mat"], decoder.labels))
    assert isinstance(stream, GrammarStream)
    stream.accept(make_log_probs("the cat sat on the mat", seed=1, noise=0.5))
    words = stream.finalize().text.split()
    assert words and set(words) <= {"cat", "sat", "mat", "[unk]"}


def test_backend_benchmark_prints_both_decoders(capsys: pytest.CaptureFixture[str]) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from bench_decoder_backends import main as bench
    from conftest import DEV_DIR

    assert bench([str(DEV_DIR), "--limit", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[0] for r in rows] == ["pyctcdecode", "flashlight"]
    assert all(0.0 <= float(r[4]) <= 200.0 and float(r[5]) > 0.0 for r in rows)  # WER %, decoder CPU
