"""The sandboxed worker: loads one submission's definitions and runs the calls the grader asks for.

Runs *inside* the sandbox, as an unprivileged user, with the submission, the given files and a
scratch folder in view -- never the grader's tests, the reference or the results. The process
the sandbox starts is the **zygote** (:func:`zygote`): it imports torch and the common libraries
once, runs no student code, and on the grader's request (control socket ``--ctl``) forks a fresh
worker -- one per phase (public tests, hidden tests) and per restart after a crash -- after
killing whatever ran before. A worker reads requests from its pipe and writes replies to the
other (see ``channel.py``); the student's own stdout/stderr go to fds 1/2, which the grader
drains and caps.

Requests (``op``):
    ``load``   units = [{"unit", "module", "cells": [{"label", "source"}]}]: execute each unit's
               (already filtered) definitions as a module registered under ``module``; reply with
               each unit's status and top-level names.
    ``call``   target "unit:qual.name", args, kwargs, seed: run the student's callable; reply
               with the return value, the new state of module arguments and whether each
               module parameter was updated in place. With ``calls`` (argument lists) and
               ``seeds`` instead: the callable on each, values in order, in one round trip.
    ``probe``  a named harness routine (autograd round trip of ``STE``, a quantized model's
               accuracy, ...) that needs student code in the loop.
    ``ping``   liveness.

``call`` and ``probe`` may carry ``soft_timeout`` (seconds of charged time: waiting for a CPU
does not count, see ``runclock``): a SIGALRM then interrupts the student's code and the reply is
an error of kind ``timeout`` at once; the grader then replaces the worker (what the interrupted
code left running or half-done must not reach the next call). The grader's own (hard) timeout,
a little later, kills a worker whose code swallowed the interrupt or hangs in C.
Error kinds: ``exception`` (the student's code raised;
traceback trimmed to the student's frames), ``signature`` (the function does not accept the
arguments the grader passes), ``return`` (the return value cannot be sent back as data),
``missing``, ``timeout``, ``grader`` (a fault of the harness, never blamed on the student).
A student file named like a module the worker uses (``numpy.py``) loads under a private name.

Imports: the standard library, NumPy, torch, ``channel``, ``cpu_only`` and ``runclock`` (copied next
to this file).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import inspect
import linecache
import os
import random
import signal
import sys
import time
import traceback
import types
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's folder out

import channel as ch
import numpy as np
import runclock

GIVEN_DIR = os.environ.get("HW4_GIVEN_DIR", "")
SUBMISSION_DIR = os.environ.get("HW4_SUBMISSION_DIR", "")
STUDENT_FILES_PREFIX = "<student>"  # filenames of compiled student cells start with this

UNITS: dict[str, types.ModuleType] = {}
_GIVEN: dict[str, types.ModuleType] = {}
#: kinds of CUDA call run on the CPU so far (``cpu_only``); every reply carries them as ``cpu``
CPU_MAPPED: set[str] = set()


class Reply(Exception):
    """An error reply with a kind the grader understands."""

    def __init__(self, kind: str, message: str, tb: str = ""):
        super().__init__(message)
        self.kind, self.message, self.tb = kind, message, tb


# ----------------------------------------------------------------------------- loading


def op_load(req: dict) -> dict:
    results = []
    for unit in req["units"]:
        name, modname = unit["unit"], unit["module"]
        module = types.ModuleType(modname)
        module.__file__ = os.path.join(SUBMISSION_DIR, name)
        status = {"unit": name, "ok": True, "cells": []}
        if _shadows_installed(modname, module.__file__):
            # A student file called numpy.py or random.py must not replace the real module for
            # the worker and every other unit: it loads under a private name instead.
            status["shadowing"] = modname
            modname = module.__name__ = f"_hw4_unit_{modname}"
        sys.modules[modname] = module
        for cell in unit["cells"]:
            filename = f"{STUDENT_FILES_PREFIX}{name}, {cell['label']}"
            source = cell["source"]
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            try:
                statements = ast.parse(source, filename).body
            except SyntaxError as exc:
                status["ok"] = False
                status["cells"].append({"label": cell["label"], "error": _student_error(exc)})
                continue
            # One statement at a time: a failing import must not take the definitions after it.
            for stmt in statements:
                try:
                    code = compile(ast.Module(body=[stmt], type_ignores=[]), filename, "exec",
                                   dont_inherit=True)
                    exec(code, module.__dict__)  # noqa: S102 - the student's definitions, inside the sandbox
                except BaseException as exc:
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    status["ok"] = False
                    status["cells"].append({"label": cell["label"], "line": stmt.lineno,
                                            "error": _student_error(exc)})
        status["names"] = sorted(k for k in module.__dict__ if not k.startswith("__"))
        UNITS[name] = module
        results.append(status)
    return {"units": results}


def _shadows_installed(modname: str, student_file: str) -> bool:
    """Would registering ``modname`` replace a module the worker has imported (numpy, torch,
    the channel, ...) or a standard-library one? (A clash with some other installed package only
    changes what the student's own code imports, as it would on their machine.)"""
    del student_file
    return modname in sys.modules or modname in sys.stdlib_module_names or modname in sys.builtin_module_names


# ----------------------------------------------------------------------------- calls


#: at most this many argument lists in one batched call (a 200-step trajectory needs 200)
MAX_BATCH = 2000


def op_call(req: dict, blobs: list[bytes]) -> dict:
    """One call of the student's function -- or, with ``calls``, the same function on many
    argument lists of plain data in one round trip (error carried forward evaluates a student's
    gradient at every row of a trajectory). Every call reaches the student's code through
    ``_invoke``, with the seed a single call with those arguments gets: nothing on its stack names
    a grader routine that would tell a batch from a test's own call."""
    fn = _resolve(req["target"])
    batch = "calls" in req
    try:
        if batch:
            calls = ch.decode(req["calls"], blobs)  # plain data only: no specs in a batch
            seeds = req.get("seeds")
            if (not isinstance(calls, list) or len(calls) > MAX_BATCH or not isinstance(seeds, list)
                    or len(seeds) != len(calls) or not all(isinstance(c, list) for c in calls)):
                raise Reply("grader", f"a batch holds at most {MAX_BATCH} argument lists, one seed each")
            jobs = [(c, {}, seed) for c, seed in zip(calls, seeds, strict=True)]
        else:
            args = ch.decode(req["args"], blobs, specs=True)
            kwargs = ch.decode(req["kwargs"], blobs, specs=True)
            builder = _Builder()
            args = [builder.build(a, args_so_far=None) for a in args]
            builder.args = args
            args = [builder.build_late(a) for a in args]
            kwargs = {k: builder.build_late(builder.build(v, None)) for k, v in kwargs.items()}
            before = {i: _param_ids(a) for i, a in enumerate(args)}
            jobs = [(args, kwargs, req.get("seed", 0))]
    except Reply:
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | CallTimeout):
            raise
        raise _fault(exc, "building the inputs") from None
    started = time.perf_counter()
    values = [_invoke(fn, req["target"], args, kwargs, seed) for args, kwargs, seed in jobs]
    seconds = time.perf_counter() - started
    if batch:
        return {"values": values, "seconds": seconds}
    args, kwargs, _ = jobs[0]
    inplace = {str(i): _inplace(before[i], a) for i, a in enumerate(args) if before[i] is not None}
    return {
        "value": values[0],
        "args": [_after(a) for a in args],
        "kwargs": {k: _after(v) for k, v in kwargs.items()},
        "inplace": inplace,
        "seconds": seconds,
    }


