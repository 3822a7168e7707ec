"""Microphone captions: caption rendering and subtitle writers, then ``xlsr-stream mic`` end to end.

The only stand-in is the sounddevice module (no sound card here): a fake
``InputStream`` calls the real callback from a thread of its own with 48 kHz
blocks of real speech, the way PortAudio would.  The engine, the model (tiny,
random) and the server are real.
"""

from __future__ import annotations

import asyncio
import doctest
import importlib.abc
import io
import json
import re
import socket
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr
import test_latency
from test_latency import SPEECH, running_server, vosk_server_lookalike

from client.captions import (
    ERASE_LINE,
    CaptionRenderer,
    Cue,
    JsonLog,
    SubtitleLayout,
    SubtitleWriter,
    cues_from_final,
    srt_document,
    terminal_lines,
    webvtt_document,
)
from streaming.events import Final, Partial, Word

pytestmark = pytest.mark.timeout(60)

# The session fixture of test_latency.py: the tiny model is written once per run.
local_model = test_latency.local_model

CAPTION = re.compile(r"^\[\d\d:\d\d\.\d\d - \d\d:\d\d\.\d\d\] \S")


def final(text: str, start: float, end: float, words: tuple[Word, ...] = (), segment: int = 0) -> Final:
    return Final(text, words, segment, start, end, "silence")


# ---------------------------------------------------------------- captions
def test_docstring_examples() -> None:
    import client.captions
    import demos.mic

    for module in (client.captions, demos.mic):
        assert doctest.testmod(module).failed == 0


def test_renderer_rewrites_the_partial_in_place_and_commits_finals() -> None:
    out = io.StringIO()
    r = CaptionRenderer(out, partials=True, width=60)
    r.show(Partial("hel", "", 0, 0.0, 0.5))
    assert terminal_lines(out.getvalue()) == ["[00:00.00 ...] hel"]
    r.show(Partial("hello wor", "hello", 0, 0.0, 1.0))
    assert terminal_lines(out.getvalue()) == ["[00:00.00 ...] hello wor"]
    before = out.getvalue()
    r.show(Partial("hello wor", "hello", 0, 0.0, 1.1))  # vosk repeats partials: no redraw
    assert out.getvalue() == before
    r.show(final("hello world", 0.24, 1.32))
    r.show(Partial("and", "", 1, 1.32, 2.0))
    assert terminal_lines(out.getvalue()) == ["[00:00.24 - 00:01.32] hello world", "[00:01.32 ...] and"]
    r.show(final("", 1.32, 4.0))  # an empty segment commits nothing and clears the partial
    r.show(Partial("x" * 200, "", 2, 4.0, 9.0))  # too long: the newest end is kept
    r.close()
    text = out.getvalue()
    assert terminal_lines(text) == ["[00:00.24 - 00:01.32] hello world"]
    assert text.count(ERASE_LINE) >= 5
    shown = terminal_lines(text.rsplit(ERASE_LINE, 1)[0])[-1]  # the screen before close()
    assert shown.startswith("[00:04.00 ...] ...x") and len(shown) <= 60


def test_renderer_dims_the_part_of_a_partial_that_may_change() -> None:
    out = io.StringIO()
    r = CaptionRenderer(out, partials=True, width=40, color=True)
    r.show(Partial("the cat sat", "the cat", 0, 0.0, 1.0))
    assert out.getvalue() == ERASE_LINE + "[00:00.00 ...] the cat\x1b[2m sat\x1b[0m"
    r.show(Partial("the cat sat on the mat today", "the cat sat on", 0, 0.0, 2.0))  # truncated to 40
    last = out.getvalue().rsplit(ERASE_LINE, 1)[1]
    assert last == "[00:00.00 ...] ... sat on\x1b[2m the mat today\x1b[0m"
    assert terminal_lines(out.getvalue()) == ["[00:00.00 ...] ... sat on the mat today"]


def test_renderer_without_partials_writes_plain_lines() -> None:
    out = io.StringIO()
    r = CaptionRenderer(out, partials=False)
    r.show(Partial("hel", "", 0, 0.0, 0.5))
    r.show(final("hello", 0.0, 61.5))
    r.close()
    assert out.getvalue() == "[00:00.00 - 01:01.50] hello\n"


def test_cues_split_long_finals_at_two_lines_and_seven_seconds() -> None:
    words = tuple(Word(f"word{i:02d}", i * 0.5, i * 0.5 + 0.4, 0.9) for i in range(30))
    cues = cues_from_final(final(" ".join(w.text for w in words), 0.0, 15.0, words))
    assert len(cues) > 1
    assert all(len(c.lines) <= 2 and all(len(line) <= 42 for line in c.lines) for c in cues)
    assert all(c.end - c.start <= 7.0 + 1e-9 for c in cues)
    assert " ".join(" ".join(c.lines) for c in cues) == " ".join(w.text for w in words)
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:], strict=False))


