"""Lab 1 (f): trimmed l1, W <- T_tau(W - lr * grad L(W)): soft-threshold only the `trim` entries
of the gradient step V with the smallest |V_j| and keep the others, for every tau of the homework.

Accepted (DESIGN section 3): selecting the `trim` entries by |W| before the step instead of |V|;
any tie-break among equal magnitudes. A ``trimmed_soft_threshold`` that is wrong only because the
student's own ``soft_threshold`` is wrong is graded as right here (that costs points in (e)).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lab1_runs import grade_each_parameter
from lab1_support import (
    Run,
    check_runner,
    check_trimmed,
    runner_data,
)
from rubric_support import fmt

from reference.config import load

rubric = pytest.mark.rubric
TRIM_DEFAULT = load().lab1.trim  # the template's default: trimmed_soft_threshold(W, threshold, trim=TRIM)

# float32 values plus a few fixed ones drawn often, so that magnitudes tie at the trim boundary
ENTRIES = st.one_of(st.floats(-10, 10, allow_nan=False, width=32),
                    st.sampled_from([0.0, 0.5, -0.5, 2.0, -2.0]))
TAUS = st.floats(0, 3, allow_nan=False, width=32)


@st.composite
def trimmed_case(draw):
    """A vector of 1..8 entries, tau in [0, 3] and trim in 0..n."""
    W = np.array(draw(st.lists(ENTRIES, min_size=1, max_size=8)), dtype=float)
    return W, draw(TAUS), draw(st.integers(0, W.size))


CASES = trimmed_case()
DATA = runner_data()
RUN_TAUS = st.floats(0, 0.5, allow_nan=False, width=32)

#: public examples: (W, tau, trim); the docstring's, a homework-like step, a tie, trim = 0 and n
EXAMPLES = [
    ([3.0, -0.5, 0.2, 2.0], 0.3, 2),
    ([0.32, -0.6, -0.12, -0.2, 0.24], 0.1, 3),
    ([0.0, -3.0, 0.5, -0.5, 1.0], 0.2, 2),
    ([1.0, -2.0, 0.5], 0.25, 0),
    ([1.0, -2.0, 0.5], 0.25, 3),
]


@rubric(item="lab1.f", weight=1, visibility="public")
def test_lab1f_trimmed_soft_threshold_on_examples(submission):
    """trimmed_soft_threshold(W, tau, trim) soft-thresholds the trim smallest |W_j| and keeps the rest
    (without trim, the default trim)."""
    for entries, tau, trim in EXAMPLES:
        W = np.array(entries)
        check_trimmed(submission, W, tau, trim,
                      f"trimmed_soft_threshold(W, {tau:g}, trim={trim}) with W = {fmt(W)}")
    # The signature's default, as the template gives it.
    W, tau = np.array([0.32, -0.6, -0.12, -0.2, 0.24, 0.05]), 0.1
    check_trimmed(submission, W, tau, TRIM_DEFAULT,
                  f"trimmed_soft_threshold(W, {tau:g}) (default trim={TRIM_DEFAULT}) with W = {fmt(W)}",
                  pass_trim=False)


@rubric(item="lab1.f", weight=1, visibility="hidden")
@given(case=CASES)
def test_lab1f_trimmed_soft_threshold_keeps_the_largest_and_thresholds_the_rest(submission, case):
    """trimmed_soft_threshold leaves the n - trim largest entries untouched and soft-thresholds the others."""
    W, tau, trim = case
    check_trimmed(submission, W, tau, trim,
                  f"trimmed_soft_threshold(W, {tau:g}, trim={trim}) with W of {W.size} entries")


@rubric(item="lab1.f", weight=1.5, visibility="public")
def test_lab1f_run_trimmed_l1_matches_reference_for_every_tau(submission, credit, lab1_data, hw4_config):
    """run_trimmed_l1(X, y, tau) on the homework's data: each row is T_tau of a gradient step, every tau."""
    X, y = lab1_data
    grade_each_parameter(submission, credit, "trimmed", X, y, hw4_config)


@rubric(item="lab1.f", weight=1, visibility="hidden")
@given(data=DATA, tau=RUN_TAUS, trim=st.integers(0, 5))
def test_lab1f_run_trimmed_l1_matches_reference_on_generated_data(submission, data, tau, trim):
    """run_trimmed_l1 follows the trimmed prox update on other data, tau, trim, step sizes and step counts."""
    X, y, lr, steps = data
    check_runner(submission, Run("trimmed", X, y, lr, steps, param=tau, trim=trim), (X, y, tau),
                 {"trim": trim, "lr": lr, "steps": steps},
                 f"run_trimmed_l1(X, y, {tau:g}, trim={trim}, lr={lr:.4g}, steps={steps})")
