"""A lean torch Wav2Vec2ForCTC for inference, loading Hugging Face weights as they are.

Why our own: the engine must not import ``transformers`` at run time (start-up
time, dependency weight, and a forward pass we can split).  The numerics follow
``transformers.models.wav2vec2.modeling_wav2vec2`` (max |delta logit| <= 1e-4 in
float32, checked by ``tests/test_wav2vec2.py``), without dropout, masking,
attention masks (we feed unpadded, equal-length batches), adapters or
pre-training heads.

The forward pass is split in two so a streaming caller can reuse work:

    waveforms (batch, samples)
      -> conv_features       conv feature encoder        (batch, frames, conv_dim)
      -> logits_from_features projection + transformer + lm_head  (batch, frames, vocab)

For ``feat_extract_norm="layer"`` checkpoints (large-lv60, XLSR-53 fine-tunes)
every conv output frame depends only on its own 400-sample receptive field, so
conv features of overlapping windows can be computed once and reused.  For
``"group"`` checkpoints (wav2vec2-base-960h) the first layer's GroupNorm
normalises each channel over the whole input, so conv features depend on the
window they were computed in.

Both transformer variants are supported: post-LN (``do_stable_layer_norm=False``,
base models) and pre-LN (``do_stable_layer_norm=True``, large/XLSR models).
State-dict key names are the Hugging Face ones (``wav2vec2.`` prefix optional);
the weight-normed positional convolution is accepted as ``weight_g``/``weight_v``
(older torch), ``parametrizations.weight.original0``/``original1`` (newer torch)
or an already folded ``weight``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import Tensor, nn

from . import windows
from .errors import ModelLoadError
from .windows import FrameGeometry

__all__ = [
    "STANDARD_CONV_KERNELS",
    "STANDARD_CONV_STRIDES",
    "Wav2Vec2CTC",
    "Wav2Vec2Config",
    "build_model",
    "export_hf_state_dict",
    "hop_samples",
    "num_frames",
    "receptive_field_samples",
]

# The conv stack of every released wav2vec2 / XLSR checkpoint.
STANDARD_CONV_KERNELS: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
STANDARD_CONV_STRIDES: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)

# Checkpoint tensors that inference does not use: the spec-augment mask
# embedding and the pre-training quantizer / projection heads.
_IGNORED_PREFIXES: tuple[str, ...] = ("masked_spec_embed", "quantizer.", "project_q.", "project_hid.")

_POS_CONV = "encoder.pos_conv_embed.conv."


# --------------------------------------------------------------------------- #
# Frame arithmetic (pure functions)
# --------------------------------------------------------------------------- #


def num_frames(
    num_samples: int,
    kernels: Sequence[int] = STANDARD_CONV_KERNELS,
    strides: Sequence[int] = STANDARD_CONV_STRIDES,
) -> int:
    """Number of output frames the conv feature encoder yields for ``num_samples``.

    Each unpadded conv layer maps a length ``n`` to ``(n - kernel) // stride + 1``
    (0 once ``n < kernel``).  Composed, that is ``(num_samples - receptive_field) // hop + 1``,
    :func:`streaming.windows.num_frames` for the stack's geometry; with the standard
    stack ``(num_samples - 400) // 320 + 1`` for ``num_samples >= 400``:

    >>> num_frames(16000)          # 1 s at 16 kHz
    49
    >>> num_frames(400), num_frames(719), num_frames(720)
    (1, 1, 2)
    >>> num_frames(399)            # shorter than one receptive field
    0
    >>> num_frames(160000)         # 10 s
    499
    """
    if len(kernels) != len(strides):
        raise ValueError(
            f"kernels and strides must have the same length, got {len(kernels)} and {len(strides)}"
        )
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    # Floor divisions compose, so the layer-by-layer lengths reduce to the one
    # closed form the engine's windows use.
    geometry = FrameGeometry(hop_samples(strides), receptive_field_samples(kernels, strides))
    return windows.num_frames(int(num_samples), geometry)


def hop_samples(strides: Sequence[int] = STANDARD_CONV_STRIDES) -> int:
    """Samples between the starts of two consecutive frames: the product of the strides.

    >>> hop_samples()              # 5 * 2**6 -> 20 ms per frame at 16 kHz
    320
    """
    return math.prod(strides)


def receptive_field_samples(
    kernels: Sequence[int] = STANDARD_CONV_KERNELS,
    strides: Sequence[int] = STANDARD_CONV_STRIDES,
) -> int:
    """Samples one conv output frame sees: ``1 + sum((k_i - 1) * prod(strides before i))``.

    >>> receptive_field_samples()  # 1 + 9*1 + 2*5 + 2*10 + 2*20 + 2*40 + 1*80 + 1*160
    400
    """
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides, strict=True):
        field += (kernel - 1) * jump
        jump *= stride
    return field


# --------------------------------------------------------------------------- #
# Configuration
# --------------------------------------------------------------------------- #

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


@dataclass(frozen=True)
class Wav2Vec2Config:
    """The ``config.json`` fields inference needs; defaults are transformers' own.

    A missing field means the checkpoint relied on the ``Wav2Vec2Config``
    default when it was saved, so the same default is the right reading.
    """

    conv_dim: tuple[int, ...] = (512,) * 7
    conv_kernel: tuple[int, ...] = STANDARD_CONV_KERNELS
    conv_stride: tuple[int, ...] = STANDARD_CONV_STRIDES
    conv_bias: bool = False
    feat_extract_norm: str = "group"  # "group": base models; "layer": large-lv60 / XLSR
    feat_extract_activation: str = "gelu"
    do_stable_layer_norm: bool = False  # True: pre-LN transformer (large-lv60 / XLSR)
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    vocab_size: int = 32
    pad_token_id: int | None = 0

    def __post_init__(self) -> None:
        if not (len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride) >= 1):
            raise ModelLoadError(
                "config.json conv_dim, conv_kernel and conv_stride must have the same non-zero length, got "
                f"{len(self.conv_dim)}, {len(self.conv_kernel)} and {len(self.conv_stride)}"
            )
        for name in ("conv_dim", "conv_kernel", "conv_stride"):
            values = getattr(self, name)
            if any(value < 1 for value in values):
                raise ModelLoadError(f"config.json {name} must be positive integers, got {list(values)}")
        if self.num_hidden_layers < 0:
            raise ModelLoadError(f"config.json num_hidden_layers must be >= 0, got {self.num_hidden_layers}")
        for name in (
            "hidden_size",
            "num_attention_heads",
            "intermediate_size",
            "num_conv_pos_embeddings",
            "num_conv_pos_embedding_groups",
            "vocab_size",
        ):
            if getattr(self, name) < 1:
                raise ModelLoadError(f"config.json {name} must be >= 1, got {getattr(self, name)}")
        if self.feat_extract_norm not in ("group", "layer"):
            raise ModelLoadError(
                f"config.json feat_extract_norm must be 'group' or 'layer', got {self.feat_extract_norm!r}"
            )
        for name in ("feat_extract_activation", "hidden_act"):
            if getattr(self, name) not in _ACTIVATIONS:
                raise ModelLoadError(
                    f"config.json {name}={getattr(self, name)!r} is not supported; "
                    f"expected one of {sorted(_ACTIVATIONS)}"
                )
        if self.hidden_size % self.num_attention_heads:
            raise ModelLoadError(
                f"config.json hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ModelLoadError(
                f"config.json hidden_size={self.hidden_size} is not divisible by "
                f"num_conv_pos_embedding_groups={self.num_conv_pos_embedding_groups}"
            )
        if not self.layer_norm_eps > 0:
            raise ModelLoadError(f"config.json layer_norm_eps must be > 0, got {self.layer_norm_eps}")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Wav2Vec2Config:
        """Read a parsed ``config.json``; refuses architectures this module cannot run.

        Refused: other model types (hubert, wav2vec2-conformer, data2vec, ...),
        architectures without a CTC head, and adapter variants (``add_adapter``,
        MMS ``adapter_attn_dim``), whose extra layers we do not implement.
        """
        model_type = raw.get("model_type", "wav2vec2")
        if model_type != "wav2vec2":
            raise ModelLoadError(
                f"unsupported architecture: config.json model_type is {model_type!r}, expected 'wav2vec2'"
            )
        architectures = raw.get("architectures") or ["Wav2Vec2ForCTC"]
        if "Wav2Vec2ForCTC" not in architectures:
            raise ModelLoadError(
                f"unsupported architecture: config.json architectures is {list(architectures)}, "
                "expected Wav2Vec2ForCTC"
            )
        if raw.get("add_adapter"):
            raise ModelLoadError(
                "unsupported architecture: config.json add_adapter=true (adapter layers are not implemented)"
            )
        if raw.get("adapter_attn_dim") is not None:
            raise ModelLoadError(
                "unsupported architecture: config.json adapter_attn_dim is set "
                "(MMS attention adapters are not implemented)"
            )
        values: dict[str, Any] = {}
        try:
            for field in fields(cls):
                if field.name not in raw or raw[field.name] is None and field.name != "pad_token_id":
                    continue
                value = raw[field.name]
                if field.name in ("conv_dim", "conv_kernel", "conv_stride"):
                    values[field.name] = tuple(_as_int(field.name, item) for item in value)
                elif field.name in ("conv_bias", "do_stable_layer_norm"):
                    values[field.name] = bool(value)
                elif field.name in ("feat_extract_norm", "feat_extract_activation", "hidden_act"):
                    values[field.name] = str(value)
                elif field.name == "layer_norm_eps":
                    values[field.name] = float(value)
                elif field.name == "pad_token_id":
                    values[field.name] = None if value is None else _as_int(field.name, value)
                else:
                    values[field.name] = _as_int(field.name, value)
        except (TypeError, ValueError) as exc:
            raise ModelLoadError(f"config.json has an unusable value: {exc}") from exc
        return cls(**values)

    @property
    def hop_samples(self) -> int:
        """320 for the standard stack (see :func:`hop_samples`)."""
        return hop_samples(self.conv_stride)

    @property
    def receptive_field_samples(self) -> int:
        """400 for the standard stack (see :func:`receptive_field_samples`)."""
        return receptive_field_samples(self.conv_kernel, self.conv_stride)

    def num_frames(self, num_samples: int) -> int:
        """Frames this model's conv stack yields for ``num_samples`` (see :func:`num_frames`)."""
        return num_frames(num_samples, self.conv_kernel, self.conv_stride)

    def geometry(self, sample_rate: int = 16_000) -> FrameGeometry:
        """How this conv stack maps samples to frames: hop 320, receptive field 400 for the standard one."""
        return FrameGeometry(self.hop_samples, self.receptive_field_samples, sample_rate)

    @property
    def features_are_local(self) -> bool:
        """True when a conv feature frame depends only on its own receptive field ("layer"
        family), so overlapping windows can reuse features; GroupNorm ("group") normalises
        each channel over the whole input."""
        return self.feat_extract_norm == "layer"

    @property
    def pos_context_frames(self) -> int:
        """Past frames the positional convolution reaches back: half its kernel (64 of 128)."""
        return self.num_conv_pos_embeddings // 2


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- #
# Modules (attribute names mirror the Hugging Face state-dict keys)
# --------------------------------------------------------------------------- #


