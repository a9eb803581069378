"""Replay the grading examples: run a property test on its recorded examples, not through Hypothesis.

The ``grading`` profile is derandomized, so a property test that passes is always run on the same
examples, whichever submission it grades: Hypothesis's generation, half of the trusted side's
work, gives the same inputs every time. So (a pytest plugin, loaded by ``grader.grade``):

* **Record**: the first time a property test passes (for any submission), the examples
  Hypothesis fed its body, in order, are kept with ``grader.refcache.keep`` (in memory, and on disk
  for the grading version: the next process, or a batch's next child, finds them).
* **Replay**: afterwards the test body runs on fresh copies of those examples, in that order,
  under the seeding Hypothesis gives each example (``deterministic_PRNG``). If every one passes,
  the test passes -- exactly what Hypothesis would have concluded, on exactly those inputs.
* **Fall back**: if an example fails (or the body asks Hypothesis for anything: ``data.draw``,
  ``assume``, ``note``), the test runs under Hypothesis from scratch, so a failure, its shrinking
  (public tests) and its message are Hypothesis's own. If Hypothesis then passes where the
  replay failed, the student's code gave two answers to one input: the test fails as flaky,
  as Hypothesis's own final replay would have made it.

Recorded examples hold data only (tensors, arrays, numbers, strings, containers and the rubric
tests' frozen dataclasses: ``LayerCase``...): :func:`encode` refuses anything else, and such a
test is simply never replayed; tests drawing from ``st.data()`` inside the body are not replayed
either. Set ``HW4_REPLAY=0`` to run every test under Hypothesis (a test compares both).

Why the recording run must use the same seed: Hypothesis derives a derandomized test's seed from
the test function's source, and recording wraps that function; the wrapper is given the original's
seed explicitly (``_hypothesis_internal_use_seed``, what ``@seed`` sets), so it sees the examples
the unwrapped test sees (``tests/selftest/test_replay.py`` checks that on every rubric test).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import os
import sys
from typing import Any

import pytest

__all__ = ["ENV", "Unrecordable", "decode", "encode", "pytest_pyfunc_call"]

ENV = "HW4_REPLAY"
#: exceptions that stop a test run at once instead of failing one example
_STOP = (KeyboardInterrupt, SystemExit, GeneratorExit)


class Unrecordable(Exception):
    """An example holds something that is not plain data; its test is not replayed."""


# ----------------------------------------------------------------------------- the plugin


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a property test from its recording when there is one (see the module docstring)."""
    fn = pyfuncitem.obj
    if os.environ.get(ENV, "1") == "0" or not _replayable(fn):
        return None
    from grader import refcache  # imports torch: only once a test runs (see grader.plugin._prelaunch)

    funcargs = {arg: pyfuncitem.funcargs[arg] for arg in pyfuncitem._fixtureinfo.argnames}
    name = _name(pyfuncitem, fn)
    examples = refcache.lookup(name) if name not in _NOT_REPLAYED else None
    if examples is not None:
        try:
            failure = _replay(fn, funcargs, examples)
        except Unrecordable:  # a recording this process cannot read back: record it afresh
            failure, examples = None, None
        if examples is not None and failure is None:
            return True
    if examples is not None:
        _reset_credit(funcargs)
        fn(**funcargs)  # Hypothesis from scratch: its failure is the test's outcome
        from hypothesis.errors import FlakyFailure, HypothesisException

        if isinstance(failure, HypothesisException):
            # the body asked Hypothesis for something a replay cannot give (assume, data.draw,
            # note): Hypothesis's pass stands, and this test is not replayed again
            _NOT_REPLAYED.add(name)
            return True
        raise FlakyFailure("the same input passed under Hypothesis and failed when replayed",
                           [failure if isinstance(failure, Exception) else Exception(repr(failure))])
    recorded = _run_recording(fn, funcargs)
    if recorded is not None:
        refcache.keep(name, recorded)
    return True


#: recordings found not to replay in this process (the body used Hypothesis's test context)
_NOT_REPLAYED: set[str] = set()


def _replayable(fn: Any) -> bool:
    """A derandomized Hypothesis test without a database or a reproduction blob."""
    if not inspect.isfunction(fn) or not hasattr(fn, "hypothesis") \
            or not hasattr(fn, "_hypothesis_internal_use_settings"):
        return False
    s = fn._hypothesis_internal_use_settings
    return (bool(s.derandomize) and s.database is None
            and getattr(fn, "_hypothesis_internal_use_reproduce_failure", None) is None)


def _name(item: pytest.Function, fn: Any) -> str:
    """The refcache name of a test's recording: its node id and what decides its examples."""
    s = fn._hypothesis_internal_use_settings
    what = f"{item.nodeid}\0{s.max_examples}\0{getattr(fn, '_hypothesis_internal_use_seed', None)}"
    return "examples-" + hashlib.sha256(what.encode()).hexdigest()[:40]


