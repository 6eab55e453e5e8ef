"""The machinery every check shares: clear answers to bad input, strict loading, comparison, diagnosis.

A check is a list of `Case`s. Each case builds the learner's module with a Config, loads parameters
strictly, runs it on an input and compares every value with the expected output (atol 1e-4, rtol
1e-3). When a value is off, the learner's output is compared with the output of each known mistake
(a `Mistake`), and the message names the one it matches. Messages never show a traceback from
inside torch or TransformerLens: when the learner's own code raises, the message shows their line.
"""

from __future__ import annotations

import inspect
import linecache
import math
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NoReturn

import torch
from torch import Tensor, nn

from c1p1.config import Config
from c1p1.reference import Reference, load_reference

ATOL = 1e-4
RTOL = 1e-3
# A learner's output "matches a known mistake" when it is this close to what that mistake gives.
MISTAKE_ATOL = 2e-3
MISTAKE_RTOL = 2e-2

# A small geometry for the randomised runs: it catches sizes hard-coded to GPT-2 small's and runs fast.
SMALL = Config(d_model=96, d_vocab=503, n_ctx=64, d_head=24, d_mlp=384, n_heads=4, n_layers=3)

_OUR_DIRS = (str(Path(__file__).resolve().parent.parent), str(Path(torch.__file__).resolve().parent))


class CheckFailed(AssertionError):
    """A check found a real mistake. In Jupyter only the message is shown, with no traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m{line}\x1b[0m" if i == 0 else line for i, line in enumerate(str(self).splitlines())]


class NotDoneYet(NotImplementedError):
    """The learner's code still raises NotImplementedError: the exercise is not done yet."""

    def _render_traceback_(self) -> list[str]:
        return str(self).splitlines()


def fail(message: str) -> NoReturn:
    __tracebackhide__ = True
    raise CheckFailed(message) from None


def passed(test: str, detail: str) -> None:
    print(f"{test} passed: {detail}")


# ----------------------------------------------------------------------------------- bad input


def _describe(obj: object) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        return f"the function {obj.__name__}"
    if isinstance(obj, nn.Module):
        return f"an instance of {type(obj).__name__}"
    return f"a {type(obj).__name__}"


def expect_module_class(obj: object, name: str, test: str) -> type[nn.Module]:
    """The learner should pass a subclass of nn.Module, not an instance or a function."""
    if isinstance(obj, type) and issubclass(obj, nn.Module):
        return obj
    if isinstance(obj, nn.Module):
        fail(
            f"{test}: you passed an instance of {type(obj).__name__}, but the check wants the class itself.\n"
            f"Call it as tests.{test}({type(obj).__name__}), without (cfg): the check builds its own copies."
        )
    if isinstance(obj, type):
        fail(f"{test}: {obj.__name__} is a class but not an nn.Module. Write it as `class {name}(nn.Module):`.")
    fail(
        f"{test}: you passed {_describe(obj)}, but the check wants the class {name} (an nn.Module subclass).\n"
        f"Call it as tests.{test}({name})."
    )


def expect_function(obj: object, name: str, test: str) -> Callable:
    """The learner should pass a function (or an unbound method), not a class or an instance."""
    if isinstance(obj, type):
        fail(
            f"{test}: you passed {_describe(obj)}, but the check wants the function {name}.\n"
            f"Call it as tests.{test}({name})."
        )
    if not callable(obj) or isinstance(obj, nn.Module):
        fail(f"{test}: you passed {_describe(obj)}, but the check wants the function {name}.")
    return obj