def _invoke(fn, target: str, args: list, kwargs: dict, seed: int):
    """``fn(*args, **kwargs)`` seeded; the student's exception as a ``Reply``."""
    _seed(seed)
    try:
        return fn(*args, **kwargs)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | CallTimeout):
            raise
        mismatch = _signature_mismatch(fn, target, args, kwargs, exc)
        if mismatch:
            raise Reply("signature", mismatch) from None
        raise _student_reply(exc) from None


def _signature_mismatch(fn, target: str, args: list, kwargs: dict, exc: BaseException) -> str | None:
    """A readable message when the call failed because the student's function does not accept
    the arguments the grader passes (an older term's signature), not inside its body."""
    if not isinstance(exc, TypeError) or any(
            _is_student(f.filename) for f in traceback.extract_tb(exc.__traceback__)):
        return None
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(*args, **kwargs)
        return None
    except TypeError as why:
        name = target.partition(":")[2]
        passed = ", ".join(["<arg>"] * len(args) + [f"{k}=..." for k in kwargs])
        return (f"the grader calls {name}({passed}), but your function is {name}{sig}: {why}. "
                "This part needs the parameters the assignment asks for.")


def _resolve(target: str):
    unit, _, qual = target.partition(":")
    if unit not in UNITS:
        raise Reply("missing", f"{unit} was not loaded")
    obj = UNITS[unit]
    for part in qual.split("."):
        if not hasattr(obj, part):
            raise Reply("missing", f"{qual} is not defined in {unit}")
        obj = getattr(obj, part)
    return obj


