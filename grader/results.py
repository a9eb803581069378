"""Grading results: a test case, a rubric item, a submission; and their Gradescope form.

Scores follow the assignment config: an item's ``function`` points are shared by its function
tests in proportion to their ``weight`` (likewise its ``notebook`` points over its notebook
checks); a test earns ``fraction x its share`` (1 when it passes, the partial credit it set when
it fails, else 0). ``manual`` points are left to a person (``manual.csv``, ``hw4grade merge``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from reference.config import Config

__all__ = ["STATUS_NOT_RUN", "CaseResult", "ItemResult", "SubmissionResult", "build_result", "hand_over"]

STATUS_NOT_RUN = "not run"


@dataclass
class CaseResult:
    """One test of one submission."""

    name: str
    item: str
    kind: str  # "function" or "notebook"
    visibility: str  # "public" or "hidden"
    weight: float
    status: str  # "passed", "failed", "error" (grader fault) or "not run"
    fraction: float = 0.0
    doc: str = ""  # the test's one-line docstring, addressed to the student
    message: str = ""  # student-safe feedback
    detail: str = ""  # for the instructor only (grader tracebacks)
    fault: str | None = None  # "student" or "grader"
    seconds: float = 0.0
    max_score: float = 0.0
    score: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class ItemResult:
    item: str
    title: str
    points: float
    manual: float
    cases: list[CaseResult] = field(default_factory=list)
    manual_score: float | None = None  # merged in later
    manual_comment: str = ""  # the person's note to the student, merged with the score

    @property
    def automatic(self) -> float:
        return self.points - self.manual

    @property
    def score(self) -> float:
        """Automatic points earned."""
        return round(sum(c.score for c in self.cases), 6)

    @property
    def possible(self) -> float:
        return round(sum(c.max_score for c in self.cases), 6)


@dataclass
class SubmissionResult:
    student: str
    items: dict[str, ItemResult]
    isolation: str = ""
    mode: str = "full"  # "full" (functions + notebooks), "functions" (--no-notebooks), "public"
    execution_time: float = 0.0
    found: list[str] = field(default_factory=list)  # where each required name was found
    warnings: list[str] = field(default_factory=list)
    grader_error: str | None = None  # the grader itself failed on this submission
    output: str = ""  # what the student's code printed (capped), for the instructor
    # A self-check with --notebooks: {"ok": every notebook ran to the end, "lines": one per
    # notebook and note}. Empty otherwise (grading reports the notebooks through its checks).
    notebook_run: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return round(sum(i.score for i in self.items.values()), 6)

    @property
    def possible(self) -> float:
        return round(sum(i.possible for i in self.items.values()), 6)

    @property
    def manual_score(self) -> float:
        return round(sum(i.manual_score or 0.0 for i in self.items.values()), 6)

    def cases(self) -> list[CaseResult]:
        return [c for i in self.items.values() for c in i.cases]

    def to_gradescope(self, hidden_visibility: str = "after_published",
                      include_not_run: bool = True) -> dict[str, Any]:
        """Gradescope's ``results.json``: score, tests[] with item tags, execution time.

        Args:
            hidden_visibility: how hidden tests appear to students (the config's
                ``grading.hidden_visibility``).
            include_not_run: keep tests this run did not execute (hidden tests in a self-check,
                notebook checks with ``--no-notebooks``) as failed entries with the reason; a
                public-only run (CI) leaves them out, since they were not failed.

        The grader's traceback is never included: this file reaches students (CI artifacts,
        Gradescope), and a traceback through ``tests/rubric`` would quote hidden test code.
        """
        tests = []
        for case in self.cases():
            if case.status == STATUS_NOT_RUN and not include_not_run:
                continue
            output = case.message or ("passed" if case.passed else case.status)
            tests.append({
                "name": f"{case.item} {case.name}",
                "name_format": "text",
                "number": case.item,
                "score": round(case.score, 4),
                "max_score": round(case.max_score, 4),
                "status": "passed" if case.passed else "failed",
                "visibility": "visible" if case.visibility == "public" else hidden_visibility,
                "tags": [case.item, case.kind],
                "output": (case.doc + "\n\n" + output).strip() if case.doc else output,
                "output_format": "text",
            })
        for item in self.items.values():
            if item.manual_score is not None:
                note = "Points given by a grader."
                if item.manual_comment:
                    note += f"\n\n{item.manual_comment}"
                tests.append({
                    "name": f"{item.item} (graded by hand)", "name_format": "text", "number": item.item,
                    "score": item.manual_score, "max_score": item.manual, "status": "passed",
                    "visibility": "after_published", "tags": [item.item, "manual"],
                    "output": note, "output_format": "text",
                })
        if self.grader_error:
            tests.append({
                "name": "grader error", "name_format": "text", "score": 0, "max_score": 0,
                "status": "failed", "visibility": "visible", "tags": ["grader"],
                "output": "The autograder itself failed on this submission; this is not your fault. "
                          "Your instructor has the details.", "output_format": "text",
            })
        notes = [f"Isolation: {self.isolation}."] if self.isolation else []
        notes += self.warnings
        return {
            "score": round(self.score + self.manual_score, 4),
            "execution_time": round(self.execution_time, 2),
            "output": "\n".join(notes),
            "output_format": "text",
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": tests,
            "extra_data": {"mode": self.mode, "possible_automatic": self.possible,
                           "found": self.found, "grader_failed": self.grader_error is not None},
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubmissionResult:
        items = {}
        for key, raw in data["items"].items():
            cases = [CaseResult(**c) for c in raw.pop("cases")]
            items[key] = ItemResult(cases=cases, **raw)
        rest = {k: v for k, v in data.items() if k != "items"}
        return cls(items=items, **rest)


#: parts a submission may hand over to a person (``Discovery.by_hand``): item prefix, what is missing
_BY_HAND = {
    "lab1": ("lab1.", "Lab 1", "defines none of the Lab 1 functions the grader calls (loss, gradient, run_gd, ...)"),
    "tf": ("tf.", "True/False", "has no answers.yaml with the True/False choices"),
}


def hand_over(result: SubmissionResult, by_hand: dict[str, list[str]]) -> SubmissionResult:
    """Give a person the parts the grader cannot grade: every point of their items becomes a
    manual point of this submission (so ``manual.csv`` asks for all of it, with the files to
    read), their automatic tests give way to one "graded by hand" entry per item with the reason,
    and a warning says so. Nothing is lost: the automatic score was 0 for want of anything to call."""
    for part, files in by_hand.items():
        if part not in _BY_HAND:
            continue
        prefix, label, missing = _BY_HAND[part]
        where = ", ".join(files) if files else "the written report"
        reason = f"graded by hand: your submission {missing}; a person reads {where}"
        for item in result.items.values():
            if not item.item.startswith(prefix):
                continue
            item.manual = item.points
            item.cases = [CaseResult(name="graded_by_hand", item=item.item, kind="function", visibility="public",
                                     weight=1.0, status=STATUS_NOT_RUN, doc=f"{item.title}: graded by a person.",
                                     message=reason)]
        result.warnings.append(f"{label}: {reason} (its points are on the manual sheet)")
    return result


def build_result(student: str, cfg: Config, cases: list[CaseResult], **extra: Any) -> SubmissionResult:
    """Give every case its share of its item's points and group them by item."""
    items = {item_id: ItemResult(item_id, r.title, r.points, r.manual) for item_id, r in cfg.rubric.items()}
    for kind, pool in (("function", "function"), ("notebook", "notebook")):
        by_item: dict[str, list[CaseResult]] = {}
        for case in cases:
            if case.kind == kind:
                by_item.setdefault(case.item, []).append(case)
        for item_id, group in by_item.items():
            points = getattr(cfg.rubric[item_id], pool)
            total_weight = sum(c.weight for c in group) or 1.0
            for case in group:
                case.max_score = round(points * case.weight / total_weight, 6)
                case.score = round(case.max_score * (case.fraction if case.status in ("passed", "failed") else 0.0), 6)
    for case in cases:
        items[case.item].cases.append(case)
    return SubmissionResult(student=student, items=items, **extra)
