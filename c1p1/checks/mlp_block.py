"""test_mlp (notebook 06) and test_transformer_block (notebook 07)."""

from __future__ import annotations

from c1p1.checks import core, oracle
from c1p1.checks.core import Case, Mistake
from c1p1.config import Config

DIMS = ("batch", "posn", "d_model")

# ------------------------------------------------------------------------------------------ MLP

MLP_FALLBACK = (
    "1) the activation between the two maps must be gelu_new (the tanh approximation): "
    "gelu_new(pre) or F.gelu(pre, approximate='tanh'); "
    "2) add b_in before the activation and b_out after W_out; "
    "3) the order is x @ W_in + b_in, then the activation, then @ W_out + b_out."
)

MLP_SHAPE_HINTS = (
    (
        lambda got, want: len(got) == len(want) and got[:-1] == want[:-1] and got[-1] != want[-1],
        "the last dimension is the MLP's hidden width: you returned the neurons' activations. "
        "Multiply them by W_out (d_mlp -> d_model) and add b_out.",
    ),
)


def mlp_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    return {"W_in": (cfg.d_model, cfg.d_mlp), "W_out": (cfg.d_mlp, cfg.d_model), "b_in": (cfg.d_mlp,), "b_out": (cfg.d_model,)}


def mlp_mistakes(x, p):
    """What each plausible MLP mistake gives on this input."""

    def b_in_after():
        return oracle.gelu_new(x @ p["W_in"]) + p["b_in"]  # (batch, posn, d_mlp)

    return lambda: [
        Mistake(
            "the activation is the exact GELU (F.gelu(x) or nn.GELU()). GPT-2 uses gelu_new, the tanh "
            "approximation: call gelu_new(pre) or F.gelu(pre, approximate='tanh'). The two differ by up to "
            "5e-4 per neuron, more than this check allows once W_out adds them up.",
            lambda: oracle.mlp(x, p, activation="gelu"),
        ),
        Mistake(
            "the activation is ReLU. GPT-2 uses gelu_new (a smooth curve that lets small negative values "
            "through): call gelu_new(pre).",
            lambda: oracle.mlp(x, p, activation="relu"),
        ),
        Mistake(
            "there is no activation between the two maps, so the MLP is a single linear map. "
            "Apply gelu_new to x @ W_in + b_in before multiplying by W_out.",
            lambda: oracle.mlp(x, p, activation="none"),
        ),
        Mistake(
            "the bias b_in is never added. The pre-activation is x @ W_in + b_in, before gelu_new.",
            lambda: oracle.mlp(x, p, no_bias_in=True),
        ),
        Mistake(
            "the bias b_out is never added. The output is gelu_new(...) @ W_out + b_out.",
            lambda: oracle.mlp(x, p, no_bias_out=True),
        ),
        Mistake(
            "b_in is added after the activation. It belongs inside: gelu_new(x @ W_in + b_in).",
            lambda: b_in_after() @ p["W_out"] + p["b_out"],
        ),
        Mistake(
            "gelu_new is applied to the output instead of the hidden layer. It goes between the maps: "
            "gelu_new(x @ W_in + b_in) @ W_out + b_out, with nothing applied after b_out.",
            lambda: oracle.gelu_new((x @ p["W_in"] + p["b_in"]) @ p["W_out"] + p["b_out"]),
        ),
        Mistake(
            "gelu_new is applied twice, also to the output. Apply it once, to the hidden layer only.",
            lambda: oracle.gelu_new(oracle.mlp(x, p)),
        ),
    ]


# In the random case W_out is scaled up and the pre-activations are spread over +-2.7, where exact and
# tanh GELU differ most, so that an exact GELU is rejected far beyond the tolerance.
RANDOM_W_OUT_SCALE = 4.0
RANDOM_INPUT_SCALE = 2.0


def mlp_cases() -> list[Case]:
    ref = core.reference()
    cfg = ref.cfg
    label = core.weights_label(ref)
    out = []
    for which, layer, text in (
        ("sentence", 0, "the reference sentence"),
        ("batch", 6, "a batch of two prompts"),
        ("sentence", 11, "the reference sentence"),
    ):
        acts = ref.activations(which)
        p = ref.params_for(f"blocks.{layer}.mlp")
        x = acts[f"blocks.{layer}.ln2.hook_out"].clone()  # (batch, posn, d_model): an in-place edit spares the cache
        out.append(Case(f"{text}, blocks.{layer}.mlp with {label}", cfg, p, (x,), acts[f"blocks.{layer}.mlp.hook_out"],
                        DIMS, mlp_mistakes(x, p), MLP_FALLBACK))
    small = core.SMALL
    device = ref.device
    p = core.random_params(mlp_shapes(small), seed=601, device=device)
    p["W_out"] = RANDOM_W_OUT_SCALE * p["W_out"]  # (d_mlp, d_model)
    x = core.random_input((2, 9, small.d_model), seed=602, device=device, scale=RANDOM_INPUT_SCALE)  # (2, 9, d_model)
    out.append(Case("random W_in, W_out, b_in, b_out and input (d_model=96, d_mlp=384)", small, p, (x,),
                    oracle.mlp(x, p), DIMS, mlp_mistakes(x, p), MLP_FALLBACK))
    return out


def test_mlp(MLP) -> None:
    """Check an MLP class against GPT-2's blocks.{i}.mlp, and against random parameters."""
    __tracebackhide__ = True
    cls = core.expect_module_class(MLP, "MLP", "test_mlp")
    all_cases = mlp_cases()
    core.run_cases("test_mlp", cls, all_cases, shape_hints=MLP_SHAPE_HINTS)
    core.passed("test_mlp", core.summary(all_cases))


# ------------------------------------------------------------------------------ transformer block

BLOCK_FALLBACK = (
    "1) each sub-layer adds to the stream: resid_mid = resid_pre + attn(ln1(resid_pre)), "
    "resid_post = resid_mid + mlp(ln2(resid_mid)); "
    "2) LayerNorm goes on the sub-layer's input (pre-LN), never on the sum; "
    "3) ln1 feeds the attention, ln2 feeds the MLP, and the MLP reads resid_mid (after attention); "
    "4) call the submodules self.ln1, self.attn, self.ln2, self.mlp (their parameters are loaded by name)."
)


def block_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    h, m, d = cfg.n_heads, cfg.d_model, cfg.d_head
    shapes = {f"ln{i}.{leaf}": (m,) for i in (1, 2) for leaf in ("w", "b")}
    shapes.update({f"attn.W_{n}": (h, m, d) for n in "QKV"})
    shapes.update({f"attn.b_{n}": (h, d) for n in "QKV"})
    shapes.update({"attn.W_O": (h, d, m), "attn.b_O": (m,)})
    shapes.update({f"mlp.{k}": v for k, v in mlp_shapes(cfg).items()})
    return shapes


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
    p = core.random_params(block_shapes(small), seed=701, device=device)
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

