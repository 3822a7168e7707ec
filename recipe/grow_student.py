"""Deepen a student without changing what it computes: each transformer layer gets an identity twin.

Why: the 5.7M-parameter student is far from its Whisper teacher (greedy LibriVox WER 90% vs 39%),
and students up to ~20-28M parameters still hold 16 real-time streams with the LM on two cores
(``benchmarks/bench_student_sizes.py``, recipe/README.md).  Distilling a bigger student from
random weights would throw away hours of CPU; instead every layer ``i`` of the trained model is
followed by a copy of itself whose attention output projection and feed-forward output layer
are zero.  The encoder is pre-LN (``do_stable_layer_norm``): a layer adds ``attention(LN(x))``
and ``ffn(LN(x))`` to its input, so a layer whose two output projections are zero passes its
input through unchanged, and the grown model's logits equal the original's (checked here and
in tests/test_recipe_grow_student.py).  Training then moves the twins away from identity: the
zero output weights get gradients at once (their inputs are the copied layer's activations),
and the rest follows.

    .venv/bin/python recipe/grow_student.py models/en-small $XLSR_RECIPE_DIR/students/en-small-x2
    recipe/run_all.sh --distill --init $XLSR_RECIPE_DIR/students/en-small-x2 ...
"""

from __future__ import annotations

import argparse
import copy
import shutil
from pathlib import Path
from typing import Any

import torch

# Files beside the weights that the engine and distill.py read from a model folder.
SIDE_FILES = ("vocab.json", "tokenizer_config.json", "preprocessor_config.json", "alphabet.json",
              "special_tokens_map.json")


def deepen(model: Any) -> Any:  # transformers.Wav2Vec2ForCTC in and out
    """A copy of a pre-LN ``Wav2Vec2ForCTC`` with an identity twin after every encoder layer."""
    config = model.config
    if not getattr(config, "do_stable_layer_norm", False):
        raise ValueError("only pre-LN (do_stable_layer_norm=True) encoders can grow this way: a post-LN "
                         "layer normalises its output, so a zeroed twin is not the identity")
    grown = copy.deepcopy(model)
    layers = torch.nn.ModuleList()
    for layer in model.wav2vec2.encoder.layers:
        twin = copy.deepcopy(layer)
        with torch.no_grad():
            for linear in (twin.attention.out_proj, twin.feed_forward.output_dense):
                linear.weight.zero_()
                linear.bias.zero_()
        layers.extend([copy.deepcopy(layer), twin])
    grown.wav2vec2.encoder.layers = layers
    grown.config.num_hidden_layers = len(layers)
    return grown


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="Wav2Vec2ForCTC folder (e.g. models/en-small)")
    ap.add_argument("dest", type=Path, help="where the grown model goes (a new folder)")
    args = ap.parse_args(argv)
    from transformers import Wav2Vec2ForCTC

    model: Any = Wav2Vec2ForCTC.from_pretrained(args.src).eval()
    grown = deepen(model)
    grown.save_pretrained(args.dest)
    for name in SIDE_FILES:
        if (args.src / name).exists():
            shutil.copy(args.src / name, args.dest / name)
    if (args.src / "language_model").is_dir():
        shutil.copytree(args.src / "language_model", args.dest / "language_model", dirs_exist_ok=True)
    with torch.no_grad():
        wave = torch.randn(1, 16000)
        diff = (grown(wave).logits - model(wave).logits).abs().max().item()
    params = sum(p.numel() for p in grown.parameters())
    print(f"{args.dest}: {grown.config.num_hidden_layers} layers, {params / 1e6:.2f}M parameters; "
          f"max |logit difference| to {args.src} on 1 s of noise: {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
