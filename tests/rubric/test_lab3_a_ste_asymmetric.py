"""Lab 3 (a): the STE, asymmetric. Forward: with mask = (w != 0), alpha = max(w) - min(w),
beta = min(w), step = 2^bit - 1, R = round((w - beta) / alpha * step) / step: wq = (R * alpha + beta) * mask
(the handout's formula, as FP_layers.py states it).
Backward: the incoming gradient passes to w unchanged; None for bit and symmetric.

Accepted (DESIGN section 3): min/max over the nonzero weights only, a mask of any dtype,
floor(x + 0.5) for round, the older-term forward(ctx, w, bit). Every test calls the student's
STE only; the accuracy test's model is the given ResNet-20 with the given FP layers around it.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from lab3_support import (
    TIE,
    assert_matches,
    asymmetric_candidates,
    asymmetric_grid,
    call_ste,
    dense_tensor,
    describe,
    distinct_levels,
    pretrained_state,
    pretrained_weight,
    refuse_trivial_forward,
    value_tol,
    weight_tensors,
)
from rubric_support import magnitude_pruned

from grader import refcache
from grader.errors import BadReturn, GraderError
from reference.config import load

rubric = pytest.mark.rubric
CFG = load()

BITS = st.integers(1, 8)
WEIGHTS = weight_tensors()  # either sign or both, with pruned zeros
BOTH_SIGNS = weight_tensors(both_signs=True)
WEIGHTS_F64 = weight_tensors(dtype=torch.float64)
MATRICES = weight_tensors(min_dims=2)
# A span [lo, hi] for the dense level-counting inputs, (hi - lo) >= max(|lo|, |hi|) / 8 as in WEIGHTS.
SPANS = st.tuples(st.floats(-1.0, 0.7), st.floats(0.3, 1.5)).map(lambda t: (t[0], t[0] + t[1])).filter(
    lambda s: abs(s[0]) >= 0.05 and abs(s[1]) >= 0.05)
SEEDS = st.integers(0, 2**16)
LAYER = "body_op.0.conv1.0.conv.weight"  # a 16x16x3x3 convolution of the pretrained model
PRUNED_LAYER = "body_op.4.conv1.0.conv.weight"  # 32x32x3x3


def _gradient(w: torch.Tensor, seed: int) -> torch.Tensor:
    """An incoming gradient with values a quantizer would visibly change (not on any grid)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(w.shape, generator=gen, dtype=torch.float64).to(w.dtype) * 0.37


def _levels(w: torch.Tensor, out: torch.Tensor) -> np.ndarray:
    """The distinct quantized values of the nonzero weights (a zero input is masked, not quantized)."""
    return distinct_levels(out.to(torch.float64).numpy()[w.numpy() != 0], value_tol(w))


def _first_diff(a: torch.Tensor, b: torch.Tensor) -> str:
    """Where ``a`` (what came back) first differs from ``b`` (what was expected), for feedback."""
    if a.shape != b.shape:
        return f"expected shape {tuple(b.shape)}, got {tuple(a.shape)}"
    diff = (a.to(torch.float64) - b.to(torch.float64)).abs().nan_to_num(nan=float("inf"))
    if not bool((diff > 0).any()):
        return f"expected dtype {b.dtype}, got {a.dtype}"
    idx = tuple(int(i) for i in np.unravel_index(int(torch.argmax(diff)), tuple(diff.shape)))
    return f"at index {list(idx)}: expected {float(b[idx]):.9g}, got {float(a[idx]):.9g}"


# ----------------------------------------------------------------------------- forward: values


@rubric(item="lab3.a", weight=2.5, visibility="public")
def test_lab3a_matches_the_course_formula_on_a_pretrained_layer(submission):
    """STE.apply(w, bit) follows the course formula on a pretrained layer; bit=None gives w, bit=0 zeros."""
    w = pretrained_weight(LAYER)
    for bit in CFG.lab3.bits:
        # symmetric=None: STE.apply(w, bit) exactly, so the signature's default (asymmetric) applies
        out = call_ste(submission, w, bit, symmetric=None)
        assert_matches(w, out.forward, asymmetric_candidates(w, bit), call=out.call)
    # bit=None and bit=0 are given code in the template: checked here, together with the
    # student's own quantizer, so the untouched template earns nothing for them.
    w = pretrained_weight(LAYER)[:4]
    out = call_ste(submission, w, None)
    assert out.forward.dtype == w.dtype and torch.equal(out.forward, w), (
        f"{out.call}: bit=None must return w unchanged; {_first_diff(out.forward, w)}")
    out = call_ste(submission, w, 0)
    assert out.forward.dtype == w.dtype, f"{out.call}: returned dtype {out.forward.dtype}, expected {w.dtype}"
    assert bool((out.forward == 0).all()), (
        f"{out.call}: bit=0 must return zeros; {_first_diff(out.forward, torch.zeros_like(w))}")


