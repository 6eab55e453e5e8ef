"""The one GPT-2 reference that every notebook and every check uses.

`load_reference()` decides, quickly and without hanging, which GPT-2 it can have:

1. a local checkpoint directory named by ``C1P1_GPT2_DIR`` (classrooms that pre-download weights);
2. real GPT-2 small from the Hugging Face cache, or downloaded when the hub answers a 2-second probe;
3. otherwise an offline stand-in: GPT-2 small's exact geometry with seeded random weights.

Whichever it is, the model is wrapped by TransformerLens 4's ``TransformerBridge`` with raw weights
(no compatibility mode: LayerNorm keeps its own ``w`` and ``b``), and it is built once per kernel.
It prints one line saying which reference is in use.

``C1P1_REFERENCE`` forces a choice: ``gpt2`` (fail rather than fall back) or ``stand-in``.
``C1P1_DEVICE`` picks the device (``cpu``, ``cuda``, or ``mps`` with a warning).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import socket
import warnings
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor

from c1p1.cache import CACHE_ENV, cache_dir  # noqa: F401 - CACHE_ENV is part of this module's interface
from c1p1.config import Config
from c1p1.environment import bpe_files

# 35 tokens with GPT-2's BOS token first; our own sentence, used by every check.
REFERENCE_SENTENCE = (
    "Every layer of GPT-2 reads from the residual stream and adds its own output back, "
    "so the stream carries a running sum of everything the model has worked out."
)
# Two different prompts run as one batch; both are cut to the length of the shorter one.
BATCH_PROMPTS = (
    "The capital of France is Paris, and the capital of Italy is Rome. The capital of Spain is",
    "def add(a, b):\n    return a + b\n\nfor i in range(3):\n    print(add(i, i * 2))",
)

CHECKPOINT_ENV = "C1P1_GPT2_DIR"
CHOICE_ENV = "C1P1_REFERENCE"
DEVICE_ENV = "C1P1_DEVICE"
HUB_MODEL = "gpt2"
PROBE_SECONDS = 2.0
STAND_IN_SEED = 1234

STAND_IN_CAVEAT = (
    "Shapes and component checks are exact; its loss and generated text are meaningless "
    "(random weights, not GPT-2's)."
)


@dataclass
class Reference:
    """A loaded reference: the bridge, its tokenizer, and where it came from."""

    model: object  # transformer_lens.model_bridge.TransformerBridge
    tokenizer: object
    kind: str  # "gpt2", "checkpoint" or "stand-in"
    source: str  # one human sentence: where the weights came from
    device: torch.device
    cfg: Config = field(default_factory=Config)
    detail: str = ""  # what decide() said: a checkpoint folder, "cache", "download" or the stand-in's reason
    _params: dict[str, Tensor] | None = field(default=None, repr=False)
    _caches: dict[str, dict[str, Tensor]] = field(default_factory=dict, repr=False)

    @property
    def is_real(self) -> bool:
        """True when the weights are GPT-2's own (from the hub, its cache or a checkpoint)."""
        return self.kind != "stand-in"

    def describe(self) -> str:
        line = f"Reference: {self.source} on {self.device.type}."
        if not self.is_real:
            line += " " + STAND_IN_CAVEAT
        return line

    def to_tokens(self, text: str | list[str]) -> Tensor:
        """Token ids with the BOS token first, on the reference's device: shape (batch, seq)."""
        return self.model.to_tokens(text).to(self.device)  # (batch, seq)

    def sentence_tokens(self) -> Tensor:
        return self.to_tokens(REFERENCE_SENTENCE)  # (1, 35)

    def batch_tokens(self) -> Tensor:
        rows = [self.to_tokens(p)[0] for p in BATCH_PROMPTS]  # each (seq_i,)
        length = min(len(r) for r in rows)
        return torch.stack([r[:length] for r in rows])  # (2, seq)

    def params(self) -> dict[str, Tensor]:
        """Every parameter under TransformerLens names and shapes, e.g. ``blocks.0.attn.W_Q``."""
        if self._params is None:
            raw = self.model.get_params()
            self._params = {name: value.detach() for name, value in raw.items()}
        return self._params

    def params_for(self, prefix: str) -> dict[str, Tensor]:
        """The parameters under ``prefix`` (e.g. ``blocks.0.attn``), with the prefix removed."""
        start = prefix + "."
        return {k[len(start) :]: v for k, v in self.params().items() if k.startswith(start)}

    def reload(self) -> None:
        """Build the model again from its source, e.g. after a learner's code wrote into its weights.

        The object stays the same, so a notebook's ``reference`` variable sees the fresh weights too.
        """
        detail = "cache" if self.kind == "gpt2" else self.detail  # downloaded once already: no network now
        self.model, _ = build_bridge(self.kind, detail, self.device)
        self.tokenizer = self.model.tokenizer
        self._params = None
        self._caches.clear()

    def activations(self, which: str = "sentence") -> dict[str, Tensor]:
        """The reference's activations on the reference sentence or the batch, cached per kernel."""
        if which not in self._caches:
            tokens = self.sentence_tokens() if which == "sentence" else self.batch_tokens()
            with torch.no_grad():
                logits, cache = self.model.run_with_cache(tokens)
            acts = {name: value.detach() for name, value in cache.items()}
            acts["tokens"] = tokens
            acts["logits"] = logits.detach()
            self._caches[which] = acts
        return self._caches[which]


