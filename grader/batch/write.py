"""Write a batch's outputs from its records: per student ``results.json`` and ``feedback.md``,
and the batch files ``gradebook.csv``, ``manual.csv``, ``summary.html``,
``grader-errors/<student>.txt``.

Everything written is a pure function of the records and the merged manual scores, so an
interrupted batch run again produces the same files as an uninterrupted one (``execution_time``
in ``results.json`` aside). What each file says is ``grader.outputs``' business.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from pathlib import Path

from grader.batch.store import BatchDir, result_of
from grader.outputs import manual as manual_out
from grader.outputs.atomic import write_text
from grader.outputs.escape import plain
from grader.outputs.feedback import feedback_markdown
from grader.outputs.gradebook import gradebook_csv
from grader.outputs.results_json import results_text
from grader.outputs.summary import summary_html
from grader.results import SubmissionResult
from reference.config import Config

__all__ = ["write_outputs", "write_student_outputs"]


def write_outputs(
    bd: BatchDir, cfg: Config, students: list[str] | None = None, merged_sheet: Path | None = None
) -> list[SubmissionResult]:
    """(Re)write every product of the batch from its records and merged manual scores.

    Returns the results written, in gradebook order. Students without a record yet (an
    interrupted batch) are left out of the batch files until they are graded. ``merged_sheet``
    is the sheet ``hw4grade merge`` just read: if it is ``OUT/manual.csv``, its edits are merged
    and it may be rewritten.
    """
    students = bd.students() if students is None else students
    scores = manual_out.load_scores(bd.manual_file)
    results, answers = [], {}
    for student in students:
        record = bd.load_record(student)
        if record is None:
            continue
        result = manual_out.apply_manual(result_of(record), scores)
        write_student_outputs(bd, result, cfg)
        results.append(result)
        answers[student] = record.get("answers", {})
    errors_dir = bd.out / "grader-errors"
    failed = {r.student for r in results if _grader_faults(r)}
    if errors_dir.exists():
        for stale in errors_dir.glob("*.txt"):
            if stale.stem not in failed:
                stale.unlink()
    write_text(bd.out / "gradebook.csv", gradebook_csv(results))
    merged = merged_sheet is not None and merged_sheet.resolve() == (bd.out / "manual.csv").resolve()
    _write_sheet(bd, manual_out.manual_csv(results, answers, cfg, scores), force=merged)
    write_text(bd.out / "summary.html", summary_html(results, cfg, bd.batch_warnings()))
    return results


def write_student_outputs(bd: BatchDir, result: SubmissionResult, cfg: Config) -> None:
    folder = bd.out / result.student
    write_text(folder / "results.json", results_text(result, cfg))
    write_text(folder / "feedback.md", feedback_markdown(result, cfg))
    faults = _grader_faults(result)
    if faults:
        write_text(bd.out / "grader-errors" / f"{result.student}.txt", faults)


def _grader_faults(result: SubmissionResult) -> str:
    """The instructor's account of what went wrong in the grader for one submission."""
    parts = []
    if result.grader_error:
        parts.append(f"The grader failed on {result.student}:\n\n{result.grader_error}")
    for case in result.cases():
        if case.fault == "grader":
            parts.append(f"{case.item} {case.name}: {case.status}\n{case.detail or case.message}")
    # read with `cat` in a terminal: the student's text in a traceback keeps no escape sequence
    return plain("\n\n".join(parts)) + "\n" if parts else ""


def _write_sheet(bd: BatchDir, text: str, force: bool = False) -> None:
    """Write ``manual.csv`` unless a person edited it since and has not merged it yet."""
    sheet = bd.out / "manual.csv"
    digest = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    try:
        last = json.loads(bd.sheet_file.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError):
        last = None
    if not force and sheet.exists() and last is not None and digest(sheet.read_bytes()) != last:
        write_text(bd.out / "manual.new.csv", text)
        print(
            f"hw4grade: {sheet} was edited and not merged; left as it is. The fresh sheet is "
            f"{bd.out / 'manual.new.csv'}: run `hw4grade merge --out {bd.out}` first.",
            file=sys.stderr,
        )
        return
    write_text(sheet, text)
    write_text(bd.sheet_file, json.dumps({"sha256": digest(text.encode())}) + "\n")
    with contextlib.suppress(FileNotFoundError):
        (bd.out / "manual.new.csv").unlink()
