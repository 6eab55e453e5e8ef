"""test_sample_next_token and test_generate (notebook 12).

test_sample_next_token draws 4,000 tokens for each of two rows per setting and compares the counts with
the exact distribution by a chi-squared goodness-of-fit test at level 1e-6 per comparison (at most 10 per
run, so a correct sampler fails with probability at most 1e-5). The check runs under its own seeded random
state (torch.random.fork_rng), so its verdict is the same on every run and the notebook's random state is
left alone. When the counts do not fit, each catalogued mistake's exact distribution is tried in turn.

test_generate runs the learner's loop on a tiny deterministic language model whose context is 6 tokens,
which records what it is fed: greedy decoding must equal the course's greedy loop, crop the context to
its last n_ctx tokens (while the frequency penalty counts the whole sequence), and stop each row at the stop
token (stop tokens in the prompt don't count). Everything runs on the CPU first (an
out-of-range id is a clean error there, a device-side assert on a GPU), then one case on the course device.
"""

from __future__ import annotations

import contextlib
import math
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from c1p1.checks import core
from c1p1.checks.sampling import CPU, DEVICE_TENSOR_HINT, counts, course_device, keep_top_k, keep_top_p, random_logits
from c1p1.config import Config

ALPHA = 1e-6  # level of each goodness-of-fit comparison
FITS = 1e-4  # a mistake's distribution "fits" the counts when its p-value is above this
REPEATS = 4000  # draws per row type
SEED = 1250


# ------------------------------------------------------------------------------ exact distributions


def distribution(ids: Tensor, logits: Tensor, temperature=1.0, top_k=0, top_p=0.0, freq_penalty=0.0,
                 mistake: str = "") -> Tensor:
    """The exact next-token probabilities, (batch, d_vocab); ``mistake`` switches on one catalogued mistake."""
    penalty = {"no_penalty": 0.0, "added": -freq_penalty}.get(mistake, freq_penalty)
    seen = counts(ids, logits.shape[-1]).double()  # (batch, d_vocab)
    seen = seen.clamp(max=1) if mistake == "presence" else seen
    lg = logits.double() - penalty * seen  # (batch, d_vocab)
    if mistake == "temperature_first":
        lg = logits.double() / temperature - penalty * seen
    elif mistake == "multiplied":
        lg = lg * temperature
    elif mistake != "temperature_last":
        lg = lg / temperature
    steps = [("k", top_k > 0 and mistake != "no_top_k"), ("p", 0 < top_p < 1 and mistake != "no_top_p")]
    for step, active in steps[::-1] if mistake == "top_p_first" else steps:
        if active:
            lg = keep_top_k(lg, lg, top_k) if step == "k" else keep_top_p(lg, top_p)
    if mistake == "temperature_last":
        lg = lg / temperature
    if mistake == "argmax":
        return F.one_hot(lg.argmax(-1), lg.shape[-1]).double()
    if mistake == "batch_softmax":
        probs = lg.softmax(0)  # (batch, d_vocab): normalised down each column
        return probs / probs.sum(-1, keepdim=True)
    return lg.softmax(-1)  # (batch, d_vocab)


def p_value(observed: Tensor, probs: Tensor) -> float:
    """Chi-squared goodness of fit of counts (d_vocab,) to probabilities (d_vocab,); cells expecting < 5 are pooled."""
    if bool((observed[probs <= 0] > 0).any()):
        return 0.0
    support = probs > 0
    obs, exp = observed[support].double(), probs[support].double() * observed.sum()
    small = exp < 5
    if bool(small.any()):
        obs = torch.cat([obs[~small], obs[small].sum()[None]])
        exp = torch.cat([exp[~small], exp[small].sum()[None]])
    df = exp.numel() - 1
    if df == 0:
        return 1.0
    stat = ((obs - exp) ** 2 / exp).sum()
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), stat / 2))