_LOADED: dict[str, Reference] = {}


def pick_device() -> torch.device:
    """The course's one device: ``C1P1_DEVICE`` when set, else CUDA when present, else the CPU."""
    asked = os.environ.get(DEVICE_ENV, "").strip().lower()
    if asked == "mps":
        warnings.warn(
            "Running GPT-2 on MPS was asked for. GPT-2 has given silently wrong results on MPS; "
            "if a check fails for no reason you can see, unset C1P1_DEVICE to use the CPU.",
            stacklevel=3,
        )
        return torch.device("mps")
    if asked:
        return torch.device(asked)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_tokenizer():
    """GPT-2's tokenizer built from local files, prepending BOS like TransformerLens expects."""
    from transformers import GPT2Tokenizer

    encoder, bpe = bpe_files()
    vocab = json.loads(encoder.read_text(encoding="utf-8"))
    lines = bpe.read_text(encoding="utf-8").splitlines()[1:]  # the first line is a version comment
    merges = [tuple(line.split()) for line in lines if line.strip()]
    return GPT2Tokenizer(vocab=vocab, merges=merges, add_bos_token=True, name_or_path=HUB_MODEL)


def gpt2_small_hf_config():
    from transformers import GPT2Config

    cfg = Config()
    return GPT2Config(
        vocab_size=cfg.d_vocab,
        n_positions=cfg.n_ctx,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        n_inner=cfg.d_mlp,
        activation_function="gelu_new",
        layer_norm_epsilon=cfg.layer_norm_eps,
        initializer_range=cfg.init_range,
    )


def randomise_(model: torch.nn.Module, seed: int, init_range: float = 0.02) -> None:
    """Give every parameter seeded random values: matrices, biases and LayerNorm weights alike.

    GPT-2's own initialisation sets biases to 0 and LayerNorm weights to 1, which would make a
    dropped bias or an ignored ``w`` invisible. Here biases are drawn around 0 and LayerNorm
    weights around 1, with spreads large enough that such mistakes change the output.
    """
    params = [p for p in model.parameters()]  # tied weights appear once
    total = sum(p.numel() for p in params)
    noise = torch.randn(total, generator=torch.Generator().manual_seed(seed))  # (total,)
    names = {id(p): n for n, p in model.named_parameters()}
    offset = 0
    with torch.no_grad():
        for p in params:
            chunk = noise[offset : offset + p.numel()].view_as(p)  # same shape as p
            offset += p.numel()
            name = names[id(p)]
            if p.dim() > 1:
                p.copy_(chunk * init_range)
            elif ".ln_" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * chunk)
            else:
                p.copy_(0.1 * chunk)


def build_stand_in(seed: int = STAND_IN_SEED):
    """GPT-2 small's geometry with seeded random weights, built without any download.

    Drawing 124M random numbers costs every kernel about 1.4 s, so the weights are kept on disk
    (``stand_in_cache_path``) and memory-mapped on later loads: the same values in 0.05 s, with the
    pages shared between kernels. The file's name hashes everything that decides the values, so a
    change to the recipe writes a new file; an unreadable file is rebuilt; a cache that cannot be
    written is skipped.
    """
    from transformers import GPT2LMHeadModel

    with torch.device("meta"):
        model = GPT2LMHeadModel(gpt2_small_hf_config())
    path = stand_in_cache_path(seed)
    try:
        model.load_state_dict(_read_stand_in(path), strict=True, assign=True)  # copy-on-write pages of the file
    except Exception:  # no file yet, or a truncated or foreign one: draw the weights and (over)write it
        model = model.to_empty(device="cpu")
        model.lm_head.weight = model.transformer.wte.weight  # GPT-2 ties W_U to W_E
        randomise_(model, seed)
        _write_stand_in(model, path)
    model.lm_head.weight = model.transformer.wte.weight  # GPT-2 ties W_U to W_E
    return model.eval()


def stand_in_cache_path(seed: int = STAND_IN_SEED) -> Path:
    """Where the stand-in's weights are kept, in `cache_dir()`."""
    import transformers

    recipe = [inspect.getsource(randomise_), repr(gpt2_small_hf_config().to_dict()), str(seed),
              torch.__version__, transformers.__version__]
    digest = hashlib.sha256("\n".join(recipe).encode()).hexdigest()[:16]
    return cache_dir() / f"stand-in-{digest}.pt"


def _read_stand_in(path: Path) -> dict[str, Tensor]:
    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)  # raises when missing or damaged
    state["lm_head.weight"] = state["transformer.wte.weight"]
    return state


def _write_stand_in(model, path: Path) -> None:
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied to wte
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, tmp)
        os.replace(tmp, path)  # atomic: a kernel reading at the same time sees the old file or the whole new one
    except OSError:  # read-only or full disk: the stand-in still works, only slower next time
        with contextlib.suppress(OSError):
            tmp.unlink()


