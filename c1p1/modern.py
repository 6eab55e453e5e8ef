"""Notebook 16's modern model: its sizes, and Hugging Face's Llama built from them with random weights.

- `ModernConfig`: the sizes of a small Llama-style model, under the course's (TransformerLens's) names.
- `llama_config(cfg)`: the same sizes as a `transformers.LlamaConfig` (untied embeddings, no biases, eager attention).
- `random_llama(cfg, seed, device)`: a `LlamaForCausalLM` with seeded random weights (RMSNorm weights
  around 1, not all ones, so a forgotten weight shows), built offline.
- `LLAMA_NAMES` and `params_from_llama(model)`: the stated name map from Hugging Face's parameter names
  to the course's, with every reshape it needs; strict (every Hugging Face tensor used exactly once).
- `causal_mask_for_hf(posn, device)`: the additive mask Hugging Face's eager attention takes.

The checks of notebook 16 (`c1p1.checks.modern`) and the notebook itself import these, so the map is
written once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import einops
import torch
from torch import Tensor, nn


@dataclass
class ModernConfig:
    """A small Llama-style model. The defaults are the course's checking model (hidden 64, 8 + 2 heads, vocabulary 77)."""

    d_model: int = 64  # width of the residual stream
    d_vocab: int = 77  # the Shakespeare corpus's characters
    n_ctx: int = 128  # the context it is trained on (RoPE itself has no table to run out of)
    d_head: int = 8  # width of one attention head
    d_mlp: int = 176  # hidden width of the SwiGLU MLP: about 8/3 * d_model, rounded up to a multiple of 16
    n_heads: int = 8  # query heads per layer
    n_kv_heads: int = 2  # key-value heads per layer, each shared by n_heads // n_kv_heads query heads
    n_layers: int = 2  # transformer blocks
    rope_theta: float = 10000.0  # the base of RoPE's frequencies
    rms_norm_eps: float = 1e-6  # added to the mean square inside the root
    init_range: float = 0.02  # standard deviation of the initial weights


