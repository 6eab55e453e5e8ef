"""Notebook 11: the corpus and tokenizer, the fast twin of DemoTransformer, checkpoints, and the six checks
(correct variants pass, the stubs are not done, each named mistake is named)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import C1P1_tests as tests
from c1p1 import data as corpus
from c1p1.checks.core import random_params
from c1p1.config import Config
from c1p1.parts import DemoTransformer, configure_optimizer, estimate_loss, get_batch, init_weights, lr_at, train_step
from c1p1.trained import (
    COURSE_RECIPE,
    NANOGPT_RECIPE,
    QUICK_RECIPE,
    FastTransformer,
    Trained,
    load_checkpoint,
    pick_parts,
    save_checkpoint,
    shakespeare_model,
)
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions

SMALL = Config(d_model=48, d_vocab=77, n_ctx=32, d_head=12, d_mlp=192, n_heads=4, n_layers=2)


def randomised(cls, cfg: Config = SMALL, seed: int = 0) -> nn.Module:
    model = cls(cfg)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    model.load_state_dict(random_params(shapes, seed, torch.device("cpu")), strict=True)
    return model


# ---------------------------------------------------------------------------------------- corpus, tokenizer


def test_tokenizer_round_trip_and_vocabulary():
    tok = corpus.CharTokenizer("to be, or not to be\n")
    assert tok.vocab == "".join(sorted(set("to be, or not to be\n"))) and tok.d_vocab == len(tok.vocab)
    ids = tok.encode("not to be")
    assert ids.dtype == torch.int64 and ids.shape == (9,) and ids.device.type == "cpu"
    assert tok.decode(ids) == "not to be" and tok.decode(ids.tolist()) == "not to be"
    with pytest.raises(ValueError, match="not in this tokenizer's vocabulary"):
        tok.encode("Z")


def test_split_is_the_fixed_90_10():
    text = "".join(chr(65 + i % 26) for i in range(1000))
    train, val = corpus.split(text)
    assert train + val == text and len(train) == 900


def test_corpus_is_the_nine_plays():
    text = corpus.load_text()  # `make data` builds it; `make test` runs that first
    tok = corpus.CharTokenizer(text)
    assert 1_100_000 < len(text) < 1_300_000 and tok.d_vocab == 77
    assert text.startswith("ALL'S WELL THAT ENDS WELL") and "gutenberg" not in text.lower()
    assert corpus.prepare(quiet=True) == corpus.corpus_path()  # idempotent, and fast once built


def test_missing_corpus_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("C1P1_CACHE_DIR", str(tmp_path))
    with pytest.raises(corpus.CorpusMissing) as info:
        corpus.load_text()
    assert "make data" in str(info.value) and str(tmp_path) in str(info.value)


# ------------------------------------------------------------------------------------ FastTransformer twin


@pytest.mark.parametrize("posn", [1, 7, 32])
def test_fast_twin_computes_demo_transformers_function(posn):
    fast = randomised(FastTransformer)
    demo = DemoTransformer(SMALL)
    demo.load_state_dict(fast.state_dict(), strict=True)
    tokens = torch.randint(SMALL.d_vocab, (3, posn), generator=torch.Generator().manual_seed(posn))
    targets = torch.randint(SMALL.d_vocab, (3, posn), generator=torch.Generator().manual_seed(posn + 1))
    fast_logits, demo_logits = fast(tokens), demo(tokens)
    torch.testing.assert_close(fast_logits, demo_logits, atol=1e-4, rtol=1e-4)
    losses = [F.cross_entropy(logits.flatten(0, 1), targets.flatten()) for logits in (fast_logits, demo_logits)]
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-5)
    losses[0].backward()
    losses[1].backward()
    demo_grads = dict(demo.named_parameters())
    for name, p in fast.named_parameters():
        torch.testing.assert_close(p.grad, demo_grads[name].grad, atol=1e-4, rtol=1e-3, msg=name)


def test_recipes_share_the_anchor_model_size():
    assert NANOGPT_RECIPE.config(77).d_model == COURSE_RECIPE.config(77).d_model
    assert QUICK_RECIPE.max_steps < COURSE_RECIPE.max_steps


def test_checkpoint_round_trip_loads_strictly_into_demo_transformer(tmp_path):
    model = randomised(FastTransformer)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, SMALL, "abc", 1.5, quick=True)
    assert not list(tmp_path.glob("*.tmp"))
    loaded = load_checkpoint(path, "cpu", fast=False)
    assert type(loaded.model) is DemoTransformer and not loaded.model.training
    assert loaded.tokenizer.vocab == "abc" and loaded.val_loss == 1.5 and loaded.quick and loaded.cfg == SMALL
    tokens = torch.randint(SMALL.d_vocab, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(tokens), model(tokens), atol=1e-4, rtol=1e-4)


def test_shakespeare_model_interface(monkeypatch):
    monkeypatch.setenv("C1P1_QUICK", "1")  # the short recipe: cached once for the whole suite and notebooks 12-14
    trained = shakespeare_model(verbose=False)
    assert isinstance(trained, Trained) and trained.quick and not trained.model.training
    assert trained.cfg.d_vocab == trained.tokenizer.d_vocab and trained.cfg.n_ctx == QUICK_RECIPE.block_size
    assert trained.val_loss < math.log(trained.tokenizer.d_vocab) - 1.5
    demo = DemoTransformer(trained.cfg)
    demo.load_state_dict(trained.model.state_dict(), strict=True)
    tokens = trained.tokenizer.encode("ROMEO.\nWhat").to(next(trained.model.parameters()).device)[None]
    with torch.no_grad():
        torch.testing.assert_close(demo.to(tokens.device)(tokens), trained.model(tokens), atol=1e-4, rtol=1e-4)


def test_pick_parts_replaces_only_the_stubs(capsys):
    def stub(*args):
        raise NotImplementedError()

    use = pick_parts({"get_batch": stub, "lr_at": lr_at})
    assert use.lr_at is lr_at and use.get_batch is get_batch and use.train_step is train_step
    assert "get_batch" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ get_batch


def batch_by_stacking(data, batch_size, block_size, generator):
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[s : s + block_size] for s in starts.tolist()])  # (batch, block)
    y = torch.stack([data[s + 1 : s + block_size + 1] for s in starts.tolist()])  # (batch, block)
    return x, y


def batch_unshifted(data, batch_size, block_size, generator):
    x, _ = get_batch(data, batch_size, block_size, generator)
    return x, x


def batch_past_end(data, batch_size, block_size, generator):
    starts = torch.randint(len(data) - block_size + 1, (batch_size,), generator=generator)
    return (torch.stack([data[s : s + block_size] for s in starts.tolist()]),
            torch.stack([data[s + 1 : s + block_size + 1] for s in starts.tolist()]))


def batch_global_rng(data, batch_size, block_size, generator):
    starts = torch.randint(len(data) - block_size, (batch_size,))
    index = starts[:, None] + torch.arange(block_size)
    return data[index], data[index + 1]


def batch_first_half(data, batch_size, block_size, generator):
    starts = torch.randint(min(len(data) // 2, len(data) - block_size), (batch_size,), generator=generator)
    index = starts[:, None] + torch.arange(block_size)
    return data[index], data[index + 1]


def batch_never_last(data, batch_size, block_size, generator):
    starts = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)  # one start short
    index = starts[:, None] + torch.arange(block_size)
    return data[index], data[index + 1]


def batch_never_first(data, batch_size, block_size, generator):
    starts = 1 + torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
    index = starts[:, None] + torch.arange(block_size)
    return data[index], data[index + 1]


def batch_clamped_past_end(data, batch_size, block_size, generator):
    starts = torch.randint(len(data) - block_size + 1, (batch_size,), generator=generator)
    index = starts[:, None] + torch.arange(block_size)
    return data[index], data[(index + 1).clamp(max=len(data) - 1)]


def batch_y_other_window(data, batch_size, block_size, generator):
    x, _ = get_batch(data, batch_size, block_size, generator)
    _, y = get_batch(data, batch_size, block_size, generator)
    return x, y


def test_get_batch_correct_variant_passes():
    tests.test_get_batch(batch_by_stacking)


@pytest.mark.parametrize("fn, keywords", [
    (batch_unshifted, ["not shifted"]),
    (batch_past_end, ["past the end"]),
    (batch_clamped_past_end, ["past the end", "repeats the data's last token"]),
    (batch_global_rng, ["generator"]),
    (batch_first_half, ["spread", "uniform"]),
    (batch_never_last, ["never started at the last valid start", "exclusive", "len(data) - block_size"]),
    (batch_never_first, ["never started at the first start", "begin at 0"]),
    (batch_y_other_window, ["not x shifted by one", "same start"]),
], ids=["unshifted", "past-end", "clamped-past-end", "global-rng", "first-half", "never-last", "never-first",
        "y-other-window"])
def test_get_batch_mistakes_are_named(fn, keywords):
    fails(tests.test_get_batch, fn, *keywords)


# --------------------------------------------------------------------------------------------- init_weights


@torch.no_grad()
def init_by_module(model):
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name in ("W_O", "W_out"):
                nn.init.normal_(p, std=model.cfg.init_range / (2 * model.cfg.n_layers) ** 0.5)
            elif name.startswith("W_"):
                nn.init.normal_(p, std=model.cfg.init_range)
            elif name == "w":
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)


def init_variant(residual_divisor, everything=False, biases=True, std=None):
    @torch.no_grad()
    def init(model):
        base = std or model.cfg.init_range
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("W_"):
                scaled = everything or leaf in ("W_O", "W_out")
                p.normal_(0.0, base / residual_divisor(model.cfg.n_layers) if scaled else base)
            elif leaf == "w":
                p.fill_(1.0)
            elif biases:
                p.zero_()
    return init


def test_init_weights_correct_variant_passes():
    tests.test_init_weights(init_by_module)


@pytest.mark.parametrize("fn, keywords", [
    (init_variant(lambda n: 1.0), ["not scaled"]),
    (init_variant(lambda n: n ** 0.5), ["sqrt(2 * n_layers)"]),
    (init_variant(lambda n: (2 * n) ** 0.5, everything=True), ["only W_O and W_out"]),
    (init_variant(lambda n: (2 * n) ** 0.5, biases=False), ["bias", "0"]),
    (init_variant(lambda n: (2 * n) ** 0.5, std=0.02), ["hard-coded", "init_range"]),
], ids=["unscaled", "sqrt-n-layers", "all-scaled", "biases-untouched", "hard-coded-0.02"])
def test_init_weights_mistakes_are_named(fn, keywords):
    fails(tests.test_init_weights, fn, *keywords)


# -------------------------------------------------------------------------------------- configure_optimizer


def optimizer_by_role_set(model, lr, weight_decay):
    names = {n for n, _ in model.named_parameters() if n.rsplit(".", 1)[-1].startswith("W_")}
    params = dict(model.named_parameters())
    return torch.optim.AdamW([
        {"params": [params[n] for n in sorted(names)], "weight_decay": weight_decay},
        {"params": [p for n, p in params.items() if n not in names], "weight_decay": 0.0},
    ], lr=lr, betas=(0.9, 0.99))


def optimizer_by_dim(model, lr, weight_decay):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.99))


def optimizer_decay_everything(model, lr, weight_decay):
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99))


def optimizer_no_embeddings(model, lr, weight_decay):
    params = dict(model.named_parameters())
    decay = [n for n in params if n.rsplit(".", 1)[-1].startswith("W_") and "embed" not in n]
    return torch.optim.AdamW([{"params": [params[n] for n in decay], "weight_decay": weight_decay},
                              {"params": [p for n, p in params.items() if n not in decay], "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.99))


def optimizer_default_betas(model, lr, weight_decay):
    groups = configure_optimizer(model, lr, weight_decay).param_groups
    return torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"]} for g in groups], lr=lr)


def optimizer_adam(model, lr, weight_decay):
    return torch.optim.Adam(model.parameters(), lr=lr)


def test_configure_optimizer_correct_variant_passes():
    tests.test_configure_optimizer(optimizer_by_role_set)


@pytest.mark.parametrize("fn, keywords", [
    (optimizer_by_dim, ["b_Q", "dim()"]),
    (optimizer_decay_everything, ["biases or LayerNorm"]),
    (optimizer_no_embeddings, ["embeddings", "nanoGPT"]),
    (optimizer_default_betas, ["betas", "0.99"]),
    (optimizer_adam, ["AdamW"]),
], ids=["by-dim", "decay-everything", "no-embeddings", "default-betas", "adam"])
def test_configure_optimizer_mistakes_are_named(fn, keywords):
    fails(tests.test_configure_optimizer, fn, *keywords)


# ---------------------------------------------------------------------------------------------------- lr_at


def lr_cos_squared(step, warmup_steps, max_steps, max_lr, min_lr):
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (max_steps - warmup_steps))
    return min_lr + (max_lr - min_lr) * math.cos(math.pi * progress / 2) ** 2


def lr_variant(warm, decay):
    def lr(step, warmup_steps, max_steps, max_lr, min_lr):
        if step < warmup_steps:
            return warm(step, warmup_steps, max_lr)
        return decay(step, warmup_steps, max_steps, max_lr, min_lr)
    return lr


def good_warm(s, w, m):
    return m * (s + 1) / w


def lr_early_return(warm, decay, boundary=lambda w: w):
    """The canonical layout: warm-up, then `if step >= max_steps: return min_lr`, then the decay."""
    def lr(step, warmup_steps, max_steps, max_lr, min_lr):
        if step < boundary(warmup_steps):
            return warm(step, warmup_steps, max_lr)
        if step >= max_steps:
            return min_lr
        return decay(step, warmup_steps, max_steps, max_lr, min_lr)
    return lr


def cos_decay(end_at_zero=False, span_from_zero=False, clamp=True, span=None):
    def decay(s, w, n, m, lo):
        progress = (s - w) / (span(w, n) if span else n if span_from_zero else n - w)
        if clamp:
            progress = min(progress, 1.0)
        low = 0.0 if end_at_zero else lo
        return low + (m - low) * 0.5 * (1 + math.cos(math.pi * progress))
    return decay


def lr_min_one_step_early(step, warmup_steps, max_steps, max_lr, min_lr):
    if step >= max_steps - 1:
        return min_lr
    return lr_at(step, warmup_steps, max_steps, max_lr, min_lr)


def test_lr_at_tensor_cause_is_not_about_a_loss():
    message = fails(tests.test_lr_at, lambda *args: torch.tensor(lr_at(*args)), "returned a tensor")
    assert "loss" not in message


def test_lr_at_correct_variant_passes():
    tests.test_lr_at(lr_cos_squared)


@pytest.mark.parametrize("fn, keywords", [
    (lr_variant(lambda s, w, m: m * s / w, cos_decay()), ["off by one"]),
    (lr_variant(good_warm, cos_decay(end_at_zero=True)), ["decays to 0"]),
    (lr_variant(good_warm, cos_decay(span_from_zero=True)), ["progress is divided by max_steps"]),
    (lr_variant(good_warm, cos_decay(clamp=False)), ["after max_steps"]),
    (lambda *args: torch.tensor(lr_at(*args)), ["Python float", "math.cos"]),
    (lr_early_return(good_warm, cos_decay(), boundary=lambda w: w + 1), ["warm-up boundary is off by one",
                                                                       "step <= warmup_steps"]),
    (lr_early_return(good_warm, cos_decay(span=lambda w, n: n)), ["progress is divided by max_steps",
                                                                   "x max_lr", "yours"]),
    (lr_early_return(good_warm, cos_decay(end_at_zero=True)), ["decays to 0"]),
    (lr_early_return(good_warm, cos_decay(span=lambda w, n: n - w - 1)), ["ends one step early"]),
    (lr_min_one_step_early, ["min_lr is reached one step early", "max_steps - 1"]),
], ids=["warmup-off-by-one", "to-zero", "not-reaching-min", "past-the-end", "tensor", "warmup-boundary",
        "progress-over-max-steps", "to-zero-early-return", "ends-early", "min-one-step-early"])
def test_lr_at_mistakes_are_named(fn, keywords):
    fails(tests.test_lr_at, fn, *keywords)


# ----------------------------------------------------------------------------------------------- train_step


def step_with_cross_entropy_zeroing_first(model, optimizer, x, y, max_grad_norm):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x).transpose(1, 2), y)  # (batch, d_vocab, block) against (batch, block)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return float(loss.detach())


def step_variant(zero=True, clip_before=True, clip_after=False, target_x=False, step=True, reduction="mean",
                 item=True, shift="", zero_before_step=False, clip="norm"):
    def fn(model, optimizer, x, y, max_grad_norm):
        logits = model(x)
        target = x if target_x else y
        if shift:  # shifted again, as in notebook 09's loss on a single sequence
            logits, target = logits[:, :-1], (x if shift == "x" else y)[:, 1:]
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction=reduction)
        loss.backward()
        if clip_before and clip == "each":
            for p in model.parameters():
                nn.utils.clip_grad_norm_([p], max_grad_norm)
        elif clip_before and clip == "value":
            nn.utils.clip_grad_value_(model.parameters(), max_grad_norm)
        elif clip_before:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        if zero_before_step:
            optimizer.zero_grad()
        if step:
            optimizer.step()
        if clip_after:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        if zero:
            optimizer.zero_grad()
        return loss.item() if item else loss
    return fn


def test_train_step_correct_variant_passes():
    tests.test_train_step(step_with_cross_entropy_zeroing_first)


@pytest.mark.parametrize("fn, keywords", [
    (step_variant(zero=False), ["zero"]),
    (step_variant(clip_before=False, clip_after=True), ["after optimizer.step()"]),
    (step_variant(target_x=True), ["instead of y"]),
    (step_variant(step=False), ["optimizer.step()"]),
    (step_variant(reduction="sum"), ["summed"]),
    (step_variant(item=False), ["loss.item()"]),
    (step_variant(shift="y"), ["shifted a second time", "logits[:, :-1] against y[:, 1:]"]),
    (step_variant(shift="x"), ["x shifted by one", "logits[:, :-1] against x[:, 1:]"]),
    (step_variant(zero=False, zero_before_step=True), ["gradients were already zeroed", "between loss.backward()"]),
    (step_variant(clip="each"), ["clipped on its own", "in one call"]),
    (step_variant(clip="value"), ["clip_grad_value_", "clip_grad_norm_"]),
], ids=["no-zero-grad", "clip-after-step", "targets-x", "no-step", "summed", "tensor", "shifted-twice", "x-shifted",
        "zero-grad-before-step", "clip-each-tensor", "clip-by-value"])
def test_train_step_mistakes_are_named(fn, keywords):
    fails(tests.test_train_step, fn, *keywords)


# -------------------------------------------------------------------------------------------- estimate_loss


def estimate_with_cross_entropy(model, data, batch_size, block_size, n_batches, generator):
    was_training = model.training
    model.eval()
    losses = torch.zeros(n_batches)
    with torch.inference_mode():
        for i in range(n_batches):
            x, y = get_batch(data, batch_size, block_size, generator)
            losses[i] = F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
    model.train(was_training)
    return losses.mean().item()


def estimate_variant(eval_mode=True, no_grad=True, restore=True, target_x=False, shift=""):
    def fn(model, data, batch_size, block_size, n_batches, generator):
        if eval_mode:
            model.eval()
        total = 0.0
        for _ in range(n_batches):
            x, y = get_batch(data, batch_size, block_size, generator)
            with torch.set_grad_enabled(not no_grad):
                logits, target = model(x), (x if target_x else y)
                if shift:
                    logits, target = logits[:, :-1], (x if shift == "x" else y)[:, 1:]
                total += F.cross_entropy(logits.flatten(0, 1), target.flatten()).item()
        if restore:
            model.train()
        return total / n_batches
    return fn


def estimate_one_batch(model, data, batch_size, block_size, n_batches, generator):
    was_training = model.training
    model.eval()
    x, y = get_batch(data, batch_size, block_size, generator)  # drawn once, scored n_batches times
    with torch.no_grad():
        total = sum(F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() for _ in range(n_batches))
    model.train(was_training)
    return total / n_batches


def estimate_own_generator(seed=None):
    def fn(model, data, batch_size, block_size, n_batches, generator):
        own = torch.Generator().manual_seed(seed) if seed is not None else None
        was_training = model.training
        model.eval()
        total = 0.0
        with torch.no_grad():
            for _ in range(n_batches):
                starts = torch.randint(len(data) - block_size, (batch_size,), generator=own)  # (batch,)
                index = starts[:, None] + torch.arange(block_size)  # (batch, block)
                total += F.cross_entropy(model(data[index]).flatten(0, 1), data[index + 1].flatten()).item()
        model.train(was_training)
        return total / n_batches
    return fn


def test_estimate_loss_correct_variant_passes():
    tests.test_estimate_loss(estimate_with_cross_entropy)


@pytest.mark.parametrize("fn, keywords", [
    (estimate_variant(eval_mode=False), ["train mode", "model.eval()"]),
    (estimate_variant(no_grad=False), ["gradients", "torch.no_grad()"]),
    (estimate_variant(restore=False), ["left in eval mode"]),
    (estimate_variant(target_x=True), ["instead of y"]),
    (estimate_variant(), ["started in eval mode", "came back in train mode", "model.train(was_training)"]),
    (estimate_one_batch, ["not fresh", "scored n_batches times"]),
    (estimate_variant(shift="y"), ["shifted a second time", "logits[:, :-1] against y[:, 1:]"]),
    (estimate_variant(shift="x"), ["x shifted by one", "drops the last position"]),
    (estimate_own_generator(), ["never used", "given generator"]),
    (estimate_own_generator(seed=0), ["never used", "generator of your own"]),
], ids=["train-mode", "with-gradients", "left-in-eval", "targets-x", "train-after-eval", "one-batch",
        "shifted-twice", "x-shifted", "global-rng", "own-generator"])
def test_estimate_loss_mistakes_are_named(fn, keywords):
    fails(tests.test_estimate_loss, fn, *keywords)


# ------------------------------------------------------------------------------------- stubs and bad input

CHECKS = ["get_batch", "init_weights", "configure_optimizer", "lr_at", "train_step", "estimate_loss"]


@pytest.fixture(scope="module")
def exercise():
    return definitions("notebooks/11_training.ipynb")


@pytest.mark.parametrize("name", CHECKS)
def test_stub_is_not_done(name, exercise):
    not_done(getattr(tests, f"test_{name}"), exercise[name])


@pytest.mark.parametrize("name", CHECKS)
def test_check_wants_the_function(name):
    fails(getattr(tests, f"test_{name}"), DemoTransformer, f"wants the function {name}")


def test_canonical_parts_are_the_notebooks():
    solution = definitions("solutions/11_training.ipynb")
    for fn in (get_batch, init_weights, configure_optimizer, lr_at, train_step, estimate_loss):
        assert fn.__doc__ == solution[fn.__name__].__doc__
