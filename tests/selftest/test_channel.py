"""The data-only channel: what a worker's reply may hold, and what the trusted side refuses."""

from __future__ import annotations

import io
import json
import math
import pickle
import struct

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.sandbox import channel as ch

MAX = 1 << 20

# Plain values of every kind the channel carries, nested a little.
SCALARS = (st.none() | st.booleans() | st.integers(-(2**62), 2**62) | st.floats(allow_nan=True, width=64)
           | st.text(max_size=20))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5), inner, max_size=4),
    max_leaves=20,
)


def _round_trip(value):
    buf = io.BytesIO()
    data, blobs = ch.encode(value)
    ch.write_frame(buf, {"body": data}, blobs)
    header, got = ch.read_frame(io.BytesIO(buf.getvalue()), MAX)
    return ch.decode(header["body"], got)


def _same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


@given(VALUES)
def test_plain_values_come_back_equal_and_of_the_same_type(value):
    """Numbers, strings, lists, tuples and dicts survive a round trip exactly (NaN and inf too)."""
    assert _same(_round_trip(value), value)


def test_arrays_and_tensors_come_back_with_dtype_shape_and_values():
    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4), np.array([True, False]),
              np.zeros((0, 5), np.int64), np.arange(6.0)[::2]]  # the last is not contiguous
    tensors = [torch.arange(6.0).reshape(2, 3).t(), torch.tensor([1.5, -2.0], dtype=torch.bfloat16)]
    back = _round_trip([*arrays, *tensors])
    for a, b in zip(arrays, back[:4], strict=True):
        assert type(b) is np.ndarray and b.dtype == a.dtype and np.array_equal(a, b)
    for a, b in zip(tensors, back[4:], strict=True):
        assert type(b) is torch.Tensor and b.dtype == a.dtype and torch.equal(a, b)


class _EqFloat(float):
    def __eq__(self, other):
        return True

    __hash__ = float.__hash__


class _Reducer:
    def __reduce__(self):
        return (print, ("unpickled!",))


@pytest.mark.parametrize("value", [_EqFloat(1.0), _Reducer(), np.array([object()], dtype=object),
                                   {1, 2}, b"bytes", type("S", (str,), {})("x"), [1, _Reducer()]],
                         ids=["float-subclass", "reduce", "object-array", "set", "bytes", "str-subclass",
                              "nested"])
def test_anything_but_plain_data_is_refused_with_its_type_named(value):
    with pytest.raises(ch.Unsupported, match=r"a value of type|dtype object"):
        ch.encode(value)


def test_ndarray_subclass_arrives_as_a_plain_array():
    class Sneaky(np.ndarray):
        def __eq__(self, other):
            return True

        __hash__ = None

    back = _round_trip(np.arange(3.0).view(Sneaky))
    assert type(back) is np.ndarray and back.tolist() == [0.0, 1.0, 2.0]


def _frame(header: bytes, blobs: list[bytes] = ()) -> io.BytesIO:
    parts = [struct.pack("<4sII", ch.MAGIC, len(header), len(blobs)), header]
    for b in blobs:
        parts += [struct.pack("<Q", len(b)), b]
    return io.BytesIO(b"".join(parts))


@pytest.mark.parametrize("header, why", [
    (b'{"a": NaN}', "non-JSON constant NaN"),
    (b'{"a": Infinity}', "non-JSON constant Infinity"),
    (b'{"a": 1e999}', "overflowing number"),
    (b'{"a": 1, "a": 2}', "duplicate key"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    (b'{"a": "\xff"}', "not valid JSON"),
    (b"not json", "not valid JSON"),
])
def test_malformed_headers_are_refused(header, why):
    """Strict JSON only: what Python's json would accept loosely is a ChannelError here."""
    with pytest.raises(ch.ChannelError, match=why):
        ch.read_frame(_frame(header), MAX)


def test_a_pickle_on_the_channel_is_not_a_frame():
    """Raw bytes (here a pickle a student wrote to the reply pipe) are refused, never unpickled."""
    with pytest.raises(ch.ChannelError, match=r"bad frame magic"):
        ch.read_frame(io.BytesIO(pickle.dumps(_Reducer()) + b"\0" * 16), MAX)


def test_size_limits_hold_before_anything_is_allocated():
    big_header = struct.pack("<4sII", ch.MAGIC, MAX + 1, 0)
    with pytest.raises(ch.ChannelError, match=r"exceeds the limit"):
        ch.read_frame(io.BytesIO(big_header), MAX)
    too_many_blobs = struct.pack("<4sII", ch.MAGIC, 2, ch.MAX_BLOBS + 1) + b"{}"
    with pytest.raises(ch.ChannelError, match=r"exceeds the limit"):
        ch.read_frame(io.BytesIO(too_many_blobs), MAX)
    # A blob that claims more than the limit is refused from its length alone.
    frame = _frame(b"{}", [b"x"])
    raw = bytearray(frame.getvalue())
    raw[-9:-1] = struct.pack("<Q", MAX * 4)
    with pytest.raises(ch.ChannelError, match=r"larger than the limit"):
        ch.read_frame(io.BytesIO(bytes(raw)), MAX)


def test_a_frame_cut_short_is_an_error_and_an_empty_stream_is_eof():
    with pytest.raises(EOFError):
        ch.read_frame(io.BytesIO(b""), MAX)
    whole = _frame(b'{"ok": true}').getvalue()
    with pytest.raises(ch.ChannelError, match=r"closed mid-frame"):
        ch.read_frame(io.BytesIO(whole[:-3]), MAX)


@pytest.mark.parametrize("value, why", [
    ({"$nd": {"dtype": "object", "shape": [1], "blob": 0}}, "not allowed"),
    ({"$nd": {"dtype": "float64", "shape": [2], "blob": 0}}, "does not match its shape"),
    ({"$nd": {"dtype": "float64", "shape": [1] * 40, "blob": 0}}, "not allowed"),
    ({"$nd": {"dtype": "float64", "shape": [1], "blob": 7}}, "missing blob"),
    ({"$module": {}}, "unexpected tag"),  # specs go trusted -> worker only
    ({"$d": [[[1, 2], 3]]}, "unhashable dict key"),
    ({"$f": "1.0"}, "bad non-finite float"),
    ({"x": 1}, "unexpected tag"),
    ({"a": 1, "b": 2}, "malformed value"),
    ({"$state": {"type": "Linear"}}, "malformed module state"),
])
def test_decoding_refuses_malformed_values(value, why):
    with pytest.raises(ch.ChannelError, match=why):
        ch.decode(value, [b"\0" * 8])


def test_decoding_bounds_depth_and_item_count():
    deep: object = 1
    for _ in range(ch.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(ch.ChannelError, match=r"nested too deeply"):
        ch.decode(deep, [])
    with pytest.raises(ch.ChannelError, match=r"more than"):
        ch.decode([0] * (ch.MAX_ITEMS + 1), [])


def test_lone_surrogates_are_replaced_so_results_can_be_written():
    """A student's message with a lone surrogate would crash a UTF-8 writer later: it is cleaned."""
    header, _ = ch.read_frame(_frame(json.dumps({"message": "bad \udc80 char"}).encode()), MAX)
    header["message"].encode("utf-8")
    assert header["message"].startswith("bad ") and header["message"].endswith(" char")
