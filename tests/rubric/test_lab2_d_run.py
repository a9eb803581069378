"""Lab 2 (d) in the executed notebook: iterative pruning 7% -> 70%, then finetuning with the
pattern fixed.

The schedule itself is graded by the function tests (a dry run of the loop cell,
test_lab2_d_iterative_schedule.py); here the real run must have saved its model and must report
that model truthfully. Whether the model kept the last step's zeros depends on
finetune_after_prune (Lab 2 (c)): a note, like the 70 % target.
"""

import pytest

from grader.notebooks import checks

rubric = pytest.mark.rubric


@rubric(item="lab2.d", weight=1, visibility="hidden", kind="notebook")
def test_lab2d_iterative_loop_saved_its_model(notebook_run):
    """The iterative pruning loop ran -- pruning, then finetuning -- and saved
    net_after_iterative_prune.pt."""
    checks.iterative_checkpoint(notebook_run, "lab2.d").check()


@rubric(item="lab2.d", weight=1, visibility="hidden", kind="notebook")
def test_lab2d_sparsity_check_reports_the_saved_model(notebook_run, credit):
    """The cell after the loop prints the real sparsity of net_after_iterative_prune.pt and the
    accuracy the reference measures on it."""
    checks.sparsity_report(notebook_run, "lab2.d").check(credit)