@dataclass
class DrawCase:
    label: str
    ids: Tensor  # (2, seq): the two row types' histories
    logits: Tensor  # (2, d_vocab)
    settings: dict
    mistakes: dict[str, str] = field(default_factory=dict)  # mistake flag -> advice

    def batch(self, device: torch.device) -> tuple[Tensor, Tensor]:
        return self.ids.repeat(REPEATS, 1).to(device), self.logits.repeat(REPEATS, 1).to(device)  # rows A, B, A, B...

    def probs(self, mistake: str = "") -> Tensor:
        if mistake == "batch_softmax":  # depends on the whole batch, not on one row
            ids, logits = self.batch(CPU)
            return distribution(ids, logits, **self.settings, mistake=mistake)[:2]
        return distribution(self.ids, self.logits, **self.settings, mistake=mistake)  # (2, d_vocab)


MULTIPLIED = "the logits are multiplied by the temperature; divide them (a temperature below 1 must sharpen)."
ARGMAX = ("you take the argmax, which is greedy decoding, not sampling: draw from the probabilities with "
          "torch.multinomial(probs, 1, generator=generator).")
BATCH = ("the softmax runs over the batch dimension, which mixes the rows: take it over the vocabulary, "
         "logits.softmax(dim=-1), so that each row sums to 1.")
COMMON = {"multiplied": MULTIPLIED, "argmax": ARGMAX, "batch_softmax": BATCH}
ADDED = ("the frequency penalty is added instead of subtracted (its sign is flipped), so repeated tokens become "
         "more likely: logits - freq_penalty * counts, as apply_frequency_penalty does.")
PRESENCE = ("a presence penalty instead of a frequency penalty: each earlier occurrence counts, so subtract "
            "freq_penalty times the number of times the token occurs, not once per token seen.")
TEMPERATURE_LAST = ("the temperature is applied after top-k/top-p, so the nucleus is chosen on unscaled logits: "
                    "divide by the temperature first, then top-k, then top-p.")


def draw_cases() -> list[DrawCase]:
    def ids(seed: int) -> Tensor:
        return core.random_tokens((2, 8), 10, seed, CPU)  # (2, 8)

    return [
        DrawCase("temperature 1.3 alone", ids(1249), random_logits((2, 10), 1248, 1.5), dict(temperature=1.3), COMMON),
        DrawCase("temperature 0.6, top_k 4", ids(1251), random_logits((2, 10), 1252, 1.5),
                 dict(temperature=0.6, top_k=4),
                 {**COMMON, "no_top_k": "top_k is not applied: keep only the top_k largest logits when top_k > 0."}),
        DrawCase("freq_penalty 0.7, temperature 1.5, top_p 0.8", ids(1253), random_logits((2, 10), 1254, 1.5),
                 dict(freq_penalty=0.7, temperature=1.5, top_p=0.8),
                 {**COMMON,
                  "temperature_first": "the temperature is applied before the frequency penalty; apply the penalty "
                  "first, then divide by the temperature (the penalty is in logit units).",
                  "no_penalty": "freq_penalty is not applied: subtract it per occurrence first, with apply_frequency_penalty.",
                  "added": ADDED, "presence": PRESENCE, "temperature_last": TEMPERATURE_LAST,
                  "no_top_p": "top_p is not applied: when 0 < top_p < 1, keep the nucleus with top_p_logits."}),
        DrawCase("top_k 6, then top_p 0.6", ids(1255), random_logits((2, 10), 1256, 1.0),
                 dict(temperature=1.0, top_k=6, top_p=0.6),
                 {**COMMON,
                  "top_p_first": "top-p is applied before top-k; apply top-k first, then top-p on what is left.",
                  "no_top_p": "top_p is not applied: when 0 < top_p < 1, keep the nucleus with top_p_logits."}),
    ]


# -------------------------------------------------------------------------------- sample_next_token


def unfinished_helper(exc: BaseException, name: str) -> str:
    """The function that raised NotImplementedError, when it is not `name` itself (an unfinished earlier exercise)."""
    frames = traceback.extract_tb(exc.__traceback__)
    raiser = frames[-1].name if frames else name
    return "" if raiser in (name, "<lambda>", "run") else raiser


