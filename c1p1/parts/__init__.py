"""The course's canonical components, generated from the solution notebooks by `make exercises`."""

from c1p1.parts.p01_layernorm import LayerNorm
from c1p1.parts.p02_embed import Embed
from c1p1.parts.p03_pos_embed import PosEmbed
from c1p1.parts.p04_causal_mask import MaskedAttention
from c1p1.parts.p05_attention import Attention
from c1p1.parts.p06_mlp import MLP, gelu_new
from c1p1.parts.p07_transformer_block import TransformerBlock
from c1p1.parts.p08_unembed import Unembed
from c1p1.parts.p09_full_model import DemoTransformer, get_log_probs
from c1p1.parts.p10_multihead_attention import MultiHeadAttention, linear_to_per_head, per_head_to_linear
from c1p1.parts.p12_sampling import apply_frequency_penalty, apply_temperature, generate, sample_next_token, top_k_logits, top_p_logits
from c1p1.parts.p13_kv_cache import CachedAttention, CachedBlock, CachedPosEmbed, CachedTransformer, KVCache, LayerCache, generate_with_cache

__all__ = ['Attention', 'CachedAttention', 'CachedBlock', 'CachedPosEmbed', 'CachedTransformer', 'DemoTransformer', 'Embed', 'KVCache', 'LayerCache', 'LayerNorm', 'MLP', 'MaskedAttention', 'MultiHeadAttention', 'PosEmbed', 'TransformerBlock', 'Unembed', 'apply_frequency_penalty', 'apply_temperature', 'gelu_new', 'generate', 'generate_with_cache', 'get_log_probs', 'linear_to_per_head', 'per_head_to_linear', 'sample_next_token', 'top_k_logits', 'top_p_logits']
