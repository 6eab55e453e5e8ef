"""Notebook 16's checks: RMSNorm, RoPE, SwiGLU, grouped-query attention, a modern block and model.

Every expected output comes from Hugging Face's own Llama (`transformers.models.llama.modeling_llama`):
`LlamaRMSNorm`, `LlamaRotaryEmbedding` with `apply_rotary_pos_emb`, `LlamaMLP`, `LlamaAttention`,
`LlamaDecoderLayer` and `LlamaForCausalLM`, built offline from a small `LlamaConfig` with seeded random
weights (`c1p1.modern.random_llama`) and converted to the course's names by `c1p1.modern.LLAMA_NAMES`.
Each check runs the notebook's default `ModernConfig` and two smaller ones whose every size (and theta,
and eps) differs, so a hard-coded number is caught. The mistakes are computed by the small formulas
below (`rms_norm`, `rope_angles`, `apply_rope`, `swiglu`, `gqa`, `block`, `model`), one keyword per
mistake.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from c1p1.checks import core
from c1p1.checks.core import Advice, Case, Mistake
from c1p1.modern import ModernConfig, causal_mask_for_hf, llama_config, params_from_llama, random_llama, sub_params

# The notebook's model, and two smaller ones whose every size differs (the second has d_model != n_heads * d_head).
DEFAULT = ModernConfig()
SMALL_A = ModernConfig(d_model=72, d_vocab=61, n_ctx=32, d_head=12, d_mlp=200, n_heads=6, n_kv_heads=3, n_layers=2,
                       rope_theta=500000.0, rms_norm_eps=1e-5)
SMALL_B = ModernConfig(d_model=48, d_vocab=53, n_ctx=32, d_head=16, d_mlp=128, n_heads=4, n_kv_heads=2, n_layers=1,
                       rope_theta=1000.0)
CONFIGS = ((DEFAULT, "the default config"), (SMALL_A, "a smaller config (d_model=72, 6 + 3 heads, d_head=12, theta=5e5)"),
           (SMALL_B, "a smaller config (d_model=48, 4 + 2 heads, d_head=16, theta=1e3)"))
FIELDS = "cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.rope_theta, ..."
LOAD_HINT = "The names are those of the map from Hugging Face's Llama printed in the notebook (LLAMA_NAMES)."


def _load(test: str):
    """Load strictly, with a first line that names the Llama map instead of GPT-2."""

    def load(module, case: Case) -> None:
        __tracebackhide__ = True
        core.load_strict(module, case.params, test, LOAD_HINT,
                         intro=f"{test}: the parameters of {type(module).__name__} do not match the names and shapes "
                               "that the map from Hugging Face's Llama gives.")

    return load


_BUILT: dict[tuple, object] = {}


def llama(cfg: ModernConfig, seed: int):
    """Hugging Face's model of a config with seeded random weights, built once per kernel and device."""
    device = device_of_course()
    key = (repr(cfg), seed, str(device))
    if key not in _BUILT:
        _BUILT[key] = random_llama(cfg, seed, device)
    return _BUILT[key]


def device_of_course() -> torch.device:
    """The course's one device (what reference.device is); these checks need no GPT-2, so none is loaded."""
    from c1p1.reference import pick_device

    return pick_device()


def hf_modules():
    from transformers.models.llama import modeling_llama

    return modeling_llama


# ------------------------------------------------------------------------------- the formulas


def rms_norm(x: Tensor, w: Tensor, eps: float, *, centre=False, eps_outside=False, no_weight=False,
             add_weight=False, one_plus_w=False, divide_by=None, std=False) -> Tensor:
    """RMSNorm, and each of its mistakes (``divide_by``: the number the sum of squares is divided by)."""
    x32 = x.float()  # (..., d_model)
    if centre:
        x32 = x32 - x32.mean(-1, keepdim=True)  # (..., d_model)
    if std:
        mean_square = x32.var(-1, keepdim=True)  # (..., 1): the unbiased variance, centred
    elif divide_by is not None:
        mean_square = x32.pow(2).sum(-1, keepdim=True) / divide_by  # (..., 1)
    else:
        mean_square = x32.pow(2).mean(-1, keepdim=True)  # (..., 1)
    normed = x32 / (mean_square.sqrt() + eps) if eps_outside else x32 * torch.rsqrt(mean_square + eps)  # (..., d_model)
    normed = normed.to(x.dtype)
    if no_weight:
        return normed
    if one_plus_w:
        return normed * (1 + w)  # (..., d_model)
    return normed + w if add_weight else normed * w  # (..., d_model)


def rope_angles(positions: Tensor, d_head: int, theta: float, *, layout="halves", exponent=2.0, sign=-1.0,
                per_feature=False, denominator=None) -> Tensor:
    """The angle of every feature at every position: (posn, d_head); ``denominator`` replaces d_head in the exponent."""
    if per_feature:
        freqs = theta ** (-torch.arange(d_head, device=positions.device, dtype=torch.float32) / d_head)  # (d_head,)
        return positions.float()[:, None] * freqs  # (posn, d_head)
    k = torch.arange(d_head // 2, device=positions.device, dtype=torch.float32)  # (d_head/2,)
    freqs = theta ** (sign * exponent * k / (denominator or d_head))  # (d_head/2,)
    half = positions.float()[:, None] * freqs  # (posn, d_head/2)
    return torch.cat([half, half], dim=-1) if layout == "halves" else half.repeat_interleave(2, dim=-1)


def rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)  # (..., d_head/2) each
    return torch.cat([-second, first], dim=-1)  # (..., d_head)


