"""Lab 3 (b) in the executed notebook: the pretrained model's accuracy at 6..2 bits.

The accuracies depend on the student's quantizer (graded in lab3.a); here the run must evaluate
the pretrained weights at every bit width and print only accuracies its code computed. Where the
student's quantizer and the reference's disagree, a note says so.
"""

import pytest

from grader.notebooks import checks

rubric = pytest.mark.rubric


@rubric(item="lab3.b", weight=1, visibility="hidden", kind="notebook")
def test_lab3b_evaluates_the_pretrained_model_at_each_bit_width(notebook_run, credit):
    """The notebook evaluates the pretrained model quantized to every bit width of the sweep."""
    checks.bit_width_evaluations(notebook_run, "lab3.b").check(credit)


@rubric(item="lab3.b", weight=1, visibility="hidden", kind="notebook")
def test_lab3b_printed_accuracies_are_the_evaluated_ones(notebook_run):
    """Every accuracy printed in the bit-width sweep is one the code computed."""
    checks.printed_accuracies(notebook_run, "lab3.b").check()