def hub_cached() -> bool:
    """Whether real GPT-2's weights are already in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    weights = [try_to_load_from_cache(HUB_MODEL, f) for f in ("model.safetensors", "pytorch_model.bin")]
    config = try_to_load_from_cache(HUB_MODEL, "config.json")
    return isinstance(config, str) and any(isinstance(w, str) for w in weights)


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def hub_reachable(seconds: float = PROBE_SECONDS) -> bool:
    """A probe of at most ``seconds``: can we open a TCP connection to the hub?"""
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except ImportError:
        endpoint = "https://huggingface.co"
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)

    def connect() -> bool:
        with socket.create_connection((url.hostname, port), timeout=seconds):
            return True

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(connect).result(timeout=seconds)
    except (OSError, FutureTimeout):
        return False
    finally:
        pool.shutdown(wait=False)


def _choice() -> str:
    """What C1P1_REFERENCE asks for: "", "gpt2", "stand-in", ..."""
    return os.environ.get(CHOICE_ENV, "").strip().lower()


def decide() -> tuple[str, str]:
    """Which reference to load, and why, without ever waiting more than ~2 s.

    Returns (kind, detail): ("checkpoint", path), ("gpt2", "cache"|"download") or ("stand-in", reason).
    """
    choice = _choice()
    if choice in {"stand-in", "standin", "offline"}:
        return "stand-in", f"{CHOICE_ENV}={choice}"
    local = os.environ.get(CHECKPOINT_ENV, "").strip()
    if local:
        return "checkpoint", local
    if hub_cached():
        return "gpt2", "cache"
    if _truthy("HF_HUB_OFFLINE") or _truthy("TRANSFORMERS_OFFLINE"):
        reason = "HF_HUB_OFFLINE is set and GPT-2 is not in the local cache"
    elif hub_reachable():
        return "gpt2", "download"
    else:
        reason = f"the Hugging Face hub did not answer within {PROBE_SECONDS:g} s"
    if choice == "gpt2":
        raise RuntimeError(f"{CHOICE_ENV}=gpt2 asks for real GPT-2, but {reason}.")
    return "stand-in", reason


def load_hf_model(kind: str, detail: str):
    """The Hugging Face model for a decision, and a sentence saying where it came from."""
    from transformers import GPT2LMHeadModel

    if kind == "checkpoint":
        path = Path(detail).expanduser()
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"{CHECKPOINT_ENV}={detail} has no config.json. Point it at a folder saved with "
                "save_pretrained (config.json plus model.safetensors)."
            )
        model = GPT2LMHeadModel.from_pretrained(path, attn_implementation="eager")
        return model.eval(), f"GPT-2 small from the local checkpoint {path}"
    if kind == "gpt2":
        local_only = detail == "cache"
        model = GPT2LMHeadModel.from_pretrained(HUB_MODEL, local_files_only=local_only, attn_implementation="eager")
        where = "the Hugging Face cache" if local_only else "the Hugging Face hub"
        return model.eval(), f"GPT-2 small, real weights, from {where}"
    return build_stand_in(), f"offline stand-in for GPT-2 small ({detail})"


def wrap(hf_model, tokenizer, device: torch.device):
    """Wrap a Hugging Face GPT-2 in TransformerLens's bridge, raw weights, no compatibility mode."""
    from transformer_lens.model_bridge import TransformerBridge

    hf_model = hf_model.to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(HUB_MODEL, hf_model=hf_model, tokenizer=tokenizer, device=device)
    return bridge.eval()


def build_bridge(kind: str, detail: str, device: torch.device):
    """The bridge for a decision, and the sentence saying where its weights came from."""
    hf_model, source = load_hf_model(kind, detail)
    return wrap(hf_model, build_tokenizer(), device), source


def load_reference(verbose: bool = True) -> Reference:
    """Load (once per kernel) and return the reference GPT-2, printing which one it is."""
    device = pick_device()
    key = str(device)
    if key not in _LOADED:
        kind, detail = decide()
        # Building initialises Hugging Face modules before their weights arrive; the learner's random stream must
        # not depend on whether this kernel had loaded the reference before (a re-run cell gives the same numbers).
        with torch.random.fork_rng(devices=[]):
            try:
                bridge, source = build_bridge(kind, detail, device)
            except Exception as exc:  # a broken download or a damaged cache: the course still runs, and says why
                if kind != "gpt2" or _choice() == "gpt2":
                    raise
                where = "the local cache" if detail == "cache" else "the Hugging Face hub"
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                kind, detail = "stand-in", f"GPT-2 could not be loaded from {where}: {type(exc).__name__}: {first}"[:300]
                bridge, source = build_bridge(kind, detail, device)
        _LOADED[key] = Reference(
            model=bridge, tokenizer=bridge.tokenizer, kind=kind, source=source, device=device, detail=detail
        )
    reference = _LOADED[key]
    if verbose:
        print(reference.describe())
    return reference
