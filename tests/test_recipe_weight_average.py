"""The recipe's weight averaging: what train.py evaluates and export.py ships."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "recipe"))
from train import WeightAverage  # noqa: E402


def test_average_follows_the_weights_with_the_given_decay_and_resumes() -> None:
    model = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ema = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.add_(1.0)  # in place, as an optimiser step is
    ema.update(model)
    torch.testing.assert_close(ema.avg["weight"], start["weight"] + 0.1)
    torch.testing.assert_close(ema.avg["bias"], start["bias"])

    twin = ema.averaged_copy(model)
    torch.testing.assert_close(twin.weight, start["weight"] + 0.1)
    torch.testing.assert_close(model.weight, start["weight"] + 1.0)  # the training model is untouched

    resumed = WeightAverage(model, decay=0.9, saved=ema.avg)  # from a checkpoint: keeps the average
    torch.testing.assert_close(resumed.avg["weight"], start["weight"] + 0.1)
    other = WeightAverage(torch.nn.Linear(4, 2), decay=0.9, saved=ema.avg)  # a changed model starts afresh
    assert other.avg["weight"].shape == (2, 4)
