"""Loading: checkpoint files and Hub downloads in, a ready engine's parts out.

``load_model`` turns a Hugging Face ``Wav2Vec2ForCTC`` folder (or Hub id) into
an :class:`AcousticModel`, checking everything that can be checked before the
first window arrives: files present and readable, every tensor present with
the shape ``config.json`` implies, ``vocab.json`` as long as the model's
output.  A mistake surfaces as one :class:`~streaming.errors.ModelLoadError`
or :class:`~streaming.errors.VocabularyError` that names the file or tensor,
what was expected and what came, instead of as a shape error mid-stream.

A checkpoint folder holds::

    config.json                 architecture (see wav2vec2.Wav2Vec2Config)
    model.safetensors           or pytorch_model.bin (or a sharded *.index.json)
    vocab.json                  token -> id (added_tokens.json merged if present)
    preprocessor_config.json    sampling_rate, do_normalize (defaults if missing)
    tokenizer_config.json       optional: pad / word delimiter token names
    language_model/             optional: pyctcdecode LM folder

Here are the acoustic model's file and Hub I/O, the default model's place
and which LM a checkpoint decodes with; :mod:`streaming.acoustic_model` takes
the built module and its facts only.  (The LM's own files are still read by
:func:`streaming.language_model.load_language_model`.)
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .acoustic_model import DTYPES, AcousticModel, ModelInfo
from .errors import ModelLoadError, VocabularyError
from .language_model import LanguageModel, load_language_model
from .wav2vec2 import Wav2Vec2Config, build_model

__all__ = ["DEFAULT_MODEL_DIR", "default_model_path", "load_language_model_for", "load_model"]

logger = logging.getLogger(__name__)

_DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}

# Wav2Vec2FeatureExtractor defaults, used (with a warning) when a checkpoint has no
# preprocessor_config.json: every released wav2vec2/XLSR model is 16 kHz, and
# the fine-tunes that skip normalisation say so explicitly in their file.
_DEFAULT_SAMPLE_RATE = 16_000
_DEFAULT_DO_NORMALIZE = True

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# What a Hub download fetches besides weights (never optimizer states, ONNX, ...).
_HUB_METADATA = [
    "config.json",
    "vocab.json",
    "added_tokens.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "language_model/*",
]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


# The model shipped in the repository (trained by recipe/); XLSR_STREAM_MODEL overrides it.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "en-small"


def default_model_path() -> Path:
    """The default checkpoint folder: $XLSR_STREAM_MODEL, else models/en-small in the repo."""
    override = os.environ.get("XLSR_STREAM_MODEL")
    path = Path(override) if override else DEFAULT_MODEL_DIR
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"no default model at {path} (config.json missing); pass --model with a local "
            "Wav2Vec2ForCTC folder or a Hub id, or rebuild the default with recipe/README.md"
        )
    return path


def load_language_model_for(info: ModelInfo, lm: str | Path | bool | None) -> LanguageModel | None:
    """The LM a checkpoint decodes with.

    ``lm``: None uses the checkpoint's ``language_model/`` when it has one; False
    decodes without an LM; True needs the checkpoint's; a path loads that LM
    folder or KenLM file.
    """
    if lm is False:
        return None
    if lm is True:
        if info.language_model_dir is None:
            raise ModelLoadError(f"{info.name} has no language_model/ folder; pass an LM path")
        return load_language_model(info.language_model_dir, info.vocab)
    lm_path = info.language_model_dir if lm is None else Path(lm)
    return None if lm_path is None else load_language_model(lm_path, info.vocab)


# --------------------------------------------------------------------------- #
# The acoustic model
# --------------------------------------------------------------------------- #


def load_model(
    name_or_path: str | Path,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    threads: int | None = None,
) -> AcousticModel:
    """Load a Wav2Vec2ForCTC checkpoint folder or Hugging Face Hub id.

    Args:
        name_or_path: a local folder (see the module docstring), or a Hub id
            such as ``"facebook/wav2vec2-base-960h"`` fetched with
            ``huggingface_hub`` (cached; with ``HF_HUB_OFFLINE=1`` only the cache).
        device: a torch device, ``"cpu"`` or ``"cuda"`` / ``"cuda:1"``.
        dtype: ``"float32"``; ``"bfloat16"`` (autocast: about 2x faster on CPUs
            with bf16 instructions, logits within ~0.1); ``"float16"`` (CUDA only);
            ``"auto"``: bfloat16 on CPUs with AVX-512 BF16 or AMX, else float32.
            Matmul and conv weights are stored in the reduced type, norms stay float32.
        threads: ``torch.set_num_threads`` for the whole process; None leaves
            torch's default (all cores).

    Raises:
        ModelLoadError: missing/corrupt files, missing or wrongly shaped
            tensors, unsupported architecture, unusable device/dtype, Hub
            id that cannot be fetched.
        VocabularyError: ``vocab.json`` unusable or not as long as the model's output.
    """
    torch_device = _device(device)
    dtype_name = _dtype_name(dtype, torch_device)
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ModelLoadError(f"threads must be a positive integer or None, got {threads!r}")
        torch.set_num_threads(threads)

    folder = _resolve_folder(name_or_path)
    raw_config = _read_json(folder / "config.json")
    config = Wav2Vec2Config.from_dict(raw_config)
    # Vocabulary before weights: a mismatch fails before reading a gigabyte.
    vocab = _read_vocab(folder, config.vocab_size)
    tokenizer_config = _read_optional_json(folder / "tokenizer_config.json") or {}
    blank_id = _blank_id(vocab, config, tokenizer_config)
    word_delimiter = _word_delimiter(vocab, tokenizer_config)
    sample_rate, do_normalize = _read_preprocessor(folder)

    state_dict = _read_weights(folder)
    module = build_model(config, state_dict)
    del state_dict
    num_parameters = sum(p.numel() for p in module.parameters())
    _prepare_module(module, torch_device, dtype_name)

    lm_dir = folder / "language_model"
    info = ModelInfo(
        name=str(name_or_path),
        vocab=vocab,
        blank_id=blank_id,
        word_delimiter=word_delimiter,
        sample_rate=sample_rate,
        do_normalize=do_normalize,
        feat_extract_norm=config.feat_extract_norm,
        hop_samples=config.hop_samples,
        receptive_field_samples=config.receptive_field_samples,
        num_parameters=num_parameters,
        language_model_dir=lm_dir if lm_dir.is_dir() else None,
    )
    logger.info(
        "loaded %s: %s family, %d layers, %d parameters, vocab %d, blank %r, %s %s",
        info.name,
        info.feat_extract_norm,
        config.num_hidden_layers,
        num_parameters,
        len(vocab),
        vocab[blank_id],
        torch_device,
        dtype_name,
    )
    return AcousticModel(module, info, device=torch_device, dtype=dtype_name)


def _cpu_has_fast_bfloat16() -> bool:
    """AVX-512 BF16 or AMX: bfloat16 matmuls run about twice as fast as float32 there."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private torch API: probe, never rely
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def _dtype_name(dtype: str, device: torch.device) -> str:
    """Canonical dtype name; ``"auto"`` is bfloat16 on CPUs with bf16 instructions, else float32."""
    name = _DTYPE_ALIASES.get(str(dtype).lower(), str(dtype).lower())
    if name == "auto":
        # CUDA stays float32 until half precision has been measured on a GPU here.
        name = "bfloat16" if device.type == "cpu" and _cpu_has_fast_bfloat16() else "float32"
        logger.info("dtype auto: %s on %s", name, device)
    if name not in DTYPES:
        raise ModelLoadError(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    if name == "float16" and device.type == "cpu":
        raise ModelLoadError(
            "dtype 'float16' needs device='cuda' (CPU float16 is slower than float32); "
            "use dtype='bfloat16' on CPU"
        )
    return name


def _device(device: str) -> torch.device:
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(
            f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}"
        ) from exc
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device {device!r} requested, but CUDA is not available (torch {torch.__version__}); "
            "use device='cpu'"
        )
    return torch_device


