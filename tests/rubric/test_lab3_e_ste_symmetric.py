"""Lab 3 (e): the STE, symmetric. With alpha = max|w| and step = 2^(bit-1) - 1:
wq = round(w / alpha * step) / step * alpha * mask, mask = (w != 0).

Accepted (DESIGN section 3): levels without a zero level (mid-rise), as long as the level set is
symmetric about zero, uniformly spaced, has at most 2^bit levels and spans +-max|w|; floor(x + 0.5)
for round. The backward pass and the mask are graded once, in Lab 3 (a); these tests check the
forward pass with symmetric=True. An older-term STE.forward(ctx, w, bit) has no symmetric mode:
every test here then fails with that message.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from lab3_support import (
    TIE,
    assert_matches,
    call_ste,
    dense_tensor,
    describe,
    distinct_levels,
    pretrained_weight,
    refuse_trivial_forward,
    symmetric_candidates,
    value_tol,
    weight_tensors,
)

from reference.lab2 import prune_by_percentage

rubric = pytest.mark.rubric

# One bit leaves no level on either side of zero in the course formula (step = 0): bits 2..8.
BITS = st.integers(2, 8)
WEIGHTS = weight_tensors()
WEIGHTS_NO_ZEROS = weight_tensors(zeros=False)
WEIGHTS_F64 = weight_tensors(dtype=torch.float64)
# max|w| of the dense inputs; the inputs fill [-m, m] so that every level of the grid is hit.
MAGNITUDES = st.floats(0.01, 50.0)
SEEDS = st.integers(0, 2**16)
LAYER = "body_op.0.conv2.0.conv.weight"  # a 16x16x3x3 convolution of the pretrained model
PRUNED_LAYER = "body_op.4.conv2.0.conv.weight"  # 32x32x3x3


def _levels(submission, magnitude: float, bit: int, seed: int):
    """The student's symmetric levels, read off dense inputs over [-magnitude, magnitude]."""
    w = dense_tensor(-magnitude, magnitude, bit, seed)
    out = call_ste(submission, w, bit, symmetric=True)
    refuse_trivial_forward(w, out, symmetric_candidates(w, bit))
    w64, q64 = w.to(torch.float64).numpy(), out.forward.to(torch.float64).numpy()
    # Inputs that are exactly 0 are masked, not quantized: they say nothing about the levels.
    return w, out, distinct_levels(q64[w64 != 0], value_tol(w))


# ----------------------------------------------------------------------------- values


@rubric(item="lab3.e", weight=1, visibility="public")
def test_lab3e_matches_the_course_formula_on_a_pretrained_layer(submission, hw4_config):
    """STE.apply(w, bit, True) quantizes a pretrained ResNet-20 layer symmetrically as the course does."""
    w = pretrained_weight(LAYER)
    for bit in hw4_config.lab3.symmetric_bits:
        out = call_ste(submission, w, bit, symmetric=True)
        assert_matches(w, out.forward, symmetric_candidates(w, bit), call=out.call)


@rubric(item="lab3.e", weight=1, visibility="hidden")
@given(w=WEIGHTS, bit=BITS)
def test_lab3e_matches_torch_fake_quantize_on_generated_tensors(submission, w, bit):
    """Symmetric mode equals torch.fake_quantize_per_tensor_affine(w, max|w| / (2^(bit-1) - 1), 0, ...)."""
    out = call_ste(submission, w, bit, symmetric=True)
    assert_matches(w, out.forward, symmetric_candidates(w, bit, oracle=True), call=out.call)


@rubric(item="lab3.e", weight=0.5, visibility="hidden")
@given(w=WEIGHTS_F64, bit=BITS)
def test_lab3e_works_in_float64(submission, w, bit):
    """A float64 weight comes back float64 and quantized with float64 accuracy."""
    out = call_ste(submission, w, bit, symmetric=True)
    assert out.forward.dtype == torch.float64, (
        f"{out.call} with {describe(w)}: returned {str(out.forward.dtype).removeprefix('torch.')}; "
        "the result must keep the dtype of w")
    assert_matches(w, out.forward, symmetric_candidates(w, bit), call=out.call)


