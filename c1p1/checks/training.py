"""Checks for notebook 11 (training): get_batch, init_weights, configure_optimizer, lr_at, train_step, estimate_loss.

Each check runs the learner's function on small, seeded inputs and compares what it gives with the course's
own answer (``c1p1.parts.p11_training``), or with properties every correct answer has (random windows may
be drawn in any order). A list of named mistakes turns a wrong answer into its likely cause.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from c1p1.checks import core
from c1p1.config import Config

# A small model: fast, with biases and LayerNorm parameters randomised so that no mistake hides.
TINY = Config(d_model=32, d_vocab=50, n_ctx=16, d_head=8, d_mlp=128, n_heads=4, n_layers=2)


def _device() -> torch.device:
    from c1p1.reference import pick_device

    return pick_device()


def _demo(cfg: Config, seed: int, device: torch.device) -> nn.Module:
    from c1p1.parts import DemoTransformer

    model = DemoTransformer(cfg)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    model.load_state_dict(core.random_params(shapes, seed, core.PREFLIGHT), strict=True)
    return model.to(device).train()


def _call(fn: Callable, args: tuple, test: str, what: str, hint: str = ""):
    """Run the learner's function; their exception becomes a message that shows their line."""
    __tracebackhide__ = True
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - the learner's error, shown with their line
        core.learner_raised(test, what, exc, hint)


TENSOR_LOSS = "`return loss` instead of `return loss.item()` (a tensor keeps the whole graph alive)."


def _as_float(value: object, test: str, what: str, cause: str = TENSOR_LOSS) -> float:
    __tracebackhide__ = True
    if isinstance(value, Tensor):
        core.fail(f"{test}: {what} returned a tensor; it should return a Python float.\nLikely cause: {cause}")
    if not isinstance(value, float | int) or isinstance(value, bool):
        core.fail(f"{test}: {what} returned {core.describe(value)}; it should return a float. Did you forget `return`?")
    return float(value)


# ------------------------------------------------------------------------------------------- get_batch

PAST_END = ("Likely cause: a window that runs past the end of the data. The last start must leave block_size "
            "tokens for x and one more for y: draw starts from range(len(data) - block_size).")


def _batch(fn: Callable, data: Tensor, batch_size: int, block_size: int, seed: int, test: str,
           hint: str = "") -> tuple[Tensor, Tensor]:
    __tracebackhide__ = True
    out = _call(fn, (data, batch_size, block_size, torch.Generator().manual_seed(seed)), test, "get_batch", hint)
    if not isinstance(out, tuple | list) or len(out) != 2 or not all(isinstance(t, Tensor) for t in out):
        core.fail(f"{test}: get_batch returned {core.describe(out)}; it should return two tensors, (x, y).")
    x, y = out
    for name, t in (("x", x), ("y", y)):
        if tuple(t.shape) != (batch_size, block_size):
            core.fail(f"{test}: {name} has shape {tuple(t.shape)}, expected (batch={batch_size}, block={block_size}).\n"
                      "Likely cause: stack one window of block_size tokens per row, batch_size rows.")
        if t.dtype != torch.int64:
            core.fail(f"{test}: {name} has dtype {t.dtype}; token ids must stay int64 (index data, do not convert).")
        if t.device != data.device:
            core.fail(f"{test}: {name} is on {t.device} but data is on {data.device}.\n"
                      "Likely cause: a tensor made without device=...; build the indices on data.device.")
    return x, y


def _windows(test: str, x: Tensor, y: Tensor) -> None:
    """On data = arange(n) every row of x is consecutive and y is x plus one, on every probe."""
    __tracebackhide__ = True
    if not bool((x[:, 1:] - x[:, :-1] == 1).all()):
        core.fail(f"{test}: the rows of x are not windows of consecutive tokens of data.\n"
                  "Likely cause: each row should be data[start : start + block_size] for one random start.")
    if torch.equal(y, x):
        core.fail(f"{test}: y equals x.\nLikely cause: the targets are not shifted. y is the same window one token "
                  "later, data[start + 1 : start + block_size + 1]: each position's target is the next token.")
    if not torch.equal(y, x + 1):
        wrong = (y != x + 1).any(dim=1)  # (batch,) rows whose y is not x shifted by one
        row = int(wrong.nonzero()[0])
        shifts = sorted({int(v) for v in (y[row] - x[row]).unique()})
        off = (y[row] != x[row] + 1).nonzero().flatten()  # positions of the row whose target is wrong
        if int(off[0]) > 0 and bool((y[row, int(off[0]):] == y[row, int(off[0]) - 1]).all()):
            core.fail(f"{test}: in row {row} of {len(x)}, y is x shifted by one only up to position "
                      f"{int(off[0]) - 1}; after that it repeats the data's last token.\n{PAST_END}")
        if len(shifts) == 1 and abs(shifts[0]) <= 3:
            what = f"y is x shifted by {shifts[0]} token(s), not by one (row {row} of {len(x)})"
        else:
            what = (f"in row {row} of {len(x)}, y is not x shifted by one token "
                    "(y and x come from different windows)")
        core.fail(f"{test}: {what}.\n"
                  "Likely cause: y should be data[start + 1 : start + block_size + 1], the next token at each "
                  "position, with the same start as x's row.")