def helper_not_done(test: str, name: str, helper: str) -> None:
    __tracebackhide__ = True
    raise core.NotDoneYet(
        f"{test}: {name} calls {helper}, which still raises NotImplementedError. Finish {helper} first (its "
        f"exercise is above, with its own check): replace `raise NotImplementedError()` under # YOUR CODE HERE in "
        f"its cell, run that cell, then run this check again."
    ) from None


@contextlib.contextmanager
def naming_unfinished_helpers(test: str, name: str) -> Iterator[None]:
    """A NotDoneYet from core.call that comes from a helper (say apply_temperature) names that helper instead."""
    __tracebackhide__ = True
    try:
        yield
    except core.NotDoneYet as err:
        helper = unfinished_helper(err.__context__, name) if err.__context__ is not None else ""
        if helper:
            helper_not_done(test, name, helper)
        raise

SAMPLE_SHAPE_HINT = (
    (lambda got, want: got == (want[0], 1), "torch.multinomial returns shape (batch, 1): .squeeze(-1) it."),
    (lambda got, want: len(got) == 2 and got[0] == want[0],
     "you returned a whole row per sequence (probabilities or logits); return one token id per row."),
)
DEVICE_HINT = ("Likely cause: a torch.Generator lives on one device, and torch.multinomial needs the generator on "
               "the probabilities' device. Draw where the generator lives (probs.to(generator.device), where the logits "
               "are when there is none), then move the ids back with .to(logits.device).")


def draws(fn: Callable, ids: Tensor, logits: Tensor, settings: dict, seed: int, test: str, label: str) -> Tensor:
    """The learner's tokens for one batch, vetted: shape (batch,), integer ids in range, on the logits' device."""
    __tracebackhide__ = True
    gen = torch.Generator().manual_seed(seed)

    def run(ids: Tensor, logits: Tensor) -> Tensor:
        return fn(ids, logits, generator=gen, **settings)

    hint = ("If torch.multinomial says the probabilities contain inf, nan or a negative value: take the softmax over "
            "the vocabulary (dim=-1), not over the batch dimension (dim=0), and never remove every token of a row.")
    hint = DEVICE_HINT + "\n" + hint if logits.device != CPU else hint
    with naming_unfinished_helpers(test, "sample_next_token"):
        out = core.call(run, (ids, logits), test, f"sample_next_token({label})", hint)
    want = (logits.shape[0],)
    if tuple(out.shape) != want:
        msg = f"{test}: the output on {label} has shape {tuple(out.shape)} but should have shape (batch={want[0]},)."
        hints = [h for applies, h in SAMPLE_SHAPE_HINT if applies(tuple(out.shape), want)]
        core.fail(msg + ("\nLikely cause: " + hints[0] if hints else ""))
    if out.dtype != torch.long:
        core.fail(f"{test}: the output on {label} has dtype {out.dtype}; token ids are integers (torch.long).\n"
                  "Likely cause: you returned probabilities or logits instead of the drawn ids (torch.multinomial "
                  "returns torch.long).")
    if out.device != logits.device:
        core.fail(f"{test}: the output on {label} is on {out.device} but the logits were on {logits.device}.\n"
                  "Likely cause: the ids were drawn on the generator's device and not moved back: .to(logits.device).")
    bad = (out < 0) | (out >= logits.shape[-1])  # (batch,)
    if bool(bad.any()):
        core.fail(f"{test}: the output on {label} contains {int(bad.sum())} ids outside 0..{logits.shape[-1] - 1}, "
                  f"e.g. {int(out[bad][0])}.\nLikely cause: an argmax or a draw over the wrong dimension (the batch).")
    return out


