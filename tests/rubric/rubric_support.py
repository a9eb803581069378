"""Helpers for the rubric tests: reading student return values and comparing with messages.

A student's return value is checked for type and shape *before* it is compared, so a wrong
return reads as the student's fault ("returned a list of 3 numbers, expected 5"), never as a
grader crash.
"""

from __future__ import annotations

import numpy as np
import torch

from grader.errors import BadReturn

__all__ = ["as_tensor", "as_trajectory", "as_vector", "assert_close", "fmt", "magnitude_pruned", "refuse_trivial",
           "trivial_answer"]


def fmt(a, digits: int = 6) -> str:
    """A short, readable rendering of a number or array for feedback."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=float)
    if a.ndim == 0:
        return f"{float(a):.{digits}g}"
    flat = np.round(a.ravel(), digits).tolist()
    text = "[" + ", ".join(f"{v:.{digits}g}" for v in flat[:12]) + (", ..." if len(flat) > 12 else "") + "]"
    return text if a.ndim == 1 else f"{text} (shape {tuple(a.shape)})"


def _floats(value) -> np.ndarray:
    return np.asarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value, dtype=float)


def as_vector(value, n: int, what: str) -> np.ndarray:
    """A float vector of length ``n`` from a student return: shape (n,), (n, 1) or (1, n)."""
    try:
        arr = _floats(value)
    except (TypeError, ValueError):
        raise BadReturn(f"{what} returned {type(value).__name__}, expected an array of {n} numbers") from None
    if arr.size != n or (arr.ndim == 2 and 1 not in arr.shape) or arr.ndim > 2:
        raise BadReturn(f"{what} returned shape {arr.shape}, expected ({n},) or ({n}, 1)")
    return arr.reshape(n)


def as_trajectory(value, steps: int, n: int, what: str) -> np.ndarray:
    """A (steps + 1, n) trajectory; (steps + 1, n, 1) columns are accepted too."""
    try:
        arr = _floats(value)
    except (TypeError, ValueError):
        raise BadReturn(f"{what} returned {type(value).__name__}, "
                        f"expected an array of shape ({steps + 1}, {n})") from None
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.shape != (steps + 1, n):
        hint = " (include W0 as the first row)" if arr.shape == (steps, n) else ""
        raise BadReturn(f"{what} returned shape {arr.shape}, expected ({steps + 1}, {n}){hint}")
    return arr


def as_tensor(value, shape, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise BadReturn(f"{what} returned {type(value).__name__}, expected a tensor")
    if tuple(value.shape) != tuple(shape):
        raise BadReturn(f"{what} returned shape {tuple(value.shape)}, expected {tuple(shape)}")
    return value


def assert_close(got, expected, *, rtol: float, atol: float, what: str) -> None:
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    if not np.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=False):
        diff = np.abs(got - expected)
        worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
        raise AssertionError(
            f"{what}: expected {fmt(expected)}, got {fmt(got)}"
            + (f" (largest difference {float(diff[worst]):.3g} at index {tuple(int(i) for i in worst)})"
               if worst else "")
        )


def trivial_answer(got, inputs, expected, tol: float) -> str | None:
    """Which trivial answer ``got`` is -- all zeros, one of ``inputs`` returned unchanged, or one
    value everywhere -- when no right answer is that; None when it is none of them.

    ``expected`` is the right answer, or a list of the accepted ones (variants, tie-breaks). A
    trivial answer that is right on this input (the right answer is itself all zeros, or the
    input, or constant) is not refused: the input says nothing about it. Values are compared
    within ``tol``.
    """
    got = _floats(got)
    right = [_floats(e) for e in (expected if isinstance(expected, list) else [expected])]

    def same(a: np.ndarray, b: np.ndarray) -> bool:
        return a.size == b.size and bool(np.all(np.abs(a.ravel() - b.ravel()) <= tol))

    zeros = np.zeros(got.size)
    if same(got, zeros) and not any(same(r, zeros) for r in right):
        return "all zeros"
    for given in map(_floats, inputs):
        if same(got, given) and not any(same(r, given) for r in right):
            return "its input unchanged"
    if got.size > 1 and float(np.ptp(got)) <= tol and not any(float(np.ptp(r)) <= tol for r in right):
        return f"the same value ({float(got.ravel()[0]):.6g}) everywhere"
    return None


def refuse_trivial(got, inputs, expected, tol: float, what: str) -> None:
    """Fail a property test on a trivial answer (see :func:`trivial_answer`): properties such as
    "odd", "idempotent" or "at most 2^bit levels" hold for zeros, the identity or a constant as
    well, and a trivial answer must never earn points."""
    kind = trivial_answer(got, inputs, expected, tol)
    if kind is not None:
        raise AssertionError(f"{what}: returned {kind}, a trivial answer; expected {fmt(_first(expected))}")


def _first(expected):
    return expected[0] if isinstance(expected, list) else expected


def magnitude_pruned(layer: torch.nn.Module, q: float) -> torch.nn.Module:
    """``layer`` with its ``q`` percent smallest-magnitude weights zeroed in place, by
    ``torch.nn.utils.prune.l1_unstructured`` (a test's prerequisite pruning: neither the student's
    function, which other tests grade, nor the reference's, which the student edition lacks)."""
    from torch.nn.utils import prune

    prune.l1_unstructured(layer, "weight", amount=q / 100.0)
    prune.remove(layer, "weight")  # keep the zeros in .weight, drop the mask and the hook
    return layer