@rubric(item="lab3.a", weight=2, visibility="hidden")
@given(w=WEIGHTS, bit=BITS)
def test_lab3a_matches_the_course_formula_on_generated_tensors(submission, w, bit):
    """STE.apply(w, bit) follows the course formula for any shape, sign, scale, sparsity and bit = 1..8."""
    out = call_ste(submission, w, bit)
    assert_matches(w, out.forward, asymmetric_candidates(w, bit), call=out.call)


@rubric(item="lab3.a", weight=1, visibility="public")
@pytest.mark.zero_mask
@given(w=WEIGHTS, bit=BITS)
def test_lab3a_pruned_weights_stay_zero(submission, w, bit):
    """Weights that are 0 (pruned) are still exactly 0 after quantization: multiply by the mask (w != 0)."""
    out = call_ste(submission, w, bit)
    refuse_trivial_forward(w, out, asymmetric_candidates(w, bit))
    zeros = (w == 0).numpy()
    leaked = zeros & (out.forward.to(torch.float64).numpy() != 0)
    if leaked.any():
        idx = tuple(int(i) for i in np.argwhere(leaked)[0])
        raise AssertionError(
            f"{out.call} with {describe(w)}: w{list(idx)} = 0 became {float(out.forward[idx]):.6g}; "
            f"{int(leaked.sum())} of {int(zeros.sum())} zeros did not stay 0")


