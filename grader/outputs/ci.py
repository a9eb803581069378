"""What ``hw4grade ci`` writes for GitHub Actions: the job summary, annotations, the artifact.

* ``$GITHUB_STEP_SUMMARY`` (appended, Markdown): the per-item table of the self-check and the
  first failures' messages in collapsible blocks.
* ``::error``/``::warning`` workflow commands on stdout: one per failing item (GitHub shows at
  most 10 errors per step, so the first 10), escaped as GitHub's toolkit escapes them.
* the self-check report on stdout before them (:func:`stdout_text`), wrapped so that no line of
  it -- student text included -- acts as a workflow command (``::add-mask::``, ``##[error]``...).
* ``hw4-results/``: ``results.json`` (Gradescope format, public tests only) and ``feedback.md``;
  the template's workflow uploads that folder as an artifact.

Student text reaches the summary only through ``grader.outputs.escape`` (code spans, fenced
blocks, HTML-escaped ``<summary>``): no raw HTML, image, link or mention of it renders.
"""

from __future__ import annotations

from grader.outputs.escape import gh_data, gh_inert, gh_property, html_text, md_block, md_cell
from grader.outputs.points import fmt_points
from grader.outputs.selfcheck import FAILED, GRADER, NOT_STARTED, PASSED, rows
from grader.results import SubmissionResult

__all__ = ["stdout_text", "step_summary", "workflow_commands"]

MAX_ERRORS = 10
_ICONS = {PASSED: "✅ passed", FAILED: "❌ failed", NOT_STARTED: "⬜ to do", GRADER: "⚠️ grader error"}


def stdout_text(report: str, result: SubmissionResult) -> str:
    """What ``hw4grade ci`` prints: the self-check ``report`` made inert for the runner, then our
    own annotations (after the runner reads commands again)."""
    return gh_inert(report) + "".join(f"{c}\n" for c in workflow_commands(result))


def workflow_commands(result: SubmissionResult) -> list[str]:
    out = []
    if result.grader_error:
        out.append(
            "::error title=hw4grade::"
            + gh_data(
                "The autograder itself failed on this commit (not your fault); rerun the job, and tell "
                "your instructor if it fails again."
            )
        )
    for row in rows(result):
        if row.status == PASSED:
            continue
        if row.status == NOT_STARTED:
            out.append(
                f"::warning title={gh_property(row.item + ' to do')}::"
                + gh_data(f"{row.title}: a function still raises NotImplementedError")
            )
            continue
        case = row.failures[0]
        message = f"{case.doc}\n{case.message}".strip() if case.doc else case.message
        out.append(
            f"::error title={gh_property(f'{row.item}: {row.title}')}::" + gh_data(message[:4000])
        )
    errors = [a for a in out if a.startswith("::error")][:MAX_ERRORS]
    return errors + [a for a in out if a.startswith("::warning")]


def step_summary(result: SubmissionResult) -> str:
    table = rows(result)
    passed = sum(r.passed for r in table)
    run = sum(r.run for r in table)
    lines = ["## HW4 self-check (public tests)", ""]
    if result.grader_error:
        lines += ["> **The autograder failed on this commit (not your fault).**", ""]
    lines += [
        f"**{passed} of {run} public tests pass** "
        f"({fmt_points(sum(r.earned for r in table))} of {fmt_points(sum(r.possible for r in table))} "
        "public points). Hidden tests and notebook checks run when your work is graded.",
        "",
        "| item | what | points | status | reason |",
        "|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r.item} | {_cell(r.title)} | {fmt_points(r.earned)} / {fmt_points(r.possible)} | "
            f"{_ICONS.get(r.status, r.status)} | {md_cell(r.reason)} |"
        )
    failing = [r for r in table if r.status == FAILED]
    for r in failing[:5]:
        case = r.failures[0]
        lines += [
            "",
            f"<details><summary>{html_text(r.item)}: {html_text(case.doc or case.name)}</summary>",
            "",
            *md_block(case.message.strip()),
            "",
            "</details>",
        ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    # our own titles: one line, "|" escaped (student text goes through md_cell)
    return " ".join(text.split()).replace("|", "\\|")
