"""Lab 1 (d): l1 regularization by subgradient descent,
W <- W - lr * (grad L(W) + lam * sign(W)) with sign(0) = 0, for every lam of the homework.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lab1_runs import grade_each_parameter
from lab1_support import Run, check_runner, runner_data

rubric = pytest.mark.rubric

DATA = runner_data()
# lam up to 3 (the homework's largest is 2); 0 included: then the method is plain GD.
LAMBDAS = st.floats(0, 3, allow_nan=False, width=32)


@rubric(item="lab1.d", weight=2, visibility="public")
def test_lab1d_run_l1_gd_matches_reference_for_every_lambda(submission, credit, lab1_data, hw4_config):
    """run_l1_gd(X, y, lam) on the homework's data follows W <- W - lr (grad L + lam sign(W)) for each lam."""
    X, y = lab1_data
    grade_each_parameter(submission, credit, "l1", X, y, hw4_config)


@rubric(item="lab1.d", weight=1, visibility="hidden")
@given(lam=st.floats(0.5, 5, allow_nan=False, width=32))
def test_lab1d_first_step_from_zero_is_a_plain_gradient_step(submission, lab1_data, lam):
    """sign(0) = 0: the first step from W0 = 0 ignores lam, whatever lam is."""
    X, y = lab1_data
    lr = 0.02
    check_runner(submission, Run("l1", X, y, lr, 1, param=lam), (X, y, lam), {"lr": lr, "steps": 1},
                 f"run_l1_gd(X, y, {lam:g}, lr={lr:g}, steps=1)")


@rubric(item="lab1.d", weight=1, visibility="hidden")
@given(data=DATA, lam=LAMBDAS)
def test_lab1d_run_l1_gd_matches_reference_on_generated_data(submission, data, lam):
    """run_l1_gd follows the subgradient update on other data, lam, step sizes and step counts."""
    X, y, lr, steps = data
    check_runner(submission, Run("l1", X, y, lr, steps, param=lam), (X, y, lam), {"lr": lr, "steps": steps},
                 f"run_l1_gd(X, y, {lam:g}, lr={lr:.4g}, steps={steps})")

