"""Lab 1 (b): plain gradient descent, W <- W - lr * 2 X^T (X W - y), from W = 0.

``run_gd`` must return the whole trajectory, W0 included: steps + 1 rows. Each row is checked
as one full-batch step from the row before it (see ``lab1_support.check_run``).
"""

import pytest
from hypothesis import given
from lab1_runs import grade_each_parameter
from lab1_support import Run, check_runner, runner_data

rubric = pytest.mark.rubric

DATA = runner_data()


@rubric(item="lab1.b", weight=1, visibility="public")
def test_lab1b_run_gd_matches_reference_on_the_term_data(submission, credit, lab1_data, hw4_config):
    """run_gd(X, y) on the homework's data follows W <- W - lr * 2 X^T (X W - y) from W0 = 0, every step."""
    X, y = lab1_data
    grade_each_parameter(submission, credit, "gd", X, y, hw4_config)


@rubric(item="lab1.b", weight=1, visibility="hidden")
@given(data=DATA)
def test_lab1b_run_gd_matches_reference_on_generated_data(submission, data):
    """run_gd follows the full-batch update on other data, step sizes and step counts too."""
    X, y, lr, steps = data
    check_runner(submission, Run("gd", X, y, lr, steps), (X, y), {"lr": lr, "steps": steps},
                 f"run_gd(X, y, lr={lr:.4g}, steps={steps})")
