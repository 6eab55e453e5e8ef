"""test_transformer_block (notebook 07): a block against GPT-2's blocks.{i}, and against random parameters."""

from __future__ import annotations

from c1p1.checks import core, oracle
from c1p1.checks.core import Case, Mistake

DIMS = ("batch", "posn", "d_model")

BLOCK_FALLBACK = (
    "1) each sub-layer adds to the stream: resid_mid = resid_pre + attn(ln1(resid_pre)), "
    "resid_post = resid_mid + mlp(ln2(resid_mid)); "
    "2) LayerNorm goes on the sub-layer's input (pre-LN), never on the sum; "
    "3) ln1 feeds the attention, ln2 feeds the MLP, and the MLP reads resid_mid (after attention); "
    "4) call the submodules self.ln1, self.attn, self.ln2, self.mlp (their parameters are loaded by name)."
)


def block_mistakes(x, p, eps):
    """What each plausible block mistake gives on this input."""

    def ln(t, which):
        return oracle.layer_norm(t, oracle.sub(p, which), eps)  # (batch, posn, d_model)

    def attn(t):
        return oracle.attention(t, oracle.sub(p, "attn"))  # (batch, posn, d_model)

    def mlp(t):
        return oracle.mlp(t, oracle.sub(p, "mlp"))  # (batch, posn, d_model)

    def normalised_residual():
        mid = ln(x, "ln1") + attn(ln(x, "ln1"))  # (batch, posn, d_model)
        return ln(mid, "ln2") + mlp(ln(mid, "ln2"))

    def attention_dropped():
        mid = x + attn(ln(x, "ln1"))  # (batch, posn, d_model)
        return x + mlp(ln(mid, "ln2"))

    def one_layer_norm(which):
        same = dict(p)
        other = "ln2" if which == "ln1" else "ln1"
        for leaf in ("w", "b"):
            same[f"{other}.{leaf}"] = p[f"{which}.{leaf}"]
        return oracle.block(x, same, eps)

    def no_layer_norm():
        mid = x + attn(x)  # (batch, posn, d_model)
        return mid + mlp(mid)

    return lambda: [
        Mistake(
            "the attention's residual connection is missing: resid_mid is attn(ln1(resid_pre)) alone. "
            "Add the input back: resid_mid = resid_pre + attn(ln1(resid_pre)).",
            lambda: oracle.block(x, p, eps, no_attn_residual=True),
        ),
        Mistake(
            "the MLP's residual connection is missing: the block returns mlp(ln2(resid_mid)) alone. "
            "Add it to the stream: resid_post = resid_mid + mlp(ln2(resid_mid)).",
            lambda: oracle.block(x, p, eps, no_mlp_residual=True),
        ),
        Mistake(
            "LayerNorm is in the wrong place: it is applied after each residual addition (post-LN, as in the "
            "original transformer). GPT-2 is pre-LN: normalise the sub-layer's input, resid_pre + attn(ln1(resid_pre)), "
            "and never normalise the stream itself.",
            lambda: oracle.block(x, p, eps, post_ln=True),
        ),
        Mistake(
            "ln1 and ln2 are swapped. ln1 normalises the attention's input, ln2 the MLP's input.",
            lambda: oracle.block(x, p, eps, swap_ln=True),
        ),
        Mistake(
            "attention and the MLP run in parallel: the MLP reads ln2(resid_pre). In GPT-2 they run in sequence: "
            "the MLP reads ln2(resid_mid), the stream after the attention's output has been added.",
            lambda: oracle.block(x, p, eps, parallel=True),
        ),
        Mistake(
            "the residual adds the normalised stream (ln1(resid_pre) + attn(...)) instead of the raw one. "
            "Keep the stream un-normalised: resid_mid = resid_pre + attn(ln1(resid_pre)).",
            normalised_residual,
        ),
        Mistake(
            "the attention's output is lost: the MLP's output is added to resid_pre instead of resid_mid. "
            "Return resid_mid + mlp(ln2(resid_mid)).",
            attention_dropped,
        ),
        Mistake(
            "ln1 is used twice: the MLP's input should be normalised with self.ln2, which has its own w and b.",
            lambda: one_layer_norm("ln1"),
        ),
        Mistake(
            "ln2 is used twice: the attention's input should be normalised with self.ln1, which has its own w and b.",
            lambda: one_layer_norm("ln2"),
        ),
        Mistake(
            "no LayerNorm is applied: the attention and the MLP read the raw stream. Call self.ln1 on the "
            "attention's input and self.ln2 on the MLP's input.",
            no_layer_norm,
        ),
    ]


def block_cases() -> list[Case]:
    ref = core.reference()
    cfg = ref.cfg
    eps = cfg.layer_norm_eps
    label = core.weights_label(ref)
    out = []
    for which, layer, text in (("sentence", 0, "the reference sentence"), ("batch", 7, "a batch of two prompts")):
        acts = ref.activations(which)
        p = ref.params_for(f"blocks.{layer}")
        x = acts[f"blocks.{layer}.hook_resid_pre"].clone()  # (batch, posn, d_model): an in-place edit spares the cache
        out.append(Case(f"{text}, blocks.{layer} with {label}", cfg, p, (x,), acts[f"blocks.{layer}.hook_resid_post"],
                        DIMS, block_mistakes(x, p, eps), BLOCK_FALLBACK))
    small = core.SMALL
    device = ref.device
    p = core.random_params(oracle.block_shapes(small), seed=701, device=device)
    x = core.random_input((2, 9, small.d_model), seed=702, device=device) + 0.5  # (2, 9, d_model)
    out.append(Case("random parameters and input (d_model=96, n_heads=4)", small, p, (x,), oracle.block(x, p, eps),
                    DIMS, block_mistakes(x, p, eps), BLOCK_FALLBACK))
    return out


SUBMODULES = ("ln1", "attn", "ln2", "mlp")


def expect_submodules(cls) -> None:
    """The block's parameters are loaded by name, so its four parts must be called ln1, attn, ln2, mlp."""
    __tracebackhide__ = True
    test = "test_transformer_block"
    module = core.build(cls, test, core.SMALL)
    owners = {name.split(".", 1)[0] for name, _ in module.named_parameters()}
    missing = [n for n in SUBMODULES if n not in owners]
    if missing:
        have = ", ".join(sorted(owners)) or "none"
        core.fail(
            f"{test}: {cls.__name__} has no submodule called {', '.join(missing)} (submodules with parameters: {have}).\n"
            "GPT-2's parameters are loaded by name (ln1.w, attn.W_Q, ln2.b, mlp.W_in, ...): in __init__ write "
            "self.ln1 = LayerNorm(cfg), self.attn = Attention(cfg), self.ln2 = LayerNorm(cfg), self.mlp = MLP(cfg)."
        )


def test_transformer_block(TransformerBlock) -> None:
    """Check a TransformerBlock class against GPT-2's blocks.{i}, and against random parameters."""
    __tracebackhide__ = True
    cls = core.expect_module_class(TransformerBlock, "TransformerBlock", "test_transformer_block")
    expect_submodules(cls)
    all_cases = block_cases()
    core.run_cases("test_transformer_block", cls, all_cases)
    core.passed("test_transformer_block", core.summary(all_cases))