@rubric(item="lab3.a", weight=1, visibility="public")
@pytest.mark.zero_mask
def test_lab3a_seventy_percent_pruned_layer_keeps_its_zeros(submission, hw4_config):
    """A 70%-pruned layer keeps every zero when quantized (Lab 3 (d)); its other weights quantize as usual."""
    layer = torch.nn.Conv2d(32, 32, 3, padding=1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(pretrained_weight(PRUNED_LAYER))
    magnitude_pruned(layer, hw4_config.lab2.q)  # torch prunes: no cascade from Lab 2
    w = layer.weight.detach().clone()
    zeros = w == 0
    for bit in hw4_config.lab3.pruned_bits:
        out = call_ste(submission, w, bit)
        kept = int((out.forward[zeros] == 0).sum())
        assert kept == int(zeros.sum()), (
            f"{out.call} on a {hw4_config.lab2.q:g}%-pruned 32x32x3x3 layer: only {kept} of "
            f"{int(zeros.sum())} zero weights are still 0")
        assert_matches(w, out.forward, asymmetric_candidates(w, bit), call=out.call)


# ----------------------------------------------------------------------------- forward: grid properties


@rubric(item="lab3.a", weight=1, visibility="public")
@given(span=SPANS, bit=BITS, seed=SEEDS)
def test_lab3a_uses_at_most_2_pow_bit_levels(submission, span, bit, seed):
    """bit bits give at most 2^bit distinct values: step = 2^bit - 1 gaps from min(w) to max(w)."""
    w = dense_tensor(*span, bit, seed)
    out = call_ste(submission, w, bit)
    refuse_trivial_forward(w, out, asymmetric_candidates(w, bit))
    levels = _levels(w, out.forward)
    assert len(levels) <= 2**bit, (
        f"{out.call} on {w.numel()} weights spread over [{span[0]:.4g}, {span[1]:.4g}] gave "
        f"{len(levels)} distinct values; {bit} bit(s) allow at most {2**bit} levels")


@rubric(item="lab3.a", weight=0.5, visibility="hidden")
@given(span=SPANS, bit=BITS, seed=SEEDS)
def test_lab3a_levels_are_uniformly_spaced(submission, span, bit, seed):
    """The quantization levels are evenly spaced: a linear quantizer, not a rounded nonlinear map."""
    w = dense_tensor(*span, bit, seed)
    out = call_ste(submission, w, bit)
    refuse_trivial_forward(w, out, asymmetric_candidates(w, bit))
    tol = value_tol(w)
    levels = _levels(w, out.forward)
    if len(levels) < 3:
        return  # two levels are always evenly spaced (bit = 1)
    gaps = np.diff(levels)
    even = (levels[-1] - levels[0]) / (len(levels) - 1)
    worst = int(np.argmax(np.abs(gaps - even)))
    assert abs(gaps[worst] - even) <= 2 * tol, (
        f"{out.call} on weights over [{span[0]:.4g}, {span[1]:.4g}]: the {len(levels)} levels are not "
        f"evenly spaced: gap {worst} is {gaps[worst]:.6g}, the even spacing is {even:.6g}")


@rubric(item="lab3.a", weight=1, visibility="hidden")
@given(w=WEIGHTS, bit=BITS)
def test_lab3a_rounds_each_weight_to_the_nearest_level(submission, w, bit):
    """Each weight moves at most half a level, (max(w) - min(w)) / (2^bit - 1) / 2: round, not floor."""
    out = call_ste(submission, w, bit)
    refuse_trivial_forward(w, out, asymmetric_candidates(w, bit))
    w64 = w.to(torch.float64).numpy()
    nonzero = w64 != 0
    # The full-range spacing bounds the nonzero-range variant's spacing too (its range is inside).
    delta = asymmetric_grid(w64, bit).delta
    moved = np.abs(w64 - out.forward.to(torch.float64).numpy())[nonzero]
    bound = delta * (0.5 + TIE) + value_tol(w)
    worst = int(np.argmax(moved))
    assert moved[worst] <= bound, (
        f"{out.call} with {describe(w)}: the weight {w64[nonzero][worst]:.6g} became "
        f"{out.forward.to(torch.float64).numpy()[nonzero][worst]:.6g}, {moved[worst]:.4g} away; "
        f"the nearest level is at most half a level ({delta / 2:.4g}) away")


@rubric(item="lab3.a", weight=0.5, visibility="hidden")
@given(w=BOTH_SIGNS, bit=BITS)
def test_lab3a_min_and_max_are_representable(submission, w, bit):
    """The smallest and the largest weight are levels: they come back unchanged."""
    out = call_ste(submission, w, bit)
    refuse_trivial_forward(w, out, asymmetric_candidates(w, bit))
    tol = value_tol(w)
    for name, idx in (("min(w)", torch.argmin(w)), ("max(w)", torch.argmax(w))):
        got, want = float(out.forward.flatten()[idx]), float(w.flatten()[idx])
        assert abs(got - want) <= tol, f"{out.call} with {describe(w)}: {name} = {want:.6g} became {got:.6g}"


@rubric(item="lab3.a", weight=0.5, visibility="hidden")
@given(w=WEIGHTS, bit=BITS)
def test_lab3a_quantizing_twice_changes_nothing(submission, w, bit):
    """Quantization is idempotent: STE.apply(STE.apply(w, bit), bit) equals STE.apply(w, bit)."""
    first = call_ste(submission, w, bit)
    refuse_trivial_forward(w, first, asymmetric_candidates(w, bit))
    once = first.forward
    twice = call_ste(submission, once, bit)
    diff = (twice.forward.to(torch.float64) - once.to(torch.float64)).abs()
    assert float(diff.max()) <= value_tol(w), (
        f"{twice.call} with {describe(w)}: quantizing the quantized weights moved a value by "
        f"{float(diff.max()):.4g} (levels must map to themselves)")


# ----------------------------------------------------------------------------- forward: API


@rubric(item="lab3.a", weight=0.5, visibility="hidden")
@given(w=WEIGHTS_F64, bit=BITS)
def test_lab3a_works_in_float64(submission, w, bit):
    """A float64 weight comes back float64 and float64-accurate: torch ops keep dtype and device."""
    out = call_ste(submission, w, bit)
    assert out.forward.dtype == torch.float64, (
        f"{out.call} with {describe(w)}: returned {str(out.forward.dtype).removeprefix('torch.')}; "
        "the result must keep the dtype of w")
    assert_matches(w, out.forward, asymmetric_candidates(w, bit), call=out.call)


@rubric(item="lab3.a", weight=0.5, visibility="hidden")
@given(w=MATRICES, bit=BITS)
def test_lab3a_works_on_non_contiguous_tensors(submission, w, bit):
    """A transposed (non-contiguous) weight is quantized like its contiguous copy, in its own shape."""
    out = call_ste(submission, w, bit, transpose=True)
    if out.contiguous:
        raise GraderError("the probe's transposed input was contiguous: this test checks nothing")
    wt = w.transpose(-1, -2)
    assert_matches(wt, out.forward, asymmetric_candidates(wt.contiguous(), bit),
                   call=f"{out.call} (w a transposed view)")


@rubric(item="lab3.a", weight=0.5, visibility="hidden")
@given(w=WEIGHTS, bit=BITS)
def test_lab3a_leaves_w_unchanged(submission, w, bit):
    """STE.forward must not write into w: in-place ops would overwrite the layer's float weights."""
    out = call_ste(submission, w, bit)
    refuse_trivial_forward(w, out, asymmetric_candidates(w, bit))
    assert not out.modified_input, f"{out.call} with {describe(w)}: w itself was modified in place"


# ----------------------------------------------------------------------------- backward


@rubric(item="lab3.a", weight=1, visibility="public")
def test_lab3a_backward_passes_the_gradient_through_unchanged(submission):
    """Through autograd, w.grad equals the incoming gradient exactly: the straight-through estimator."""
    w = pretrained_weight(LAYER)[:2]
    g = _gradient(w, 0)
    out = call_ste(submission, w, 4, grad=g)
    grad = out.autograd_grad()
    assert grad.shape == g.shape and torch.equal(grad, g), (
        f"{out.call}.backward(g): w.grad must equal g; "
        + (_first_diff(grad, g) if grad.shape == g.shape else f"w.grad has shape {tuple(grad.shape)}"))


@rubric(item="lab3.a", weight=1, visibility="hidden")
@given(w=WEIGHTS, bit=BITS, seed=SEEDS)
def test_lab3a_backward_passes_the_gradient_through_unchanged_on_generated_tensors(submission, w, bit, seed):
    """w.grad equals the incoming gradient for any shape, bit and sparsity: never quantized or masked."""
    g = _gradient(w, seed)
    out = call_ste(submission, w, bit, grad=g)
    grad = out.autograd_grad()
    assert grad.shape == g.shape and torch.equal(grad, g), (
        f"{out.call}.backward(g) with {describe(w)}: w.grad must equal g; "
        + (_first_diff(grad, g) if grad.shape == g.shape else f"w.grad has shape {tuple(grad.shape)}"))


@rubric(item="lab3.a", weight=0.5, visibility="public")
def test_lab3a_backward_returns_one_gradient_per_input_none_for_bit_and_symmetric(submission):
    """STE.backward(ctx, g) returns g for w and None for bit and symmetric: `return g, None, None`."""
    w = pretrained_weight(LAYER)[:2]
    g = _gradient(w, 1)
    out = call_ste(submission, w, 3, grad=g)
    raw = out.backward or []
    names = ["w", "bit", "symmetric"][: out.inputs]
    assert len(raw) >= out.inputs, (
        f"STE.backward returned {len(raw)} value(s) for the {out.inputs} inputs of forward "
        f"({', '.join(names)}): return one per input, `return g, None" + ", None" * (out.inputs - 2) + "`")
    first = raw[0]
    is_g = isinstance(first, torch.Tensor) and first.shape == g.shape
    assert is_g and torch.equal(first, g), (
        "STE.backward must return the incoming gradient g itself as the gradient of w; got "
        + (f"a tensor that differs {_first_diff(first, g)}" if is_g else repr(first)[:80]))
    extra = [i for i, r in enumerate(raw[1:], start=1) if r is not None]
    if extra:
        which = names[extra[0]] if extra[0] < len(names) else "an extra input"
        raise AssertionError(f"STE.backward returned {raw[extra[0]]!r:.60} for {which}: bit and symmetric "
                             "are not tensors, their gradient is None")


# ----------------------------------------------------------------------------- the quantized model


@rubric(item="lab3.a", weight=0.5, visibility="hidden")
def test_lab3a_quantized_resnet20_has_the_reference_accuracy(submission, hw4_config):
    """ResNet-20 quantized by your STE at 6..2 bits is as accurate on the test split as with the course's."""
    x, y = refcache.fixture_test_split()
    x, y = x[:refcache.ACCURACY_IMAGES], y[:refcache.ACCURACY_IMAGES]
    # Two images: float summation order may flip a prediction whose top two logits tie.
    slack = 2 / len(x)
    for bits in hw4_config.lab3.bits:
        body = submission.probe("accuracy", "STE", fp="student_ste", init={"num_layers": 20, "Nbits": bits},
                                state=pretrained_state(), x=x, y=y, timeout=120)
        got = body.get("accuracy")
        if not isinstance(got, int | float):
            raise BadReturn(f"the accuracy of ResNet-20 with Nbits={bits} came back as {got!r:.40}",
                            function="STE")
        want = refcache.quantized_accuracy(bits)
        assert abs(got - want) <= slack, (
            f"ResNet-20 with Nbits={bits}: test accuracy {got:.3f} with your STE, {want:.3f} with the "
            "course's (the STE's levels differ)")
