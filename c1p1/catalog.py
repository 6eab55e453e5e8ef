"""Every check of the course in one table: which notebook it belongs to, what the learner passes, and the answer.

This is the course's one registry of checks. ``CHECKS["test_attention"]`` is a `CheckInfo` saying
that the check is called in ``05_attention.ipynb``, that the learner passes ``Attention``, how to get
the canonical object from ``c1p1.parts`` (generated from the solution notebooks), and (``.check``)
the check function itself, defined in one of the modules of ``c1p1/checks/``. The learner's facade
``C1P1_tests`` is built from this table; the grader uses it to know which check cells each notebook
should have, the benchmark times every check on its canonical object, and ``tests/test_every_check.py``
checks that every check passes the canonical object and refuses the stub.

To add a check: define ``test_xxx`` in a module of ``c1p1/checks/`` and add one row to ``_TABLE``:
``(check name, notebook stem, what the learner passes, the canonical object's path in c1p1.parts)``.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass


class PartMissing(LookupError):
    """A canonical component is not in c1p1.parts yet (its notebook has not been written or built)."""


@dataclass(frozen=True)
class CheckInfo:
    name: str  # the check, e.g. "test_attention"
    notebook: str  # the notebook that teaches it, e.g. "05_attention.ipynb"
    thing: str  # what the learner passes, e.g. "Attention" or "Attention.apply_causal_mask"
    canonical: Callable[[], object]  # returns the course's own answer, from c1p1.parts

    @property
    def stem(self) -> str:
        return self.notebook.removesuffix(".ipynb")

    @property
    def short(self) -> str:
        """The check's name without ``test_``, for table headers."""
        return self.name.removeprefix("test_")

    @property
    def optional(self) -> bool:
        """Whether the notebook marks the exercise optional (``OPTIONAL``): the grader counts it apart."""
        return self.name in OPTIONAL

    @property
    def check(self) -> Callable[[object], None]:
        """The check function (raises AttributeError while no module in c1p1/checks/ defines it)."""
        return check_function(self.name)


def part(path: str) -> Callable[[], object]:
    """A loader for ``c1p1.parts.<path>``, where path may be dotted (``MaskedAttention.apply_causal_mask``)."""

    def load() -> object:
        try:
            obj: object = importlib.import_module("c1p1.parts")
        except ImportError as exc:
            raise PartMissing(f"c1p1.parts cannot be imported: {exc}") from exc
        for attr in path.split("."):
            if not hasattr(obj, attr):
                raise PartMissing(
                    f"c1p1.parts has no {path}: run `make exercises` after writing its solution notebook."
                )
            obj = getattr(obj, attr)
        return obj

    return load


