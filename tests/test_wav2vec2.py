"""The lean Wav2Vec2ForCTC against transformers' own, on tiny random checkpoints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from tiny_models import tiny_config, write_tiny_checkpoint

from streaming.errors import ModelLoadError
from streaming.wav2vec2 import (
    Wav2Vec2Config,
    Wav2Vec2CTC,
    build_model,
    export_hf_state_dict,
    hop_samples,
    num_frames,
    receptive_field_samples,
)

transformers = pytest.importorskip("transformers")

# (feat_extract_norm, do_stable_layer_norm): the two released families first,
# then the two mixed combinations transformers also allows.
VARIANTS = [("layer", True), ("group", False), ("group", True), ("layer", False)]


def _reference(family: str, stable: bool, seed: int = 0, **overrides: object) -> transformers.Wav2Vec2ForCTC:
    """A transformers model with every parameter perturbed (biases and norms matter)."""
    config = tiny_config(family)
    config["do_stable_layer_norm"] = stable
    config.update(overrides)
    torch.manual_seed(seed)
    model = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**config)).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, parameter in sorted(model.named_parameters()):
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model


def _lean(reference: transformers.Wav2Vec2ForCTC) -> Wav2Vec2CTC:
    config = Wav2Vec2Config.from_dict(reference.config.to_dict())
    return build_model(config, reference.state_dict())


@pytest.fixture(scope="module")
def layer_pair() -> tuple[transformers.Wav2Vec2ForCTC, Wav2Vec2CTC]:
    reference = _reference("layer", True)
    return reference, _lean(reference)


@pytest.mark.parametrize(("family", "stable"), VARIANTS)
def test_logits_match_transformers(family: str, stable: bool) -> None:
    reference = _reference(family, stable)
    lean = _lean(reference)
    generator = torch.Generator().manual_seed(1)
    for batch, samples in [(1, 400), (3, 719), (2, 3_200), (3, 16_123)]:
        x = torch.randn(batch, samples, generator=generator)  # (batch, samples)
        with torch.inference_mode():
            expected = reference(x).logits  # (batch, frames, vocab)
            got = lean(x)  # (batch, frames, vocab)
        assert got.shape == expected.shape == (batch, num_frames(samples), 32)
        assert (got - expected).abs().max().item() <= 1e-4


def test_odd_positional_kernel_and_other_activations_match_transformers() -> None:
    reference = _reference(
        "layer", True, num_conv_pos_embeddings=5, hidden_act="gelu_new", feat_extract_activation="relu"
    )
    lean = _lean(reference)
    x = torch.randn(2, 4_000)
    with torch.inference_mode():
        assert (lean(x) - reference(x).logits).abs().max().item() <= 1e-4


def test_a_model_without_transformer_layers_matches_transformers() -> None:
    reference = _reference("layer", True, num_hidden_layers=0)
    lean = _lean(reference)
    x = torch.randn(1, 2_000)
    with torch.inference_mode():
        assert (lean(x) - reference(x).logits).abs().max().item() <= 1e-4


def test_weight_norm_key_forms_and_export_round_trip(layer_pair) -> None:
    reference, lean = layer_pair
    state = reference.state_dict()
    prefix = "wav2vec2.encoder.pos_conv_embed.conv."
    g = state[prefix + "parametrizations.weight.original0"]
    v = state[prefix + "parametrizations.weight.original1"]
    rest = {k: t for k, t in state.items() if not k.startswith(prefix + "parametrizations")}
    old_style = {**rest, prefix + "weight_g": g, prefix + "weight_v": v}
    folded = {k.removeprefix("wav2vec2."): t for k, t in lean.state_dict().items()}  # no prefix, plain weight
    x = torch.randn(2, 3_000)
    with torch.inference_mode():
        expected = lean(x)
        for variant in (old_style, folded):
            assert torch.allclose(build_model(lean.config, variant)(x), expected, atol=1e-6)
        # export_hf_state_dict writes what transformers itself loads.
        fresh = _reference("layer", True, seed=5)
        fresh.load_state_dict(export_hf_state_dict(lean), strict=True)
        assert (fresh(x).logits - expected).abs().max().item() <= 1e-4


def test_conv_features_then_logits_equals_forward(layer_pair) -> None:
    _, lean = layer_pair
    x = torch.randn(2, 8_000)
    with torch.inference_mode():
        features = lean.conv_features(x)  # (batch, frames, conv_dim)
        assert features.shape == (2, num_frames(8_000), 32)
        assert torch.equal(lean.logits_from_features(features), lean(x))


@settings(max_examples=40, deadline=None)
@given(samples=st.integers(min_value=0, max_value=40_000))
def test_num_frames_is_the_conv_output_length(layer_pair, samples: int) -> None:
    _, lean = layer_pair
    frames = num_frames(samples)
    assert frames == (max(samples - 400, -320) // 320 + 1)  # closed form for the standard stack
    if samples >= 400:
        with torch.inference_mode():
            assert lean.conv_features(torch.zeros(1, samples)).shape[1] == frames
    else:
        assert frames == 0


@settings(max_examples=25, deadline=None)
@given(start_frame=st.integers(0, 30), extra=st.integers(0, 2_000))
def test_layer_family_conv_features_are_local(layer_pair, start_frame: int, extra: int) -> None:
    """A window's conv features equal the matching slice of the full input's:
    what lets the streaming caller compute each frame's features once."""
    _, lean = layer_pair
    rng = np.random.default_rng(start_frame)
    audio = torch.from_numpy(rng.standard_normal((1, 16_000)).astype(np.float32))  # (1, samples)
    start = start_frame * hop_samples()
    window = audio[:, start : start + receptive_field_samples() + extra]  # (1, samples)
    with torch.inference_mode():
        full = lean.conv_features(audio)  # (1, frames, conv_dim)
        part = lean.conv_features(window)  # (1, window frames, conv_dim)
    count = part.shape[1]
    assert count == num_frames(window.shape[1])
    assert torch.allclose(part, full[:, start_frame : start_frame + count], atol=1e-5)