def _after(value):
    """What goes back for an argument after the call: a module's new state (the grader writes
    it into its module: pruning and finetuning work in place), else nothing."""
    import torch

    if isinstance(value, torch.nn.Module):
        return value
    return None


def _param_ids(value):
    import torch

    if isinstance(value, torch.nn.Module):
        return {n: (id(p), p.data_ptr()) for n, p in value.named_parameters()}
    return None


def _inplace(before: dict, module) -> dict:
    """Per parameter: is it the same Parameter object on the same storage as before the call?"""
    now = dict(module.named_parameters())
    return {
        name: bool(name in now and id(now[name]) == obj_id and now[name].data_ptr() == ptr)
        for name, (obj_id, ptr) in before.items()
    }


def _seed(seed: int) -> None:
    """Seed Python's, numpy's and torch's CPU generator before a call. torch's CPU generator ends
    in the state ``torch.manual_seed`` gives it; that call also queues a lazy CUDA seeding with a
    captured stack (0.1-0.8 ms, ~1,700 calls a grading) for a device the sandbox never has."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)


# ----------------------------------------------------------------------------- building inputs


class _Builder:
    """Turns input specs into live objects: modules, data loaders, losses, optimizers."""

    def __init__(self) -> None:
        self.args: list = []

    def build(self, value, args_so_far):
        if isinstance(value, ch.Spec):
            if value.tag == "$module":
                return build_module(value.body)
            if value.tag == "$loader":
                return build_loader(value.body)
            if value.tag == "$criterion":
                return build_criterion(value.body)
            return value  # optimizers need the other arguments: built in build_late
        if isinstance(value, list):
            return [self.build(v, args_so_far) for v in value]
        if isinstance(value, tuple):
            return tuple(self.build(v, args_so_far) for v in value)
        return value

    def build_late(self, value):
        if isinstance(value, ch.Spec) and value.tag == "$optimizer":
            return build_optimizer(value.body, self.args)
        return value


def build_module(spec: dict):
    from torch import nn

    kind, init, state = spec["type"], spec.get("init", {}), spec.get("state")
    if kind == "ResNetCIFAR":
        module = given_resnet(spec.get("fp", "float")).ResNetCIFAR(**init)
    elif kind in ("Sequential", "ModuleDict"):
        children = {name: build_module(child) for name, child in spec["children"]}
        # torch's Sequential takes names only in an OrderedDict (a dict is taken for a module)
        module = nn.Sequential(OrderedDict(children)) if kind == "Sequential" else nn.ModuleDict(children)
    elif kind in _LAYERS:
        module = getattr(nn, kind)(**init)
    else:
        raise Reply("grader", f"unknown module spec {kind!r}")
    if state is not None:
        module.load_state_dict(state, strict=True)
    module.train(spec.get("training", True))
    return module


_LAYERS = {"Conv2d", "Linear", "BatchNorm2d", "ReLU", "Flatten", "AdaptiveAvgPool2d", "Identity"}


def build_loader(spec: dict):
    import torch

    dataset = torch.utils.data.TensorDataset(spec["x"], spec["y"])
    return torch.utils.data.DataLoader(dataset, batch_size=int(spec["batch_size"]), shuffle=False,
                                       num_workers=0)


def build_criterion(spec: dict):
    from torch import nn

    if spec.get("type") != "CrossEntropyLoss":
        raise Reply("grader", f"unknown criterion spec {spec!r}")
    return nn.CrossEntropyLoss()


def build_optimizer(spec: dict, args: list):
    import torch

    params = args[int(spec["params_of_arg"])].parameters()
    if spec["type"] != "SGD":
        raise Reply("grader", f"unknown optimizer spec {spec!r}")
    return torch.optim.SGD(params, lr=spec["lr"], momentum=spec.get("momentum", 0.0),
                           weight_decay=spec.get("weight_decay", 0.0))


def given_resnet(fp: str) -> types.ModuleType:
    """The trusted ``resnet20`` built on FP layers: ``float`` (the template's, full precision
    only) or ``student`` (the submission's ``FP_layers``)."""
    key = f"resnet20:{fp}"
    if key not in _GIVEN:
        if fp == "float":
            fp_module = _load_file("_hw4_fp_float", os.path.join(GIVEN_DIR, "fp_layers_float.py"))
            fp_module.STE = _FullPrecisionSTE  # type: ignore[attr-defined]  # the template's STE is a stub whose backward raises
        else:
            fp_module = _student_fp_layers()
        saved = sys.modules.get("FP_layers")
        sys.modules["FP_layers"] = fp_module
        try:
            _GIVEN[key] = _load_file(f"_hw4_resnet20_{fp}", os.path.join(GIVEN_DIR, "resnet20.py"))
        finally:
            if saved is None:
                sys.modules.pop("FP_layers", None)
            else:
                sys.modules["FP_layers"] = saved
    return _GIVEN[key]


class _FullPrecisionSTE:
    """``STE`` of the trusted float model: the weight itself, so autograd differentiates the
    plain layer (a finetune test needs a backward pass; no quantizer sits in the sandbox)."""

    @staticmethod
    def apply(w, bit=None, symmetric=False):
        if bit is not None:
            raise Reply("grader", f"the trusted float ResNet-20 cannot quantize to {bit} bits")
        return w


def _student_fp_layers() -> types.ModuleType:
    """The unit that defines STE/FP_Conv/FP_Linear (FP_layers.py, or a notebook defining STE)."""
    for unit in UNITS.values():
        if all(hasattr(unit, n) for n in ("STE", "FP_Conv", "FP_Linear")):
            return unit
    for unit in UNITS.values():
        if hasattr(unit, "STE"):
            # A notebook that redefines only STE inline: the given wrappers around the student's STE.
            module = _load_file("_hw4_fp_wrap", os.path.join(GIVEN_DIR, "fp_layers_float.py"))
            module.STE = unit.STE  # type: ignore[attr-defined]
            return module
    raise Reply("missing", "STE is not defined in your submission")


def _load_file(name: str, path: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- probes


def op_probe(req: dict, blobs: list[bytes]) -> dict:
    kwargs = ch.decode(req["kwargs"], blobs, specs=True)
    probe = PROBES.get(req["name"])
    if probe is None:
        raise Reply("grader", f"unknown probe {req['name']!r}")
    _seed(req.get("seed", 0))
    try:
        return probe(**kwargs)
    except Reply:
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | CallTimeout):
            raise
        raise _student_reply(exc) from None


PROBES: dict = {}


class ProbeAPI:
    """What a probe module may use of the worker (probes_*.py call ``register(api)``)."""

    Reply = Reply
    # lambdas, not the functions: the module-level names are looked up at call time (and
    # given_resnet would otherwise be this class attribute itself)
    resolve = staticmethod(lambda target: _resolve(target))  # noqa: PLW0108
    given_resnet = staticmethod(lambda fp: given_resnet(fp))  # noqa: PLW0108
    units = UNITS

    @staticmethod
    def add(name: str, fn) -> None:
        PROBES[name] = fn


def _load_probes() -> None:
    """Import every ``probes_*.py`` next to this file and let it register its probes."""
    here = os.path.dirname(os.path.abspath(__file__))
    for fname in sorted(os.listdir(here)):
        if fname.startswith("probes_") and fname.endswith(".py"):
            module = _load_file(f"_hw4_{fname[:-3]}", os.path.join(here, fname))
            module.register(ProbeAPI)



# ----------------------------------------------------------------------------- errors


def _student_reply(exc: BaseException) -> Reply:
    """The reply for an exception the student's code raised. A MemoryError is the memory limit
    at work: kind ``memory``, so the grader counts it like a timeout (it may have cost seconds)."""
    message = f"{type(exc).__name__}: {_safe_str(exc)}"
    if isinstance(exc, MemoryError):
        return Reply("memory", f"{message} (it reached the sandbox's memory limit)", _student_traceback(exc))
    return Reply("exception", message, _student_traceback(exc))


def _fault(exc: BaseException, doing: str) -> Reply:
    """An exception outside the student's function: theirs if their code is on the traceback
    (an FP layer's constructor, a monkeypatched library), else the grader's."""
    if any(_is_student(f.filename) for f in traceback.extract_tb(exc.__traceback__)):
        return Reply("exception", f"{type(exc).__name__}: {_safe_str(exc)}", _student_traceback(exc))
    return Reply("grader", f"{doing}: {type(exc).__name__}: {_safe_str(exc)}",
                 "".join(traceback.format_exception(exc))[-4000:])


def _student_error(exc: BaseException) -> dict:
    return {"type": type(exc).__name__, "message": _safe_str(exc), "traceback": _student_traceback(exc)}


def _safe_str(exc: BaseException) -> str:
    try:
        text = str(exc)
        return text[:2000] if type(text) is str else "<unprintable>"
    except BaseException:
        return "<unprintable>"


def _student_traceback(exc: BaseException) -> str:
    """The traceback trimmed to the student's own frames; just the exception when none is."""
    try:
        frames = traceback.extract_tb(exc.__traceback__)
    except BaseException:
        frames = traceback.StackSummary()
    # Only the student's own frames: the worker, the harness and library internals are noise to
    # a student (and the harness's frames are ours).
    keep = [f for f in frames if _is_student(f.filename)]
    if not keep:
        return f"{type(exc).__name__}: {_safe_str(exc)}"
    lines = ["Traceback (your code):"]
    for f in keep:
        lines.append(f'  File "{f.filename.removeprefix(STUDENT_FILES_PREFIX)}", line {f.lineno}, in {f.name}')
        if f.line:
            lines.append(f"    {f.line.strip()}")
    lines.append(f"{type(exc).__name__}: {_safe_str(exc)}")
    return "\n".join(lines)


def _is_student(filename: str) -> bool:
    return filename.startswith(STUDENT_FILES_PREFIX) or (
        bool(SUBMISSION_DIR) and os.path.abspath(filename).startswith(SUBMISSION_DIR + os.sep)
    )


# ----------------------------------------------------------------------------- main loop


class CallTimeout(BaseException):
    """The soft deadline of a call passed (raised from the SIGALRM handler)."""


_DEADLINE = {"armed": False, "fired": False, "limit": 0.0}
_CLOCK = runclock.Stopwatch()


def _on_alarm(signum, frame) -> None:
    if not _DEADLINE["armed"]:
        return
    # Time spent waiting for a CPU is not the student's (runclock): wait out what is left.
    # Never early: the grader charges the call at least what this clock says (its interval holds
    # this one), so the submission's budget sees the whole limit spent.
    left = _DEADLINE["limit"] - _CLOCK.charged()
    if left > 0:
        signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))
        return
    _DEADLINE["fired"] = True
    raise CallTimeout()