def judge(out: Tensor, case: DrawCase, test: str, where: str = "") -> None:
    """Compare the counts of each row type with the exact distribution; name a mistake when one fits better."""
    __tracebackhide__ = True
    d_vocab = case.logits.shape[-1]
    rows = out.to(CPU).view(REPEATS, 2)  # (REPEATS, 2): column 0 is row type A, column 1 row type B
    observed = torch.stack([torch.bincount(rows[:, r], minlength=d_vocab) for r in range(2)])  # (2, d_vocab)
    exact = case.probs()  # (2, d_vocab)
    p_values = [p_value(observed[r], exact[r]) for r in range(2)]
    if min(p_values) >= ALPHA:
        return
    r = 0 if p_values[0] < ALPHA else 1
    gap = (observed[r] / REPEATS - exact[r]).abs()  # (d_vocab,)
    v = int(gap.argmax())
    first = (f"{test} FAILED on {case.label}{where}: the tokens drawn for row {r} do not follow the right "
             f"distribution (chi-squared p-value {p_values[r]:.1e} over {REPEATS} draws); token id {v} came out "
             f"{observed[r, v] / REPEATS:.1%} of the time, expected {exact[r, v]:.1%}.")
    removed = (observed[r] > 0) & (exact[r] == 0)  # (d_vocab,)
    if bool(removed.any()):
        first += f" Token id {int(removed.nonzero()[0])} was drawn though its probability is 0 after top-k/top-p."
    best, best_p = None, FITS
    for flag, advice in case.mistakes.items():
        wrong = case.probs(flag)  # (2, d_vocab)
        fit = min(p_value(observed[i], wrong[i]) for i in range(2))
        if fit > best_p:
            best, best_p = advice, fit
    if best is not None:
        core.fail(first + "\nLikely cause: " + best)
    core.fail(first + "\nLikely causes, most likely first: 1) the order: penalty, temperature, top-k, top-p, then "
              "softmax over the last dimension; 2) one draw per row with torch.multinomial(probs, 1); "
              "3) test_apply_temperature, test_top_k_logits and test_top_p_logits must pass first.")


def greedy_case() -> tuple[Tensor, Tensor, float]:
    logits = random_logits((3, 10), 1257)  # (3, 10)
    top = logits.argmax(-1)  # (3,)
    ids = torch.stack([torch.cat([top[b].repeat(4), core.random_tokens((1, 4), 10, 1258 + b, CPU)[0]])
                       for b in range(3)])  # (3, 8): each row's favourite token already occurs 4 times
    third = logits[0].argsort(descending=True)[2]  # row 0's third-best token, which a penalty added would promote
    return torch.cat([ids, third.repeat(1, 8)]), torch.cat([logits, logits[:1]]), 0.6  # (4, 8), (4, 10)


def check_greedy(fn: Callable, test: str) -> None:
    __tracebackhide__ = True
    ids, logits, penalty = greedy_case()
    hint = ("Likely cause: temperature 0 reaches apply_temperature. Temperature 0 means greedy: after the "
            "penalty, return logits.argmax(dim=-1) before dividing by the temperature.")
    with naming_unfinished_helpers(test, "sample_next_token"):
        out = core.call(lambda i, lg: fn(i, lg, temperature=0.0, freq_penalty=penalty), (ids, logits), test,
                        "sample_next_token(temperature=0)", hint)
    batch = ids.shape[0]
    expected = (logits - penalty * counts(ids, 10)).argmax(-1)  # (batch,)
    if tuple(out.shape) != (batch,) or not torch.equal(out.long(), expected):
        label = "greedy decoding (temperature 0, freq_penalty 0.6)"
        first = f"{test} FAILED on {label}: got {out.tolist()}, expected the argmax of the penalised logits, {expected.tolist()}."
        if tuple(out.shape) == (batch,) and torch.equal(out.long(), logits.argmax(-1)):
            core.fail(f"{test} FAILED on {label}: you return the argmax of the raw logits {out.tolist()}, expected "
                      f"{expected.tolist()}.\nLikely cause: greedy decoding ignores the frequency penalty: apply it "
                      "first, then take the argmax.")
        if tuple(out.shape) == (batch,) and torch.equal(out.long(), (logits + penalty * counts(ids, 10)).argmax(-1)):
            core.fail(first + "\nLikely cause: " + ADDED)
        if tuple(out.shape) == (batch,) and torch.equal(out.long(), (logits - penalty * counts(ids, 10).clamp(max=1)).argmax(-1)):
            core.fail(first + "\nLikely cause: " + PRESENCE)
        core.fail(first + "\nLikely cause: with temperature 0, return "
                  "apply_frequency_penalty(...).argmax(dim=-1): no draw, no generator.")