def _prepare_module(module: nn.Module, device: torch.device, dtype_name: str) -> None:
    """Move to ``device``; for reduced precision, pre-cast the matmul/conv weights.

    Autocast alone would re-cast every float32 weight on every call (for a
    300M-parameter model that is a gigabyte of traffic per window); storing
    them in the reduced type makes those casts no-ops.  Norm layers keep
    float32 weights, as autocast expects.
    """
    module.to(device)
    if dtype_name != "float32":
        reduced = DTYPES[dtype_name]
        for sub in module.modules():
            if isinstance(sub, nn.Linear | nn.Conv1d):
                sub.to(reduced)


def _looks_like_hub_id(text: str) -> bool:
    return bool(_HUB_ID.match(text)) and ".." not in text


def _resolve_folder(name_or_path: str | Path) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(
            f"{path} is a file; expected a checkpoint folder holding config.json, "
            "model.safetensors (or pytorch_model.bin) and vocab.json"
        )
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or not _looks_like_hub_id(text):
        raise ModelLoadError(f"no checkpoint folder at {path}")
    return _download_from_hub(text)


def _hub_offline() -> bool:
    truthy = {"1", "on", "yes", "true"}
    if any(
        os.environ.get(var, "").strip().lower() in truthy
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    ):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _download_from_hub(repo_id: str) -> Path:
    """Fetch a Hub checkpoint (metadata + safetensors, else pytorch_model.bin) into the HF cache.

    huggingface_hub is imported here, not at module import: most deployments
    load a local folder and need neither the package nor the network.
    """
    local_hint = (
        "pass the path of a local checkpoint folder (config.json, model.safetensors or "
        "pytorch_model.bin, vocab.json, preprocessor_config.json) instead"
    )
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelLoadError(
            f"{repo_id!r} is not a local folder, and huggingface_hub is not installed to fetch it "
            f"from the Hugging Face Hub (pip install huggingface-hub); or {local_hint}"
        ) from None
    offline = _hub_offline()
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                allow_patterns=[
                    *_HUB_METADATA,
                    "model.safetensors",
                    "model.safetensors.index.json",
                    "model-*.safetensors",
                ],
                local_files_only=offline,
            )
        )
        if not any((folder / name).is_file() for name in _WEIGHT_FILES):
            folder = Path(
                snapshot_download(
                    repo_id,
                    allow_patterns=[*_HUB_METADATA, "pytorch_model.bin", "pytorch_model*.bin*"],
                    local_files_only=offline,
                )
            )
    except Exception as exc:  # huggingface_hub raises many unrelated types (HTTP, cache, offline)
        if offline:
            raise ModelLoadError(
                f"{repo_id!r} is not a local folder, and the Hugging Face Hub is offline "
                f"(HF_HUB_OFFLINE=1) with no cached copy of it; {local_hint}"
            ) from exc
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"{repo_id!r} is not a local folder, and fetching it from the Hugging Face Hub failed "
            f"({type(exc).__name__}: {reason}); {local_hint}"
        ) from exc
    logger.info("resolved %s to %s", repo_id, folder)
    return folder


