"""The progress line a batch shows while it grades."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from grader.batch.executor import Outcome
from grader.batch.job import Job
from grader.outputs.escape import line
from grader.results import STATUS_NOT_RUN, SubmissionResult

__all__ = ["Progress", "points_line"]


class Progress:
    """One status line redrawn on a terminal; one line per submission otherwise (CI logs)."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True):
        self.total, self.done, self.running = total, 0, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.started_at = time.monotonic()
        self.last = ""

    def started(self, job: Job) -> None:
        self.running += 1
        self._draw()

    def finished(self, outcome: Outcome, result: SubmissionResult) -> None:
        self.running -= 1
        self.done += 1
        if result.grader_error:
            what = "GRADER ERROR (see grader-errors/)"
        else:
            what = points_line(result)
        self.last = line(f"{outcome.job.student}: {what} ({outcome.seconds:.1f} s)")  # a terminal line
        if self.enabled and not self.tty:
            print(
                f"[{self.done:>{len(str(self.total))}}/{self.total}] {self.last}",
                file=self.stream,
                flush=True,
            )
        self._draw()

    def _draw(self) -> None:
        if not self.tty:
            return
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        elapsed = int(time.monotonic() - self.started_at)
        status = (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}, {self.running} running, "
            f"{elapsed // 60:02d}:{elapsed % 60:02d}  {self.last}"
        )
        cols = shutil.get_terminal_size((100, 20)).columns
        self.stream.write("\r\x1b[K" + status[: cols - 1])
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def points_line(result: SubmissionResult) -> str:
    """``59 of 78 automatic points``, or, when this mode left tests out (``--no-notebooks``: the
    notebook checks), ``59 of 59 graded in this mode (78 in all)``: the points of the tests that
    did not run are not lost, and the line must not read as if they were."""
    graded = sum(c.max_score for c in result.cases() if c.status != STATUS_NOT_RUN)
    if graded < result.possible - 1e-9:
        return f"{_pts(result.score)} of {_pts(graded)} graded in this mode ({_pts(result.possible)} in all)"
    return f"{_pts(result.score)} of {_pts(result.possible)} automatic points"


def _pts(x: float) -> str:
    from grader.outputs.points import fmt_points

    return fmt_points(x)