def _arm(seconds: float) -> None:
    """Interrupt the student's code after ``seconds`` of charged time (wall-clock time less the
    time spent waiting for a CPU, see ``runclock``): a Python-level loop ends here and the
    timeout is answered at once (the grader then replaces this worker); a loop in C code, or
    code that swallows the interrupt, is killed by the grader's hard timeout a little later."""
    _CLOCK.start()
    _DEADLINE.update(armed=True, fired=False, limit=seconds)
    signal.signal(signal.SIGALRM, _on_alarm)  # again: a student may have replaced the handler
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _disarm() -> None:
    _DEADLINE["armed"] = False
    signal.setitimer(signal.ITIMER_REAL, 0)


def _handle(op: str, req: dict, blobs: list[bytes]) -> tuple[dict, list[bytes]]:
    if op == "ping":
        body = {"pid": os.getpid(), "uid": os.getuid()}
    elif op == "load":
        body = op_load(req)
    elif op == "call":
        body = op_call(req, blobs)
    elif op == "probe":
        body = op_probe(req, blobs)
    else:
        raise Reply("grader", f"unknown op {op!r}")
    enc = ch.Encoder()
    try:
        header = {"ok": True, "id": req.get("id"), "body": enc.encode(body)}
    except ch.Unsupported as exc:
        raise Reply("return", f"the return value cannot be graded: {exc} "
                              "(return numbers, lists, numpy arrays or tensors)") from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | CallTimeout):
            raise
        raise Reply("return", f"the return value cannot be sent back: {type(exc).__name__}: "
                              f"{_safe_str(exc)}") from None
    return header, enc.blobs


