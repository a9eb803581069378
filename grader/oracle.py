"""The one way public tests reach the reference: live in the full edition, recorded in the student's.

A public test never imports ``reference.lab*`` (the student edition does not have it). Where it
needs a reference value it asks::

    expected = oracle.call("reference.lab1:loss", W, X, y)

``name`` is ``"module:function"``; the module is imported only where the reference is installed.
What answers depends on where the call happens:

=====================  ==========================================================================
recording              ``hw4grade assign`` runs the public tests against the reference solution
                       with :func:`recording` on: every call is computed live and stored.
public test            the recorded value (:func:`table_path`: ``<config>.recorded.json`` next to
                       the assignment config) in both editions, so both judge with the same numbers.
hidden test            computed live (only the full edition has hidden tests).
=====================  ==========================================================================

A call the table lacks (a *miss*) is never the student's failure. Inside a Hypothesis example
(shrinking tries inputs that were never generated, so never recorded) the example is rejected,
so the shrinker stays on recorded inputs, in both editions alike. Outside one, the full edition
computes the value live (the table is stale: ``hw4grade assign --check`` says so) and the student
edition reports a grader error ("rebuild the student edition").

Rule for callers: neither the arguments of a call nor whether it is made may depend on the
student's results -- ask for everything a test compares with, its failure messages' hints
included, before calling the student -- or the student edition misses where the full edition does
not (the recording run is the solution's, which never fails).

Keys are digests of the call (name, argument types, shapes, dtypes and exact bytes), so any change
of an input is a different key. Values are data only (numbers, strings, arrays, tensors, lists,
tuples, dicts) and are stored as JSON; arrays as base64 of their zlib-compressed bytes.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import importlib
import json
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from grader.errors import GraderError

__all__ = ["OracleMiss", "call", "decode", "dump_table", "encode", "key", "load_hidden", "load_table", "recording",
           "set_visibility", "table_path"]

FORMAT = 1

_state: dict[str, Any] = {"visibility": None, "recording": None}


class OracleMiss(GraderError):
    """The student edition has no recorded value for this call."""


def set_visibility(visibility: str | None) -> None:
    """Which kind of test is running (the plugin sets it around each test): ``public``,
    ``hidden`` or None (not in a grading test)."""
    _state["visibility"] = visibility


@contextlib.contextmanager
def recording() -> Iterator[dict[str, dict]]:
    """Compute every call live and collect it: ``{key: {"call": ..., "value": ...}}``."""
    table: dict[str, dict] = {}
    previous = _state["recording"]
    _state["recording"] = table
    try:
        yield table
    finally:
        _state["recording"] = previous


def call(name: str, *args: Any, **kwargs: Any) -> Any:
    """The reference's ``name(*args, **kwargs)``, live or recorded (see the module doc)."""
    record = _state["recording"]
    if record is not None:
        value = _live(name, args, kwargs)
        record[key(name, args, kwargs)] = {"call": describe(name, args, kwargs), "value": encode(value)}
        return decode(encode(value))  # what a replay returns, so the recording run judges alike
    if _state["visibility"] == "hidden" and _has_reference():
        return _live(name, args, kwargs)
    table = load_table()
    entry = table.get(key(name, args, kwargs))
    if entry is not None:
        return decode(entry["value"])
    if not table and _has_reference():
        return _live(name, args, kwargs)  # a term nobody recorded: nothing to mirror, the full edition computes
    if _in_hypothesis():
        from hypothesis import reject

        reject()  # an input the public tests never generated (a shrink step): not the student's fault
    if _has_reference():
        return _live(name, args, kwargs)
    raise OracleMiss(f"the student edition has no recorded value for {describe(name, args, kwargs)}; "
                     "the course's instructor must rebuild it (hw4grade assign)")


def _live(name: str, args: tuple, kwargs: dict) -> Any:
    module, _, attr = name.partition(":")
    target: Any = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    return target(*args, **kwargs)


@functools.lru_cache(maxsize=1)
def _has_reference() -> bool:
    from grader.edition import current

    return current() != "student"


def _in_hypothesis() -> bool:
    from hypothesis import currently_in_test_context

    return currently_in_test_context()


def table_path(config_path: Path | None = None) -> Path:
    """Where the recorded values of a term live: ``<config>.recorded.json`` beside its config
    (``reference/assignment.recorded.json`` for the default term)."""
    if config_path is None:
        from reference.config import load

        config_path = load().path
    return Path(config_path).with_suffix(".recorded.json")


def load_table() -> dict[str, dict]:
    """The recorded calls of the loaded term: ``{key: {"call": description, "value": encoded}}``
    (empty when the term has no recorded table)."""
    return _read(table_path()).get("calls", {})


