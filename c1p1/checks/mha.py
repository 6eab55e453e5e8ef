"""test_multihead_attention, test_per_head_to_linear and test_linear_to_per_head: notebook 10.

Notebook 10 rewrites attention the way most libraries write it: three ``nn.Linear`` projections whose
outputs are cut into heads with ``.view`` and ``.transpose``, one batched matmul for every head, and an
output projection. The functions at the top of this module are the functional reference (the "oracle")
for that form, with keyword flags for the known mistakes, in the style of `c1p1.checks.oracle`:

- `to_linear` / `to_per_head` convert between TransformerLens's per-head weights (``W_Q`` of shape
  ``[n_heads, d_model, d_head]``, ``W_O`` of shape ``[n_heads, d_head, d_model]``) and ``nn.Linear``'s
  ``weight [out_features, in_features]``, ``bias [out_features]``;
- `linear_params` turns a block's TransformerLens parameters into a MultiHeadAttention state dict;
- `mha` is the fused forward pass.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from c1p1.checks import core
from c1p1.checks.core import Case, Mistake
from c1p1.config import Config

MHA_TEST = "test_multihead_attention"
P2L_TEST = "test_per_head_to_linear"
L2P_TEST = "test_linear_to_per_head"
DIMS = ("batch", "posn", "d_model")
LINEAR_DIMS = ("out_features", "in_features")
KINDS = ("qkv", "out")
LINEAR_NAMES = ("W_query", "W_key", "W_value")
TL_NAMES = ("Q", "K", "V")

# ------------------------------------------------------------------------------ the oracle


def to_linear(
    W: Tensor, b: Tensor, kind: str, *, transpose: bool = True, permute: bool = True, head_order: str = "h d"
) -> tuple[Tensor, Tensor]:
    """Per-head (TransformerLens) weights -> nn.Linear's (weight [out, in], bias [out]).

    kind "qkv": W [n_heads, d_model, d_head], b [n_heads, d_head] -> weight [n_heads*d_head, d_model].
    kind "out": W [n_heads, d_head, d_model], b [d_model] -> weight [d_model, n_heads*d_head].
    Mistakes: transpose=False leaves x @ W's layout [in, out]; permute=False reshapes in memory order
    without moving d_model; head_order="d h" interleaves the heads.
    """
    n_heads = W.shape[0]
    if kind == "qkv":
        if not permute:
            return W.reshape(-1, W.shape[1]), b.reshape(-1)  # mixes d_model into the rows
        weight = einops.rearrange(W, f"h m d -> ({head_order}) m")  # (n_heads * d_head, d_model)
        bias = einops.rearrange(b, f"h d -> ({head_order})")  # (n_heads * d_head,)
        return (weight.T if not transpose else weight), bias
    if not permute:
        return W.reshape(W.shape[-1], -1), b  # mixes the rows of W_O
    weight = einops.rearrange(W, f"h d m -> m ({head_order})", h=n_heads)  # (d_model, n_heads * d_head)
    return (weight.T if not transpose else weight), b


def to_per_head(
    weight: Tensor, bias: Tensor, kind: str, n_heads: int, *, direct: bool = False, head_order: str = "h d"
) -> tuple[Tensor, Tensor]:
    """nn.Linear's (weight [out, in], bias [out]) -> per-head (TransformerLens) weights; the inverse of to_linear.

    Mistakes: direct=True reshapes straight into the per-head shape without moving any dimension;
    head_order="d h" reads the heads as interleaved.
    """
    if kind == "qkv":
        d_model = weight.shape[1]
        d_head = weight.shape[0] // n_heads
        if direct:
            return weight.reshape(n_heads, d_model, d_head), bias.reshape(n_heads, d_head)
        W = einops.rearrange(weight, f"({head_order}) m -> h m d", h=n_heads)  # (n_heads, d_model, d_head)
        return W, einops.rearrange(bias, f"({head_order}) -> h d", h=n_heads)  # (n_heads, d_head)
    d_model = weight.shape[0]
    d_head = weight.shape[1] // n_heads
    if direct:
        return weight.reshape(n_heads, d_head, d_model), bias
    return einops.rearrange(weight, f"m ({head_order}) -> h d m", h=n_heads), bias  # (n_heads, d_head, d_model)


def linear_params(p: dict[str, Tensor], qkv_bias: bool = True) -> dict[str, Tensor]:
    """A block's attention parameters (TransformerLens names) as a MultiHeadAttention state dict."""
    out = {}
    for lin, tl in zip(LINEAR_NAMES, TL_NAMES, strict=True):
        weight, bias = to_linear(p[f"W_{tl}"], p[f"b_{tl}"], "qkv")
        out[f"{lin}.weight"] = weight.contiguous()
        if qkv_bias:
            out[f"{lin}.bias"] = bias.contiguous()
    weight, bias = to_linear(p["W_O"], p["b_O"], "out")
    out["out_proj.weight"] = weight.contiguous()
    out["out_proj.bias"] = bias.contiguous()
    return out


