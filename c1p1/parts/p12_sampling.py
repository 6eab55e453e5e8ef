"""Generated from solutions/12_sampling.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Float
from jaxtyping import Int
from torch import Tensor
from torch import nn
import torch

__all__ = ['apply_temperature', 'apply_frequency_penalty', 'top_k_logits', 'top_p_logits', 'sample_next_token', 'generate', 'beam_search']

def apply_temperature(logits: Float[Tensor, "batch d_vocab"], temperature: float) -> Float[Tensor, "batch d_vocab"]:
    """The logits divided by the temperature. Raises ValueError when temperature <= 0 (greedy is separate)."""
    ### BEGIN SOLUTION
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}: greedy decoding (T = 0) takes the argmax instead")
    return logits / temperature  # (batch, d_vocab)
    ### END SOLUTION


def apply_frequency_penalty(
    input_ids: Int[Tensor, "batch seq"], logits: Float[Tensor, "batch d_vocab"], freq_penalty: float
) -> Float[Tensor, "batch d_vocab"]:
    """The logits minus freq_penalty times the number of times each token occurs in that row of input_ids."""
    ### BEGIN SOLUTION
    counts = torch.zeros_like(logits)  # (batch, d_vocab)
    ones = torch.ones_like(input_ids, dtype=logits.dtype)  # (batch, seq)
    counts = counts.scatter_add(dim=-1, index=input_ids, src=ones)  # (batch, d_vocab): occurrences per row
    return logits - freq_penalty * counts  # (batch, d_vocab)
    ### END SOLUTION


def top_k_logits(logits: Float[Tensor, "batch d_vocab"], k: int) -> Float[Tensor, "batch d_vocab"]:
    """The logits with all but the k largest of each row set to -inf (k >= d_vocab keeps everything)."""
    ### BEGIN SOLUTION
    k = min(k, logits.shape[-1])
    kth_largest = logits.topk(k, dim=-1).values[:, -1:]  # (batch, 1): the smallest logit that is kept
    return logits.masked_fill(logits < kth_largest, float("-inf"))  # (batch, d_vocab)
    ### END SOLUTION


def top_p_logits(
    logits: Float[Tensor, "batch d_vocab"], top_p: float, min_tokens_to_keep: int = 1
) -> Float[Tensor, "batch d_vocab"]:
    """Keep the smallest set of most likely tokens whose probabilities sum to at least top_p; the rest get -inf."""
    ### BEGIN SOLUTION
    sorted_logits, sorted_ids = logits.sort(dim=-1, descending=True)  # (batch, d_vocab) each
    sorted_probs = sorted_logits.softmax(dim=-1)  # (batch, d_vocab)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # (batch, d_vocab): probability of the likelier tokens
    remove_sorted = mass_before >= top_p  # (batch, d_vocab): the crossing token has mass_before < top_p, so it stays
    remove_sorted[:, :min_tokens_to_keep] = False
    remove = remove_sorted.scatter(dim=-1, index=sorted_ids, src=remove_sorted)  # (batch, d_vocab): original order
    return logits.masked_fill(remove, float("-inf"))  # (batch, d_vocab)
    ### END SOLUTION


def sample_next_token(
    input_ids: Int[Tensor, "batch seq"],
    logits: Float[Tensor, "batch d_vocab"],
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.0,
    freq_penalty: float = 0.0,
    generator: torch.Generator | None = None,
) -> Int[Tensor, "batch"]:
    """One next token per row: penalty, then greedy if temperature == 0, else temperature, top-k, top-p and a draw."""
    ### BEGIN SOLUTION
    if freq_penalty != 0:
        logits = apply_frequency_penalty(input_ids, logits, freq_penalty)  # (batch, d_vocab)
    if temperature == 0:
        return logits.argmax(dim=-1)  # (batch,)
    logits = apply_temperature(logits, temperature)  # (batch, d_vocab)
    if top_k > 0:
        logits = top_k_logits(logits, top_k)  # (batch, d_vocab)
    if 0 < top_p < 1:
        logits = top_p_logits(logits, top_p)  # (batch, d_vocab)
    probs = logits.softmax(dim=-1)  # (batch, d_vocab): each row sums to 1
    # A generator lives on one device: draw where it lives (where the logits are when there is none), then come back.
    draw_device = generator.device if generator is not None else probs.device
    ids = torch.multinomial(probs.to(draw_device), num_samples=1, generator=generator)  # (batch, 1)
    return ids.squeeze(-1).to(logits.device)  # (batch,)
    ### END SOLUTION


def generate(
    model: nn.Module,
    input_ids: Int[Tensor, "batch seq"],
    max_new_tokens: int,
    stop_token: int | None = None,
    generator: torch.Generator | None = None,
    **sampling,
) -> Int[Tensor, "batch seq_plus_new"]:
    """Append up to max_new_tokens tokens per row with sample_next_token(**sampling); a row ends at stop_token."""
    ### BEGIN SOLUTION
    n_ctx = model.cfg.n_ctx
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)  # (batch,)
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(input_ids[:, -n_ctx:])[:, -1]  # (batch, d_vocab): the last position predicts the next token
        next_ids = sample_next_token(input_ids, logits, generator=generator, **sampling)  # (batch,)
        if stop_token is not None:
            next_ids = next_ids.masked_fill(finished, stop_token)  # (batch,): finished rows only repeat the stop token
            finished = finished | (next_ids == stop_token)  # (batch,)
        input_ids = torch.cat([input_ids, next_ids[:, None]], dim=1)  # (batch, seq + 1)
        if bool(finished.all()):
            break
    return input_ids
    ### END SOLUTION


def beam_search(
    model: nn.Module, input_ids: Int[Tensor, "1 seq"], num_beams: int, max_new_tokens: int
) -> tuple[Int[Tensor, "num_beams seq_plus_new"], Float[Tensor, "num_beams"]]:
    """The num_beams most likely continuations found by beam search, best first, with their summed log probabilities."""
    ### BEGIN SOLUTION
    n_ctx, d_vocab = model.cfg.n_ctx, model.cfg.d_vocab
    beams = input_ids  # (1, seq): one beam to start with
    scores = torch.zeros(1, device=input_ids.device)  # (1,): summed log probabilities of the new tokens
    for _ in range(max_new_tokens):
        with torch.no_grad():
            log_probs = model(beams[:, -n_ctx:])[:, -1].log_softmax(dim=-1)  # (beams, d_vocab)
        candidates = (scores[:, None] + log_probs).flatten()  # (beams * d_vocab,): every one-token extension
        scores, flat_ids = candidates.topk(min(num_beams, candidates.numel()))  # (num_beams,) each, best first
        parent, token = flat_ids // d_vocab, flat_ids % d_vocab  # (num_beams,) each
        beams = torch.cat([beams[parent], token[:, None]], dim=1)  # (num_beams, seq + 1)
    return beams, scores
    ### END SOLUTION