def serve(fd_in: int, fd_out: int, max_bytes: int) -> None:
    reader = open(fd_in, "rb", buffering=0)
    writer = open(fd_out, "wb", buffering=0)
    while True:
        try:
            req, blobs = ch.read_frame(reader, max_bytes)
        except EOFError:
            return
        op = req.get("op")
        soft = req.get("soft_timeout") if op in ("call", "probe") else None
        soft = float(soft) if isinstance(soft, int | float) and soft > 0 else None
        try:
            try:
                if soft:
                    _arm(soft)
                header, out_blobs = _handle(op, req, blobs)
            finally:
                if soft:
                    _disarm()
            # Interrupted code that swallowed the interrupt and returned anyway still took too long.
            # (charged time never exceeds wall-clock time: the /proc reads only for a slow call)
            if soft and (_DEADLINE["fired"] or (_CLOCK.wall() > soft and _CLOCK.charged() > soft)):
                raise CallTimeout()
        except CallTimeout:
            header, out_blobs = {"ok": False, "id": req.get("id"),
                                 "error": {"kind": "timeout", "message": f"did not finish within {soft:g} s",
                                           "traceback": ""}}, []
        except Reply as r:
            header, out_blobs = {"ok": False, "id": req.get("id"),
                                 "error": {"kind": r.kind, "message": r.message, "traceback": r.tb}}, []
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            fault = _fault(exc, f"the worker failed on {op!r}")
            header, out_blobs = {"ok": False, "id": req.get("id"),
                                 "error": {"kind": fault.kind, "message": fault.message, "traceback": fault.tb}}, []
        if CPU_MAPPED:
            header["cpu"] = sorted(CPU_MAPPED)
        for stream in (sys.stdout, sys.stderr):
            # a student may have closed or replaced the streams; the reply must still go out
            with contextlib.suppress(BaseException):
                stream.flush()
        try:
            ch.write_frame(writer, header, out_blobs)
        except ValueError as exc:  # e.g. a NaN in a message: send what can be sent
            ch.write_frame(writer, {"ok": False, "id": req.get("id"),
                                    "error": {"kind": "return", "message": f"unsendable reply: {exc}"}}, [])