def rotate_neighbours(x: Tensor) -> Tensor:
    even, odd = x[..., 0::2], x[..., 1::2]  # (..., d_head/2) each
    return torch.stack([-odd, even], dim=-1).flatten(-2)  # (..., d_head)


def apply_rope(x: Tensor, theta: float, offset: int = 0, *, convention="halves", table=None, sign=1.0,
               no_offset=False, shift=0, denominator=None) -> Tensor:
    """RoPE on (batch, posn, heads, d_head), and each of its mistakes (``shift``: positions off by that much)."""
    posn = x.shape[1]
    start = (0 if no_offset else offset) + shift
    positions = torch.arange(start, start + posn, device=x.device)  # (posn,)
    angles = rope_angles(positions, x.shape[-1], theta, layout=table or convention,
                         denominator=denominator)  # (posn, d_head)
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]  # (posn, 1, d_head)
    rotated = rotate_half(x) if convention == "halves" else rotate_neighbours(x)  # (batch, posn, heads, d_head)
    return x * cos + sign * rotated * sin  # (batch, posn, heads, d_head)


def swiglu(x: Tensor, p: dict[str, Tensor], *, swapped=False, activation="silu", both=False,
           after_product=False, added=False) -> Tensor:
    gate, up = x @ p["W_gate"], x @ p["W_in"]  # (batch, posn, d_mlp) each
    if swapped:
        gate, up = up, gate
    act = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu, "sigmoid": torch.sigmoid, "none": lambda t: t}[activation]
    if added:
        return (act(gate) + up) @ p["W_out"]  # (batch, posn, d_model)
    hidden = act(gate * up) if after_product else act(gate) * (act(up) if both else up)  # (batch, posn, d_mlp)
    return hidden @ p["W_out"]  # (batch, posn, d_model)


def gqa(x: Tensor, p: dict[str, Tensor], cfg: ModernConfig, *, rope="qk", grouping="interleave", scale_by=None,
        causal=True, convention="halves", theta=None, denominator=None, flat_rope=False) -> Tensor:
    """Grouped-query attention, and each of its mistakes (``flat_rope``: RoPE over all heads' features at once)."""
    q = torch.einsum("bpm,nmh->bpnh", x, p["W_Q"])  # (batch, posn, n_heads, d_head)
    k = torch.einsum("bpm,nmh->bpnh", x, p["W_K"])  # (batch, posn, n_kv_heads, d_head)
    v = torch.einsum("bpm,nmh->bpnh", x, p["W_V"])  # (batch, posn, n_kv_heads, d_head)

    def rot(t: Tensor) -> Tensor:
        if flat_rope:  # one "head" of n * d_head features, rotated, then split into heads again
            flat = t.flatten(-2)[:, :, None, :]  # (batch, posn, 1, n * d_head)
            return apply_rope(flat, theta or cfg.rope_theta, convention=convention).view(t.shape)
        return apply_rope(t, theta or cfg.rope_theta, convention=convention, denominator=denominator)

    q, k, v = (rot(t) if name in rope else t for name, t in (("q", q), ("k", k), ("v", v)))
    group = cfg.n_heads // cfg.n_kv_heads
    if grouping == "interleave":
        k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)  # (batch, posn, n_heads, d_head)
    else:
        k, v = k.repeat(1, 1, group, 1), v.repeat(1, 1, group, 1)  # (batch, posn, n_heads, d_head)
    scores = torch.einsum("bqnh,bknh->bnqk", q, k)  # (batch, n_heads, query_pos, key_pos)
    if scale_by != "none":
        scores = scores / math.sqrt(scale_by or cfg.d_head)
    if causal:
        posn = x.shape[1]
        strict = causal == "strict"  # the mistake that hides the diagonal too, with the lowest float (no NaN)
        future = torch.ones(posn, posn, dtype=torch.bool, device=x.device).triu(0 if strict else 1)  # (query_pos, key_pos)
        scores = scores.masked_fill(future, torch.finfo(scores.dtype).min if strict else float("-inf"))
    pattern = scores.softmax(dim=-1)  # (batch, n_heads, query_pos, key_pos)
    z = torch.einsum("bnqk,bknh->bqnh", pattern, v)  # (batch, posn, n_heads, d_head)
    return torch.einsum("bqnh,nhm->bqm", z, p["W_O"])  # (batch, posn, d_model)


def block(x: Tensor, p: dict[str, Tensor], cfg: ModernConfig, *, arrangement="pre", swap_norms=False) -> Tensor:
    """The modern block (pre-norm, RMSNorm, GQA, SwiGLU), and each of its mistakes."""
    eps = cfg.rms_norm_eps
    ln1, ln2 = (p["ln2.w"], p["ln1.w"]) if swap_norms else (p["ln1.w"], p["ln2.w"])
    attn = sub_params(p, "attn.")
    mlp = sub_params(p, "mlp.")
    if arrangement == "post":
        mid = rms_norm(x + gqa(x, attn, cfg), ln1, eps)  # (batch, posn, d_model)
        return rms_norm(mid + swiglu(mid, mlp), ln2, eps)
    if arrangement == "normed_residual":
        normed = rms_norm(x, ln1, eps)  # (batch, posn, d_model)
        mid = normed + gqa(normed, attn, cfg)  # (batch, posn, d_model)
        normed = rms_norm(mid, ln2, eps)  # (batch, posn, d_model)
        return normed + swiglu(normed, mlp)
    if arrangement == "parallel":
        return x + gqa(rms_norm(x, ln1, eps), attn, cfg) + swiglu(rms_norm(x, ln2, eps), mlp)
    attn_out = gqa(rms_norm(x, ln1, eps), attn, cfg)  # (batch, posn, d_model)
    if arrangement == "no_attn_residual":
        mid = attn_out
    else:
        mid = x + attn_out  # (batch, posn, d_model)
    mlp_out = swiglu(rms_norm(mid, ln2, eps), mlp)  # (batch, posn, d_model)
    return mlp_out if arrangement == "no_mlp_residual" else mid + mlp_out