def test_sample_next_token(sample_next_token) -> None:
    """Check sample_next_token: greedy at temperature 0, then the frequencies of 8,000 draws per setting."""
    __tracebackhide__ = True
    test = "test_sample_next_token"
    fn = core.expect_function(sample_next_token, "sample_next_token", test)
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(SEED)
        check_greedy(fn, test)
        cases = draw_cases()
        outs = []
        for i, case in enumerate(cases):
            ids, logits = case.batch(CPU)
            outs.append(draws(fn, ids, logits, case.settings, SEED + i, test, case.label))
            judge(outs[-1], case, test)
        again = draws(fn, *cases[0].batch(CPU), cases[0].settings, SEED, test, cases[0].label)
        device = course_device()
        if device != CPU:
            out = draws(fn, *cases[0].batch(device), cases[0].settings, SEED, test, f"{cases[0].label} on {device}")
            judge(out, cases[0], test, f" on {device}, with a CPU generator")
    if not torch.equal(again, outs[0]):
        core.fail(f"{test} FAILED on {cases[0].label}: the draws follow the right distribution, but two runs with "
                  "generators of the same seed gave different tokens, so your samples cannot be reproduced.\n"
                  "Likely cause: the draw ignores the generator (torch.distributions.Categorical(...).sample() and "
                  "the global random state take none): use torch.multinomial(probs, 1, generator=generator).")
    core.passed(test, f"greedy matches the penalised argmax, and {2 * REPEATS} draws per setting follow the exact "
                f"distribution (chi-squared, level {ALPHA:g} each): " + "; ".join(c.label for c in cases) + "; the "
                "same seeded generator gives the same tokens.")


# ------------------------------------------------------------------------------------------ generate


class ContextTooLong(RuntimeError):
    pass


class TinyLM(nn.Module):
    """A tiny deterministic language model: logits from the running mean of token and position embeddings."""

    def __init__(self, seed: int = 1276, d_vocab: int = 11, n_ctx: int = 6, width: int = 16):
        super().__init__()
        self.cfg = Config(d_model=width, d_vocab=d_vocab, n_ctx=n_ctx, d_head=width, d_mlp=4 * width, n_heads=1, n_layers=1)
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("W_E", torch.randn(d_vocab, width, generator=gen))  # (d_vocab, width)
        self.register_buffer("W_pos", torch.randn(n_ctx, width, generator=gen))  # (n_ctx, width)
        self.register_buffer("W_U", 3 * torch.randn(width, d_vocab, generator=gen) / math.sqrt(width))  # (width, d_vocab)
        self.longest = 0

    def logits(self, tokens: Tensor) -> Tensor:
        x = self.W_E[tokens] + self.W_pos[: tokens.shape[1]]  # (batch, posn, width)
        steps = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)[:, None]  # (posn, 1)
        return torch.tanh(x.cumsum(1) / steps) @ self.W_U  # (batch, posn, d_vocab)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.shape[-1] > self.cfg.n_ctx:
            raise ContextTooLong(f"the model was given {tokens.shape[-1]} positions, but its n_ctx is {self.cfg.n_ctx}")
        if tokens.dtype != torch.long or bool((tokens < 0).any() | (tokens >= self.cfg.d_vocab).any()):
            raise ValueError(f"the model was given tokens that are not ids in 0..{self.cfg.d_vocab - 1}: {tokens.tolist()}")
        return self.logits(tokens)


