"""The server's sans-I/O layer: parsing, serialising, error mapping; fuzzed with hypothesis.

No sockets and no engine here: each protocol object is fed frames directly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.config import ServerConfig
from server.errors import ErrorCode, SessionError, error_report
from server.native import NativeProtocol, ServerInfo
from server.protocol import AudioIn, Configure, Finish, Reset, TimedEvent, Timing, decode_pcm
from server.vosk import VoskProtocol
from streaming.errors import AudioError, StreamStateError
from streaming.events import Alternative, Final, Partial, Word

pytestmark = pytest.mark.timeout(60)

INFO = ServerInfo(
    server_version="test",
    model="tiny",
    language=None,
    vocab_size=32,
    sample_rate=16_000,
    frame_rate=50.0,
    lm=None,
    max_message_bytes=2**20,
    idle_timeout_s=30.0,
    max_session_s=3600.0,
)


def _code(exc: pytest.ExceptionInfo[SessionError]) -> str:
    return exc.value.code.text


# ---------------------------------------------------------------- vosk


def test_vosk_config_then_audio_then_eof() -> None:
    proto = VoskProtocol()
    cmd = proto.receive(
        '{"config": {"sample_rate": 8000.0, "words": 0, "max_alternatives": 2, '
        '"phrase_list": ["hello  world", "[unk]"], "model": "ignored"}}'
    )
    assert isinstance(cmd, Configure)
    assert cmd.options.sample_rate == 8000
    assert cmd.options.words is False
    assert cmd.options.max_alternatives == 2
    assert cmd.options.grammar == ("hello world", "[unk]") and cmd.options.hotwords == ()
    audio = proto.receive(np.array([1, -2, 3], dtype="<i2").tobytes())
    assert isinstance(audio, AudioIn) and audio.samples.tolist() == [1, -2, 3]
    assert isinstance(proto.receive('{"reset": 1}'), Reset)
    assert isinstance(proto.receive('{"eof" : 1}'), Finish)
    with pytest.raises(SessionError, match="after eof"):
        proto.receive(b"\x00\x00")


def test_vosk_defaults_without_config() -> None:
    proto = VoskProtocol()
    assert isinstance(proto.receive(b""), AudioIn)  # an empty block is fine, as in vosk
    assert proto.options.sample_rate == 8000  # vosk-server's default
    assert proto.options.words is True
    server_wide = VoskProtocol(ServerConfig(vosk_sample_rate=16_000, vosk_words=False, vosk_max_alternatives=5))
    assert (server_wide.options.sample_rate, server_wide.options.words, server_wide.options.max_alternatives) == (
        16_000,
        False,
        5,
    )
    server_wide.receive('{"config": {"words": 1}}')  # a config still overrides them
    assert server_wide.options.words is True and server_wide.options.max_alternatives == 5


def test_vosk_is_as_lenient_as_vosk_server() -> None:
    """What vosk-server's asr_server.py takes: float(rate), bool(words), int(max_alternatives),
    a second config merged into the first."""
    proto = VoskProtocol()
    first = proto.receive('{"config": {"sample_rate": "16000", "words": "yes", "max_alternatives": "20"}}')
    assert isinstance(first, Configure)
    assert (first.options.sample_rate, first.options.words, first.options.max_alternatives) == (16_000, True, 20)
    second = proto.receive('{"config": {"words": 0, "max_alternatives": 2.7}}')
    assert isinstance(second, Configure)
    assert (second.options.sample_rate, second.options.words, second.options.max_alternatives) == (16_000, False, 2)
    proto.receive('{"config": {"sample_rate": " 8000.0 ", "words": []}}')
    assert proto.options.sample_rate == 8000 and proto.options.words is False


def test_vosk_odd_byte_counts_keep_the_spare_byte() -> None:
    pcm = np.array([1, -2, 300, -32768, 5], dtype="<i2").tobytes()  # 10 bytes
    proto = VoskProtocol()
    got: list[int] = []
    for piece in (pcm[:3], pcm[3:4], pcm[4:9], pcm[9:]):  # 3, 1, 5, 1 bytes
        command = proto.receive(piece)
        assert isinstance(command, AudioIn)
        got += command.samples.tolist()
    assert got == [1, -2, 300, -32768, 5]


def test_vosk_config_after_audio_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    proto = VoskProtocol()
    proto.receive('{"config": {"sample_rate": 16000}}')
    proto.receive(b"\x00\x00")
    with caplog.at_level("WARNING", logger="server.vosk"):
        late = proto.receive('{"config": {"sample_rate": 44100, "words": 0}}')
    assert isinstance(late, Configure) and late.options == proto.options
    assert proto.options.sample_rate == 16_000 and proto.options.words is True
    assert "config after audio ignored" in caplog.text and "sample_rate" in caplog.text
    with pytest.raises(SessionError, match="must be a number of Hz"):  # vosk-server's float() fails too
        proto.receive('{"config": {"sample_rate": "fast"}}')


@pytest.mark.parametrize(
    ("frame", "code", "match"),
    [
        ("{not json", "bad_json", "could not parse"),
        ("[1, 2, 3]", "unsupported_data", "got a JSON array"),
        ('"audio"', "unsupported_data", "got a JSON string"),
        ('{"hello": 1}', "bad_message", "exactly one of 'config', 'eof', 'reset'"),
        ('{"eof": 1, "reset": 1}', "bad_message", "exactly one"),
        ('{"config": []}', "bad_message", "config must be a JSON object"),
        ('{"config": {"sample_rate": "16k"}}', "bad_audio", 'must be a number of Hz, got string "16k"'),
        ('{"config": {"sample_rate": null}}', "bad_audio", "must be a number of Hz"),
        ('{"config": {"sample_rate": "16"}}', "bad_audio", "outside 4000..384000"),
        ('{"config": {"sample_rate": 16}}', "bad_audio", "outside 4000..384000"),
        ('{"config": {"sample_rate": 1e12}}', "bad_audio", "outside"),
        ('{"config": {"sample_rate": NaN}}', "bad_json", "NaN is not valid JSON"),
        ('{"config": {"max_alternatives": -1}}', "bad_message", "must be in 0..100"),
        ('{"config": {"max_alternatives": "2.5"}}', "bad_message", "must be a whole number"),
        ('{"config": {"max_alternatives": null}}', "bad_message", "must be a whole number"),
        ('{"config": {"phrase_list": "hello"}}', "bad_message", "must be a list of strings"),
        ('{"config": {"phrase_list": [1]}}', "bad_message", r"phrase_list\[0\] must be a string"),
        ('{"eof": 0}', "bad_message", "eof must be 1"),
    ],
)
def test_vosk_bad_text_frames(frame: str, code: str, match: str) -> None:
    with pytest.raises(SessionError, match=match) as exc:
        VoskProtocol().receive(frame)
    assert _code(exc) == code


def _word(text: str, start: float) -> Word:
    return Word(text, start, start + 0.2, 0.5)


def _timed(event: Partial | Final) -> TimedEvent:
    return TimedEvent(event, Timing(0.1, 1.0, 0.0))


def test_vosk_reply_holds_the_finals_of_its_block_merged() -> None:
    proto = VoskProtocol()
    proto.receive(b"")
    assert json.loads(proto.audio_reply()) == {"partial": ""}
    proto.accept_events([_timed(Partial("he", "", 0, 0.0, 0.4))])
    assert json.loads(proto.audio_reply()) == {"partial": "he"}
    final0 = Final("hello", (_word("hello", 0.1),), 0, 0.0, 1.0, "silence")
    final1 = Final("world", (_word("world", 1.1),), 1, 1.0, 2.0, "silence")
    proto.accept_events([_timed(final0)])
    first = json.loads(proto.audio_reply())  # the block whose decoding made the final
    assert first == {"text": "hello", "result": [{"word": "hello", "start": 0.1, "end": 0.3, "conf": 0.5}]}
    assert json.loads(proto.audio_reply()) == {"partial": ""}
    # Two finals made by one block: one reply (the client reads one), merged.
    proto.accept_events([_timed(final0), _timed(Partial("x", "", 1, 1.0, 1.5)), _timed(final1)])
    both = json.loads(proto.audio_reply())
    assert both["text"] == "hello world" and [w["word"] for w in both["result"]] == ["hello", "world"]
    assert json.loads(proto.audio_reply()) == {"partial": ""}
    proto.accept_events([_timed(final0), _timed(final1)])
    merged = json.loads(proto.final_reply())
    assert merged["text"] == "hello world"
    assert [w["word"] for w in merged["result"]] == ["hello", "world"]
    assert json.loads(proto.final_reply()) == {"text": ""}


def test_vosk_alternatives_layout() -> None:
    """vosk-api's NbestResult: {"alternatives": [{"confidence", "result": [{word, start, end}], "text"}]}."""
    proto = VoskProtocol()
    proto.receive('{"config": {"max_alternatives": 3}}')
    alternatives = (
        Alternative("hi", (_word("hi", 0.0),), -1.5),
        Alternative("high", (_word("high", 0.0),), -2.25),
    )
    proto.accept_events([_timed(Final("hi", (_word("hi", 0.0),), 0, 0.0, 1.0, "finish", alternatives))])
    assert json.loads(proto.final_reply()) == {
        "alternatives": [
            {"confidence": -1.5, "result": [{"word": "hi", "start": 0.0, "end": 0.2}], "text": "hi"},
            {"confidence": -2.25, "result": [{"word": "high", "start": 0.0, "end": 0.2}], "text": "high"},
        ]
    }
    # Nothing recognised: vosk's empty n-best reply.
    assert json.loads(proto.final_reply()) == {"alternatives": [{"confidence": 1.0, "text": ""}]}
    # Two finals in one reply: each alternative of the last after the best of the first.
    first = Final("oh", (_word("oh", 0.0),), 0, 0.0, 1.0, "silence", (Alternative("oh", (_word("oh", 0.0),), -1.0),))
    second = Final("hi", (_word("hi", 1.0),), 1, 1.0, 2.0, "finish", alternatives)
    proto.accept_events([_timed(first), _timed(second)])
    reply = json.loads(proto.final_reply())
    assert [(a["text"], a["confidence"]) for a in reply["alternatives"]] == [("oh hi", -2.5), ("oh high", -3.25)]
    assert [w["word"] for w in reply["alternatives"][1]["result"]] == ["oh", "high"]
    proto = VoskProtocol()
    proto.receive('{"config": {"max_alternatives": 3, "words": false}}')
    proto.accept_events([_timed(Final("hi", (_word("hi", 0.0),), 0, 0.0, 1.0, "finish", alternatives))])
    assert json.loads(proto.final_reply())["alternatives"][0] == {"confidence": -1.5, "text": "hi"}