def model(tokens: Tensor, p: dict[str, Tensor], cfg: ModernConfig, *, final_norm=True, tied=False,
          scale_embed=False, layers=None, norm_each=False, log_probs=False) -> Tensor:
    """The whole modern model's logits, and each of its mistakes (``layers``: the blocks run, in order)."""
    resid = p["embed.W_E"][tokens]  # (batch, posn, d_model)
    if scale_embed:
        resid = resid * math.sqrt(cfg.d_model)
    for i in range(cfg.n_layers) if layers is None else layers:
        resid = block(resid, sub_params(p, f"blocks.{i}."), cfg)  # (batch, posn, d_model)
        if norm_each:
            resid = rms_norm(resid, p["ln_final.w"], cfg.rms_norm_eps)
    if final_norm and not norm_each:
        resid = rms_norm(resid, p["ln_final.w"], cfg.rms_norm_eps)
    logits = resid @ (p["embed.W_E"].T if tied else p["unembed.W_U"])  # (batch, posn, d_vocab)
    return logits.log_softmax(dim=-1) if log_probs else logits


# ------------------------------------------------------------------------------------ RMSNorm

RMS_TEST = "test_rms_norm"
RMS_FALLBACK = (
    "1) divide by the root of the mean of the squares over the last dimension, without subtracting the mean; "
    "2) eps goes inside the root: torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg.rms_norm_eps); "
    "3) multiply by self.w at the end (there is no bias)."
)


def rms_mistakes(x: Tensor, w: Tensor, cfg: ModernConfig):
    eps = cfg.rms_norm_eps
    return lambda: [
        Mistake("the mean is subtracted first, as LayerNorm does. RMSNorm does not centre: divide x itself by "
                "sqrt(mean(x**2) + eps).", lambda: rms_norm(x, w, eps, centre=True)),
        Mistake("eps is added outside the root: x / (sqrt(mean(x**2)) + eps). It goes inside, "
                "x * torch.rsqrt(mean(x**2) + eps), which matters when a position's values are small.",
                lambda: rms_norm(x, w, eps, eps_outside=True)),
        Mistake("the weight self.w is never used. Multiply the normalised x by self.w.",
                lambda: rms_norm(x, w, eps, no_weight=True)),
        Mistake("self.w is added instead of multiplied. RMSNorm only scales: return normalised * self.w.",
                lambda: rms_norm(x, w, eps, add_weight=True)),
        Mistake("eps is not this config's rms_norm_eps: read self.cfg.rms_norm_eps instead of a number.",
                lambda: rms_norm(x, w, 1e-6 if eps != 1e-6 else 1e-5)),
        Mistake("the weight is applied as (1 + w), Gemma's convention (Gemma stores its norm weights as offsets "
                "from 1). Llama multiplies by w itself: normalised * self.w.",
                lambda: rms_norm(x, w, eps, one_plus_w=True)),
        Mistake(f"the sum of squares is divided by {DEFAULT.d_model}, but this config's d_model is {cfg.d_model}. "
                "Take the mean over the last dimension, .mean(dim=-1, keepdim=True), or read self.cfg.d_model, "
                "instead of a number.", lambda: rms_norm(x, w, eps, divide_by=DEFAULT.d_model)),
        Mistake("it divides by the standard deviation (x.std or x.var), which subtracts the mean first. RMSNorm "
                "divides by the root of the mean of the squares of x itself: sqrt(mean(x**2) + eps).",
                lambda: rms_norm(x, w, eps, std=True)),
        Mistake("the squares are summed, not averaged: take .mean(dim=-1, keepdim=True) of x**2, not .sum.",
                lambda: rms_norm(x, w, eps, divide_by=1)),
    ]


def rms_input(cfg: ModernConfig, seed: int, device) -> Tensor:
    """Rows of very different sizes (some tiny, so eps matters) around a mean of 1 (so centring shows)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(2, 8, cfg.d_model, generator=gen)  # (2, 8, d_model)
    scale = torch.logspace(-3.5, 0.5, 8)[None, :, None]  # (1, 8, 1): position 0 tiny, position 7 large
    return ((noise + 1.0) * scale).to(device)  # (2, 8, d_model)


def rms_cases() -> list[Case]:
    hf = hf_modules()
    out = []
    for n, (cfg, label) in enumerate(CONFIGS[:2]):
        hf_model = llama(cfg, 1600 + n)
        norm = hf_model.model.layers[0].input_layernorm
        x = rms_input(cfg, 1610 + n, norm.weight.device)  # (2, 8, d_model)
        ref_norm = hf.LlamaRMSNorm(cfg.d_model, eps=cfg.rms_norm_eps).to(x.device)
        ref_norm.load_state_dict(norm.state_dict())
        with torch.no_grad():
            expected = ref_norm(x)  # (2, 8, d_model)
        w = sub_params(params_from_llama(hf_model), "blocks.0.ln1.")["w"]
        out.append(Case(f"{label}, LlamaRMSNorm with eps={cfg.rms_norm_eps:g}", cfg, {"w": w}, (x,), expected,
                        ("batch", "posn", "d_model"), rms_mistakes(x, w, cfg), RMS_FALLBACK))
    return out


def test_rms_norm(RMSNorm) -> None:
    """Check an RMSNorm class against Hugging Face's LlamaRMSNorm."""
    __tracebackhide__ = True
    cls = core.expect_module_class(RMSNorm, "RMSNorm", RMS_TEST)
    cases = rms_cases()
    core.run_cases(RMS_TEST, cls, cases, fields=FIELDS, load=_load(RMS_TEST))
    core.passed(RMS_TEST, core.summary(cases))


