"""Lab 2 (c) in the executed notebook: finetuning keeps the pruned weights at zero, and the
sparsity check reports the saved model truthfully.

Consistency checks: the zero pattern compared is the one the student's *own* pruning made (a
wrong prune_by_percentage already costs lab2.b's points), the printed numbers are compared with
the checkpoint the notebook saved. The 70 % target is reported as a note.
"""

import pytest

from grader.notebooks import checks

rubric = pytest.mark.rubric


@rubric(item="lab2.c", weight=1, visibility="hidden", kind="notebook")
def test_lab2c_finetuned_checkpoint_keeps_the_pruned_pattern(notebook_run):
    """net_after_finetune.pt was saved, and every weight your pruning set to zero before
    finetuning is still exactly zero in it."""
    checks.pattern_kept(notebook_run, "lab2.c").check()


@rubric(item="lab2.c", weight=1, visibility="hidden", kind="notebook")
def test_lab2c_sparsity_check_reports_the_saved_model(notebook_run, credit):
    """The sparsity check loads net_after_finetune.pt and prints its real per-layer and total
    sparsity, and the accuracy it reports is the one the reference measures on that model."""
    checks.sparsity_report(notebook_run, "lab2.c").check(credit)
