"""Lab 1 (e): proximal gradient descent with soft-thresholding, W <- S_tau(W - lr * grad L(W)),
S_tau(w) = sign(w) * max(|w| - tau, 0), for every tau of the homework.

``soft_threshold`` is checked against its formula and against the properties every proximal
operator of tau * |w| has: odd, non-expansive, zero on [-tau, tau], a shift by exactly tau outside.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lab1_runs import grade_each_parameter
from lab1_support import (
    Run,
    call_soft_threshold,
    check_runner,
    check_soft_threshold,
    operator_tolerance,
    runner_data,
)
from rubric_support import fmt, refuse_trivial

import reference.lab1 as ref

rubric = pytest.mark.rubric

# float32 values; +-tau itself and 0 are drawn on purpose (the edges of the dead zone).
ENTRIES = st.floats(-10, 10, allow_nan=False, width=32)
TAUS = st.floats(0, 5, allow_nan=False, width=32)


@st.composite
def vector_and_tau(draw):
    """A vector of 1..8 entries, some of them exactly +-tau or 0, and tau in [0, 5]."""
    tau = draw(TAUS)
    W = draw(st.lists(st.one_of(ENTRIES, st.sampled_from([tau, -tau, 0.0])), min_size=1, max_size=8))
    return np.array(W, dtype=float), tau


VECTOR_AND_TAU = vector_and_tau()
PAIRS = st.integers(1, 8).flatmap(
    lambda n: st.tuples(st.lists(ENTRIES, min_size=n, max_size=n), st.lists(ENTRIES, min_size=n, max_size=n)))
DATA = runner_data()
# tau up to 0.5: beyond it every weight of the generated problems is thresholded to 0 at once
RUN_TAUS = st.floats(0, 0.5, allow_nan=False, width=32)

#: public examples: (W, tau); the docstring's, the dead zone's edges, tau = 0
EXAMPLES = [
    ([3.0, -0.5, -2.0], 1.0),
    ([0.32, -0.6, -0.12, -0.2, 0.24], 0.2),
    ([1.0, -1.0, 0.0, 1.5], 1.0),
    ([2.0, -3.5, 0.25], 0.0),
]


@rubric(item="lab1.e", weight=1, visibility="public")
def test_lab1e_soft_threshold_on_examples(submission):
    """soft_threshold(W, tau) = sign(W) * max(|W| - tau, 0) on a few vectors."""
    for entries, tau in EXAMPLES:
        W = np.array(entries)
        check_soft_threshold(submission, W, tau, f"soft_threshold(W, {tau:g}) with W = {fmt(W)}")


@rubric(item="lab1.e", weight=1, visibility="hidden")
@given(case=VECTOR_AND_TAU)
def test_lab1e_soft_threshold_zeroes_inside_and_shrinks_by_tau_outside(submission, case):
    """soft_threshold is 0 on [-tau, tau] and moves every other entry exactly tau towards 0."""
    W, tau = case
    check_soft_threshold(submission, W, tau, f"soft_threshold(W, {tau:g}) with W of {W.size} entries")


@rubric(item="lab1.e", weight=0.5, visibility="hidden")
@given(case=VECTOR_AND_TAU)
def test_lab1e_soft_threshold_is_odd(submission, case):
    """soft_threshold(-W, tau) = -soft_threshold(W, tau)."""
    W, tau = case
    plus = call_soft_threshold(submission, W, tau, f"soft_threshold(W, {tau:g})")
    # Zeros and the identity are odd too: they earn nothing here (issue 14).
    refuse_trivial(plus, [W], ref.soft_threshold(W, tau), operator_tolerance(W, tau), f"soft_threshold(W, {tau:g})")
    minus = call_soft_threshold(submission, -W, tau, f"soft_threshold(-W, {tau:g})")
    # S(-w) and -S(w) round identically in IEEE arithmetic (negation is exact); the tolerance
    # only covers a student computing them along different float32 paths
    if not np.allclose(minus, -plus, rtol=0, atol=operator_tolerance(W, tau)):
        raise AssertionError(f"soft_threshold is not odd for tau = {tau:g}: S(W) = {fmt(plus)}, "
                             f"S(-W) = {fmt(minus)}, expected S(-W) = -S(W)")


@rubric(item="lab1.e", weight=0.5, visibility="hidden")
@given(pair=PAIRS, tau=TAUS)
def test_lab1e_soft_threshold_is_non_expansive(submission, pair, tau):
    """|soft_threshold(a) - soft_threshold(b)| <= |a - b| entrywise, as for every proximal operator."""
    a, b = (np.array(v, dtype=float) for v in pair)
    sa = call_soft_threshold(submission, a, tau, f"soft_threshold(a, {tau:g})")
    sb = call_soft_threshold(submission, b, tau, f"soft_threshold(b, {tau:g})")
    slack = operator_tolerance(np.concatenate([a, b]), tau)
    # Zeros, the identity and a constant are non-expansive too: they earn nothing here (issue 14).
    refuse_trivial(np.concatenate([sa, sb]), [np.concatenate([a, b])], ref.soft_threshold(np.concatenate([a, b]), tau),
                   slack, f"soft_threshold(a, {tau:g}) and soft_threshold(b, {tau:g})")
    worse = np.abs(sa - sb) > np.abs(a - b) + slack
    if worse.any():
        j = int(np.argmax(worse))
        raise AssertionError(f"soft_threshold moved two inputs apart (tau = {tau:g}): at entry {j}, "
                             f"a = {a[j]:.6g} and b = {b[j]:.6g} ({abs(a[j] - b[j]):.3g} apart) became "
                             f"{sa[j]:.6g} and {sb[j]:.6g} ({abs(sa[j] - sb[j]):.3g} apart)")


@rubric(item="lab1.e", weight=1.5, visibility="public")
def test_lab1e_run_proximal_gd_matches_reference_for_every_tau(submission, credit, lab1_data, hw4_config):
    """run_proximal_gd(X, y, tau) on the homework's data: each row is S_tau of a gradient step, every tau."""
    X, y = lab1_data
    grade_each_parameter(submission, credit, "proximal", X, y, hw4_config)


@rubric(item="lab1.e", weight=1, visibility="hidden")
@given(data=DATA, tau=RUN_TAUS)
def test_lab1e_run_proximal_gd_matches_reference_on_generated_data(submission, data, tau):
    """run_proximal_gd follows W <- S_tau(W - lr grad L(W)) on other data, tau, step sizes and step counts."""
    X, y, lr, steps = data
    check_runner(submission, Run("proximal", X, y, lr, steps, param=tau), (X, y, tau),
                 {"lr": lr, "steps": steps}, f"run_proximal_gd(X, y, {tau:g}, lr={lr:.4g}, steps={steps})")
