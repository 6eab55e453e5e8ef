"""Generated from solutions/11_training.ipynb by `make exercises`. Do not edit: edit the notebook."""

from __future__ import annotations

from jaxtyping import Int
from torch import Tensor
from torch import nn
import math
import torch

__all__ = ['get_batch', 'init_weights', 'configure_optimizer', 'lr_at', 'train_step', 'estimate_loss']

def get_batch(
    data: Int[Tensor, "n_tokens"], batch_size: int, block_size: int, generator: torch.Generator
) -> tuple[Int[Tensor, "batch block"], Int[Tensor, "batch block"]]:
    """batch_size random windows of block_size tokens from data (x) and the same windows one token later (y)."""
    ### BEGIN SOLUTION
    n_starts = len(data) - block_size  # the last start still leaves one token after the window for y
    starts = torch.randint(n_starts, (batch_size,), generator=generator, device=generator.device)  # (batch,)
    offsets = torch.arange(block_size, device=data.device)  # (block,)
    index = starts.to(data.device)[:, None] + offsets  # (batch, block)
    return data[index], data[index + 1]  # (batch, block), (batch, block)
    ### END SOLUTION


@torch.no_grad()
def init_weights(model: nn.Module) -> None:
    """GPT-2's initialisation, in place: weights N(0, init_range), the residual writers (W_O, W_out) scaled by
    1 / sqrt(2 * n_layers); biases 0; LayerNorm scales 1."""
    ### BEGIN SOLUTION
    std = model.cfg.init_range
    residual_std = std / math.sqrt(2 * model.cfg.n_layers)
    for name, param in model.named_parameters():
        short = name.split(".")[-1]
        if short in ("W_O", "W_out"):
            param.normal_(0.0, residual_std)  # these add to the residual stream, once per layer each
        elif short.startswith("W_"):
            param.normal_(0.0, std)
        elif short == "w":
            param.fill_(1.0)  # LayerNorm scale
        else:
            param.zero_()  # every bias, and LayerNorm's shift
    ### END SOLUTION


def configure_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices (every W_...) and none on biases or LayerNorm parameters."""
    ### BEGIN SOLUTION
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.split(".")[-1].startswith("W_"):
            decay.append(param)  # W_E, W_pos, W_Q, W_K, W_V, W_O, W_in, W_out, W_U
        else:
            no_decay.append(param)  # b_..., and LayerNorm's w and b
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))
    ### END SOLUTION


def lr_at(step: int, warmup_steps: int, max_steps: int, max_lr: float, min_lr: float) -> float:
    """The learning rate at `step` (counting from 0): linear warm-up to max_lr, then cosine decay to min_lr."""
    ### BEGIN SOLUTION
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / (max_steps - warmup_steps)  # 0 -> 1
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    ### END SOLUTION


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: Int[Tensor, "batch block"],
    y: Int[Tensor, "batch block"], max_grad_norm: float
) -> float:
    """One step: forward, cross-entropy, backward, clip the gradients, optimizer step, zero the gradients."""
    ### BEGIN SOLUTION
    logits = model(x)  # (batch, block, d_vocab)
    log_probs = logits.log_softmax(dim=-1)  # (batch, block, d_vocab)
    loss = -log_probs.gather(dim=-1, index=y.unsqueeze(-1)).mean()  # scalar: mean over batch and block
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()
    ### END SOLUTION


@torch.no_grad()
def estimate_loss(
    model: nn.Module, data: Int[Tensor, "n_tokens"], batch_size: int, block_size: int, n_batches: int,
    generator: torch.Generator
) -> float:
    """The mean loss over n_batches fresh batches from data (get_batch with the given generator), in eval mode
    and without gradients; the model is left in the mode it was in."""
    ### BEGIN SOLUTION
    was_training = model.training
    model.eval()
    total = 0.0
    for _ in range(n_batches):
        x, y = get_batch(data, batch_size, block_size, generator)  # (batch, block), (batch, block)
        log_probs = model(x).log_softmax(dim=-1)  # (batch, block, d_vocab)
        total += -log_probs.gather(dim=-1, index=y.unsqueeze(-1)).mean().item()
    model.train(was_training)
    return total / n_batches
    ### END SOLUTION
