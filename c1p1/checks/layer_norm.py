"""test_layer_norm (notebook 01): LayerNorm against GPT-2's ln1, ln2 and ln_final, and random parameters."""

from __future__ import annotations

from dataclasses import replace

from c1p1.checks import core, oracle
from c1p1.checks.core import Case, Mistake

TEST = "test_layer_norm"
DIMS = ("batch", "posn", "d_model")
FALLBACK = (
    "1) the variance: use the biased one, x.var(dim=-1, keepdim=True, unbiased=False); "
    "2) eps belongs inside the square root: (var + eps).sqrt(); "
    "3) scale by self.w and shift by self.b after normalising; "
    "4) take the mean and variance over the last dimension (d_model), keeping it with keepdim=True."
)


def mistakes(x, p, eps):
    """What each plausible LayerNorm mistake gives on this input."""
    return lambda: [
        Mistake(
            "the variance is the unbiased one (divided by d_model - 1). GPT-2 uses the biased variance: "
            "x.var(dim=-1, keepdim=True, unbiased=False), or ((x - mean) ** 2).mean(-1, keepdim=True).",
            lambda: oracle.layer_norm(x, p, eps, unbiased=True),
        ),
        Mistake(
            "eps is added outside the square root. It belongs inside: (var + eps).sqrt(), not var.sqrt() + eps.",
            lambda: oracle.layer_norm(x, p, eps, eps_outside=True),
        ),
        Mistake(
            "the affine step is missing: after normalising, multiply by self.w and add self.b.",
            lambda: oracle.layer_norm(x, p, eps, affine=False),
        ),
        Mistake(
            "the bias self.b is never added: the last step is normalised * self.w + self.b.",
            lambda: oracle.layer_norm(x, p, eps, no_bias=True),
        ),
        Mistake(
            "the mean is not subtracted before dividing: normalise (x - mean), not x.",
            lambda: oracle.layer_norm(x, p, eps, no_centre=True),
        ),
        Mistake(
            "the mean and variance are taken over the wrong dimension (positions). LayerNorm normalises each "
            "position on its own, over d_model: use dim=-1.",
            lambda: oracle.layer_norm(x, p, eps, dim=-2),
        ),
    ]


def cases() -> list[Case]:
    ref = core.reference()
    cfg = ref.cfg
    eps = cfg.layer_norm_eps
    sentence, batch = ref.activations("sentence"), ref.activations("batch")
    label = core.weights_label(ref)
    out = []
    for acts, where, hook, text in (
        (sentence, "blocks.0.ln1", "blocks.0.ln1", "the reference sentence"),
        (batch, "blocks.5.ln2", "blocks.5.ln2", "a batch of two prompts"),
        (batch, "ln_final", "ln_final", "a batch of two prompts"),
    ):
        p = ref.params_for(where)
        x = acts[f"{hook}.hook_in"]
        out.append(
            Case(f"{text}, {where} with {label}", cfg, p, (x,), acts[f"{hook}.hook_out"], DIMS,
                 mistakes(x, p, eps), FALLBACK)
        )
    small = core.SMALL
    device = ref.device
    p = core.random_params({"w": (small.d_model,), "b": (small.d_model,)}, seed=101, device=device)
    x = core.random_input((2, 7, small.d_model), seed=102, device=device, scale=3.0) + 1.5  # (2, 7, d_model)
    out.append(Case("random w, b and input (d_model=96)", small, p, (x,), oracle.layer_norm(x, p, eps), DIMS,
                    mistakes(x, p, eps), FALLBACK))
    big_eps = replace(small, layer_norm_eps=0.1)
    xs = core.random_input((1, 5, small.d_model), seed=103, device=device, scale=0.3)  # (1, 5, d_model)
    out.append(Case("a large eps (cfg.layer_norm_eps = 0.1)", big_eps, p, (xs,), oracle.layer_norm(xs, p, 0.1),
                    DIMS, mistakes(xs, p, 0.1), FALLBACK))
    zeros = xs * 0  # (1, 5, d_model)
    out.append(Case("an all-zero input", small, p, (zeros,), oracle.layer_norm(zeros, p, eps), DIMS,
                    mistakes(zeros, p, eps),
                    "eps must keep the division finite when the variance is 0: (var + eps).sqrt()."))
    return out


def test_layer_norm(LayerNorm) -> None:
    """Check a LayerNorm class against GPT-2's ln1, ln2 and ln_final, and against random parameters."""
    __tracebackhide__ = True
    cls = core.expect_module_class(LayerNorm, "LayerNorm", TEST)
    all_cases = cases()
    core.run_cases(TEST, cls, all_cases)
    core.passed(TEST, core.summary(all_cases))
