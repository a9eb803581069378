"""The call proxy the grading tests use: ``submission.prune_by_percentage(layer, q=30.0)``.

Each call ships its inputs to the sandboxed worker (modules as specs: type, constructor arguments
and state), runs the student's function there and brings back the return value and the new state
of module arguments, which is written back into the caller's modules -- so a test reads
``layer.weight`` after the call exactly as if the function had run locally. Arrays and tensors
travel as copies and are never written back (nothing a student function does reaches the test's
data). Everything that comes
back is plain data (see ``channel``); nothing is unpickled.

Failures become ``StudentError`` subclasses with the function's name and the call: an exception
(traceback trimmed to the student's frames), a timeout (the worker interrupts the call at its
limit; a worker that ignores that is killed a little later and restarted for the next call), a
crash, a missing name, a signature the grader cannot call, an ungradable return value. A
function that timed out, crashed the worker, hit the memory limit, failed after half its timeout
or answered after three quarters of it ``max_strikes`` times fails fast afterwards, and once the
submission's time budget -- loading included -- is spent every further call fails fast: a
hanging or dawdling submission costs a bounded time. Every limit here counts charged time
(``runclock``: time spent waiting for a CPU on a busy machine is not the student's). A file
whose loading hung or crashed is
left out (``session.broken``): calls into it fail at once with the reason, and the submission's
other files are graded as usual. Public and hidden tests run in different workers
(:meth:`Submission.set_phase`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from grader.discover import Discovery
from grader.errors import (
    BadReturn,
    BudgetExhausted,
    GraderError,
    MissingDefinition,
    SignatureMismatch,
    StudentCrash,
    StudentError,
    StudentException,
    StudentTimeout,
)
from grader.sandbox import channel as ch
from grader.sandbox.cpu_only import MAPPED_CALLS
from grader.sandbox.launcher import Isolation, Limits
from grader.sandbox.session import LoadReport, WorkerDied, WorkerSession, WorkerTimedOut, sandbox_session

__all__ = ["CallInfo", "Submission", "criterion_spec", "describe_call", "loader_spec", "module_spec",
           "sgd_spec"]


@dataclass
class CallInfo:
    """What the last call did besides returning: in-place updates and its duration."""

    inplace: dict[int, dict[str, bool]] = field(default_factory=dict)
    seconds: float = 0.0


class Submission:
    """A submission loaded in a sandbox, with its functions callable from the trusted side.

    Args:
        root: the submission folder (already unpacked).
        call_timeout: default wall-clock limit of one call, seconds.
        budget: wall-clock seconds all calls of this submission may take together.
        isolation: ``auto`` (bubblewrap if it works), ``bwrap`` or ``rlimit``.
        session: a sandbox already made (and perhaps launched, ``WorkerSession.launch``) for
            ``root`` with :func:`sandbox_session`; then ``load_timeout``, ``limits``,
            ``isolation``, ``slot``, ``max_result_bytes`` and ``threads`` are the session's.
    """

    def __init__(self, root: Path, *, call_timeout: float = 20.0, load_timeout: float = 60.0,
                 budget: float = 600.0, limits: Limits | None = None, isolation: str = "auto",
                 slot: int = 0, max_result_bytes: int = 64 << 20, max_strikes: int = 2, threads: int = 1,
                 session: WorkerSession | None = None):
        self.root = Path(root)
        if session is not None and session.discovery.root != self.root:
            raise GraderError(f"Submission: the sandbox was made for {session.discovery.root}, not {self.root}")
        self.session = session or sandbox_session(self.root, load_timeout=load_timeout, limits=limits,
                                                  isolation=isolation, slot=slot,
                                                  max_result_bytes=max_result_bytes, threads=threads)
        self.discovery: Discovery = self.session.discovery
        self.isolation: Isolation = self.session.isolation
        self.call_timeout, self.budget, self.max_strikes = call_timeout, budget, max_strikes
        self.spent = 0.0
        self.strikes: dict[str, int] = {}
        self._failures: dict[str, tuple[type[StudentError], str, str]] = {}  # last timeout/crash per name
        self.load_failed: str | None = None  # every file of the submission failed to load
        self.start_error: str | None = None  # the sandbox could not start (a grader fault)
        self.last = CallInfo()
        self.calls = 0
        self._started = False
        self.phase: str | None = None  # "public" or "hidden": whose tests the worker serves

    # -------------------------------------------------------------- lifecycle

    def _ensure(self) -> None:
        """A live worker with the submission loaded (started lazily, restarted after a kill).

        Raises:
            GraderError: the sandbox itself cannot start (not the student's doing; remembered,
                so every later call says so at once).
        """
        if self.start_error:
            raise GraderError(self.start_error)
        if self._started and self.session.alive:
            return
        started = time.monotonic()
        allowance = self.budget - self.spent  # loading counts against the budget (issue 14)
        try:
            self.session.start(allowance) if not self._started else self.session.restart(allowance)
        except GraderError as exc:
            self.start_error = str(exc)
            raise
        finally:
            self._started = True
            self.spent += time.monotonic() - started
        units = self.discovery.units()
        if units and all(u in self.session.broken for u in units):
            self.load_failed = "; ".join(f"{u}: {why}" for u, why in self.session.broken.items())

    def set_phase(self, phase: str) -> None:
        """Public and hidden tests never share a worker's memory (issue 14): the first call of a
        new phase gets a fresh worker (forked from the sandbox's zygote, which kills everything
        the previous phase left and empties the scratch folder). The plugin runs every public
        test before the hidden ones, so a grading switches once."""
        if phase == self.phase:
            return
        previous, self.phase = self.phase, phase
        if previous is not None and self._started:
            self.session.end_child(sweep=True)

    @property
    def load_report(self) -> LoadReport | None:
        return self.session.load_report

    def start(self) -> LoadReport:
        """Start the worker now (tests start it lazily on the first call)."""
        try:
            self._ensure()
        except StudentError:
            pass
        assert self.session.load_report is not None
        return self.session.load_report

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:
        # Hypothesis prints a failing example's arguments, this fixture among them, into the
        # feedback: no memory address there (feedback is the same each time it is graded)
        return "<your submission>"

    def __enter__(self) -> Submission:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -------------------------------------------------------------- names

    def has(self, name: str) -> bool:
        return name.split(".", maxsplit=1)[0] in self.discovery.found

    def where(self, name: str) -> str:
        loc = self.discovery.found.get(name.split(".", maxsplit=1)[0])
        return str(loc) if loc else "not found"

    def target(self, name: str) -> str:
        base = name.split(".", maxsplit=1)[0]
        loc = self.discovery.found.get(base)
        if loc is None:
            files = ", ".join(self.discovery.files) or "no .py or .ipynb files"
            raise MissingDefinition(f"`{base}` is not defined in your submission (looked in: {files})",
                                    function=name)
        return f"{loc.file}:{name}"

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    # -------------------------------------------------------------- calls

    def call(self, name: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Call the student's ``name(*args, **kwargs)`` in the sandbox (see the module doc)."""
        target = self.target(name)
        call_text = describe_call(name, args, kwargs)
        enc = ch.Encoder()
        request = {"op": "call", "target": target, "seed": _seed(call_text),
                   "args": enc.encode([_to_wire(a) for a in args]),
                   "kwargs": enc.encode({k: _to_wire(v) for k, v in kwargs.items()})}
        body = self._send(request, enc.blobs, name, call_text, timeout, unit=target.partition(":")[0])
        # Mutated arguments come back: write them into the caller's objects.
        for original, after in zip(args, body["args"], strict=True):
            _write_back(original, after, name)
        for key, after in body["kwargs"].items():
            _write_back(kwargs[key], after, name)
        self.last = CallInfo({int(k): v for k, v in body["inplace"].items()}, float(body["seconds"]))
        return body["value"]

    def call_many(self, name: str, calls: list[list], timeout: float | None = None) -> list:
        """``[name(*args) for args in calls]`` in one round trip: arguments of plain data only,
        nothing written back, one timeout for the whole batch. Each call gets the seed a single
        call with its arguments gets, and reaches the student's function the way a single call
        does (see ``worker.op_call``)."""
        target = self.target(name)
        first = describe_call(name, tuple(calls[0]) if calls else (), {})
        call_text = first + (f" and {len(calls) - 1} more calls" if len(calls) > 1 else "")
        enc = ch.Encoder()
        request = {"op": "call", "target": target,
                   "seeds": [_seed(describe_call(name, tuple(c), {})) for c in calls],
                   "calls": enc.encode([[_to_wire(a) for a in c] for c in calls])}
        body = self._send(request, enc.blobs, name, call_text, timeout, unit=target.partition(":")[0])
        values = body.get("values")
        if not isinstance(values, list) or len(values) != len(calls):
            raise BadReturn("the worker's reply is malformed", function=name, call=call_text)
        return values

    def probe(self, probe: str, name: str | None, timeout: float | None = None, **kwargs: Any) -> dict:
        """Run a named worker probe that exercises the student's ``name`` (e.g. ``ste``).

        ``name=None``: a probe of no one student function (a dry run of a notebook cell); its
        target is None and its timeouts count against the probe, not against any function.
        """
        target = self.target(name) if name is not None else None
        label = name if name is not None else probe
        call_text = describe_call(f"{probe}:{name}" if name is not None else probe, (), kwargs)
        enc = ch.Encoder()
        wire = {k: _to_wire(v) for k, v in kwargs.items()}
        request = {"op": "probe", "name": probe, "seed": _seed(call_text),
                   "kwargs": enc.encode({"target": target, **wire})}
        return self._send(request, enc.blobs, label, call_text, timeout,
                          unit=target.partition(":")[0] if target else None)

    def _send(self, request: dict, blobs: list[bytes], name: str, call_text: str, timeout: float | None,
              unit: str | None = None) -> dict:
        if self.spent >= self.budget:
            raise BudgetExhausted(f"not run: the submission used up its {self.budget:g} s time budget",
                                  function=name, call=call_text)
        # Strikes bound what one hanging or crashing function costs: Hypothesis would otherwise
        # retry it while shrinking, each try a full timeout or a restart.
        failure = self._repeat_failure(name, call_text)
        reply: dict = {}
        reply_blobs: list[bytes] = []
        if failure is None:
            self._ensure()
            if unit is not None and unit in self.session.broken:
                raise StudentCrash(f"not run: {unit} could not be loaded: {self.session.broken[unit]}",
                                   function=name, call=call_text)
            limit = min(timeout or self.call_timeout, max(self.budget - self.spent, 1.0))
            self.calls += 1
            try:
                # The worker interrupts the call itself at ``limit`` (an answer without waiting for
                # the hard timeout); the hard timeout a little later kills it if the interrupt was
                # swallowed or never came.
                reply, reply_blobs = self.session.request(dict(request, soft_timeout=limit), blobs,
                                                          timeout=limit + _grace(limit))
                self._note_cpu(reply)
            except WorkerTimedOut:
                failure = self._strike(name, StudentTimeout, _timeout_message(limit), call_text)
            except WorkerDied as exc:
                failure = self._strike(name, StudentCrash, f"the worker running your code {exc.how}",
                                       call_text, _tail(exc.output))
            finally:
                # charged time (runclock): waiting for a CPU on a busy machine is not the student's
                took = self.session.last_charged
                self.spent += took
            err = reply.get("error") if failure is None else None
            if isinstance(err, dict) and err.get("kind") == "timeout":
                # (the session has ended that worker already: WorkerSession.request)
                failure = self._strike(name, StudentTimeout, _timeout_message(limit), call_text)
            slow = took >= limit / 2
            if (failure is None and isinstance(err, dict) and isinstance(err.get("message"), str)
                    and err.get("kind") not in ("grader", "timeout") and (err.get("kind") == "memory" or slow)):
                # A failure that hit the memory limit or took half the timeout costs seconds each
                # time: it strikes like a timeout, so it cannot eat the budget of the other items.
                tb = str(err["traceback"]) if isinstance(err.get("traceback"), str) else ""
                cls = _ERROR_KINDS.get(str(err.get("kind")), StudentException)
                failure = self._strike(name, cls, err["message"], call_text, tb)
            elif failure is None and took >= 0.75 * limit and reply.get("ok"):
                # So does a call that answers, but only after three quarters of its limit (issue 14:
                # calls that sleep just under the timeout held a worker for the whole budget). This
                # answer still counts; after max_strikes such calls the function is not run again.
                # (Not half, as for failures: an honest heavy call, a finetuning epoch on a loaded
                # machine, may take half its limit, and must not lose points for it.)
                self._strike(name, StudentTimeout, f"took {took:.1f} s, more than three quarters of its "
                             f"{limit:g} s limit (each call must finish well within it)", call_text)
        if failure is not None:
            # One raise site, outside any except block (no __context__): a replay of the same
            # input by Hypothesis then fails the same way, instead of reading as "flaky".
            raise failure
        if reply.get("ok"):
            try:
                body = ch.decode(reply.get("body"), reply_blobs)
            except ch.ChannelError as exc:
                raise BadReturn(f"returned data the grader cannot read ({exc})", function=name,
                                call=call_text) from None
            if not isinstance(body, dict):
                raise BadReturn("the worker's reply is malformed", function=name, call=call_text)
            return body
        err = reply.get("error")
        if not isinstance(err, dict) or not all(isinstance(err.get(k), str) for k in ("kind", "message")):
            raise BadReturn("the worker's reply is malformed", function=name, call=call_text)
        kind, message, tb = err["kind"], err["message"], err.get("traceback", "")
        if not isinstance(tb, str):
            tb = ""
        cls = _ERROR_KINDS.get(kind)
        if cls is None:
            raise GraderError(f"worker reported a grader fault for {call_text}: {message}\n{tb}".rstrip())
        raise cls(message, function=name, traceback=tb, call=call_text)

    def _note_cpu(self, reply: dict) -> None:
        """GPU code the worker ran on the CPU: a warning, never a deduction. Only kinds from the
        fixed set are reported, in the grader's words (the reply comes from the sandbox)."""
        kinds = reply.get("cpu")
        for kind in kinds if isinstance(kinds, list) else []:
            if kind in MAPPED_CALLS:
                note = (f"your code asks for the GPU ({kind}); the grader has none and ran it on the CPU "
                        "(not a deduction)")
                if note not in self.discovery.problems:
                    self.discovery.problems.append(note)

    def _strike(self, name: str, cls: type[StudentError], message: str, call_text: str,
                tb: str = "") -> StudentError:
        self.strikes[name] = self.strikes.get(name, 0) + 1
        self._failures[name] = (cls, message, tb)
        return cls(message, function=name, call=call_text, traceback=tb)

    def _repeat_failure(self, name: str, call_text: str) -> StudentError | None:
        """After ``max_strikes`` timeouts/crashes of ``name``: the same failure, at once."""
        if self.strikes.get(name, 0) < self.max_strikes or name not in self._failures:
            return None
        cls, message, tb = self._failures[name]
        return cls(f"{message}; not run again after {self.strikes[name]} such calls", function=name,
                   call=call_text, traceback=tb)


