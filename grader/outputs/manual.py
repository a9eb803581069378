"""``manual.csv``: the points left to a person, as rows to fill; and ``hw4grade merge`` of it.

One row per student and rubric item with ``manual`` points in the config: the T/F explanations
(with the student's text from ``answers.yaml``), the Lab 1 (a) derivation, the comments on plots
and results; and all of an item's points where the grader handed it over to a person (Lab 1
written with the student's own names, T/F answers only in the written report: see
``grader.results.hand_over``), with the files to read. A person fills ``points`` (and optionally
``comment``, shown to the student) and runs ``hw4grade merge``. Merged scores live in the batch's
state (``.hw4grade/manual.json``), apart from the automatic results, so regrading a submission
never loses them; a regenerated sheet comes prefilled with them.

The sheet is opened in a spreadsheet, and its ``student_answer`` column is the student's own
text: every cell is written through ``grader.outputs.escape.csv_row`` (text a spreadsheet would
run as a formula gets a leading ``'``), and merging reads every cell back through
``csv_value``, so a comment or an id comes back exactly as it was written.

Merging is all or nothing: every problem of the sheet (an unknown student or item, points that
are not a number, below 0 or above the item's manual maximum, one cell given twice) is reported
with its line, and nothing is written until the sheet is clean. A blank ``points`` cell means
"not graded yet" and leaves an earlier merged score as it is.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.outputs.escape import csv_row, csv_value
from grader.outputs.points import fmt_points
from grader.results import SubmissionResult
from reference.config import Config

__all__ = [
    "COLUMNS",
    "ManualScores",
    "MergeError",
    "MergeReport",
    "apply_manual",
    "dump_scores",
    "load_scores",
    "manual_csv",
    "manual_maxima",
    "merge_sheet",
]

COLUMNS = ("student", "item", "max_points", "points", "comment", "what_to_grade", "student_answer")
REQUIRED_COLUMNS = ("student", "item", "points")

#: student -> item -> {"points": float, "comment": str}
ManualScores = dict[str, dict[str, dict[str, Any]]]

#: what a person grades for items other than T/F, and the names whose files hold it
_TASKS = {
    "lab1.a": ("the derivation of the loss gradient and of the GD update", ("gradient", "loss")),
    "lab1.c": ("the plot of W over the iterations and its comment", ("run_projected_gd",)),
    "lab1.d": ("the plots for each lambda and their comment", ("run_l1_gd",)),
    "lab1.e": ("the plots for each threshold and their comment", ("run_proximal_gd",)),
    "lab1.f": ("the plots for each threshold and their comment", ("run_trimmed_l1",)),
    "lab2.d": ("the comment on accuracy vs sparsity during iterative pruning", ("finetune_after_prune",)),
    "lab2.e": ("the comparison of global and per-layer pruning", ("global_prune_by_percentage",)),
    "lab3.c": ("the comment on accuracy after finetuning at each bit width", ("STE",)),
    "lab3.d": ("the comment on quantizing the pruned model", ("STE",)),
}


class MergeError(ValueError):
    """The sheet has problems; ``problems`` lists each one with its file and line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class MergeReport:
    merged: int = 0
    blank: int = 0
    students: set[str] = field(default_factory=set)


def manual_items(cfg: Config) -> list[str]:
    return [item for item, r in cfg.rubric.items() if r.manual > 0]


def manual_csv(
    results: list[SubmissionResult], answers: dict[str, dict[str, Any]], cfg: Config, scores: ManualScores
) -> str:
    """The sheet: one row per (student, manual item), prefilled with merged scores.

    ``answers[student]`` is ``{"choices": {...}, "explanations": {...}}`` as read from the
    submission's ``answers.yaml`` when it was graded.
    """
    rows = [csv_row(COLUMNS)]
    for r in results:
        given = answers.get(r.student, {})
        for item, most in manual_maxima(r, cfg).items():
            merged = scores.get(r.student, {}).get(item, {})
            task, answer = _task(item, r, given, cfg)
            if most > cfg.rubric[item].manual:  # handed over whole (grader.results.hand_over)
                task = f"all of {cfg.rubric[item].title}: {_reason(r, item)}"
            rows.append(
                csv_row(
                    [
                        r.student,
                        item,
                        fmt_points(most),
                        fmt_points(merged["points"]) if "points" in merged else "",
                        merged.get("comment", ""),
                        task,
                        answer,
                    ]
                )
            )
    return "".join(rows)


def manual_maxima(result: SubmissionResult, cfg: Config) -> dict[str, float]:
    """The manual points of each item for this submission: the config's, or all of an item's
    points where the grader handed the item over to a person (``grader.results.hand_over``)."""
    out = {}
    for item, rubric in cfg.rubric.items():
        mine = result.items[item].manual if item in result.items else 0.0
        if max(rubric.manual, mine) > 0:
            out[item] = max(rubric.manual, mine)
    return out


def _reason(result: SubmissionResult, item: str) -> str:
    messages = [c.message for c in result.items[item].cases if c.message.startswith("graded by hand")]
    return messages[0] if messages else "graded by hand"