# ---------------------------------------------------------------- native


def test_native_start_audio_reset_finish() -> None:
    proto = NativeProtocol(INFO)
    hello = json.loads(proto.hello())
    assert hello["type"] == "hello" and hello["protocol_version"] == 1
    assert hello["model"]["frame_rate"] == 50.0
    cmd = proto.receive(
        json.dumps(
            {
                "type": "start",
                "version": 1,
                "sample_rate": 44100,
                "encoding": "float32",
                "options": {"lm": False, "hotwords": ["foo bar"], "partials": False, "words": True},
            }
        )
    )
    assert isinstance(cmd, Configure)
    assert cmd.options.sample_rate == 44100 and cmd.options.encoding == "float32"
    assert cmd.options.use_lm is False and cmd.options.hotwords == ("foo bar",)
    samples = np.array([0.5, -0.25], dtype="<f4")
    audio = proto.receive(samples.tobytes())
    assert isinstance(audio, AudioIn) and audio.samples.tolist() == [0.5, -0.25]
    assert isinstance(proto.receive('{"type": "reset"}'), Reset)
    assert isinstance(proto.receive('{"type": "finish"}'), Finish)
    with pytest.raises(SessionError, match="after finish"):
        proto.receive('{"type": "reset"}')


@pytest.mark.parametrize(
    ("frames", "code", "match"),
    [
        ([b"\x00\x00"], "start_required", "binary audio before the start message"),
        (['{"type": "finish"}'], "start_required", "finish before the start message"),
        (['{"type": "stop"}'], "bad_message", "unknown message type 'stop'"),
        (['{"kind": "start"}'], "bad_message", "need a string field 'type'"),
        (['{"type": "start", "rate": 8000}'], "bad_message", "unknown field 'rate' in start"),
        (['{"type": "start", "version": 2}'], "bad_message", "speaks protocol version 1"),
        (['{"type": "start", "encoding": "mulaw"}'], "bad_message", "start.encoding must be"),
        (['{"type": "start", "sample_rate": 0}'], "bad_audio", "outside 4000..384000"),
        (['{"type": "start", "sample_rate": true}'], "bad_audio", "must be a number of Hz"),
        (['{"type": "start", "options": {"lm": "on"}}'], "bad_message", "start.options.lm must be"),
        (['{"type": "start", "options": {"beam": 3}}'], "bad_message", "unknown field 'beam'"),
        (['{"type": "start"}', '{"type": "start"}'], "bad_message", "already received"),
        (['{"type": "start"}', b"\x00"], "bad_audio", "1 bytes; int16 PCM needs a multiple of 2"),
        (['{"type": "start", "encoding": "float32"}', b"\x00\x00"], "bad_audio", "multiple of 4"),
        (
            ['{"type": "start", "encoding": "float32"}', np.array([np.nan], "<f4").tobytes()],
            "bad_audio",
            "1 NaN or infinite",
        ),
        (['{"type": "start"}', '{"type": "reset", "now": true}'], "bad_message", "unknown field 'now'"),
        (["\u00e9t\u00e9"], "bad_json", "could not parse"),
    ],
)
def test_native_bad_frames(frames: list[str | bytes], code: str, match: str) -> None:
    proto = NativeProtocol(INFO)
    with pytest.raises(SessionError, match=match) as exc:
        for frame in frames:
            proto.receive(frame)
    assert _code(exc) == code


