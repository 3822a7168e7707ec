"""Tiny randomly initialised wav2vec2 CTC checkpoints for tests.

House style rule 9: tests use real parts at small scale.  A real (if untrained)
``transformers.Wav2Vec2ForCTC`` saved with ``save_pretrained`` is the closest
thing to a Hub checkpoint we can make offline, and it exercises exactly the
loading code a user's folder would.  ``transformers`` is a test-only
dependency; the engine itself never imports it.

Usage from any test::

    from tiny_models import write_tiny_checkpoint

    folder = write_tiny_checkpoint(tmp_path / "model")            # "layer" family
    folder = write_tiny_checkpoint(tmp_path / "m", family="group")  # base-960h style
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_VOCAB",
    "random_padded_batch",
    "tiny_config",
    "write_local_checkpoint",
    "write_tiny_checkpoint",
]

# The character vocabulary of the English fine-tunes (pad first, so blank id 0).
DEFAULT_VOCAB: tuple[str, ...] = (
    ("<pad>", "<s>", "</s>", "<unk>", "|") + tuple("abcdefghijklmnopqrstuvwxyz") + ("'",)
)


def tiny_config(
    family: str = "layer", *, vocab_size: int = len(DEFAULT_VOCAB), pad_token_id: int = 0
) -> dict[str, Any]:
    """The ``config.json`` fields of a tiny model of the given family.

    The conv stack keeps the standard kernels and strides (400-sample receptive
    field, 320-sample hop) so window and frame arithmetic in tests is the real
    one; only the widths shrink (32 channels, hidden size 32, 2 layers), which
    keeps a forward pass over seconds of audio in the millisecond range.
    """
    if family not in ("layer", "group"):
        raise ValueError(f"family must be 'layer' or 'group', got {family!r}")
    layer = family == "layer"
    return {
        "model_type": "wav2vec2",
        "architectures": ["Wav2Vec2ForCTC"],
        "conv_dim": [32] * 7,
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        # large-lv60 / XLSR use conv biases with LayerNorm convs; base-960h has none.
        "conv_bias": layer,
        "feat_extract_norm": family,
        "do_stable_layer_norm": layer,
        "feat_extract_activation": "gelu",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
        "vocab_size": vocab_size,
        "pad_token_id": pad_token_id,
        "apply_spec_augment": False,
        "mask_time_prob": 0.0,
    }


def _vocab_mapping(vocab: Sequence[str] | Mapping[str, int] | None) -> dict[str, int]:
    if vocab is None:
        vocab = DEFAULT_VOCAB
    if isinstance(vocab, Mapping):
        return {str(token): int(index) for token, index in vocab.items()}
    return {token: index for index, token in enumerate(vocab)}


def write_tiny_checkpoint(
    path: str | Path,
    *,
    family: str = "layer",
    vocab: Sequence[str] | Mapping[str, int] | None = None,
    seed: int = 0,
    with_lm_dir: str | Path | bool | None = None,
) -> Path:
    """Write a tiny random ``Wav2Vec2ForCTC`` checkpoint folder and return it.

    Args:
        path: folder to write (created if missing): ``config.json``,
            ``model.safetensors``, ``vocab.json``, ``preprocessor_config.json``,
            ``tokenizer_config.json``.
        family: ``"layer"`` (LayerNorm convs, pre-LN transformer: large-lv60 /
            XLSR-53 style, local conv features) or ``"group"`` (GroupNorm first
            conv, post-LN transformer: wav2vec2-base-960h style).
        vocab: tokens in id order, or a token -> id mapping; default
            :data:`DEFAULT_VOCAB` (32 tokens, ``"<pad>"`` = 0 is the blank).
        seed: the same seed writes bit-identical weights.
        with_lm_dir: a folder whose files are copied into
            ``<path>/language_model/`` (e.g. a tiny ARPA + unigrams), or
            ``True`` for an empty ``language_model/`` folder.

    Every parameter gets extra Gaussian noise on top of the transformers
    initialisation, because that initialisation leaves biases at 0 and norm
    weights at 1: a lean re-implementation that forgot a bias or swapped two
    norms would still match it.  The noise makes every tensor matter.
    """
    import torch  # local: importing this module must stay cheap
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    token_to_id = _vocab_mapping(vocab)
    pad_id = token_to_id.get("<pad>", 0)

    torch.manual_seed(seed)
    config = Wav2Vec2Config(**tiny_config(family, vocab_size=len(token_to_id), pad_token_id=pad_id))
    model = Wav2Vec2ForCTC(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, parameter in sorted(model.named_parameters()):
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(noise * 0.1)
    model.save_pretrained(folder, safe_serialization=True)

    (folder / "vocab.json").write_text(
        json.dumps(token_to_id, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    preprocessor = {
        "do_normalize": True,
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": family == "layer",
        "sampling_rate": 16000,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=1), encoding="utf-8")
    tokenizer = {
        "tokenizer_class": "Wav2Vec2CTCTokenizer",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "word_delimiter_token": "|",
        "do_lower_case": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer, indent=1), encoding="utf-8")

    if with_lm_dir is True:
        (folder / "language_model").mkdir(exist_ok=True)
    elif with_lm_dir:
        shutil.copytree(Path(with_lm_dir), folder / "language_model", dirs_exist_ok=True)
    return folder


def write_local_checkpoint(path: str | Path, *, seed: int = 1) -> Path:
    """A real "layer"-family checkpoint whose receptive field is local: no
    transformer layers (only the 16-frame positional conv mixes frames) and no
    input normalization, so windows with 8+ frames of context on each side
    reproduce a full forward exactly."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    folder = write_tiny_checkpoint(path, family="layer")  # vocab, preprocessor, tokenizer files
    cfg = tiny_config("layer")
    cfg["num_hidden_layers"] = 0
    torch.manual_seed(seed)
    model = Wav2Vec2ForCTC(Wav2Vec2Config(**cfg)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape) * 0.1)
    model.save_pretrained(folder, safe_serialization=True)
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
    preprocessor["do_normalize"] = False
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=1), encoding="utf-8")
    return folder


def random_padded_batch(lengths: Sequence[int]) -> tuple[Any, Any]:
    """A seeded batch of white-noise waveforms of these lengths: (values, attention mask), zero-padded."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(len(lengths), max(lengths))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randn(n, generator=gen)
        mask[i, :n] = 1
    return x, mask
