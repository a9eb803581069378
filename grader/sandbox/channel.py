"""The data-only channel between the trusted grader and the sandboxed worker.

A message is one frame: ``b"HW4M" | u32 header length | u32 blob count | header JSON |
(u64 length | bytes) per blob``. The header is JSON; arrays and tensors travel as raw bytes in
blobs, described by dtype and shape in the header. Nothing is pickled in either direction, so
decoding a message a submission produced can only ever yield plain data: ``None``, ``bool``,
``int``, ``float``, ``str``, ``list``, ``tuple``, ``dict``, ``numpy.ndarray`` and
``torch.Tensor`` (plus the tagged specs below).

Tags (a dict with one ``$`` key): ``$f`` non-finite float, ``$t`` tuple, ``$d`` dict (a list of
key/value pairs, so user keys cannot collide with tags), ``$nd`` numpy array, ``$pt`` torch
tensor, ``$module``/``$loader``/``$criterion``/``$optimizer`` input specs (trusted -> worker only),
``$state`` a module's state coming back.

This file is copied into the sandbox; it imports only the standard library, NumPy and (lazily)
torch, never the grader or the reference.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, BinaryIO

import numpy as np

MAGIC = b"HW4M"
_HEAD = struct.Struct("<4sII")
_BLOB = struct.Struct("<Q")

#: dtypes allowed to cross the channel (no object or void arrays, ever).
DTYPES = {
    "bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64",
    "bfloat16", "complex64", "complex128",
}
MAX_DEPTH = 32
MAX_ITEMS = 1_000_000
MAX_HEADER_BYTES = 16 << 20  # the JSON part: arrays travel as blobs, so headers stay small
MAX_BLOBS = 100_000
MAX_NDIM = 32
MAX_DIM = 1 << 40


class ChannelError(Exception):
    """A frame is malformed, too large or holds something other than plain data."""


class Unsupported(ChannelError):
    """A value of a type the channel does not carry (the message names the type)."""


# ----------------------------------------------------------------------------- framing


def write_frame(stream: BinaryIO, header: Any, blobs: list[bytes]) -> None:
    head = json.dumps(header, allow_nan=False, separators=(",", ":")).encode()
    parts = [_HEAD.pack(MAGIC, len(head), len(blobs)), head]
    for blob in blobs:
        parts.append(_BLOB.pack(len(blob)))
        parts.append(blob)
    stream.write(b"".join(parts))
    stream.flush()


def read_frame(stream: BinaryIO, max_bytes: int) -> tuple[Any, list[bytes]]:
    """Read one frame; raise EOFError at a clean end of stream, ChannelError on anything odd.

    The header must be strict JSON in UTF-8: no ``NaN``/``Infinity`` literals or overflowing
    numbers (non-finite floats travel as ``$f`` tags), no duplicate keys, nesting the parser can
    handle; at most ``min(max_bytes, MAX_HEADER_BYTES)`` bytes; the whole frame at most
    ``max_bytes``. Lone surrogates in strings are replaced (they could not be written out later).
    """
    raw = _read_exact(stream, _HEAD.size, allow_eof=True)
    magic, head_len, n_blobs = _HEAD.unpack(raw)
    if magic != MAGIC:
        raise ChannelError("bad frame magic (the stream is not a grader channel)")
    if head_len > min(max_bytes, MAX_HEADER_BYTES) or n_blobs > MAX_BLOBS:
        raise ChannelError(f"frame header of {head_len} bytes / {n_blobs} blobs exceeds the limit")
    total = head_len
    header = parse_header(_read_exact(stream, head_len))
    blobs = []
    for _ in range(n_blobs):
        (size,) = _BLOB.unpack(_read_exact(stream, _BLOB.size))
        total += size
        if total > max_bytes:
            raise ChannelError(f"message larger than the limit of {max_bytes} bytes")
        blobs.append(_read_exact(stream, size))
    return header, blobs


def parse_header(raw: bytes) -> Any:
    """Strict JSON (see :func:`read_frame`); ChannelError for anything else."""
    try:
        text = raw.decode("utf-8")
        header = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float,
                            object_pairs_hook=_unique_keys)
    except ChannelError:
        raise
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deeply
        why = f"{type(exc).__name__}: {str(exc)[:200]}"
        raise ChannelError(f"frame header is not valid JSON: {why}") from None
    try:
        # Strict UTF-8 text has no lone surrogates, but a JSON escape such as \udc80 makes one.
        json.dumps(header, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        header = _clean_strings(header)
    return header


def _no_constant(name: str) -> Any:
    raise ChannelError(f"frame header holds the non-JSON constant {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ChannelError(f"frame header holds the overflowing number {text[:40]}")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ChannelError("frame header has a duplicate key")
    return out


def _clean_strings(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_clean_strings(v) for v in value]
    if isinstance(value, dict):
        return {_clean_strings(k): _clean_strings(v) for k, v in value.items()}
    return value


def _read_exact(stream: BinaryIO, n: int, allow_eof: bool = False) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            if allow_eof and got == 0:
                raise EOFError("channel closed")
            raise ChannelError(f"channel closed mid-frame ({got} of {n} bytes)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# ----------------------------------------------------------------------------- encoding


class Encoder:
    """Turn a value into JSON-able data plus blobs. ``specs`` lets the trusted side pass input
    specs through untouched; the worker encodes ``nn.Module`` results as ``$state``."""

    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self.items = 0

    def encode(self, value: Any, depth: int = 0) -> Any:
        self.items += 1
        if depth > MAX_DEPTH or self.items > MAX_ITEMS:
            raise Unsupported("value nested too deeply or too large to send")
        if value is None or type(value) is bool or type(value) is str:
            return value
        if type(value) is int:
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {"$f": repr(value)}
        if isinstance(value, np.ndarray):
            return {"$nd": self._array(value)}
        if isinstance(value, np.generic):
            return self.encode(value.item(), depth + 1)
        torch = _torch()
        if torch is not None:
            if isinstance(value, torch.Tensor):
                return {"$pt": self._tensor(value)}
            if isinstance(value, torch.nn.Module):
                return {"$state": self._module_state(value, depth)}
            if isinstance(value, torch.Size):
                return {"$t": [int(v) for v in value]}
            if isinstance(value, torch.device | torch.dtype):
                return str(value)
        if isinstance(value, Spec):
            return {value.tag: self.encode(value.body, depth + 1)}
        if type(value) is tuple:
            return {"$t": [self.encode(v, depth + 1) for v in value]}
        if type(value) is list:
            return [self.encode(v, depth + 1) for v in value]
        if type(value) is dict:
            return {"$d": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]}
        # bool/int/float/str subclasses and everything else: refused, named. (A float subclass
        # whose __eq__ always says True must never reach the grader's comparisons.)
        raise Unsupported(f"a value of type {type(value).__module__}.{type(value).__qualname__}")

    def _blob(self, data: bytes) -> int:
        self.blobs.append(data)
        return len(self.blobs) - 1

    def _array(self, a: np.ndarray) -> dict:
        if a.dtype.name not in DTYPES:
            raise Unsupported(f"a numpy array of dtype {a.dtype}")
        a = np.ascontiguousarray(a)
        return {"dtype": a.dtype.name, "shape": list(a.shape), "blob": self._blob(a.tobytes())}

    def _tensor(self, t: Any) -> dict:
        torch = _torch()
        t = t.detach().to("cpu").contiguous()
        name = str(t.dtype).removeprefix("torch.")
        if name not in DTYPES:
            raise Unsupported(f"a tensor of dtype {t.dtype}")
        raw = t.view(torch.int16).numpy().tobytes() if name == "bfloat16" else t.numpy().tobytes()
        return {"dtype": name, "shape": list(t.shape), "blob": self._blob(raw)}

    def _module_state(self, module: Any, depth: int) -> dict:
        state = {k: v for k, v in module.state_dict().items()}
        return {"type": type(module).__name__, "state": self.encode(state, depth + 1)}


class Spec:
    """An input spec (trusted -> worker): ``Spec("$module", {...})``."""

    __slots__ = ("body", "tag")

    def __init__(self, tag: str, body: Any):
        if tag not in ("$module", "$loader", "$criterion", "$optimizer"):
            raise ValueError(f"unknown spec tag {tag}")
        self.tag, self.body = tag, body


def encode(value: Any) -> tuple[Any, list[bytes]]:
    enc = Encoder()
    return enc.encode(value), enc.blobs


def decode(data: Any, blobs: list[bytes], specs: bool = False) -> Any:
    """Rebuild plain data. With ``specs=False`` (the trusted side reading a worker's reply) any
    spec tag is refused; ``$state`` comes back as ``{"type": name, "state": dict}``.

    Raises:
        ChannelError: a malformed value, an unknown tag, nesting deeper than ``MAX_DEPTH`` or
            more than ``MAX_ITEMS`` values.
    """
    return _Decoder(blobs, specs).decode(data, 0)


class _Decoder:
    def __init__(self, blobs: list[bytes], specs: bool):
        self.blobs, self.specs, self.items = blobs, specs, 0

    def decode(self, data: Any, depth: int) -> Any:
        self.items += 1
        if self.items > MAX_ITEMS:
            raise ChannelError(f"value holds more than {MAX_ITEMS} items")
        return _decode(data, self.blobs, self.specs, depth, self)


def _decode(data: Any, blobs: list[bytes], specs: bool, depth: int, dec: _Decoder) -> Any:
    if depth > MAX_DEPTH:
        raise ChannelError("value nested too deeply")
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if isinstance(data, list):
        return [dec.decode(v, depth + 1) for v in data]
    if not isinstance(data, dict) or len(data) != 1:
        raise ChannelError("malformed value in frame")
    (tag, body), = data.items()
    if tag == "$f":
        if body not in ("nan", "inf", "-inf"):
            raise ChannelError(f"bad non-finite float {body!r}")
        return float(body)
    if tag == "$t":
        return tuple(dec.decode(v, depth + 1) for v in _list(body))
    if tag == "$d":
        out = {}
        for pair in _list(body):
            if not isinstance(pair, list) or len(pair) != 2:
                raise ChannelError("malformed dict entry")
            key = dec.decode(pair[0], depth + 1)
            try:
                hash(key)
            except TypeError:
                raise ChannelError("unhashable dict key") from None
            if isinstance(key, np.ndarray) or _is_tensor(key):
                raise ChannelError("an array as a dict key")
            out[key] = dec.decode(pair[1], depth + 1)
        return out
    if tag == "$nd":
        return _decode_array(body, blobs)
    if tag == "$pt":
        return _decode_tensor(body, blobs)
    if tag == "$state":
        if not isinstance(body, dict) or set(body) != {"type", "state"} or not isinstance(body["type"], str):
            raise ChannelError("malformed module state")
        state = dec.decode(body["state"], depth + 1)
        if not isinstance(state, dict):
            raise ChannelError("malformed module state")
        return {"type": body["type"], "state": state}
    if specs and tag in ("$module", "$loader", "$criterion", "$optimizer"):
        return Spec(tag, dec.decode(body, depth + 1))
    raise ChannelError(f"unexpected tag {tag!r} in frame")


def _list(body: Any) -> list:
    if not isinstance(body, list):
        raise ChannelError("malformed container in frame")
    return body


def _array_meta(body: Any, blobs: list[bytes]) -> tuple[str, tuple[int, ...], bytes]:
    if not isinstance(body, dict) or set(body) != {"dtype", "shape", "blob"}:
        raise ChannelError("malformed array in frame")
    dtype, shape, idx = body["dtype"], body["shape"], body["blob"]
    if (not isinstance(dtype, str) or dtype not in DTYPES or not isinstance(shape, list)
            or len(shape) > MAX_NDIM or not all(type(s) is int and 0 <= s <= MAX_DIM for s in shape)):
        raise ChannelError(f"array of dtype {str(dtype)[:40]!r} / shape {str(shape)[:80]} not allowed")
    if type(idx) is not int or not 0 <= idx < len(blobs):
        raise ChannelError("array refers to a missing blob")
    raw = blobs[idx]
    itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
    if len(raw) != math.prod(shape) * itemsize:
        raise ChannelError("array blob size does not match its shape")
    return dtype, tuple(shape), raw


def _decode_array(body: Any, blobs: list[bytes]) -> np.ndarray:
    dtype, shape, raw = _array_meta(body, blobs)
    if dtype == "bfloat16":
        raise ChannelError("bfloat16 numpy arrays are not supported")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _decode_tensor(body: Any, blobs: list[bytes]) -> Any:
    torch = _torch()
    if torch is None:
        raise ChannelError("a tensor arrived but torch is not available")
    dtype, shape, raw = _array_meta(body, blobs)
    if dtype == "bfloat16":
        base = np.frombuffer(raw, dtype=np.int16).reshape(shape).copy()
        return torch.from_numpy(base).view(torch.bfloat16)
    return torch.from_numpy(np.frombuffer(raw, dtype=dtype).reshape(shape).copy())


def _is_tensor(value: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(value, torch.Tensor)


_TORCH: Any = False


def _torch() -> Any:
    """torch if it is importable (both sides have it; the import is deferred for speed)."""
    global _TORCH  # noqa: PLW0603 - a lazy import cache
    if _TORCH is False:
        try:
            import torch
        except ImportError:  # pragma: no cover - the grader always has torch
            torch = None  # type: ignore[assignment]
        _TORCH = torch
    return _TORCH