def test_native_event_messages_carry_stable_prefix_words_and_timing() -> None:
    proto = NativeProtocol(INFO)
    proto.receive('{"type": "start"}')
    words = (_word("hello", 0.1),)
    messages = [
        json.loads(m)
        for m in proto.event_messages(
            [
                _timed(Partial("hel", "", 0, 0.0, 0.4)),
                _timed(Partial("hello wo", "hello", 0, 0.0, 0.8, words)),  # only the newest partial is sent
                _timed(Final("hello world", words, 0, 0.0, 1.2, "silence")),
                _timed(Partial("x", "", 1, 1.2, 1.6)),
            ]
        )
    ]
    assert [m["type"] for m in messages] == ["final", "partial"]
    final, partial = messages
    assert final["words"] == [{"word": "hello", "start": 0.1, "end": 0.3, "conf": 0.5}]
    assert final["reason"] == "silence" and final["segment"] == 0
    assert final["timing"] == {"latency_ms": 100.0, "audio_received_s": 1.0, "server_time": 0.0}
    assert partial["segment"] == 1 and partial["stable_text"] == ""
    assert json.loads(NativeProtocol.end(2, 3.5)) == {"type": "end", "segments": 2, "audio_s": 3.5}


# ---------------------------------------------------------------- error mapping