# ---------------------------------------------------------------------------------- RoPE angles

ANGLES_TEST = "test_rope_angles"
ANGLES_FALLBACK = (
    "1) d_head // 2 frequencies theta ** (-2k / d_head) for k = 0 .. d_head/2 - 1; "
    "2) the angle is position * frequency, for the positions given; "
    "3) Hugging Face's layout repeats the block of frequencies: torch.cat([angles, angles], dim=-1)."
)
NEIGHBOURS_TABLE = (
    "the table is in the neighbours' layout (each frequency twice in a row, repeat_interleave), the layout of "
    "the RoFormer paper and Meta's original code. Hugging Face pairs feature k with feature k + d_head/2, so its "
    "table is the d_head/2 angles followed by the same again: torch.cat([angles, angles], dim=-1)."
)


def angle_mistakes(positions: Tensor, d_head: int, theta: float):
    return lambda: [
        Mistake(NEIGHBOURS_TABLE, lambda: rope_angles(positions, d_head, theta, layout="neighbours")),
        Mistake("the exponent is k / d_head; it is 2k / d_head (k counts pairs of features, 0 .. d_head/2 - 1): "
                "theta ** (-2 * k / d_head), or theta ** (-torch.arange(0, d_head, 2) / d_head).",
                lambda: rope_angles(positions, d_head, theta, exponent=1.0)),
        Mistake("the frequencies grow instead of shrinking: theta ** (+2k / d_head). The first pair turns by one "
                "radian per position and the others more slowly: theta ** (-2k / d_head).",
                lambda: rope_angles(positions, d_head, theta, sign=1.0)),
        Mistake("every feature has its own frequency (d_head of them). Features rotate in pairs, and the two of a "
                "pair share one angle: d_head // 2 frequencies, each used twice.",
                lambda: rope_angles(positions, d_head, theta, per_feature=True)),
        Mistake(f"the exponent divides by d_head - 2 = {d_head - 2}, so that the last pair turns at exactly 1/theta. "
                f"It divides by d_head = {d_head}: theta ** (-2k / d_head), k = 0 .. d_head/2 - 1, and the last pair "
                "turns a little faster than 1/theta.", lambda: rope_angles(positions, d_head, theta, denominator=d_head - 2)),
        Mistake(f"the wrong theta: this case's theta is {theta:g}. Use the theta you are given, not 10000.",
                lambda: rope_angles(positions, d_head, 10000.0 if theta != 10000.0 else 500000.0)),
        Mistake("the positions are ignored: the angles start at 0. Multiply the positions you are given (with a "
                "cache they start at the offset) by the frequencies.",
                lambda: rope_angles(torch.arange(len(positions), device=positions.device), d_head, theta)),
    ]


def angle_cases() -> list[Case]:
    hf = hf_modules()
    device = device_of_course()
    out = []
    for (cfg, label), start, posn in zip(CONFIGS, (0, 40, 5), (12, 9, 20), strict=True):
        rotary = hf.LlamaRotaryEmbedding(llama_config(cfg)).to(device)
        positions = torch.arange(start, start + posn, device=device)  # (posn,)
        half = positions.float()[:, None] * rotary.inv_freq.float()[None, :]  # (posn, d_head/2): HF's own frequencies
        expected = torch.cat([half, half], dim=-1)  # (posn, d_head): the table behind HF's cos and sin
        out.append(Case(f"{label}, positions {start}..{start + posn - 1}", cfg, None, (positions, cfg.d_head, cfg.rope_theta),
                        expected, ("posn", "d_head"), angle_mistakes(positions, cfg.d_head, cfg.rope_theta),
                        ANGLES_FALLBACK, first_position=start))
    return out


ANGLE_SHAPE_HINTS = (
    (lambda got, want: len(got) == 2 and got[0] == want[0] and 2 * got[1] == want[1],
     "one column per pair: the table has one angle per feature, the d_head/2 angles and then the same again "
     "(torch.cat([angles, angles], dim=-1))."),
)


def test_rope_angles(rope_angles) -> None:
    """Check rope_angles(positions, d_head, theta) against Hugging Face's LlamaRotaryEmbedding."""
    __tracebackhide__ = True
    fn = core.expect_function(rope_angles, "rope_angles", ANGLES_TEST)
    cases = angle_cases()
    core.run_cases(ANGLES_TEST, fn, cases, "the angle table", ANGLE_SHAPE_HINTS)
    core.passed(ANGLES_TEST, core.summary(cases))


# ---------------------------------------------------------------------------------- applying RoPE

ROPE_TEST = "test_apply_rope"
ROPE_FALLBACK = (
    "1) Hugging Face's convention: x * cos + rotate_half(x) * sin, where rotate_half(x) = cat(-x2, x1) of the two "
    "halves of d_head; 2) the positions are offset .. offset + posn - 1; 3) cos and sin (posn, d_head) need a "
    "heads dimension to line up with x: cos[:, None, :]."
)
ROPE_ADVICE = Advice(error=lambda exc: (
    "Likely cause: cos and sin are (posn, d_head) but x is (batch, posn, n_heads, d_head); give them a heads "
    "dimension, cos[:, None, :], so that they broadcast over batch and heads."
    if isinstance(exc, RuntimeError) and "size of tensor" in str(exc) else ""))