# ----------------------------------------------------------------------------- the zygote


#: libraries student files commonly import, imported once in the zygote so that no child pays
#: for them again (never a module the submission could provide: SUBMISSION_DIR is not on
#: sys.path yet, and a missing library is simply skipped)
PREIMPORT = ("torch.nn", "torch.optim", "torch.utils.data", "torchvision", "torchvision.transforms",
             "matplotlib", "matplotlib.pyplot")
_PR_SET_DUMPABLE, _PR_SET_PDEATHSIG = 4, 1
_CHILDREN: set[int] = set()
_EXITS: dict[int, int] = {}  # reaped child -> exit code (negative: killed by that signal)


def zygote(ctl_fd: int, max_bytes: int, sweep: bool) -> None:
    """Serve the control channel: fork one child per phase or restart, never run student code.

    The zygote imports torch and the common libraries, then waits on ``ctl_fd`` (a
    ``SOCK_SEQPACKET`` unix socket, one JSON message per packet). ``fork`` carries the child's
    two pipe ends (``SCM_RIGHTS``): every other process of the sandbox is killed first (with
    ``sweep``, ``kill(-1)`` as the sandbox's own uid: escaped daemons included), the scratch
    folder and the uid's System V IPC objects are emptied, and the child loads the submission
    and serves calls on those pipes. So public and hidden tests, and a worker restarted after a
    crash, never share memory, files or processes with what ran before -- and no child pays for
    importing torch again. The zygote is not dumpable: a child (same uid) cannot ptrace it or
    open its memory or file descriptors.
    """
    import json
    import socket

    sock = socket.socket(fileno=ctl_fd)
    _prctl(_PR_SET_DUMPABLE, 0)
    # Die with the grading process (a batch's Ctrl-C kills it outright; at the rlimit level this
    # process would otherwise live on). setpriv's uid change cleared the launcher's setting.
    parent = os.getppid()
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        return
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 4)
        except OSError:
            return
        if not data:
            return  # the grader closed the control channel
        try:
            req = json.loads(data)
            op = req.get("op") if isinstance(req, dict) else None
            if op == "ping":
                reply = {"ok": True, "pid": os.getpid(), "uid": os.getuid()}
            elif op == "sweep":
                reply = {"ok": True, "left": _sweep(sweep)}
            elif op == "status" and isinstance(req.get("pid"), int):
                reply = {"ok": True, "exit": _exit_status(req["pid"])}
            elif op == "fork" and len(fds) in (2, 3):
                _sweep(sweep)
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                zygote = os.getpid()
                pid = os.fork()
                if pid == 0:  # the child: it never returns into this loop
                    code = 0
                    try:
                        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with the zygote
                        if os.getppid() != zygote:
                            os._exit(code)
                        sock.close()
                        if len(fds) == 3:  # its own output pipe (a sandbox shared by gradings)
                            os.dup2(fds[2], 1)
                            os.dup2(fds[2], 2)
                            os.close(fds[2])
                        _child(fds[0], fds[1], max_bytes)
                    except BaseException:
                        code = 70
                    finally:
                        os._exit(code)
                _CHILDREN.add(pid)
                reply = {"ok": True, "pid": pid}
            else:
                reply = {"ok": False, "error": f"bad control request {str(req)[:100]}"}
        except Exception as exc:  # reported to the grader, which restarts the sandbox
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        sock.send(json.dumps(reply).encode())


