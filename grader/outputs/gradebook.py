"""``gradebook.csv`` (DESIGN section 7) and the compact table ``hw4grade grade`` prints.

Columns: ``student``, one per rubric item id in ``reference.config.ITEM_IDS`` order, ``total``.
An item's cell is the automatic points earned; once manual scores are merged
(``hw4grade merge``) it is automatic + manual points of that item, so the total is always the sum
of the row's item cells. A submission the grader failed on (``grader_error``) has blank cells:
a blank cannot be mistaken for a zero the student earned.

Every cell goes through ``grader.outputs.escape.csv_row``: a student id (or anything else) that
a spreadsheet could read as a formula is written as text.
"""

from __future__ import annotations

from grader.outputs.escape import csv_row, line
from grader.outputs.points import PARTS, fmt_points, part_of
from grader.results import SubmissionResult
from reference.config import ITEM_IDS

__all__ = ["COLUMNS", "gradebook_csv", "gradebook_table", "item_points"]

COLUMNS = ("student", *ITEM_IDS, "total")


def item_points(result: SubmissionResult, item: str) -> float:
    """Points earned on one item: automatic, plus the merged manual score if any."""
    it = result.items[item]
    return round(it.score + (it.manual_score or 0.0), 6)


def gradebook_csv(results: list[SubmissionResult]) -> str:
    """The gradebook, one row per student in the given order."""
    rows = [csv_row(COLUMNS)]
    for r in results:
        if r.grader_error:
            rows.append(csv_row([r.student, *([""] * len(ITEM_IDS)), ""]))
            continue
        cells = [item_points(r, i) for i in ITEM_IDS]
        rows.append(csv_row([r.student, *map(fmt_points, cells), fmt_points(sum(cells))]))
    return "".join(rows)


def gradebook_table(results: list[SubmissionResult]) -> str:
    """A terminal-width view of the gradebook: points per part and the total, one line each."""
    parts = list(PARTS)
    graded = [r for r in results if not r.grader_error]
    possible = {p: 0.0 for p in parts}
    for item in ITEM_IDS:
        # Every graded result of one batch has the same possible points per item; merged manual
        # points count once any student has them.
        auto = max((r.items[item].possible for r in graded), default=0.0)
        manual = (
            results[0].items[item].manual
            if any(r.items[item].manual_score is not None for r in graded)
            else 0.0
        )
        possible[part_of(item)] += auto + manual
    names = {r.student: line(r.student) for r in results}  # ids are sanitized; this is the terminal
    width = max([len("student"), *map(len, names.values())])
    head = f"{'student':<{width}}  " + "  ".join(f"{PARTS[p]:>7}" for p in parts) + f"  {'total':>7}"
    lines = [head, "-" * len(head)]
    for r in results:
        if r.grader_error:
            lines.append(f"{names[r.student]:<{width}}  grader error: see grader-errors/{names[r.student]}.txt")
            continue
        per = {p: 0.0 for p in parts}
        for item in ITEM_IDS:
            per[part_of(item)] += item_points(r, item)
        cells = "  ".join(f"{fmt_points(per[p], 2):>7}" for p in parts)
        lines.append(f"{names[r.student]:<{width}}  {cells}  {fmt_points(sum(per.values()), 2):>7}")
    if graded:
        lines.append(
            f"{'(possible)':<{width}}  "
            + "  ".join(f"{fmt_points(possible[p], 2):>7}" for p in parts)
            + f"  {fmt_points(sum(possible.values()), 2):>7}"
        )
    return "\n".join(lines)
