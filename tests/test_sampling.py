"""Notebook 12's checks: the solution and correct alternatives pass, the stubs are not done, each mistake is named."""

from __future__ import annotations

import functools
import time

import pytest
import torch
import torch.nn.functional as F

import C1P1_tests as tests
from c1p1 import parts
from c1p1.checks import sampling, sampling_draws
from tests.check_helpers import fails, not_done
from tests.notebook_code import definitions

NEG_INF = float("-inf")


@functools.cache
def solution() -> dict:
    return definitions("solutions/12_sampling.ipynb")


@functools.cache
def stubs() -> dict:
    return definitions("notebooks/12_sampling.ipynb")


CHECKS = {
    "apply_temperature": tests.test_apply_temperature,
    "apply_frequency_penalty": tests.test_apply_frequency_penalty,
    "top_k_logits": tests.test_top_k_logits,
    "top_p_logits": tests.test_top_p_logits,
    "sample_next_token": tests.test_sample_next_token,
    "generate": tests.test_generate,
    "beam_search": tests.test_beam_search,
}


@pytest.mark.parametrize("name", CHECKS)
def test_solution_notebook_passes(name):
    CHECKS[name](solution()[name])


@pytest.mark.parametrize("name", CHECKS)
def test_stub_is_not_done(name):
    not_done(CHECKS[name], stubs()[name])


@pytest.mark.parametrize("name", CHECKS)
@pytest.mark.parametrize("bad", [torch.zeros(2, 3), torch.nn.Linear, 3], ids=["a tensor", "a class", "an int"])
def test_bad_input_gets_one_clear_message(name, bad):
    fails(CHECKS[name], bad, name)


# ------------------------------------------------------------------------------------ temperature


def guarded(body):
    def apply_temperature(logits, temperature):
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        return body(logits, temperature)

    return apply_temperature


@pytest.mark.parametrize("body", [lambda lg, t: torch.div(lg, t), lambda lg, t: lg * (1.0 / t)], ids=["div", "times 1/t"])
def test_temperature_alternatives_pass(body):
    tests.test_apply_temperature(guarded(body))


def test_temperature_assert_is_a_fine_guard():
    def apply_temperature(logits, temperature):
        assert temperature > 0
        return logits / temperature

    tests.test_apply_temperature(apply_temperature)


@pytest.mark.parametrize(("fn", "keywords"), [
    (guarded(lambda lg, t: lg * t), ["multiplied", "divide"]),
    (guarded(lambda lg, t: (lg / t).softmax(-1)), ["probabilities"]),
    (guarded(lambda lg, t: (lg / t).log_softmax(-1)), ["log probabilities"]),
    (lambda lg, t: lg / t, ["temperature 0", "ValueError"]),
    (lambda lg, t: lg / t if t != 0 else 1 / 0, ["apply_temperature(logits, -0.5)", "temperature == 0 only",
                                                "temperature <= 0"]),
], ids=["multiplied", "softmax", "log_softmax", "no guard for 0", "negative accepted"])
def test_temperature_mistakes_are_named(fn, keywords):
    fails(tests.test_apply_temperature, fn, *keywords)


def test_temperature_in_place_is_named():
    def apply_temperature(logits, temperature):
        if temperature <= 0:
            raise ValueError
        logits /= temperature
        return logits

    fails(tests.test_apply_temperature, apply_temperature, "in place")


# ------------------------------------------------------------------------------- frequency penalty


def penalty_bincount(input_ids, logits, freq_penalty):
    counts = torch.stack([torch.bincount(row, minlength=logits.shape[-1]) for row in input_ids])  # (batch, d_vocab)
    return logits - freq_penalty * counts


def penalty_one_hot(input_ids, logits, freq_penalty):
    return logits - freq_penalty * F.one_hot(input_ids, logits.shape[-1]).sum(dim=1)


def penalty_scatter_in_place(input_ids, logits, freq_penalty):
    counts = torch.zeros_like(logits)
    counts.scatter_add_(1, input_ids, torch.ones_like(input_ids, dtype=logits.dtype))
    return logits - freq_penalty * counts


