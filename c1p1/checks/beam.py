"""test_beam_search (notebook 12, the optional exercise).

The learner's beam search runs on the tiny deterministic model of test_generate (n_ctx 6, 11 tokens),
on the CPU first, and its beams and summed log probabilities are compared with the course's own beam
search. When they differ, each catalogued mistake's beam search is run too, to name the one it matches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from c1p1.checks import core
from c1p1.checks.sampling import CPU, course_device
from c1p1.checks.sampling_draws import ContextTooLong, TinyLM


def reference_beam_search(model: TinyLM, prompt: Tensor, num_beams: int, max_new: int, mistake: str = "") -> tuple[Tensor, Tensor]:
    """The course's beam search, with switches for the catalogued mistakes; returns (beams, scores), best first."""
    d_vocab, n_ctx = model.cfg.d_vocab, model.cfg.n_ctx
    copies = num_beams if mistake == "copies" else 1
    beams = prompt.repeat(copies, 1)  # (beams, seq)
    scores = torch.zeros(copies, dtype=torch.float64, device=prompt.device)  # (beams,)
    for _ in range(max_new):
        logits = model.logits(beams[:, -n_ctx:])[:, -1].double()  # (beams, d_vocab)
        step = logits if mistake == "logits" else logits.log_softmax(-1)  # (beams, d_vocab)
        if mistake == "per_beam":  # the first step branches, then every beam only takes its own best token
            values, token = step.topk(num_beams, dim=-1) if beams.shape[0] == 1 else step.max(-1, keepdim=True)
            beams = torch.cat([beams.repeat_interleave(values.shape[-1], 0), token.reshape(-1, 1)], dim=1)
            scores = (scores[:, None] + values).flatten()
            continue
        total = step if mistake == "no_history" else scores[:, None] + step  # (beams, d_vocab)
        values, flat = total.flatten().topk(min(num_beams, total.numel()))  # (num_beams,) each
        parent = flat % beams.shape[0] if mistake == "parent" else flat // d_vocab  # (num_beams,)
        if mistake == "no_history":
            values = scores[parent] + step.flatten()[flat]
        beams = torch.cat([beams[parent], (flat % d_vocab)[:, None]], dim=1)  # (num_beams, seq + 1)
        scores = values
    order = scores.argsort(descending=True)  # (num_beams,)
    return beams[order], scores[order]


ADVICE = {
    "copies": "the search starts from num_beams copies of the prompt, so every beam makes the same choices and "
              "the beams are identical. Start from one beam (the prompt) and let the first step branch into num_beams.",
    "per_beam": "each beam is extended only by its own best next token, which is num_beams greedy searches. Score "
                "every (beam, token) extension and keep the num_beams best of all of them together.",
    "logits": "the scores add up logits; add log probabilities (log_softmax over the vocabulary) so that the "
              "sum is the log probability of the whole continuation.",
    "no_history": "the extensions are ranked by the new token's log probability alone; add each beam's score so "
                  "far (scores[:, None] + log_probs) before choosing.",
    "parent": "the parent beam of a flat index is flat // d_vocab (and the token flat % d_vocab); the parent "
              "index is computed another way.",
}


@dataclass
class BeamCase:
    label: str
    prompt: Tensor  # (1, seq)
    num_beams: int
    max_new: int


def beam_cases() -> list[BeamCase]:
    prompt = core.random_tokens((1, 3), 11, 1272, CPU)  # (1, 3)
    return [
        BeamCase("3 beams, 5 new tokens after 3 (n_ctx 6: the context is cropped)", prompt, 3, 5),
        BeamCase("4 beams, 3 new tokens after 2", prompt[:, :2], 4, 3),
    ]


