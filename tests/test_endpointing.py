"""Rule 2b (trailing silence after a complete word): earlier finals, no cut inside a word.

Real parts: the shipped model and LM on two LibriVox sentences joined by a
pause, streamed in 100 ms blocks; the reference word times come from the
offline decode of the same audio.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from conftest import DEV_DIR

from streaming import EndpointConfig, Engine, Final, WindowConfig
from streaming.endpointing import WORD_END, Endpointer, QuietAudio, ends_in_word
from streaming.loading import DEFAULT_MODEL_DIR

RATE = 16_000
CLIPS = ("sense_and_sensibility_01_austen_64kb-0870.wav", "sense_and_sensibility_01_austen_64kb-0880.wav")


@pytest.fixture(scope="module")
def engines() -> dict[tuple[str, float], Engine]:
    """Rule 2b on and off, at 1 s and 0.5 s chunks (endpoints are decided once a chunk)."""
    base = Engine.load(DEFAULT_MODEL_DIR, threads=1)
    return {
        (name, chunk): Engine(base.model, language_model=base.language_model, window=WindowConfig(chunk_s=chunk),
                              endpoint=EndpointConfig(silence_after_word_s=word))
        for name, word in (("word", 0.6), ("plain", None))
        for chunk in (1.0, 0.5)
    }


def _with_pause(pause_s: float) -> tuple[np.ndarray, float]:
    """Two sentences with ``pause_s`` of room-noise silence between and 0.5 s after;
    returns the audio and where the pause starts.

    (Digital zeros are not what a microphone hears, and the model emits letters on them.)
    """
    first, second = (sf.read(DEV_DIR / name, dtype="float32")[0] for name in CLIPS)
    noise = np.random.default_rng(0).normal(0.0, 0.002, int((pause_s + 0.5) * RATE))
    cut = int(pause_s * RATE)
    audio = np.concatenate([first, noise[:cut], second, noise[cut:]])
    return audio.astype(np.float32), len(first) / RATE


def _stream(engine: Engine, audio: np.ndarray) -> list[tuple[float, Final]]:
    """(audio seconds fed when the final came out, final) for each final with text."""
    stream = engine.new_stream(sample_rate=RATE)
    out: list[tuple[float, Final]] = []
    for start in range(0, len(audio), RATE // 10):
        stream.accept_audio(audio[start : start + RATE // 10])
        out += [(min(start + RATE // 10, len(audio)) / RATE, e) for e in stream.events() if isinstance(e, Final)]
    stream.finish()
    out += [(len(audio) / RATE, e) for e in stream.events() if isinstance(e, Final)]
    return [(t, f) for t, f in out if f.text]


def test_fires_earlier_on_real_speech_with_pauses(engines: dict[tuple[str, float], Engine]) -> None:
    audio, pause_start = _with_pause(1.6)
    for chunk in (1.0, 0.5):
        word, plain = _stream(engines["word", chunk], audio), _stream(engines["plain", chunk], audio)
        assert [f.text for _, f in word] == [f.text for _, f in plain]  # same segments, sooner
        assert word[0][1].reason == plain[0][1].reason == "silence"  # first sentence: in the pause
        assert pause_start - 0.5 < word[0][0] <= plain[0][0] < pause_start + 1.6
        # second sentence, 0.5 s of silence before the end of audio: only rule 2b ends it on silence
        assert word[1][1].reason == "silence"
        assert plain[1][1].reason == "finish"
    # at 0.5 s chunks the first final comes a whole chunk or more sooner (at 1 s both land in one window)
    word, plain = _stream(engines["word", 0.5], audio), _stream(engines["plain", 0.5], audio)
    assert word[0][0] <= plain[0][0] - 0.5


def test_a_pause_shorter_than_rule_2_ends_the_sentence(engines: dict[tuple[str, float], Engine]) -> None:
    audio, pause_start = _with_pause(1.0)
    word = _stream(engines["word", 0.5], audio)
    assert [f.reason for _, f in word] == ["silence", "silence"]
    assert pause_start - 0.5 < word[0][0] < pause_start + 1.0


def test_never_cuts_inside_a_word(engines: dict[tuple[str, float], Engine]) -> None:
    """Every rule-2b cut follows a lexicon word, in the silence before the next word."""
    lexicon = engines["word", 1.0].language_model.unigrams  # type: ignore[union-attr]
    for pause_s in (0.7, 1.0, 1.6):
        audio, pause_start = _with_pause(pause_s)
        for chunk in (1.0, 0.5):
            finals = [f for _, f in _stream(engines["word", chunk], audio)]
            assert len(finals) == 2
            first, second = finals
            assert first.reason == "silence"
            assert first.text.split()[-1] in lexicon
            # the cut lies in the silence between the words (the look-ahead may have heard
            # the rest of rule 2b's silence: that part opens the next segment)
            assert first.words[-1].end < first.end <= second.words[0].start
            assert pause_start - 0.5 < first.end  # after the first sentence (its own tail is silence)


def test_a_probe_sends_the_final_within_a_block_of_the_silence(engines: dict[tuple[str, float], Engine]) -> None:
    """Between chunks the model hears nothing new; when the audio after the first sentence's
    last letter has fallen to the room noise, a probe runs a window as soon as rule 2b's
    0.6 s are complete.  Without it the final waits for the next 0.6 s chunk and its 0.4 s
    look-ahead.  At every phase of the chunk grid (a lead-in of room noise shifts it): the
    same finals, and the first within 0.6 s + a 0.1 s block (+ 3 frames) of its last word.
    (The second sentence's last word rings on for 0.4 s, louder than the floor: no probe.)"""
    base = engines["word", 1.0]
    probe, wait = (Engine(base.model, language_model=base.language_model, endpoint=EndpointConfig(probe_quiet_audio=on))
                   for on in (True, False))
    audio, _ = _with_pause(1.6)
    delays: dict[bool, list[float]] = {True: [], False: []}
    for lead_s in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5):
        lead = np.random.default_rng(2).normal(0.0, 0.002, int(lead_s * RATE)).astype(np.float32)
        on, off = _stream(probe, np.concatenate([lead, audio])), _stream(wait, np.concatenate([lead, audio]))
        assert [(f.text, f.reason) for _, f in on] == [(f.text, f.reason) for _, f in off]
        assert all(f.reason == "silence" for _, f in on)
        (t_on, f_on), (t_off, f_off) = on[0], off[0]
        assert t_on <= t_off
        delays[True].append(t_on - f_on.words[-1].end)
        delays[False].append(t_off - f_off.words[-1].end)
    assert max(delays[True]) <= 0.6 + 0.1 + 0.06
    assert max(delays[False]) > 1.0  # what the probe saves, at the worst phase