def greedy(model: TinyLM, ids: Tensor, max_new: int, stop: int | None = None, freq_penalty: float = 0.0,
           crop: str = "last", stop_mode: str = "right", position: int = -1, penalty_on: str = "all") -> Tensor:
    """The course's greedy loop, with switches for the catalogued mistakes of generate."""
    n_ctx = model.cfg.n_ctx
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)  # (batch,)
    if stop is not None and stop_mode == "prompt":  # a stop token already in the prompt ends the row
        finished = (ids == stop).any(-1)  # (batch,)
    for _ in range(max_new):
        context = {"last": ids[:, -n_ctx:], "first": ids[:, :n_ctx], "short": ids[:, -(n_ctx - 1):]}[crop]
        seen = context if penalty_on == "window" else ids  # (batch, <= seq): what the penalty counts
        logits = model.logits(context)[:, position] - freq_penalty * counts(seen, model.cfg.d_vocab)  # (batch, d_vocab)
        nxt = logits.argmax(-1)  # (batch,)
        if stop is not None and stop_mode != "ignore":
            nxt = nxt.masked_fill(finished, stop)
            finished = finished | (nxt == stop)
        ids = torch.cat([ids, nxt[:, None]], dim=1)  # (batch, seq + 1)
        if (stop_mode in ("right", "prompt") and finished.all()) or (stop_mode == "first" and finished.any()):
            break
    return ids


@dataclass
class GenCase:
    label: str
    prompt: Tensor  # (batch, seq)
    max_new: int
    stop: int | None = None
    settings: dict = field(default_factory=lambda: {"temperature": 0.0})
    mistakes: dict[str, str] = field(default_factory=dict)  # variant name -> advice


CROP_FIRST = ("the context is cropped to its first n_ctx tokens; keep the last ones, input_ids[:, -n_ctx:], "
              "which are the ones the next token follows.")
IGNORE_STOP = ("a row keeps generating after its stop token. Once a row has produced stop_token, append "
               "stop_token to it at every later step (next_ids.masked_fill(finished, stop_token)).")
FIRST_STOP = "the whole batch stops when the first row stops; go on until every row has produced stop_token."
FIRST_POSITION = ("the next token is picked from the logits of the first position, [:, 0]; the last position "
                  "predicts the next token: model(context)[:, -1].")
CROP_SHORT = ("the context is cropped to n_ctx - 1 tokens, one short; the model takes n_ctx positions: "
              "input_ids[:, -n_ctx:].")
PROMPT_STOP = ("a stop token already in the prompt ends its row, but stop tokens in the prompt don't count: start "
               "with finished all False and mark a row finished only when it generates stop_token.")
PENALTY_WINDOW = ("the frequency penalty only counts the cropped window, so tokens before it are forgotten: give "
                  "the model input_ids[:, -n_ctx:], but give sample_next_token the whole sequence so far, input_ids.")
NO_BREAK = ("the loop goes on to max_new_tokens after every row has stopped; return as soon as every row has "
            "produced stop_token (if finished.all(): break).")


def stop_tokens(model: TinyLM, prompt: Tensor, max_new: int) -> tuple[int, int]:
    """A stop token that only row 0 produces, and one that both rows produce before max_new_tokens."""
    new = greedy(model, prompt, max_new)[:, prompt.shape[1]:]  # (2, max_new)
    first = [{int(t): j for j, t in reversed(list(enumerate(row)))} for row in new]
    only_row_0 = [t for t, j in first[0].items() if 1 <= j < max_new - 2 and t not in first[1]]
    both = [t for t, j in first[0].items() if t in first[1] and 1 <= j and 1 <= first[1][t] < max_new - 2
            and j != first[1][t] and max(j, first[1][t]) < max_new - 1]
    return min(only_row_0, key=lambda t: first[0][t]), min(both, key=lambda t: max(first[0][t], first[1][t]))