_TABLE = (
    ("test_layer_norm", "01_layernorm", "LayerNorm", "LayerNorm"),
    ("test_embed", "02_embed", "Embed", "Embed"),
    ("test_pos_embed", "03_pos_embed", "PosEmbed", "PosEmbed"),
    ("test_causal_mask", "04_causal_mask", "Attention.apply_causal_mask", "MaskedAttention.apply_causal_mask"),
    ("test_attention", "05_attention", "Attention", "Attention"),
    ("test_top_token_pairs", "05_attention", "top_token_pairs", "top_token_pairs"),
    ("test_mlp", "06_mlp", "MLP", "MLP"),
    ("test_neuron_logit_effect", "06_mlp", "neuron_logit_effect", "neuron_logit_effect"),
    ("test_transformer_block", "07_transformer_block", "TransformerBlock", "TransformerBlock"),
    ("test_unembed", "08_unembed", "Unembed", "Unembed"),
    ("test_logit_lens", "08_unembed", "logit_lens", "logit_lens"),
    ("test_direct_logit_attribution", "08_unembed", "direct_logit_attribution", "direct_logit_attribution"),
    ("test_demo_transformer", "09_full_model", "DemoTransformer", "DemoTransformer"),
    ("test_get_log_probs", "09_full_model", "get_log_probs", "get_log_probs"),
    ("test_multihead_attention", "10_multihead_attention", "MultiHeadAttention", "MultiHeadAttention"),
    ("test_per_head_to_linear", "10_multihead_attention", "per_head_to_linear", "per_head_to_linear"),
    ("test_linear_to_per_head", "10_multihead_attention", "linear_to_per_head", "linear_to_per_head"),
    ("test_get_batch", "11_training", "get_batch", "get_batch"),
    ("test_init_weights", "11_training", "init_weights", "init_weights"),
    ("test_configure_optimizer", "11_training", "configure_optimizer", "configure_optimizer"),
    ("test_lr_at", "11_training", "lr_at", "lr_at"),
    ("test_train_step", "11_training", "train_step", "train_step"),
    ("test_estimate_loss", "11_training", "estimate_loss", "estimate_loss"),
    ("test_apply_temperature", "12_sampling", "apply_temperature", "apply_temperature"),
    ("test_apply_frequency_penalty", "12_sampling", "apply_frequency_penalty", "apply_frequency_penalty"),
    ("test_top_k_logits", "12_sampling", "top_k_logits", "top_k_logits"),
    ("test_top_p_logits", "12_sampling", "top_p_logits", "top_p_logits"),
    ("test_sample_next_token", "12_sampling", "sample_next_token", "sample_next_token"),
    ("test_generate", "12_sampling", "generate", "generate"),
    ("test_beam_search", "12_sampling", "beam_search", "beam_search"),
    ("test_kv_cache", "13_kv_cache", "KVCache", "KVCache"),
    ("test_cached_attention", "13_kv_cache", "CachedAttention", "CachedAttention"),
    ("test_cached_pos_embed", "13_kv_cache", "CachedPosEmbed", "CachedPosEmbed"),
    ("test_cached_transformer", "13_kv_cache", "CachedTransformer", "CachedTransformer"),
    ("test_generate_with_cache", "13_kv_cache", "generate_with_cache", "generate_with_cache"),
    ("test_prev_token_score", "14_induction_heads", "prev_token_score", "prev_token_score"),
    ("test_induction_score", "14_induction_heads", "induction_score", "induction_score"),
    ("test_full_ov_circuit", "14_induction_heads", "full_ov_circuit", "full_ov_circuit"),
    ("test_full_qk_circuit", "14_induction_heads", "full_qk_circuit", "full_qk_circuit"),
    ("test_induction_qk_circuit", "14_induction_heads", "induction_qk_circuit", "induction_qk_circuit"),
    ("test_composition_score", "14_induction_heads", "composition_score", "composition_score"),
    ("test_ablate_head", "14_induction_heads", "ablate_head", "ablate_head"),
    ("test_bytes_to_unicode", "15_tokenizer", "bytes_to_unicode", "bytes_to_unicode"),
    ("test_pretokenize", "15_tokenizer", "pretokenize", "pretokenize"),
    ("test_count_pairs", "15_tokenizer", "count_pairs", "count_pairs"),
    ("test_merge_pair", "15_tokenizer", "merge_pair", "merge_pair"),
    ("test_bpe_tokenizer", "15_tokenizer", "BPETokenizer", "BPETokenizer"),
    ("test_train_bpe", "15_tokenizer", "train_bpe", "train_bpe"),
    ("test_rms_norm", "16_modern_llm", "RMSNorm", "RMSNorm"),
    ("test_rope_angles", "16_modern_llm", "rope_angles", "rope_angles"),
    ("test_apply_rope", "16_modern_llm", "apply_rope", "apply_rope"),
    ("test_swiglu", "16_modern_llm", "SwiGLU", "SwiGLU"),
    ("test_grouped_query_attention", "16_modern_llm", "GroupedQueryAttention", "GroupedQueryAttention"),
    ("test_modern_block", "16_modern_llm", "ModernBlock", "ModernBlock"),
    ("test_modern_transformer", "16_modern_llm", "ModernTransformer", "ModernTransformer"),
)

# Exercises their notebook calls optional ("## Exercise (optional): `beam_search`"): graded, but counted apart from
# the required checks in the grader's per-learner summary.
OPTIONAL = frozenset({"test_beam_search"})

CHECKS: dict[str, CheckInfo] = {
    name: CheckInfo(name, f"{stem}.ipynb", thing, part(canonical)) for name, stem, thing, canonical in _TABLE
}


def checks_of(notebook: str) -> list[CheckInfo]:
    """The checks a notebook (``05_attention`` or ``05_attention.ipynb``) should call, in catalogue order."""
    stem = notebook.removesuffix(".ipynb")
    return [c for c in CHECKS.values() if c.stem == stem]


@functools.cache
def defined_checks() -> dict[str, Callable[[object], None]]:
    """Every ``test_*`` function defined in a module of ``c1p1/checks/``, by name."""
    import c1p1.checks

    found: dict[str, Callable[[object], None]] = {}
    for info in sorted(pkgutil.iter_modules(c1p1.checks.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"c1p1.checks.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("test_") and callable(obj) and getattr(obj, "__module__", None) == module.__name__:
                if name in found:
                    raise RuntimeError(f"two modules in c1p1/checks/ define {name}: {found[name].__module__} and {module.__name__}")
                found[name] = obj
    return found


def check_function(name: str) -> Callable[[object], None]:
    """The check itself (raises AttributeError while no module in c1p1/checks/ defines it)."""
    try:
        return defined_checks()[name]
    except KeyError:
        raise AttributeError(f"no module in c1p1/checks/ defines {name} yet") from None