#: the worker's error kinds that are the student's doing ("grader" is ours: a GraderError)
_ERROR_KINDS: dict[str, type[StudentError]] = {
    "exception": StudentException, "memory": StudentException, "missing": MissingDefinition,
    "return": BadReturn, "signature": SignatureMismatch}


def _grace(limit: float) -> float:
    return min(max(1.0, 0.25 * limit), 10.0)


def _timeout_message(limit: float) -> str:
    return f"did not finish within {limit:g} s (an endless loop?)"


# ----------------------------------------------------------------------------- wire conversion


def module_spec(module: nn.Module, fp: str = "float") -> ch.Spec:
    """Describe a module so the worker can rebuild it: type, constructor arguments, state."""
    return ch.Spec("$module", _module_body(module, fp))


def _module_body(module: nn.Module, fp: str) -> dict:
    kind = type(module).__name__
    body: dict[str, Any] = {"type": kind, "training": module.training}
    if kind == "ResNetCIFAR":
        nbits = _first_attr(module, "Nbits")
        sym = bool(_first_attr(module, "symmetric") or False)
        body.update(init={"num_layers": module.num_layers, "Nbits": nbits, "symmetric": sym}, fp=fp)
    elif isinstance(module, nn.Conv2d):
        body["init"] = {"in_channels": module.in_channels, "out_channels": module.out_channels,
                        "kernel_size": list(module.kernel_size), "stride": list(module.stride),
                        "padding": list(module.padding), "bias": module.bias is not None}
    elif isinstance(module, nn.Linear):
        body["init"] = {"in_features": module.in_features, "out_features": module.out_features,
                        "bias": module.bias is not None}
    elif isinstance(module, nn.BatchNorm2d):
        body["init"] = {"num_features": module.num_features}
    elif isinstance(module, nn.AdaptiveAvgPool2d):
        body["init"] = {"output_size": module.output_size}
    elif isinstance(module, nn.ReLU | nn.Flatten | nn.Identity):
        body["init"] = {}
    elif isinstance(module, nn.Sequential | nn.ModuleDict):
        body["children"] = [[name, _module_body(child, fp)] for name, child in module.named_children()]
        body["type"] = "Sequential" if isinstance(module, nn.Sequential) else "ModuleDict"
        body["state"] = dict(module.state_dict())
        return body
    else:
        raise GraderError(f"module_spec: cannot describe a {kind} for the worker")
    body["state"] = dict(module.state_dict())
    return body


