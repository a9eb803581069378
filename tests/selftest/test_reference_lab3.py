"""The Lab 3 reference (``reference.lab3``) and its accepted variants (``reference.lab3_variants``)
against independent computations: torch's fake quantizer, a float64 NumPy recomputation of the
formulas, ``torch.autograd`` and plain ``nn.Linear``/``nn.Conv2d``.

Rounding ties: float32 and float64 arithmetic (and torch's fake quantizer, which multiplies by
1/scale) may pick different neighbours for an input within ``TIE`` of a rounding boundary, so
such elements may differ by exactly one level.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reference import lab3_variants as variants
from reference.lab3 import STE, FP_Conv, FP_Linear

TIE = 1e-3  # in level units: float32 position error here is below 2^-23 * 8 * 255 * a few ops
BITS = st.integers(1, 8)
SYM_BITS = st.integers(2, 8)
# Values in [-4, 4] with a spread of at least 1/8 of their magnitude (see TIE), float32; max|w|
# >= 1e-3 keeps the fake quantizer's scale max|w| / step a normal float32.
VALUES = hnp.arrays(np.float32, st.integers(2, 48),
                    elements=st.floats(-4, 4, width=32, allow_subnormal=False)).filter(
    lambda a: a.max() - a.min() >= np.abs(a).max() / 8 and np.abs(a).max() >= 1e-3)


def _levels_np(w: np.ndarray, lo: float, delta: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest level of each ``w`` on ``lo + k delta`` (float64), and whether it is near a tie."""
    t = np.clip((w - lo) / delta, 0, count - 1)
    near = np.abs(t - np.floor(t) - 0.5) < TIE
    return lo + np.round(t) * delta, near


def _assert_same_modulo_ties(got: np.ndarray, want: np.ndarray, near: np.ndarray, delta: float, tol: float):
    diff = np.abs(got - want)
    ok = (diff <= tol) | (near & (np.abs(diff - delta) <= tol))
    assert ok.all(), f"differs at {np.flatnonzero(~ok)[:5]}: got {got[~ok][:5]}, want {want[~ok][:5]}"


# ----------------------------------------------------------------------------- symmetric


@given(values=VALUES, bit=SYM_BITS)
def test_symmetric_ste_equals_torch_fake_quantize(values, bit):
    w = torch.from_numpy(values)
    step = 2 ** (bit - 1) - 1
    alpha = float(w.abs().max())
    oracle = torch.fake_quantize_per_tensor_affine(w, alpha / step, 0, -step, step)
    got = STE.apply(w, bit, True)
    _, near = _levels_np(values.astype(np.float64), -alpha, alpha / step, 2 * step + 1)
    _assert_same_modulo_ties(got.double().numpy(), oracle.double().numpy(), near, alpha / step, 1e-5 * alpha)


@given(magnitude=st.floats(0.01, 100), bit=SYM_BITS)
def test_symmetric_ste_has_2_pow_bit_minus_1_levels_symmetric_about_zero(magnitude, bit):
    w = torch.linspace(-magnitude, magnitude, 16 * 2**bit + 3, dtype=torch.float64)
    levels = torch.unique(STE.apply(w, bit, True)).double().numpy()
    assert len(levels) == 2**bit - 1
    np.testing.assert_allclose(levels, -levels[::-1], rtol=0, atol=1e-12 * magnitude)
    np.testing.assert_allclose(np.diff(levels), magnitude / (2 ** (bit - 1) - 1), rtol=1e-9)


def test_symmetric_ste_refuses_one_bit_and_keeps_an_all_zero_tensor():
    with pytest.raises(ValueError, match="bit >= 2"):
        STE.apply(torch.tensor([-1.0, 1.0]), 1, True)
    zeros = torch.zeros(3)
    assert torch.equal(STE.apply(zeros, 4, True), zeros)


# ----------------------------------------------------------------------------- asymmetric


@given(values=VALUES, bit=BITS)
def test_asymmetric_ste_equals_the_formula_in_float64(values, bit):
    w64 = values.astype(np.float64)
    lo, hi = w64.min(), w64.max()
    step = 2**bit - 1
    want, near = _levels_np(w64, lo, (hi - lo) / step, step + 1)
    want = want * (w64 != 0)
    got = STE.apply(torch.from_numpy(values), bit).double().numpy()
    _assert_same_modulo_ties(got, want, near, (hi - lo) / step, 1e-5 * np.abs(w64).max())