@pytest.mark.parametrize("fn", [penalty_bincount, penalty_one_hot, penalty_scatter_in_place])
def test_penalty_alternatives_pass(fn):
    tests.test_apply_frequency_penalty(fn)


@pytest.mark.parametrize(("fn", "keywords"), [
    (lambda ids, lg, p: lg - p * (F.one_hot(ids, lg.shape[-1]).sum(1) > 0), ["distinct", "every occurrence"]),
    (lambda ids, lg, p: lg + p * F.one_hot(ids, lg.shape[-1]).sum(1), ["added", "subtract"]),
    (lambda ids, lg, p: lg - p * torch.bincount(ids.flatten(), minlength=lg.shape[-1]), ["pooled", "own tokens"]),
], ids=["per distinct token", "added", "whole batch"])
def test_penalty_mistakes_are_named(fn, keywords):
    fails(tests.test_apply_frequency_penalty, fn, *keywords)


# ------------------------------------------------------------------------------------------- top-k


def top_k_scatter(logits, k):
    values, ids = logits.topk(min(k, logits.shape[-1]), dim=-1)
    return torch.full_like(logits, NEG_INF).scatter(-1, ids, values)


def top_k_sort(logits, k):
    sorted_logits = logits.sort(dim=-1, descending=True).values
    threshold = sorted_logits[:, min(k, logits.shape[-1]) - 1 : min(k, logits.shape[-1])]
    return torch.where(logits >= threshold, logits, torch.full_like(logits, NEG_INF))


def top_k_bool_mask(logits, k):
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep[torch.arange(logits.shape[0])[:, None], logits.topk(min(k, logits.shape[-1])).indices] = True
    return logits.masked_fill(~keep, NEG_INF)


@pytest.mark.parametrize("fn", [top_k_scatter, top_k_sort, top_k_bool_mask], ids=["topk + scatter", "sort", "bool mask"])
def test_top_k_alternatives_pass(fn):
    tests.test_top_k_logits(fn)


def top_k_off_by(delta):
    def top_k_logits(logits, k):
        k = min(k, logits.shape[-1])
        kth = logits.sort(-1, descending=True).values[:, min(max(k - 1 + delta, 0), logits.shape[-1] - 1)][:, None]
        return logits.masked_fill(logits < kth, NEG_INF)

    return top_k_logits