def _first_attr(module: nn.Module, attr: str) -> Any:
    for m in module.modules():
        if hasattr(m, attr) and m is not module:
            return getattr(m, attr)
    return None


def loader_spec(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> ch.Spec:
    """A ``DataLoader`` over ``(x, y)`` in order (no shuffling, no worker processes)."""
    return ch.Spec("$loader", {"x": x, "y": y, "batch_size": batch_size})


def criterion_spec() -> ch.Spec:
    return ch.Spec("$criterion", {"type": "CrossEntropyLoss"})


def sgd_spec(params_of_arg: int, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> ch.Spec:
    """An SGD optimizer over the parameters of positional argument ``params_of_arg``."""
    return ch.Spec("$optimizer", {"type": "SGD", "params_of_arg": params_of_arg, "lr": lr,
                                  "momentum": momentum, "weight_decay": weight_decay})


def _to_wire(value: Any) -> Any:
    if isinstance(value, nn.Module):
        return module_spec(value)
    if isinstance(value, torch.nn.Parameter):
        return value.detach()
    return value


def _write_back(original: Any, after: Any, name: str) -> None:
    """Give a module argument the state the worker reports after the call.

    Only ``nn.Module`` arguments are updated: the homework's in-place functions (pruning,
    finetuning) change a module, and a test then reads it like the student's own code would.
    Arrays and tensors never are: whatever a student function does to its copy of an input stays
    in the sandbox, so nothing it returns can reach data a later test or the reference reads
    (a test's array may be a view of session data, e.g. the homework's y as a column).
    """
    if after is None or not isinstance(original, nn.Module):
        return
    if not isinstance(after, dict) or "state" not in after:
        raise BadReturn("the module argument came back unreadable", function=name)
    try:
        # strict: a student who renames or drops a parameter is told, not silently ignored
        targets = original.state_dict()  # once: it walks every submodule (a ResNet-20 has 120 entries)
        with torch.no_grad():
            for key, value in after["state"].items():
                target = targets[key]
                if not isinstance(value, torch.Tensor) or target.shape != value.shape:
                    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    raise BadReturn(f"changed the shape of {key} from {tuple(target.shape)} to {shape}",
                                    function=name)
                target.copy_(value.to(target.dtype))
    except KeyError as exc:
        raise BadReturn(f"the module came back with an unexpected entry {exc}", function=name) from None


def describe_call(name: str, args: tuple, kwargs: dict, limit: int = 300) -> str:
    """``name(arg, ..., key=value)`` with each argument summarised, for feedback."""
    parts = [_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kwargs.items()]
    text = f"{name}({', '.join(parts)})"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() <= 8:
            return f"tensor({np.round(value.detach().cpu().numpy(), 4).tolist()})"
        return f"tensor(shape={tuple(value.shape)}, dtype={str(value.dtype).removeprefix('torch.')})"
    if isinstance(value, np.ndarray):
        if value.size <= 8:
            return f"array({np.round(value, 4).tolist()})"
        return f"array(shape={value.shape}, dtype={value.dtype})"
    if isinstance(value, nn.Module):
        return _module_name(value)
    if isinstance(value, ch.Spec):
        return {"$loader": "<trainloader>", "$criterion": "nn.CrossEntropyLoss()",
                "$optimizer": "<SGD optimizer>", "$module": "<module>"}[value.tag]
    if isinstance(value, float):
        return f"{value:g}"
    text = _repr_prefix(value, 61)
    return text if len(text) <= 60 else text[:57] + "..."


def _repr_prefix(value: Any, limit: int) -> str:
    """``repr(value)[:limit]``, without building the parts of the repr past ``limit``: a list of
    layers or a state dict holds tensors whose reprs cost far more than the call (the call text
    is made for every call: it seeds the call, see :func:`_seed`)."""
    out, size = [], 0
    for chunk in _repr_chunks(value):
        out.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return "".join(out)[:limit]


def _repr_chunks(value: Any):
    """The pieces of ``repr(value)`` in order; lists, tuples and dicts (exactly those types:
    a subclass may print itself otherwise) are taken apart, anything else is one ``repr``."""
    kind = type(value)
    if kind is list or kind is tuple:
        yield "[" if kind is list else "("
        for i, item in enumerate(value):
            if i:
                yield ", "
            yield from _repr_chunks(item)
        yield "]" if kind is list else ("," if len(value) == 1 else "") + ")"
    elif kind is dict:
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            if i:
                yield ", "
            yield from _repr_chunks(key)
            yield ": "
            yield from _repr_chunks(item)
        yield "}"
    else:
        yield repr(value)


def _module_name(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return (f"nn.Conv2d({module.in_channels}, {module.out_channels}, kernel_size={module.kernel_size[0]}, "
                f"bias={module.bias is not None})")
    if isinstance(module, nn.Linear):
        return f"nn.Linear({module.in_features}, {module.out_features}, bias={module.bias is not None})"
    return f"{type(module).__name__}(...)"


def _seed(text: str) -> int:
    """A per-call seed derived from the call itself: the same call gets the same randomness."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _tail(text: str, lines: int = 15) -> str:
    parts = text.strip().splitlines()
    return "\n".join(parts[-lines:]) if parts else ""