def test_get_batch(get_batch) -> None:
    """Check get_batch: shapes, windows inside the data, y one token after x, reproducible, every start reachable."""
    __tracebackhide__ = True
    test = "test_get_batch"
    fn = core.expect_function(get_batch, "get_batch", test)
    n, block = 500, 16
    data = torch.arange(n)  # token i is i, so every window shows where it came from; on the CPU first
    x, y = _batch(fn, data, 64, block, 0, test)
    _windows(test, x, y)
    short = torch.arange(block + 5)  # only 5 valid starts, 0 to 4: a window past the end is drawn at once
    xs, ys = _batch(fn, short, 256, block, 1, test, PAST_END)
    if int(ys.max()) > block + 4 or int(xs.min()) < 0:
        core.fail(f"{test}: a window runs past the end of the data.\n{PAST_END}")
    _windows(test, xs, ys)
    drawn = set(xs[:, 0].tolist())
    never = [s for s in range(5) if s not in drawn]
    if never:
        which = ("the last valid start" if never == [4] else "the first start" if never == [0]
                 else "start(s) " + ", ".join(str(s) for s in never))
        cause = ("the high end of torch.randint is exclusive: draw from torch.randint(len(data) - block_size, ...) "
                 "so that start len(data) - block_size - 1 can be drawn; it still leaves one token for y."
                 if never == [4] else "the starts must begin at 0 (the first window is data[0 : block_size])."
                 if never == [0] else
                 "the starts must be uniform over every position that leaves a full window and its target, "
                 "torch.randint(len(data) - block_size, ...).")
        core.fail(f"{test}: with len(data) = {block + 5} and block_size = {block} the valid starts are 0 to 4, but "
                  f"256 draws never started at {which} (they started at {sorted(drawn)}).\nLikely cause: {cause}")
    again = _batch(fn, data, 64, block, 0, test)
    if not (torch.equal(again[0], x) and torch.equal(again[1], y)):
        core.fail(f"{test}: two calls with generators of the same seed gave different batches.\n"
                  "Likely cause: the starts come from the global random state; pass generator=generator to torch.randint.")
    other = _batch(fn, data, 64, block, 1, test)
    _windows(test, *other)
    if torch.equal(other[0], x):
        core.fail(f"{test}: generators with different seeds gave the same batch.\n"
                  "Likely cause: the starts do not come from the generator (or are not random at all).")
    xw, yw = _batch(fn, data, 4000, block, 2, test)
    _windows(test, xw, yw)
    starts = xw[:, 0]  # (4000,)
    last = n - block - 1
    covered = starts.unique().numel() / (last + 1)
    if int(starts.min()) > 2 or int(starts.max()) < last - 2 or covered < 0.9:
        core.fail(f"{test}: the windows are not spread over the whole data: 4,000 of them started between "
                  f"{int(starts.min())} and {int(starts.max())} and covered {100 * covered:.0f}% of the {last + 1} "
                  f"possible starts (0 to {last}).\n"
                  "Likely cause: the starts must be uniform over every position that leaves a full window, "
                  "torch.randint(len(data) - block_size, ...).")
    device = _device()
    if device != core.PREFLIGHT:  # the same draws, now indexing on the course's device
        _windows(test, *(t.to(core.PREFLIGHT) for t in _batch(fn, data.to(device), 64, block, 0, test)))
    core.passed(test, "windows of consecutive tokens, y one token later on every draw, never past the end, every "
                "valid start reachable, reproducible with the generator, starts spread over the whole data.")


# ---------------------------------------------------------------------------------------- init_weights


