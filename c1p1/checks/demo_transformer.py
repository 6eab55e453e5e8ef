"""test_demo_transformer (notebook 09): the whole model, tokens to logits, with GPT-2's parameters and random ones."""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from c1p1.checks import core, oracle
from c1p1.checks.core import Case, Mistake
from c1p1.checks.divergence import explain_divergence
from c1p1.config import Config

LOGIT_DIMS = ("batch", "posn", "d_vocab")
FIELDS = "cfg.d_model, cfg.n_layers, ..."

MODEL_FALLBACK = (
    "1) the residual stream starts as embed(tokens) + pos_embed(tokens); "
    "2) every block in self.blocks runs once, in order: residual = block(residual); "
    "3) the logits are unembed(ln_final(residual)); "
    "4) if you wrote the submodules yourself, check each one with its own test first."
)

MODEL_SHAPE_HINTS = (
    (
        lambda got, want: len(got) == 3 and got[:2] == want[:2] and got[-1] != want[-1],
        "the last dimension should be d_vocab: you returned the residual stream. Finish with "
        "self.unembed(self.ln_final(residual)).",
    ),
)

MODEL_LOAD_HINT = (
    "DemoTransformer's submodules must be called embed, pos_embed, blocks (an nn.ModuleList), ln_final and "
    "unembed, so that its parameters get GPT-2's names (blocks.0.attn.W_Q, ...)."
)

_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def check_block_count(module: nn.Module, case: Case) -> None:
    """A wrong number of blocks gives mismatched parameter names; say so in plain words first."""
    __tracebackhide__ = True
    found = {int(m.group(1)) for name, _ in module.named_parameters() if (m := _BLOCK.match(name))}
    wanted = case.cfg.n_layers
    if found and found != set(range(wanted)):
        fail_text = (
            f"test_demo_transformer: your DemoTransformer has {len(found)} blocks "
            f"(blocks.{min(found)} .. blocks.{max(found)}), but this Config has n_layers = {wanted}."
        )
        if case.cfg != Config():
            fail_text += " (This case builds a smaller model on purpose, to catch a hard-coded 12.)"
        core.fail(
            fail_text + "\nLikely cause: the number of blocks is wrong. Build exactly cfg.n_layers of them: "
            "self.blocks = nn.ModuleList([TransformerBlock(cfg) for _ in range(cfg.n_layers)]), "
            "with cfg.n_layers rather than a hard-coded 12."
        )


def model_mistakes(tokens: Tensor, p: dict[str, Tensor], cfg: Config):
    """What each plausible whole-model mistake gives on these tokens (run only when the output is off)."""
    fewer = max(cfg.n_layers - 1, 0)
    return lambda: [
        Mistake(
            "ln_final is skipped: the unembedding must read the normalised stream, "
            "self.unembed(self.ln_final(residual)), not the raw residual stream.",
            lambda: oracle.model(tokens, p, cfg, skip_ln_final=True),
        ),
        Mistake(
            "the positional embedding is missing: the residual stream starts as "
            "self.embed(tokens) + self.pos_embed(tokens).",
            lambda: oracle.model(tokens, p, cfg, no_pos=True),
        ),
        Mistake(
            "the token embedding is missing: the residual stream starts as "
            "self.embed(tokens) + self.pos_embed(tokens).",
            lambda: oracle.model(tokens, p, cfg, no_token=True),
        ),
        Mistake(
            f"only {fewer} of the {cfg.n_layers} blocks run (the number of blocks used is wrong). "
            "Loop over every block in self.blocks, whose length is cfg.n_layers.",
            lambda: oracle.model(tokens, p, cfg, n_layers=fewer),
        ),
        Mistake(
            "the residual stream is added twice: each block already returns resid_post, which includes its "
            "input, so write residual = block(residual), not residual = residual + block(residual).",
            lambda: oracle.model(tokens, p, cfg, double_residual=True),
        ),
        Mistake(
            "you returned log probabilities. DemoTransformer returns the raw logits; the log_softmax "
            "belongs in get_log_probs.",
            lambda: oracle.model(tokens, p, cfg).log_softmax(-1),
        ),
    ]


def demo_transformer_cases() -> list[Case]:
    ref = core.reference()
    cfg = ref.cfg
    label = core.weights_label(ref)
    params = ref.params()
    out = []
    for which, text in core.REFERENCE_RUNS:
        acts = ref.activations(which)
        tokens = acts["tokens"]  # (batch, posn)
        out.append(Case(f"{text}, the whole model with {label}", cfg, params, (tokens.clone(),), acts["logits"],
                        LOGIT_DIMS, model_mistakes(tokens, params, cfg), MODEL_FALLBACK))
    small = core.SMALL
    ps = core.random_params(oracle.model_shapes(small), seed=901, device=ref.device)
    tokens = core.random_tokens((2, 9), small.d_vocab, seed=902, device=ref.device)  # (2, 9)
    out.append(Case("random parameters, 3 layers (d_model=96, d_vocab=503)", small, ps, (tokens,),
                    oracle.model(tokens, ps, small), LOGIT_DIMS, model_mistakes(tokens, ps, small), MODEL_FALLBACK))
    return out


def verify_model(test: str, *, cached: bool = False, hints=MODEL_SHAPE_HINTS):
    """The default verdict, except that wrong logits first look for the first submodule that differs."""

    def verify(case: Case, out: Tensor, module: nn.Module | None) -> None:
        __tracebackhide__ = True
        wrong = out.shape == case.expected.shape and out.device == case.expected.device and (
            not bool(torch.isfinite(out).all()) or core.compare(out, case.expected) is not None)
        if wrong and module is not None:
            explain_divergence(test, case, out, module, case.inputs[0], cached=cached)
        core.judge(test, case, out, "the output", "the logit", hints)

    return verify


def test_demo_transformer(DemoTransformer) -> None:
    """Check a DemoTransformer: tokens to logits with GPT-2's parameters, and with random ones in 3 layers."""
    __tracebackhide__ = True
    test = "test_demo_transformer"
    cls = core.expect_module_class(DemoTransformer, "DemoTransformer", test)
    cases = demo_transformer_cases()
    core.run_cases(test, cls, cases, shape_hints=MODEL_SHAPE_HINTS, values="the logit", fields=FIELDS,
                   prepare=check_block_count, load_hint=MODEL_LOAD_HINT, lend=True, verify=verify_model(test))
    core.passed(test, core.summary(cases))