def run(fn: Callable, model: TinyLM, case: BeamCase, test: str, where: str = "") -> tuple[Tensor, Tensor]:
    __tracebackhide__ = True
    prompt = case.prompt.to(next(iter(model.buffers())).device)
    try:
        with torch.no_grad():
            out = fn(model, prompt.clone(), case.num_beams, case.max_new)
    except ContextTooLong as exc:
        core.fail(f"{test} FAILED on {case.label}: {exc}.\nLikely cause: the context is not cropped: run the model "
                  "on beams[:, -model.cfg.n_ctx:].")
    except Exception as exc:  # noqa: BLE001 - the learner's error, shown with their line
        core.learner_raised(test, f"beam_search on {case.label}{where}", exc)
    if not (isinstance(out, tuple | list) and len(out) == 2 and all(isinstance(t, Tensor) for t in out)):
        core.fail(f"{test}: beam_search returned {type(out).__name__}; it should return two tensors, "
                  "(beams, scores): the beams (num_beams, seq + new) and their summed log probabilities (num_beams,).")
    beams, scores = out
    want = (case.num_beams, case.prompt.shape[1] + case.max_new)
    if tuple(beams.shape) != want or tuple(scores.shape) != (case.num_beams,):
        core.fail(f"{test}: on {case.label} beam_search returned beams of shape {tuple(beams.shape)} and scores of "
                  f"shape {tuple(scores.shape)}; expected {want} and ({case.num_beams},).\nLikely cause: return the "
                  "prompt followed by the new tokens for every beam, and one score per beam.")
    if beams.device != prompt.device or scores.device != prompt.device:
        core.fail(f"{test}: beam_search returned tensors on {beams.device} and {scores.device}; the prompt is on "
                  f"{prompt.device}. Create new tensors with device=input_ids.device.")
    return beams.to(CPU), scores.to(CPU)


def test_beam_search(beam_search) -> None:
    """Check beam_search on a tiny model: the beams, best first, and their summed log probabilities."""
    __tracebackhide__ = True
    test = "test_beam_search"
    fn = core.expect_function(beam_search, "beam_search", test)
    model = TinyLM()
    cases = beam_cases()
    for case in cases:
        beams, scores = run(fn, model, case, test)
        expected_beams, expected_scores = reference_beam_search(model, case.prompt, case.num_beams, case.max_new)
        same_scores = torch.allclose(scores.double(), expected_scores, atol=1e-4, rtol=1e-4)
        if torch.equal(beams, expected_beams) and same_scores:
            continue
        first = (f"{test} FAILED on {case.label}: beams {beams[:, case.prompt.shape[1]:].tolist()} with scores "
                 f"{[round(float(s), 3) for s in scores]}, expected {expected_beams[:, case.prompt.shape[1]:].tolist()} "
                 f"with {[round(float(s), 3) for s in expected_scores]}.")
        for mistake, advice in ADVICE.items():
            wrong_beams, wrong_scores = reference_beam_search(model, case.prompt, case.num_beams, case.max_new, mistake)
            if torch.equal(beams, wrong_beams):
                core.fail(first + "\nLikely cause: " + advice)
        if torch.equal(beams, expected_beams):
            core.fail(first + "\nLikely cause: the beams are right but the scores are not: return each beam's sum of "
                      "the log probabilities (log_softmax) of its new tokens, not of the prompt, not an average.")
        if sorted(map(tuple, beams.tolist())) == sorted(map(tuple, expected_beams.tolist())):
            core.fail(first + "\nLikely cause: the right beams in the wrong order: return them best first (sort by score).")
        core.fail(first + "\nLikely causes, most likely first: 1) keep the num_beams best of all beams x tokens "
                  "extensions; 2) a beam's score is its score so far plus the new token's log probability; 3) crop "
                  "the context to the last n_ctx tokens.")
    device = course_device()
    if device != CPU:
        beams, _ = run(fn, TinyLM().to(device), cases[0], test, f" on {device}")
        if not torch.equal(beams, reference_beam_search(model, cases[0].prompt, cases[0].num_beams, cases[0].max_new)[0]):
            core.fail(f"{test} FAILED on {cases[0].label} on {device}, although it passed on the CPU.")
    core.passed(test, f"{len(cases)} cases match the course's beam search (the beams, best first, and their summed "
                "log probabilities within 1e-4): " + "; ".join(c.label for c in cases) + ".")