def test_init_weights(init_weights) -> None:
    """Check init_weights: N(0, init_range) weights, W_O and W_out scaled by 1/sqrt(2 n_layers), zero biases, unit LN."""
    __tracebackhide__ = True
    test = "test_init_weights"
    fn = core.expect_function(init_weights, "init_weights", test)
    from c1p1.parts import DemoTransformer

    cfg = Config(d_model=192, d_vocab=300, n_ctx=128, d_head=48, d_mlp=768, n_heads=4, n_layers=4, init_range=0.03)
    model = DemoTransformer(cfg).to(_device())
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.7)  # anything the learner leaves alone stands out
    torch.manual_seed(0)
    _call(fn, (model,), test, "init_weights")
    residual = cfg.init_range / math.sqrt(2 * cfg.n_layers)
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        values = p.detach().float()
        if leaf.startswith("W_"):
            want = residual if leaf in ("W_O", "W_out") else cfg.init_range
            std, mean = float(values.std()), float(values.mean())
            if abs(std / want - 1) < 0.05 and abs(mean) < 4 * want / math.sqrt(values.numel()) + 1e-6:
                continue
            first = f"{test}: {name} has mean {mean:.4g} and std {std:.4g}; expected mean 0 and std {want:.4g}."
            if std < 1e-6 and math.isclose(mean, 0.7, rel_tol=1e-3):
                cause = "it was not initialised at all."
            elif leaf in ("W_O", "W_out") and abs(std / cfg.init_range - 1) < 0.05:
                cause = (f"the projections that write to the residual stream (W_O, W_out) are not scaled down: "
                         f"use std init_range / sqrt(2 * n_layers) = {residual:.4g} for them.")
            elif leaf in ("W_O", "W_out") and abs(std / (cfg.init_range / math.sqrt(cfg.n_layers)) - 1) < 0.05:
                cause = ("dividing by sqrt(n_layers): each layer writes to the residual stream twice (attention, "
                         "then the MLP), so GPT-2 divides by sqrt(2 * n_layers).")
            elif abs(std / residual - 1) < 0.05:
                cause = "every weight was scaled down; only W_O and W_out (the residual writers) are."
            elif abs(std / 0.02 - 1) < 0.05:
                cause = f"std 0.02 hard-coded; use model.cfg.init_range (this model's is {cfg.init_range})."
            else:
                cause = "draw it with torch.nn.init.normal_(p, mean=0.0, std=...) (or p.normal_(0.0, std))."
            core.fail(first + "\nLikely cause: " + cause)
        else:
            want = 1.0 if leaf == "w" else 0.0
            if not bool((values == want).all()):
                kind = "a LayerNorm scale" if leaf == "w" else "a bias" if leaf.startswith("b_") else "a LayerNorm shift"
                core.fail(f"{test}: {name} ({kind}) is not all {want:g} (it holds values between "
                          f"{float(values.min()):.3g} and {float(values.max()):.3g}).\n"
                          f"Likely cause: GPT-2 starts every bias and LayerNorm shift at 0 and every LayerNorm scale "
                          f"at 1; set {name.rsplit('.', 1)[-1]} with fill_({want:g}).")
    core.passed(test, f"every W_ ~ N(0, {cfg.init_range}) with W_O and W_out at {residual:.4g} = init_range / "
                f"sqrt(2 * {cfg.n_layers}), biases 0, LayerNorm scales 1 (a 4-layer model, init_range {cfg.init_range}).")


# --------------------------------------------------------------------------------- configure_optimizer


