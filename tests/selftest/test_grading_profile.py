"""The ``grading`` Hypothesis profile (``tests/conftest.py``): what a failing test costs.

A student's call is a sandbox round trip, so every extra run of a failing test is paid by the
student who has the least done (the untouched template fails every public test).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def test_a_test_that_fails_on_every_input_runs_a_handful_of_times_not_hundreds():
    """A stub (NotImplementedError on every input) is found, shrunk and reported in a few runs; the
    explain phase used to replay it about 400 times to annotate the report, which no feedback shows."""
    runs = []

    @settings(settings.get_profile("grading"))
    @given(w=hnp.arrays(np.float64, st.integers(2, 20), elements=st.floats(-1, 1)), q=st.floats(5, 95),
           k=st.integers(0, 3))
    def always_fails(w, q, k):
        runs.append((w, q, k))
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        always_fails()
    assert len(runs) <= 10, len(runs)


def test_a_failing_test_is_reported_without_parsing_the_source_of_its_traceback(monkeypatch, template_sample):
    """pytest's long traceback style parses the source file of every frame of every failure (the
    grader's, Hypothesis's): about a second per self-check of the untouched template, for a
    detail only a grader fault shows. Grading asks for plain tracebacks; the student's message
    does not depend on it."""
    import _pytest._code.code as code

    from grader.grade import GradeOptions, grade_submission

    parsed = []
    real = code.getstatementrange_ast
    monkeypatch.setattr(code, "getstatementrange_ast", lambda *a, **k: parsed.append(1) or real(*a, **k))
    result = grade_submission(template_sample, "template", GradeOptions(
        notebooks=False, public_only=True, pytest_args=("-k", "lab1e or lab3e")))
    failed = [c for c in result.cases() if c.status == "failed"]
    assert failed and all("NotImplementedError" in c.message for c in failed), [c.message for c in failed]
    assert parsed == []
