"""Lab 3 helpers for the rubric tests: calling the student's STE, quantization grids, strategies.

Every check here accepts the variants of DESIGN section 3: a student's output is compared with
each accepted quantizer (the reference, ``reference.lab3_variants``, ``torch`` oracles) and
passes if it equals one of them, element by element, except that an input lying within ``TIE``
of a rounding boundary may land on either neighbouring level (``torch.round`` vs
``floor(x + 0.5)``, and float32 vs float64 position arithmetic, only differ there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rubric_support import refuse_trivial

from grader import refcache
from grader.errors import BadReturn, StudentError, StudentException
from grader.oracle import call as reference_call  # the reference: live, or recorded (grader.oracle)
from reference.config import load

__all__ = [
    "TIE",
    "Candidate",
    "Grid",
    "SteCall",
    "assert_matches",
    "asymmetric_candidates",
    "call_ste",
    "dense_tensor",
    "describe",
    "distinct_levels",
    "fixture_test_split",
    "pretrained_state",
    "pretrained_weight",
    "refuse_trivial_forward",
    "symmetric_candidates",
    "value_tol",
    "weight_tensors",
]

#: Half-width, in level units, of the band around a rounding boundary where either neighbouring
#: level is accepted. The strategies keep max|w| <= 8 (max(w) - min(w)), so a float32 position
#: ``(w - beta) / alpha * step`` with step <= 255 carries an error below 8 * 255 * 2^-23 * 4 ops
#: ~ 1e-3; 2e-3 covers it, and is still far from the 0.5 that a floor-for-round mistake moves.
TIE = 2e-3


def value_tol(w: torch.Tensor) -> float:
    """Absolute tolerance on a quantized value: rounding error of the level arithmetic.

    A level ``R * alpha + beta`` is a handful of float ops on values of magnitude <= 2 max|w|:
    float32 (eps 1.2e-7) stays within 1e-5 max|w|, float64 (eps 2.2e-16) within 1e-12 max|w|.
    The finest level spacing the tests use (8 bits, alpha >= max|w| / 8) is 5e-4 max|w|.
    """
    scale = float(w.detach().abs().max()) if w.numel() else 1.0
    rel = 1e-12 if w.dtype == torch.float64 else 1e-5
    return rel * max(scale, 1e-30)


# ----------------------------------------------------------------------------- calling the STE


@dataclass
class SteCall:
    """What one ``ste`` probe brought back (see ``grader/sandbox/probes_lab3.py``)."""

    call: str
    forward: torch.Tensor
    grad: torch.Tensor | None
    grad_error: str | None
    backward: list | None
    inputs: int
    contiguous: bool
    modified_input: bool

    def autograd_grad(self) -> torch.Tensor:
        """``w.grad`` after ``out.backward(g)``; autograd's complaint as the student's error."""
        if self.grad_error:
            raise StudentException(self.grad_error, function="STE.backward",
                                   call=f"{self.call}.backward(g)")
        if self.grad is None:
            raise BadReturn("after out.backward(g), w.grad is None: backward must return the "
                            "gradient of w first", function="STE.backward", call=self.call)
        return self.grad


def call_ste(submission, w: torch.Tensor, bit, symmetric: bool | None = False, grad=None,
             transpose: bool = False) -> SteCall:
    """Run the student's ``STE.apply(w, bit[, symmetric])`` in the sandbox; check the return.

    With ``transpose`` the worker quantizes ``w.transpose(-1, -2)`` (a non-contiguous view), so
    the result has that shape. Raises ``BadReturn`` for a non-tensor or a wrong shape.
    """
    shape = tuple(w.transpose(-1, -2).shape) if transpose else tuple(w.shape)
    sym = "" if symmetric is None or symmetric is False else f", symmetric={symmetric}"
    call = f"STE.apply(w, {bit}{sym})"
    try:
        body = submission.probe("ste", "STE", w=w, bit=bit, symmetric=symmetric, grad=grad,
                                transpose=transpose)
    except StudentError as exc:
        exc.call = call  # the student's call, not the probe's plumbing (and no hidden inputs)
        raise
    out = body.get("forward")
    if not isinstance(out, torch.Tensor):
        raise BadReturn(f"returned {type(out).__name__}, expected a tensor", function="STE", call=call)
    if tuple(out.shape) != shape:
        raise BadReturn(f"returned shape {tuple(out.shape)}, expected {shape} (the shape of w)",
                        function="STE", call=call)
    grad, grad_error, raw, inputs = (body.get(k) for k in ("grad", "grad_error", "backward", "inputs"))
    if not (grad is None or isinstance(grad, torch.Tensor)) or not (raw is None or isinstance(raw, list)) \
            or not isinstance(inputs, int) or not (grad_error is None or isinstance(grad_error, str)):
        raise BadReturn("the STE's results came back unreadable", function="STE", call=call)
    return SteCall(call=call, forward=out, grad=grad, grad_error=grad_error, backward=raw, inputs=inputs,
                   contiguous=bool(body.get("contiguous")), modified_input=bool(body.get("modified_input")))


def describe(w: torch.Tensor) -> str:
    """``w`` in a few words for feedback: shape, dtype, range, zeros."""
    zeros = int((w == 0).sum())
    return (f"w of shape {tuple(w.shape)}, {str(w.dtype).removeprefix('torch.')}, values in "
            f"[{float(w.min()):.4g}, {float(w.max()):.4g}]" + (f", {zeros} zeros" if zeros else ""))


# ----------------------------------------------------------------------------- grids and candidates


@dataclass(frozen=True)
class Grid:
    """The levels ``lo + k * delta``, ``k = 0 .. count - 1`` (float64)."""

    lo: float
    delta: float
    count: int

    def position(self, w: np.ndarray) -> np.ndarray:
        return (w - self.lo) / self.delta

    def near_tie(self, w: np.ndarray) -> np.ndarray:
        """Inputs within ``TIE`` of a boundary between two levels (inside the grid's span)."""
        t = self.position(w)
        inside = (t > 0.5 - TIE) & (t < self.count - 1.5 + TIE)
        return inside & (np.abs(t - np.floor(t) - 0.5) < TIE)


def asymmetric_grid(values: np.ndarray, bit: int) -> Grid:
    step = 2**bit - 1
    lo, hi = float(values.min()), float(values.max())
    return Grid(lo, (hi - lo) / step, step + 1)


@dataclass(frozen=True)
class Candidate:
    """One accepted answer: its name (for feedback), the expected output and its grid."""

    name: str
    expected: np.ndarray
    grid: Grid

    def mismatches(self, w: np.ndarray, got: np.ndarray, tol: float) -> np.ndarray:
        diff = np.abs(got - self.expected)
        ok = diff <= tol
        # At a rounding boundary the neighbouring level is as near: accept it (ties, float32).
        ok |= self.grid.near_tie(w) & (np.abs(diff - self.grid.delta) <= tol) & (w != 0)
        return ~ok


def asymmetric_candidates(w: torch.Tensor, bit: int) -> list[Candidate]:
    """The reference, min/max over the nonzero weights (when that grid differs), and the formula
    without the zero mask in terms where the mask was optional."""
    w64 = _np(w)
    out = [Candidate("the course formula: alpha = max(w) - min(w), beta = min(w), step = 2^bit - 1",
                     _np(reference_call("reference.lab3:STE.apply", w.detach().clone(), bit, False)),
                     asymmetric_grid(w64, bit))]
    nonzero = w64[w64 != 0]
    if nonzero.size and (nonzero.min() != w64.min() or nonzero.max() != w64.max()):
        out.append(Candidate("min/max over the nonzero weights",
                             _np(reference_call("reference.lab3_variants:asymmetric_nonzero_range", w, bit)),
                             asymmetric_grid(nonzero, bit)))
    if not load().lab3.zero_mask_required and (w64 == 0).any():
        unmasked = reference_call("reference.lab3_variants:asymmetric_unmasked", w.detach().clone(), bit)
        out.append(Candidate("the course formula without the zero mask (optional in this term)",
                             _np(unmasked), asymmetric_grid(w64, bit)))
    return out


def symmetric_candidates(w: torch.Tensor, bit: int, oracle: bool = False) -> list[Candidate]:
    """Mid-tread (the reference, or ``torch.fake_quantize_per_tensor_affine`` with ``oracle``)
    and the mid-rise variant without a zero level."""
    w64 = _np(w)
    alpha = float(np.abs(w64).max())
    step = 2 ** (bit - 1) - 1
    if oracle:
        # The independent oracle: scale = alpha / step, zero point 0, integers in [-step, step].
        name = "torch.fake_quantize_per_tensor_affine(w, max|w| / step, 0, -step, step)"
        expected = torch.fake_quantize_per_tensor_affine(w.detach().float(), alpha / step, 0, -step, step)
    else:
        name = "the course formula: alpha = max|w|, step = 2^(bit-1) - 1"
        expected = reference_call("reference.lab3:STE.apply", w.detach().clone(), bit, True)
    midtread = Candidate(name, _np(expected), Grid(-alpha, alpha / step, 2 * step + 1))
    midrise = Candidate(f"{2**bit} levels without zero (mid-rise) from -max|w| to max|w|",
                        _np(reference_call("reference.lab3_variants:symmetric_midrise", w, bit)),
                        Grid(-alpha, 2 * alpha / (2**bit - 1), 2**bit))
    return [midtread, midrise]


def assert_matches(w: torch.Tensor, got: torch.Tensor, candidates: list[Candidate], *, call: str,
                   tol: float | None = None) -> None:
    """``got`` equals one candidate's output on every element (modulo ties), else a message
    naming the worst element of the first candidate (the course formula), what it should be, and
    how many elements differ."""
    tol = value_tol(w) if tol is None else tol
    w64, g64 = _np(w), _np(got)
    for cand in candidates:
        if not cand.mismatches(w64, g64, tol).any():
            return
    cand = candidates[0]
    bad = cand.mismatches(w64, g64, tol)
    err = np.where(bad, np.abs(g64 - cand.expected), -1.0)
    idx = np.unravel_index(int(np.argmax(np.nan_to_num(err, nan=np.inf))), err.shape)
    where = "" if w64.ndim == 0 else f"[{', '.join(str(int(i)) for i in idx)}]"
    want, have = cand.expected[idx], g64[idx]
    if abs(have - want) < 1e-3 * max(cand.grid.delta, tol):
        # Right level, wrong precision: show enough digits to see it.
        dtype = str(w.dtype).removeprefix("torch.")
        detail = (f"got {have:.12g}, off by {abs(have - want):.2g} where {dtype} arithmetic is good to "
                  f"{tol:.2g} (was it computed in lower precision?)")
    else:
        detail = f"got {have:.6g}"
    also = [c.name for c in candidates[1:]]
    raise AssertionError(
        f"{call} with {describe(w)}: w{where} = {w64[idx]:.6g} should become {want:.6g} ({cand.name}"
        + (f"; also accepted: {'; '.join(also)}" if also else "")
        + f"), {detail}; {int(bad.sum())} of {bad.size} values differ"
    )


def refuse_trivial_forward(w: torch.Tensor, out: SteCall, candidates: list[Candidate]) -> None:
    """Fail a property test of the STE forward on a trivial answer (issue 14): all zeros, ``w``
    itself, or one value everywhere satisfy "at most 2^bit levels", "evenly spaced", "idempotent",
    "odd", "zeros stay zero"... and must earn none of them."""
    refuse_trivial(out.forward, [w], [c.expected for c in candidates], value_tol(w), f"{out.call} with {describe(w)}")


def distinct_levels(values: np.ndarray, tol: float) -> np.ndarray:
    """The sorted distinct values, merging values closer than ``tol`` (float noise)."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if v.size == 0:
        return v
    keep = np.concatenate([[True], np.diff(v) > tol])
    return v[keep]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


# ----------------------------------------------------------------------------- inputs


def dense_tensor(lo: float, hi: float, bit: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    """``8 * 2^bit`` weights spread over [lo, hi] (both included), shuffled, shape (2, n/2).

    Eight inputs per level of any grid with at most 2^(bit+1) levels on [lo, hi]: every level a
    quantizer has there is hit, so counting distinct outputs counts its levels.
    """
    n = 8 * 2**bit
    inner = lo + (hi - lo) * (np.arange(n - 2) + 0.5) / (n - 2)
    values = np.concatenate([[lo, hi], inner])
    values = values[np.random.default_rng(seed).permutation(n)]
    return torch.tensor(values.reshape(2, n // 2), dtype=dtype)


@st.composite
def weight_tensors(draw, *, zeros: bool = True, both_signs: bool = False, min_dims: int = 1,
                   dtype=torch.float32) -> torch.Tensor:
    """A weight tensor of up to 64 elements with ``max(w) > min(w)``.

    Values lie in [lo, hi] times a scale in {1e-3, 1, 50}; lo and hi are drawn so that
    ``hi - lo >= max(|lo|, |hi|) / 8`` (see ``TIE``) and both occur. ``both_signs`` forces
    lo < 0 < hi; otherwise all weights may share one sign. ``zeros`` plants pruned weights
    anywhere but at the two extremes.
    """
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=4, min_side=1, max_side=5)
                 .filter(lambda s: 2 <= int(np.prod(s)) <= 64 and (min_dims < 2 or min(s[-1], s[-2]) >= 2)))
    n = int(np.prod(shape))
    if both_signs:
        lo = draw(st.floats(-1.0, -0.25))
        hi = draw(st.floats(0.25, 1.0))
    else:
        lo = draw(st.floats(-1.0, 0.75).filter(lambda v: abs(v) >= 0.05))
        hi = lo + draw(st.floats(0.25, 1.25))
        if abs(hi) < 0.05:  # keep the extremes clear of zero: they must stay nonzero
            hi = 0.05
    u = draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0, allow_subnormal=False)))
    values = lo + (hi - lo) * u
    i_lo = draw(st.integers(0, n - 1))
    i_hi = draw(st.integers(0, n - 1).filter(lambda i: i != i_lo))
    values[i_lo], values[i_hi] = lo, hi
    if zeros:
        pruned = draw(hnp.arrays(np.bool_, n))
        pruned[[i_lo, i_hi]] = False
        values[pruned] = 0.0
    scale = draw(st.sampled_from([1e-3, 1.0, 50.0]))
    return torch.tensor((values * scale).reshape(shape), dtype=dtype)


# ----------------------------------------------------------------------------- fixture data


def pretrained_weight(name: str) -> torch.Tensor:
    """A weight of the fixture's pretrained ResNet-20 (a copy)."""
    return refcache.pretrained_weight(name)


pretrained_state = refcache.pretrained_state
fixture_test_split = refcache.fixture_test_split