def learner_frame(exc: BaseException) -> str:
    """The deepest line of the learner's own code in a traceback, formatted for a message."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_OUR_DIRS)]
    frames = [f for f in frames if "site-packages" not in f.filename and "<frozen" not in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    line = (f.line or linecache.getline(f.filename, f.lineno)).strip()
    where = "your notebook cell" if "ipykernel" in f.filename or f.filename.startswith("<") else Path(f.filename).name
    return f"  in {where}, line {f.lineno}, in {f.name}:\n      {line}"


def not_done(test: str, what: str) -> NoReturn:
    __tracebackhide__ = True
    raise NotDoneYet(
        f"{test}: {what} still raises NotImplementedError. Replace `raise NotImplementedError()` under "
        "# YOUR CODE HERE with your code, run that cell, then run this check again."
    ) from None


def learner_raised(test: str, what: str, exc: BaseException, hint: str = "") -> NoReturn:
    __tracebackhide__ = True
    if isinstance(exc, NotImplementedError):
        not_done(test, what)
    msg = f"{test}: {what} raised {type(exc).__name__}: {exc}\n{learner_frame(exc)}".rstrip()
    if hint:
        msg += "\n" + hint
    fail(msg)


def build(cls: type[nn.Module], test: str, *args: object, hint: str = "") -> nn.Module:
    """Instantiate the learner's class, turning a signature mismatch into one clear sentence."""
    __tracebackhide__ = True
    try:
        inspect.signature(cls).bind(*args)
    except TypeError:
        wanted = ", ".join(type(a).__name__ for a in args)
        fail(
            f"{test}: {cls.__name__}({wanted}) cannot be called: its __init__ is "
            f"`{cls.__name__}{inspect.signature(cls)}`.\n"
            f"The check builds it as {cls.__name__}(cfg) with the course Config; keep `def __init__(self, cfg: Config)`."
            if isinstance(args[0], Config)
            else f"{test}: {cls.__name__} cannot be built with ({wanted}); its __init__ is {inspect.signature(cls)}."
        )
    try:
        return cls(*args)
    except Exception as exc:  # noqa: BLE001 - any error in the learner's __init__ is reported
        learner_raised(test, f"{cls.__name__}.__init__", exc, hint)


def _shape(t: Tensor | tuple) -> tuple[int, ...]:
    return tuple(t.shape) if isinstance(t, Tensor) else tuple(t)


def named_shape(shape: Sequence[int], dims: Sequence[str]) -> str:
    if len(shape) != len(dims):
        return "(" + ", ".join(str(s) for s in shape) + ")"
    return "(" + ", ".join(f"{d}={s}" for d, s in zip(dims, shape, strict=True)) + ")"


