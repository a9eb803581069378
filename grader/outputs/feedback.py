"""``feedback.md``: what a student reads about one graded submission.

Student-safe by construction: it is built from the case records' ``doc`` and ``message`` only
(already redacted, and without Hypothesis inputs for hidden tests), never from ``detail`` (the
instructor's tracebacks). Hidden tests are listed as the config's ``hidden_visibility`` says:
with ``hidden`` they are counted but neither named nor explained.

Inert by construction: every student-derived string (messages, warnings, file names, the
student's name, a grader's comment) goes in through ``grader.outputs.escape`` -- a code span
inline, a fenced block for a message -- so no HTML, link, image or mention of it renders.
"""

from __future__ import annotations

from grader.outputs.escape import line, md_block, md_code
from grader.outputs.points import fmt_points
from grader.results import STATUS_NOT_RUN, CaseResult, ItemResult, SubmissionResult
from reference.config import Config

__all__ = ["feedback_markdown"]

_MODES = {
    "full": "all tests, including the checks on your executed notebooks",
    "functions": "function tests only (your notebooks were not executed in this run)",
    "public": "public tests only (a self-check; hidden tests run when your submission is graded)",
}
MAX_MESSAGE_LINES = 25


def feedback_markdown(result: SubmissionResult, cfg: Config) -> str:
    show_hidden = cfg.grading.hidden_visibility != "hidden"
    manual_total = sum(i.manual for i in result.items.values())
    merged = [i for i in result.items.values() if i.manual_score is not None]
    lines = [f"# {cfg.title}: feedback for {md_code(result.student)}", ""]
    if result.grader_error:
        lines += [
            "**The autograder failed on your submission. This is not your fault**: your instructor "
            "has the details and will grade it again. The points below are incomplete.",
            "",
        ]
    lines.append(f"**Automatic points: {fmt_points(result.score)} of {fmt_points(result.possible)}**  ")
    if merged:
        lines.append(
            f"Points graded by a person: {fmt_points(result.manual_score)} of "
            f"{fmt_points(sum(i.manual for i in merged))}  "
        )
    elif manual_total:
        lines.append(
            f"{fmt_points(manual_total)} more points (explanations, derivations, comments on "
            "plots) are graded by a person.  "
        )
    lines += [
        f"Graded: {_MODES.get(result.mode, result.mode)}.",
        "",
        "| item | what | points | tests |",
        "|---|---|---|---|",
    ]
    for item in result.items.values():
        points = fmt_points(item.score + (item.manual_score or 0.0))
        possible = fmt_points(item.possible + (item.manual if item.manual_score is not None else 0.0))
        lines.append(
            f"| {item.item} | {_cell(item.title)} | {points} / {possible} | {_tally(item, show_hidden)} |"
        )
    details = [item for item in result.items.values() if _needs_detail(item)]
    if details:
        lines += ["", "## What to look at", ""]
        for item in details:
            lines += _item_details(item, show_hidden)
    notes = _notes(result)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {md_code(n)}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"


def _tally(item: ItemResult, show_hidden: bool) -> str:
    run = [c for c in item.cases if c.status != STATUS_NOT_RUN]
    if not item.cases:
        return "graded by a person" if item.manual else "no automatic tests"
    if not run:
        return "not run in this grading" + ("; graded by a person" if item.manual_score is not None else "")
    passed = sum(c.passed for c in run)
    text = f"{passed} of {len(run)} passed"
    hidden = sum(c.visibility == "hidden" for c in run)
    if hidden and not show_hidden:
        text += f" ({hidden} hidden)"
    not_run = len(item.cases) - len(run)
    if not_run:
        text += f"; {not_run} not run"
    if item.manual_score is not None:
        text += "; graded by a person"
    return text


def _needs_detail(item: ItemResult) -> bool:
    return any(not c.passed for c in item.cases) or bool(item.manual_comment)


def _item_details(item: ItemResult, show_hidden: bool) -> list[str]:
    out = [f"### {item.item}: {item.title}", ""]
    hidden_failed = 0
    for case in item.cases:
        if case.passed:
            continue
        if case.visibility == "hidden" and not show_hidden:
            hidden_failed += case.status != STATUS_NOT_RUN
            continue
        out += _case(case)
    if hidden_failed:
        out += [f"- {hidden_failed} hidden test(s) failed; they are not shown.", ""]
    if item.manual_comment:
        out += [f"- Grader's comment: {_oneline(item.manual_comment)}", ""]
    return out


def _case(case: CaseResult) -> list[str]:
    what = case.doc or case.name
    if case.status == STATUS_NOT_RUN:
        return [f"- (not run) {_oneline(what)}: {md_code(case.message)}", ""]
    if case.fault == "grader":
        return [
            f"- {_oneline(what)}: the grader failed on this test (not your fault); your instructor "
            "has the details.",
            "",
        ]
    label = "partly passed" if case.score > 0 else "failed"
    out = [f"- {label}: {_oneline(what)} ({fmt_points(case.score)} of {fmt_points(case.max_score)})"]
    if case.message:
        msg = case.message.splitlines()
        if len(msg) > MAX_MESSAGE_LINES:
            msg = [*msg[:MAX_MESSAGE_LINES], f"... ({len(msg) - MAX_MESSAGE_LINES} more lines)"]
        out += md_block("\n".join(msg), indent="  ")
    out.append("")
    return out


def _notes(result: SubmissionResult) -> list[str]:
    notes = list(result.warnings)
    problems = [f for f in result.found if "not found" in f or "defined differently" in f]
    notes += problems
    return notes


def _cell(text: str) -> str:
    return _oneline(text).replace("|", "\\|")


def _oneline(text: str) -> str:
    # Our own text (titles, test docstrings) and the instructor's comments: one line, no controls.
    return line(text)