def test_subtitle_layout_is_validated_and_used() -> None:
    words = tuple(Word(w, i * 0.3, i * 0.3 + 0.2, 1.0) for i, w in enumerate("aa bb cc dd ee".split()))
    cues = cues_from_final(final("aa bb cc dd ee", 0.0, 1.5, words), SubtitleLayout(max_line_chars=10,
                                                                                      max_lines=1))
    assert [c.lines for c in cues] == [("aa bb cc",), ("dd ee",)]
    with pytest.raises(ValueError, match="max_lines must be an int in 1..10, got 0"):
        SubtitleLayout(max_lines=0)
    with pytest.raises(ValueError, match="min_cue_s"):
        SubtitleLayout(min_cue_s=9.0)


def test_cues_without_word_times_share_the_final_span() -> None:
    cues = cues_from_final(final("one two", 1.0, 3.0))
    assert cues == [Cue(1.0, 3.0, ("one two",))]
    assert cues_from_final(final("", 1.0, 3.0)) == []


def test_srt_and_webvtt_documents() -> None:
    cues = [Cue(0.5, 1.25, ("hello",)), Cue(3661.0, 3662.5, ("a --> b", "two"))]
    assert srt_document(cues) == (
        "1\n00:00:00,500 --> 00:00:01,250\nhello\n\n2\n01:01:01,000 --> 01:01:02,500\na --> b\ntwo\n"
    )
    vtt = webvtt_document(cues)
    assert vtt.startswith("WEBVTT\n\n00:00:00.500 --> 00:00:01.250\nhello\n")
    assert "a -> b" in vtt  # "-->" would end the cue timing line in WebVTT


def test_subtitle_writer_and_json_log(tmp_path: Path) -> None:
    writer = SubtitleWriter(srt=tmp_path / "a.srt", vtt=tmp_path / "a.vtt")
    log = JsonLog(tmp_path / "a.jsonl")
    w = (Word("hi", 0.1, 0.3, 0.9),)
    for event in (Partial("h", "", 0, 0.0, 0.2), final("hi", 0.1, 0.3, w), final("", 0.3, 2.0, segment=1)):
        log.add(event)
        if isinstance(event, Final):
            writer.add(event)
    log.close()
    assert (tmp_path / "a.srt").read_text() == "1\n00:00:00,100 --> 00:00:00,900\nhi\n"
    assert (tmp_path / "a.vtt").read_text().startswith("WEBVTT")
    records = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == ["hi", ""]
    assert records[0]["words"] == [{"word": "hi", "start": 0.1, "end": 0.3, "conf": 0.9}]


# ------------------------------------------------------------- fake device
class FakeStreamModule(types.ModuleType):
    """Enough of the sounddevice API for the demo: devices, settings check, a callback InputStream.

    The stream calls the callback from its own thread, like PortAudio, with
    ``speedup`` times real-time pacing so that tests stay short.
    """

    class PortAudioError(Exception):
        pass

    def __init__(self, audio: np.ndarray, rate: int, *, devices: list[dict[str, Any]] | None = None,
                 speedup: float = 4.0) -> None:
        super().__init__("sounddevice")
        self.audio, self.rate, self.speedup = audio, rate, speedup
        self.devices = devices if devices is not None else [
            {"name": "HDMI output", "hostapi": 0, "max_input_channels": 0,
             "default_samplerate": 48000.0},
            {"name": "Fake USB Mic", "hostapi": 0, "max_input_channels": 2,
             "default_samplerate": float(rate)},
        ]
        self.default = types.SimpleNamespace(device=[1, 0])
        self.opened: list[dict[str, Any]] = []
        self.callback_threads: set[str] = set()
        module = self

        class InputStream:
            def __init__(self, **kwargs: Any) -> None:
                module.opened.append(kwargs)
                self.kwargs = kwargs
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._run, name="fake-portaudio", daemon=True)

            def _run(self) -> None:
                block = self.kwargs["blocksize"]
                audio = module.audio
                i = 0
                while not self._stop.is_set():
                    chunk = audio[i : i + block]
                    if len(chunk) < block:  # past the recording: silence, as a live mic would go on
                        chunk = np.concatenate([chunk, np.zeros(block - len(chunk), np.float32)])
                    indata = chunk.reshape(-1, 1).astype(np.float32)
                    module.callback_threads.add(threading.current_thread().name)
                    self.kwargs["callback"](indata, block, None, 0)
                    i += block
                    time.sleep(block / module.rate / module.speedup)

            def start(self) -> None:
                self._thread.start()

            def stop(self) -> None:
                self._stop.set()
                self._thread.join(5)

            def close(self) -> None:
                pass

        self.InputStream = InputStream

    def query_devices(self) -> list[dict[str, Any]]:
        return self.devices

    def query_hostapis(self, index: int) -> dict[str, Any]:
        return {"name": "Fake ALSA"}

    def check_input_settings(self, **kwargs: Any) -> None:
        if kwargs.get("samplerate") not in (16000, self.rate):
            raise self.PortAudioError(f"Invalid sample rate {kwargs.get('samplerate')}")