def prompt_stop_token(model: TinyLM, prompt: Tensor, max_new: int) -> int:
    """A token in row 0's prompt, not in row 1's, that row 0 never generates and row 1 generates early."""
    new = greedy(model, prompt, max_new)[:, prompt.shape[1]:]  # (2, max_new)
    fits = [int(t) for t in prompt[0].unique() if int(t) not in prompt[1].tolist() and int(t) not in new[0].tolist()
            and int(t) in new[1, : max_new - 2].tolist()]
    return fits[0]


def generate_cases(model: TinyLM) -> list[GenCase]:
    prompt = core.random_tokens((2, 3), model.cfg.d_vocab, 1261, CPU)  # (2, 3)
    one, both = stop_tokens(model, prompt, 9)
    in_prompt = prompt_stop_token(model, prompt, 9)
    long_prompt = core.random_tokens((2, 9), model.cfg.d_vocab, 1263, CPU)  # (2, 9): longer than n_ctx = 6
    return [
        GenCase("greedy, 2 prompts of 3 tokens, 9 new tokens, n_ctx 6", prompt, 9,
                mistakes={"crop_first": CROP_FIRST, "first_position": FIRST_POSITION, "crop_short": CROP_SHORT}),
        GenCase(f"greedy with stop_token {one}, which only row 0 produces", prompt, 9, one,
                mistakes={"ignore": IGNORE_STOP, "first": FIRST_STOP, "prompt_stop": PROMPT_STOP}),
        GenCase(f"greedy with stop_token {both}, which both rows produce", prompt, 9, both,
                mistakes={"ignore": IGNORE_STOP, "first": FIRST_STOP, "no_break": NO_BREAK, "prompt_stop": PROMPT_STOP}),
        GenCase("greedy with freq_penalty 1.5 passed through **sampling", prompt[:, :2], 4, None,
                {"temperature": 0.0, "freq_penalty": 1.5},
                {"no_penalty": "the sampling settings do not reach sample_next_token: pass **sampling on to it."}),
        GenCase(f"greedy with stop_token {in_prompt}, which is already in row 0's prompt", prompt, 9, in_prompt,
                mistakes={"prompt_stop": PROMPT_STOP, "ignore": IGNORE_STOP, "first": FIRST_STOP}),
        GenCase("greedy with freq_penalty 1.0 on prompts of 9 tokens, longer than n_ctx 6", long_prompt, 5, None,
                {"temperature": 0.0, "freq_penalty": 1.0},
                {"penalty_window": PENALTY_WINDOW,
                 "no_penalty": "the sampling settings do not reach sample_next_token: pass **sampling on to it."}),
    ]


def expected_of(model: TinyLM, case: GenCase, variant: str = "") -> Tensor:
    stop_mode = {"ignore": "ignore", "first": "first", "no_break": "none", "prompt_stop": "prompt"}.get(variant, "right")
    penalty = 0.0 if variant == "no_penalty" else case.settings.get("freq_penalty", 0.0)
    crop = {"crop_first": "first", "crop_short": "short"}.get(variant, "last")
    return greedy(model, case.prompt, case.max_new, case.stop, penalty, crop, stop_mode,
                  position=0 if variant == "first_position" else -1,
                  penalty_on="window" if variant == "penalty_window" else "all")