def rope_mistakes(x: Tensor, theta: float, offset: int):
    return lambda: [
        Mistake("RoPE in the other convention: neighbouring features (0, 1), (2, 3), ... rotate together, as in the "
                "RoFormer paper and Meta's code. Hugging Face's Llama rotates feature k with feature k + d_head/2: "
                "x * cos + rotate_half(x) * sin. The two differ by a permutation of each head's features, which "
                "Hugging Face applies to W_Q and W_K when it converts Meta's weights.",
                lambda: apply_rope(x, theta, offset, convention="neighbours")),
        Mistake("the rotation pairs the halves (rotate_half) but the angle table is in the neighbours' layout. "
                "Use the table of rope_angles (the d_head/2 angles, then the same again).",
                lambda: apply_rope(x, theta, offset, table="neighbours")),
        Mistake("the rotation pairs neighbours but the angle table is in the halves' layout; Hugging Face's "
                "convention is the halves on both: x * cos + rotate_half(x) * sin.",
                lambda: apply_rope(x, theta, offset, convention="neighbours", table="halves")),
        Mistake(f"the positions are not offset: with a cache the new positions are {offset} .. "
                f"{offset + x.shape[1] - 1}, not 0 .. {x.shape[1] - 1}. Use torch.arange(offset, offset + posn).",
                lambda: apply_rope(x, theta, offset, no_offset=True)),
        Mistake("the rotation goes the wrong way (x * cos - rotate_half(x) * sin, or rotate_half as cat(x2, -x1)). "
                "rotate_half(x) = torch.cat([-x2, x1], dim=-1), and it is added: x * cos + rotate_half(x) * sin.",
                lambda: apply_rope(x, theta, offset, sign=-1.0)),
        Mistake(f"the positions start at offset + 1 = {offset + 1}: the first of x's positions is the offset itself "
                f"({offset}), then {offset + 1}, ...: torch.arange(offset, offset + posn).",
                lambda: apply_rope(x, theta, offset, shift=1)),
        Mistake(f"the wrong theta: this case's theta is {theta:g}. Pass theta on to rope_angles instead of 10000.",
                lambda: apply_rope(x, 10000.0 if theta != 10000.0 else 500000.0, offset)),
        Mistake("x comes back unrotated. Multiply by cos and add rotate_half(x) times sin.", lambda: x),
        Mistake("each head is rotated by its head index instead of each position by its position: the table was "
                "built for x.shape[2] (the heads) and broadcast over the heads' axis. Build it for the posn positions "
                "offset .. offset + posn - 1 and give it a heads axis, cos[:, None, :].",
                lambda: apply_rope(x.transpose(1, 2), theta, offset).transpose(1, 2)),
    ]


def rope_cases() -> list[Case]:
    hf = hf_modules()
    device = device_of_course()
    out = []
    settings = ((0, 9, 0, 2), (0, 3, 13, 2), (1, 7, 5, 3), (2, 10, 0, 2))  # (config, posn, offset, heads)
    for n, (which, posn, offset, heads) in enumerate(settings):
        cfg, label = CONFIGS[which]
        rotary = hf.LlamaRotaryEmbedding(llama_config(cfg)).to(device)
        x = core.random_input((2, posn, heads, cfg.d_head), seed=1620 + n, device=device)  # (batch, posn, heads, d_head)
        position_ids = torch.arange(offset, offset + posn, device=device)[None]  # (1, posn)
        cos, sin = rotary(x, position_ids)  # (1, posn, d_head) each
        rotated, _ = hf.apply_rotary_pos_emb(x.transpose(1, 2), x.transpose(1, 2), cos, sin)  # (batch, heads, posn, d_head)
        expected = rotated.transpose(1, 2)  # (batch, posn, heads, d_head)
        where = f"offset {offset} (positions {offset}..{offset + posn - 1}, as with a cache)" if offset else "offset 0"
        out.append(Case(f"{label}, {heads} heads, {where}", cfg, None, (x, cfg.rope_theta, offset), expected,
                        ("batch", "posn", "head_index", "d_head"), rope_mistakes(x, cfg.rope_theta, offset),
                        ROPE_FALLBACK, first_position=offset))
    return out


def test_apply_rope(apply_rope) -> None:
    """Check apply_rope(x, theta, offset) against Hugging Face's apply_rotary_pos_emb."""
    __tracebackhide__ = True
    fn = core.expect_function(apply_rope, "apply_rope", ROPE_TEST)
    cases = rope_cases()
    core.run_cases(ROPE_TEST, fn, cases, "the rotated tensor", advice=ROPE_ADVICE)
    core.passed(ROPE_TEST, core.summary(cases))


# ---------------------------------------------------------------------------------------- SwiGLU

SWIGLU_TEST = "test_swiglu"
SWIGLU_FALLBACK = (
    "1) two maps up, W_gate and W_in, and SiLU on the gate's only: silu(x @ W_gate) * (x @ W_in); "
    "2) then down: @ W_out; 3) no biases."
)
SWIGLU_SHAPE_HINTS = (
    (lambda got, want: len(got) == len(want) and got[:-1] == want[:-1] and got[-1] != want[-1],
     "the last dimension is the hidden width d_mlp: multiply the gated hidden layer by W_out (d_mlp -> d_model)."),
)