def mha(
    x: Tensor,
    lp: dict[str, Tensor],
    num_heads: int,
    *,
    split: str = "view_transpose",
    merge: str = "transpose",
    scale: str = "head_dim",
    masked: bool = True,
    softmax_dim: int = -1,
    project_out: bool = True,
) -> Tensor:
    """The fused multi-head attention: x (batch, posn, d_in) -> (batch, posn, d_out).

    split: "view_transpose" (correct), "view_only" (.view(b, heads, posn, head_dim) straight away), or
    "over_heads" (no transpose at all, so each token's heads attend to one another, causally).
    merge: "transpose" (correct) or "no_transpose" (.view(b, posn, d_out) straight from (b, heads, posn, head_dim)).
    scale: "head_dim" (correct), "d_out", "none", "no_sqrt".
    """
    b, s, _ = x.shape

    def lin(name: str, t: Tensor) -> Tensor:
        return F.linear(t, lp[f"{name}.weight"], lp.get(f"{name}.bias"))

    q, k, v = (lin(n, x) for n in LINEAR_NAMES)  # each (batch, posn, d_out)
    d_out = q.shape[-1]
    head_dim = d_out // num_heads

    def heads(t: Tensor) -> Tensor:
        if split == "view_only":
            return t.reshape(b, num_heads, s, head_dim)  # (batch, n_heads, posn, head_dim), scrambled
        if split == "over_heads":
            return t.reshape(b, s, num_heads, head_dim)  # (batch, posn, n_heads, head_dim)
        return t.reshape(b, s, num_heads, head_dim).transpose(1, 2)  # (batch, n_heads, posn, head_dim)

    q, k, v = heads(q), heads(k), heads(v)
    scores = q @ k.transpose(-1, -2)  # (batch, n_heads, query_pos, key_pos)
    divisor = {"head_dim": math.sqrt(head_dim), "d_out": math.sqrt(d_out), "none": 1.0, "no_sqrt": head_dim}[scale]
    scores = scores / divisor
    if masked:
        n = scores.shape[-1]
        future = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)  # (query_pos, key_pos)
        scores = scores.masked_fill(future, float("-inf"))
    weights = torch.nan_to_num(scores.softmax(dim=softmax_dim))  # (batch, n_heads, query_pos, key_pos)
    context = weights @ v  # (batch, n_heads, posn, head_dim)
    if split == "over_heads" or merge == "no_transpose":
        merged = context.reshape(b, s, d_out)  # (batch, posn, d_out)
    else:
        merged = context.transpose(1, 2).reshape(b, s, d_out)  # (batch, posn, d_out)
    return lin("out_proj", merged) if project_out else merged  # (batch, posn, d_out)


# ------------------------------------------------------------------------- MultiHeadAttention


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


GPT2_SMALL = Geometry(768, 768, 1024, 12)
SMALL = Geometry(96, 96, 64, 4)  # head_dim 24
NARROW = Geometry(80, 64, 12, 4, qkv_bias=False)  # d_in != d_out, head_dim 16, no qkv bias


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
        return mha(x, lp, h, **flags)

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


