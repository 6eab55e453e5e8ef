"""Everything that touches the learner's code: what they passed, building it, loading it, calling it.

A check never lets the learner's code hurt the kernel: it calls it without gradients, on copies of
its inputs, and with guards that turn each way it can go wrong into one message written for the
learner (their own line when it raises, never a traceback from inside torch).

On a GPU the learner's code runs twice: first on the CPU (`PREFLIGHT`), on CPU copies of its inputs
and parameters, and only when that ran without an error, on the course's device. An index out of
range (``W_E[tokens + 1]``) is then a clean IndexError on the CPU instead of a CUDA device-side
assert, which would break every later cell of the kernel. Everything after the call (shape, dtype,
device, values) is judged on the course's device, so the verdict and the message are the ones a
learner gets on the CPU.
"""

from __future__ import annotations

import copy
import inspect
import linecache
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from c1p1.checks.inputs import reference
from c1p1.config import Config

_OUR_DIRS = (str(Path(__file__).resolve().parent.parent), str(Path(torch.__file__).resolve().parent))

# Where the learner's code is tried first when the course's device is not the CPU. The one device
# that c1p1/checks names: everything else goes to the reference's device.
PREFLIGHT = torch.device("cpu")


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


def describe(obj: object) -> str:
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
        f"{test}: you passed {describe(obj)}, but the check wants the class {name} (an nn.Module subclass).\n"
        f"Call it as tests.{test}({name})."
    )


def expect_function(obj: object, name: str, test: str) -> Callable:
    """The learner should pass a function (or an unbound method), not a class or an instance."""
    if isinstance(obj, type):
        fail(
            f"{test}: you passed {describe(obj)}, but the check wants the function {name}.\n"
            f"Call it as tests.{test}({name})."
        )
    if not callable(obj) or isinstance(obj, nn.Module):
        fail(f"{test}: you passed {describe(obj)}, but the check wants the function {name}.")
    return obj


# ------------------------------------------------------------------------------ their errors


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


def size_hint(cfg: Config, fields: str = "cfg.d_model, cfg.n_heads, ...") -> str:
    """Said when the learner's code fails on a case built with a Config other than GPT-2 small's."""
    if cfg == type(cfg)():  # the default of its kind: GPT-2 small's Config, or another notebook's own
        return ""
    return (
        f"This case builds your class with a smaller Config ({cfg}). "
        f"Use the cfg fields ({fields}) instead of "
        + ("GPT-2 small's numbers." if isinstance(cfg, Config) else "the default config's numbers.")
    )


WRONG_DEVICE = (
    "Likely cause: a tensor created inside forward without device=...; create it on the input's device "
    "(e.g. `torch.arange(n, device=x.device)`) or register it as a buffer."
)


def is_device_error(exc: BaseException) -> bool:
    """Whether torch refused to mix tensors of two devices (a tensor made on the wrong device)."""
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("same device" in text or "expected device" in text)


# ---------------------------------------------------------------------------------- building


_aten = torch.ops.aten
_RANDOM_FILLS = (_aten.normal_, _aten.uniform_)
_RANDOM_FACTORIES = (_aten.randn, _aten.rand)


class SkipRandomInit(TorchDispatchMode):
    """While building a module whose every parameter is loaded next, skip drawing random initial values.

    GPT-2 small has 163M parameter values; drawing them takes seconds and the check overwrites all of
    them with load_strict straight away. Every other operation (zeros, ones, a causal-mask buffer)
    runs as written.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet in _RANDOM_FILLS:
            return args[0]
        if packet in _RANDOM_FACTORIES and args:
            dtype = kwargs.get("dtype") or torch.get_default_dtype()
            return torch.empty(args[0], dtype=dtype, device=kwargs.get("device"))
        return func(*args, **kwargs)


def build(cls: type[nn.Module], test: str, *args: object, hint: str = "", call_text: str = "", keep: str = "") -> nn.Module:
    """Instantiate the learner's class, turning a signature mismatch into one clear sentence.

    ``call_text`` (how the check calls the class) and ``keep`` (the signature to keep) replace the
    sentence written for ``cls(cfg)``.
    """
    __tracebackhide__ = True
    try:
        inspect.signature(cls).bind(*args)
    except TypeError:
        wanted = ", ".join(type(a).__name__ for a in args)
        if call_text:
            fail(
                f"{test}: the check builds your class as {call_text}, but its __init__ is "
                f"`{cls.__name__}{inspect.signature(cls)}`.\n{keep}"
            )
        fail(
            f"{test}: {cls.__name__}({wanted}) cannot be called: its __init__ is "
            f"`{cls.__name__}{inspect.signature(cls)}`.\n"
            f"The check builds it as {cls.__name__}(cfg) with the course Config; keep `def __init__(self, cfg: Config)`."
            if isinstance(args[0], Config)
            else f"{test}: {cls.__name__} cannot be built with ({wanted}); its __init__ is {inspect.signature(cls)}."
        )
    try:
        return cls(*args)
    except Exception as exc:  # any error in the learner's __init__ is reported
        learner_raised(test, f"{cls.__name__}.__init__", exc, hint)


def move(module: nn.Module, device: torch.device, test: str) -> nn.Module:
    """The learner's module on ``device``: the one place a check moves what it built."""
    __tracebackhide__ = True
    try:
        return module.to(device)
    except Exception as exc:  # the learner's own _apply or buffers
        learner_raised(test, f"moving {type(module).__name__} to {device}", exc)