def test_configure_optimizer(configure_optimizer) -> None:
    """Check configure_optimizer: AdamW, decay on every W_ matrix (embeddings too), none on biases or LayerNorm."""
    __tracebackhide__ = True
    test = "test_configure_optimizer"
    fn = core.expect_function(configure_optimizer, "configure_optimizer", test)
    model = _demo(TINY, 0, _device())
    lr, weight_decay = 3e-3, 0.1
    optimizer = _call(fn, (model, lr, weight_decay), test, "configure_optimizer")
    if not isinstance(optimizer, torch.optim.AdamW):
        core.fail(f"{test}: configure_optimizer returned {core.describe(optimizer)}; it should return a "
                  "torch.optim.AdamW built from the two parameter groups.")
    decay_of: dict[int, list[float]] = {}
    for group in optimizer.param_groups:
        if not math.isclose(group["lr"], lr):
            core.fail(f"{test}: a parameter group has lr {group['lr']:g}; expected the lr passed in, {lr:g}.")
        if tuple(group["betas"]) != (0.9, 0.99):
            core.fail(f"{test}: AdamW's betas are {tuple(group['betas'])}; expected (0.9, 0.99).\n"
                      "Likely cause: betas left at PyTorch's default (0.9, 0.999); with small batches the second "
                      "moment should forget faster: pass betas=(0.9, 0.99).")
        for p in group["params"]:
            decay_of.setdefault(id(p), []).append(group["weight_decay"])
    names = dict(model.named_parameters())
    twice = [n for n, p in names.items() if len(decay_of.get(id(p), [])) > 1]
    missing = [n for n, p in names.items() if id(p) not in decay_of]
    if twice:
        core.fail(f"{test}: {', '.join(twice)} appear(s) in more than one parameter group.\n"
                  "Likely cause: each parameter belongs to exactly one group, with decay or without.")
    if missing:
        core.fail(f"{test}: {', '.join(missing)} are in no parameter group, so AdamW would never train them.\n"
                  "Likely cause: the two groups together must hold every parameter of the model.")
    decayed = {n for n, p in names.items() if decay_of[id(p)][0] > 0}
    for n in decayed:
        if not math.isclose(decay_of[id(names[n])][0], weight_decay):
            core.fail(f"{test}: {n} has weight decay {decay_of[id(names[n])][0]:g}; expected {weight_decay:g}.")
    should = {n for n in names if n.rsplit(".", 1)[-1].startswith("W_")}
    wrong_on = sorted(decayed - should)
    wrong_off = sorted(should - decayed)
    if wrong_on:
        two_d_biases = [n for n in wrong_on if n.rsplit(".", 1)[-1] in ("b_Q", "b_K", "b_V")]
        if two_d_biases and set(wrong_on) == set(two_d_biases):
            cause = ("choosing by p.dim() >= 2: in TransformerLens's layout b_Q, b_K and b_V are 2-D "
                     "(n_heads, d_head) but they are biases. Choose by role (the name), not by shape.")
        else:
            cause = ("weight decay on biases or LayerNorm parameters. Decay pulls every value towards 0: "
                     "a LayerNorm scale pulled to 0 silences its features, and biases hold no "
                     "interactions to regularise. Decay only the W_ matrices.")
        core.fail(f"{test}: weight decay is applied to {', '.join(wrong_on)}.\nLikely cause: {cause}")
    if wrong_off:
        cause = ("embeddings left out: follow nanoGPT and decay W_E and W_pos as well (every W_ matrix)."
                 if set(wrong_off) <= {"embed.W_E", "pos_embed.W_pos", "unembed.W_U"}
                 else "decay every weight matrix, whose names start with W_ (W_E, W_pos, W_Q, W_K, W_V, W_O, "
                      "W_in, W_out, W_U).")
        core.fail(f"{test}: no weight decay on {', '.join(wrong_off)}.\nLikely cause: {cause}")
    core.passed(test, f"AdamW, betas (0.9, 0.99), lr {lr:g}; decay {weight_decay:g} on the {len(should)} W_ matrices, "
                f"none on the {len(names) - len(should)} biases and LayerNorm parameters.")


# ---------------------------------------------------------------------------------------------- lr_at

LR_CASES = ((10, 100, 1e-3, 1e-4), (4, 30, 3e-3, 3e-4), (1, 12, 2.0, 0.5))


