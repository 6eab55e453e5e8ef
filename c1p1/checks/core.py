"""The check engine: a check is a list of `Case`s and, for each, the `Mistake`s a learner might make.

`run_cases` is the one runner every check uses. For each case it builds the learner's class (or
reuses the module it built for the same Config and parameters), loads the parameters strictly,
moves it to the reference's device once, calls it with every guard (their error with their line,
in-place writes into the input or the weights, a tuple or nothing returned), then judges the output
(shape, dtype, device, NaN/inf, every value) and explains a mismatch with the known mistake it
matches or the case's ranked causes. On a GPU the learner's code runs on the CPU first
(`c1p1.checks.learner`), so an index out of range never reaches the GPU. A check module holds
only its cases, its mistakes with their advice, and the few steps of its own (``prepare``,
``verify``) that the runner calls.

The pieces live in three modules and are all importable from here: `c1p1.checks.learner` (bad input,
building, loading, calling), `c1p1.checks.verdict` (judging an output) and `c1p1.checks.inputs`
(the reference's activations and seeded random values). The reference computations are in
`c1p1.checks.oracle`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from c1p1.checks.inputs import (
    REFERENCE_RUNS,
    SMALL,
    random_input,
    random_params,
    random_tokens,
    reference,
    weights_label,
)
from c1p1.checks.learner import (
    IN_PLACE,
    ONE_TENSOR,
    PREFLIGHT,
    Advice,
    CheckFailed,
    NotDoneYet,
    SkipRandomInit,
    build,
    build_for_loading,
    call,
    describe,
    expect_function,
    expect_module_class,
    fail,
    learner_frame,
    learner_raised,
    load_strict,
    move,
    not_done,
    parameter_versions,
    parameters_untouched,
    passed,
    size_hint,
)
from c1p1.checks.verdict import (
    ATOL,
    MISTAKE_ATOL,
    MISTAKE_RTOL,
    RTOL,
    Case,
    Mismatch,
    Mistake,
    ShapeHints,
    compare,
    explain,
    judge,
    matches,
    named_shape,
    summary,
    vet_output,
    where,
)

__all__ = [
    "ATOL", "MISTAKE_ATOL", "MISTAKE_RTOL", "IN_PLACE", "ONE_TENSOR", "PREFLIGHT", "REFERENCE_RUNS", "RTOL", "SMALL", "Advice", "Case", "CheckFailed", "Mismatch", "Mistake",
    "NotDoneYet", "ShapeHints", "build", "parameter_versions", "parameters_untouched", "build_for_loading", "call", "compare", "describe", "expect_function", "expect_module_class",
    "explain", "fail", "judge", "learner_frame", "learner_raised", "load_strict", "matches", "move", "named_shape",
    "not_done", "passed", "random_input", "random_params", "random_tokens", "reference", "run_cases", "size_hint",
    "summary", "vet_output", "weights_label", "where",
]

Build = Callable[[type[nn.Module], Case], nn.Module]
Step = Callable[[nn.Module, Case], None]
Verify = Callable[[Case, Tensor, "nn.Module | None"], None]


class _Modules:
    """The learner's modules of one check run: one per (parameters, Config), on the device and on the CPU."""

    def __init__(self, test: str, cls: type[nn.Module], build_one: Build | None, prepare: Step | None,
                 load: Step | None, load_hint: str, lend: bool):
        self.test, self.cls = test, cls
        self.build_one = build_one or (lambda cls, case: build(cls, test, case.cfg))
        self.prepare, self.load_hint, self.lend = prepare, load_hint, lend
        self.load = load or self._load_strict
        self.built: dict[tuple, nn.Module] = {}

    def _load_strict(self, module: nn.Module, case: Case) -> None:
        load_strict(module, case.params, self.test, self.load_hint, assign=self.lend)

    def _key(self, case: Case, where: str) -> tuple:
        return (where, id(case) if case.params is None else id(case.params), repr(case.cfg))

    def _make(self, case: Case, device, prepare: bool) -> nn.Module:
        __tracebackhide__ = True
        if case.params is None:
            module = self.build_one(self.cls, case)
        else:
            with SkipRandomInit():  # every parameter is overwritten by the load
                module = self.build_one(self.cls, case)
        module = move(module, device, self.test)
        if prepare and self.prepare is not None:
            self.prepare(module, case)
        if case.params is not None:
            self.load(module, case)
        return module.eval()

    def on_device(self, case: Case) -> nn.Module:
        __tracebackhide__ = True
        key = self._key(case, "device")
        if key not in self.built:
            self.built[key] = self._make(case, case.expected.device, prepare=True)
        return self.built[key]

    def on_cpu(self, case: Case) -> nn.Module:
        """The twin the learner's code runs in first when the device is an accelerator."""
        __tracebackhide__ = True
        key = self._key(case, "preflight")
        if key not in self.built:
            self.built[key] = self._make(case, PREFLIGHT, prepare=False)
        return self.built[key]


def run_cases(
    test: str,
    learner: type[nn.Module] | Callable,
    cases: Sequence[Case],
    what: str = "the output",
    shape_hints: ShapeHints | Callable[[Case], ShapeHints] = (),
    *,
    values: str = "",
    name: str = "",
    advice: Advice = Advice(),
    fields: str = "cfg.d_model, cfg.n_heads, ...",
    build: Build | None = None,
    prepare: Step | None = None,
    load: Step | None = None,
    load_hint: str = "",
    lend: bool = False,
    verify: Verify | None = None,
) -> None:
    """Run every case through the learner's class or function; stop at the first failure with a diagnosis.

    - ``learner``: an nn.Module subclass (built per case with ``cls(case.cfg)``) or a function.
    - ``what`` names the output in messages about its shape, dtype and finiteness; ``values`` names its
      values in "N% of ... values match" (default: ``what``); ``name`` names the learner's code
      (default ``Cls.forward`` or the function's name).
    - ``shape_hints``: likely causes of a wrong shape, or a function of the case that gives them.
    - ``advice``: other words for the guards (an in-place input, a tuple, an exception's likely cause).
    - ``fields``: the cfg fields the "smaller Config" hint names when the class fails on a small case.
    - ``build(cls, case)``: how to build the class when it does not take ``(cfg)``; ``prepare(module,
      case)``: a structural check before loading; ``load(module, case)``: a loader with its own messages
      (default `load_strict`, with ``load_hint``); ``lend``: give the module the case's tensors
      themselves instead of copies (for a model-sized module the check throws away).
    - ``verify(case, out, module)``: replaces the default verdict (`judge`).
    """
    __tracebackhide__ = True
    hints = shape_hints if callable(shape_hints) else (lambda case: shape_hints)
    modules = None
    if isinstance(learner, type):
        modules = _Modules(test, learner, build, prepare, load, load_hint, lend)
    for case in cases:
        if modules is not None:
            module = modules.on_device(case)
            out = call(module, case.inputs, test, name or f"{learner.__name__}.forward", size_hint(case.cfg, fields),
                       advice=advice, twin=lambda case=case: modules.on_cpu(case))
        else:
            module = None
            out = call(learner, case.inputs, test, name or getattr(learner, "__name__", "your function"),
                       advice=advice)
        if verify is not None:
            verify(case, out, module)
        else:
            judge(test, case, out, what, values, hints(case))
