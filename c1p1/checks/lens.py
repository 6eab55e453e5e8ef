"""test_logit_lens: the prediction read from the residual stream after every layer, through ln_final and W_U.

The learner writes ``logit_lens(cache, ln_final, W_U, b_U, n_layers, position)``. It must pick, from a cache
keyed by hook name, the residual stream before block 0 and after each block, at one position, normalise
each one with ``ln_final`` (each with its own scale) and unembed it. The check compares with that formula
on the reference's own activations (exact on the stand-in too: it is a formula, not a behaviour) and on a
small random model whose residual streams grow from layer to layer, so that a scale borrowed from another
layer shows. It is written as cases plus named mistakes, with core's `Case` and `Mistake`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from c1p1.checks import core
from c1p1.config import Config

TEST = "test_logit_lens"
DIMS = ("layer", "batch", "d_vocab")


def streams(cache: dict[str, Tensor], n_layers: int, suffix: str = "hook_resid_post") -> list[Tensor]:
    """The residual stream before block 0, then after each block (or another hook of each block)."""
    return [cache["blocks.0.hook_resid_pre"]] + [cache[f"blocks.{layer}.{suffix}"] for layer in range(n_layers)]


def layer_norm(x: Tensor, w: Tensor, b: Tensor, eps: float, scale: Tensor | None = None) -> Tensor:
    """LayerNorm over the last dimension; with `scale` given, divide by it instead of x's own."""
    centred = x - x.mean(dim=-1, keepdim=True)  # same shape as x
    if scale is None:
        scale = (centred.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt()  # (..., 1)
    return centred / scale * w + b  # same shape as x


def expected_lens(cache, w, b, eps, W_U, b_U, n_layers, position) -> Tensor:
    resid = torch.stack(streams(cache, n_layers))[:, :, position]  # (n_layers + 1, batch, d_model)
    return layer_norm(resid, w, b, eps) @ W_U + b_U  # (n_layers + 1, batch, d_vocab)


def mistakes(cache, w, b, eps, W_U, b_U, n_layers, position) -> Callable[[], list[core.Mistake]]:
    def resid(suffix: str = "hook_resid_post", at: int = position) -> Tensor:
        return torch.stack(streams(cache, n_layers, suffix))[:, :, at]  # (n_layers + 1, batch, d_model)

    def unembed(x: Tensor) -> Tensor:
        return x @ W_U + b_U  # (n_layers + 1, batch, d_vocab)

    def final_scale() -> Tensor:
        scale = cache["ln_final.hook_scale"][:, position]  # (batch, 1)
        return layer_norm(resid(), w, b, eps, scale=scale)  # (n_layers + 1, batch, d_model)

    def build() -> list[core.Mistake]:
        right = expected_lens(cache, w, b, eps, W_U, b_U, n_layers, position)  # (n_layers + 1, batch, d_vocab)
        return [
            core.Mistake(
                "the residual stream goes straight into W_U. Read it through ln_final first, as the model does at "
                "the end: ln_final(resid) @ W_U + b_U.",
                lambda: unembed(resid()),
            ),
            core.Mistake(
                "every layer is divided by the final layer's scale (ln_final.hook_scale). Each layer's stream has its "
                "own size, so let ln_final compute the scale of each one: call ln_final on the stream itself.",
                lambda: unembed(final_scale()),
            ),
            core.Mistake(
                "b_U is never added: the last step is ... @ W_U + b_U (GPT-2's b_U is zero, so this case uses a "
                "random one).",
                lambda: layer_norm(resid(), w, b, eps) @ W_U,
            ),
            core.Mistake(
                "the logits went through a softmax (or log_softmax). Return raw logits, as the unembedding does.",
                lambda: right.softmax(dim=-1),
            ),
            core.Mistake(
                "the logits went through a log_softmax. Return raw logits, as the unembedding does.",
                lambda: right.log_softmax(dim=-1),
            ),
            core.Mistake(
                "the streams are read in the middle of each block (hook_resid_mid). The stream after block i is "
                "blocks.{i}.hook_resid_post.",
                lambda: unembed(layer_norm(resid("hook_resid_mid"), w, b, eps)),
            ),
            core.Mistake(
                "the layers are in reverse order. Row 0 is the stream before block 0 (the embeddings), row i + 1 the "
                "stream after block i.",
                lambda: right.flip(0),
            ),
            core.Mistake(
                "the `position` argument is ignored: the last position is read every time. Index the position "
                "dimension with `position`.",
                lambda: unembed(layer_norm(resid(at=-1), w, b, eps)),
            ),
            core.Mistake(
                "position 0 is read every time. Index the position dimension with `position`.",
                lambda: unembed(layer_norm(resid(at=0), w, b, eps)),
            ),
        ]

    return build


SHAPE_HINTS = (
    (lambda out, exp: len(out) == 3 and out[0] == exp[0] - 1,
     "one row too few. Row 0 is the stream before block 0 (blocks.0.hook_resid_pre, the embeddings), then one row "
     "per block (blocks.{i}.hook_resid_post): n_layers + 1 rows."),
    (lambda out, exp: len(out) == 4 and out[0] == exp[0] and out[1] == exp[1] and out[3] == exp[2],
     "every position is still there. Read only the position given by `position`: index the position dimension."),
    (lambda out, exp: len(out) == 3 and out[0] == exp[1] and out[1] == exp[0],
     "the layer and batch dimensions are swapped: stack the layers first, (layer, batch, d_vocab)."),
)


class _LnFinal(nn.Module):
    """ln_final as the learner receives it: shaped like the course's LayerNorm (cfg, w, b)."""

    def __init__(self, w: Tensor, b: Tensor, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(b.clone())

    def forward(self, residual: Tensor) -> Tensor:
        return layer_norm(residual, self.w, self.b, self.cfg.layer_norm_eps)  # same shape as residual


def _case(label, cache, w, b, eps, W_U, b_U, n_layers, position) -> core.Case:
    expected = expected_lens(cache, w, b, eps, W_U, b_U, n_layers, position)  # (n_layers + 1, batch, d_vocab)
    inputs = (cache, w, b, eps, W_U, b_U, n_layers, position)
    cfg = Config() if W_U.shape == (Config().d_model, Config().d_vocab) else core.SMALL
    return core.Case(label, cfg, None, inputs, expected, DIMS,
                     mistakes=mistakes(cache, w, b, eps, W_U, b_U, n_layers, position),
                     fallback="a LayerNorm step done by hand differs from ln_final (call ln_final itself); the rows are "
                     "not the streams before block 0 and after each block; the wrong position is read.")


def random_cache(cfg: Config, batch: int, posn: int, seed: int, device: torch.device) -> dict[str, Tensor]:
    """A cache of residual streams that grow from layer to layer, as GPT-2's do, with ln_final's scale."""
    gen = torch.Generator().manual_seed(seed)
    resid = torch.randn(batch, posn, cfg.d_model, generator=gen)  # (batch, posn, d_model)
    cache = {}
    for layer in range(cfg.n_layers):
        cache[f"blocks.{layer}.hook_resid_pre"] = resid.to(device)
        mid = resid + (layer + 1) * torch.randn(batch, posn, cfg.d_model, generator=gen)  # (batch, posn, d_model)
        resid = mid + (layer + 1) * torch.randn(batch, posn, cfg.d_model, generator=gen)  # (batch, posn, d_model)
        cache[f"blocks.{layer}.hook_resid_mid"] = mid.to(device)
        cache[f"blocks.{layer}.hook_resid_post"] = resid.to(device)
    centred = resid - resid.mean(dim=-1, keepdim=True)  # (batch, posn, d_model)
    cache["ln_final.hook_scale"] = (centred.pow(2).mean(dim=-1, keepdim=True) + cfg.layer_norm_eps).sqrt().to(device)
    return cache


def residual_hooks(cache) -> dict[str, Tensor]:
    """The part of a cache a logit lens can need: the residual streams, the embeddings and ln_final's hooks."""
    keep = ("hook_resid_", "hook_embed", "hook_pos_embed", "ln_final.")
    return {k: v for k, v in cache.items() if isinstance(v, Tensor) and any(part in k for part in keep)}


def final_params(ref) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """What reads the final stream: ln_final's w and b, then the unembedding's W_U and b_U."""
    params = ref.params()
    return params["ln_final.w"], params["ln_final.b"], params["unembed.W_U"], params["unembed.b_U"]


def logit_lens_cases():
    """The cases one at a time, so that a failure on the first never pays for the others."""
    ref = core.reference()
    cfg = Config()
    w, b, W_U, b_U = final_params(ref)
    yield _case(f"the reference sentence, the last position, {core.weights_label(ref)}",
                residual_hooks(ref.activations("sentence")), w, b, cfg.layer_norm_eps, W_U, b_U, cfg.n_layers, -1)
    yield _case(f"a batch of two prompts, position 5, {core.weights_label(ref)}",
                residual_hooks(ref.activations("batch")), w, b, cfg.layer_norm_eps, W_U, b_U, cfg.n_layers, 5)
    small = core.SMALL
    device = ref.device
    p = core.random_params({"ln_final.w": (small.d_model,), "ln_final.b": (small.d_model,),
                            "unembed.W_U": (small.d_model, small.d_vocab), "unembed.b_U": (small.d_vocab,)}, 13, device)
    cache = random_cache(small, batch=3, posn=7, seed=14, device=device)
    yield _case("a smaller model with random parameters, position 2", cache, p["ln_final.w"], p["ln_final.b"],
                small.layer_norm_eps, p["unembed.W_U"], p["unembed.b_U"], small.n_layers, 2)


def call_lending_W_U(fn: Callable, args: tuple, test: str, name: str) -> Tensor:
    """`core.call` with the reference's own W_U (args[2]) lent and watched, instead of a 154 MB copy of it.

    `core.call` clones every tensor argument and compares it afterwards; for GPT-2's W_U that is most of
    a check's time. W_U is lent instead, and its version counter (bumped by any in-place write, through
    any view) tells whether the learner wrote into it: then the reference is reloaded and the check fails.
    """
    __tracebackhide__ = True
    W_U = args[2]
    version = W_U._version

    def lend(*rest):
        return fn(*rest[:2], W_U, *rest[2:])

    lend.__name__ = name
    try:
        return core.call(lend, args[:2] + args[3:], test, name)
    finally:
        if W_U._version != version:
            core.reference().reload()
            core.fail(f"{test}: {name} changed W_U in place (the check has reloaded the reference).\nLikely cause: an "
                      "in-place operation such as `W_U[:, token] *= ...` or `.mul_()` on a slice of W_U; write "
                      "`x = W_U[:, token] * ...`, which makes a new tensor.")


def test_logit_lens(logit_lens) -> None:
    """Check logit_lens: ln_final and the unembedding applied to the stream before block 0 and after every block."""
    __tracebackhide__ = True
    fn = core.expect_function(logit_lens, "logit_lens", TEST)
    cases = []
    for case in logit_lens_cases():
        cases.append(case)
        cache, w, b, eps, W_U, b_U, n_layers, position = case.inputs
        copies = {k: v.clone() for k, v in cache.items()}  # the learner never sees the reference's own tensors
        ln_final = _LnFinal(w, b, case.cfg).to(W_U.device)
        out = call_lending_W_U(fn, (copies, ln_final, W_U, b_U, n_layers, position), TEST, "logit_lens")
        core.vet_output(out, case.expected, case.dims, TEST, "the output", SHAPE_HINTS)
        mismatch = core.compare(out, case.expected)
        if mismatch is not None:
            core.explain(TEST, "the logit-lens", case, out, mismatch)
    core.passed(TEST, core.summary(cases))
