"""Lab 1 (a): the loss L(W) = sum_i (X_i W - y_i)^2 and its gradient 2 X^T (X W - y).

The derivation itself is graded by a person; these tests grade ``loss`` and ``gradient``, which
every gradient step of (b)-(f) is built from. (A wrong ``gradient`` costs points here only: the
runner tests of (b)-(f) accept a trajectory that is right given the student's own gradient.)
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from lab1_support import TERM_WEIGHTS, check_gradient, check_loss
from rubric_support import fmt

rubric = pytest.mark.rubric

# Values a float32 can hold exactly, bounded so that no sum below overflows or loses all digits.
ENTRIES = st.floats(-10, 10, allow_nan=False, width=32)


@st.composite
def problems(draw, max_rows: int = 6, max_features: int = 6):
    """(X, y, W) with 1..6 samples and 1..6 features."""
    m = draw(st.integers(1, max_rows))
    n = draw(st.integers(1, max_features))
    X = draw(arrays(np.float64, (m, n), elements=ENTRIES))
    y = draw(arrays(np.float64, (m,), elements=ENTRIES))
    W = draw(arrays(np.float64, (n,), elements=ENTRIES))
    return X, y, W


PROBLEMS = problems()


@rubric(item="lab1.a", weight=1, visibility="public")
def test_lab1a_loss_on_the_homework_data(submission, lab1_data):
    """loss(W, X, y) equals sum_i (X_i W - y_i)^2 on the homework's X, y for a few W."""
    X, y = lab1_data
    for weights in TERM_WEIGHTS:
        W = np.array(weights)
        check_loss(submission, X, y, W, f"loss(W, X, y) with W = {fmt(W)} and the homework's X, y")


@rubric(item="lab1.a", weight=1, visibility="public")
def test_lab1a_gradient_on_the_homework_data(submission, lab1_data):
    """gradient(W, X, y) equals 2 X^T (X W - y) on the homework's X, y for a few W."""
    X, y = lab1_data
    for weights in TERM_WEIGHTS:
        W = np.array(weights)
        check_gradient(submission, X, y, W, f"gradient(W, X, y) with W = {fmt(W)} and the homework's X, y")


@rubric(item="lab1.a", weight=1, visibility="hidden")
@given(problem=PROBLEMS)
def test_lab1a_loss_matches_the_definition_on_generated_data(submission, problem):
    """loss(W, X, y) equals sum_i (X_i W - y_i)^2 for other shapes and values of X, y and W."""
    X, y, W = problem
    check_loss(submission, X, y, W, f"loss(W, X, y) with X of shape {X.shape}")


@rubric(item="lab1.a", weight=2, visibility="hidden")
@given(problem=PROBLEMS)
def test_lab1a_gradient_matches_2_XT_residual_on_generated_data(submission, problem):
    """gradient(W, X, y) equals 2 X^T (X W - y) for other shapes and values of X, y and W."""
    X, y, W = problem
    check_gradient(submission, X, y, W, f"gradient(W, X, y) with X of shape {X.shape}")
