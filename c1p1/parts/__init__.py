"""The course's canonical components, generated from the solution notebooks by `make exercises`."""

from c1p1.parts.p01_layernorm import LayerNorm
from c1p1.parts.p02_embed import Embed
from c1p1.parts.p03_pos_embed import PosEmbed
from c1p1.parts.p04_causal_mask import MaskedAttention
from c1p1.parts.p05_attention import Attention, top_token_pairs
from c1p1.parts.p06_mlp import MLP, gelu_new, neuron_logit_effect
from c1p1.parts.p07_transformer_block import TransformerBlock
from c1p1.parts.p08_unembed import Unembed, direct_logit_attribution, logit_lens
from c1p1.parts.p09_full_model import DemoTransformer, get_log_probs
from c1p1.parts.p10_multihead_attention import MultiHeadAttention, linear_to_per_head, per_head_to_linear
from c1p1.parts.p11_training import configure_optimizer, estimate_loss, get_batch, init_weights, lr_at, train_step
from c1p1.parts.p12_sampling import apply_frequency_penalty, apply_temperature, beam_search, generate, sample_next_token, top_k_logits, top_p_logits
from c1p1.parts.p13_kv_cache import CachedAttention, CachedBlock, CachedPosEmbed, CachedTransformer, KVCache, LayerCache, generate_with_cache
from c1p1.parts.p14_induction_heads import AttnOnlyBlock, AttnOnlyTransformer, ablate_head, composition_score, full_ov_circuit, full_qk_circuit, induction_qk_circuit, induction_score, loss_by_half, periodic_tokens, prev_token_score, repeated_tokens, train_induction
from c1p1.parts.p15_tokenizer import BPETokenizer, bytes_to_unicode, count_pairs, load_gpt2_bpe, merge_pair, pretokenize, train_bpe
from c1p1.parts.p16_modern_llm import GroupedQueryAttention, ModernBlock, ModernTransformer, ModernUnembed, RMSNorm, SwiGLU, apply_rope, rope_angles

__all__ = ['Attention', 'AttnOnlyBlock', 'AttnOnlyTransformer', 'BPETokenizer', 'CachedAttention', 'CachedBlock', 'CachedPosEmbed', 'CachedTransformer', 'DemoTransformer', 'Embed', 'GroupedQueryAttention', 'KVCache', 'LayerCache', 'LayerNorm', 'MLP', 'MaskedAttention', 'ModernBlock', 'ModernTransformer', 'ModernUnembed', 'MultiHeadAttention', 'PosEmbed', 'RMSNorm', 'SwiGLU', 'TransformerBlock', 'Unembed', 'ablate_head', 'apply_frequency_penalty', 'apply_rope', 'apply_temperature', 'beam_search', 'bytes_to_unicode', 'composition_score', 'configure_optimizer', 'count_pairs', 'direct_logit_attribution', 'estimate_loss', 'full_ov_circuit', 'full_qk_circuit', 'gelu_new', 'generate', 'generate_with_cache', 'get_batch', 'get_log_probs', 'induction_qk_circuit', 'induction_score', 'init_weights', 'linear_to_per_head', 'load_gpt2_bpe', 'logit_lens', 'loss_by_half', 'lr_at', 'merge_pair', 'neuron_logit_effect', 'per_head_to_linear', 'periodic_tokens', 'pretokenize', 'prev_token_score', 'repeated_tokens', 'rope_angles', 'sample_next_token', 'top_k_logits', 'top_p_logits', 'top_token_pairs', 'train_bpe', 'train_induction', 'train_step']
