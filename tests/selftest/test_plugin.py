"""The grading plugin's reading of failures: student faults vs grader faults."""

from __future__ import annotations

from types import SimpleNamespace

from grader.errors import StudentException, StudentTimeout
from grader.plugin import _explain

REPORT = SimpleNamespace(longrepr="Traceback ... grader internals")


def test_assertion_is_a_student_fault_with_its_message():
    message, detail, fault = _explain(AssertionError("expected [1], got [2]\nassert False"), REPORT, "public")
    assert (message, detail, fault) == ("expected [1], got [2]", "", "student")


def test_student_error_names_the_call():
    exc = StudentTimeout("did not finish within 20 s", function="run_gd", call="run_gd(X, y)")
    message, _, fault = _explain(exc, REPORT, "hidden")
    assert fault == "student" and message.startswith("run_gd(X, y): did not finish within 20 s")


def test_hidden_test_keeps_the_falsifying_example_private():
    exc = AssertionError("wrong level count")
    exc.add_note("Falsifying example: test(w=tensor([0.1, 0.2]))")
    public, _, _ = _explain(exc, REPORT, "public")
    hidden, _, _ = _explain(exc, REPORT, "hidden")
    assert "Falsifying example" in public and "Falsifying example" not in hidden


def test_a_group_of_student_failures_is_the_students_fault():
    """Hypothesis may report several distinct failures of one test as an ExceptionGroup."""
    group = ExceptionGroup("two bugs", [AssertionError("first"), StudentException("raised", function="f")])
    message, _, fault = _explain(group, REPORT, "public")
    assert fault == "student" and message.startswith("first") and "2 different failures" in message


def test_a_grader_exception_is_the_graders_fault_and_keeps_the_detail():
    message, detail, fault = _explain(KeyError("oops"), REPORT, "public")
    assert fault == "grader" and "not your fault" in message and "grader internals" in detail


def test_a_group_holding_a_grader_exception_is_the_graders_fault():
    group = ExceptionGroup("mixed", [AssertionError("a"), TypeError("our bug")])
    _, _, fault = _explain(group, REPORT, "public")
    assert fault == "grader"