def swiglu_mistakes(x: Tensor, p: dict[str, Tensor]):
    return lambda: [
        Mistake("the gate and the up projection are swapped: SiLU is on x @ W_in. It goes on the gate: "
                "silu(x @ W_gate) * (x @ W_in) (Hugging Face's gate_proj is W_gate, up_proj is W_in).",
                lambda: swiglu(x, p, swapped=True)),
        Mistake("SiLU is applied to both branches. Only the gate goes through it; the up branch stays linear.",
                lambda: swiglu(x, p, both=True)),
        Mistake("the activation is GELU; SwiGLU gates with SiLU (x * sigmoid(x), F.silu).",
                lambda: swiglu(x, p, activation="gelu")),
        Mistake("the activation is ReLU; SwiGLU gates with SiLU (x * sigmoid(x), F.silu).",
                lambda: swiglu(x, p, activation="relu")),
        Mistake("the gate is a bare sigmoid (that is GLU); SwiGLU uses SiLU, x * sigmoid(x).",
                lambda: swiglu(x, p, activation="sigmoid")),
        Mistake("there is no activation (a bilinear layer): apply F.silu to x @ W_gate.",
                lambda: swiglu(x, p, activation="none")),
        Mistake("SiLU is applied after the product, silu(gate * up). The gate alone goes through SiLU, and then "
                "multiplies the up branch: silu(x @ W_gate) * (x @ W_in).", lambda: swiglu(x, p, after_product=True)),
        Mistake("the gate is added to the up branch. A gate multiplies, element by element: "
                "silu(x @ W_gate) * (x @ W_in).", lambda: swiglu(x, p, added=True)),
    ]


def swiglu_cases() -> list[Case]:
    out = []
    for n, (cfg, label) in enumerate(CONFIGS[:2]):
        hf_model = llama(cfg, 1600 + n)
        hf_mlp = hf_model.model.layers[0].mlp
        x = core.random_input((2, 7, cfg.d_model), seed=1630 + n, device=hf_mlp.up_proj.weight.device, scale=1.5)  # (2, 7, d_model)
        with torch.no_grad():
            expected = hf_mlp(x)  # (2, 7, d_model)
        p = sub_params(params_from_llama(hf_model), "blocks.0.mlp.")
        out.append(Case(f"{label}, LlamaMLP (d_mlp={cfg.d_mlp})", cfg, p, (x,), expected, ("batch", "posn", "d_model"),
                        swiglu_mistakes(x, p), SWIGLU_FALLBACK))
    return out


def test_swiglu(SwiGLU) -> None:
    """Check a SwiGLU class against Hugging Face's LlamaMLP."""
    __tracebackhide__ = True
    cls = core.expect_module_class(SwiGLU, "SwiGLU", SWIGLU_TEST)
    cases = swiglu_cases()
    core.run_cases(SWIGLU_TEST, cls, cases, shape_hints=SWIGLU_SHAPE_HINTS, fields=FIELDS, load=_load(SWIGLU_TEST))
    core.passed(SWIGLU_TEST, core.summary(cases))


# -------------------------------------------------------------------------- grouped-query attention

GQA_TEST = "test_grouped_query_attention"
GQA_FALLBACK = (
    "1) RoPE on the queries and the keys (apply_rope with self.cfg.rope_theta), not on the values; "
    "2) query head h reads key-value head h // (n_heads // n_kv_heads): repeat_interleave, not repeat; "
    "3) scores divided by sqrt(d_head), causal mask, softmax over the keys; 4) W_O sums the heads."
)


def gqa_mistakes(x: Tensor, p: dict[str, Tensor], cfg: ModernConfig):
    group = cfg.n_heads // cfg.n_kv_heads
    return lambda: [
        Mistake(f"the query heads are grouped the wrong way: query head h reads key-value head h % n_kv_heads "
                f"(torch.repeat, or .repeat(1, 1, {group}, 1)). Query heads 0..{group - 1} share key-value head 0, "
                f"the next {group} share head 1, ...: h // {group}, which is repeat_interleave({group}, dim=2) "
                "(Hugging Face's repeat_kv does the same with expand and reshape).",
                lambda: gqa(x, p, cfg, grouping="repeat")),
        Mistake(f"the scores are divided by sqrt(d_model) = {math.sqrt(cfg.d_model):.3g}. Divide by sqrt(d_head) = "
                f"{math.sqrt(cfg.d_head):.3g}: the dot products are over one head's d_head features.",
                lambda: gqa(x, p, cfg, scale_by=cfg.d_model)),
        Mistake(f"the scores are not scaled. Divide by sqrt(d_head) = {math.sqrt(cfg.d_head):.3g} before the mask.",
                lambda: gqa(x, p, cfg, scale_by="none")),
        Mistake("RoPE is applied to the values too. Only queries and keys are rotated: the rotation is there to "
                "make the scores depend on relative position; the values carry content.",
                lambda: gqa(x, p, cfg, rope="qkv")),
        Mistake("RoPE is applied to the queries only. Rotate the keys too, each by its own position; then the "
                "score depends on the distance between query and key.", lambda: gqa(x, p, cfg, rope="q")),
        Mistake("RoPE is applied to the keys only. Rotate the queries too, each by its own position.",
                lambda: gqa(x, p, cfg, rope="k")),
        Mistake("there is no RoPE: the model has no other position information. Rotate queries and keys with "
                "apply_rope(q, self.cfg.rope_theta) before the scores.", lambda: gqa(x, p, cfg, rope="")),
        Mistake("RoPE in the other convention (neighbouring pairs): Hugging Face's Llama rotates the halves of "
                "each head, as apply_rope does. Use apply_rope.", lambda: gqa(x, p, cfg, convention="neighbours")),
        Mistake(f"the wrong theta: this config's rope_theta is {cfg.rope_theta:g}. Pass self.cfg.rope_theta.",
                lambda: gqa(x, p, cfg, theta=10000.0 if cfg.rope_theta != 10000.0 else 500000.0)),
        Mistake("there is no causal mask: each position sees the future. Set the scores above the diagonal to "
                "-inf before the softmax.", lambda: gqa(x, p, cfg, causal=False)),
        Mistake("the mask also hides the diagonal, each query's own key (position 0 then has no key at all). Mask "
                "only the keys after the query: the scores strictly above the diagonal.",
                lambda: gqa(x, p, cfg, causal="strict")),
        Mistake(f"the RoPE frequencies use d_model = {cfg.d_model} in the exponent, theta ** (-2k / d_model). RoPE "
                f"rotates within each head, so the exponent is -2k / d_head (d_head = {cfg.d_head}): call apply_rope "
                "on q and k shaped (batch, posn, heads, d_head).",
                lambda: gqa(x, p, cfg, denominator=cfg.d_model)),
        Mistake("RoPE is applied to all heads' features at once (n_heads * d_head), before the heads are split. "
                "Each head is rotated on its own: shape q and k as (batch, posn, heads, d_head) first, then "
                "apply_rope.", lambda: gqa(x, p, cfg, flat_rope=True)),
    ]


