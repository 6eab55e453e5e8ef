"""The course's canonical components, generated from the solution notebooks by `make exercises`."""

from c1p1.parts.p01_layernorm import LayerNorm

__all__ = ['LayerNorm']