@rubric(item="lab3.e", weight=0.5, visibility="hidden")
def test_lab3e_seventy_percent_pruned_layer_keeps_its_zeros(submission, hw4_config):
    """A 70%-pruned layer keeps every zero under symmetric quantization too."""
    layer = torch.nn.Conv2d(32, 32, 3, padding=1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(pretrained_weight(PRUNED_LAYER))
    prune_by_percentage(layer, q=hw4_config.lab2.q)  # the reference prunes: no cascade from Lab 2
    w = layer.weight.detach().clone()
    zeros = w == 0
    for bit in hw4_config.lab3.symmetric_bits:
        out = call_ste(submission, w, bit, symmetric=True)
        kept = int((out.forward[zeros] == 0).sum())
        assert kept == int(zeros.sum()), (
            f"{out.call} on a {hw4_config.lab2.q:g}%-pruned layer: only {kept} of {int(zeros.sum())} "
            "zero weights are still 0")
        assert_matches(w, out.forward, symmetric_candidates(w, bit), call=out.call)


# ----------------------------------------------------------------------------- the level set


@rubric(item="lab3.e", weight=1, visibility="public")
@given(magnitude=MAGNITUDES, bit=BITS, seed=SEEDS)
def test_lab3e_levels_are_symmetric_about_zero(submission, magnitude, bit, seed):
    """The symmetric levels come in pairs +-l: for every level l, -l is a level too."""
    w, out, levels = _levels(submission, magnitude, bit, seed)
    mirrored = -levels[::-1]
    tol = value_tol(w)
    if len(levels) != len(mirrored) or not np.allclose(levels, mirrored, rtol=0, atol=2 * tol):
        lonely = [lv for lv in levels if np.min(np.abs(levels + lv)) > 2 * tol]
        example = f"; {lonely[0]:.6g} is a level but {-lonely[0]:.6g} is not" if lonely else ""
        raise AssertionError(f"{out.call} on weights filling [{-magnitude:.4g}, {magnitude:.4g}]: the "
                             f"levels are not symmetric about 0{example}")


@rubric(item="lab3.e", weight=0.5, visibility="public")
@given(magnitude=MAGNITUDES, bit=BITS, seed=SEEDS)
def test_lab3e_uses_at_most_2_pow_bit_levels(submission, magnitude, bit, seed):
    """Symmetric mode uses at most 2^bit levels (the course: 2^bit - 1, step = 2^(bit-1) - 1 per side)."""
    _, out, levels = _levels(submission, magnitude, bit, seed)
    assert len(levels) <= 2**bit, (
        f"{out.call} on weights filling [{-magnitude:.4g}, {magnitude:.4g}]: {len(levels)} distinct "
        f"values; {bit} bits allow at most {2**bit} levels")


@rubric(item="lab3.e", weight=0.5, visibility="hidden")
@given(magnitude=MAGNITUDES, bit=BITS, seed=SEEDS)
def test_lab3e_levels_are_uniformly_spaced(submission, magnitude, bit, seed):
    """The symmetric levels are evenly spaced from -max|w| to max|w|."""
    w, out, levels = _levels(submission, magnitude, bit, seed)
    tol = value_tol(w)
    if len(levels) < 3:
        return  # two levels are always evenly spaced
    gaps = np.diff(levels)
    even = (levels[-1] - levels[0]) / (len(levels) - 1)
    worst = int(np.argmax(np.abs(gaps - even)))
    assert abs(gaps[worst] - even) <= 2 * tol, (
        f"{out.call} on weights filling [{-magnitude:.4g}, {magnitude:.4g}]: the {len(levels)} levels are "
        f"not evenly spaced: gap {worst} is {gaps[worst]:.6g}, the even spacing is {even:.6g}")


@rubric(item="lab3.e", weight=0.5, visibility="hidden")
@given(magnitude=MAGNITUDES, bit=BITS, seed=SEEDS)
def test_lab3e_rounds_each_weight_to_the_nearest_level(submission, magnitude, bit, seed):
    """Each weight goes to the nearest of the symmetric levels (round, not truncate or floor)."""
    w, out, levels = _levels(submission, magnitude, bit, seed)
    w64, q64 = w.to(torch.float64).numpy().ravel(), out.forward.to(torch.float64).numpy().ravel()
    keep = w64 != 0
    w64, q64 = w64[keep], q64[keep]
    nearest = np.abs(w64[:, None] - levels[None, :]).min(axis=1)
    spacing = np.min(np.diff(levels)) if len(levels) > 1 else 0.0
    excess = np.abs(w64 - q64) - nearest
    worst = int(np.argmax(excess))
    assert excess[worst] <= TIE * spacing + value_tol(w), (
        f"{out.call} on weights filling [{-magnitude:.4g}, {magnitude:.4g}]: {w64[worst]:.6g} became "
        f"{q64[worst]:.6g}, but the level {levels[np.argmin(np.abs(levels - w64[worst]))]:.6g} is nearer")


@rubric(item="lab3.e", weight=0.5, visibility="hidden")
@given(w=WEIGHTS, bit=BITS)
def test_lab3e_levels_span_plus_minus_max_abs_w(submission, w, bit):
    """alpha = max|w|: the weight of largest magnitude comes back unchanged, and no weight grows beyond it."""
    out = call_ste(submission, w, bit, symmetric=True)
    refuse_trivial_forward(w, out, symmetric_candidates(w, bit))
    tol = value_tol(w)
    flat_w, flat_q = w.flatten().to(torch.float64), out.forward.flatten().to(torch.float64)
    idx = int(torch.argmax(flat_w.abs()))
    assert abs(float(flat_q[idx] - flat_w[idx])) <= tol, (
        f"{out.call} with {describe(w)}: the largest-magnitude weight {float(flat_w[idx]):.6g} became "
        f"{float(flat_q[idx]):.6g}; with alpha = max|w| it is a level")
    top = float(flat_q.abs().max())
    assert top <= float(flat_w.abs().max()) + tol, (
        f"{out.call} with {describe(w)}: a quantized weight reached {top:.6g}, beyond max|w| = "
        f"{float(flat_w.abs().max()):.6g}")


@rubric(item="lab3.e", weight=0.5, visibility="hidden")
@given(w=WEIGHTS_NO_ZEROS, bit=BITS)
def test_lab3e_is_an_odd_function(submission, w, bit):
    """Negating the weights negates the result: STE.apply(-w, bit, True) = -STE.apply(w, bit, True)."""
    pos = call_ste(submission, w, bit, symmetric=True)
    refuse_trivial_forward(w, pos, symmetric_candidates(w, bit))
    neg = call_ste(submission, -w, bit, symmetric=True)
    w64 = w.to(torch.float64).numpy()
    alpha = float(np.abs(w64).max())
    # Exact ties may go either way (floor(x + 0.5) is not odd there): skip inputs near one, on
    # both the mid-tread and the mid-rise boundaries.
    near = np.zeros(w64.shape, bool)
    # (spacing, shift): levels at shift + k * spacing - i.e. mid-tread (0 is a level), mid-rise.
    for spacing, shift in ((alpha / (2 ** (bit - 1) - 1), 0.0), (2 * alpha / (2**bit - 1), alpha)):
        t = (w64 + shift) / spacing
        near |= np.abs(t - np.floor(t) - 0.5) < TIE
    diff = np.abs(pos.forward.to(torch.float64).numpy() + neg.forward.to(torch.float64).numpy())
    diff[near] = 0.0
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    assert diff[worst] <= 2 * value_tol(w), (
        f"{pos.call} with {describe(w)}: w = {w64[worst]:.6g} became {float(pos.forward[worst]):.6g} but "
        f"-w became {float(neg.forward[worst]):.6g}; a symmetric quantizer is odd")
