"""The first divergence: which submodule of a learner's whole model is wrong, given correct inputs.

When a whole model (DemoTransformer, CachedTransformer) gives the wrong logits and the learner wrote its
parts too, "check every part" is no help. `first_divergence` runs each submodule of the learner's model
on the input the reference gives it (the reference's own activations, computed by `c1p1.checks.oracle` from
the same parameters), in the order the model runs them, and returns the first whose output differs, with
the check that finds out why. TransformerLens documents this bisection for its maintainers; here the
learner gets it in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from c1p1.checks import core, oracle
from c1p1.config import Config


@dataclass
class Divergence:
    name: str  # the submodule's path in the model, e.g. "blocks.3.attn"
    error: float  # the largest absolute difference from the reference's output
    check: str  # the check to run, e.g. "tests.test_attention(Attention)"
    raised: str = ""  # the learner's error, when the submodule raised on the correct input


def _check_for(kind: str, module: nn.Module, cached: bool) -> str:
    cls = type(module).__name__
    test = {
        "embed": "test_embed",
        "pos_embed": "test_cached_pos_embed" if cached else "test_pos_embed",
        "ln": "test_layer_norm",
        "attn": "test_cached_attention" if cached else "test_attention",
        "mlp": "test_mlp",
        "block": "" if cached else "test_transformer_block",
        "unembed": "test_unembed",
    }[kind]
    if not test:  # CachedBlock is given code with no check of its own
        return f"compare {cls}.forward with notebook 07's TransformerBlock (the cache goes to self.attn)"
    return f"run `tests.{test}({cls})`"


def first_divergence(model: nn.Module, tokens: Tensor, p: dict[str, Tensor], cfg: Config, *,
                     cached: bool = False) -> Divergence | None:
    """The first submodule whose output differs from the reference's given the reference's input, or None.

    ``cached``: the model is a CachedTransformer (its pos_embed takes an offset, its blocks and attention a
    layer cache); the tokens are then run as one prompt into empty caches.
    """
    from c1p1.checks.kv_cache import Entry  # the check's own layer cache

    def differs(name: str, kind: str, run: Callable[[nn.Module], Tensor], want: Tensor) -> Divergence | None:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            return None  # a model built differently: nothing to bisect here
        try:
            with torch.no_grad():
                got = run(module)
        except TypeError:
            return None  # called differently inside this model: skip it, the later steps still bisect
        except Exception as exc:  # noqa: BLE001 - the learner's error, reported as this submodule's
            first = str(exc).splitlines()[0] if str(exc) else ""
            return Divergence(name, float("inf"), _check_for(kind, module, cached), f"{type(exc).__name__}: {first}")
        if not isinstance(got, Tensor) or got.shape != want.shape:
            return Divergence(name, float("inf"), _check_for(kind, module, cached))
        got = got.to(want.dtype)
        if not bool(torch.isfinite(got).all()):
            return Divergence(name, float("nan"), _check_for(kind, module, cached))
        if core.compare(got, want) is None:
            return None
        return Divergence(name, float((got - want).abs().max()), _check_for(kind, module, cached))

    want = _expected(tokens, p, cfg)
    found = differs("embed", "embed", lambda m: m(tokens), want["hook_embed"]) or differs(
        "pos_embed", "pos_embed", (lambda m: m(tokens, 0)) if cached else (lambda m: m(tokens)), want["hook_pos_embed"])
    if found:
        return found
    resid = want["hook_embed"] + want["hook_pos_embed"]  # (batch, posn, d_model)
    for i in range(cfg.n_layers):
        name = f"blocks.{i}"
        x1, mid, x2 = want[f"{name}.ln1.hook_out"], want[f"{name}.hook_resid_mid"], want[f"{name}.ln2.hook_out"]
        block = differs(name, "block", (lambda m, r=resid: m(r, Entry())) if cached else (lambda m, r=resid: m(r)),
                        want[f"{name}.hook_resid_post"])
        if block:  # the block differs: its first part that differs, or the block's own wiring
            parts = [
                (f"{name}.ln1", "ln", lambda m, r=resid: m(r), x1),
                (f"{name}.attn", "attn", (lambda m, x=x1: m(x, Entry())) if cached else (lambda m, x=x1: m(x)),
                 want[f"{name}.hook_attn_out"]),
                (f"{name}.ln2", "ln", lambda m, r=mid: m(r), x2),
                (f"{name}.mlp", "mlp", lambda m, x=x2: m(x), want[f"{name}.hook_mlp_out"]),
            ]
            return next((found for part in parts if (found := differs(*part))), block)
        resid = want[f"{name}.hook_resid_post"]
    final = want["ln_final.hook_out"]
    return differs("ln_final", "ln", lambda m: m(resid), final) or differs(
        "unembed", "unembed", lambda m: m(final), want["logits"])


def _expected(tokens: Tensor, p: dict[str, Tensor], cfg: Config) -> dict[str, Tensor]:
    """The reference's activations under TransformerLens's hook names: its own when these are its tokens and
    parameters (GPT-2 or the stand-in on the reference runs), else computed by the oracle from ``p``."""
    ref = core.reference()
    if cfg == ref.cfg and p is ref.params():
        for which, _ in core.REFERENCE_RUNS:
            acts = ref.activations(which)
            if acts["tokens"].shape == tokens.shape and torch.equal(acts["tokens"], tokens):
                return acts
    sub, eps = oracle.sub, cfg.layer_norm_eps
    want = {"hook_embed": oracle.embed(tokens, sub(p, "embed")),  # (batch, posn, d_model)
            "hook_pos_embed": oracle.pos_embed(tokens, sub(p, "pos_embed"))}  # (batch, posn, d_model)
    resid = want["hook_embed"] + want["hook_pos_embed"]  # (batch, posn, d_model)
    for i in range(cfg.n_layers):
        b, name = sub(p, f"blocks.{i}"), f"blocks.{i}"
        want[f"{name}.ln1.hook_out"] = oracle.layer_norm(resid, sub(b, "ln1"), eps)  # (batch, posn, d_model)
        want[f"{name}.hook_attn_out"] = oracle.attention(want[f"{name}.ln1.hook_out"], sub(b, "attn"))  # same
        mid = want[f"{name}.hook_resid_mid"] = resid + want[f"{name}.hook_attn_out"]  # (batch, posn, d_model)
        want[f"{name}.ln2.hook_out"] = oracle.layer_norm(mid, sub(b, "ln2"), eps)  # (batch, posn, d_model)
        want[f"{name}.hook_mlp_out"] = oracle.mlp(want[f"{name}.ln2.hook_out"], sub(b, "mlp"))  # same
        resid = want[f"{name}.hook_resid_post"] = mid + want[f"{name}.hook_mlp_out"]  # (batch, posn, d_model)
    want["ln_final.hook_out"] = oracle.layer_norm(resid, sub(p, "ln_final"), eps)  # (batch, posn, d_model)
    want["logits"] = oracle.unembed(want["ln_final.hook_out"], sub(p, "unembed"))  # (batch, posn, d_vocab)
    return want


def explain_divergence(test: str, case: core.Case, out: Tensor, model: nn.Module, tokens: Tensor, *,
                       cached: bool = False, what: str = "logit") -> None:
    """Fail naming the first submodule that differs, when one does; return when every submodule is right."""
    __tracebackhide__ = True
    found = first_divergence(model, tokens, case.params, case.cfg, cached=cached)
    if found is None:
        return
    whose = "GPT-2's" if case.cfg == Config() and core.reference().is_real else "the reference's"
    if bool(torch.isfinite(out).all()) and out.shape == case.expected.shape:
        mismatch = core.compare(out, case.expected)
        head = (f"{test} FAILED on {case.label}: {100 * mismatch.fraction:.1f}% of {what} values match the reference "
                f"(max abs error {mismatch.max_error:.3g} at {core.where(mismatch.index, case.dims)}).")
    else:
        head = f"{test} FAILED on {case.label}: the {what}s are not finite (NaN or inf)."
    if found.raised:
        how = f"on {whose} own input it raises {found.raised}"
    elif found.error != found.error:  # NaN
        how = f"on {whose} own input it gives NaN or inf"
    elif found.error == float("inf"):
        how = f"on {whose} own input its output has the wrong shape"
    else:
        how = f"on {whose} own input its output is off by up to {found.error:.3g}"
    core.fail(f"{head}\nLikely cause: {found.name} differs from {whose} first ({how}; every submodule before it "
              f"matches): {found.check}.")