class _ConvLayer(nn.Module):
    """Conv -> optional norm -> activation, one stage of the feature encoder.

    Runs as a (1 x kernel) 2-D convolution on channels-last tensors: the
    channels of each frame are then contiguous, so the per-frame LayerNorm
    reads them in place instead of transposing (a copy) twice per layer, and
    oneDNN's channels-last kernels are faster too (1.5x float32, 1.9x bfloat16
    for the whole stack on one CPU core).  The weights stay ``nn.Conv1d``
    parameters so checkpoints load unchanged.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        kernel: int,
        stride: int,
        *,
        bias: bool,
        norm: str | None,
        activation: str,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size=kernel, stride=stride, bias=bias)
        self.stride = stride
        self.norm_kind = norm
        self.layer_norm: nn.Module | None
        if norm == "group":
            # One group per channel: normalises each channel over time (not local).
            self.layer_norm = nn.GroupNorm(num_groups=out_dim, num_channels=out_dim, affine=True)
        elif norm == "layer":
            # Normalises over channels per frame (local).
            self.layer_norm = nn.LayerNorm(out_dim, elementwise_affine=True)
        else:
            self.layer_norm = None
        self.activation = _ACTIVATIONS[activation]

    def forward(self, x: Tensor) -> Tensor:
        """(batch, in_dim, 1, samples_i) channels-last -> (batch, out_dim, 1, frames) channels-last."""
        weight = self.conv.weight.unsqueeze(2)  # (out_dim, in_dim, 1, kernel)
        x = F.conv2d(x, weight, self.conv.bias, stride=(1, self.stride))  # (batch, out_dim, 1, frames)
        if self.layer_norm is not None:
            if self.norm_kind == "layer":
                y = self.layer_norm(x.permute(0, 2, 3, 1))  # (batch, 1, frames, out_dim), contiguous
                x = y.permute(0, 3, 1, 2)  # (batch, out_dim, 1, frames) channels-last view
            else:
                x = self.layer_norm(x)  # (batch, out_dim, 1, frames)
        return self.activation(x)  # (batch, out_dim, 1, frames)


class _FeatureEncoder(nn.Module):
    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        layers = []
        in_dim = 1
        for index, (out_dim, kernel, stride) in enumerate(
            zip(config.conv_dim, config.conv_kernel, config.conv_stride, strict=True)
        ):
            if config.feat_extract_norm == "layer":
                norm: str | None = "layer"
            else:
                norm = "group" if index == 0 else None
            layers.append(
                _ConvLayer(
                    in_dim,
                    out_dim,
                    kernel,
                    stride,
                    bias=config.conv_bias,
                    norm=norm,
                    activation=config.feat_extract_activation,
                )
            )
            in_dim = out_dim
        self.conv_layers = nn.ModuleList(layers)

    def forward(self, waveforms: Tensor) -> Tensor:
        x = waveforms[:, None, None, :]  # (batch, 1, 1, samples)
        x = x.contiguous(memory_format=torch.channels_last)  # (batch, 1, 1, samples)
        for layer in self.conv_layers:
            x = layer(x)  # (batch, conv_dim_i, 1, frames_i) channels-last
        return x[:, :, 0, :].transpose(1, 2)  # (batch, frames, conv_dim), contiguous in memory


class _FeatureProjection(nn.Module):
    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)

    def forward(self, features: Tensor) -> Tensor:
        out: Tensor = self.projection(self.layer_norm(features))  # (batch, frames, hidden)
        return out


class _PositionalConv(nn.Module):
    """Grouped 'same' convolution over time, added to the input as a relative position signal."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        kernel = config.num_conv_pos_embeddings
        self.conv = nn.Conv1d(
            config.hidden_size,
            config.hidden_size,
            kernel_size=kernel,
            padding=kernel // 2,
            groups=config.num_conv_pos_embedding_groups,
        )
        self.activation = _ACTIVATIONS[config.feat_extract_activation]

    def forward(self, x: Tensor, context: int = 0) -> Tensor:
        """Position signal for ``x[:, context:]``; the first ``context`` frames
        (at most half the kernel) are real past frames standing in for padding."""
        pad = self.conv.kernel_size[0] // 2  # the "same" padding of a full forward
        if not 0 <= context <= pad:
            raise ValueError(f"positional context must be in 0..{pad} frames, got {context}")
        frames = x.shape[1] - context
        xt = F.pad(x.transpose(1, 2), (pad - context, pad))  # (batch, hidden, pad + frames + pad)
        y = F.conv1d(xt, self.conv.weight, self.conv.bias, groups=self.conv.groups)
        y = y[:, :, :frames]  # (batch, hidden, frames): an even kernel yields one extra frame
        return self.activation(y).transpose(1, 2)  # (batch, frames, hidden)


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def keys_values(self, x: Tensor) -> Tensor:
        """(batch, n, hidden) -> (batch, n, 2 * hidden): keys, then values, of these frames."""
        return torch.cat([self.k_proj(x), self.v_proj(x)], dim=-1)

    def forward(self, x: Tensor, keys_values: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Queries from ``x``; keys and values from ``keys_values`` (default: ``x``'s own);
        ``mask`` (batch, 1, 1, keys) bool: which keys each batch item may attend to."""
        batch, frames, hidden = x.shape
        head_dim = hidden // self.heads

        def split(t: Tensor) -> Tensor:
            # (batch, n, hidden) -> (batch, heads, n, head_dim)
            return t.reshape(batch, t.shape[1], self.heads, head_dim).transpose(1, 2)

        q = split(self.q_proj(x))  # (batch, heads, frames, head_dim)
        if keys_values is None:
            k, v = split(self.k_proj(x)), split(self.v_proj(x))  # (batch, heads, frames, head_dim)
        else:  # (batch, n, 2 * hidden) -> (batch, heads, n, head_dim) each
            k, v = split(keys_values[..., :hidden]), split(keys_values[..., hidden:])
        # Default scale 1/sqrt(head_dim) is the one wav2vec2 uses; a mask only hides padded memory.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (batch, heads, frames, head_dim)
        y = y.transpose(1, 2).reshape(batch, frames, hidden)  # (batch, frames, hidden)
        out: Tensor = self.out_proj(y)  # (batch, frames, hidden)
        return out


class _FeedForward(nn.Module):
    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.activation = _ACTIVATIONS[config.hidden_act]

    def forward(self, x: Tensor) -> Tensor:
        y = self.activation(self.intermediate_dense(x))  # (batch, frames, intermediate)
        out: Tensor = self.output_dense(y)  # (batch, frames, hidden)
        return out


class _EncoderLayer(nn.Module):
    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.pre_norm = config.do_stable_layer_norm
        self.attention = _SelfAttention(config.hidden_size, config.num_attention_heads)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = _FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        keys_values: list[Tensor] | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """``memory``: this layer's keys and values for earlier frames (batch, mem, 2 * hidden),
        attended to as well; ``keys_values``, when a list, gets those of ``x`` appended;
        ``mask``: (batch, 1, 1, mem + frames) bool, False for padded memory frames."""
        attn_in = self.layer_norm(x) if self.pre_norm else x  # pre-LN (large-lv60 / XLSR) normalises first
        if memory is None and keys_values is None:
            y = self.attention(attn_in)  # (batch, frames, hidden)
        else:
            kv = self.attention.keys_values(attn_in)  # (batch, frames, 2 * hidden)
            if keys_values is not None:
                keys_values.append(kv)
            y = self.attention(attn_in, kv if memory is None else torch.cat([memory, kv], dim=1), mask)
        out: Tensor
        if self.pre_norm:
            x = x + y  # (batch, frames, hidden)
            out = x + self.feed_forward(self.final_layer_norm(x))  # (batch, frames, hidden)
            return out
        # base models: normalise after each residual add
        x = self.layer_norm(x + y)  # (batch, frames, hidden)
        out = self.final_layer_norm(x + self.feed_forward(x))  # (batch, frames, hidden)
        return out


class _Encoder(nn.Module):
    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.pre_norm = config.do_stable_layer_norm
        self.pos_conv_embed = _PositionalConv(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(_EncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: Tensor) -> Tensor:
        return self._encode(x, 0, None, None)  # (batch, frames, hidden)

    def _encode(
        self,
        x: Tensor,
        pos_context: int,
        memory: Tensor | None,
        keys_values: list[Tensor] | None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """The encoder; appends each layer's keys and values to ``keys_values`` when it is a list."""
        x = x[:, pos_context:] + self.pos_conv_embed(x, pos_context)  # (batch, frames, hidden)
        if not self.pre_norm:
            x = self.layer_norm(x)  # (batch, frames, hidden)
        for i, layer in enumerate(self.layers):
            mem = None if memory is None or memory.shape[2] == 0 else memory[:, i]
            x = layer(x, mem, keys_values, None if mem is None else mask)  # (batch, frames, hidden)
        if self.pre_norm:
            x = self.layer_norm(x)  # (batch, frames, hidden)
        return x

    def forward_with_memory(
        self, x: Tensor, pos_context: int, memory: Tensor | None, memory_lengths: Sequence[int] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Encode ``x[:, pos_context:]``, attending also to earlier frames' cached keys and values.

        ``x``: (batch, pos_context + frames, hidden) projected features; the first
        ``pos_context`` frames only feed the positional convolution (so window
        frames see real past audio there instead of zero padding).
        ``memory``: (batch, layers, mem, 2 * hidden), each layer's keys and values
        for the ``mem`` frames just before ``x[:, pos_context:]``, or None.  Caching
        keys and values (not the layer inputs) means a window projects only its own
        frames: the past costs attention, not projections.
        ``memory_lengths``: per batch item, how many of the last ``mem`` memory frames
        are its own; the frames before them are padding that no query attends to
        (streams of different ages share a forward).  None: all ``mem`` are.
        Returns the hidden states (batch, frames, hidden) and this call's keys and
        values (batch, layers, frames, 2 * hidden), the next call's memory.
        """
        keys_values: list[Tensor] = []
        mask = None
        if memory is not None and memory_lengths is not None:
            mem, frames = memory.shape[2], x.shape[1] - pos_context
            lengths = torch.tensor(list(memory_lengths), device=x.device)  # (batch,)
            keys = torch.arange(mem + frames, device=x.device)  # (mem + frames,)
            mask = (keys[None, :] >= mem - lengths[:, None])[:, None, None, :]  # (batch, 1, 1, mem + frames)
        x = self._encode(x, pos_context, memory, keys_values, mask)  # (batch, frames, hidden)
        if not keys_values:
            return x, x.new_zeros((x.shape[0], 0, x.shape[1], 2 * x.shape[2]))
        return x, torch.stack(keys_values, dim=1)  # (batch, frames, hidden), (batch, layers, frames, 2 * hidden)


class Wav2Vec2CTC(nn.Module):
    """Wav2Vec2ForCTC inference: waveforms in, CTC logits out.

    ``state_dict()`` keys are the Hugging Face ones without the ``wav2vec2.``
    prefix, with the positional conv weight already folded (see
    :func:`build_model` to load a checkpoint, :func:`export_hf_state_dict` to
    write one).
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.config = config
        self.feature_extractor = _FeatureEncoder(config)
        self.feature_projection = _FeatureProjection(config)
        self.encoder = _Encoder(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)

    def conv_features(self, waveforms: Tensor) -> Tensor:
        """(batch, samples) -> (batch, frames, conv_dim[-1]); needs samples >= receptive field."""
        out: Tensor = self.feature_extractor(waveforms)  # (batch, frames, conv_dim)
        return out

    def logits_from_features(self, features: Tensor) -> Tensor:
        """(batch, frames, conv_dim[-1]) conv features -> (batch, frames, vocab) CTC logits."""
        x = self.feature_projection(features)  # (batch, frames, hidden)
        x = self.encoder(x)  # (batch, frames, hidden)
        out: Tensor = self.lm_head(x)  # (batch, frames, vocab)
        return out

    def logits_with_memory(
        self, features: Tensor, pos_context: int, memory: Tensor | None, memory_lengths: Sequence[int] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Conv features (batch, pos_context + frames, conv_dim) -> CTC logits for the
        last ``frames`` and their layers' keys and values; see :meth:`_Encoder.forward_with_memory`."""
        x = self.feature_projection(features)  # (batch, pos_context + frames, hidden)
        x, keys_values = self.encoder.forward_with_memory(x, pos_context, memory, memory_lengths)
        return self.lm_head(x), keys_values  # (batch, frames, vocab), (batch, layers, frames, 2 * hidden)

    def forward(self, waveforms: Tensor) -> Tensor:
        """(batch, samples) -> (batch, frames, vocab) CTC logits (not normalised)."""
        return self.logits_from_features(self.conv_features(waveforms))  # (batch, frames, vocab)


# --------------------------------------------------------------------------- #
# Hugging Face state dicts
# --------------------------------------------------------------------------- #


def _fold_weight_norm(g: Tensor, v: Tensor) -> Tensor:
    """``weight = g * v / ||v||`` with the norm over every dim but 2 (the kernel axis)."""
    g32, v32 = g.float(), v.float()  # g (1, 1, kernel), v (hidden, hidden/groups, kernel)
    norm = v32.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()  # (1, 1, kernel)
    return v32 * (g32 / norm)  # (hidden, hidden/groups, kernel)


def _convert(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """HF keys -> our keys, folding weight norm; returns (tensors, our key -> checkpoint key)."""
    tensors: dict[str, Tensor] = {}
    source: dict[str, str] = {}
    g_name = v_name = None
    for key, value in state_dict.items():
        name = key[len("wav2vec2.") :] if key.startswith("wav2vec2.") else key
        if name.startswith(_IGNORED_PREFIXES):
            continue
        if name in (_POS_CONV + "weight_g", _POS_CONV + "parametrizations.weight.original0"):
            g_name = key
            continue
        if name in (_POS_CONV + "weight_v", _POS_CONV + "parametrizations.weight.original1"):
            v_name = key
            continue
        tensors[name] = value
        source[name] = key
    weight = _POS_CONV + "weight"
    if g_name is not None and v_name is not None and weight not in tensors:
        g, v = state_dict[g_name], state_dict[v_name]
        if g.dim() != 3 or v.dim() != 3 or g.shape[2] != v.shape[2]:
            raise ModelLoadError(
                f"weight-norm tensors {g_name} {tuple(g.shape)} and {v_name} {tuple(v.shape)} "
                "do not fit together; "
                "expected g of shape (1, 1, kernel) and v of shape (hidden, hidden/groups, kernel)"
            )
        tensors[weight] = _fold_weight_norm(g, v)
        source[weight] = v_name
    elif (g_name is None) != (v_name is None):
        present = g_name or v_name
        raise ModelLoadError(
            f"checkpoint has {present} but not its weight-norm partner (g and v come in pairs)"
        )
    return tensors, source


def _list(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def build_model(config: Wav2Vec2Config, state_dict: Mapping[str, Tensor]) -> Wav2Vec2CTC:
    """Build a :class:`Wav2Vec2CTC` in eval mode from a Hugging Face ``Wav2Vec2ForCTC`` state dict.

    The module is created on the meta device and the checkpoint tensors are
    assigned (as float32), so a 300M-parameter model costs neither a random
    initialisation nor a second copy of its weights.

    Raises:
        ModelLoadError: a tensor is missing, has a shape other than ``config``
            implies, or is not accounted for by ``config`` (e.g. more layers
            than ``num_hidden_layers``); the message names the tensor.
    """
    tensors, source = _convert(state_dict)
    prefix = "wav2vec2." if any(key.startswith("wav2vec2.") for key in state_dict) else ""

    def shown(name: str) -> str:
        return source.get(name, name if name.startswith("lm_head.") else prefix + name)

    with torch.device("meta"):
        model = Wav2Vec2CTC(config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}

    missing = sorted(name for name in expected if name not in tensors)
    if missing:
        raise ModelLoadError(
            f"checkpoint lacks {len(missing)} tensor(s) that config.json implies: "
            f"{_list([shown(n) for n in missing])}"
        )
    unexpected = sorted(name for name in tensors if name not in expected)
    if unexpected:
        raise ModelLoadError(
            f"checkpoint has {len(unexpected)} tensor(s) that config.json does not account for "
            f"(num_hidden_layers={config.num_hidden_layers}, feat_extract_norm={config.feat_extract_norm!r}, "
            f"conv_bias={config.conv_bias}): {_list([shown(n) for n in unexpected])}"
        )
    for name, shape in expected.items():
        got = tuple(tensors[name].shape)
        if got != shape:
            raise ModelLoadError(
                f"tensor {shown(name)} has shape {got} in the checkpoint, but config.json implies {shape}"
            )
    ready = {name: tensors[name].to(torch.float32).contiguous() for name in expected}
    model.load_state_dict(ready, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def export_hf_state_dict(model: Wav2Vec2CTC) -> dict[str, Tensor]:
    """The model's weights under Hugging Face ``Wav2Vec2ForCTC`` key names.

    The positional conv weight is split back into weight-norm ``original0``
    (g, the per-kernel-tap norm) and ``original1`` (v), so ``transformers``
    loads the result too.  Used by benchmarks and recipes that build a model
    without ``transformers``.
    """
    out: dict[str, Tensor] = {}
    for name, tensor in model.state_dict().items():
        if name == _POS_CONV + "weight":
            g = tensor.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()  # (1, 1, kernel)
            out["wav2vec2." + _POS_CONV + "parametrizations.weight.original0"] = g.clone()
            out["wav2vec2." + _POS_CONV + "parametrizations.weight.original1"] = tensor.clone()
        elif name.startswith("lm_head."):
            out[name] = tensor.clone()
        else:
            out["wav2vec2." + name] = tensor.clone()
    return out
