"""Windows of many streams through the acoustic model, batching equal shapes.

The stage between the window scheduler and stitching: :class:`WindowRequest`
in, :class:`WindowOutput` out, one per request in order.  Requests of equal
length (samples, or frames of conv features) share one forward.  Blocking and
not thread-safe: the engine holds a lock around it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .acoustic_model import AcousticModel
from .arrays import FloatArray
from .plan import StreamPlan
from .stitching import WindowOutput, WindowRequest

__all__ = ["run_windows"]


def run_windows(model: AcousticModel, plan: StreamPlan, requests: Sequence[WindowRequest]) -> list[WindowOutput]:
    """One output per request, in order: whole windows, or new samples over cached features."""
    outputs: list[WindowOutput | None] = [None] * len(requests)
    if not plan.reuse_features:
        for idx, batch in _group_by_arrays([r.samples for r in requests]):
            log_probs = model.log_probs(batch)  # (batch, frames, vocab)
            for i, lp in zip(idx, log_probs):
                outputs[i] = WindowOutput(lp)
        return [o for o in outputs if o is not None]
    new_features: list[FloatArray | None] = [None] * len(requests)
    with_audio = [(i, r) for i, r in enumerate(requests) if r.num_new_frames > 0]
    for idx, batch in _group_by_arrays([r.samples for _, r in with_audio]):
        feats = model.conv_features(batch)  # (batch, new frames, conv_dim)
        for j, f in zip(idx, feats):
            new_features[with_audio[j][0]] = f
    full: list[FloatArray] = []
    for req, new in zip(requests, new_features):
        parts = [p for p in (req.cached_features, new) if p is not None and p.shape[0]]
        full.append(np.concatenate(parts, axis=0))  # (pos_context + window frames, conv_dim)
    if plan.memory:
        _run_with_memory(model, requests, full, new_features, outputs)
        return [o for o in outputs if o is not None]
    for idx, batch in _group_by_arrays(full):
        log_probs = model.log_probs_from_features(batch)  # (batch, frames, vocab)
        for i, lp in zip(idx, log_probs):
            outputs[i] = WindowOutput(lp, new_features[i])
    return [o for o in outputs if o is not None]


def _run_with_memory(
    model: AcousticModel,
    requests: Sequence[WindowRequest],
    features: list[FloatArray],
    new_features: list[FloatArray | None],
    outputs: list[WindowOutput | None],
) -> None:
    """Windows with attention memory; one forward per window length.

    Streams of different ages hold memories of different lengths (for their first
    ``left_context_s``): a group pads the shorter ones in front and masks the padding,
    so every stream's windows of one length share a forward."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (req, feats) in enumerate(zip(requests, features)):
        groups.setdefault((feats.shape[0], req.pos_context), []).append(i)
    for (_, pos_context), idx in groups.items():
        batch = np.stack([features[i] for i in idx])  # (batch, pos_context + frames, conv_dim)
        memories = [requests[i].memory for i in idx]
        lengths = [0 if m is None else m.shape[1] for m in memories]
        longest = max(lengths)
        memory: FloatArray | None = None
        padded: list[int] | None = None
        if longest and len(idx) == 1:
            memory = memories[0][None]  # type: ignore[index]
        elif longest:
            present = next(m for m in memories if m is not None)
            memory = np.zeros((len(idx), present.shape[0], longest, present.shape[2]), dtype=np.float32)
            for j, m in enumerate(memories):
                if m is not None and m.shape[1]:
                    memory[j, :, longest - m.shape[1] :] = m  # (layers, frames, 2 * hidden), right-aligned
            padded = None if min(lengths) == longest else lengths
        log_probs, keys_values = model.log_probs_with_memory(batch, pos_context, memory, padded)
        for j, i in enumerate(idx):
            outputs[i] = WindowOutput(log_probs[j], new_features[i], keys_values[j])


def _group_by_arrays(arrays: Sequence[FloatArray]) -> list[tuple[list[int], FloatArray]]:
    """Stack arrays of equal first dimension into batches: [(indices, (batch, n, ...))].

    Windows of one length (samples, or frames of conv features) share a forward."""
    groups: dict[int, list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault(a.shape[0], []).append(i)
    return [(idx, np.stack([arrays[i] for i in idx])) for idx in groups.values()]
