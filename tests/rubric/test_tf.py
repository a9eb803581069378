"""True/False 1.1-1.10: the choice in answers.yaml against the instructor's key.

The explanation of each answer is graded by a person (manual.csv). The key comes from the
assignment config (``[tf] key``), so an instructor's config changes it without code changes.
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
    if got is None:
        # say why nothing was read: no file, an unreadable file, or this question left blank
        problems = [p for p in answers.problems if f"question {question}:" in p or "question " not in p]
        why = "; ".join(problems) if problems else f"question {question} has no choice in {answers.file}"
        raise AssertionError(f"question {question}: no True/False choice found ({why}); write T or F")
    assert got == KEY[question], f"question {question}: your choice {got} does not match the answer key"
