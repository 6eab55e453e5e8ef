"""test_multihead_attention (notebook 10): attention written with nn.Linear projections, heads cut by .view.

The learner's class is built the way notebook 10 (and most libraries) write it,
``MultiHeadAttention(d_in, d_out, context_length, dropout, num_heads, qkv_bias)``, with three
``nn.Linear`` projections, a causal-mask buffer and an output projection. It is compared with
GPT-2's attention (its weights converted by `c1p1.checks.oracle.linear_params`) and with random
weights in two smaller geometries, then checked for where dropout acts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from c1p1.checks import core, oracle
from c1p1.checks.core import Advice, Case, Mistake
from c1p1.checks.oracle import LINEAR_NAMES
from c1p1.config import Config

MHA_TEST = "test_multihead_attention"
DIMS = ("batch", "posn", "d_model")


@dataclass
class Geometry:
    d_in: int
    d_out: int
    context_length: int
    num_heads: int
    qkv_bias: bool = True

    @property
    def head_dim(self) -> int:
        return self.d_out // self.num_heads

    def args(self, dropout: float = 0.0) -> tuple:
        return (self.d_in, self.d_out, self.context_length, dropout, self.num_heads, self.qkv_bias)

    def call_text(self, dropout: float = 0.0) -> str:
        return (
            f"MultiHeadAttention(d_in={self.d_in}, d_out={self.d_out}, context_length={self.context_length}, "
            f"dropout={dropout:g}, num_heads={self.num_heads}, qkv_bias={self.qkv_bias})"
        )

    def shapes(self) -> dict[str, tuple[int, ...]]:
        out = {}
        for name in LINEAR_NAMES:
            out[f"{name}.weight"] = (self.d_out, self.d_in)
            if self.qkv_bias:
                out[f"{name}.bias"] = (self.d_out,)
        out["out_proj.weight"] = (self.d_out, self.d_out)
        out["out_proj.bias"] = (self.d_out,)
        return out


GEOMETRY_GPT2 = Geometry(768, 768, 1024, 12)
GEOMETRY_SMALL = Geometry(96, 96, 64, 4)  # head_dim 24
GEOMETRY_NARROW = Geometry(80, 64, 12, 4, qkv_bias=False)  # d_in != d_out, head_dim 16, no qkv bias


def random_linear_params(g: Geometry, seed: int, device: torch.device) -> dict[str, Tensor]:
    """Seeded random MultiHeadAttention parameters: unit-scale outputs, biases around 0."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in g.shapes().items():
        noise = torch.randn(shape, generator=gen)  # shape
        value = noise / math.sqrt(shape[1]) if len(shape) == 2 else 0.3 * noise
        out[name] = value.to(device)
    return out


def mha_mistakes(x: Tensor, lp: dict[str, Tensor], g: Geometry) -> Callable[[], list[Mistake]]:
    """What each plausible MultiHeadAttention mistake gives on this input."""
    h, hd = g.num_heads, g.head_dim
    root = math.sqrt(hd)

    def run(**flags: object) -> Tensor:
        return oracle.mha(x, lp, h, **flags)

    split_fix = (
        f"Split with .view(b, num_tokens, num_heads, head_dim) = (b, num_tokens, {h}, {hd}), then "
        ".transpose(1, 2) to (b, num_heads, num_tokens, head_dim)."
    )
    return lambda: [
        Mistake(
            "the heads are split without a transpose: .view(b, num_heads, num_tokens, head_dim) straight from "
            "(b, num_tokens, d_out) cuts the numbers in memory order, so each 'head' gets pieces of several "
            "tokens. " + split_fix + " Then, to merge, transpose back before .view(b, num_tokens, d_out).",
            lambda: run(split="view_only", merge="no_transpose"),
        ),
        Mistake(
            "the heads are split without a transpose: .view(b, num_heads, num_tokens, head_dim) straight from "
            "(b, num_tokens, d_out) mixes tokens and heads. " + split_fix,
            lambda: run(split="view_only"),
        ),
        Mistake(
            "the heads are split without a transpose, so the matmul runs over heads instead of tokens: each "
            "token's heads attend to one another. " + split_fix,
            lambda: run(split="over_heads"),
        ),
        Mistake(
            "the heads are merged without transposing back: the context is (b, num_heads, num_tokens, head_dim), "
            "and .view(b, num_tokens, d_out) on it glues pieces of different tokens together. Call "
            ".transpose(1, 2) first, then .contiguous().view(b, num_tokens, d_out).",
            lambda: run(merge="no_transpose"),
        ),
        Mistake(
            f"the scores are divided by sqrt(d_out) = {math.sqrt(g.d_out):.4g}. Each head's dot product has "
            f"head_dim = {hd} terms, so the scale is sqrt(head_dim) = {root:g}: keys.shape[-1] ** 0.5.",
            lambda: run(scale="d_out"),
        ),
        Mistake(
            f"the attention scores are not scaled. Divide them by sqrt(head_dim) = {root:g} "
            "(keys.shape[-1] ** 0.5) before the softmax.",
            lambda: run(scale="none"),
        ),
        Mistake(
            f"the scores are divided by head_dim = {hd}, without the square root. Divide by sqrt(head_dim) = {root:g}.",
            lambda: run(scale="no_sqrt"),
        ),
        Mistake(
            "there is no causal mask: every token also reads the tokens after it. Fill the scores where "
            "self.mask[:num_tokens, :num_tokens] is set with -inf before the softmax.",
            lambda: run(masked=False),
        ),
        Mistake(
            "the softmax is over the wrong dimension (queries). Each query's weights over the keys must sum "
            "to 1: softmax(dim=-1).",
            lambda: run(softmax_dim=-2),
        ),
        Mistake(
            "the output projection is missing: after merging the heads, pass the result through self.out_proj and return that.",
            lambda: run(project_out=False),
        ),
    ]