def test_group_family_conv_features_are_not_local() -> None:
    lean = _lean(_reference("group", False))
    audio = torch.randn(1, 16_000)
    with torch.inference_mode():
        full = lean.conv_features(audio)
        part = lean.conv_features(audio[:, 3_200:8_000])
    assert not torch.allclose(part, full[:, 10 : 10 + part.shape[1]], atol=1e-3)


def test_frame_arithmetic_examples() -> None:
    assert num_frames(16_000) == 49
    assert [num_frames(n) for n in (0, 399, 400, 719, 720)] == [0, 0, 1, 1, 2]
    assert hop_samples() == 320
    assert receptive_field_samples() == 400
    assert receptive_field_samples((3, 3), (2, 2)) == 7
    with pytest.raises(ValueError, match="same length"):
        num_frames(1_000, (10, 3), (5,))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "hubert"}, "model_type is 'hubert', expected 'wav2vec2'"),
        ({"architectures": ["Wav2Vec2ForPreTraining"]}, "expected Wav2Vec2ForCTC"),
        ({"add_adapter": True}, "add_adapter"),
        ({"adapter_attn_dim": 16}, "adapter_attn_dim"),
        ({"feat_extract_norm": "batch"}, "feat_extract_norm must be 'group' or 'layer', got 'batch'"),
        ({"hidden_act": "mish"}, "hidden_act='mish' is not supported"),
        ({"num_attention_heads": 3}, "hidden_size=32 is not divisible by num_attention_heads=3"),
        ({"conv_stride": [5, 2]}, "same non-zero length, got 7, 7 and 2"),
        ({"hidden_size": "big"}, "hidden_size must be an integer, got 'big'"),
    ],
)
def test_unsupported_configs_are_refused(change: dict[str, object], message: str) -> None:
    raw = {**tiny_config("layer"), **change}
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        Wav2Vec2Config.from_dict(raw)


def test_state_dict_problems_name_the_tensor(layer_pair) -> None:
    reference, _ = layer_pair
    config = Wav2Vec2Config.from_dict(reference.config.to_dict())
    state = dict(reference.state_dict())

    missing = {k: t for k, t in state.items() if k != "wav2vec2.encoder.layers.1.attention.q_proj.weight"}
    with pytest.raises(ModelLoadError, match=r"lacks 1 tensor.*wav2vec2.encoder.layers.1.attention.q_proj"):
        build_model(config, missing)

    wrong = {**state, "lm_head.weight": torch.zeros(33, 32)}
    with pytest.raises(ModelLoadError, match=r"lm_head\.weight has shape \(33, 32\).*implies \(32, 32\)"):
        build_model(config, wrong)

    extra = {**state, "wav2vec2.encoder.layers.2.layer_norm.weight": torch.ones(32)}
    with pytest.raises(ModelLoadError, match=r"not account for.*num_hidden_layers=2.*layers\.2\.layer_norm"):
        build_model(config, extra)

    lonely_g = {k: t for k, t in state.items() if not k.endswith("original1")}
    with pytest.raises(ModelLoadError, match="weight-norm partner"):
        build_model(config, lonely_g)