def _task(item: str, result: SubmissionResult, given: dict[str, Any], cfg: Config) -> tuple[str, str]:
    if item.startswith("tf."):
        question = f"1.{item.split('.')[1]}"
        choice = given.get("choices", {}).get(question)
        key = cfg.tf_key.get(question)
        verdict = "no choice given" if choice is None else f"chose {choice}, key {key}"
        explanation = given.get("explanations", {}).get(question, "")
        return f"explanation of T/F {question} ({verdict})", explanation or "(no explanation given)"
    task, names = _TASKS.get(item, (f"{cfg.rubric[item].title}: the part graded by hand", ()))
    where = sorted(
        {
            line.split(": ", 1)[1].split(",")[0]
            for line in result.found
            if line.split(": ", 1)[0] in names and "not found" not in line
        }
    )
    return task + (f" (see {', '.join(where)})" if where else ""), ""


def merge_sheet(
    sheet: Path, students: list[str], cfg: Config, current: ManualScores,
    maxima: dict[str, dict[str, float]] | None = None,
) -> tuple[ManualScores, MergeReport]:
    """Read a filled sheet and return the merged scores (``current`` updated) and a report.
    ``maxima[student]``: that submission's manual points per item (``manual_maxima``) where they
    differ from the config's (an item the grader handed over whole).

    Raises:
        MergeError: with every problem found; nothing is merged then.
    """
    try:
        text = sheet.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MergeError([f"{sheet}: no such file (fill the manual.csv that hw4grade grade wrote)"]) from None
    except UnicodeDecodeError as exc:
        raise MergeError(
            [f"{sheet}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as CSV UTF-8"]
        ) from None
    dialect = _dialect(text)
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise MergeError(
            [
                f"{sheet}: missing column(s) {', '.join(missing)}; the sheet's columns are "
                f"{', '.join(header) or '(none)'}, expected {', '.join(COLUMNS)}"
            ]
        )
    known = set(students)
    allowed = {i: cfg.rubric[i].manual for i in manual_items(cfg)}
    problems: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    updates: ManualScores = {}
    report = MergeReport()
    for raw_row in reader:
        line = reader.line_num
        row = {
            (k or "").strip(): csv_value(v.strip()).strip() if isinstance(v, str) else "" for k, v in raw_row.items()
        }
        student, item, raw = row.get("student", ""), row.get("item", ""), row.get("points", "")
        where = f"{sheet}: line {line}"
        if not student and not item and not raw:
            continue
        if student not in known:
            problems.append(f"{where}: student {student!r} is not in this batch ({_some(students)})")
            continue
        mine = {**allowed, **(maxima or {}).get(student, {})}
        if item not in mine:
            why = "has no points graded by hand" if item in cfg.rubric else "is not a rubric item"
            problems.append(f"{where}: item {item!r} {why} (items graded by hand: {', '.join(allowed)})")
            continue
        if (student, item) in seen:
            problems.append(f"{where}: {student} {item} appears twice (also line {seen[student, item]})")
            continue
        seen[student, item] = line
        if raw == "":
            report.blank += 1
            continue
        try:
            points = float(raw.replace(",", ".")) if raw.count(",") == 1 and "." not in raw else float(raw)
        except ValueError:
            problems.append(f"{where}: points {raw!r} for {student} {item} is not a number")
            continue
        if not math.isfinite(points) or points < 0:
            problems.append(
                f"{where}: points {raw} for {student} {item} must be between 0 and "
                f"{fmt_points(mine[item])}"
            )
            continue
        if points > mine[item] + 1e-9:
            problems.append(
                f"{where}: {fmt_points(points)} points for {student} {item} is above its maximum "
                f"of {fmt_points(mine[item])}"
            )
            continue
        updates.setdefault(student, {})[item] = {"points": points, "comment": row.get("comment", "")}
    if problems:
        raise MergeError(problems)
    merged = {s: dict(items) for s, items in current.items()}
    for student, items in updates.items():
        merged.setdefault(student, {}).update(items)
        report.merged += len(items)
        report.students.add(student)
    return merged, report


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    # Spreadsheets in some locales save "CSV" with semicolons or tabs.
    try:
        return csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _some(names: list[str], n: int = 5) -> str:
    if not names:
        return "the batch has no students"
    shown = ", ".join(names[:n])
    return f"students: {shown}" + (f" and {len(names) - n} more" if len(names) > n else "")


def apply_manual(result: SubmissionResult, scores: ManualScores) -> SubmissionResult:
    """Set the merged manual scores (and comments) on ``result``'s items."""
    for item, entry in scores.get(result.student, {}).items():
        if item in result.items:
            result.items[item].manual_score = float(entry["points"])
            result.items[item].manual_comment = str(entry.get("comment", ""))
    return result


def load_scores(path: Path) -> ManualScores:
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def dump_scores(scores: ManualScores) -> str:
    return json.dumps(scores, indent=1, sort_keys=True) + "\n"
