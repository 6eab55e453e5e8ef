"""test_per_head_to_linear and test_linear_to_per_head (notebook 10): TransformerLens's per-head weights <-> nn.Linear.

TransformerLens keeps ``W_Q`` as ``[n_heads, d_model, d_head]`` and ``W_O`` as ``[n_heads, d_head,
d_model]``; ``nn.Linear`` keeps ``weight [out_features, in_features]`` and ``bias [out_features]``.
Both conversions are compared with `c1p1.checks.oracle.to_linear` / `to_per_head` on GPT-2's block 0
(against GPT-2's own fused ``c_attn`` and ``c_proj`` when the bridge exposes them) and on a round trip
of random weights where ``n_heads * d_head != d_model``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c1p1.checks import core, oracle
from c1p1.checks.core import Advice, Case, Mistake
from c1p1.checks.oracle import TL_NAMES
from c1p1.config import Config

P2L_TEST = "test_per_head_to_linear"
L2P_TEST = "test_linear_to_per_head"
LINEAR_DIMS = ("out_features", "in_features")
ADVICE = Advice(
    in_place="Likely cause: an in-place operation (x -= ..., .transpose_(), .mul_(...)) on an input. Write "
    "x = x - ... so the caller's tensor is left alone."
)


def _call(fn: Callable, args: Sequence[object], test: str, what: str) -> object:
    """Run the learner's conversion with the engine's guards; whatever it returns comes back as it is."""
    __tracebackhide__ = True
    return core.call(fn, args, test, what, advice=ADVICE, one_tensor=False)


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
        out = {tl: oracle.to_linear(p[f"W_{tl}"], p[f"b_{tl}"], "qkv") for tl in TL_NAMES}
        out["O"] = oracle.to_linear(p["W_O"], p["b_O"], "out")
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
            kind, 4, (rp[w], rp[b]), oracle.to_linear(rp[w], rp[b], kind), True,
        ))
    return out


def _pair(out: object, test: str, what: str) -> tuple[Tensor, Tensor]:
    __tracebackhide__ = True
    if isinstance(out, dict):
        core.fail(f"{test}: {what} returned a dict; it should return a tuple of two tensors, (weight, bias).")
    if not isinstance(out, tuple | list) or len(out) != 2:
        got = f"a {type(out).__name__} of {len(out)} items" if isinstance(out, tuple | list) else core.describe(out)
        core.fail(f"{test}: {what} returned {got}; it should return a tuple of two tensors, (weight, bias). "
                  "Did you forget `return weight, bias`?")
    for item, name in zip(out, ("weight", "bias"), strict=True):
        if not isinstance(item, Tensor):
            core.fail(f"{test}: the {name} {what} returned is {core.describe(item)}; it should be a torch.Tensor.")
    return out[0], out[1]


def _bind(fn: Callable, args: tuple, test: str, keep: str) -> None:
    __tracebackhide__ = True
    try:
        inspect.signature(fn).bind(*args)
    except TypeError:
        core.fail(f"{test}: the check calls {keep}, but your function's signature is {inspect.signature(fn)}.\n"
                  f"Keep `def {keep}`.")
    except ValueError:  # no signature to read (a builtin): let the call say what is wrong
        pass


def _compare(test: str, label: str, name: str, got: Tensor, want: Tensor, dims: tuple[str, ...],
             mistakes: list[Mistake], fallback: str, shape_hints=()) -> None:
    __tracebackhide__ = True
    case = Case(label, Config(), None, (), want, dims, lambda: mistakes, fallback)
    core.judge(test, case, got, f"the {name} on {label}", name, shape_hints)


def _p2l_mistakes(c: BridgeCase, which: int) -> list[Mistake]:
    W, b = c.per_head

    def pick(**flags: object) -> Callable[[], Tensor]:
        return lambda: oracle.to_linear(W, b, c.kind, **flags)[which]

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
        return lambda: oracle.to_per_head(weight, bias, c.kind, c.n_heads, **flags)[which]

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
        return Mistake(m.cause, lambda: oracle.to_per_head(m.output(), want_b, c.kind, c.n_heads)[0])

    def back_bias(m: Mistake) -> Mistake:
        return Mistake(m.cause, lambda: oracle.to_per_head(want_w, m.output(), c.kind, c.n_heads)[1])

    back_w, back_b = oracle.to_per_head(weight, bias, c.kind, c.n_heads)
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

