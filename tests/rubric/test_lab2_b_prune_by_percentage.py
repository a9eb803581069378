"""Lab 2 (b): prune_by_percentage(layer, q) zeroes the q% smallest-magnitude weights of one layer.

Rule (DESIGN section 3): t = numpy.percentile(|w|, q); keep |w| >= t (or > t); in place; the bias
is untouched. Every threshold that is right within one element (numpy or torch percentile,
``kthvalue``, ``quantile``, sorting) and every mask type (bool, int, float) passes; the checks
below are properties every such answer has, plus a comparison with the reference on the fixture
model's real layers.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lab2_support import (
    ONE_FAILURE,
    LayerCase,
    assert_kept_unchanged,
    assert_prunes_q_percent,
    assert_prunes_smallest,
    build_layer,
    fixture_model,
    layer_cases,
    prunable_layers,
    prune_call,
    pruned_positions,
    refuse_trivial_pruning,
)

import reference.lab2 as ref

rubric = pytest.mark.rubric

# Percents where one element is at least 1 (layers have >= 20 weights): the term's schedule values
# and anything in between. q = 0, q = 100 and q below one element are graded on their own below.
PERCENTS = st.one_of(st.sampled_from([7.0 * i for i in range(1, 11)]),
                     st.floats(5.0, 95.0, allow_nan=False, allow_infinity=False))
LAYERS = layer_cases()
BIASED_LAYERS = layer_cases(bias=True)
TIED_LAYERS = layer_cases(ties=True)
EDGE_PERCENTS = st.sampled_from([0.0, 100.0, 0.5, 99.9])
# q >= 20 on >= 20 weights: every right answer zeroes at least 3 weights, so "nothing changed"
# can only mean the layer was not pruned in place.
BIG_PERCENTS = st.floats(20.0, 95.0, allow_nan=False, allow_infinity=False)


def _pruned(submission, case: LayerCase, q: float):
    """(weight before, weight after, bias before, bias after) of one call on a fresh layer."""
    layer = build_layer(case)
    w0 = layer.weight.detach().clone()
    b0 = None if layer.bias is None else layer.bias.detach().clone()
    submission.prune_by_percentage(layer, q=q)
    return w0, layer.weight.detach().clone(), b0, None if layer.bias is None else layer.bias.detach().clone()


@rubric(item="lab2.b", weight=2, visibility="public")
@ONE_FAILURE
@given(case=LAYERS, q=PERCENTS)
def test_lab2b_prunes_q_percent_of_each_layer(submission, case, q):
    """prune_by_percentage(layer, q) zeroes q% of the layer's weights (within one weight)."""
    w0, w1, _, _ = _pruned(submission, case, q)
    assert_prunes_q_percent([w0], [w1], q, f"prune_by_percentage({case!r}, q={q:g})")


@rubric(item="lab2.b", weight=1.5, visibility="public")
@ONE_FAILURE
@given(case=LAYERS, q=PERCENTS)
def test_lab2b_zeroes_the_smallest_magnitudes_and_keeps_the_rest_unchanged(submission, case, q):
    """The zeroed weights are the smallest |w|; every other weight stays exactly as it was."""
    w0, w1, _, _ = _pruned(submission, case, q)
    what = f"prune_by_percentage({case!r}, q={q:g})"
    refuse_trivial_pruning([w0], [w1], q, what)
    assert_kept_unchanged(w0, w1, what)
    assert_prunes_smallest([w0], [w1], what)


@rubric(item="lab2.b", weight=0.5, visibility="hidden")
@ONE_FAILURE
@given(case=BIASED_LAYERS, q=PERCENTS)
def test_lab2b_leaves_the_bias_alone(submission, case, q):
    """Only the weight is pruned: the layer's bias comes back unchanged."""
    w0, w1, b0, b1 = _pruned(submission, case, q)
    refuse_trivial_pruning([w0], [w1], q, f"prune_by_percentage({case!r}, q={q:g})")
    changed = int((b1 != b0).sum())
    assert changed == 0, (
        f"prune_by_percentage({case!r}, q={q:g}) changed {changed} of {b0.numel()} bias entries; "
        "prune layer.weight only")


@rubric(item="lab2.b", weight=0.5, visibility="hidden")
@ONE_FAILURE
@given(case=TIED_LAYERS, q=PERCENTS)
def test_lab2b_handles_weights_that_tie_at_the_threshold(submission, case, q):
    """With many equal magnitudes, ties at the threshold are kept or pruned together."""
    w0, w1, _, _ = _pruned(submission, case, q)
    what = f"prune_by_percentage({case!r}, q={q:g})"
    assert_kept_unchanged(w0, w1, what)
    assert_prunes_smallest([w0], [w1], what)
    assert_prunes_q_percent([w0], [w1], q, what)


