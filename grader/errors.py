"""Student faults and grader faults are different exceptions and read differently in feedback.

A ``StudentError`` is the submission's doing (its function raised, hung, crashed the worker,
returned something ungradable, or is missing): the test fails and the student is told what
happened. A ``GraderError`` is ours: the result says so plainly and never blames the student.
"""

from __future__ import annotations

__all__ = [
    "BadReturn",
    "BudgetExhausted",
    "GraderError",
    "MissingDefinition",
    "SignatureMismatch",
    "StudentCrash",
    "StudentError",
    "StudentException",
    "StudentTimeout",
]


class StudentError(Exception):
    """Something the submission did. ``function`` is the student's name for it."""

    kind = "error"

    def __init__(self, message: str, function: str = "", traceback: str = "", call: str = ""):
        super().__init__(message)
        self.message, self.function, self.traceback, self.call = message, function, traceback, call

    def feedback(self) -> str:
        head = f"{self.call or self.function}: {self.message}" if (self.call or self.function) else self.message
        return head + (f"\n{self.traceback}" if self.traceback else "")


class StudentException(StudentError):
    """The student's function raised an exception."""

    kind = "exception"


class StudentTimeout(StudentError):
    """The call ran past its wall-clock limit (the worker was killed)."""

    kind = "timeout"


class StudentCrash(StudentError):
    """The worker died during the call (segfault, os._exit, memory or CPU limit, ...)."""

    kind = "crash"


class MissingDefinition(StudentError):
    """A required name is not defined anywhere in the submission."""

    kind = "missing"


class BadReturn(StudentError):
    """The function returned something that cannot be graded (wrong type, shape or size)."""

    kind = "return"


class SignatureMismatch(StudentError):
    """An older-term signature lacks what this test needs (e.g. ``STE`` without ``symmetric``)."""

    kind = "signature"


class BudgetExhausted(StudentError):
    """The submission already used up its time budget, or this function timed out repeatedly."""

    kind = "budget"


class GraderError(Exception):
    """A fault of the grader itself (never the student's)."""