def hf_layer_inputs(cfg: ModernConfig, x: Tensor):
    """What LlamaModel hands each layer: (cos, sin) for positions 0..posn-1, and the causal mask."""
    hf = hf_modules()
    rotary = hf.LlamaRotaryEmbedding(llama_config(cfg)).to(x.device)
    positions = torch.arange(x.shape[1], device=x.device)[None]  # (1, posn)
    return rotary(x, positions), causal_mask_for_hf(x.shape[1], x.device)


GQA_SHAPE_HINTS = (
    (lambda got, want: len(got) == 4, "the output is per head: multiply z by W_O and sum over the heads "
     "(einsum 'b p n h, n h m -> b p m') to get back to (batch, posn, d_model)."),
)


def gqa_cases() -> list[Case]:
    out = []
    for n, (cfg, label) in enumerate(CONFIGS):
        hf_model = llama(cfg, 1600 + n)
        attn = hf_model.model.layers[0].self_attn
        x = core.random_input((2, 9, cfg.d_model), seed=1640 + n, device=attn.q_proj.weight.device)  # (2, 9, d_model)
        position_embeddings, mask = hf_layer_inputs(cfg, x)
        with torch.no_grad():
            expected, _ = attn(x, position_embeddings=position_embeddings, attention_mask=mask)  # (2, 9, d_model)
        p = sub_params(params_from_llama(hf_model), "blocks.0.attn.")
        out.append(Case(f"{label}, LlamaAttention ({cfg.n_heads} query heads, {cfg.n_kv_heads} key-value heads)", cfg, p,
                        (x,), expected, ("batch", "posn", "d_model"), gqa_mistakes(x, p, cfg), GQA_FALLBACK))
    return out


def _gqa_verdict(case: Case, out: Tensor, module) -> None:
    """The default verdict, after one look for the NaN that a mask hiding the diagonal gives position 0."""
    __tracebackhide__ = True
    if out.shape == case.expected.shape and out.is_floating_point():
        bad = ~torch.isfinite(out)  # (batch, posn, d_model)
        if bool(bad[:, 0].all()) and not bool(bad[:, 1:].any()):
            core.fail(f"{GQA_TEST} FAILED on {case.label}: the output is NaN at position 0, and only there.\n"
                      "Likely cause: the mask also hides the diagonal, each query's own key, so position 0 has no "
                      "key left and its softmax row is all -inf. Mask only the keys after the query: the scores "
                      "strictly above the diagonal (triu with diagonal=1).")
    core.judge(GQA_TEST, case, out, shape_hints=GQA_SHAPE_HINTS)


def test_grouped_query_attention(GroupedQueryAttention) -> None:
    """Check a GroupedQueryAttention class against Hugging Face's LlamaAttention."""
    __tracebackhide__ = True
    cls = core.expect_module_class(GroupedQueryAttention, "GroupedQueryAttention", GQA_TEST)
    cases = gqa_cases()
    core.run_cases(GQA_TEST, cls, cases, shape_hints=GQA_SHAPE_HINTS, fields=FIELDS, load=_load(GQA_TEST),
                   verify=_gqa_verdict)
    core.passed(GQA_TEST, core.summary(cases))


# ------------------------------------------------------------------------------------ the block

BLOCK_TEST = "test_modern_block"
BLOCK_FALLBACK = (
    "1) pre-norm: resid + attn(ln1(resid)), then + mlp(ln2(...)); 2) ln1 before attention, ln2 before the MLP; "
    "3) each sublayer adds to the stream it read."
)