def test_error_report_is_the_one_mapping_and_never_leaks() -> None:
    assert error_report(SessionError(ErrorCode.IDLE_TIMEOUT, "idle")).close_code == 1008
    assert error_report(AudioError("stereo audio")).code is ErrorCode.BAD_AUDIO
    leaked = error_report(StreamStateError("/srv/secret/model.bin: boom"))
    assert leaked.code is ErrorCode.INTERNAL_ERROR and "secret" not in leaked.message
    internal = error_report(KeyError("/home/user/.token"))
    assert internal.close_code == 1011 and ".token" not in internal.close_reason
    long = error_report(SessionError(ErrorCode.BAD_MESSAGE, "\u00e9" * 500))
    assert len(long.close_reason.encode()) <= 123


def test_decode_pcm_little_endian() -> None:
    samples = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
    assert decode_pcm(samples.astype("<i2").tobytes(), "int16").tolist() == samples.tolist()
    assert decode_pcm(b"", "float32").size == 0


def test_server_config_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"max_batch_size must be in 1..1024, got 0"):
        ServerConfig(max_batch_size=0)
    with pytest.raises(ValueError, match="native_path must start with '/'"):
        ServerConfig(native_path="v1")


# ---------------------------------------------------------------- fuzzing

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "config",
        "eof",
        "reset",
        "type",
        "sample_rate",
        "encoding",
        "options",
        "version",
        "words",
        "max_alternatives",
        "phrase_list",
        "lm",
        "hotwords",
        "partials",
    ]
)
_messages = st.dictionaries(_keys | st.text(max_size=8), _json, max_size=5).map(json.dumps)
_types = st.sampled_from(["start", "reset", "finish", "stop", ""])
_native_messages = st.builds(
    lambda kind, body: json.dumps({"type": kind, **body}),
    _types,
    st.dictionaries(_keys, _json | st.dictionaries(_keys, _json, max_size=3), max_size=4),
)
_frames = st.one_of(st.binary(max_size=64), st.text(max_size=64), _messages, _native_messages)


def _fuzz(proto: VoskProtocol | NativeProtocol, frames: list[str | bytes]) -> None:
    for frame in frames:
        try:
            cmd = proto.receive(frame)
        except SessionError as exc:
            report = error_report(exc)
            assert report.close_code in (1003, 1007, 1008)
            assert report.message and len(report.close_reason.encode()) <= 123
            return
        assert isinstance(cmd, (Configure, AudioIn, Reset, Finish))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frames, max_size=6))
def test_fuzz_vosk_parser_only_raises_session_errors(frames: list[str | bytes]) -> None:
    _fuzz(VoskProtocol(), frames)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frames, max_size=6))
def test_fuzz_native_parser_only_raises_session_errors(frames: list[str | bytes]) -> None:
    _fuzz(NativeProtocol(INFO), frames)


@settings(max_examples=100, deadline=None)
@given(st.lists(_native_messages | st.binary(max_size=16), max_size=6))
def test_fuzz_native_after_start(frames: list[str | bytes]) -> None:
    proto = NativeProtocol(INFO)
    proto.receive('{"type": "start", "encoding": "float32"}')
    _fuzz(proto, frames)
