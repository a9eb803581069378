"""Lab 2 (e) in the executed notebook: global iterative pruning.

The global loop is the notebook's own code (no function test runs it), so its schedule is checked
here; the saved model must come from it and be reported truthfully. Lost zeros (finetune_after_prune,
Lab 2 (c)) and the 70 % total target are notes.
"""

import pytest

from grader.notebooks import checks

rubric = pytest.mark.rubric


@rubric(item="lab2.e", weight=1, visibility="hidden", kind="notebook")
def test_lab2e_prunes_globally_step_by_step_and_saves_the_model(notebook_run, credit):
    """global_prune_by_percentage runs with q = 7, 14, ..., 70 before the first 10 epochs (or 8,
    16, ..., 80 as the course's given line says), then the loop finetunes and saves
    net_after_global_iterative_prune.pt."""
    scheduled = checks.schedule(notebook_run, "lab2.e")
    saved = checks.iterative_checkpoint(notebook_run, "lab2.e")
    both = checks.Outcome((scheduled.fraction + saved.fraction) / 2, scheduled.problems + saved.problems)
    both.check(credit)


@rubric(item="lab2.e", weight=1, visibility="hidden", kind="notebook")
def test_lab2e_sparsity_check_reports_the_saved_model(notebook_run, credit):
    """The cell after the loop prints the real sparsity of net_after_global_iterative_prune.pt
    and the accuracy the reference measures on it."""
    checks.sparsity_report(notebook_run, "lab2.e").check(credit)