def _lr_mistakes(warmup: int, max_steps: int, max_lr: float, min_lr: float, steps: list[int]) -> list[core.Mistake]:
    def cosine(s: int, end: float = min_lr, span: int = max_steps - warmup, start: int = warmup) -> float:
        progress = min((s - start) / span, 1.0)
        return end + (max_lr - end) * 0.5 * (1 + math.cos(math.pi * progress))

    def schedule(warm: Callable[[int], float], decay: Callable[[int], float], boundary: int = warmup,
                 stop: bool = False, stop_at: int = max_steps) -> Callable[[], Tensor]:
        # as fractions of max_lr, like the comparison; stop=True: min_lr from stop_at on (an early return)
        def lr(s: int) -> float:
            if s < boundary:
                return warm(s)
            return min_lr if stop and s >= stop_at else decay(s)

        return lambda: torch.tensor([lr(s) for s in steps], dtype=torch.float64) / max_lr

    right_warm = lambda s: max_lr * (s + 1) / warmup  # noqa: E731
    named = [
        ("the warm-up is off by one step: at step 0 the learning rate should already be max_lr / warmup_steps "
         "(step + 1 steps done), reaching max_lr at step warmup_steps - 1.",
         dict(warm=lambda s: max_lr * s / warmup, decay=cosine)),
        ("the warm-up is off by one step: (step + 1) / warmup_steps, not (step + 1) / (warmup_steps + 1).",
         dict(warm=lambda s: max_lr * (s + 1) / (warmup + 1), decay=cosine)),
        ("the warm-up boundary is off by one: the warm-up runs while step <= warmup_steps, so at step warmup_steps the "
         "rate is max_lr * (warmup_steps + 1) / warmup_steps, above max_lr. Warm up while step < warmup_steps.",
         dict(warm=right_warm, decay=cosine, boundary=warmup + 1)),
        ("the cosine decays to 0 instead of min_lr: lr = min_lr + (max_lr - min_lr) * (1 + cos(pi * progress)) / 2.",
         dict(warm=right_warm, decay=lambda s: cosine(s, end=0.0))),
        ("progress is divided by max_steps: it must be (step - warmup_steps) / (max_steps - warmup_steps), so that "
         "it runs from 0 to 1 over the decay and the cosine reaches min_lr at max_steps.",
         dict(warm=right_warm, decay=lambda s: cosine(s, span=max_steps))),
        ("progress is counted from step 0 (step / max_steps): it must run over the decay only, (step - warmup_steps) "
         "/ (max_steps - warmup_steps).", dict(warm=right_warm, decay=lambda s: cosine(s, span=max_steps, start=0))),
        ("the cosine ends one step early: progress = (step - warmup_steps) / (max_steps - warmup_steps), not "
         "/ (max_steps - warmup_steps - 1); it reaches 1, and the rate min_lr, at max_steps.",
         dict(warm=right_warm, decay=lambda s: cosine(s, span=max(max_steps - warmup - 1, 1)))),
    ]
    out = [core.Mistake(cause, schedule(**kw, stop=stop)) for cause, kw in named for stop in (True, False)]
    out.append(core.Mistake("min_lr is reached one step early, at step max_steps - 1: return min_lr when step >= "
                            "max_steps (not step >= max_steps - 1, nor step > max_steps - 1); the cosine itself gets "
                            "there at max_steps.", schedule(right_warm, cosine, stop=True, stop_at=max_steps - 1)))
    out.append(core.Mistake("after max_steps the learning rate should stay at min_lr (the cosine keeps going past its "
                            "end).", schedule(right_warm, lambda s: min_lr + (max_lr - min_lr) * 0.5
                                              * (1 + math.cos(math.pi * (s - warmup) / (max_steps - warmup))))))
    return out


LR_TENSOR = ("the rate is computed with tensors (torch.cos, torch.tensor, torch.pi on a tensor), so it comes out "
             "as a tensor: use math.cos and math.pi on Python numbers, or return float(...).")
LR_FALLBACK = ("linear warm-up max_lr * (step + 1) / warmup_steps while step < warmup_steps; then "
               "min_lr + (max_lr - min_lr) * (1 + cos(pi * progress)) / 2 with progress = "
               "(step - warmup_steps) / (max_steps - warmup_steps); min_lr from max_steps on.")


def test_lr_at(lr_at) -> None:
    """Check lr_at: linear warm-up (step 0 already learns), cosine from max_lr to min_lr at max_steps, then min_lr."""
    __tracebackhide__ = True
    test = "test_lr_at"
    fn = core.expect_function(lr_at, "lr_at", test)
    from c1p1.parts.p11_training import lr_at as canonical

    labels = []
    for warmup, max_steps, max_lr, min_lr in LR_CASES:
        steps = list(range(max_steps + 5))
        got = [_as_float(_call(fn, (s, warmup, max_steps, max_lr, min_lr), test, f"lr_at({s}, ...)"), test, "lr_at", LR_TENSOR)
               for s in steps]
        expected = [canonical(s, warmup, max_steps, max_lr, min_lr) for s in steps]
        label = f"warmup_steps={warmup}, max_steps={max_steps}, max_lr={max_lr:g}, min_lr={min_lr:g}"
        labels.append(label)
        out = torch.tensor(got, dtype=torch.float64) / max_lr  # (steps,): fractions of max_lr
        want = torch.tensor(expected, dtype=torch.float64) / max_lr  # (steps,)
        mismatch = core.compare(out, want)
        if mismatch is None:
            continue
        s = mismatch.index[0]
        wrong = int((~torch.isclose(out, want, atol=core.ATOL, rtol=core.RTOL)).sum())
        first = (f"{test} FAILED on {label}: your rate is wrong at {wrong} of the {len(steps)} steps 0 to "
                 f"{steps[-1]}; the worst is step {s}: yours {got[s]:.4g}, expected {expected[s]:.4g} "
                 f"(off by {mismatch.max_error:.2g} x max_lr).")
        best, best_distance = None, float("inf")
        for mistake in _lr_mistakes(warmup, max_steps, max_lr, min_lr, steps):
            candidate = mistake.output()  # (steps,)
            distance = float((out - candidate).abs().max())
            if core.matches(out, candidate) and distance < 0.2 * mismatch.max_error and distance < best_distance:
                best, best_distance = mistake, distance
        core.fail(first + ("\nLikely cause: " + best.cause if best is not None
                           else "\nLikely cause: the schedule differs from " + LR_FALLBACK))
    core.passed(test, f"{len(labels)} schedules match at every step: " + "; ".join(labels) + ".")