def run_generate(fn: Callable, model: TinyLM, prompt: Tensor, max_new: int, stop: int | None, settings: dict,
                 test: str, label: str, generator: torch.Generator | None = None) -> Tensor:
    __tracebackhide__ = True
    copy = prompt.clone()
    try:
        with torch.no_grad():
            out = fn(model, copy, max_new, stop_token=stop, generator=generator, **settings)
    except ContextTooLong as exc:
        core.fail(f"{test} FAILED on {label}: {exc}.\n{core.learner_frame(exc)}\nLikely cause: the context is not "
                  "cropped. Run the model on input_ids[:, -model.cfg.n_ctx:], the last n_ctx tokens.")
    except Exception as exc:  # noqa: BLE001 - the learner's error, shown with their line
        helper = unfinished_helper(exc, "generate") if isinstance(exc, NotImplementedError) else ""
        if helper:
            helper_not_done(test, "generate", helper)
        hint = "If the error is inside sample_next_token, make test_sample_next_token pass first."
        if prompt.device != CPU:
            hint = DEVICE_TENSOR_HINT.replace("logits", "input_ids") + "\n" + hint
        core.learner_raised(test, f"generate on {label}", exc, hint)
    if not torch.equal(copy, prompt):
        core.fail(f"{test}: generate changed its input_ids in place. Build a new tensor with torch.cat instead.")
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != prompt.shape[0]:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        core.fail(f"{test}: generate returned {got} on {label}; it should return one tensor of shape "
                  f"(batch={prompt.shape[0]}, seq + new).")
    if out.dtype != torch.long or out.device != prompt.device:
        core.fail(f"{test}: generate returned {out.dtype} on {out.device}; it should return token ids (torch.long) on "
                  f"the prompt's device, {prompt.device}.")
    if out.shape[1] < prompt.shape[1] or not torch.equal(out[:, : prompt.shape[1]], prompt):
        core.fail(f"{test} FAILED on {label}: the output does not start with the prompt.\nLikely cause: you returned "
                  "only the new tokens; return the prompt followed by them (the whole input_ids).")
    return out


def test_generate(generate) -> None:
    """Check generate on a tiny model with n_ctx 6: greedy, cropping, stop tokens, **sampling and a generator."""
    __tracebackhide__ = True
    test = "test_generate"
    fn = core.expect_function(generate, "generate", test)
    model = TinyLM()
    cases = generate_cases(model)
    for case in cases:
        out = run_generate(fn, model, case.prompt, case.max_new, case.stop, case.settings, test, case.label)
        expected = expected_of(model, case)
        if torch.equal(out, expected):
            continue
        got, want = out[:, case.prompt.shape[1]:].tolist(), expected[:, case.prompt.shape[1]:].tolist()
        first = f"{test} FAILED on {case.label}: new tokens {got}, expected {want}."
        for variant, advice in case.mistakes.items():
            if torch.equal(out, expected_of(model, case, variant)):
                core.fail(first + "\nLikely cause: " + advice)
        core.fail(first + "\nLikely causes, most likely first: 1) the logits of the last position, [:, -1], pick the "
                  "next token; 2) the model gets input_ids[:, -n_ctx:], sample_next_token the whole input_ids (for "
                  "the penalty); 3) sample_next_token is called with **sampling (here temperature=0.0: greedy); "
                  "4) stop tokens in the prompt don't count; 5) test_sample_next_token must pass first.")
    sampled = [run_generate(fn, model, cases[0].prompt, 5, None, {"temperature": 1.0, "top_k": 5}, test,
                            "sampling with a seeded generator", torch.Generator().manual_seed(1262)) for _ in range(2)]
    if sampled[0].shape != (2, 8):
        core.fail(f"{test} FAILED on sampling with a seeded generator: shape {tuple(sampled[0].shape)}, expected (2, 8).")
    device = course_device()
    if device != CPU:
        case = cases[1]
        on_device = model.to(device)
        out = run_generate(fn, on_device, case.prompt.to(device), case.max_new, case.stop, case.settings, test,
                           f"{case.label}, on {device}")
        if not torch.equal(out.to(CPU), expected_of(model.to(CPU), case)):
            core.fail(f"{test} FAILED on {case.label} on {device}, although it passed on the CPU.")
    if not torch.equal(*sampled):
        core.fail(f"{test} FAILED on sampling with a seeded generator: two runs with generators of the same seed gave "
                  "different text, so samples cannot be reproduced.\nLikely causes, most likely first: 1) generate "
                  "does not pass its generator on: sample_next_token(..., generator=generator); 2) your "
                  "sample_next_token ignores it (run tests.test_sample_next_token).")
    core.passed(test, f"{len(cases)} greedy cases match the course's loop on a model with n_ctx 6 (cropping, stop "
                "tokens, **sampling), and a seeded sampling run has the right shape and is reproducible: "
                + "; ".join(c.label for c in cases) + ".")
