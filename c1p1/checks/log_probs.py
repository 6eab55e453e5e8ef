"""test_get_log_probs (notebook 09): the log probability of each true next token, from the logits."""

from __future__ import annotations

from torch import Tensor

from c1p1.checks import core, oracle
from c1p1.checks.core import Case, Mistake

LOG_PROB_DIMS = ("batch", "posn")

LOG_PROBS_FALLBACK = (
    "1) turn the logits into log probabilities with logits.log_softmax(dim=-1); "
    "2) the logits at position i predict token i + 1: pair log_probs[:, :-1] with tokens[:, 1:]; "
    "3) pick the true token's entry with gather(dim=-1, index=tokens[:, 1:].unsqueeze(-1)) and squeeze the "
    "last dimension."
)

LOG_PROBS_SHAPE_HINTS = (
    (
        lambda got, want: len(got) == 2 and got[0] == want[0] and got[1] == want[1] + 1,
        "you returned one value per position, but the last position has no next token to predict: a sequence "
        "of posn tokens gives posn - 1 predictions. Pair log_probs[:, :-1] with tokens[:, 1:].",
    ),
    (
        lambda got, want: len(got) == 3 and got[:2] == want and got[-1] == 1,
        "gather keeps a last dimension of size 1: remove it with .squeeze(-1).",
    ),
    (
        lambda got, want: len(got) == 3 and got[:2] == want,
        "you returned the whole distribution over the vocabulary. Keep only the entry of the true next token, "
        "with gather(dim=-1, ...) or indexing.",
    ),
    (
        lambda got, want: len(got) == 1 and got[0] == want[0] * want[1],
        "the result is flattened: keep the shape (batch, posn - 1).",
    ),
)


def log_probs_mistakes(logits: Tensor, tokens: Tensor):
    """What each plausible get_log_probs mistake gives on these logits."""

    def from_position_one() -> Tensor:
        lp = logits.log_softmax(-1)  # (batch, posn, d_vocab)
        return lp[:, 1:].gather(-1, tokens[:, 1:, None])[..., 0]  # (batch, posn - 1)

    def raw_logits() -> Tensor:
        return logits[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]  # (batch, posn - 1)

    def over_positions() -> Tensor:
        lp = logits.log_softmax(1)  # (batch, posn, d_vocab)
        return lp[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]  # (batch, posn - 1)

    return lambda: [
        Mistake(
            "the alignment is off by one: you paired each position's prediction with its own token. The logits "
            "at position i predict token i + 1, so pair log_probs[:, :-1] with tokens[:, 1:].",
            lambda: oracle.log_probs(logits, tokens, shift=0),
        ),
        Mistake(
            "the alignment is off by one: you took the predictions of positions 1, 2, ..., which predict tokens "
            "2, 3, .... The predictions for tokens[:, 1:] are log_probs[:, :-1] (position 0 predicts token 1).",
            from_position_one,
        ),
        Mistake(
            "you returned probabilities, not log probabilities: use log_softmax(dim=-1) rather than softmax.",
            lambda: oracle.log_probs(logits, tokens, probs=True),
        ),
        Mistake(
            "you picked out raw logits. Turn them into log probabilities first with logits.log_softmax(dim=-1).",
            raw_logits,
        ),
        Mistake(
            "the sign is flipped: return the log probability itself (a negative number). The loss, its "
            "negative mean, comes afterwards.",
            lambda: -oracle.log_probs(logits, tokens),
        ),
        Mistake(
            "log_softmax is taken over the wrong dimension. Normalise over the vocabulary: log_softmax(dim=-1).",
            over_positions,
        ),
    ]


def get_log_probs_cases() -> list[Case]:
    ref = core.reference()
    label = core.weights_label(ref)
    out = []
    for which, text in core.REFERENCE_RUNS:
        acts = ref.activations(which)
        logits, tokens = acts["logits"].clone(), acts["tokens"].clone()  # (batch, posn, d_vocab), (batch, posn)
        out.append(Case(f"{text}, logits of {label}", ref.cfg, None, (logits, tokens),
                        oracle.log_probs(logits, tokens), LOG_PROB_DIMS, log_probs_mistakes(logits, tokens),
                        LOG_PROBS_FALLBACK))
    small = core.SMALL
    logits = core.random_input((3, 11, small.d_vocab), seed=903, device=ref.device, scale=3.0)  # (3, 11, d_vocab)
    tokens = core.random_tokens((3, 11), small.d_vocab, seed=904, device=ref.device)  # (3, 11)
    out.append(Case("random logits and tokens (d_vocab=503)", small, None, (logits, tokens),
                    oracle.log_probs(logits, tokens), LOG_PROB_DIMS, log_probs_mistakes(logits, tokens),
                    LOG_PROBS_FALLBACK))
    return out


def test_get_log_probs(get_log_probs) -> None:
    """Check get_log_probs: the log probability of each true next token, on GPT-2's logits and random ones."""
    __tracebackhide__ = True
    test = "test_get_log_probs"
    fn = core.expect_function(get_log_probs, "get_log_probs", test)
    cases = get_log_probs_cases()
    core.run_cases(test, fn, cases, shape_hints=LOG_PROBS_SHAPE_HINTS, values="the log-probability",
                   name="get_log_probs")
    core.passed(test, core.summary(cases))