def load_strict(
    module: nn.Module,
    params: dict[str, Tensor],
    test: str,
    hint: str = "",
    assign: bool = False,
    *,
    intro: str = "",
    transposed_note: str = "it looks transposed: swap the two dimensions",
    advice: Callable[[list[str], list[str]], list[str]] | None = None,
) -> None:
    """Load ``params`` into the learner's module strictly; a name or shape problem gets one message.

    Buffers the learner registers (a causal mask, an IGNORE value) are theirs to keep: only
    parameters have to match the TransformerLens names exactly. With ``assign=True`` the module's
    parameters become the given tensors themselves instead of copies (for a whole 124M-parameter
    model this saves most of a second); use it only for a module the check throws away afterwards.
    ``intro``, ``transposed_note`` and ``advice(missing, unexpected)`` adapt the message to another layout.
    """
    __tracebackhide__ = True
    own = dict(module.named_parameters())
    expected = {k: tuple(v.shape) for k, v in params.items()}
    missing = [k for k in expected if k not in own]
    unexpected = [k for k in own if k not in expected]
    wrong = [k for k in expected if k in own and tuple(own[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        lines = [intro or f"{test}: the parameters of {type(module).__name__} do not match GPT-2's names and shapes."]
        if missing:
            lines.append("  missing:    " + ", ".join(f"{k} {expected[k]}" for k in missing))
        if unexpected:
            lines.append("  unexpected: " + ", ".join(f"{k} {tuple(own[k].shape)}" for k in unexpected))
        for k in wrong:
            got = tuple(own[k].shape)
            note = f" ({transposed_note})" if got == expected[k][::-1] else ""
            lines.append(f"  wrong shape: {k} is {got}, expected {expected[k]}{note}")
        if advice is not None:
            lines.extend(advice(missing, unexpected))
        else:
            lines.append(
                "Expected exactly: " + ", ".join(f"{k} {v}" for k, v in expected.items()) + ". "
                "Make each one an nn.Parameter attribute with that name (TransformerLens's names)."
            )
        if hint:
            lines.append(hint)
        fail("\n".join(lines))
    state = dict(module.state_dict())
    state.update({k: v.to(state[k].device) for k, v in params.items()})
    module.load_state_dict(state, strict=True, assign=assign)


# -------------------------------------------------------------------------------- running code


def call(fn: Callable, args: Sequence[object], test: str, what: str, hint: str = "") -> Tensor:
    """Run the learner's code once, without gradients, and vet what it returns."""
    __tracebackhide__ = True
    # The learner works on copies, so an in-place edit can never corrupt the kernel's cached activations.
    copies = [a.clone() if isinstance(a, Tensor) else a for a in args]
    versions = parameter_versions(fn)
    try:
        with torch.no_grad():
            out = fn(*copies)
    except Exception as exc:  # noqa: BLE001 - the learner's error, shown with their line
        parameters_untouched(fn, versions, test, what)
        learner_raised(test, what, exc, hint)
    parameters_untouched(fn, versions, test, what)
    for arg, copy in zip(args, copies, strict=True):
        if isinstance(arg, Tensor) and not torch.equal(arg, copy):
            fail(
                f"{test}: {what} changed its input tensor in place.\n"
                "Likely cause: an in-place operation such as `x -= ...`, `x /= ...` or `x.sub_(...)` on the input. "
                "Write `x = x - ...` so the caller's tensor is left alone (the residual stream is read by later layers)."
            )
    if isinstance(out, tuple | list):
        fail(
            f"{test}: {what} returned a {type(out).__name__} of {len(out)} items; it should return one tensor.\n"
            "Return only the output tensor (no extra values such as the attention pattern)."
        )
    if not isinstance(out, Tensor):
        fail(f"{test}: {what} returned {_describe(out)}; it should return a torch.Tensor. Did you forget `return`?")
    return out


def _module_of(fn: Callable) -> nn.Module | None:
    owner = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def parameter_versions(fn: Callable) -> dict[str, int]:
    """Each parameter's version counter: every in-place write bumps it, through any view too."""
    module = _module_of(fn)
    return {} if module is None else {name: p._version for name, p in module.named_parameters()}


def parameters_untouched(fn: Callable, versions: dict[str, int], test: str, what: str) -> None:
    """Fail when the learner's forward wrote into a parameter; reload the reference if the write reached it.

    A check may lend the learner's module the reference's own tensors (``load_strict(assign=True)``), so
    a write such as ``residual += ...`` on a view of ``W_pos`` would otherwise change GPT-2 for every
    later check in the kernel, and a correct implementation would then be told it is wrong.
    """
    __tracebackhide__ = True
    if not versions:
        return
    params = dict(_module_of(fn).named_parameters())
    written = [name for name, version in versions.items() if name in params and params[name]._version != version]
    if not written:
        return
    ref = reference()
    shared = {t.untyped_storage().data_ptr() for t in ref.params().values()}
    reloaded = ""
    if any(params[name].untyped_storage().data_ptr() in shared for name in written):
        ref.reload()
        reloaded = " The write reached the reference's own weights, so the check has reloaded them: other checks are unaffected."
    fail(
        f"{test}: {what} wrote into its parameter {', '.join(written)} (an in-place operation on the weights).\n"
        "Likely cause: `x += y` (or `x.add_(y)`, `x[...] = ...`) where x shares memory with a parameter: a slice "
        "such as `self.W_pos[:posn]`, and the `expand` or `repeat` of it, is a view of the parameter itself. "
        f"Write `x = x + y` instead, which makes a new tensor.{reloaded}"
    )


def where(index: Sequence[int], dims: Sequence[str]) -> str:
    names = {
        "batch": "batch",
        "posn": "position",
        "query_pos": "query position",
        "key_pos": "key position",
        "n_heads": "head",
        "head_index": "head",
        "d_model": "feature",
        "d_head": "feature",
        "d_mlp": "neuron",
        "d_vocab": "token id",
        "seq": "position",
    }
    return ", ".join(f"{names.get(d, d)} {i}" for d, i in zip(dims, index, strict=False))


def vet_output(out: Tensor, expected: Tensor, dims: Sequence[str], test: str, what: str, shape_hints=()) -> None:
    """Shape, dtype, device and finiteness, each with its own message."""
    __tracebackhide__ = True
    if tuple(out.shape) != tuple(expected.shape):
        msg = (
            f"{test}: {what} has shape {named_shape(out.shape, dims)} "
            f"but should have shape {named_shape(expected.shape, dims)}."
        )
        for applies, hint in shape_hints:
            if applies(tuple(out.shape), tuple(expected.shape)):
                msg += "\nLikely cause: " + hint
                break
        fail(msg)
    if out.device != expected.device:
        fail(
            f"{test}: {what} is on {out.device} but the reference is on {expected.device}.\n"
            "Likely cause: a tensor created inside forward without device=...; create it on the input's device "
            "(e.g. `torch.arange(n, device=x.device)`) or register it as a buffer."
        )
    if out.dtype != expected.dtype:
        fail(
            f"{test}: {what} has dtype {out.dtype} but should be {expected.dtype}.\n"
            "Likely cause: a cast (e.g. .double() or .half()) that is never undone; cast back with .to(x.dtype)."
        )
    bad = ~torch.isfinite(out)
    if bad.any():
        idx = [int(i) for i in bad.nonzero()[0]]
        count = int(bad.sum())
        fail(
            f"{test}: {what} contains {count} NaN or inf values (the first at {where(idx, dims)}).\n"
            "Likely cause: a division by zero, a log of 0, or a softmax over a row that is entirely -inf."
        )


@dataclass
class Mismatch:
    fraction: float
    max_error: float
    index: tuple[int, ...]


def compare(out: Tensor, expected: Tensor) -> Mismatch | None:
    close = torch.isclose(out, expected, atol=ATOL, rtol=RTOL)  # same shape as out
    if bool(close.all()):
        return None
    error = (out - expected).abs()  # same shape as out
    flat = int(error.argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), error.shape))
    return Mismatch(float(close.float().mean()), float(error.max()), index)


def matches(out: Tensor, candidate: Tensor) -> bool:
    return candidate.shape == out.shape and bool(
        torch.isclose(out, candidate.to(out.dtype), atol=MISTAKE_ATOL, rtol=MISTAKE_RTOL).all()
    )


@dataclass
class Mistake:
    """A plausible mistake: what it gives on a case's input, and the advice it earns."""

    cause: str
    output: Callable[[], Tensor]


@dataclass
class Case:
    """One comparison: build with ``cfg``, load ``params``, run on ``inputs``, expect ``expected``."""

    label: str
    cfg: Config
    params: dict[str, Tensor] | None
    inputs: tuple
    expected: Tensor
    dims: tuple[str, ...]
    mistakes: Callable[[], list[Mistake]] = field(default=lambda: [])
    fallback: str = ""  # the most likely causes, ranked, when no known mistake matches


def explain(test: str, what: str, case: Case, out: Tensor, mismatch: Mismatch) -> NoReturn:
    __tracebackhide__ = True
    first = (
        f"{test} FAILED on {case.label}: {100 * mismatch.fraction:.1f}% of {what} values match the reference "
        f"(max abs error {mismatch.max_error:.3g} at {where(mismatch.index, case.dims)})."
    )
    best, best_distance = None, float("inf")
    for mistake in case.mistakes():
        try:
            candidate = mistake.output()
        except Exception:  # noqa: BLE001, S112 - a mistake that cannot run on this input is just not it
            continue
        if not matches(out, candidate):
            continue
        distance = float((out - candidate.to(out.dtype)).abs().max())
        # It must explain the output far better than the correct answer does, and better than the others.
        if distance < 0.2 * mismatch.max_error and distance < best_distance:
            best, best_distance = mistake, distance
    if best is not None:
        fail(first + "\nLikely cause: " + best.cause)
    if case.fallback:
        fail(first + "\nLikely causes, most likely first: " + case.fallback)
    fail(first)


def run_cases(
    test: str,
    cls: type[nn.Module],
    cases: Sequence[Case],
    what: str = "the output",
    shape_hints=(),
    method: str = "forward",
) -> list[nn.Module]:
    """Build, load, run and compare every case; stop at the first failure with a diagnosis."""
    __tracebackhide__ = True
    built = []
    for case in cases:
        module = build(cls, test, case.cfg)
        device = case.expected.device
        try:
            module = module.to(device)
        except Exception as exc:  # noqa: BLE001
            learner_raised(test, f"moving {cls.__name__} to {device}", exc)
        if case.params is not None:
            load_strict(module, case.params, test)
        module.eval()
        fn = getattr(module, method)
        hint = ""
        if case.cfg != Config():
            hint = (
                f"This case builds your class with a smaller Config ({case.cfg}). "
                "Use the cfg fields (cfg.d_model, cfg.n_heads, ...) instead of GPT-2 small's numbers."
            )
        out = call(fn, case.inputs, test, f"{cls.__name__}.{method}", hint)
        vet_output(out, case.expected, case.dims, test, what, shape_hints)
        mismatch = compare(out, case.expected)
        if mismatch is not None:
            explain(test, what, case, out, mismatch)
        built.append(module)
    return built


def summary(cases: Sequence[Case]) -> str:
    return f"{len(cases)} cases match within atol {ATOL:g}, rtol {RTOL:g}: " + "; ".join(c.label for c in cases) + "."


# --------------------------------------------------------------------------- shared inputs


def reference() -> Reference:
    """The kernel's reference, loaded quietly if the notebook has not loaded it yet."""
    return load_reference(verbose=False)


def weights_label(ref: Reference) -> str:
    return "GPT-2's weights" if ref.is_real else "the stand-in's weights"


def random_params(shapes: dict[str, tuple[int, ...]], seed: int, device: torch.device) -> dict[str, Tensor]:
    """Seeded random values for parameters named the TransformerLens way.

    Matrices get unit-scale outputs (std 1/sqrt(fan-in)); biases are drawn around 0 and LayerNorm
    weights ``w`` around 1, so a dropped bias or an ignored affine always changes the output.
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(shapes):
        shape = shapes[name]
        noise = torch.randn(shape, generator=gen)  # shape
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "w":
            value = 1.0 + 0.3 * noise
        elif leaf == "b" or leaf.startswith("b_"):
            value = 0.3 * noise
        else:
            fan_in = shape[-2] if len(shape) >= 2 else 1
            value = noise / math.sqrt(fan_in)
        out[name] = value.to(device)
    return out


# The reference's two runs every check compares on: (which activations, how a message names them).
REFERENCE_RUNS = (("sentence", "the reference sentence"), ("batch", "a batch of two prompts"))


def random_tokens(shape: tuple[int, int], d_vocab: int, seed: int, device: torch.device) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, d_vocab, shape, generator=gen).to(device)  # (batch, posn)


def random_input(shape: tuple[int, ...], seed: int, device: torch.device, scale: float = 1.0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=gen)).to(device)  # shape


def small(**changes: object) -> Config:
    return replace(SMALL, **changes)


def is_notebook() -> bool:
    return "ipykernel" in sys.modules