def _call(fn: Callable, args: Sequence[object], test: str, what: str) -> object:
    """Run the learner's code without gradients; an error gets their line and a hint fitted to it."""
    __tracebackhide__ = True
    # The learner works on copies, so an in-place edit can never corrupt the kernel's cached activations.
    copies = [a.clone() if isinstance(a, Tensor) else a for a in args]
    try:
        with torch.no_grad():
            out = fn(*copies)
    except Exception as exc:  # noqa: BLE001 - the learner's error, shown with their line
        core.learner_raised(test, what, exc, _error_hint(exc))
    for arg, copy in zip(args, copies, strict=True):
        if isinstance(arg, Tensor) and not torch.equal(arg, copy):
            core.fail(
                f"{test}: {what} changed its input tensor in place.\n"
                "Likely cause: an in-place operation (x -= ..., .transpose_(), .mul_(...)) on an input. Write "
                "x = x - ... so the caller's tensor is left alone."
            )
    return out


def _one_tensor(out: object, test: str, what: str) -> Tensor:
    __tracebackhide__ = True
    if isinstance(out, tuple | list):
        core.fail(
            f"{test}: {what} returned a {type(out).__name__} of {len(out)} items; it should return one tensor.\n"
            "Return only the output of self.out_proj (not the attention weights as well)."
        )
    if not isinstance(out, Tensor):
        core.fail(f"{test}: {what} returned {core._describe(out)}; it should return a torch.Tensor. Did you forget `return`?")
    return out