def block_mistakes(x: Tensor, p: dict[str, Tensor], cfg: ModernConfig):
    return lambda: [
        Mistake("the norms come after the additions (post-norm, the original Transformer). Llama, like GPT-2, "
                "normalises a copy before each sublayer: resid + attn(ln1(resid)).",
                lambda: block(x, p, cfg, arrangement="post")),
        Mistake("attention and the MLP both read the block's input (a parallel block, as in GPT-J). Here the MLP "
                "reads the stream after attention has added to it.", lambda: block(x, p, cfg, arrangement="parallel")),
        Mistake("ln1 and ln2 are swapped: ln1 goes before attention, ln2 before the MLP.",
                lambda: block(x, p, cfg, swap_norms=True)),
        Mistake("the attention's residual connection is missing: add attn(ln1(resid)) to resid.",
                lambda: block(x, p, cfg, arrangement="no_attn_residual")),
        Mistake("the MLP's residual connection is missing: add mlp(ln2(resid_mid)) to resid_mid.",
                lambda: block(x, p, cfg, arrangement="no_mlp_residual")),
        Mistake("each sublayer's output is added to the normalised copy, ln(resid) + sublayer(ln(resid)). The norm "
                "makes a copy for the sublayer to read; the output is added to the stream itself: "
                "resid + attn(ln1(resid)).", lambda: block(x, p, cfg, arrangement="normed_residual")),
    ]


def block_cases() -> list[Case]:
    out = []
    for n, (cfg, label) in enumerate(CONFIGS[:2]):
        hf_model = llama(cfg, 1600 + n)
        layer = hf_model.model.layers[0]
        x = core.random_input((2, 9, cfg.d_model), seed=1650 + n, device=layer.mlp.up_proj.weight.device)  # (2, 9, d_model)
        position_embeddings, mask = hf_layer_inputs(cfg, x)
        with torch.no_grad():
            expected = layer(x, attention_mask=mask, position_embeddings=position_embeddings)  # (2, 9, d_model)
        p = sub_params(params_from_llama(hf_model), "blocks.0.")
        out.append(Case(f"{label}, LlamaDecoderLayer", cfg, p, (x,), expected, ("batch", "posn", "d_model"),
                        block_mistakes(x, p, cfg), BLOCK_FALLBACK))
    return out


def test_modern_block(ModernBlock) -> None:
    """Check a ModernBlock class against Hugging Face's LlamaDecoderLayer."""
    __tracebackhide__ = True
    cls = core.expect_module_class(ModernBlock, "ModernBlock", BLOCK_TEST)
    cases = block_cases()
    core.run_cases(BLOCK_TEST, cls, cases, fields=FIELDS, load=_load(BLOCK_TEST))
    core.passed(BLOCK_TEST, core.summary(cases))


# ------------------------------------------------------------------------------------ the model

MODEL_TEST = "test_modern_transformer"
MODEL_FALLBACK = (
    "1) embed (no position embedding: RoPE is inside attention), then every block in order; "
    "2) the final RMSNorm ln_final; 3) the untied unembedding: @ self.unembed.W_U."
)


def model_mistakes(tokens: Tensor, p: dict[str, Tensor], cfg: ModernConfig):
    return lambda: [
        Mistake("the final RMSNorm (ln_final) is missing: normalise the stream after the last block, before W_U.",
                lambda: model(tokens, p, cfg, final_norm=False)),
        Mistake("the logits use W_E.T (tied embeddings, as GPT-2 does). This model's unembedding is its own "
                "matrix: unembed.W_U.", lambda: model(tokens, p, cfg, tied=True)),
        Mistake(f"the embeddings are multiplied by sqrt(d_model) = {math.sqrt(cfg.d_model):.3g}. Gemma does that; "
                "Llama does not.", lambda: model(tokens, p, cfg, scale_embed=True)),
        Mistake("the output is the log-softmax of the logits (log-probabilities). Return the logits themselves, "
                "W_U's output: the loss applies the log-softmax.", lambda: model(tokens, p, cfg, log_probs=True)),
        Mistake(f"only the first block runs; this config has {cfg.n_layers}. Run every block of self.blocks, in "
                "order, each on the previous one's output.", lambda: model(tokens, p, cfg, layers=[0])),
        Mistake("the blocks run in reverse order: blocks[0] reads the embeddings, and the last block comes last.",
                lambda: model(tokens, p, cfg, layers=list(reversed(range(cfg.n_layers))))),
        Mistake("ln_final is applied after every block. It is applied once, after the last block, before W_U; "
                "each block normalises its own copies inside.", lambda: model(tokens, p, cfg, norm_each=True)),
    ]


def model_cases() -> list[Case]:
    out = []
    for n, (cfg, label) in enumerate(CONFIGS[:2]):
        hf_model = llama(cfg, 1600 + n)
        device = hf_model.lm_head.weight.device
        tokens = core.random_tokens((2, 11), cfg.d_vocab, seed=1660 + n, device=device)  # (2, 11)
        with torch.no_grad():
            expected = hf_model(tokens).logits  # (2, 11, d_vocab)
        p = params_from_llama(hf_model)
        out.append(Case(f"{label}, LlamaForCausalLM with {cfg.n_layers} layers", cfg, p, (tokens,), expected,
                        ("batch", "posn", "d_vocab"), model_mistakes(tokens, p, cfg), MODEL_FALLBACK))
    return out


def test_modern_transformer(ModernTransformer) -> None:
    """Check a ModernTransformer class against Hugging Face's LlamaForCausalLM, its parameters loaded by the map."""
    __tracebackhide__ = True
    cls = core.expect_module_class(ModernTransformer, "ModernTransformer", MODEL_TEST)
    cases = model_cases()
    core.run_cases(MODEL_TEST, cls, cases, "the logits", fields=FIELDS, load=_load(MODEL_TEST))
    core.passed(MODEL_TEST, core.summary(cases))