# The extremes stay clear of 0: a zero extreme would be masked, not a level.
SPANS = st.tuples(st.floats(-2, 1), st.floats(0.5, 3)).filter(
    lambda s: abs(s[0]) > 0.01 and abs(s[0] + s[1]) > 0.01)


@given(span=SPANS, bit=BITS)
def test_asymmetric_ste_has_2_pow_bit_uniform_levels_from_min_to_max(span, bit):
    lo, width = span
    w = torch.linspace(lo, lo + width, 16 * 2**bit + 3, dtype=torch.float64)
    w = w[w != 0]  # a zero would be masked, not quantized
    levels = torch.unique(STE.apply(w, bit)).numpy()
    assert len(levels) == 2**bit
    assert levels[0] == pytest.approx(lo, abs=1e-12) and levels[-1] == pytest.approx(lo + width, abs=1e-12)
    np.testing.assert_allclose(np.diff(levels), width / (2**bit - 1), rtol=1e-9)


@given(values=VALUES, bit=BITS)
def test_asymmetric_ste_keeps_zeros_shape_and_dtype(values, bit):
    values = values.copy()
    values[::3] = 0.0
    w = torch.from_numpy(values).double().reshape(-1, 1)
    if w.max() == w.min():
        return
    out = STE.apply(w, bit)
    assert out.shape == w.shape and out.dtype == torch.float64
    assert bool((out[w == 0] == 0).all())


def test_ste_bit_none_is_identity_and_bit_zero_is_zero():
    w = torch.tensor([[-0.5, 0.0, 0.25]])
    assert STE.apply(w, None) is w or torch.equal(STE.apply(w, None), w)
    assert torch.equal(STE.apply(w, 0), torch.zeros_like(w))
    constant = torch.full((4,), 0.3)  # alpha = 0: exactly representable, no division by zero
    assert torch.equal(STE.apply(constant, 3), constant)


def test_module_docstring_examples_hold():
    w = torch.tensor([-1.0, -0.2, 0.0, 0.3, 1.0])
    assert STE.apply(w, 2).tolist() == pytest.approx([-1.0, -1 / 3, 0.0, 1 / 3, 1.0])
    assert STE.apply(w, 2, True).tolist() == [-1.0, 0.0, 0.0, 0.0, 1.0]


# ----------------------------------------------------------------------------- backward


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("bit", [None, 0, 2, 5, 8])
def test_ste_gradient_passes_straight_through(bit, symmetric):
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(4, 5, generator=gen, requires_grad=True)
    g = torch.randn(4, 5, generator=gen)
    STE.apply(w, bit, symmetric).backward(g)
    assert torch.equal(w.grad, g)
    jac = torch.autograd.functional.jacobian(lambda x: STE.apply(x, bit, symmetric), w.detach())
    assert torch.equal(jac.reshape(20, 20), torch.eye(20))


def test_ste_backward_returns_none_for_bit_and_symmetric():
    g = torch.ones(3)
    assert STE.backward(None, g) == (g, None, None)


def test_ste_gradcheck_in_float64():
    # Quantizing is piecewise constant, so finite differences see 0 where the STE claims 1: the
    # straight-through pair is consistent (and gradcheck applies) where forward is the identity.
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: STE.apply(x, None, False), (w,))
    assert torch.autograd.gradgradcheck(lambda x: STE.apply(x, None, False), (w,))


# ----------------------------------------------------------------------------- FP layers


def test_fp_linear_without_nbits_is_nn_linear():
    torch.manual_seed(0)
    fp = FP_Linear(7, 3)
    plain = nn.Linear(7, 3)
    plain.load_state_dict(fp.linear.state_dict())
    x = torch.randn(5, 7)
    assert torch.equal(fp(x), plain(x))
    fp(x).sum().backward()
    plain(x).sum().backward()
    assert torch.equal(fp.linear.weight.grad, plain.weight.grad)


@pytest.mark.parametrize(("kernel", "stride", "padding", "bias"),
                         [(3, 1, 1, False), (1, 2, 0, True), (3, 2, 1, True)])