def _child(fd_in: int, fd_out: int, max_bytes: int) -> None:
    """A fresh worker: in a Landlock domain of its own, dumpable again (its own /proc entries
    readable), the submission on sys.path, then :func:`serve` until the grader closes the pipe."""
    _own_domain()
    _prctl(_PR_SET_DUMPABLE, 1)
    # Its channel, as a worker's command line names it (student code can find the fds anyway;
    # what it writes there only ends its own call, see the hostile samples).
    sys.argv = [sys.argv[0], "--fd-in", str(fd_in), "--fd-out", str(fd_out)]
    if SUBMISSION_DIR and SUBMISSION_DIR not in sys.path:
        sys.path.append(SUBMISSION_DIR)
    serve(fd_in, fd_out, max_bytes)


def _sweep(everyone: bool) -> int:
    """Kill what ran before the next child: with ``everyone``, every process of this uid but the
    zygote (``kill(-1)``; the grader asks for it only where the uid or the PID namespace is the
    sandbox's own, and never as root), else the zygote's own children; then wait until they are
    gone, and empty the scratch folder and the uid's System V IPC objects. Returns how many
    entries the scratch folder still holds (0: empty; a sandbox shared by gradings is given to
    the next submission only then)."""
    if everyone and os.getuid() != 0 and os.geteuid() != 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
    else:
        for pid in _CHILDREN:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while True:
        _reap()
        if not _others_alive(everyone) or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    left = _empty_scratch()
    _remove_ipc()
    return left


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            _CHILDREN.clear()
            return
        if pid == 0:
            return
        _CHILDREN.discard(pid)
        _EXITS[pid] = os.waitstatus_to_exitcode(status)


