"""What the checks feed the learner's code: the reference's own activations, and seeded random values.

Every tensor here is made on the CPU by a seeded generator (the same numbers on every machine) and
then moved to the reference's device, where every expected output is computed too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from c1p1.config import Config
from c1p1.reference import Reference, load_reference

# The randomised cases' geometry: it catches sizes hard-coded to GPT-2 small's and runs fast.
SMALL = Config(d_model=96, d_vocab=503, n_ctx=64, d_head=24, d_mlp=384, n_heads=4, n_layers=3)

# The reference's two runs every check compares on: (which activations, how a message names them).
REFERENCE_RUNS = (("sentence", "the reference sentence"), ("batch", "a batch of two prompts"))


def reference() -> Reference:
    """The kernel's reference, loaded quietly if the notebook has not loaded it yet."""
    return load_reference(verbose=False)


def weights_label(ref: Reference) -> str:
    return "GPT-2's weights" if ref.is_real else "the stand-in's weights"


def random_params(shapes: dict[str, tuple[int, ...]], seed: int, device: torch.device) -> dict[str, Tensor]:
    """Seeded random values for parameters named the TransformerLens way.

    Matrices get unit-scale outputs (std 1/sqrt(fan-in)); biases are drawn around 0 and LayerNorm
    weights ``w`` around 1, so a dropped bias or an ignored affine always changes the output.
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(shapes):
        shape = shapes[name]
        noise = torch.randn(shape, generator=gen)  # shape
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "w":
            value = 1.0 + 0.3 * noise
        elif leaf == "b" or leaf.startswith("b_"):
            value = 0.3 * noise
        else:
            fan_in = shape[-2] if len(shape) >= 2 else 1
            value = noise / math.sqrt(fan_in)
        out[name] = value.to(device)
    return out


def random_tokens(shape: tuple[int, int], d_vocab: int, seed: int, device: torch.device) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, d_vocab, shape, generator=gen).to(device)  # (batch, posn)


def random_input(shape: tuple[int, ...], seed: int, device: torch.device, scale: float = 1.0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=gen)).to(device)  # shape