def build_for_loading(cls: type[nn.Module], test: str, cfg: Config, device: torch.device) -> nn.Module:
    """The learner's module built without random initial values (every one is loaded next), on ``device``."""
    __tracebackhide__ = True
    with SkipRandomInit():
        module = build(cls, test, cfg)
    return move(module, device, test)


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


# -------------------------------------------------------------------------------- calling it

IN_PLACE = (
    "Likely cause: an in-place operation such as `x -= ...`, `x /= ...` or `x.sub_(...)` on the input. "
    "Write `x = x - ...` so the caller's tensor is left alone (the residual stream is read by later layers)."
)
ONE_TENSOR = "Return only the output tensor (no extra values such as the attention pattern)."


@dataclass(frozen=True)
class Advice:
    """What the guards of `call` say, where a check's learners need other words than the defaults."""

    in_place: str = IN_PLACE  # the lines after "changed its input tensor in place."
    one_tensor: str = ONE_TENSOR  # the line after "returned a tuple of N items"
    error: Callable[[BaseException], str] = lambda exc: ""  # a likely cause for an exception it raised


def preflight_needed(devices: set[torch.device]) -> bool:
    """Whether the learner's code must first run on the CPU: whenever it would run on an accelerator."""
    return any(d.type not in (PREFLIGHT.type, "meta") for d in devices)


def _devices(fn: Callable, args: Sequence[object]) -> set[torch.device]:
    found = {a.device for a in args if isinstance(a, Tensor)}
    module = _module_of(fn)
    if module is not None:
        found |= {t.device for t in module.parameters()} | {t.device for t in module.buffers()}
    return found


def on_cpu(thing: object) -> object:
    """A CPU copy of a tensor or a module (or of the module a method is bound to); anything else as it is."""
    if isinstance(thing, Tensor):
        return thing.to(PREFLIGHT)
    if isinstance(thing, nn.Module):
        return copy.deepcopy(thing).to(PREFLIGHT)
    owner = getattr(thing, "__self__", None)
    if isinstance(owner, nn.Module) and inspect.ismethod(thing):
        return types.MethodType(thing.__func__, on_cpu(owner))
    return thing


def call(
    fn: Callable,
    args: Sequence[object],
    test: str,
    what: str,
    hint: str = "",
    *,
    advice: Advice = Advice(),
    one_tensor: bool = True,
    twin: Callable[[], Callable] | None = None,
) -> Tensor:
    """Run the learner's code once, without gradients, and vet what it returns.

    With ``one_tensor=False`` whatever it returns comes back as it is (for a check of a pair).
    On an accelerator it first runs on the CPU (see the module's docstring): ``twin()`` gives the
    CPU version of ``fn`` (a module the check built on the CPU); by default `on_cpu` makes one.
    """
    __tracebackhide__ = True
    if preflight_needed(_devices(fn, args)):
        _preflight(twin() if twin is not None else on_cpu(fn), [on_cpu(a) for a in args], test, what, hint, advice)
    # The learner works on copies, so an in-place edit can never corrupt the kernel's cached activations.
    copies = [a.clone() if isinstance(a, Tensor) else a for a in args]
    versions = parameter_versions(fn)
    try:
        with torch.no_grad():
            out = fn(*copies)
    except Exception as exc:  # the learner's error, shown with their line
        parameters_untouched(fn, versions, test, what)
        extra = WRONG_DEVICE if is_device_error(exc) else advice.error(exc)
        learner_raised(test, what, exc, "\n".join(h for h in (hint, extra) if h))
    parameters_untouched(fn, versions, test, what)
    for arg, copied in zip(args, copies, strict=True):
        if isinstance(arg, Tensor) and not torch.equal(arg, copied):
            fail(f"{test}: {what} changed its input tensor in place.\n{advice.in_place}")
    if not one_tensor:
        return out
    if isinstance(out, tuple | list):
        fail(f"{test}: {what} returned a {type(out).__name__} of {len(out)} items; it should return one tensor.\n"
             f"{advice.one_tensor}")
    if not isinstance(out, Tensor):
        fail(f"{test}: {what} returned {describe(out)}; it should return a torch.Tensor. Did you forget `return`?")
    return out.detach()  # a view of a parameter can still carry requires_grad after no_grad


def _preflight(fn: Callable, args: list[object], test: str, what: str, hint: str, advice: Advice) -> None:
    """Run on the CPU first; report an error there exactly as the CPU-only run would report it.

    An error that only says the CPU copy met a tensor still on the accelerator (a global the learner's
    function reads) is not theirs: the real run decides.
    """
    __tracebackhide__ = True
    versions = parameter_versions(fn)
    try:
        # The CPU's random stream is left as it was, so dropout in the judged call draws what it would without this run.
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            fn(*[a.clone() if isinstance(a, Tensor) else a for a in args])
    except Exception as exc:
        if is_device_error(exc):
            return
        parameters_untouched(fn, versions, test, what)
        learner_raised(test, what, exc, "\n".join(h for h in (hint, advice.error(exc)) if h))


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
