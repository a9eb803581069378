"""What ``hw4grade check`` prints: a student's self-check on public tests.

One row per rubric item that has public tests: points earned on them, a status and a one-line
reason (the failing call, expected vs got, as the test phrased it). Details of the first failures
follow. Items where a function still raises ``NotImplementedError`` (or is not defined) are
"to do" and folded into one line, so an untouched template gets a short "where to start"
guide instead of a wall of failures.

Only public tests run in a self-check; the result holds hidden tests as "not run" records and
nothing here prints their names, messages or count per item.

The report goes to a terminal (and, through ``hw4grade ci``, to a CI log): one-line slots take
student text through ``grader.outputs.escape.line`` and the whole report through ``plain``, so no
escape sequence or control character of a message or a file name reaches the terminal.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from grader.answers import Answers
from grader.outputs.escape import line, plain
from grader.outputs.points import fmt_points
from grader.results import STATUS_NOT_RUN, CaseResult, SubmissionResult

__all__ = ["ITEM_FUNCTIONS", "Row", "all_passed", "render", "rows"]

PASSED, FAILED, NOT_STARTED, GRADER = "passed", "FAILED", "to do", "grader error"

#: the functions a student writes for each item (DESIGN section 2), for the "where to start" guide
ITEM_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "lab1.a": ("loss", "gradient"),
    "lab1.b": ("run_gd",),
    "lab1.c": ("project_top_k", "run_projected_gd"),
    "lab1.d": ("run_l1_gd",),
    "lab1.e": ("soft_threshold", "run_proximal_gd"),
    "lab1.f": ("trimmed_soft_threshold", "run_trimmed_l1"),
    "lab2.b": ("prune_by_percentage",),
    "lab2.c": ("finetune_after_prune",),
    "lab2.e": ("global_prune_by_percentage",),
    "lab3.a": ("STE",),
    "lab3.e": ("STE",),
}
DETAIL_LINES = 10
DETAILS_SHOWN = 3


@dataclass
class Row:
    item: str
    title: str
    earned: float
    possible: float
    status: str
    reason: str = ""
    failures: list[CaseResult] = field(default_factory=list)
    passed: int = 0
    run: int = 0


def _not_started(case: CaseResult) -> bool:
    text = case.message or ""
    return "NotImplementedError" in text or "is not defined in your submission" in text


def rows(result: SubmissionResult) -> list[Row]:
    """One row per item with public tests that ran."""
    out = []
    for item in result.items.values():
        run = [c for c in item.cases if c.visibility == "public" and c.status != STATUS_NOT_RUN]
        if not run:
            continue
        failed = [c for c in run if not c.passed]
        row = Row(
            item.item,
            item.title,
            earned=sum(c.score for c in run),
            possible=sum(c.max_score for c in run),
            status=PASSED,
            failures=failed,
            passed=len(run) - len(failed),
            run=len(run),
        )
        if any(c.fault == "grader" for c in failed):
            row.status, row.reason = GRADER, "the checker failed on this item (not your fault)"
        elif any(_not_started(c) for c in failed):
            # A stub left in the item: its other failures are most likely consequences of it, and
            # given code (``bit is None`` -> ``w``) may pass while the rest is still a stub.
            row.status, row.reason = NOT_STARTED, "still raises NotImplementedError"
        elif failed:
            row.status, row.reason = FAILED, _first_line(failed[0].message) or failed[0].doc
        out.append(row)
    return out


def all_passed(result: SubmissionResult) -> bool:
    """Exit status 0 of a self-check: every public test that ran passed, the grader worked, and
    (with ``--notebooks``) every notebook ran to the end."""
    return (result.grader_error is None and all(r.status == PASSED for r in rows(result))
            and result.notebook_run.get("ok", True))


def render(
    result: SubmissionResult,
    where: str,
    answers: Answers | None = None,
    questions: int = 10,
    width: int = 100,
) -> str:
    """The self-check report; ``questions`` is the number of T/F questions of the term."""
    table = rows(result)
    head = f"hw4grade check: {line(where)} (public tests only; hidden tests run when you hand in)"
    lines = [head]
    if result.grader_error:
        last = [ln for ln in result.grader_error.strip().splitlines() if ln.strip()][-1:] or ["unknown error"]
        lines.append(f"The checker itself failed (not your fault): {line(last[0])[:width]}")
    shown = set(result.notebook_run.get("notes", ()))  # notebook notes: in their own section below
    lines += [f"note: {_first_line(w)[:width]}" for w in [w for w in result.warnings if w not in shown][:3]]
    if result.notebook_run:
        lines.append("Notebooks (run in the fast grading mode):")
        nb_lines = result.notebook_run.get("lines", [])
        lines += [f"  {_clip(_first_line(x), width - 2)}" for x in nb_lines[:12]]
        if len(nb_lines) > 12:
            lines.append(f"  ... and {len(nb_lines) - 12} more")
    started = [r for r in table if r.status != NOT_STARTED]
    todo = [r for r in table if r.status == NOT_STARTED]
    tf_todo = _tf_todo(answers, questions)
    total_run = sum(r.run for r in table)
    total_passed = sum(r.passed for r in table)
    if table and _untouched(table):
        lines += _guide(table, result, tf_todo)
        lines.append(
            f"{total_passed} of {total_run} public tests pass for now. "
            "Run `hw4grade check` again after each function."
        )
        return plain("\n".join(lines) + "\n")
    if not table:
        lines.append(
            "No public tests ran (this term's public tests may all be notebook checks: try --notebooks)."
        )
    if started:
        lines.append(f"{'item':<8}{'points':>12}  {'status':<13}reason")
        for r in started:
            pts = f"{fmt_points(r.earned, 2)}/{fmt_points(r.possible, 2)}"
            lines.append(f"{r.item:<8}{pts:>12}  {r.status:<13}{_clip(r.reason, width - 35)}")
    if todo:
        names = _functions(todo)
        lines.append(
            f"to do: {', '.join(r.item for r in todo)}"
            + (f" ({', '.join(names)} still raise NotImplementedError)" if names else "")
        )
    if tf_todo:
        lines.append(tf_todo)
    failing = [r for r in started if r.status == FAILED]
    if failing:
        lines += ["", "Details of the first failures:"]
        for r in failing[:DETAILS_SHOWN]:
            case = r.failures[0]
            lines.append(f"{r.item}: {line(case.doc or case.name)}")
            msg = case.message.strip().splitlines()
            more = len(msg) - DETAIL_LINES
            lines += [f"    {ln}" for ln in msg[:DETAIL_LINES]]
            if more > 0:
                lines.append(f"    ... ({more} more lines)")
    lines.append("")
    possible = sum(r.possible for r in table)
    earned = sum(r.earned for r in table)
    summary = (
        f"{total_passed} of {total_run} public tests pass "
        f"({fmt_points(earned, 2)} of {fmt_points(possible, 2)} public points)."
    )
    next_row = failing[0] if failing else (todo[0] if todo else None)
    if next_row is not None:
        summary += f" Next: {'fix' if next_row.status == FAILED else 'start'} {next_row.item}."
    elif total_run and not result.grader_error and not result.notebook_run.get("ok", True):
        summary += (" All public tests pass, but a notebook did not run cleanly (above): fix it before"
                    " you hand in, its checks are graded.")
    elif total_run and not result.grader_error:
        summary += " All public tests pass; hidden tests and notebook checks run when you hand in."
    lines.append(summary)
    return plain("\n".join(lines) + "\n")


def _untouched(table: list[Row]) -> bool:
    """Nothing done yet: no item passes, and every item with functions to write is a stub.
    (Items without functions -- an inline loop in a notebook -- cannot be told apart from a
    wrong attempt, so they do not prevent the guide.)"""
    return (
        all(r.status != PASSED for r in table)
        and all(r.status == NOT_STARTED for r in table if r.item in ITEM_FUNCTIONS)
        and any(r.status == NOT_STARTED for r in table)
    )


def _guide(table: list[Row], result: SubmissionResult, tf_todo: str) -> list[str]:
    where = {}
    for found in result.found:
        name, _, loc = found.partition(": ")
        where[name] = "(not found: add it)" if "not found" in loc else line(loc.split(" (")[0].split(",")[0])
    lines = [
        "Nothing is implemented yet: the functions the public tests call still raise NotImplementedError.",
        "Start here, in this order:",
    ]
    steps: dict[str, tuple[list[str], list[str]]] = {}  # file -> (functions, items), in order
    for r in table:
        names = list(ITEM_FUNCTIONS.get(r.item, ()))
        file = where.get(names[0], "your notebook") if names else "hw4.ipynb"
        functions, items = steps.setdefault(file, ([], []))
        if names:
            functions += [n for n in names if n not in functions]
        else:
            functions.append(f"the {r.title.split(': ', 1)[-1]} cell")
        items.append(r.item)
    for n, (file, (functions, items)) in enumerate(steps.items(), 1):
        text = f"  {n}. {file}: {', '.join(functions)} ({_span(items)})"
        lines += textwrap.wrap(text, 100, subsequent_indent="       ")
    if tf_todo:
        lines.append(f"  {len(steps) + 1}. {tf_todo}")
    return lines


def _span(items: list[str]) -> str:
    return (
        items[0]
        if len(items) == 1
        else f"{items[0]} to {items[-1]}"
        if len(items) > 2
        else " and ".join(items)
    )


def _tf_todo(answers: Answers | None, questions: int) -> str:
    if answers is None:
        return ""
    if answers.file is None:
        return "answers.yaml: not found (copy it from the template and fill in each T/F choice)"
    if answers.refused:
        return f"{answers.refused} (until it is, no T/F choice counts)"
    empty = questions - len(answers.choices)
    if empty > 0:
        return (
            f"answers.yaml: {empty} question(s) have no T/F choice yet (T or F, plus a one-line explanation)"
        )
    return ""


def _functions(todo: list[Row]) -> list[str]:
    names: list[str] = []
    for r in todo:
        names += [n for n in ITEM_FUNCTIONS.get(r.item, ()) if n not in names]
    return names


def _first_line(text: str) -> str:
    return next((line(ln) for ln in plain(text).splitlines() if line(ln)), "")


def _clip(text: str, n: int) -> str:
    n = max(n, 20)
    return text if len(text) <= n else text[: n - 3] + "..."
