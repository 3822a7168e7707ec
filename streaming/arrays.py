"""The array types in the engine's signatures (numpy's ``NDArray`` with its dtype).

Samples, conv features, log-probs and attention memory are float32 everywhere
inside the engine; what callers hand in (int16 or float64 audio, any float
log-probs) is :data:`AnyArray` until it has been checked and converted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["AnyArray", "BoolArray", "FloatArray"]

FloatArray = NDArray[np.float32]  # samples, features, log-probs, keys and values
BoolArray = NDArray[np.bool_]  # per-frame flags (silent or not)
AnyArray = NDArray[Any]  # caller input, validated on entry