MHA_FALLBACK = (
    "1) split: .view(b, num_tokens, num_heads, head_dim) then .transpose(1, 2); 2) scale the scores by "
    "1/sqrt(head_dim); 3) mask with -inf where self.mask[:num_tokens, :num_tokens] is set, before the softmax; "
    "4) softmax over the keys (dim=-1); 5) merge: .transpose(1, 2), .contiguous(), .view(b, num_tokens, d_out); "
    "6) self.out_proj at the end."
)


def _error_hint(exc: BaseException) -> str:
    """A likely cause for an error the learner's forward raised, from its text."""
    text = str(exc)
    if "view size is not compatible" in text:
        return (
            "Likely cause: .view on a transposed tensor. .transpose only swaps the strides, so the numbers are no "
            "longer in the order .view needs: call .contiguous() before .view (or use .reshape)."
        )
    if "size" in text or "shape" in text or "dimension" in text:
        return (
            "Likely causes, most likely first: 1) the mask is not sliced to this input: the buffer is "
            "(context_length, context_length), and the check runs sequences shorter than that, so use "
            "self.mask[:num_tokens, :num_tokens]; 2) the heads are not moved before the tokens: after "
            ".view(b, num_tokens, num_heads, head_dim) call .transpose(1, 2); 3) a size is hard-coded: use "
            "self.d_out, self.num_heads, self.head_dim and x.shape. Print each tensor's .shape and compare it "
            "with the table in the notebook."
        )
    return ""


ADVICE = Advice(
    in_place="Likely cause: an in-place operation (x -= ..., .transpose_(), .mul_(...)) on an input. Write "
    "x = x - ... so the caller's tensor is left alone.",
    one_tensor="Return only the output of self.out_proj (not the attention weights as well).",
    error=_error_hint,
)


def build_mha(cls: type[nn.Module], g: Geometry, dropout: float) -> nn.Module:
    """Build the learner's class with its own constructor signature; a mismatch gets one sentence."""
    __tracebackhide__ = True
    return core.build(
        cls, MHA_TEST, *g.args(dropout), call_text=g.call_text(dropout),
        keep="Keep `def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False)`, in that order.",
    )