def _replay(fn: Any, funcargs: dict[str, Any], examples: list) -> BaseException | None:
    """Run the body on each recorded example; the first failure, or None when all pass.

    Raises:
        Unrecordable: an example cannot be read back (before the body ran on it).
    """
    from hypothesis.internal.entropy import deterministic_PRNG

    inner = fn.hypothesis.inner_test
    for example in examples:
        kwargs = decode(example)
        try:
            with deterministic_PRNG():
                inner(**funcargs, **kwargs)
        except _STOP:
            raise
        except BaseException as exc:  # any failure: Hypothesis decides
            return exc
    return None


def _run_recording(fn: Any, funcargs: dict[str, Any]) -> list | None:
    """Run ``fn`` under Hypothesis, recording the examples its body gets; the recording if it
    passed and every example was plain data, else None. Raises what the test raises."""
    from hypothesis.errors import UnsatisfiedAssumption
    from hypothesis.internal.compat import int_from_bytes
    from hypothesis.internal.reflection import function_digest

    inner = fn.hypothesis.inner_test
    given = set(fn.hypothesis._given_kwargs)
    recorded: list = []
    usable = [True]

    @functools.wraps(inner)
    def recording(*args: Any, **kwargs: Any) -> Any:
        if usable[0]:
            try:
                recorded.append(encode({k: v for k, v in kwargs.items() if k in given}))
            except Unrecordable:
                usable[0] = False
        try:
            return inner(*args, **kwargs)
        except UnsatisfiedAssumption:
            usable[0] = False  # a rejected example: the sequence depends on the body
            raise

    # the seed Hypothesis would derive from the unwrapped test (see the module docstring)
    seed_before = fn._hypothesis_internal_use_seed
    if seed_before is None:
        fn._hypothesis_internal_use_seed = int_from_bytes(function_digest(inner))
    fn.hypothesis.inner_test = recording
    try:
        fn(**funcargs)
    finally:
        fn.hypothesis.inner_test = inner
        fn._hypothesis_internal_use_seed = seed_before
    return recorded if usable[0] and recorded else None


def _reset_credit(funcargs: dict[str, Any]) -> None:
    """Partial credit set during the replay must not outlive it."""
    from grader.plugin import Credit

    for value in funcargs.values():
        if isinstance(value, Credit):
            value.fraction = None


# ----------------------------------------------------------------------------- plain data


def encode(value: Any) -> Any:
    """A copy of ``value`` as data ``torch.load(weights_only=True)`` reads back.

    Raises:
        Unrecordable: ``value`` holds anything but tensors (contiguous, leaf), numpy arrays
            (contiguous, numeric or bool), numbers, strings, None, tuples, lists, dicts with
            string keys and frozen dataclasses of these.
    """
    import numpy as np
    import torch

    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.Tensor):
        if not value.is_contiguous() or value.grad_fn is not None or value.is_sparse:
            raise Unrecordable(f"a {value.layout} tensor with strides {value.stride()}")
        return {"$tensor": value.detach().clone(), "grad": bool(value.requires_grad)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc" or not (value.flags.c_contiguous or value.flags.f_contiguous):
            raise Unrecordable(f"an array of {value.dtype}")
        order = "C" if value.flags.c_contiguous else "F"
        try:
            data = torch.from_numpy(np.array(value, order="C", copy=True))
        except TypeError:  # a dtype torch has no tensor for
            raise Unrecordable(f"an array of {value.dtype}") from None
        return {"$array": data, "order": order, "dtype": value.dtype.str,
                "writeable": bool(value.flags.writeable)}
    if isinstance(value, tuple | list):
        items = [encode(v) for v in value]
        return {"$tuple": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise Unrecordable("a dict with non-string keys")
        return {"$dict": {k: encode(v) for k, v in value.items()}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and value.__dataclass_params__.frozen:
        cls = type(value)
        return {"$dataclass": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise Unrecordable(f"a {type(value).__module__}.{type(value).__qualname__}")


def decode(data: Any) -> Any:
    """Fresh objects from what :func:`encode` made (nothing is shared with ``data``).

    Raises:
        Unrecordable: a dataclass that is not a frozen dataclass of a loaded module, or data
            :func:`encode` cannot have made.
    """
    import numpy as np

    if data is None or isinstance(data, bool | int | float | str):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if isinstance(data, dict):
        if "$tensor" in data:
            return data["$tensor"].clone().requires_grad_(bool(data["grad"]))
        if "$array" in data:
            arr = data["$array"].numpy().astype(np.dtype(data["dtype"]), copy=True)
            arr = np.asfortranarray(arr) if data["order"] == "F" else arr
            arr.flags.writeable = bool(data["writeable"])
            return arr
        if "$tuple" in data:
            return tuple(decode(v) for v in data["$tuple"])
        if "$dict" in data:
            return {k: decode(v) for k, v in data["$dict"].items()}
        if "$dataclass" in data:
            return _dataclass(data["$dataclass"], {k: decode(v) for k, v in data["fields"].items()})
    raise Unrecordable(f"cannot decode {type(data).__name__}")


def _dataclass(where: str, fields: dict[str, Any]) -> Any:
    module, _, qualname = where.partition(":")
    cls: Any = sys.modules.get(module)
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
            and {f.name for f in dataclasses.fields(cls)} == set(fields)):
        raise Unrecordable(f"{where} is not a frozen dataclass with these fields")
    return cls(**fields)