def test_tiny_checkpoint_is_loadable_and_deterministic(tmp_path: Path) -> None:
    first = write_tiny_checkpoint(tmp_path / "a", family="group", seed=3)
    second = write_tiny_checkpoint(tmp_path / "b", family="group", seed=3)
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    raw = json.loads((first / "config.json").read_text())
    assert raw["feat_extract_norm"] == "group" and raw["do_stable_layer_norm"] is False
    lean = build_model(Wav2Vec2Config.from_dict(raw), a)
    assert lean(torch.zeros(1, 800)).shape == (1, 2, 32)


@pytest.mark.parametrize(("family", "stable"), VARIANTS)
def test_a_layer_with_memory_equals_full_attention_rows(family: str, stable: bool) -> None:
    """Attending to the cached keys and values of earlier frames is exactly what the
    full layer computes for the later rows (pre- and post-norm layers)."""
    lean = _lean(_reference(family, stable))
    layer = lean.encoder.layers[0]
    x = torch.randn(2, 30, lean.config.hidden_size)
    with torch.inference_mode():
        full = layer(x)
        past: list[torch.Tensor] = []
        layer(x[:, :12], keys_values=past)  # an earlier window: its keys and values are cached
        assert past[0].shape == (2, 12, 2 * lean.config.hidden_size)
        assert torch.allclose(layer(x[:, 12:], memory=past[0]), full[:, 12:], atol=1e-5)
        assert torch.equal(layer(x), layer(x, memory=None))


@pytest.mark.parametrize("kernel", [16, 7])
def test_positional_context_replaces_padding_with_past_frames(kernel: int) -> None:
    lean = _lean(_reference("layer", True, num_conv_pos_embeddings=kernel, num_conv_pos_embedding_groups=4))
    pos = lean.encoder.pos_conv_embed
    x = torch.randn(2, 40, lean.config.hidden_size)
    with torch.inference_mode():
        for context in range(kernel // 2 + 1):
            assert torch.allclose(pos(x[:, 10 - context :], context), pos(x[:, 10 - context :])[:, context:],
                                  atol=1e-6)
        with pytest.raises(ValueError, match="positional context"):
            pos(x, kernel // 2 + 1)


def test_logits_with_memory_without_memory_equal_a_plain_forward(layer_pair) -> None:
    _, lean = layer_pair
    with torch.inference_mode():
        features = lean.conv_features(torch.randn(2, 8_000))  # (batch, frames, conv_dim)
        logits, keys_values = lean.logits_with_memory(features, 0, None)
        assert torch.allclose(logits, lean.logits_from_features(features), atol=1e-5)
        layers = lean.config.num_hidden_layers
        assert keys_values.shape == (2, layers, features.shape[1], 2 * lean.config.hidden_size)
        # The first layer's input is the projected features plus their position signal;
        # its keys and values are projections of that input, layer-normed (pre-LN).
        projected = lean.feature_projection(features)
        first = lean.encoder.layers[0]
        layer_input = first.layer_norm(projected + lean.encoder.pos_conv_embed(projected))
        assert torch.allclose(keys_values[:, 0], first.attention.keys_values(layer_input), atol=1e-5)
        empty = keys_values[:, :, :0]
        assert torch.allclose(lean.logits_with_memory(features, 0, empty)[0], logits, atol=1e-6)


def test_memories_of_different_lengths_share_a_forward_behind_a_mask(layer_pair) -> None:
    """Streams of different ages in one batch: the shorter memory padded in front and
    masked gives what its stream's own forward gives."""
    _, lean = layer_pair
    with torch.inference_mode():
        features = lean.conv_features(torch.randn(2, 12_000))  # (batch, frames, conv_dim)
        _, past = lean.logits_with_memory(features, 0, None)  # (batch, layers, frames, 2 * hidden)
        window = lean.conv_features(torch.randn(2, 4_000))
        long_, short = past, past[:, :, -7:]
        alone = [lean.logits_with_memory(window[b : b + 1], 0, m[b : b + 1]) for b, m in ((0, long_), (1, short))]
        padded = long_.clone()
        padded[1, :, : long_.shape[2] - 7] = 1e3  # padding: whatever it holds must not count
        padded[1, :, long_.shape[2] - 7 :] = short[1]
        logits, keys_values = lean.logits_with_memory(window, 0, padded, [long_.shape[2], 7])
        for b in range(2):
            assert torch.allclose(logits[b], alone[b][0][0], atol=1e-5)
            assert torch.allclose(keys_values[b], alone[b][1][0], atol=1e-5)