def _exit_status(pid: int, wait: float = 5.0) -> int | None:
    """How the child ``pid`` ended (waiting up to ``wait`` seconds for it to end)."""
    deadline = time.monotonic() + wait
    while pid not in _EXITS and pid in _CHILDREN and time.monotonic() < deadline:
        _reap()
        time.sleep(0.002)
    return _EXITS.get(pid)


def _others_alive(everyone: bool) -> bool:
    """Is a process of this uid other than the zygote still running (zombies do not count)?"""
    me, uid = os.getpid(), str(os.getuid())
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me or (not everyone and int(name) not in _CHILDREN):
            continue
        try:
            with open(f"/proc/{name}/status", encoding="ascii", errors="replace") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue
        if fields.get("Uid", "").split()[:1] == [uid] and not fields.get("State", "").strip().startswith(("Z", "X")):
            return True
    return False


def _empty_scratch() -> int:
    """Remove everything in the scratch folder, folders a student made unreadable or unwritable
    included (same uid: their modes can be given back). Returns the entries left."""
    import shutil

    scratch = os.environ.get("HW4_SCRATCH_DIR", "")
    if not scratch or not os.path.isdir(scratch):
        return 0

    def reopen(_func, path, _exc) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)

    for _round in range(2):
        for entry in os.scandir(scratch):
            try:
                if entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        os.chmod(entry.path, 0o700)
                    shutil.rmtree(entry.path, onerror=reopen)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass
    try:
        return len(os.listdir(scratch))
    except OSError:
        return 0


def _remove_ipc() -> None:
    """Remove this uid's System V shared memory, message queues and semaphores (they outlive
    the processes that made them). POSIX message queues cannot be made at all
    (``RLIMIT_MSGQUEUE`` is 0)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    ipc_rmid = 0
    uid = os.getuid()
    for kind, remove in (("shm", lambda i: libc.shmctl(i, ipc_rmid, None)),
                         ("msg", lambda i: libc.msgctl(i, ipc_rmid, None)),
                         ("sem", lambda i: libc.semctl(i, 0, ipc_rmid))):
        try:
            with open(f"/proc/sysvipc/{kind}", encoding="ascii") as fh:
                header = fh.readline().split()
                rows = [dict(zip(header, line.split(), strict=False)) for line in fh]
        except OSError:
            continue
        for row in rows:
            ident = row.get("shmid") or row.get("msqid") or row.get("semid")
            if ident and row.get("uid") == str(uid):
                remove(int(ident))


def _own_domain() -> None:
    """Scope the worker's signals and abstract unix sockets to a nested Landlock domain (ABI >= 6):
    its code cannot signal or ptrace the zygote (``kill(getppid())``, ``kill(-1)``), which would
    end the sandbox. Without it (older kernels) such a worker only costs a new sandbox."""
    import ctypes

    class Attr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    create, restrict, version_flag, scope_abstract_unix, scope_signal, no_new_privs = 444, 446, 1, 1, 2, 38
    if libc.syscall(create, None, 0, version_flag) < 6:
        return
    attr = Attr(0, 0, scope_abstract_unix | scope_signal)
    fd = libc.syscall(create, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if fd < 0:
        return
    try:
        if libc.prctl(no_new_privs, 1, 0, 0, 0) == 0:
            libc.syscall(restrict, int(fd), 0)
    finally:
        os.close(int(fd))


def _prctl(option: int, value: int) -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ctl", type=int, required=True, help="the control socket (see zygote)")
    parser.add_argument("--max-bytes", type=int, default=64 << 20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sweep", action="store_true", help="kill(-1) is safe here: own uid or PID namespace")
    args = parser.parse_args()
    # The given files first (resnet20/train_util are always ours); the submission is appended by
    # each child: a student file named like a library module must never replace the library.
    if GIVEN_DIR and GIVEN_DIR not in sys.path:
        sys.path.insert(0, GIVEN_DIR)
    import torch

    torch.set_num_threads(max(args.threads, 1))
    import cpu_only  # GPU code (.cuda(), .to("cuda"), device="cuda") runs on the CPU, noted

    cpu_only.install(CPU_MAPPED.add)
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in PREIMPORT:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    _load_probes()
    zygote(args.ctl, args.max_bytes, args.sweep)


if __name__ == "__main__":
    main()