def top_k_probs_dim0(logits, k):
    probs = logits.softmax(dim=0)
    kth = probs.topk(min(k, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits.masked_fill(probs < kth, NEG_INF)


def top_k_sorted_back(logits, k):
    values = logits.sort(-1, descending=True).values
    values[:, min(k, logits.shape[-1]) :] = NEG_INF
    return values


@pytest.mark.parametrize(("fn", "keywords"), [
    (top_k_off_by(1), ["k + 1"]),
    (top_k_off_by(-1), ["k - 1"]),
    (top_k_probs_dim0, ["batch dimension", "dim=0"]),
    (top_k_sorted_back, ["sorted order", "token ids"]),
    (lambda lg, k: lg.masked_fill(lg > lg.topk(min(k, lg.shape[-1]), largest=False).values[:, -1:], NEG_INF),
     ["smallest"]),
    (lambda lg, k: top_k_scatter(lg, k).softmax(-1), ["probabilities"]),
    (lambda lg, k: lg.topk(min(k, lg.shape[-1])).values, ["only the k values"]),
    (lambda lg, k: lg.masked_fill(lg < lg.topk(k).values[:, -1:], NEG_INF), ["min(k, logits.shape[-1])"]),
], ids=["k+1", "k-1", "softmax over batch", "sorted order", "smallest", "probabilities", "values only", "k not capped"])
def test_top_k_mistakes_are_named(fn, keywords):
    fails(tests.test_top_k_logits, fn, *keywords)


# ------------------------------------------------------------------------------------------- top-p


def top_p_gather_back(logits, top_p, min_tokens_to_keep=1):
    sorted_logits, sorted_ids = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    remove_sorted = probs.cumsum(-1) - probs >= top_p
    remove_sorted[:, :min_tokens_to_keep] = False
    return logits.masked_fill(remove_sorted.gather(-1, sorted_ids.argsort(-1)), NEG_INF)


def top_p_scatter_values(logits, top_p, min_tokens_to_keep=1):
    sorted_logits, sorted_ids = logits.sort(dim=-1, descending=True)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    keep = torch.cat([torch.zeros_like(cumulative[:, :1]), cumulative[:, :-1]], dim=-1) < top_p  # shift right
    keep[:, :min_tokens_to_keep] = True
    kept = torch.where(keep, sorted_logits, torch.full_like(sorted_logits, NEG_INF))
    return torch.empty_like(logits).scatter(-1, sorted_ids, kept)


def top_p_loop(logits, top_p, min_tokens_to_keep=1):
    out = torch.full_like(logits, NEG_INF)
    for b, row in enumerate(logits):
        total = 0.0
        for rank, (p, i) in enumerate(zip(*row.softmax(-1).sort(descending=True), strict=True)):
            if total >= top_p and rank >= min_tokens_to_keep:
                break
            out[b, i] = row[i]
            total += float(p)
    return out


@pytest.mark.parametrize("fn", [top_p_gather_back, top_p_scatter_values, top_p_loop],
                         ids=["gather argsort", "scatter values", "python loop"])
def test_top_p_alternatives_pass(fn):
    tests.test_top_p_logits(fn)


def top_p_variant(*, crossing=True, floor=True, softmax=True, back="scatter", dim=-1, use_min=True, descending=True):
    def top_p_logits(logits, top_p, min_tokens_to_keep=1):
        sorted_logits, sorted_ids = logits.sort(dim=-1, descending=descending)
        probs = sorted_logits.softmax(dim) if softmax else sorted_logits
        cumulative = probs.cumsum(-1)
        remove = (cumulative - probs >= top_p) if crossing else (cumulative >= top_p)
        if floor:
            remove[:, : (min_tokens_to_keep if use_min else 1)] = False
        if back == "none":
            return sorted_logits.masked_fill(remove, NEG_INF)
        if back == "unmapped":
            return logits.masked_fill(remove, NEG_INF)
        if back == "gather":
            return logits.masked_fill(remove.gather(-1, sorted_ids), NEG_INF)
        return logits.masked_fill(remove.scatter(-1, sorted_ids, remove), NEG_INF)

    return top_p_logits


@pytest.mark.parametrize(("fn", "keywords"), [
    (top_p_variant(crossing=False), ["crosses the threshold"]),
    (top_p_variant(crossing=False, floor=False), ["keeps no token"]),
    (top_p_variant(softmax=False), ["not the probabilities"]),
    (top_p_variant(back="none"), ["sorted order"]),
    (top_p_variant(back="gather"), ["wrong", "argsort"]),
    (top_p_variant(dim=0), ["dim=0"]),
    (top_p_variant(use_min=False), ["min_tokens_to_keep"]),
    (top_p_variant(back="unmapped"), ["applied to the logits in their original order", "scatter"]),
    (top_p_variant(descending=False), ["ascending order", "descending=True"]),
], ids=["crossing dropped", "keeps nothing", "on logits", "sorted order", "gather", "softmax over batch", "min ignored",
        "mask not mapped back", "sorted ascending"])
def test_top_p_mistakes_are_named(fn, keywords):
    fails(tests.test_top_p_logits, fn, *keywords)


def test_top_p_cases_are_not_on_a_knife_edge():
    assert min(sampling.top_p_margin(c) for c in sampling.top_p_cases()) > 1e-4
    for case in sampling_draws.draw_cases():  # the nucleus of the processed logits is clear-cut too
        if 0 < case.settings.get("top_p", 0) < 1:
            s = case.settings
            lg = (case.logits - s.get("freq_penalty", 0) * sampling.counts(case.ids, 10)) / s["temperature"]
            lg = sampling.keep_top_k(lg, lg, s["top_k"]) if s.get("top_k") else lg
            cumulative = lg.sort(-1, descending=True).values.softmax(-1).cumsum(-1)
            assert float((cumulative - s["top_p"]).abs().min()) > 1e-4


# ------------------------------------------------------------------------------ sample_next_token


def sampler(draw, *, greedy_penalty=True, order="pt", batch_dim=-1, temp_op="div", knobs="kp", penalty="freq",
            temp_last=False):
    """A sample_next_token from the course's parts, with one piece swapped; `draw(probs, generator)` -> (batch,)."""

    def sample_next_token(input_ids, logits, temperature=1.0, top_k=0, top_p=0.0, freq_penalty=0.0, generator=None):
        penalised = parts.apply_frequency_penalty(input_ids, logits, freq_penalty)
        if penalty == "added":
            penalised = parts.apply_frequency_penalty(input_ids, logits, -freq_penalty)
        elif penalty == "presence":
            seen = torch.zeros_like(logits).scatter(-1, input_ids, 1.0)
            penalised = logits - freq_penalty * seen
        if temperature == 0:
            return (penalised if greedy_penalty else logits).argmax(-1)
        base = penalised if order == "pt" else logits  # order "t": the penalty is forgotten when sampling
        scaled = base / temperature if temp_op == "div" else base * temperature
        scaled = base if temp_last else scaled
        if order == "tp":
            scaled = parts.apply_frequency_penalty(input_ids, logits / temperature, freq_penalty)
        steps = [("k", top_k > 0 and "k" in knobs), ("p", 0 < top_p < 1 and "p" in knobs)]
        for step, on in steps if knobs != "pk" else steps[::-1]:
            if on:
                scaled = parts.top_k_logits(scaled, top_k) if step == "k" else parts.top_p_logits(scaled, top_p)
        scaled = scaled / temperature if temp_last else scaled
        return draw(scaled.softmax(batch_dim), generator)

    return sample_next_token


def multinomial(probs, generator):
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def categorical(probs, generator):
    return torch.distributions.Categorical(probs=probs).sample()


def inverse_cdf(probs, generator):
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device)
    return torch.searchsorted(probs.cumsum(-1), u).squeeze(-1).clamp_max(probs.shape[-1] - 1)


@pytest.mark.parametrize("draw", [multinomial, inverse_cdf], ids=["multinomial", "inverse CDF"])
def test_sampler_alternatives_pass(draw, capsys):
    tests.test_sample_next_token(sampler(draw))
    out = capsys.readouterr().out
    assert "passed" in out and "the same seeded generator gives the same tokens" in out


def test_sampler_that_ignores_the_generator_is_named():
    """The notebook promises that a seeded generator makes sampling reproducible: Categorical takes no generator."""
    fails(tests.test_sample_next_token, sampler(categorical), "right distribution", "cannot be reproduced",
          "ignores the generator", "generator=generator")


def test_sampler_check_is_fast_and_deterministic(capsys):
    start = time.process_time()
    tests.test_sample_next_token(parts.sample_next_token)
    assert time.process_time() - start < 1.0
    first = capsys.readouterr().out
    fails(tests.test_sample_next_token, sampler(categorical), "cannot be reproduced")  # the global state, forked
    tests.test_sample_next_token(parts.sample_next_token)
    assert capsys.readouterr().out.splitlines()[-1] == first.strip()


def test_sampler_leaves_the_global_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    fails(tests.test_sample_next_token, sampler(categorical), "cannot be reproduced")  # draws from the global state
    assert torch.equal(torch.rand(3), expected)


def shifted_ids(input_ids, logits, temperature=1.0, top_k=0, top_p=0.0, freq_penalty=0.0, generator=None):
    """Greedy right, but every drawn id 5 too high (some beyond d_vocab - 1)."""
    ids = parts.sample_next_token(input_ids, logits, temperature, top_k, top_p, freq_penalty, generator)
    return ids + 5 * (temperature != 0)


@pytest.mark.parametrize(("fn", "keywords"), [
    (sampler(lambda probs, g: probs.argmax(-1)), ["argmax", "multinomial"]),
    (sampler(multinomial, batch_dim=0), ["batch dimension", "mixes the rows"]),
    (sampler(multinomial, temp_op="mul"), ["multiplied"]),
    (sampler(multinomial, order="tp"), ["before the frequency penalty"]),
    (sampler(multinomial, knobs="pk"), ["top-p is applied before top-k"]),
    (sampler(multinomial, order="t"), ["freq_penalty is not applied"]),
    (sampler(multinomial, knobs="p"), ["top_k is not applied"]),
    (sampler(multinomial, greedy_penalty=False), ["greedy", "penalty"]),
    (sampler(lambda probs, g: torch.multinomial(probs, 1, generator=g)), ["squeeze"]),
    (sampler(lambda probs, g: probs), ["one token id per row"]),
    (sampler(lambda probs, g: torch.multinomial(probs, 1, generator=g).squeeze(-1).float()), ["torch.long"]),
    (shifted_ids, ["outside"]),
    (sampler(multinomial, penalty="added"), ["added instead of subtracted", "sign"]),
    (sampler(multinomial, penalty="presence"), ["presence penalty", "number of times"]),
    (sampler(multinomial, temp_last=True), ["temperature is applied after top-k/top-p"]),
], ids=["argmax", "softmax over batch", "multiplied", "temperature first", "top-p first", "no penalty", "no top-k",
        "greedy without penalty", "(batch, 1)", "probabilities", "float ids", "ids out of range", "penalty added",
        "presence penalty", "temperature last"])
def test_sampler_mistakes_are_named(fn, keywords):
    fails(tests.test_sample_next_token, fn, *keywords)


def test_sampler_without_greedy_case_is_named():
    def sample_next_token(input_ids, logits, temperature=1.0, top_k=0, top_p=0.0, freq_penalty=0.0, generator=None):
        logits = parts.apply_temperature(parts.apply_frequency_penalty(input_ids, logits, freq_penalty), temperature)
        return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)

    fails(tests.test_sample_next_token, sample_next_token, "temperature 0", "argmax")


