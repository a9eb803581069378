"""Lab 3 (d) in the executed notebook: quantize the pruned model of Lab 2 (any of its checkpoints:
our notebook quantizes net_after_finetune.pt, the course's net_after_global_iterative_prune.pt)."""

import pytest

from grader.notebooks import checks

rubric = pytest.mark.rubric


@rubric(item="lab3.d", weight=1, visibility="hidden", kind="notebook")
def test_lab3d_evaluates_the_pruned_model_at_each_bit_width(notebook_run, credit):
    """The notebook evaluates the weights of a pruned model of Lab 2 quantized to every bit width."""
    checks.bit_width_evaluations(notebook_run, "lab3.d").check(credit)


@rubric(item="lab3.d", weight=1, visibility="hidden", kind="notebook")
def test_lab3d_printed_accuracies_are_the_evaluated_ones(notebook_run):
    """Every accuracy printed for the quantized pruned model is one the code computed."""
    checks.printed_accuracies(notebook_run, "lab3.d").check()
