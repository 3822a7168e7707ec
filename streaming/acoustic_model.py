"""The acoustic model stage: batched CTC log-probs from waveforms or conv features.

An :class:`AcousticModel` wraps a built :mod:`streaming.wav2vec2` module with
its device, reduced precision and the numpy boundary; :class:`ModelInfo` is
what the rest of the engine knows about the checkpoint.  Reading checkpoints
(files, the Hugging Face Hub) is :mod:`streaming.loading`'s job: this module
takes tensors and configs only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .arrays import AnyArray, FloatArray
from .errors import AudioError
from .wav2vec2 import Wav2Vec2CTC, num_frames

__all__ = ["DTYPES", "AcousticModel", "ModelInfo"]

# Accepted dtype names; aliases map to the canonical name kept in AcousticModel.dtype.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

@dataclass(frozen=True)
class ModelInfo:
    """What the rest of the engine needs to know about a loaded checkpoint."""

    name: str  # folder path or hub id it came from
    vocab: tuple[str, ...]  # index -> token exactly as in vocab.json ("<pad>", "|", "a", ...)
    blank_id: int  # CTC blank (the pad token)
    word_delimiter: str  # "|" normally
    sample_rate: int  # 16000
    do_normalize: bool  # from preprocessor_config.json
    feat_extract_norm: str  # "group" | "layer"
    hop_samples: int  # 320 (product of conv strides)
    receptive_field_samples: int  # 400 for the standard conv stack
    num_parameters: int  # as run: the positional conv's weight-norm gain is folded in
    language_model_dir: Path | None  # <checkpoint>/language_model if present

    @property
    def vocab_size(self) -> int:
        """Columns of every log-prob array the model returns."""
        return len(self.vocab)

    @property
    def frame_seconds(self) -> float:
        """Seconds between two frames: 320 / 16000 = 0.02 for the standard stack."""
        return self.hop_samples / self.sample_rate


class AcousticModel:
    """A loaded wav2vec2 CTC model: float32 waveforms in, float32 log-probs out.

    Not thread-safe; one caller at a time (the engine serialises calls).
    Inputs are ``(batch, samples)`` arrays of equal length, already at
    ``info.sample_rate`` and normalised by the caller when ``info.do_normalize``.
    """

    def __init__(self, module: Wav2Vec2CTC, info: ModelInfo, *, device: torch.device, dtype: str) -> None:
        self._module = module
        self.info = info
        self.device = device
        self.dtype = dtype  # canonical name: "float32" | "bfloat16" | "float16"
        self._autocast_dtype = None if dtype == "float32" else DTYPES[dtype]
        config = module.config
        self._kernels = config.conv_kernel
        self._strides = config.conv_stride
        self.feature_dim: int = config.conv_dim[-1]  # columns of conv_features output

    def __repr__(self) -> str:
        return (
            f"AcousticModel({self.info.name!r}, {self.info.feat_extract_norm!r} family, "
            f"{self.info.num_parameters:,} parameters, {self.device}, {self.dtype})"
        )

    @property
    def features_are_local(self) -> bool:
        """True when a conv feature frame depends only on its own receptive field.

        Then features of overlapping windows can be computed once and reused.
        GroupNorm checkpoints ("group") normalise over the whole input, so no.
        """
        return self._module.config.features_are_local

    def num_frames(self, num_samples: int) -> int:
        """Frames ``log_probs`` returns for ``num_samples`` samples (16000 -> 49)."""
        return num_frames(num_samples, self._kernels, self._strides)

    def log_probs(self, waveforms: AnyArray) -> FloatArray:
        """(batch, samples) float32 -> (batch, frames, vocab) float32 CTC log-softmax."""
        x = self._waveforms(waveforms)  # (batch, samples)
        frames = self.num_frames(x.shape[1])
        if frames == 0 or x.shape[0] == 0:
            return np.zeros((x.shape[0], frames, self.info.vocab_size), dtype=np.float32)
        with self._inference():
            logits = self._module(x)  # (batch, frames, vocab)
            return self._to_log_probs(logits)

    def conv_features(self, waveforms: AnyArray) -> FloatArray:
        """(batch, samples) -> (batch, frames, feature_dim) float32 conv feature encoder output."""
        x = self._waveforms(waveforms)  # (batch, samples)
        frames = self.num_frames(x.shape[1])
        if frames == 0 or x.shape[0] == 0:
            return np.zeros((x.shape[0], frames, self.feature_dim), dtype=np.float32)
        with self._inference():
            features = self._module.conv_features(x)  # (batch, frames, feature_dim)
            return features.float().cpu().numpy()

    def log_probs_from_features(self, features: AnyArray) -> FloatArray:
        """(batch, frames, feature_dim) -> (batch, frames, vocab) float32 CTC log-softmax.

        ``log_probs_from_features(conv_features(w))`` equals ``log_probs(w)``.
        """
        if (
            not isinstance(features, np.ndarray)
            or features.ndim != 3
            or features.shape[2] != self.feature_dim
        ):
            shape = getattr(features, "shape", type(features).__name__)
            raise ValueError(f"features must have shape (batch, frames, {self.feature_dim}), got {shape}")
        if features.shape[0] == 0 or features.shape[1] == 0:
            return np.zeros((features.shape[0], features.shape[1], self.info.vocab_size), dtype=np.float32)
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(self.device)
        with self._inference():
            logits = self._module.logits_from_features(x)  # (batch, frames, vocab)
            return self._to_log_probs(logits)

    @property
    def pos_context_frames(self) -> int:
        """Past frames the positional convolution reaches back: half its kernel (64 of 128)."""
        return self._module.config.pos_context_frames

    @property
    def num_layers(self) -> int:
        return int(self._module.config.num_hidden_layers)

    def log_probs_with_memory(
        self,
        features: FloatArray,
        pos_context: int,
        memory: FloatArray | None,
        memory_lengths: Sequence[int] | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """A window whose past comes from cached keys and values instead of being recomputed.

        ``features``: (batch, pos_context + frames, feature_dim) conv features, the
        first ``pos_context`` frames only for the positional convolution;
        ``memory``: (batch, layers, mem, 2 * hidden) each layer's keys and values
        for the ``mem`` frames before the window, or None; ``memory_lengths``: per item,
        how many of the last ``mem`` frames are real (the rest is padding, masked; None:
        all).  Returns the window
        frames' log-probs (batch, frames, vocab) and their keys and values
        (batch, layers, frames, 2 * hidden) float32: the memory of the next window.
        """
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(self.device)
        mem = None
        if memory is not None:
            mem = torch.from_numpy(np.ascontiguousarray(memory, dtype=np.float32)).to(self.device)
        with self._inference():
            logits, keys_values = self._module.logits_with_memory(x, pos_context, mem, memory_lengths)
            return self._to_log_probs(logits), keys_values.float().cpu().numpy()

    # ------------------------------------------------------------------ helpers
    def _waveforms(self, waveforms: AnyArray) -> torch.Tensor:
        if not isinstance(waveforms, np.ndarray):
            raise AudioError(f"waveforms must be a numpy array, got {type(waveforms).__name__}")
        if waveforms.ndim != 2:
            raise AudioError(f"waveforms must have shape (batch, samples), got {waveforms.shape}")
        if not np.issubdtype(waveforms.dtype, np.floating):
            raise AudioError(f"waveforms must be float32 in [-1, 1], got dtype {waveforms.dtype}")
        array = np.ascontiguousarray(waveforms, dtype=np.float32)
        return torch.from_numpy(array).to(self.device)  # (batch, samples)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        with torch.inference_mode():
            if self._autocast_dtype is None:
                yield
            else:
                with torch.autocast(device_type=self.device.type, dtype=self._autocast_dtype):
                    yield

    @staticmethod
    def _to_log_probs(logits: torch.Tensor) -> FloatArray:
        # log-softmax in float32 even under autocast: bf16 log-probs lose ~2 digits.
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # (batch, frames, vocab)
        return log_probs.cpu().numpy()