def test_sampler_on_a_cuda_device_with_a_cpu_generator(monkeypatch):
    """What a GPU learner sees: the check runs one case on the course device with a CPU generator (faked here)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here; `C1P1_DEVICE=cuda make test` runs this on a GPU")
    monkeypatch.setenv("C1P1_DEVICE", "cuda")
    tests.test_sample_next_token(parts.sample_next_token)
    fails(tests.test_sample_next_token, sampler(multinomial), "generator", "device")


# ------------------------------------------------------------------------------------------ generate


def generate_variant(*, crop="last", position=-1, stop="right", sampling=True, only_new=False, pass_generator=True,
                     penalty_window=False, prompt_stops=False):
    def generate(model, input_ids, max_new_tokens, stop_token=None, generator=None, **settings):
        n_ctx = model.cfg.n_ctx
        prompt_len = input_ids.shape[1]
        finished = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        if prompt_stops and stop_token is not None:
            finished = (input_ids == stop_token).any(-1)
        for _ in range(max_new_tokens):
            context = {"last": input_ids[:, -n_ctx:], "first": input_ids[:, :n_ctx], "none": input_ids,
                       "short": input_ids[:, -(n_ctx - 1):]}[crop]
            logits = model(context)[:, position]
            nxt = parts.sample_next_token(context if penalty_window else input_ids, logits,
                                          generator=generator if pass_generator else None,
                                          **(settings if sampling else {}))
            if stop_token is not None and stop != "ignore":
                nxt = nxt.masked_fill(finished, stop_token)
                finished |= nxt == stop_token
            input_ids = torch.cat([input_ids, nxt[:, None]], dim=1)
            if stop_token is not None and ((stop == "right" and finished.all()) or (stop == "first" and finished.any())):
                break
        return input_ids[:, prompt_len:] if only_new else input_ids

    return generate


def generate_with_lists(model, input_ids, max_new_tokens, stop_token=None, generator=None, **sampling_settings):
    """Rows kept as Python lists, cropped with max(0, len - n_ctx), under inference_mode."""
    rows = [list(map(int, row)) for row in input_ids]
    done = [False] * len(rows)
    for _ in range(max_new_tokens):
        start = max(0, len(rows[0]) - model.cfg.n_ctx)
        current = torch.tensor(rows, device=input_ids.device)
        with torch.inference_mode():
            logits = model(current[:, start:])[:, -1]
        nxt = parts.sample_next_token(current, logits.clone(), generator=generator, **sampling_settings).tolist()
        for b, token in enumerate(nxt):
            rows[b].append(stop_token if done[b] else token)
            done[b] = done[b] or token == stop_token
        if stop_token is not None and all(done):
            break
    return torch.tensor(rows, device=input_ids.device)


@pytest.mark.parametrize("fn", [parts.generate, generate_variant(), generate_with_lists],
                         ids=["parts", "variant", "python lists"])
def test_generate_alternatives_pass(fn):
    tests.test_generate(fn)


@pytest.mark.parametrize(("fn", "keywords"), [
    (generate_variant(crop="none"), ["not cropped", "n_ctx"]),
    (generate_variant(crop="first"), ["first n_ctx", "-n_ctx:"]),
    (generate_variant(stop="ignore"), ["keeps generating after its stop token"]),
    (generate_variant(stop="first"), ["first row stops"]),
    (generate_variant(stop="none"), ["every row has stopped"]),
    (generate_variant(sampling=False), ["**sampling"]),
    (generate_variant(position=0), ["first position, [:, 0]", "[:, -1]"]),
    (generate_variant(crop="short"), ["n_ctx - 1", "-n_ctx:"]),
    (generate_variant(penalty_window=True), ["penalty only counts the cropped window", "whole sequence"]),
    (generate_variant(prompt_stops=True), ["Likely cause: a stop token already in the prompt ends its row",
                                           "stop tokens in the prompt don't count"]),
    (generate_variant(only_new=True), ["start with the prompt"]),
    (generate_variant(pass_generator=False), ["cannot be reproduced", "generator=generator"]),
], ids=["no crop", "crop first", "ignores stop", "stops at first", "no early return", "drops **sampling",
        "first position", "only new tokens", "drops the generator", "crop n_ctx - 1", "penalty on the window",
        "stop in the prompt"])
def test_generate_mistakes_are_named(fn, keywords):
    fails(tests.test_generate, fn, *keywords)


def test_generate_cases_exercise_each_mistake():
    model = sampling_draws.TinyLM()
    for case in sampling_draws.generate_cases(model):
        expected = sampling_draws.expected_of(model, case)
        for variant in case.mistakes:
            assert not torch.equal(expected, sampling_draws.expected_of(model, case, variant)), (case.label, variant)


@pytest.mark.parametrize("cases", [sampling.temperature_cases, sampling.penalty_cases, sampling.top_k_cases,
                                   sampling.top_p_cases], ids=["temperature", "penalty", "top-k", "top-p"])
def test_every_catalogued_mistake_changes_the_answer_somewhere(cases):
    built = cases()
    causes = {m.cause for case in built for m in case.mistakes()}
    for cause in causes:
        outputs = [(case, m) for case in built for m in case.mistakes() if m.cause == cause]
        assert any(not sampling.same_logits(m.output(), case.expected) for case, m in outputs), cause


# --------------------------------------------------------------------------------------- beam search


def beam_variant(mistake):
    """A learner's beam search made from the check's reference with one mistake switched on."""
    from c1p1.checks.beam import reference_beam_search

    def beam_search(model, input_ids, num_beams, max_new_tokens):
        return reference_beam_search(model, input_ids, num_beams, max_new_tokens, mistake)

    return beam_search


def beam_search_loop(model, input_ids, num_beams, max_new_tokens):
    """Copies of the prompt with scores (0, -inf, ...), and a Python loop over the candidates."""
    beams = input_ids.repeat(num_beams, 1)
    scores = torch.full((num_beams,), NEG_INF)
    scores[0] = 0.0
    for _ in range(max_new_tokens):
        log_probs = model(beams[:, -model.cfg.n_ctx :])[:, -1].log_softmax(-1)
        candidates = sorted(((float(scores[b] + log_probs[b, t]), b, t) for b in range(num_beams)
                             for t in range(log_probs.shape[-1])), reverse=True)[:num_beams]
        beams = torch.stack([torch.cat([beams[b], torch.tensor([t])]) for _, b, t in candidates])
        scores = torch.tensor([s for s, _, _ in candidates])
    return beams, scores


@pytest.mark.parametrize("fn", [parts.beam_search, beam_search_loop], ids=["parts", "copies with -inf scores"])
def test_beam_search_alternatives_pass(fn):
    tests.test_beam_search(fn)


@pytest.mark.parametrize(("mistake", "keywords"), [
    ("copies", ["identical"]), ("per_beam", ["only by its own best"]), ("logits", ["log_softmax"]),
    ("no_history", ["score so far"]), ("parent", ["flat // d_vocab"]),
])
def test_beam_search_mistakes_are_named(mistake, keywords):
    fails(tests.test_beam_search, beam_variant(mistake), *keywords)


def test_beam_search_other_mistakes_are_named():
    def no_crop(model, input_ids, num_beams, max_new_tokens):
        return parts.beam_search(type("Uncropped", (), {"cfg": type("C", (), {"n_ctx": 10**6, "d_vocab": 11})(),
                                                         "__call__": lambda self, t: model(t)})(),
                                 input_ids, num_beams, max_new_tokens)

    fails(tests.test_beam_search, no_crop, "not cropped")
    fails(tests.test_beam_search, lambda *a: parts.beam_search(*a)[0], "two tensors")
    fails(tests.test_beam_search, lambda *a: tuple(t.flip(0) for t in parts.beam_search(*a)), "best first")
    fails(tests.test_beam_search, lambda *a: (parts.beam_search(*a)[0], parts.beam_search(*a)[1] / 2), "scores are not")


def test_the_device_pass_runs(monkeypatch, capsys):
    """The second pass on the course device (CUDA on a GPU machine), exercised on the CPU under another name."""
    from c1p1.checks import beam

    other = torch.device("cpu", 0)  # compares unequal to torch.device("cpu"), so the device pass runs
    for module in (sampling, sampling_draws, beam):
        monkeypatch.setattr(module, "course_device", lambda: other)
    for name, check in CHECKS.items():
        check(getattr(parts, name))
    assert capsys.readouterr().out.count(" passed: ") == len(CHECKS)


@pytest.mark.parametrize(("name", "helper"), [("sample_next_token", "apply_frequency_penalty"),
                                              ("generate", "sample_next_token")])
def test_an_unfinished_earlier_exercise_is_named(name, helper):
    """A learner's finished function that calls an unfinished one: the message names the unfinished one."""
    import inspect

    learner = dict(stubs())
    exec(inspect.getsource(getattr(parts, name)), learner)  # noqa: S102 - the course's own function, among the stubs
    message = not_done(CHECKS[name], learner[name])
    assert f"{name} calls {helper}" in message, message


def test_sampler_mistakes_named_in_draws_too():
    """A greedy branch that is right does not hide a penalty added, or counted once, when sampling."""
    def right_greedy(wrong):
        def sample_next_token(input_ids, logits, temperature=1.0, top_k=0, top_p=0.0, freq_penalty=0.0, generator=None):
            if temperature == 0:
                return parts.sample_next_token(input_ids, logits, 0.0, freq_penalty=freq_penalty)
            return wrong(input_ids, logits, temperature, top_k, top_p, freq_penalty, generator)
        return sample_next_token

    fails(tests.test_sample_next_token, right_greedy(sampler(multinomial, penalty="added")), "sign")
    fails(tests.test_sample_next_token, right_greedy(sampler(multinomial, penalty="presence")), "presence penalty")