@pytest.fixture(scope="module")
def speech_48k() -> np.ndarray:
    audio, rate = sf.read(SPEECH, dtype="float32")
    return soxr.resample(audio, rate, 48000).astype(np.float32)  # a typical native mic rate


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch, speech_48k: np.ndarray) -> Iterator[FakeStreamModule]:
    fake = FakeStreamModule(speech_48k, 48000)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    yield fake


def _engine_args(model: Path) -> list[str]:
    # float32: the captions are compared with an Engine.load() reference, whatever this CPU's auto dtype is
    return ["--model", str(model), "--no-lm", "--greedy", "--dtype", "float32"]


def test_mic_captions_from_a_fake_microphone(
    fake_sd: FakeStreamModule, local_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from demos.mic import main

    srt, vtt, log = tmp_path / "c.srt", tmp_path / "c.vtt", tmp_path / "c.jsonl"
    code = main(_engine_args(local_model) + [
        "--device", "usb", "--duration", "3.5", "--partials", "on",
        "--srt", str(srt), "--vtt", str(vtt), "--json-log", str(log),
    ])
    out, err = capsys.readouterr()
    assert code == 0, err
    # Opened at the device's native rate, mono float32, 100 ms blocks; called from PortAudio's thread.
    assert fake_sd.opened == [{**fake_sd.opened[0], "device": 1, "samplerate": 48000, "channels": 1,
                               "dtype": "float32", "blocksize": 4800}]
    assert fake_sd.callback_threads == {"fake-portaudio"}
    assert "'Fake USB Mic' (device 1, 48000 Hz)" in err

    lines = terminal_lines(out)
    assert lines and all(CAPTION.match(line) for line in lines), lines
    assert ERASE_LINE in out  # partials were shown and rewritten
    finals = [json.loads(line) for line in log.read_text().splitlines()]
    spoken = [f for f in finals if f["text"]]
    assert [line.split("] ", 1)[1] for line in lines] == [f["text"] for f in spoken]
    # Exactly --duration seconds were captured and all of it decoded (the last final ends there).
    assert finals[-1]["end"] == pytest.approx(3.5, abs=0.04)
    assert srt.read_text().startswith("1\n00:00:")
    assert vtt.read_text().startswith("WEBVTT")
    srt_words = " ".join(block.split("\n", 2)[2] for block in srt.read_text().strip().split("\n\n")).split()
    assert srt_words == " ".join(f["text"] for f in spoken).split()

    # The captions are what the engine makes of the same 3.5 s at 48 kHz given in one piece:
    # capture blocks, backlog merging and resampling in the demo change nothing.
    from streaming import DecoderConfig, Engine, Final

    recognizer = Engine.load(local_model, lm=False, decoder=DecoderConfig(greedy=True)).new_stream(
        sample_rate=48000
    )
    captured = np.zeros(round(3.5 * 48000), np.float32)  # the fake mic goes on with silence
    captured[: len(fake_sd.audio)] = fake_sd.audio[: len(captured)]
    recognizer.accept_audio(captured)
    recognizer.finish()
    expected = [(e.text, round(e.start, 2), round(e.end, 2)) for e in recognizer.events()
                if isinstance(e, Final) and e.text]
    assert [(f["text"], f["start"], f["end"]) for f in spoken] == expected


@pytest.fixture(scope="module")
def server_url(local_model: Path) -> Iterator[str]:
    with running_server(local_model) as url:
        yield url


@pytest.mark.parametrize(("protocol", "speed"), [("vosk", 1.0), ("native", 2.0)])
def test_mic_input_file_replays_at_real_time_pace_to_a_real_server(
    server_url: str, protocol: str, speed: float, capsys: pytest.CaptureFixture[str]
) -> None:
    from demos.mic import main

    duration = sf.info(str(SPEECH)).duration
    started = time.monotonic()
    code = main(["--input-file", str(SPEECH), "--speed", str(speed), "--server", server_url,
                 "--protocol", protocol, "--partials", "off"])
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == 0, err
    assert elapsed >= duration / speed * 0.95  # paced like a microphone, not read at once
    lines = out.splitlines()
    assert lines and all(CAPTION.match(line) for line in lines), out
    assert ERASE_LINE not in out


@pytest.mark.parametrize(("code", "message"), [
    (1000, "the server ended the stream before the audio did (close code 1000 session limit)"),
    (1011, "received 1011 (internal error) recognizer crashed"),
])
def test_mic_says_when_the_server_ends_the_stream(
    code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from demos.mic import main

    with vosk_server_lookalike(fail_after=3, close_code=code) as url:
        assert main(["--input-file", str(SPEECH), "--speed", "0", "--server", url]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_mic_says_when_it_cannot_write_its_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from demos.mic import main

    bad = tmp_path / "missing-dir" / "c.jsonl"
    assert main(["--input-file", str(SPEECH), "--server", "ws://127.0.0.1:9", "--json-log", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {bad}: No such file or directory" in err and "Traceback" not in err


def test_mic_says_when_the_server_is_not_there(capsys: pytest.CaptureFixture[str]) -> None:
    from demos.mic import main

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["--input-file", str(SPEECH), "--speed", "0", "--server", f"ws://127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err
    assert f"server ws://127.0.0.1:{port}" in err and "Traceback" not in err


def test_backlog_is_merged_into_bounded_blocks_and_duration_cuts_exactly() -> None:
    from demos.mic import _QueueSource

    async def collect(duration: float | None) -> list[np.ndarray]:
        source = _QueueSource(16000, duration)
        for i in range(25):  # 2.5 s queued while the consumer was busy
            source._queue.put_nowait(np.full((1600, 2), i, np.float32))  # stereo blocks
        source.stop()
        return [b async for b in source._queued()]

    blocks = asyncio.run(collect(None))
    assert [len(b) for b in blocks] == [16000, 16000, 8000]  # at most 1 s per block
    assert np.array_equal(np.concatenate(blocks)[::1600], np.arange(25, dtype=np.float32))
    assert sum(len(b) for b in asyncio.run(collect(1.234))) == round(1.234 * 16000)


def test_a_stereo_only_device_is_opened_with_two_channels(speech_48k: np.ndarray) -> None:
    from demos.mic import MicrophoneSource

    fake = FakeStreamModule(speech_48k, 48000)

    def stereo_only(**kwargs: Any) -> None:
        if kwargs["channels"] != 2:
            raise fake.PortAudioError("Invalid number of channels")

    fake.check_input_settings = stereo_only  # type: ignore[method-assign]
    source = MicrophoneSource(fake, {**fake.devices[1], "index": 1})
    assert source.channels == 2 and source.sample_rate == 48000


def test_mic_list_devices(fake_sd: FakeStreamModule, capsys: pytest.CaptureFixture[str]) -> None:
    from demos.mic import main

    assert main(["--list-devices"]) == 0
    out = capsys.readouterr().out
    assert "*   1  Fake USB Mic  (Fake ALSA, 2 ch, 48000 Hz)" in out
    assert "HDMI" not in out  # output-only devices are not listed


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("7", "no input device with that index; inputs are 1 (Fake USB Mic)"),
        ("webcam", "no input device name contains it"),
    ],
)
def test_mic_device_errors_name_the_choices(
    fake_sd: FakeStreamModule, capsys: pytest.CaptureFixture[str], device: str, message: str
) -> None:
    from demos.mic import main

    assert main(["--device", device]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_mic_unsupported_rate_is_a_clear_error(fake_sd: FakeStreamModule, local_model: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from demos.mic import main

    assert main(_engine_args(local_model) + ["--samplerate", "12345", "--duration", "1"]) == 1
    err = capsys.readouterr().err
    assert "cannot record from 'Fake USB Mic'" in err and "Invalid sample rate 12345" in err


def test_mic_without_input_devices(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from demos.mic import main

    no_devices = FakeStreamModule(np.zeros(1, np.float32), 48000, devices=[])
    monkeypatch.setitem(sys.modules, "sounddevice", no_devices)
    assert main([]) == 1
    err = capsys.readouterr().err
    assert "no audio input device found" in err and "--input-file" in err and "Traceback" not in err
    assert main(["--list-devices"]) == 1
    assert "no audio input devices" in capsys.readouterr().err


def test_mic_on_this_machine_without_a_sound_card(capsys: pytest.CaptureFixture[str]) -> None:
    """The real sounddevice and PortAudio: this machine has no input device."""
    sd = pytest.importorskip("sounddevice")
    if any(d["max_input_channels"] > 0 for d in sd.query_devices()):
        pytest.skip("this machine has an input device")
    from demos.mic import main

    assert main([]) == 1
    assert "no audio input device found" in capsys.readouterr().err


class _NoPortAudio(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return None


def test_mic_without_portaudio(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from demos.mic import main

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoPortAudio(), *sys.meta_path])
    assert main(["--list-devices"]) == 1
    err = capsys.readouterr().err
    assert "PortAudio is missing" in err and "libportaudio2" in err and "--input-file" in err
    assert "Traceback" not in err