def check_mask_buffer(module: nn.Module, g: Geometry) -> None:
    """The causal mask must be a buffer of (context_length, context_length), never a parameter."""
    __tracebackhide__ = True
    n = g.context_length
    square = (n, n)
    where = f"built as {g.call_text()}"

    def is_square(t: Tensor) -> bool:  # (n, n), or (1, 1, n, n) to broadcast over batch and heads
        return tuple(t.shape[-2:]) == square and t.numel() == n * n

    for name, param in module.named_parameters():
        if is_square(param):
            core.fail(
                f"{MHA_TEST}: {name} {square} is an nn.Parameter ({where}).\n"
                "Likely cause: the causal mask was wrapped in nn.Parameter. A mask is not learned: register it "
                f"with self.register_buffer('mask', torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), diagonal=1)), "
                "so it moves with .to(device) but the optimiser never changes it."
            )
    buffers = dict(module.named_buffers())
    if any(is_square(b) for b in buffers.values()):
        return
    plain = [k for k, v in vars(module).items() if isinstance(v, Tensor) and is_square(v)]
    if plain:
        core.fail(
            f"{MHA_TEST}: self.{plain[0]} {square} is a plain tensor attribute, not a buffer ({where}).\n"
            f"Register it with self.register_buffer('{plain[0]}', ...): a buffer moves with .to(device) "
            "(and with persistent=False it stays out of the state_dict); a plain attribute stays behind on the CPU."
        )
    have = ", ".join(f"{k} {tuple(v.shape)}" for k, v in buffers.items()) or "none"
    core.fail(
        f"{MHA_TEST}: no buffer of shape (context_length, context_length) = {square} ({where}); your buffers: {have}.\n"
        "Build the causal mask once in __init__ from context_length (not a fixed size) and register it: "
        "self.register_buffer('mask', torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), diagonal=1))."
    )


def load_linear(module: nn.Module, params: dict[str, Tensor], g: Geometry) -> None:
    """Load nn.Linear-named parameters strictly, with a message written for this layout."""
    __tracebackhide__ = True

    def advice(missing: list[str], unexpected: list[str]) -> list[str]:
        lines = []
        suspects = unexpected if not g.qkv_bias else missing
        if any(k.endswith(".bias") and k.split(".")[0] in LINEAR_NAMES for k in suspects):
            lines.append("Likely cause: qkv_bias is ignored. Pass bias=qkv_bias to W_query, W_key and W_value.")
        lines.append(
            "Expected: self.W_query, self.W_key, self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias) each, "
            "self.out_proj = nn.Linear(d_out, d_out), and the mask as a buffer (not a parameter)."
        )
        return lines

    core.load_strict(
        module,
        params,
        MHA_TEST,
        intro=f"{MHA_TEST}: the parameters of {type(module).__name__} ({g.call_text()}) do not match the layout.",
        transposed_note="transposed: nn.Linear(in_features, out_features) stores weight as [out_features, in_features]",
        advice=advice,
    )


@dataclass
class MhaCase(Case):
    geometry: Geometry | None = None  # how the check builds the learner's class


def mha_cases() -> list[MhaCase]:
    ref = core.reference()
    label = core.weights_label(ref)
    out = []
    for which, block, text in (("sentence", 0, "the reference sentence"), ("batch", 5, "a batch of two prompts")):
        acts = ref.activations(which)
        lp = oracle.linear_params(ref.params_for(f"blocks.{block}.attn"))
        x = acts[f"blocks.{block}.ln1.hook_out"]  # (batch, posn, d_model)
        out.append(MhaCase(
            f"{text}, blocks.{block}.attn with {label} (d_in=d_out=768, 12 heads, context_length 1024)",
            Config(), lp, (x,), acts[f"blocks.{block}.attn.hook_out"], DIMS,
            mha_mistakes(x, lp, GEOMETRY_GPT2), MHA_FALLBACK, geometry=GEOMETRY_GPT2,
        ))
    for g, seed, shape, text in (
        (GEOMETRY_SMALL, 1001, (2, 10, GEOMETRY_SMALL.d_in),
         "random weights, d_in=d_out=96, 4 heads, context_length 64, 10 tokens"),
        (GEOMETRY_NARROW, 1003, (3, 12, GEOMETRY_NARROW.d_in),
         "random weights, d_in=80, d_out=64, 4 heads, qkv_bias=False, a full context of 12 tokens"),
    ):
        lp = random_linear_params(g, seed, ref.device)
        x = core.random_input(shape, seed + 1, ref.device)  # (batch, posn, d_in)
        out.append(MhaCase(text, Config(), lp, (x,), oracle.mha(x, lp, g.num_heads), DIMS, mha_mistakes(x, lp, g),
                           MHA_FALLBACK, geometry=g))
    return out


def _shape_hints(g: Geometry):
    return (
        (
            lambda got, want: len(got) == 4,
            f"the heads are still separate: merge them with .transpose(1, 2), .contiguous(), "
            f".view(b, num_tokens, d_out) and apply self.out_proj (d_out = {g.d_out}).",
        ),
        (
            lambda got, want: len(got) == 3 and got[-1] != want[-1],
            f"the last dimension should be d_out = {g.d_out}: merge with .view(b, num_tokens, self.d_out), and make "
            "out_proj nn.Linear(d_out, d_out).",
        ),
    )


