"""Lab 3 (c) in the executed notebook: finetune the quantized model at 4, 3 and 2 bits."""

import pytest

from grader.notebooks import checks

rubric = pytest.mark.rubric


@rubric(item="lab3.c", weight=1, visibility="hidden", kind="notebook")
def test_lab3c_finetunes_the_pretrained_model_at_each_bit_width(notebook_run, credit):
    """finetune(net, ...) runs on the pretrained model quantized to every finetuning bit width."""
    checks.lab3c_finetuned(notebook_run).check(credit)


@rubric(item="lab3.c", weight=1, visibility="hidden", kind="notebook")
def test_lab3c_evaluates_the_model_finetune_saved(notebook_run, credit):
    """After each finetuning the notebook loads the model finetune saved and evaluates it at the
    same bit width, getting finetune's best accuracy."""
    checks.lab3c_evaluated(notebook_run).check(credit)


@rubric(item="lab3.c", weight=1, visibility="hidden", kind="notebook")
def test_lab3c_printed_accuracies_are_the_evaluated_ones(notebook_run):
    """Every accuracy printed around the finetuning is one the code computed."""
    checks.printed_accuracies(notebook_run, "lab3.c").check()
