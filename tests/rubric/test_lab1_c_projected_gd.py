"""Lab 1 (c): projected gradient descent onto ||W||_0 <= k: W <- P_k(W - lr * grad L(W)).

``project_top_k(W, k)`` keeps the k entries of largest magnitude and zeroes the rest. When
magnitudes tie at the k-th place, any choice among the tied entries is a valid projection, and
the tests accept every one (``reference.lab1_variants.all_projections``).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lab1_runs import grade_each_parameter
from lab1_support import (
    Run,
    check_projection,
    check_runner,
    operator_tolerance,
    runner_data,
)
from rubric_support import fmt, refuse_trivial

from reference.config import load
from reference.lab1_variants import all_projections

rubric = pytest.mark.rubric
K_DEFAULT = load().lab1.k  # the template's default: project_top_k(W, k=K)

# Entries: float32 values, plus a few fixed ones drawn often so that magnitudes tie (0, +-1, +-2.5).
ENTRIES = st.one_of(st.floats(-10, 10, allow_nan=False, width=32),
                    st.sampled_from([0.0, 1.0, -1.0, 2.5, -2.5]))


@st.composite
def vector_and_k(draw):
    """A vector of 1..8 entries and a k in 0..n."""
    W = np.array(draw(st.lists(ENTRIES, min_size=1, max_size=8)), dtype=float)
    return W, draw(st.integers(0, W.size))


VECTOR_AND_K = vector_and_k()
DATA = runner_data()

#: public examples: (W, k); the homework's first gradient step, the docstring's, ties and k = 0, n
EXAMPLES = [
    ([0.32, -0.6, -0.12, -0.2, 0.24], 2),
    ([0.5, -3.0, 0.1, 2.0], 2),
    ([1.0, -4.0, 4.0, 0.5, -2.0], 1),
    ([0.0, 7.0, -1.0], 0),
    ([0.0, 7.0, -1.0], 3),
]


@rubric(item="lab1.c", weight=1, visibility="public")
def test_lab1c_project_top_k_keeps_the_k_largest_on_examples(submission):
    """project_top_k(W, k) keeps the k entries of largest |W_j| and zeroes the others; without k, the default k."""
    for entries, k in EXAMPLES:
        W = np.array(entries)
        check_projection(submission, W, k, f"project_top_k(W, {k}) with W = {fmt(W)}")
    # The signature's default, as the template gives it: project_top_k(W) keeps K_DEFAULT entries.
    W = np.array(EXAMPLES[0][0])
    check_projection(submission, W, K_DEFAULT, f"project_top_k(W) (default k={K_DEFAULT}) with W = {fmt(W)}",
                     pass_k=False)


@rubric(item="lab1.c", weight=1, visibility="hidden")
@given(case=VECTOR_AND_K)
def test_lab1c_project_top_k_keeps_exactly_the_k_largest_magnitudes(submission, case):
    """project_top_k(W, k) keeps exactly the k largest magnitudes (any tie-break) on generated vectors."""
    W, k = case
    check_projection(submission, W, k, f"project_top_k(W, {k}) with W of {W.size} entries")


@rubric(item="lab1.c", weight=0.5, visibility="hidden")
@given(case=VECTOR_AND_K)
def test_lab1c_project_top_k_is_idempotent(submission, case):
    """Projecting twice changes nothing: project_top_k(project_top_k(W, k), k) = project_top_k(W, k)."""
    W, k = case
    # Only idempotence is checked here (validity has its own test), so this property stands alone.
    once = check_projection(submission, W, k, f"project_top_k(W, {k})", validate=False)
    # Zeros, W itself and a constant are idempotent too: they earn nothing here (issue 14).
    refuse_trivial(once, [W], all_projections(W, k, tol=operator_tolerance(W)), operator_tolerance(W),
                   f"project_top_k(W, {k}) with W of {W.size} entries")
    twice = check_projection(submission, once, k, f"project_top_k(project_top_k(W, {k}), {k})",
                             validate=False)
    # a second projection only copies entries the first one kept: no new rounding, so only the
    # float32 rounding of the copy itself is allowed
    if not np.allclose(twice, once, rtol=0, atol=operator_tolerance(W)):
        raise AssertionError(f"projecting twice changed the result: once {fmt(once)}, twice {fmt(twice)} "
                             f"(k = {k})")


@rubric(item="lab1.c", weight=0.5, visibility="hidden")
@given(n=st.integers(2, 8), data=st.data())
def test_lab1c_project_top_k_keeps_exactly_k_of_tied_entries(submission, n, data):
    """When all magnitudes are equal, project_top_k keeps exactly k of them (which ones is your choice)."""
    signs = np.array(data.draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=n, max_size=n)))
    k = data.draw(st.integers(0, n))
    W = 1.5 * signs
    check_projection(submission, W, k, f"project_top_k(W, {k}) with W = {fmt(W)}")


@rubric(item="lab1.c", weight=1.5, visibility="public")
def test_lab1c_run_projected_gd_matches_reference_on_the_term_data(submission, credit, lab1_data, hw4_config):
    """run_projected_gd(X, y) on the homework's data: each row is P_2 of a gradient step from the last."""
    X, y = lab1_data
    grade_each_parameter(submission, credit, "projected", X, y, hw4_config)


@rubric(item="lab1.c", weight=1, visibility="hidden")
@given(data=DATA, k=st.integers(0, 5))
def test_lab1c_run_projected_gd_matches_reference_on_generated_data(submission, data, k):
    """run_projected_gd(X, y, k, lr, steps) projects every step onto k nonzeros, on other data and k."""
    X, y, lr, steps = data
    check_runner(submission, Run("projected", X, y, lr, steps, param=k), (X, y),
                 {"k": k, "lr": lr, "steps": steps},
                 f"run_projected_gd(X, y, k={k}, lr={lr:.4g}, steps={steps})")
