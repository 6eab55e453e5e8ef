"""test_mlp (notebook 06): the MLP against GPT-2's blocks.{i}.mlp, and against random parameters."""

from __future__ import annotations

from c1p1.checks import core, oracle
from c1p1.checks.core import Case, Mistake

DIMS = ("batch", "posn", "d_model")

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
    p = core.random_params(oracle.mlp_shapes(small), seed=601, device=device)
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
