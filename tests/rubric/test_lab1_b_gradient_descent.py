"""Lab 1 (b): plain gradient descent, W <- W - lr * 2 X^T (X W - y), from W = 0."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rubric_support import as_trajectory, assert_close

import reference.lab1 as ref

rubric = pytest.mark.rubric

# Data whose GD is stable at the term's step size: entries in [-2, 2] on a 3x5 design.
DATA = st.tuples(
    st.lists(st.lists(st.integers(-2, 2), min_size=5, max_size=5), min_size=3, max_size=3),
    st.lists(st.integers(-5, 5), min_size=3, max_size=3),
    st.integers(1, 25),
)


@rubric(item="lab1.b", weight=1, visibility="public")
def test_lab1b_run_gd_matches_reference_on_the_term_data(submission, lab1_data, hw4_config):
    """run_gd(X, y) on the homework's data follows W <- W - lr * 2 X^T (X W - y) for every step."""
    X, y = lab1_data
    got = as_trajectory(submission.run_gd(X, y), hw4_config.lab1.steps, X.shape[1], "run_gd(X, y)")
    # float32 arithmetic drifts about 1e-6 relative over 200 contracting steps: 1e-4 absolute
    # is far below any mistake's effect (a missing factor 2 moves step 1 by lr * |grad| >= 0.1).
    assert_close(got, ref.trajectory("gd"), rtol=1e-4, atol=1e-4, what="run_gd(X, y)")


@rubric(item="lab1.b", weight=1, visibility="hidden")
@given(data=DATA)
def test_lab1b_run_gd_matches_reference_on_generated_data(submission, hw4_config, data):
    """run_gd follows the full-batch update on other data, step sizes and step counts too."""
    X, y, steps = np.array(data[0], float), np.array(data[1], float), data[2]
    lr = 0.5 / max(np.linalg.eigvalsh(2 * X.T @ X).max(), 1.0)
    got = as_trajectory(submission.run_gd(X, y, lr=lr, steps=steps), steps, 5, "run_gd")
    assert_close(got, ref.run_gd(X, y, lr=lr, steps=steps), rtol=1e-4, atol=1e-6,
                 what=f"run_gd(X, y, lr={lr:.4g}, steps={steps})")
