"""What ``hw4grade ci`` writes for GitHub Actions: the job summary, annotations, the artifact.

* ``$GITHUB_STEP_SUMMARY`` (appended, Markdown): the per-item table of the self-check and the
  first failures' messages in collapsible blocks.
* ``::error``/``::warning`` workflow commands on stdout: one per failing item (GitHub shows at
  most 10 errors per step, so the first 10), escaped as GitHub's toolkit escapes them.
* ``hw4-results/``: ``results.json`` (Gradescope format, public tests only) and ``feedback.md``;
  the template's workflow uploads that folder as an artifact.
"""

from __future__ import annotations

import re

from grader.outputs.points import fmt_points
from grader.outputs.selfcheck import FAILED, GRADER, NOT_STARTED, PASSED, rows
from grader.results import SubmissionResult

__all__ = ["escape_data", "escape_property", "step_summary", "workflow_commands"]

MAX_ERRORS = 10
_ICONS = {PASSED: "✅ passed", FAILED: "❌ failed", NOT_STARTED: "⬜ to do", GRADER: "⚠️ grader error"}


def escape_data(text: str) -> str:
    """Escape a workflow command's message (as ``@actions/core`` does)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command's property value (``title=...``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_commands(result: SubmissionResult) -> list[str]:
    out = []
    if result.grader_error:
        out.append(
            "::error title=hw4grade::"
            + escape_data(
                "The autograder itself failed on this commit (not your fault); rerun the job, and tell "
                "your instructor if it fails again."
            )
        )
    for row in rows(result):
        if row.status == PASSED:
            continue
        if row.status == NOT_STARTED:
            out.append(
                f"::warning title={escape_property(row.item + ' to do')}::"
                + escape_data(f"{row.title}: a function still raises NotImplementedError")
            )
            continue
        case = row.failures[0]
        message = f"{case.doc}\n{case.message}".strip() if case.doc else case.message
        out.append(
            f"::error title={escape_property(f'{row.item}: {row.title}')}::" + escape_data(message[:4000])
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
            f"{_ICONS.get(r.status, r.status)} | {_cell(r.reason)} |"
        )
    failing = [r for r in table if r.status == FAILED]
    for r in failing[:5]:
        case = r.failures[0]
        lines += [
            "",
            f"<details><summary>{_html(r.item)}: {_html(case.doc or case.name)}</summary>",
            "",
            *_fenced(case.message.strip()),
            "",
            "</details>",
        ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fenced(text: str) -> list[str]:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, *text.splitlines(), fence]
