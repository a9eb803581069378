"""Lab 1 (b) in the executed notebook: the figures of plain gradient descent.

Consistency, not correctness (run_gd's numbers are graded by the function tests): each figure must
plot the trajectory that the student's own ``run_gd`` returned in the run.
"""

import pytest

from grader.notebooks import checks

rubric = pytest.mark.rubric


@rubric(item="lab1.b", weight=1, visibility="hidden", kind="notebook")
def test_lab1b_notebook_plots_log_loss_and_weights_of_each_run(notebook_run, credit):
    """Running your Lab 1 notebook plots, for every parameter value, the log-loss and the 5 weight
    trajectories that run_gd returned."""
    checks.lab1_figures(notebook_run, "b").check(credit)