def _read_optional_json(path: Path) -> dict[str, Any] | None:
    return _read_json(path) if path.is_file() else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        present = sorted(p.name for p in path.parent.iterdir()) if path.parent.is_dir() else []
        raise ModelLoadError(
            f"no {path.name} in {path.parent} (found: {', '.join(present) or 'nothing'}); expected a "
            "Hugging Face Wav2Vec2ForCTC folder with config.json, model.safetensors or "
            "pytorch_model.bin, vocab.json"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        error = VocabularyError if path.name in ("vocab.json", "added_tokens.json") else ModelLoadError
        raise error(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        error = VocabularyError if path.name in ("vocab.json", "added_tokens.json") else ModelLoadError
        raise error(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _read_vocab(folder: Path, model_outputs: int) -> tuple[str, ...]:
    """``vocab.json`` (+ ``added_tokens.json``) as an index -> token tuple, checked against the model."""
    data = _read_json(folder / "vocab.json")
    if data and all(isinstance(value, dict) for value in data.values()):
        # Multilingual tokenizers (MMS style) nest one vocabulary per language.
        if len(data) != 1:
            raise VocabularyError(
                f"vocab.json holds {len(data)} per-language vocabularies "
                f"({', '.join(sorted(data)[:5])}, ...); "
                "expected a single-language vocabulary"
            )
        data = next(iter(data.values()))
    added = _read_optional_json(folder / "added_tokens.json") or {}
    token_to_id: dict[str, Any] = dict(data)
    source = "vocab.json"
    for token, index in added.items():
        if token not in token_to_id:
            token_to_id[token] = index
            source = "vocab.json + added_tokens.json"
    by_id: dict[int, str] = {}
    for token, index in token_to_id.items():
        if isinstance(index, bool) or not isinstance(index, int):
            raise VocabularyError(f"{source}: token {token!r} has id {index!r}, expected an integer")
        if index in by_id:
            raise VocabularyError(f"{source}: id {index} is used by both {by_id[index]!r} and {token!r}")
        by_id[index] = token
    size = len(by_id)
    if size != model_outputs:
        raise VocabularyError(f"{source} has {size} tokens, the model outputs {model_outputs}")
    missing = [i for i in range(size) if i not in by_id]
    if missing:
        raise VocabularyError(
            f"{source}: ids must be 0..{size - 1} each used once; missing {missing[:5]}, "
            f"got out-of-range {sorted(i for i in by_id if not 0 <= i < size)[:5]}"
        )
    return tuple(by_id[i] for i in range(size))


def _token_name(value: Any) -> str | None:
    # tokenizer_config.json stores special tokens as a string or an AddedToken dict.
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _blank_id(vocab: tuple[str, ...], config: Wav2Vec2Config, tokenizer_config: Mapping[str, Any]) -> int:
    """The CTC blank: the pad token.

    ``"<pad>"`` if present, else the tokenizer's pad token, else ``config.pad_token_id``.
    """
    for name in ("<pad>", _token_name(tokenizer_config.get("pad_token"))):
        if name is not None and name in vocab:
            blank = vocab.index(name)
            break
    else:
        pad = config.pad_token_id
        if pad is None or not 0 <= pad < len(vocab):
            raise VocabularyError(
                f"cannot tell the CTC blank: vocab.json has no '<pad>' token and config.json "
                f"pad_token_id is {pad!r} (expected an id in 0..{len(vocab) - 1})"
            )
        blank = pad
    if config.pad_token_id is not None and config.pad_token_id != blank:
        logger.warning(
            "pad token %r has id %d but config.json pad_token_id is %d; using %d as the CTC blank",
            vocab[blank],
            blank,
            config.pad_token_id,
            blank,
        )
    return blank


def _word_delimiter(vocab: tuple[str, ...], tokenizer_config: Mapping[str, Any]) -> str:
    delimiter = _token_name(tokenizer_config.get("word_delimiter_token")) or "|"
    if delimiter not in vocab:
        logger.warning("word delimiter %r is not in vocab.json; words will not be split", delimiter)
    return delimiter


def _read_preprocessor(folder: Path) -> tuple[int, bool]:
    data = _read_optional_json(folder / "preprocessor_config.json")
    if data is None:
        logger.warning(
            "no preprocessor_config.json in %s; assuming sampling_rate=%d, do_normalize=%s",
            folder,
            _DEFAULT_SAMPLE_RATE,
            _DEFAULT_DO_NORMALIZE,
        )
        return _DEFAULT_SAMPLE_RATE, _DEFAULT_DO_NORMALIZE
    sample_rate = data.get("sampling_rate")
    if sample_rate is None:
        logger.warning("preprocessor_config.json has no sampling_rate; assuming %d", _DEFAULT_SAMPLE_RATE)
        sample_rate = _DEFAULT_SAMPLE_RATE
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ModelLoadError(
            f"preprocessor_config.json sampling_rate must be a positive integer, got {sample_rate!r}"
        )
    do_normalize = data.get("do_normalize")
    if do_normalize is None:
        logger.warning("preprocessor_config.json has no do_normalize; assuming %s", _DEFAULT_DO_NORMALIZE)
        do_normalize = _DEFAULT_DO_NORMALIZE
    if not isinstance(do_normalize, bool):
        raise ModelLoadError(
            f"preprocessor_config.json do_normalize must be true or false, got {do_normalize!r}"
        )
    return sample_rate, do_normalize


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of the first weights file found, in ``_WEIGHT_FILES`` order."""
    for name in _WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            break
    else:
        present = sorted(p.name for p in folder.iterdir())
        raise ModelLoadError(
            f"no weights in {folder}: expected model.safetensors or pytorch_model.bin "
            f"(found: {', '.join(present) or 'nothing'})"
        )
    if name.endswith(".index.json"):
        index = _read_json(path)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelLoadError(f"{path} has no weight_map; expected {{tensor name: shard file}}")
        tensors: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(_read_weight_file(folder / str(shard)))
        return tensors
    return _read_weight_file(path)


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelLoadError(f"weights shard {path} is missing")
    size = path.stat().st_size
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: Any = load_file(str(path), device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors, pickle and zip raise unrelated types for bad bytes
        if "Weights only load failed" in str(exc):
            # torch's own advice (weights_only=False) would run arbitrary code; we never do.
            reason = (
                "not a plain tensor state dict (arbitrary pickles are not loaded; re-save as safetensors)"
            )
        else:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            reason = f"{type(exc).__name__}: {lines[0][:200] if lines else 'no details'}"
        raise ModelLoadError(
            f"{path.name} ({size} bytes) is corrupt or truncated and cannot be read: {reason}"
        ) from exc
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise ModelLoadError(
            f"{path.name} must hold a flat {{name: tensor}} state dict, got {type(loaded).__name__}"
        )
    return dict(loaded)
