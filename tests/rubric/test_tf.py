"""True/False 1.1-1.10: the choice in answers.yaml against the instructor's key.

The explanation of each answer is graded by a person (manual.csv).
"""

import pytest

from grader.answers import read_answers
from reference.config import load

KEY = load().tf_key


@pytest.mark.parametrize(
    "question", [pytest.param(q, marks=pytest.mark.rubric(item=f"tf.{q.split('.')[1]}", visibility="hidden"))
                 for q in KEY])
def test_tf_choice_matches_the_key(submission, question):
    """Your True/False choice for this question is correct."""
    answers = read_answers(submission.root)
    got = answers.choice(question)
    assert got == KEY[question], (
        f"question {question}: your answer is {got or 'missing'}" if got != KEY[question] else "")