def test_no_probe_while_the_model_may_still_be_hearing_a_word() -> None:
    """A weak model's letters come late: the blank frames after its last letter may still be
    speech.  Loud audio there (within the tail allowance or after it) stops the probe."""
    rng = np.random.default_rng(3)
    quiet = QuietAudio(320)
    speech, noise = 0.1 * rng.standard_normal(3 * RATE), 0.002 * rng.standard_normal(RATE)
    audio = np.concatenate([speech, noise[: RATE // 2], speech[: RATE // 5], noise[RATE // 2 :]])
    quiet.accept(audio.astype(np.float32))
    # hops: 150 of speech, 25 of noise (150-175), 10 of speech again (175-185), 25 of noise
    assert quiet.frames == 210
    assert quiet.quiet_between(185) and quiet.quiet_between(200)
    assert not quiet.quiet_between(155) and not quiet.quiet_between(184)
    assert not quiet.quiet_between(210)  # no hop after it to say
    quiet.accept(np.concatenate([speech, noise]).astype(np.float32))  # 5 s more: the first hops are dropped
    assert quiet.frames == 410 and not quiet.quiet_between(150) and quiet.quiet_between(400)


def test_digital_silence_does_not_set_the_floor() -> None:
    """Zeros (padding before a clip, a muted input) are quiet, but a floor taken from them would
    make every room-noise pause loud, and no probe would fire."""
    rng = np.random.default_rng(4)
    quiet = QuietAudio(320)
    quiet.accept(np.zeros(RATE, dtype=np.float32))
    assert not quiet.quiet_between(10)  # zeros alone: nothing known of the room
    quiet.accept(np.concatenate([0.1 * rng.standard_normal(3 * RATE), 0.002 * rng.standard_normal(RATE // 2),
                                 np.zeros(RATE // 5)]).astype(np.float32))
    # hops: 50 of zeros, 150 of speech, 25 of noise (200-225), 10 of zeros (225-235)
    assert quiet.quiet_between(205) and quiet.quiet_between(230)
    assert not quiet.quiet_between(190)


def test_a_segment_without_speech_says_nothing(engines: dict[tuple[str, float], Engine]) -> None:
    """Room noise alone: the LM's word bonus can spell a letter out of it, but no frame's best
    token was a letter, so the segment's final is empty (and the speech before it keeps its text)."""
    noise = np.random.default_rng(1).normal(0.0, 0.002, 3 * RATE).astype(np.float32)
    for chunk in (1.0, 0.5):
        assert _stream(engines["word", chunk], noise) == []
        speech, _ = _with_pause(0.7)
        finals = _stream(engines["word", chunk], np.concatenate([speech, noise]))
        assert len(finals) == 2 and all(f.reason == "silence" for _, f in finals)


def test_rule_2b_waits_for_a_complete_word() -> None:
    ep = Endpointer(EndpointConfig(silence_after_speech_s=0.2, silence_after_word_s=0.06), 0.02)
    silent = np.array([False] * 3 + [True] * 10)
    assert ep.scan(silent) == (6, WORD_END)  # 3 frames of silence: ask the decoder
    assert not ends_in_word("the stra", frozenset({"the", "strategy"}))  # it says no: scan on
    assert ep.scan(silent[6:]) == (7, "silence")  # rule 2 at 10 frames of silence
    ep.reset()
    assert ep.scan(np.array([False, True, False, True, True])) is None  # the run restarted after speech
    assert ep.word_end_ahead(np.array([True, False]))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="silence_after_word_s must be None or in 0.04..3600 s, got 0.0"):
        EndpointConfig(silence_after_word_s=0.0)
    assert EndpointConfig(silence_after_word_s=None).silence_after_word_s is None
    disabled = Endpointer(EndpointConfig(enabled=False), 0.02)
    assert disabled.scan(np.ones(200, dtype=bool)) is None
    assert not disabled.word_end_ahead(np.ones(200, dtype=bool))