def llama_config(cfg: ModernConfig):
    """The same model as Hugging Face's `LlamaConfig`."""
    from transformers import LlamaConfig

    config = LlamaConfig(
        vocab_size=cfg.d_vocab,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.d_head,
        max_position_embeddings=cfg.n_ctx,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=False,
        hidden_act="silu",
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    config._attn_implementation = "eager"
    return config


def randomise_(module: nn.Module, seed: int) -> nn.Module:
    """Seeded random values for every parameter: weight matrices std 1/sqrt(fan-in), norm weights 1 + 0.3 noise."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)  # p.shape
            if p.dim() == 1:  # an RMSNorm weight
                value = 1.0 + 0.3 * noise
            elif "embed_tokens" in name:
                value = noise  # embeddings of unit scale per feature, like a normalised stream
            else:
                value = noise / math.sqrt(p.shape[1])  # nn.Linear stores (out, in): unit-scale outputs
            p.copy_(value.to(p.device))
    return module


def random_llama(cfg: ModernConfig, seed: int, device: torch.device | str | None = None):
    """A `LlamaForCausalLM` of these sizes with seeded random weights, in eval mode, on ``device``."""
    from transformers import LlamaForCausalLM
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        model = LlamaForCausalLM(llama_config(cfg))
    finally:
        logging.set_verbosity(verbosity)
    randomise_(model, seed)
    if device is None:
        from c1p1.reference import pick_device

        device = pick_device()
    return model.to(device).eval()


# Hugging Face's name (with {i} for the layer) -> the course's name, and how the tensor is reshaped.
# nn.Linear stores its weight as (out_features, in_features); the course multiplies `x @ W`, so (in, out).
LLAMA_NAMES: dict[str, tuple[str, str]] = {
    "model.embed_tokens.weight": ("embed.W_E", "(d_vocab, d_model), as it is"),
    "model.layers.{i}.input_layernorm.weight": ("blocks.{i}.ln1.w", "(d_model,)"),
    "model.layers.{i}.self_attn.q_proj.weight": ("blocks.{i}.attn.W_Q", "(n_heads*d_head, d_model) -> (n_heads, d_model, d_head)"),
    "model.layers.{i}.self_attn.k_proj.weight": ("blocks.{i}.attn.W_K", "(n_kv_heads*d_head, d_model) -> (n_kv_heads, d_model, d_head)"),
    "model.layers.{i}.self_attn.v_proj.weight": ("blocks.{i}.attn.W_V", "(n_kv_heads*d_head, d_model) -> (n_kv_heads, d_model, d_head)"),
    "model.layers.{i}.self_attn.o_proj.weight": ("blocks.{i}.attn.W_O", "(d_model, n_heads*d_head) -> (n_heads, d_head, d_model)"),
    "model.layers.{i}.post_attention_layernorm.weight": ("blocks.{i}.ln2.w", "(d_model,)"),
    "model.layers.{i}.mlp.gate_proj.weight": ("blocks.{i}.mlp.W_gate", "(d_mlp, d_model) -> transposed (d_model, d_mlp)"),
    "model.layers.{i}.mlp.up_proj.weight": ("blocks.{i}.mlp.W_in", "(d_mlp, d_model) -> transposed (d_model, d_mlp)"),
    "model.layers.{i}.mlp.down_proj.weight": ("blocks.{i}.mlp.W_out", "(d_model, d_mlp) -> transposed (d_mlp, d_model)"),
    "model.norm.weight": ("ln_final.w", "(d_model,)"),
    "lm_head.weight": ("unembed.W_U", "(d_vocab, d_model) -> transposed (d_model, d_vocab)"),
}


def _convert(leaf: str, value: Tensor, d_head: int) -> Tensor:
    """One Hugging Face tensor in the course's layout, by the last part of its name."""
    if leaf in ("q_proj", "k_proj", "v_proj"):
        return einops.rearrange(value, "(n h) m -> n m h", h=d_head).contiguous()  # (heads, d_model, d_head)
    if leaf == "o_proj":
        return einops.rearrange(value, "m (n h) -> n h m", h=d_head).contiguous()  # (n_heads, d_head, d_model)
    if leaf in ("gate_proj", "up_proj", "down_proj", "lm_head"):
        return value.T.contiguous()  # (in, out)
    return value.clone()


def params_from_llama(model: nn.Module) -> dict[str, Tensor]:
    """The course's parameters from a `LlamaForCausalLM`, renamed by `LLAMA_NAMES` and reshaped.

    Every tensor of the Hugging Face state dict must have a place: a name the map does not know
    raises, so nothing is silently left behind (load the result with ``strict=True``).
    """
    d_head = model.config.head_dim
    patterns = {hf.replace(".", r"\.").replace("{i}", r"(?P<i>\d+)"): ours for hf, (ours, _) in LLAMA_NAMES.items()}
    out: dict[str, Tensor] = {}
    for name, value in model.state_dict().items():
        for pattern, ours in patterns.items():
            found = re.fullmatch(pattern, name)
            if found is not None:
                layer = found.groupdict().get("i")
                out[ours.replace("{i}", layer) if layer is not None else ours] = _convert(name.split(".")[-2], value, d_head)
                break
        else:
            raise KeyError(f"{name}: not in LLAMA_NAMES, so the course's model has no place for it")
    return out


def sub_params(params: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The parameters under ``prefix`` (e.g. ``"blocks.0.attn."``), with the prefix taken off their names."""
    return {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}


def causal_mask_for_hf(posn: int, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """The additive causal mask (0 where allowed, the dtype's lowest value above the diagonal) that eager attention takes."""
    allowed = torch.ones(posn, posn, dtype=torch.bool, device=device).tril()  # (query_pos, key_pos)
    mask = torch.zeros(posn, posn, dtype=dtype, device=device)  # (query_pos, key_pos)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[None, None]  # (1, 1, query_pos, key_pos)
