"""load_model and AcousticModel on real tiny checkpoints, and every way loading can fail."""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import DEFAULT_VOCAB, write_tiny_checkpoint

from streaming.acoustic_model import AcousticModel, ModelInfo
from streaming.errors import AudioError, ModelLoadError, VocabularyError
from streaming.loading import load_model

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("acoustic")
    return {family: write_tiny_checkpoint(root / family, family=family) for family in ("layer", "group")}


@pytest.fixture(scope="module")
def layer_model(checkpoints: dict[str, Path]) -> AcousticModel:
    return load_model(checkpoints["layer"])


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def _audio(batch: int, samples: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((batch, samples)) * 0.1).astype(np.float32)


@pytest.mark.parametrize("family", ["layer", "group"])
def test_log_probs_match_transformers(checkpoints: dict[str, Path], family: str) -> None:
    model = load_model(checkpoints[family], threads=1)
    reference = transformers.Wav2Vec2ForCTC.from_pretrained(checkpoints[family]).eval()
    for batch, samples in [(1, 400), (3, 5_000), (2, 16_000)]:
        audio = _audio(batch, samples)
        got = model.log_probs(audio)
        with torch.inference_mode():
            expected = torch.log_softmax(reference(torch.from_numpy(audio)).logits, dim=-1).numpy()
        assert got.dtype == np.float32 and got.shape == (batch, model.num_frames(samples), 32)
        assert np.abs(got - expected).max() <= 1e-4
        np.testing.assert_allclose(np.exp(got).sum(-1), 1.0, atol=1e-5)
    assert model.features_are_local is (family == "layer")


def test_model_info(checkpoints: dict[str, Path], layer_model: AcousticModel) -> None:
    info = layer_model.info
    assert isinstance(info, ModelInfo)
    assert info.name == str(checkpoints["layer"])
    assert info.vocab == DEFAULT_VOCAB and info.vocab_size == 32
    assert info.blank_id == 0 and info.vocab[info.blank_id] == "<pad>"
    assert info.word_delimiter == "|"
    assert (info.sample_rate, info.do_normalize) == (16_000, True)
    assert info.feat_extract_norm == "layer"
    assert (info.hop_samples, info.receptive_field_samples, info.frame_seconds) == (320, 400, 0.02)
    reference = transformers.Wav2Vec2ForCTC.from_pretrained(checkpoints["layer"])
    # transformers also counts the weight-norm gain g (one per positional kernel tap) that we fold away.
    assert info.num_parameters == sum(p.numel() for p in reference.parameters()) - 16
    assert info.language_model_dir is None
    assert layer_model.feature_dim == 32 and layer_model.dtype == "float32"
    assert "layer" in repr(layer_model)


def test_features_compose_to_log_probs(checkpoints: dict[str, Path], layer_model: AcousticModel) -> None:
    group_model = load_model(checkpoints["group"])
    audio = _audio(2, 7_000)
    for model in (layer_model, group_model):
        features = model.conv_features(audio)
        assert features.dtype == np.float32 and features.shape == (2, model.num_frames(7_000), 32)
        np.testing.assert_allclose(model.log_probs_from_features(features), model.log_probs(audio), atol=1e-6)


def test_short_and_empty_inputs_give_zero_frames(layer_model: AcousticModel) -> None:
    assert layer_model.log_probs(_audio(2, 399)).shape == (2, 0, 32)
    assert layer_model.log_probs(np.zeros((0, 16_000), np.float32)).shape == (0, 49, 32)
    assert layer_model.conv_features(_audio(1, 100)).shape == (1, 0, 32)
    assert layer_model.log_probs_from_features(np.zeros((3, 0, 32), np.float32)).shape == (3, 0, 32)


def test_bad_inputs_are_refused(layer_model: AcousticModel) -> None:
    with pytest.raises(AudioError, match=r"shape \(batch, samples\), got \(16000,\)"):
        layer_model.log_probs(np.zeros(16_000, np.float32))
    with pytest.raises(AudioError, match="got dtype int16"):
        layer_model.log_probs(np.zeros((1, 16_000), np.int16))
    with pytest.raises(ValueError, match=r"shape \(batch, frames, 32\), got \(1, 5, 31\)"):
        layer_model.log_probs_from_features(np.zeros((1, 5, 31), np.float32))
    # float64 is accepted and computed in float32
    assert layer_model.log_probs(np.zeros((1, 800), np.float64)).dtype == np.float32