def build_mha(cls: type[nn.Module], g: Geometry, dropout: float, device: torch.device) -> nn.Module:
    """Build the learner's class with its own constructor signature; a mismatch gets one sentence."""
    __tracebackhide__ = True
    args = g.args(dropout)
    try:
        inspect.signature(cls).bind(*args)
    except TypeError:
        core.fail(
            f"{MHA_TEST}: the check builds your class as {g.call_text(dropout)}, but its __init__ is "
            f"`{cls.__name__}{inspect.signature(cls)}`.\n"
            "Keep `def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False)`, in that order."
        )
    module = core.build(cls, MHA_TEST, *args)
    try:
        return module.to(device)
    except Exception as exc:  # noqa: BLE001
        core.learner_raised(MHA_TEST, f"moving {cls.__name__} to {device}", exc)


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
                f"with self.register_buffer('mask', torch.triu(torch.ones(context_length, context_length), diagonal=1)), "
                "so it moves with .to(device) but the optimiser never changes it."
            )
    buffers = dict(module.named_buffers())
    if any(is_square(b) for b in buffers.values()):
        return
    plain = [k for k, v in vars(module).items() if isinstance(v, Tensor) and is_square(v)]
    if plain:
        core.fail(
            f"{MHA_TEST}: self.{plain[0]} {square} is a plain tensor attribute, not a buffer ({where}).\n"
            f"Register it with self.register_buffer('{plain[0]}', ...): a buffer moves with .to(device) and "
            "is saved with the module; a plain attribute stays behind on the CPU."
        )
    have = ", ".join(f"{k} {tuple(v.shape)}" for k, v in buffers.items()) or "none"
    core.fail(
        f"{MHA_TEST}: no buffer of shape (context_length, context_length) = {square} ({where}); your buffers: {have}.\n"
        "Build the causal mask once in __init__ from context_length (not a fixed size) and register it: "
        "self.register_buffer('mask', torch.triu(torch.ones(context_length, context_length), diagonal=1))."
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
class MhaCase:
    case: Case
    geometry: Geometry


def mha_cases() -> list[MhaCase]:
    ref = core.reference()
    label = core.weights_label(ref)
    out = []
    for which, block, text in (("sentence", 0, "the reference sentence"), ("batch", 5, "a batch of two prompts")):
        acts = ref.activations(which)
        lp = linear_params(ref.params_for(f"blocks.{block}.attn"))
        x = acts[f"blocks.{block}.ln1.hook_out"]  # (batch, posn, d_model)
        case = Case(
            f"{text}, blocks.{block}.attn with {label} (d_in=d_out=768, 12 heads, context_length 1024)",
            Config(), lp, (x,), acts[f"blocks.{block}.attn.hook_out"], DIMS,
            mha_mistakes(x, lp, GPT2_SMALL), MHA_FALLBACK,
        )
        out.append(MhaCase(case, GPT2_SMALL))
    for g, seed, shape, text in (
        (SMALL, 1001, (2, 10, SMALL.d_in), "random weights, d_in=d_out=96, 4 heads, context_length 64, 10 tokens"),
        (NARROW, 1003, (3, 12, NARROW.d_in),
         "random weights, d_in=80, d_out=64, 4 heads, qkv_bias=False, a full context of 12 tokens"),
    ):
        lp = random_linear_params(g, seed, ref.device)
        x = core.random_input(shape, seed + 1, ref.device)  # (batch, posn, d_in)
        case = Case(text, Config(), lp, (x,), mha(x, lp, g.num_heads), DIMS, mha_mistakes(x, lp, g), MHA_FALLBACK)
        out.append(MhaCase(case, g))
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


def _run_case(cls: type[nn.Module], item: MhaCase) -> nn.Module:
    __tracebackhide__ = True
    case, g = item.case, item.geometry
    module = build_mha(cls, g, 0.0, case.expected.device)
    check_mask_buffer(module, g)
    load_linear(module, case.params, g)
    module.eval()
    what = f"{cls.__name__}.forward"
    out = _one_tensor(_call(module, case.inputs, MHA_TEST, what), MHA_TEST, what)
    core.vet_output(out, case.expected, case.dims, MHA_TEST, "the output", _shape_hints(g))
    mismatch = core.compare(out, case.expected)
    if mismatch is not None:
        core.explain(MHA_TEST, "output", case, out, mismatch)
    return module


def check_dropout(cls: type[nn.Module]) -> None:
    """dropout=0.5: train mode is random and differs from eval; eval is deterministic and correct.

    It seeds the global generator: call it inside torch.random.fork_rng, as test_multihead_attention does.
    """
    __tracebackhide__ = True
    ref = core.reference()
    g = SMALL
    lp = random_linear_params(g, 1005, ref.device)
    x = core.random_input((2, 10, g.d_in), 1006, ref.device)  # (2, 10, d_in)
    expected = mha(x, lp, g.num_heads)  # (2, 10, d_out)
    what = f"{cls.__name__}.forward"
    where = g.call_text(0.5)
    torch.manual_seed(0)
    module = build_mha(cls, g, 0.5, ref.device)
    load_linear(module, lp, g)
    module.eval()
    first = _one_tensor(_call(module, (x,), MHA_TEST, what), MHA_TEST, what)
    second = _one_tensor(_call(module, (x,), MHA_TEST, what), MHA_TEST, what)
    module.train()
    train_a = _one_tensor(_call(module, (x,), MHA_TEST, what), MHA_TEST, what)
    train_b = _one_tensor(_call(module, (x,), MHA_TEST, what), MHA_TEST, what)
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
    items = mha_cases()
    # Building nn.Linear layers draws random numbers: keep the notebook's own random stream untouched.
    with torch.random.fork_rng(devices=[]):
        for item in items:
            _run_case(cls, item)
        check_dropout(cls)
    cases = [i.case for i in items]
    core.passed(
        MHA_TEST,
        core.summary(cases).rstrip(".")
        + ". The mask is a (context_length, context_length) buffer, sliced per call; dropout=0.5 acts only in "
        "train mode.",
    )


# ------------------------------------------------------------------------------ the bridge


def _hf_attn(ref, block: int):
    """GPT-2's own attention module (Hugging Face) behind the bridge, when it can be reached."""
    model = getattr(ref.model, "original_model", None)
    try:
        return model.transformer.h[block].attn
    except AttributeError:
        return None


def hf_linear(ref, block: int) -> dict[str, tuple[Tensor, Tensor]]:
    """nn.Linear (weight, bias) for Q, K, V and O, read from GPT-2's fused c_attn and c_proj (Conv1D: x @ W + b)."""
    attn = _hf_attn(ref, block)
    p = ref.params_for(f"blocks.{block}.attn")
    if attn is None:
        out = {tl: to_linear(p[f"W_{tl}"], p[f"b_{tl}"], "qkv") for tl in TL_NAMES}
        out["O"] = to_linear(p["W_O"], p["b_O"], "out")
        return out
    d = ref.cfg.d_model
    with torch.no_grad():
        w = attn.c_attn.weight.detach().to(ref.device)  # (d_model, 3 * d_model)
        b = attn.c_attn.bias.detach().to(ref.device)  # (3 * d_model,)
        out = {tl: (w[:, i * d : (i + 1) * d].T.contiguous(), b[i * d : (i + 1) * d].clone()) for i, tl in enumerate(TL_NAMES)}
        out["O"] = (attn.c_proj.weight.detach().T.contiguous().to(ref.device), attn.c_proj.bias.detach().clone().to(ref.device))
    return out


@dataclass
class BridgeCase:
    label: str
    kind: str
    n_heads: int
    per_head: tuple[Tensor, Tensor]  # (W, b) in TransformerLens's layout
    linear: tuple[Tensor, Tensor]  # (weight, bias) in nn.Linear's layout
    round_trip: bool  # compare in per-head coordinates after converting back


def bridge_cases() -> list[BridgeCase]:
    ref = core.reference()
    label = core.weights_label(ref)
    p = ref.params_for("blocks.0.attn")
    hf = hf_linear(ref, 0)
    h = ref.cfg.n_heads
    source = "the fused c_attn (Conv1D)" if _hf_attn(ref, 0) is not None else "the course's conversion"
    out = []
    for tl in TL_NAMES:
        out.append(BridgeCase(f"blocks.0.attn W_{tl}, b_{tl} ({label}) against {source}", "qkv", h,
                              (p[f"W_{tl}"], p[f"b_{tl}"]), hf[tl], False))
    out.append(BridgeCase(f"blocks.0.attn W_O, b_O ({label}) against c_proj", "out", h, (p["W_O"], p["b_O"]), hf["O"], False))
    shapes = {"W_Q": (4, 96, 16), "b_Q": (4, 16), "W_O": (4, 16, 96), "b_O": (96,)}
    rp = core.random_params(shapes, seed=1011, device=ref.device)
    for kind, w, b in (("qkv", "W_Q", "b_Q"), ("out", "W_O", "b_O")):
        out.append(BridgeCase(
            f"a round trip of random {w}, {b} (4 heads, d_model=96, d_head=16, so n_heads*d_head=64 != d_model)",
            kind, 4, (rp[w], rp[b]), to_linear(rp[w], rp[b], kind), True,
        ))
    return out


def _pair(out: object, test: str, what: str) -> tuple[Tensor, Tensor]:
    __tracebackhide__ = True
    if isinstance(out, dict):
        core.fail(f"{test}: {what} returned a dict; it should return a tuple of two tensors, (weight, bias).")
    if not isinstance(out, tuple | list) or len(out) != 2:
        got = f"a {type(out).__name__} of {len(out)} items" if isinstance(out, tuple | list) else core._describe(out)
        core.fail(f"{test}: {what} returned {got}; it should return a tuple of two tensors, (weight, bias). "
                  "Did you forget `return weight, bias`?")
    for item, name in zip(out, ("weight", "bias"), strict=True):
        if not isinstance(item, Tensor):
            core.fail(f"{test}: the {name} {what} returned is {core._describe(item)}; it should be a torch.Tensor.")
    return out[0], out[1]


def _bind(fn: Callable, args: tuple, test: str, keep: str) -> None:
    __tracebackhide__ = True
    try:
        inspect.signature(fn).bind(*args)
    except TypeError:
        core.fail(f"{test}: the check calls {keep}, but your function's signature is {inspect.signature(fn)}.\n"
                  f"Keep `def {keep}`.")
    except ValueError:
        pass


def _compare(test: str, label: str, name: str, got: Tensor, want: Tensor, dims: tuple[str, ...],
             mistakes: list[Mistake], fallback: str, shape_hints=()) -> None:
    __tracebackhide__ = True
    core.vet_output(got, want, dims, test, f"the {name} on {label}", shape_hints)
    mismatch = core.compare(got, want)
    if mismatch is not None:
        case = Case(label, Config(), None, (), want, dims, lambda: mistakes, fallback)
        core.explain(test, name, case, got, mismatch)


def _p2l_mistakes(c: BridgeCase, which: int) -> list[Mistake]:
    W, b = c.per_head

    def pick(**flags: object) -> Callable[[], Tensor]:
        return lambda: to_linear(W, b, c.kind, **flags)[which]

    layout = "[d_model, n_heads * d_head]" if c.kind == "qkv" else "[n_heads * d_head, d_model]"
    order = "(h d) m" if c.kind == "qkv" else "m (h d)"
    return [
        Mistake(
            f"a missing transpose: this is the x @ W layout {layout} (GPT-2's Conv1D). nn.Linear stores its weight as "
            f"[out_features, in_features] and computes x @ weight.T + bias, so transpose it "
            f"(einops.rearrange(W, '{'h m d' if c.kind == 'qkv' else 'h d m'} -> {order}')).",
            pick(transpose=False),
        ),
        Mistake(
            "a missing transpose: W.reshape(...) straight away reads the numbers in memory order, which mixes d_model "
            "into the wrong axis. Move the dimensions first (W.permute / .transpose), then reshape; einops.rearrange "
            f"does both: '{'h m d' if c.kind == 'qkv' else 'h d m'} -> {order}'.",
            pick(permute=False),
        ),
        Mistake(
            "the wrong head order: the heads are interleaved (d_head outer, heads inner). nn.Linear's features must "
            "come head by head, head 0's d_head features first, as in '(h d)', not '(d h)'.",
            pick(head_order="d h"),
        ),
    ]


def _l2p_mistakes(c: BridgeCase, which: int) -> list[Mistake]:
    weight, bias = c.linear

    def pick(**flags: object) -> Callable[[], Tensor]:
        return lambda: to_per_head(weight, bias, c.kind, c.n_heads, **flags)[which]

    pattern = "'(h d) m -> h m d'" if c.kind == "qkv" else "'m (h d) -> h d m'"
    return [
        Mistake(
            "a missing transpose: reshaping nn.Linear's weight straight into the per-head shape reads it in memory "
            "order. nn.Linear stores [out_features, in_features]; move d_model to where TransformerLens wants it "
            f"first (a transpose), or use einops.rearrange(weight, {pattern}, h=n_heads).",
            pick(direct=True),
        ),
        Mistake(
            "the wrong head order: the features were read as interleaved heads (d_head outer, heads inner). "
            f"nn.Linear's features come head by head: {pattern}, not '(d h)'.",
            pick(head_order="d h"),
        ),
    ]


P2L_FALLBACK = (
    "1) nn.Linear's weight is [out_features, in_features]: for Q, K, V that is [n_heads * d_head, d_model], for the "
    "output projection [d_model, n_heads * d_head]; 2) group the features head by head ('(h d)'); 3) the Q, K, V "
    "bias is b.reshape(n_heads * d_head), the output bias b_O stays as it is."
)
L2P_FALLBACK = (
    "1) for Q, K, V: weight [n_heads * d_head, d_model] -> W [n_heads, d_model, d_head], bias -> [n_heads, d_head]; "
    "2) for the output: weight [d_model, n_heads * d_head] -> W_O [n_heads, d_head, d_model], b_O unchanged; "
    "3) the features come head by head ('(h d)')."
)


def _transposed_hint(got: tuple, want: tuple) -> bool:
    return got == want[::-1] or (len(got) == 3 and got[0] == want[0] and got[1:] == want[1:][::-1])


def _per_head_dims(kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names for the dimensions of W and b in TransformerLens's layout, for messages."""
    if kind == "qkv":
        return ("head_index", "d_model index", "d_head index"), ("head_index", "d_head index")
    return ("head_index", "d_head index", "d_model index"), ("d_model index",)


def _check_to_linear(fn: Callable, c: BridgeCase) -> None:
    __tracebackhide__ = True
    _bind(fn, (*c.per_head, c.kind), P2L_TEST, "per_head_to_linear(W, b, kind)")
    what = f"per_head_to_linear(W, b, {c.kind!r})"
    weight, bias = _pair(_call(fn, (*c.per_head, c.kind), P2L_TEST, what), P2L_TEST, what)
    want_w, want_b = c.linear
    same_shapes = tuple(weight.shape) == tuple(want_w.shape) and tuple(bias.shape) == tuple(want_b.shape)
    if not (c.round_trip and same_shapes):
        hints = ((_transposed_hint, "the weight looks transposed: nn.Linear's weight is [out_features, in_features]."),)
        _compare(P2L_TEST, c.label, "weight", weight, want_w, LINEAR_DIMS, _p2l_mistakes(c, 0), P2L_FALLBACK, hints)
        _compare(P2L_TEST, c.label, "bias", bias, want_b, ("out_features",), _p2l_mistakes(c, 1), P2L_FALLBACK)
        return
    # The round trip: the learner's nn.Linear weights, converted back with the inverse, must give W and b again.
    W, b = c.per_head
    wdims, bdims = _per_head_dims(c.kind)

    def back_weight(m: Mistake) -> Mistake:
        return Mistake(m.cause, lambda: to_per_head(m.output(), want_b, c.kind, c.n_heads)[0])

    def back_bias(m: Mistake) -> Mistake:
        return Mistake(m.cause, lambda: to_per_head(want_w, m.output(), c.kind, c.n_heads)[1])

    back_w, back_b = to_per_head(weight, bias, c.kind, c.n_heads)
    label = c.label + ", converted back to per-head with the inverse"
    _compare(P2L_TEST, label, "weight", back_w, W, wdims, [back_weight(m) for m in _p2l_mistakes(c, 0)], P2L_FALLBACK)
    _compare(P2L_TEST, label, "bias", back_b, b, bdims, [back_bias(m) for m in _p2l_mistakes(c, 1)], P2L_FALLBACK)


def test_per_head_to_linear(per_head_to_linear) -> None:
    """Check per_head_to_linear(W, b, kind) -> (weight, bias), kind "qkv" (W_Q, W_K, W_V) or "out" (W_O)."""
    __tracebackhide__ = True
    fn = core.expect_function(per_head_to_linear, "per_head_to_linear", P2L_TEST)
    cases = bridge_cases()
    for c in cases:
        _check_to_linear(fn, c)
    core.passed(P2L_TEST, f"{len(cases)} conversions match: " + "; ".join(c.label for c in cases) + ".")


def test_linear_to_per_head(linear_to_per_head) -> None:
    """Check linear_to_per_head(weight, bias, kind, n_heads) -> (W, b) in TransformerLens's per-head layout."""
    __tracebackhide__ = True
    fn = core.expect_function(linear_to_per_head, "linear_to_per_head", L2P_TEST)
    cases = bridge_cases()
    for c in cases:
        args = (*c.linear, c.kind, c.n_heads)
        _bind(fn, args, L2P_TEST, "linear_to_per_head(weight, bias, kind, n_heads)")
        what = f"linear_to_per_head(weight, bias, {c.kind!r}, {c.n_heads})"
        W, b = _pair(_call(fn, args, L2P_TEST, what), L2P_TEST, what)
        want_W, want_b = c.per_head
        wdims, bdims = _per_head_dims(c.kind)
        hints = (
            (_transposed_hint,
             "two dimensions are swapped: TransformerLens wants W_Q, W_K, W_V as [n_heads, d_model, d_head] "
             "and W_O as [n_heads, d_head, d_model]."),
        )
        label = c.label.replace("a round trip of", "converting back") if c.round_trip else c.label
        _compare(L2P_TEST, label, "weight", W, want_W, wdims, _l2p_mistakes(c, 0), L2P_FALLBACK, hints)
        _compare(L2P_TEST, label, "bias", b, want_b, bdims, _l2p_mistakes(c, 1), L2P_FALLBACK)
    core.passed(L2P_TEST, f"{len(cases)} conversions match: " + "; ".join(c.label for c in cases) + ".")

