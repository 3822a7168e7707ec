"""`xlsr-stream transcribe` and `eval` through main(argv), with a tiny real checkpoint."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from cli.main import main
from cli.options import add_engine_arguments, window_from_args
from streaming import WindowConfig
from streaming.windows import RECOMPUTED_LEFT_CONTEXT_S

FAST = ["--beam-width", "4", "--no-lm"]


def test_transcribe_json_prints_one_line_per_event_ending_in_a_final(tiny_layer_model, espeak_wav, capsys):
    assert main(["transcribe", str(espeak_wav), "--model", str(tiny_layer_model), "--json", *FAST]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines and lines[-1]["type"] == "final" and lines[-1]["reason"] == "finish"
    assert {line["type"] for line in lines[:-1]} <= {"partial", "final"}
    assert all(line["file"] == str(espeak_wav) for line in lines)


def test_transcribe_captions_commit_finals_with_times(tiny_layer_model, espeak_wav, capsys):
    assert main(["transcribe", str(espeak_wav), "--model", str(tiny_layer_model), "--partials", "on", *FAST]) == 0
    out = capsys.readouterr().out
    assert "\r\x1b[2K" in out  # the partial line is rewritten in place
    committed = [line for line in out.split("\n") if line.startswith("[") or "\x1b[2K[" in line]
    assert committed and "→" in committed[-1]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: sf.write(p, np.zeros((1600, 2), np.float32), 16000), "has 2 channels; the recognizer takes mono"),
        (lambda p: sf.write(p, np.zeros(0, np.float32), 16000), "is empty (0 samples)"),
        (lambda p: p.write_bytes(b"ID3\x03\x00 not audio at all"), "not a readable audio file"),
        (lambda p: sf.write(p, np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT"), "1600 NaN or infinite"),
    ],
    ids=["stereo", "empty", "not-audio", "nan"],
)
def test_bad_audio_files_get_a_clear_error(tmp_path, tiny_layer_model, capsys, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    status = main(["transcribe", str(path), "--model", str(tiny_layer_model), *FAST])
    assert status != 0
    assert message in capsys.readouterr().err


def test_a_bad_file_among_good_ones_loses_nothing(tmp_path, tiny_layer_model, espeak_wav, capsys):
    audio, rate = sf.read(espeak_wav, dtype="float32")
    bad = np.concatenate([audio, audio]).astype(np.float32)
    bad[-100] = np.inf  # corrupt sample late in the file
    path = tmp_path / "late-nan.wav"
    sf.write(path, bad, rate, subtype="FLOAT")
    status = main(["transcribe", str(path), "--model", str(tiny_layer_model), "--json", *FAST])
    captured = capsys.readouterr()
    assert status == 1
    assert "NaN or infinite samples" in captured.err
    events = [json.loads(line) for line in captured.out.splitlines()]
    # The audio before the bad block was finalised and printed.
    assert events[-1]["type"] == "final" and events[-1]["end"] > 1.5


def test_missing_and_corrupt_models_are_named(tmp_path, espeak_wav, tiny_layer_model, capsys):
    assert main(["transcribe", str(espeak_wav), "--model", str(tmp_path / "nowhere"), *FAST]) == 2
    assert "nowhere" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(tiny_layer_model, broken)
    (broken / "model.safetensors").write_bytes((broken / "model.safetensors").read_bytes()[:1000])
    assert main(["transcribe", str(espeak_wav), "--model", str(broken), *FAST]) == 2
    assert "model.safetensors" in capsys.readouterr().err


def test_eval_prints_table_and_json(tmp_path, tiny_layer_model, espeak_wav, capsys):
    dev = tmp_path / "dev"
    dev.mkdir()
    shutil.copy(espeak_wav, dev / "a.wav")
    shutil.copy(espeak_wav, dev / "b.wav")
    (dev / "transcripts.tsv").write_text("a.wav\tHello, world!\nb.wav\tThis is a test.\n")
    for mode in ("streaming", "offline"):
        assert main(["eval", str(dev), "--mode", mode, "--json", "--model", str(tiny_layer_model), *FAST]) == 0
        out = capsys.readouterr().out.strip().splitlines()
        summary = json.loads(out[-1])
        assert summary["utterances"] == 2 and summary["mode"] == mode
        assert {"wer", "cer", "rtf", "audio_s"} <= summary.keys()
        assert summary["audio_s"] == pytest.approx(2 * sf.info(espeak_wav).duration, rel=1e-3)
        assert any(line.startswith("a.wav") for line in out)


def test_eval_rejects_a_folder_without_transcripts(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "has no transcripts.tsv" in capsys.readouterr().err


def test_window_options_pick_the_left_context_for_the_mode() -> None:
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    assert window_from_args(parser.parse_args([])) == WindowConfig()
    recompute = window_from_args(parser.parse_args(["--no-attention-memory"]))
    assert not recompute.memory and recompute.left_context_s == RECOMPUTED_LEFT_CONTEXT_S
    explicit = window_from_args(parser.parse_args(["--no-attention-memory", "--left-context-s", "1.2"]))
    assert explicit.left_context_s == 1.2
    assert window_from_args(parser.parse_args(["--left-context-s", "3"])) == WindowConfig(left_context_s=3.0)


def test_decoder_and_word_end_options_reach_the_engine(tiny_layer_model, espeak_wav, capsys):
    from conftest import FIXTURES

    from cli.options import engine_from_args

    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    args = parser.parse_args(["--model", str(tiny_layer_model), "--lm", str(FIXTURES / "tiny.arpa"),
                              "--decoder", "flashlight", "--silence-after-word-s", "0", "--no-endpoint-probe",
                              "--beam-prune-logp", "-8", "--token-min-logp", "-3.5"])
    engine = engine_from_args(args)
    assert engine.decoder_config.decoder == "flashlight" and engine.endpoint.silence_after_word_s is None
    assert not engine.endpoint.probe_quiet_audio
    assert (engine.decoder_config.beam_prune_logp, engine.decoder_config.token_min_logp) == (-8.0, -3.5)
    assert type(engine.new_decoder_stream()).__name__ == "FlashlightStream"
    argv = ["transcribe", str(espeak_wav), "--model", str(tiny_layer_model), "--json", "--decoder", "flashlight",
            "--lm", str(FIXTURES / "tiny.arpa")]
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["type"] == "final" and lines[-1]["reason"] == "finish"
    assert main([*argv, "--hotword", "kubernetes"]) != 0
    assert "hotwords are not supported with decoder='flashlight'" in capsys.readouterr().err