def load_hidden() -> list[dict]:
    """The hidden tests of the loaded term as the student edition counts them: ``item``, ``kind``,
    ``weight`` each, no names."""
    return _read(table_path()).get("hidden", [])


@functools.lru_cache(maxsize=4)
def _read(path: Path) -> dict:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("calls"), dict):
        raise GraderError(f"{path}: not a recorded-oracle table of format {FORMAT}")
    return data


def dump_table(calls: dict[str, dict], hidden: list[dict]) -> str:
    """The table file's text: calls sorted by their description, so a change reads as a small diff."""
    ordered = dict(sorted(calls.items(), key=lambda kv: (kv[1]["call"], kv[0])))
    return json.dumps({"format": FORMAT, "hidden": hidden, "calls": ordered}, indent=1) + "\n"


# ----------------------------------------------------------------------------- keys


def key(name: str, args: tuple, kwargs: dict) -> str:
    """A digest of the call: its name and the exact type, shape and bytes of every argument."""
    h = hashlib.sha256()
    h.update(name.encode())
    _feed(h, list(args))
    _feed(h, dict(kwargs))
    return h.hexdigest()[:32]


def _feed(h: Any, value: Any) -> None:
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    elif isinstance(value, torch.nn.Module):
        h.update(f"M{type(value).__name__}".encode())
        _feed(h, dict(value.state_dict()))
    elif isinstance(value, np.ndarray):
        h.update(f"A{value.dtype.str}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, bool | None):
        h.update(f"B{value}".encode())
    elif isinstance(value, int | np.integer):
        h.update(f"I{int(value)}".encode())
    elif isinstance(value, float | np.floating):
        h.update(f"F{float(value).hex()}".encode())
    elif isinstance(value, str):
        h.update(f"S{len(value)}:{value}".encode())
    elif isinstance(value, list | tuple):
        h.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}".encode())
        for v in value:
            _feed(h, v)
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for k in sorted(value, key=str):
            _feed(h, str(k))
            _feed(h, value[k])
    else:
        raise GraderError(f"oracle: cannot key an argument of type {type(value).__name__}")


def describe(name: str, args: tuple, kwargs: dict) -> str:
    """A short readable form of the call (for the table and messages)."""
    parts = [_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def _short(value: Any) -> str:
    import torch

    if isinstance(value, torch.Tensor | np.ndarray):
        kind = "tensor" if isinstance(value, torch.Tensor) else "array"
        flat = np.asarray(value.detach().cpu().double() if isinstance(value, torch.Tensor) else value,
                          dtype=float).ravel()
        if flat.size <= 6:
            return f"{kind}{[float(f'{v:.6g}') for v in flat]}"
        return f"{kind}{tuple(value.shape)}"
    if isinstance(value, torch.nn.Module):
        return type(value).__name__
    if isinstance(value, float):
        return f"{value:.8g}"
    if isinstance(value, list | tuple):
        inner = ", ".join(_short(v) for v in value[:4]) + (", ..." if len(value) > 4 else "")
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return repr(value)[:40]


# ----------------------------------------------------------------------------- values


def encode(value: Any) -> Any:
    """A JSON-able form of a data value (the inverse of :func:`decode`)."""
    import torch

    if isinstance(value, torch.Tensor):
        arr = value.detach().cpu().contiguous().numpy()
        return {"tensor": _array(arr)}
    if isinstance(value, np.ndarray):
        return {"array": _array(value)}
    if isinstance(value, bool | None | str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else {"float": repr(f)}
    if isinstance(value, tuple):
        return {"tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: encode(v) for k, v in value.items()}}
    raise GraderError(f"oracle: cannot record a value of type {type(value).__name__}")


def _array(arr: np.ndarray) -> dict:
    arr = np.ascontiguousarray(arr)
    data = base64.b64encode(zlib.compress(arr.tobytes(), 9)).decode("ascii")
    return {"dtype": arr.dtype.str, "shape": list(arr.shape), "data": data}


def decode(value: Any) -> Any:
    """The value :func:`encode` stored (arrays and tensors are fresh copies)."""
    import torch

    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    (kind, body), = value.items()
    if kind == "tuple":
        return tuple(decode(v) for v in body)
    if kind == "dict":
        return {k: decode(v) for k, v in body.items()}
    if kind == "float":
        return float(body)
    if kind in ("array", "tensor"):
        raw = zlib.decompress(base64.b64decode(body["data"]))
        arr = np.frombuffer(raw, dtype=np.dtype(body["dtype"])).reshape(body["shape"]).copy()
        return torch.from_numpy(arr) if kind == "tensor" else arr
    raise GraderError(f"oracle: unknown recorded value {kind!r}")