def _shape_hints(g: Geometry):
    return (
        (
            lambda got, want: len(got) == 4,
            f"the heads are still separate: merge them with .transpose(1, 2), .contiguous(), "
            f".view(b, num_tokens, d_out) and apply self.out_proj (d_out = {g.d_out}).",
        ),
        (
            lambda got, want: len(got) == 3 and got[-1] != want[-1],
            f"the last dimension should be d_out = {g.d_out}: merge with .view(b, num_tokens, self.d_out), and make "
            "out_proj nn.Linear(d_out, d_out).",
        ),
    )


def check_dropout(cls: type[nn.Module]) -> None:
    """dropout=0.5: train mode is random and differs from eval; eval is deterministic and correct.

    It seeds the global generator: call it inside torch.random.fork_rng, as test_multihead_attention does.
    """
    __tracebackhide__ = True
    ref = core.reference()
    g = GEOMETRY_SMALL
    lp = random_linear_params(g, 1005, ref.device)
    x = core.random_input((2, 10, g.d_in), 1006, ref.device)  # (2, 10, d_in)
    expected = oracle.mha(x, lp, g.num_heads)  # (2, 10, d_out)
    what = f"{cls.__name__}.forward"
    where = g.call_text(0.5)
    torch.manual_seed(0)
    module = core.move(build_mha(cls, g, 0.5), ref.device, MHA_TEST)
    load_linear(module, lp, g)
    module.eval()
    first = core.call(module, (x,), MHA_TEST, what, advice=ADVICE)
    second = core.call(module, (x,), MHA_TEST, what, advice=ADVICE)
    module.train()
    train_a = core.call(module, (x,), MHA_TEST, what, advice=ADVICE)
    train_b = core.call(module, (x,), MHA_TEST, what, advice=ADVICE)
    if not torch.equal(first, second) or core.compare(first, expected) is not None:
        core.fail(
            f"{MHA_TEST} FAILED with {where} in eval mode: the output changes from call to call, or differs from "
            "the output without dropout.\n"
            "Likely cause: dropout is applied in eval mode too. Use self.dropout = nn.Dropout(dropout), which "
            "switches itself off after .eval() (or pass training=self.training to F.dropout)."
        )
    if tuple(train_a.shape) != tuple(first.shape):
        core.fail(f"{MHA_TEST}: in train mode the output has shape {tuple(train_a.shape)}, in eval mode {tuple(first.shape)}.")
    if torch.equal(train_a, first) or torch.equal(train_a, train_b):
        core.fail(
            f"{MHA_TEST} FAILED with {where} in train mode: the output is the same as in eval mode (or the same "
            "on every call), so the dropout never acts.\n"
            "Likely cause: self.dropout is created but never applied. Apply it to the attention weights, after "
            "the softmax and before multiplying by the values: attn_weights = self.dropout(attn_weights)."
        )
    zeros = float((train_a == 0).float().mean())
    if zeros > 0.25:
        core.fail(
            f"{MHA_TEST} FAILED with {where} in train mode: {100 * zeros:.0f}% of the output values are exactly 0.\n"
            "Likely cause: dropout is applied to the output. Apply it to the attention weights instead, after the "
            "softmax and before multiplying by the values."
        )


def test_multihead_attention(MultiHeadAttention) -> None:
    """Check a MultiHeadAttention class (nn.Linear projections) against GPT-2's attention and random weights.

    The class is built as MultiHeadAttention(d_in, d_out, context_length, dropout, num_heads, qkv_bias).
    """
    __tracebackhide__ = True
    cls = core.expect_module_class(MultiHeadAttention, "MultiHeadAttention", MHA_TEST)
    cases = mha_cases()
    # Building nn.Linear layers draws random numbers: keep the notebook's own random stream untouched.
    with torch.random.fork_rng(devices=[]):
        core.run_cases(
            MHA_TEST, cls, cases, values="output", advice=ADVICE,
            shape_hints=lambda case: _shape_hints(case.geometry),
            build=lambda cls, case: build_mha(cls, case.geometry, 0.0),
            prepare=lambda module, case: check_mask_buffer(module, case.geometry),
            load=lambda module, case: load_linear(module, case.params, case.geometry),
        )
        check_dropout(cls)
    core.passed(
        MHA_TEST,
        core.summary(cases).rstrip(".")
        + ". The mask is a (context_length, context_length) buffer, sliced per call; dropout=0.5 acts only in "
        "train mode.",
    )
