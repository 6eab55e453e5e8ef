"""The two-layer attention-only model of notebook 14, trained once and kept in the course cache.

``induction_model(device)`` returns the trained `AttnOnlyTransformer` (from ``c1p1.parts``, generated from
``solutions/14_induction_heads.ipynb``). The first call on a machine trains it from the recipe below,
deterministically and with a progress bar, and writes it to ``cache_dir()/induction-<hash>.pt``; every
later call, in any kernel, loads that file. The hash covers everything that decides the weights but the
device: the recipe, the source of the model and of its training loop, and the torch version (a copy trained on
a GPU differs from a CPU one in the last digits, and either is loaded on any device). So notebook 14's later
sections never depend on the learner's own training cell.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import torch

from c1p1.cache import code_fingerprint
from c1p1.config import Config
from c1p1.reference import cache_dir, pick_device

# Everything that decides the trained weights. Measured on a 2-core CPU: the repeated half's loss falls from
# about ln(64) = 4.16 to below 0.1 in about 25 s (1,200 steps), with a previous-token head in layer 0 and one induction head in layer 1.
RECIPE = {
    "d_vocab": 64,  # tokens 0..63, no meaning: the data are random
    "d_model": 64,
    "d_head": 32,
    "heads_per_layer": [3, 1],  # three heads in layer 0, one in layer 1 (so there is one induction head to find)
    "n_ctx": 48,  # the longest sequence: 24 random tokens repeated once
    "init_range": 0.1,
    "steps": 1200,
    "batch": 32,
    "lr": 1e-2,
    "weight_decay": 0.01,
    "min_period": 6,  # each training sequence repeats a random block of 6 to 24 tokens
    "seed": 0,
}
SEQ_LEN = 24  # the evaluation sequences: SEQ_LEN random tokens, then the same tokens again
EVAL_SEED = 1414


def induction_config() -> Config:
    """The Config of the induction model (n_heads is layer 0's; layer 1 has heads_per_layer[1])."""
    r = RECIPE
    return Config(d_model=r["d_model"], d_vocab=r["d_vocab"], n_ctx=r["n_ctx"], d_head=r["d_head"],
                  n_heads=r["heads_per_layer"][0], n_layers=len(r["heads_per_layer"]), d_mlp=4 * r["d_model"],
                  init_range=r["init_range"])


def quick() -> bool:
    """True under `make test` (C1P1_QUICK=1): long runs take their short form."""
    return os.environ.get("C1P1_QUICK", "") not in ("", "0")


def eval_tokens(device: torch.device | str | None = None, batch: int = 64, seq_len: int = SEQ_LEN):
    """The fixed evaluation batch: seq_len different random tokens, then the same again: (batch, 2 * seq_len), on `device`."""
    from c1p1.parts import repeated_tokens

    device = pick_device() if device is None else torch.device(device)
    return repeated_tokens(batch, seq_len, RECIPE["d_vocab"], seed=EVAL_SEED).to(device)  # (batch, 2 * seq_len)


def cache_path() -> Path:
    """Where the trained model is kept: the hash covers the recipe, the code that builds and trains it, and torch."""
    from c1p1 import parts

    used = (parts.Embed, parts.PosEmbed, parts.MaskedAttention, parts.Attention, parts.Unembed, parts.get_log_probs,
            parts.AttnOnlyBlock, parts.AttnOnlyTransformer, parts.periodic_tokens, parts.repeated_tokens,
            parts.loss_by_half, parts.train_induction)
    used += (build, train_from_recipe)
    recipe = [json.dumps(RECIPE, sort_keys=True), code_fingerprint(*used), torch.__version__]
    digest = hashlib.sha256("\n".join(recipe).encode()).hexdigest()[:16]
    return cache_dir() / f"induction-{digest}.pt"


def build(device: torch.device) -> torch.nn.Module:
    from c1p1.parts import AttnOnlyTransformer

    with torch.random.fork_rng(devices=[]):  # seeded initial weights, without touching the caller's random state
        torch.manual_seed(RECIPE["seed"])
        model = AttnOnlyTransformer(induction_config(), tuple(RECIPE["heads_per_layer"]))
    return model.to(device)


def train_from_recipe(device: torch.device):
    """A fresh model trained by the recipe, and its loss history [(step, first half, repeated half)]."""
    from c1p1.parts import train_induction

    model = build(device)
    r = RECIPE
    history = train_induction(model, steps=r["steps"], lr=r["lr"], batch=r["batch"], seed=r["seed"],
                              min_period=r["min_period"], weight_decay=r["weight_decay"],
                              eval_batch=eval_tokens(device), seq_len=SEQ_LEN)
    return model, history


def _write(path: Path, state: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)  # atomic: a kernel reading at the same time sees no file or the whole file
    except OSError:
        pass  # an unwritable cache only costs the training time next time


def _load(path: Path, device: torch.device):
    """The cached model and its history, or (None, None) when the file is missing or damaged."""
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
        model = build(device)
        model.load_state_dict(saved["state"], strict=True)
        return model, [tuple(row) for row in saved["history"]]
    except Exception:  # noqa: BLE001 - missing or damaged: train it again
        return None, None


@contextlib.contextmanager
def _training_lock(path: Path):
    """An exclusive lock next to the cache file, where the platform has one (fcntl); otherwise no lock."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_name(path.name + ".lock"), "w")  # noqa: SIM115 - closed below
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # releases the lock


def induction_model(device: torch.device | str | None = None, verbose: bool = True) -> torch.nn.Module:
    """The trained induction model on `device` (default: the course device), from the cache or trained now.

    The model has a ``history`` attribute: [(step, loss on the first half, loss on the repeated half)].
    """
    device = pick_device() if device is None else torch.device(device)
    path = cache_path()
    with _training_lock(path):  # two kernels started at once: the second waits and loads what the first trained
        model, history = _load(path, device)
        if model is not None:
            if verbose:
                print(f"Induction model loaded from the course cache ({path.name}).")
        else:
            if verbose:
                print(f"Training the induction model ({RECIPE['steps']} steps); it is cached for next time.")
            model, history = train_from_recipe(device)
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            _write(path, {"state": state, "history": [list(row) for row in history]})
    model.eval()
    model.history = history
    return model
