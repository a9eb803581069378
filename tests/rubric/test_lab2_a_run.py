"""Lab 2 (a) in the notebook: evaluate the pretrained model.

The cell is given code, so re-running it proves nothing about the student: the 2 points need
evidence that the student ran it (the handed-in notebook's saved output shows the pretrained
model's accuracy) *and* a re-run that reproduces the reference's accuracy of that checkpoint.
"""

import pytest

from grader.notebooks import checks

rubric = pytest.mark.rubric


@rubric(item="lab2.a", weight=1, visibility="hidden", kind="notebook")
def test_lab2a_notebook_shows_and_reproduces_the_pretrained_accuracy(notebook_run):
    """Your notebook was handed in with the pretrained model's test accuracy in its output, and
    re-running it evaluates pretrained_model.pt to the accuracy the reference code measures."""
    checks.lab2a_pretrained_accuracy(notebook_run).check()