def test_fp_conv_without_nbits_is_nn_conv2d(kernel, stride, padding, bias):
    torch.manual_seed(1)
    fp = FP_Conv(4, 6, kernel, stride=stride, padding=padding, bias=bias)
    plain = nn.Conv2d(4, 6, kernel, stride, padding, bias=bias)
    plain.load_state_dict(fp.conv.state_dict())
    x = torch.randn(2, 4, 9, 9)
    assert torch.equal(fp(x), plain(x))


def test_fp_layers_quantize_their_weight_with_nbits():
    torch.manual_seed(2)
    fp = FP_Linear(6, 4, Nbits=2)
    x = torch.eye(6)
    wq = STE.apply(fp.linear.weight.detach(), 2, False)
    assert torch.allclose(fp(x), x @ wq.T + fp.linear.bias, atol=1e-6)


# ----------------------------------------------------------------------------- variants


@given(values=VALUES, bit=BITS)
def test_nonzero_range_variant_equals_reference_when_zeros_lie_inside_the_range(values, bit):
    w = torch.from_numpy(values)
    w = torch.where(torch.arange(len(w)) % 4 == 1, torch.zeros_like(w), w)
    nonzero = w[w != 0]
    if nonzero.numel() < 2 or nonzero.max() == nonzero.min():
        return
    if nonzero.min() != w.min() or nonzero.max() != w.max():
        return  # a zero is an extreme: the variant's grid differs by design (next test)
    assert torch.allclose(variants.asymmetric_nonzero_range(w, bit), STE.apply(w, bit), rtol=0, atol=1e-6 * 4)


@given(lo=st.floats(0.1, 2), width=st.floats(0.5, 3), bit=BITS)
def test_nonzero_range_variant_spans_the_nonzero_weights(lo, width, bit):
    w = torch.cat([torch.zeros(5, dtype=torch.float64),
                   torch.linspace(lo, lo + width, 16 * 2**bit + 3, dtype=torch.float64)])
    out = variants.asymmetric_nonzero_range(w, bit)
    assert bool((out[:5] == 0).all()) and out.dtype == torch.float64
    levels = torch.unique(out[5:]).numpy()
    assert len(levels) == 2**bit
    assert levels[0] == pytest.approx(lo, abs=1e-12) and levels[-1] == pytest.approx(lo + width, abs=1e-12)
    np.testing.assert_allclose(np.diff(levels), width / (2**bit - 1), rtol=1e-9)


@given(magnitude=st.floats(0.01, 100), bit=BITS)
def test_midrise_variant_has_2_pow_bit_symmetric_levels_without_zero(magnitude, bit):
    w = torch.linspace(-magnitude, magnitude, 16 * 2**bit + 2, dtype=torch.float64)
    levels = torch.unique(variants.symmetric_midrise(w, bit)).numpy()
    assert len(levels) == 2**bit and not np.any(np.abs(levels) < 1e-12 * magnitude)
    np.testing.assert_allclose(levels, -levels[::-1], rtol=0, atol=1e-12 * magnitude)
    assert levels[-1] == pytest.approx(magnitude, rel=1e-12)
    np.testing.assert_allclose(np.diff(levels), 2 * magnitude / (2**bit - 1), rtol=1e-9)


@given(values=VALUES, bit=BITS)
def test_midrise_variant_is_the_asymmetric_quantizer_on_plus_minus_max_abs(values, bit):
    # With -alpha and +alpha among the weights, min/max quantization spans exactly [-alpha, alpha].
    alpha = np.float32(np.abs(values).max())
    w = torch.from_numpy(np.concatenate([values, [-alpha, alpha]]).astype(np.float32))
    midrise, asymmetric = variants.symmetric_midrise(w, bit), STE.apply(w, bit)
    assert torch.allclose(midrise, asymmetric, rtol=0, atol=1e-6 * float(alpha))


def test_variants_keep_masked_zeros_and_refuse_bad_bits():
    w = torch.tensor([0.0, -0.7, 0.0, 0.4])
    for quantize in (variants.asymmetric_nonzero_range, variants.symmetric_midrise):
        assert quantize(w, 3)[[0, 2]].tolist() == [0.0, 0.0]
        assert torch.equal(quantize(torch.zeros(3), 3), torch.zeros(3))
        with pytest.raises(ValueError, match="bit must be >= 1"):
            quantize(w, 0)
        with pytest.raises(TypeError, match="bit must be an int"):
            quantize(w, 2.0)
