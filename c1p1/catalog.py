"""Every check of the course in one table: which notebook it belongs to, what the learner passes, and the answer.

``CHECKS["test_attention"]`` is a `CheckInfo` saying that the check lives in ``05_attention.ipynb``,
that the learner passes ``Attention``, and how to get the canonical object from ``c1p1.parts``
(generated from the solution notebooks). The grader uses the table to know which check cells each
notebook should have, the benchmark times every check on its canonical object, and
``tests/test_every_check.py`` checks that every check passes the canonical object and refuses the stub.
"""

from __future__ import annotations

import importlib
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
    ("test_mlp", "06_mlp", "MLP", "MLP"),
    ("test_transformer_block", "07_transformer_block", "TransformerBlock", "TransformerBlock"),
    ("test_unembed", "08_unembed", "Unembed", "Unembed"),
    ("test_demo_transformer", "09_full_model", "DemoTransformer", "DemoTransformer"),
    ("test_get_log_probs", "09_full_model", "get_log_probs", "get_log_probs"),
    ("test_multihead_attention", "10_multihead_attention", "MultiHeadAttention", "MultiHeadAttention"),
    ("test_per_head_to_linear", "10_multihead_attention", "per_head_to_linear", "per_head_to_linear"),
    ("test_linear_to_per_head", "10_multihead_attention", "linear_to_per_head", "linear_to_per_head"),
    ("test_apply_temperature", "12_sampling", "apply_temperature", "apply_temperature"),
    ("test_apply_frequency_penalty", "12_sampling", "apply_frequency_penalty", "apply_frequency_penalty"),
    ("test_top_k_logits", "12_sampling", "top_k_logits", "top_k_logits"),
    ("test_top_p_logits", "12_sampling", "top_p_logits", "top_p_logits"),
    ("test_sample_next_token", "12_sampling", "sample_next_token", "sample_next_token"),
    ("test_generate", "12_sampling", "generate", "generate"),
    ("test_kv_cache", "13_kv_cache", "KVCache", "KVCache"),
    ("test_cached_attention", "13_kv_cache", "CachedAttention", "CachedAttention"),
    ("test_cached_pos_embed", "13_kv_cache", "CachedPosEmbed", "CachedPosEmbed"),
    ("test_cached_transformer", "13_kv_cache", "CachedTransformer", "CachedTransformer"),
    ("test_generate_with_cache", "13_kv_cache", "generate_with_cache", "generate_with_cache"),
)

CHECKS: dict[str, CheckInfo] = {
    name: CheckInfo(name, f"{stem}.ipynb", thing, part(canonical)) for name, stem, thing, canonical in _TABLE
}


def checks_of(notebook: str) -> list[CheckInfo]:
    """The checks a notebook (``05_attention`` or ``05_attention.ipynb``) should call, in catalogue order."""
    stem = notebook.removesuffix(".ipynb")
    return [c for c in CHECKS.values() if c.stem == stem]


def notebooks() -> list[str]:
    """The stems of every notebook that has a check, in course order."""
    return sorted({c.stem for c in CHECKS.values()})


def check_function(name: str) -> Callable[[object], None]:
    """The check itself, from C1P1_tests (raises AttributeError while it is not written yet)."""
    import C1P1_tests

    return getattr(C1P1_tests, name)