@rubric(item="lab2.b", weight=0.5, visibility="hidden")
@ONE_FAILURE
@given(case=LAYERS, q=EDGE_PERCENTS)
def test_lab2b_handles_q_0_q_100_and_q_below_one_weight(submission, case, q):
    """q = 0 keeps every weight, q = 100 keeps at most the largest, tiny q prunes at most one."""
    w0, w1, _, _ = _pruned(submission, case, q)
    what = f"prune_by_percentage({case!r}, q={q:g})"
    assert_kept_unchanged(w0, w1, what)
    assert_prunes_q_percent([w0], [w1], q, what)


@rubric(item="lab2.b", weight=0.5, visibility="hidden")
@ONE_FAILURE
@given(case=LAYERS, q=BIG_PERCENTS)
def test_lab2b_prunes_the_layer_in_place(submission, case, q):
    """The layer itself is pruned: layer.weight stays the same Parameter (an optimizer holds it)."""
    layer = build_layer(case)
    what = f"prune_by_percentage({case!r}, q={q:g})"
    out = prune_call(submission, [("layer", layer)], q, what=what)["layer"]
    refuse_trivial_pruning([layer.weight.detach()], [out["weight"]], q, what)
    if not pruned_positions(layer.weight.detach(), out["weight"], what).any():
        raise AssertionError(f"{what} left layer.weight unchanged; prune the layer's weight in place "
                             "(returning a pruned copy does not change the layer)")
    assert out["same_parameter"], (
        f"{what} replaced layer.weight by a new Parameter; change its values in place "
        "(layer.weight.data.mul_(mask), or layer.weight.data = ...): an optimizer built before the "
        "call keeps updating the old Parameter")


LAYOUTS = st.sampled_from([("float64", ("Conv2d", "Linear")), ("channels_last", ("Conv2d",)),
                           ("transposed", ("Linear",))])


@rubric(item="lab2.b", weight=0.5, visibility="hidden")
@ONE_FAILURE
@given(data=st.data(), layout=LAYOUTS, q=PERCENTS)
def test_lab2b_works_for_any_dtype_and_memory_layout(submission, data, layout, q):
    """It works on float64 and non-contiguous weights and keeps the weight's dtype and device."""
    name, kinds = layout
    case = data.draw(layer_cases(kinds=kinds), label="layer")
    layer = build_layer(case)  # float32 values: the probe builds the float64 copy in the sandbox
    what = f"prune_by_percentage({case!r} as {name}, q={q:g})"
    out = prune_call(submission, [("layer", layer)], q, what=what, layout=name)["layer"]
    expected_dtype = "float64" if name == "float64" else "float32"
    assert out["dtype"] == expected_dtype and out["device"] == "cpu", (
        f"{what}: the weight came back as {out['dtype']} on {out['device']}, expected {expected_dtype} on "
        "cpu; build the mask on the weight's own device and dtype (e.g. .to(w.device, w.dtype)), or "
        "the pruned model breaks on a GPU or in double precision")
    w0 = layer.weight.detach()
    assert_kept_unchanged(w0, out["weight"], what)
    assert_prunes_q_percent([w0], [out["weight"]], q, what)


# q always given, as both the course's notebook and ours call it (`prune_by_percentage(layer,
# q=70.0)`): a default students deleted or changed is not graded (issue 11).
FIXTURE_PERCENTS = tuple(sorted({7.0, 35.0, ref.Q, 91.0}))


@rubric(item="lab2.b", weight=0.5 / len(FIXTURE_PERCENTS), visibility="hidden")
@pytest.mark.parametrize("q", FIXTURE_PERCENTS)
def test_lab2b_matches_the_reference_on_resnet20_layers(submission, q):
    """On every prunable layer of the pretrained ResNet-20 it zeroes the expected weights."""
    student, reference = fixture_model(), fixture_model()
    for (name, layer), (_, ref_layer) in zip(prunable_layers(student), prunable_layers(reference), strict=True):
        w0 = layer.weight.detach().clone()
        submission.prune_by_percentage(layer, q=q)
        ref.prune_by_percentage(ref_layer, q=q)
        got = pruned_positions(w0, layer.weight.detach(), name)
        want = pruned_positions(w0, ref_layer.weight.detach(), name)
        # Real float32 weights (exact ties are rare): every right answer zeroes a prefix of the
        # magnitude order whose length lies within one element of q%, a window of at most three
        # counts, so two right masks differ in at most two weights.
        differ = int((got != want).sum())
        assert differ <= 2, (
            f"prune_by_percentage(layer {name} of the pretrained ResNet-20, q={q:g}): {differ} weights "
            f"pruned differently from the expected mask (zeroed {int(got.sum())} of {got.numel()}, "
            f"expected {int(want.sum())})")