def test_bfloat16_runs_and_is_close(checkpoints: dict[str, Path], layer_model: AcousticModel) -> None:
    bf16 = load_model(checkpoints["layer"], dtype="bfloat16")
    assert bf16.dtype == "bfloat16"
    audio = _audio(2, 16_000)
    got, expected = bf16.log_probs(audio), layer_model.log_probs(audio)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.abs(got - expected).max() < 0.25
    assert (got.argmax(-1) == expected.argmax(-1)).mean() > 0.9
    features = bf16.conv_features(audio)
    np.testing.assert_allclose(bf16.log_probs_from_features(features), got, atol=0.05)


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_auto_dtype_follows_the_cpu(
    checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch, fast_bf16: bool
) -> None:
    # torch's CPU feature probes decide; the other probe is forced off so the CPU running the test doesn't
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: fast_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    model = load_model(checkpoints["layer"], dtype="auto")
    assert model.dtype == ("bfloat16" if fast_bf16 else "float32")
    assert model.log_probs(_audio(1, 8_000)).dtype == np.float32


def test_pytorch_model_bin_with_old_weight_norm_names(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(checkpoints["group"], tmp_path)
    tensors = load_file(folder / "model.safetensors")
    prefix = "wav2vec2.encoder.pos_conv_embed.conv."
    tensors[prefix + "weight_g"] = tensors.pop(prefix + "parametrizations.weight.original0")
    tensors[prefix + "weight_v"] = tensors.pop(prefix + "parametrizations.weight.original1")
    (folder / "model.safetensors").unlink()
    torch.save(tensors, folder / "pytorch_model.bin")
    audio = _audio(1, 6_000)
    np.testing.assert_allclose(
        load_model(folder).log_probs(audio), load_model(checkpoints["group"]).log_probs(audio), atol=1e-6
    )


def test_sharded_safetensors(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(checkpoints["layer"], tmp_path)
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, folder / shard)
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    audio = _audio(1, 3_000)
    np.testing.assert_allclose(
        load_model(folder).log_probs(audio), load_model(checkpoints["layer"]).log_probs(audio), atol=1e-6
    )


def test_language_model_dir_and_custom_vocab(tmp_path: Path) -> None:
    vocab = ["a", "b", "|", "<pad>", "<unk>"]  # the blank is not at index 0
    folder = write_tiny_checkpoint(tmp_path / "m", family="group", vocab=vocab, with_lm_dir=True)
    model = load_model(folder)
    assert model.info.vocab == tuple(vocab) and model.info.blank_id == 3
    assert model.info.language_model_dir == folder / "language_model"
    assert model.log_probs(_audio(1, 1_000)).shape == (1, 2, 5)


def test_blank_falls_back_to_config_pad_token_id(tmp_path: Path) -> None:
    folder = write_tiny_checkpoint(tmp_path / "m", vocab=["[PAD]", "x", "|"])
    tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
    del tokenizer["pad_token"]
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    config = json.loads((folder / "config.json").read_text())
    config["pad_token_id"] = 0
    (folder / "config.json").write_text(json.dumps(config))
    assert load_model(folder).info.blank_id == 0


def test_added_tokens_are_merged(tmp_path: Path) -> None:
    folder = write_tiny_checkpoint(tmp_path / "m")
    vocab = json.loads((folder / "vocab.json").read_text())
    for token in ("<s>", "</s>"):
        del vocab[token]
    renumbered = {token: i for i, token in enumerate(t for t in DEFAULT_VOCAB if t in vocab)}
    (folder / "vocab.json").write_text(json.dumps(renumbered))
    (folder / "added_tokens.json").write_text(json.dumps({"<s>": 30, "</s>": 31}))
    assert load_model(folder).info.vocab[30:] == ("<s>", "</s>")


def test_missing_preprocessor_config_uses_defaults_with_a_warning(
    checkpoints: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _copy(checkpoints["layer"], tmp_path)
    (folder / "preprocessor_config.json").unlink()
    with caplog.at_level(logging.WARNING, logger="streaming.loading"):
        info = load_model(folder).info
    assert (info.sample_rate, info.do_normalize) == (16_000, True)
    assert "no preprocessor_config.json" in caplog.text


def test_threads_sets_torch_threads(checkpoints: dict[str, Path]) -> None:
    before = torch.get_num_threads()
    try:
        load_model(checkpoints["layer"], threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ModelLoadError, match="threads must be a positive integer"):
        load_model(checkpoints["layer"], threads=0)


# --------------------------------------------------------------------------- errors


def _break(folder: Path, how: str) -> None:
    weights = folder / "model.safetensors"
    if how == "no config":
        (folder / "config.json").unlink()
    elif how == "no weights":
        weights.unlink()
    elif how == "no vocab":
        (folder / "vocab.json").unlink()
    elif how == "truncated safetensors":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "garbage bin":
        weights.unlink()
        (folder / "pytorch_model.bin").write_bytes(b"not a pickle" * 10)
    elif how == "truncated bin":
        torch.save(load_file(weights), folder / "pytorch_model.bin")
        weights.unlink()
        data = (folder / "pytorch_model.bin").read_bytes()
        (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    elif how == "missing tensor":
        tensors = load_file(weights)
        del tensors["wav2vec2.feature_projection.projection.bias"]
        save_file(tensors, weights)
    elif how == "wrong shape":
        tensors = load_file(weights)
        tensors["wav2vec2.encoder.layers.0.feed_forward.intermediate_dense.weight"] = torch.zeros(48, 32)
        save_file(tensors, weights)
    elif how == "vocab too long":
        vocab = json.loads((folder / "vocab.json").read_text())
        vocab["@"] = len(vocab)
        (folder / "vocab.json").write_text(json.dumps(vocab))
    elif how == "vocab gap":
        vocab = json.loads((folder / "vocab.json").read_text())
        vocab["'"] = 40
        (folder / "vocab.json").write_text(json.dumps(vocab))
    elif how == "vocab not json":
        (folder / "vocab.json").write_text("{'a': 1")
    elif how == "hubert":
        config = json.loads((folder / "config.json").read_text())
        config["model_type"] = "hubert"
        (folder / "config.json").write_text(json.dumps(config))
    else:  # pragma: no cover - a typo in the table below
        raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "error", "message"),
    [
        ("no config", ModelLoadError, r"no config\.json in .*copy \(found: .*model\.safetensors"),
        ("no weights", ModelLoadError, r"no weights in .*expected model\.safetensors or pytorch_model\.bin"),
        ("no vocab", ModelLoadError, r"no vocab\.json in"),
        ("truncated safetensors", ModelLoadError, r"model\.safetensors \(\d+ bytes\) is corrupt"),
        ("garbage bin", ModelLoadError, r"pytorch_model\.bin \(120 bytes\) is corrupt.*not a plain tensor"),
        ("truncated bin", ModelLoadError, r"pytorch_model\.bin \(\d+ bytes\) is corrupt or truncated"),
        ("missing tensor", ModelLoadError, r"lacks 1 tensor.*wav2vec2\.feature_projection\.projection\.bias"),
        (
            "wrong shape",
            ModelLoadError,
            r"tensor wav2vec2\.encoder\.layers\.0\.feed_forward\.intermediate_dense\.weight has shape "
            r"\(48, 32\) in the checkpoint, but config\.json implies \(64, 32\)",
        ),
        ("vocab too long", VocabularyError, r"^vocab\.json has 33 tokens, the model outputs 32$"),
        ("vocab gap", VocabularyError, r"ids must be 0\.\.31 each used once; missing \[31\]"),
        ("vocab not json", VocabularyError, r"vocab\.json is not valid JSON"),
        ("hubert", ModelLoadError, r"unsupported architecture: config\.json model_type is 'hubert'"),
    ],
)
def test_broken_checkpoints_raise_clear_errors(
    checkpoints: dict[str, Path], tmp_path: Path, how: str, error: type[Exception], message: str
) -> None:
    folder = _copy(checkpoints["layer"], tmp_path)
    _break(folder, how)
    with pytest.raises(error, match=message):
        load_model(folder)


def test_paths_that_are_not_checkpoint_folders(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no checkpoint folder at"):
        load_model(tmp_path / "absent")
    with pytest.raises(ModelLoadError, match="no checkpoint folder at"):
        load_model("./relative/absent")
    (tmp_path / "file.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="is a file; expected a checkpoint folder"):
        load_model(tmp_path / "file.bin")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_hub_id_offline_says_to_pass_a_local_folder(
    no_network: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # so the id is not a folder by accident
    with pytest.raises(ModelLoadError) as caught:
        load_model("no-such-org/no-such-wav2vec2-model")
    message = str(caught.value)
    assert "'no-such-org/no-such-wav2vec2-model' is not a local folder" in message
    assert "offline (HF_HUB_OFFLINE=1)" in message
    assert "pass the path of a local checkpoint folder" in message


def test_hub_id_without_huggingface_hub(
    no_network: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import now raises ImportError
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match=re.escape("huggingface_hub is not installed")):
        load_model("facebook/wav2vec2-base-960h")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "int8"}, r"dtype must be 'auto' or one of \['bfloat16', 'float16', 'float32'\], got 'int8'"),
        ({"dtype": "float16"}, r"dtype 'float16' needs device='cuda'.*use dtype='bfloat16' on CPU"),
        ({"device": "potato"}, r"device must be a torch device such as 'cpu' or 'cuda', got 'potato'"),
    ],
)
def test_bad_device_or_dtype(checkpoints: dict[str, Path], kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_model(checkpoints["layer"], **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_a_gpu(checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        load_model(checkpoints["layer"], device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cuda_matches_cpu(checkpoints: dict[str, Path], layer_model: AcousticModel, dtype: str) -> None:
    model = load_model(checkpoints["layer"], device="cuda", dtype=dtype)
    audio = _audio(2, 16_000)
    tolerance = 1e-3 if dtype == "float32" else 0.25
    assert np.abs(model.log_probs(audio) - layer_model.log_probs(audio)).max() < tolerance