# ------------------------------------------------------------------------------------------ train_step


def _reference_steps(model: nn.Module, make_optimizer: Callable, batches, max_grad_norm: float, variant: str = ""):
    """The course's train_step (or a named mistake of it) run over `batches`; returns the losses and the model."""
    model = copy.deepcopy(model)
    optimizer = make_optimizer(model)
    losses = []
    for x, y in batches:
        logits = model(x)  # (batch, block, d_vocab)
        target = x if variant == "targets_x" else y  # (batch, block)
        if variant == "shift_twice":  # y shifted once more: logits[:, :-1] against y[:, 1:]
            logits, target = logits[:, :-1], y[:, 1:]  # (batch, block - 1, d_vocab), (batch, block - 1)
        elif variant == "shift_x":  # notebook 09's shift of the input: logits[:, :-1] against x[:, 1:]
            logits, target = logits[:, :-1], x[:, 1:]  # (batch, block - 1, d_vocab), (batch, block - 1)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum" if variant == "sum" else "mean")
        loss.backward()
        if variant == "clip_each":
            for p in model.parameters():
                torch.nn.utils.clip_grad_norm_([p], max_grad_norm)
        elif variant == "clip_value":
            torch.nn.utils.clip_grad_value_(model.parameters(), max_grad_norm)
        elif variant not in ("clip_after", "no_clip"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        if variant != "no_step":
            optimizer.step()
        if variant == "clip_after":
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        if variant != "no_zero_grad":
            optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses, model


TRAIN_STEP_MISTAKES = {
    "no_zero_grad": "the gradients are never zeroed, so each step adds to the last one's: call "
                    "optimizer.zero_grad() after optimizer.step() (or before the backward pass).",
    "clip_after": "the gradients are clipped after optimizer.step() (or not at all): clip between "
                  "loss.backward() and optimizer.step(), so the step uses the clipped gradients.",
    "no_clip": "the gradients are not clipped: call torch.nn.utils.clip_grad_norm_(model.parameters(), "
               "max_grad_norm) before optimizer.step().",
    "targets_x": "the loss compares the logits with x instead of y: the target at each position is the next token.",
    "shift_twice": "the targets are shifted a second time (logits[:, :-1] against y[:, 1:]): get_batch already made "
                   "y the next token at every position, so compare logits with y as they are, position for position.",
    "shift_x": "the targets are x shifted by one (logits[:, :-1] against x[:, 1:]), which drops the last position's "
               "target: y already holds the next token at every position, so compare logits with y.",
    "clip_each": "each parameter's gradient is clipped on its own (clip_grad_norm_ once per tensor): clip all of "
                 "them together, in one call on model.parameters(), so that the norm is that of the whole gradient.",
    "clip_value": "clip_grad_value_ clamps each gradient entry to max_grad_norm; clip by the norm instead: "
                  "torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm) rescales the whole gradient.",
    "no_step": "the parameters never change: call optimizer.step() after the backward pass.",
    "sum": "the loss is summed over positions instead of averaged: take the mean.",
}


WIPED = ("optimizer.step() ran, but the gradients were already zeroed (optimizer.zero_grad() between "
         "loss.backward() and optimizer.step()), so the step had nothing to apply. The order is: backward, clip, "
         "step, then zero_grad (or zero_grad first, before the forward pass).")


def _watch_steps(optimizer: torch.optim.Optimizer) -> list[bool]:
    """Record, at each optimizer.step(), whether any gradient was there and non-zero."""
    seen: list[bool] = []
    step = optimizer.step

    def watched(*args, **kwargs):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        seen.append(any(p.grad is not None and bool(p.grad.detach().ne(0).any()) for p in params))
        return step(*args, **kwargs)

    optimizer.step = watched  # an instance attribute, for this check only
    return seen


def test_train_step(train_step) -> None:
    """Check train_step: the same losses and the same parameters as the course's step, over two steps."""
    __tracebackhide__ = True
    test = "test_train_step"
    fn = core.expect_function(train_step, "train_step", test)
    device = _device()
    gen = torch.Generator().manual_seed(3)
    batches = [(torch.randint(TINY.d_vocab, (4, 12), generator=gen).to(device),
                torch.randint(TINY.d_vocab, (4, 12), generator=gen).to(device)) for _ in range(2)]
    setups = (("SGD (lr 0.5) with max_grad_norm 0.05, where clipping matters", 0.05,
               lambda m: torch.optim.SGD(m.parameters(), lr=0.5)),
              # eps 1e-3: Adam divides by the gradient's size, so without it the float noise in gradients that are
              # 0 in exact arithmetic (b_K's) would become full-size steps and tell correct variants apart
              ("AdamW (lr 0.01, weight decay 0.1) with max_grad_norm 1.0", 1.0,
               lambda m: torch.optim.AdamW(m.parameters(), lr=0.01, weight_decay=0.1, eps=1e-3)))
    for label, max_grad_norm, make_optimizer in setups:
        start = _demo(TINY, 5, device)
        losses, expected = _reference_steps(start, make_optimizer, batches, max_grad_norm)
        model = copy.deepcopy(start)
        optimizer = make_optimizer(model)
        grads_at_step = _watch_steps(optimizer)
        got = [_as_float(_call(fn, (model, optimizer, x.clone(), y.clone(), max_grad_norm), test, "train_step"),
                         test, "train_step") for x, y in batches]
        own, ref = dict(model.named_parameters()), dict(expected.named_parameters())
        error = max(float((own[n] - ref[n]).detach().abs().max()) for n in ref)
        loss_ok = all(math.isclose(g, e, rel_tol=1e-4, abs_tol=1e-5) for g, e in zip(got, losses, strict=True))
        if loss_ok and error < 1e-5:
            continue
        what = (f"the losses returned were {', '.join(f'{v:.5g}' for v in got)}, expected "
                f"{', '.join(f'{v:.5g}' for v in losses)}" if not loss_ok else "the losses match")
        first = (f"{test} FAILED with {label}: after two steps {what}; the parameters differ from the course's "
                 f"step by up to {error:.3g}.")
        if grads_at_step and not any(grads_at_step):
            core.fail(first + "\nLikely cause: " + WIPED)
        for variant, cause in TRAIN_STEP_MISTAKES.items():
            v_losses, v_model = _reference_steps(start, make_optimizer, batches, max_grad_norm, variant)
            v_params = dict(v_model.named_parameters())
            v_error = max(float((own[n] - v_params[n]).detach().abs().max()) for n in ref)
            v_loss_ok = all(math.isclose(g, e, rel_tol=1e-4, abs_tol=1e-5) for g, e in zip(got, v_losses, strict=True))
            if v_error < 1e-5 and v_loss_ok:
                core.fail(first + "\nLikely cause: " + cause)
        core.fail(first + "\nLikely causes, most likely first: the loss is not the mean cross-entropy of the logits "
                  "against y; clipping is not between backward and step; the gradients are not zeroed each step.")
    core.passed(test, "two steps give the course's losses and parameters, with SGD where clipping matters and with AdamW.")


# --------------------------------------------------------------------------------------- estimate_loss


class _Recorder(nn.Module):
    """Wraps a model; remembers every input it saw and whether it ran in train mode or with gradients."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.seen: list[tuple[Tensor, bool, bool]] = []

    def forward(self, tokens: Tensor) -> Tensor:
        self.seen.append((tokens.detach().clone(), self.training, torch.is_grad_enabled()))
        return self.inner(tokens)


def _estimate(fn: Callable, model: _Recorder, data: Tensor, sizes: tuple[int, int, int], generator: torch.Generator,
              test: str) -> float:
    __tracebackhide__ = True
    model.seen.clear()
    return _as_float(_call(fn, (model, data, *sizes, generator), test, "estimate_loss"), test, "estimate_loss")


def test_estimate_loss(estimate_loss) -> None:
    """Check estimate_loss: the mean loss of n_batches fresh batches drawn with the given generator, in eval mode,
    without gradients, and the model back in the mode it was in (train or eval)."""
    __tracebackhide__ = True
    test = "test_estimate_loss"
    fn = core.expect_function(estimate_loss, "estimate_loss", test)
    device = _device()
    cfg = Config(d_model=32, d_vocab=200, n_ctx=16, d_head=8, d_mlp=128, n_heads=4, n_layers=2)
    model = _Recorder(_demo(cfg, 7, device))
    data = torch.arange(cfg.d_vocab, device=device)  # every window's targets are its tokens plus one
    batch_size, block_size, n_batches = 3, 8, 4
    sizes = (batch_size, block_size, n_batches)
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    value = _estimate(fn, model, data, sizes, generator, test)
    if len(model.seen) != n_batches:
        core.fail(f"{test}: the model ran on {len(model.seen)} batches; expected n_batches = {n_batches}.\n"
                  "Likely cause: loop n_batches times, drawing a fresh batch with get_batch each time.")
    if any(training for _, training, _ in model.seen):
        core.fail(f"{test}: the model ran in train mode.\nLikely cause: call model.eval() before evaluating "
                  "(dropout and similar layers behave differently in training), then restore the mode.")
    if any(grad for _, _, grad in model.seen):
        core.fail(f"{test}: the model ran with gradients enabled.\nLikely cause: evaluate under torch.no_grad() "
                  "(or decorate the function with @torch.no_grad()): without it every batch builds a graph "
                  "for a backward pass that never comes, wasting memory and time.")
    if not model.training:
        core.fail(f"{test}: the model was left in eval mode.\nLikely cause: remember model.training before "
                  "model.eval() and restore it afterwards (model.train(was_training)), or training goes on in eval mode.")
    batches = [x for x, _, _ in model.seen]
    repeats = [(i, j) for i in range(n_batches) for j in range(i) if torch.equal(batches[i], batches[j])]
    if repeats:
        i, j = repeats[0]
        core.fail(f"{test}: batch {i} is the same as batch {j}: the {n_batches} batches are not fresh draws.\n"
                  "Likely cause: get_batch is called once, before the loop, and that one batch is scored "
                  "n_batches times; draw a new batch inside the loop.")
    if torch.equal(generator.get_state(), state):
        core.fail(f"{test}: the generator passed in was never used (its state did not change).\n"
                  "Likely cause: draw the batches with the given generator, get_batch(data, batch_size, "
                  "block_size, generator), not with the global random state or a generator of your own.")
    model.seen.clear()
    with torch.no_grad():
        per_batch = [F.cross_entropy(model.inner(x).flatten(0, 1), (x + 1).flatten()).item() for x in batches]
    expected = sum(per_batch) / n_batches
    if not math.isclose(value, expected, rel_tol=1e-4, abs_tol=1e-5):
        unshifted = sum(F.cross_entropy(model.inner(x).flatten(0, 1), x.flatten()).item()
                        for x in batches) / n_batches
        twice = sum(F.cross_entropy(model.inner(x)[:, :-1].flatten(0, 1), (x + 2)[:, :-1].flatten()).item()
                    for x in batches) / n_batches  # logits[:, :-1] against y[:, 1:]
        dropped = sum(F.cross_entropy(model.inner(x)[:, :-1].flatten(0, 1), x[:, 1:].flatten()).item()
                      for x in batches) / n_batches  # logits[:, :-1] against x[:, 1:]
        if math.isclose(value, unshifted, rel_tol=1e-4):
            cause = "the loss compares the logits with x instead of y."
        elif math.isclose(value, twice, rel_tol=1e-4):
            cause = ("the targets are shifted a second time (logits[:, :-1] against y[:, 1:]): get_batch already "
                     "made y the next token at every position, so compare logits with y as they are.")
        elif math.isclose(value, dropped, rel_tol=1e-4):
            cause = ("the targets are x shifted by one (logits[:, :-1] against x[:, 1:]), which drops the last "
                     "position: y already holds the next token at every position, so compare logits with y.")
        else:
            cause = "return the mean over the n_batches of each batch's mean cross-entropy against y."
        core.fail(f"{test}: estimate_loss returned {value:.5g}, but the batches the model saw give {expected:.5g}.\n"
                  f"Likely cause: {cause}")
    _estimate(fn, model, data, sizes, torch.Generator().manual_seed(0), test)
    same_seed = [x for x, _, _ in model.seen]
    if len(same_seed) != n_batches or not all(torch.equal(a, b) for a, b in zip(same_seed, batches, strict=True)):
        core.fail(f"{test}: two calls with generators of the same seed scored different batches.\n"
                  "Likely cause: the batches come from the global random state; pass the given generator to "
                  "get_batch so that a seed gives the same estimate every time.")
    _estimate(fn, model, data, sizes, torch.Generator().manual_seed(1), test)
    if all(torch.equal(a, b) for a, b in zip([x for x, _, _ in model.seen], batches, strict=False)):
        core.fail(f"{test}: generators with different seeds gave the same batches.\n"
                  "Likely cause: the batches come from a generator of your own (or a fixed seed), not from the "
                  "generator passed in: get_batch(data, batch_size, block_size, generator).")
    model.eval()
    _estimate(fn, model, data, sizes, torch.Generator().manual_seed(2), test)
    if model.training:
        core.fail(f"{test}: the model started in eval mode and came back in train mode.\n"
                  "Likely cause: model.train() at the end switches on training whatever the mode was; remember "
                  "was_training = model.training before model.eval() and end with model.train(was_training).")
    core.passed(test, f"{n_batches} fresh batches from the given generator (the same seed gives the same batches, "
                f"another seed others), in eval mode without gradients, their mean loss {value:.4f}, and the "
                "model back in the mode it was in (train, and eval).")
