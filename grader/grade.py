"""Grade one submission: run ``tests/rubric`` against it and build its ``SubmissionResult``.

The tests run in this process through pytest (with ``grader.plugin``); the student's code runs in
the sandboxed worker the ``submission`` fixture starts. A batch calls this once per submission in
a forked child (``grader.batch``), so one submission can never disturb another's grading.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from grader.answers import read_answers
from grader.redact import redact, submission_lines
from grader.results import CaseResult, SubmissionResult, build_result, hand_over
from reference.config import REPO_ROOT, Config, load

__all__ = ["RUBRIC_DIR", "GradeOptions", "grade_submission"]

#: the grading tests: the checkout's, or the installed edition's (``grader/_bundle/tests/rubric``)
RUBRIC_DIR = REPO_ROOT / "tests" / "rubric"


@dataclass(frozen=True)
class GradeOptions:
    notebooks: bool = True
    public_only: bool = False
    isolation: str = "auto"
    slot: int = 0
    data_root: str | None = None
    checkpoint: str | None = None
    pytest_args: tuple[str, ...] = ()


def grade_submission(path: Path, student: str, options: GradeOptions = GradeOptions(),
                     cfg: Config | None = None) -> SubmissionResult:
    """Grade the unpacked submission at ``path``. Never raises for a submission's faults; a
    grader crash yields a result with ``grader_error`` set and every test marked as an error."""
    import pytest

    cfg = cfg or load()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hw4-report-") as tmp:
        report_path = Path(tmp) / "report.json"
        args = [
            str(RUBRIC_DIR), "-p", "grader.plugin", "-p", "grader.replay", "-q", "-p", "no:cacheprovider",
            "-p", "no:randomly",
            # pytest's plugins for what grading never uses: the unraisable-exception one collects the
            # garbage three times over at the end (0.2 s of a grading alone); the rubric tests read no
            # log records, and a hang is the sandbox's to stop, not faulthandler's
            "-p", "no:unraisableexception", "-p", "no:threadexception", "-p", "no:logging",
            "-p", "no:faulthandler",
            # a plain traceback for a grader fault's detail: pytest's long style parses the source
            # of every frame of every failure (a second per grading of a template)
            "--tb=native",
            "--submission", str(path), "--hw4-report", str(report_path),
            "--hypothesis-profile", "grading", "--hw4-isolation", options.isolation,
            "--hw4-slot", str(options.slot), "-W", "ignore::pytest.PytestAssertRewriteWarning",
            "--hw4-visibility", "public" if options.public_only else "all",
            "--hw4-notebooks", "run" if options.notebooks else "skip",
            "-o", "addopts=", "--rootdir", str(RUBRIC_DIR.parent.parent), "--timeout", "0",
            *options.pytest_args,
        ]
        if options.data_root:
            args += ["--hw4-data-root", options.data_root]
        if options.checkpoint:
            args += ["--hw4-checkpoint", options.checkpoint]
        log = io.StringIO()
        error = None
        try:
            with redirect_stdout(log), redirect_stderr(log):
                code = pytest.main(args)
            if code not in (0, 1):
                error = f"pytest exited with status {int(code)}:\n{log.getvalue()[-4000:]}"
        except Exception:
            error = traceback.format_exc()
        payload = json.loads(report_path.read_text()) if report_path.exists() else {}
    cases = [CaseResult(**c) for c in payload.get("cases", [])]
    own = submission_lines(path)  # the student's own lines are shown back (see grader.redact)
    for case in cases:
        case.message = redact(case.message, own)
    warnings = [redact(p, own) for p in payload.get("problems", [])]
    warnings += [f"while loading: {redact(e, own)}" for e in payload.get("load_errors", [])]
    if payload.get("load_failed"):
        warnings.append(f"your submission could not be loaded: {redact(payload['load_failed'], own)}")
    refused = read_answers(path).refused  # an answers.yaml not read at all: say so, by name
    if refused:
        warnings.append(refused)
    result = build_result(
        student, cfg, cases,
        isolation=payload.get("isolation", ""),
        mode="public" if options.public_only else ("full" if options.notebooks else "functions"),
        found=payload.get("found", []),
        warnings=warnings,
        grader_error=error,
        output=redact(payload.get("output", ""), own)[-20000:],
    )
    if payload.get("notebook_run"):
        nb = payload["notebook_run"]
        result.notebook_run = {"ok": bool(nb.get("ok")), "lines": [redact(x, own) for x in nb.get("lines", [])],
                               "notes": [redact(x, own) for x in nb.get("notes", [])]}
    hand_over(result, payload.get("by_hand") or {})
    result.execution_time = time.monotonic() - started
    if os.environ.get("HW4_DEBUG_PYTEST"):
        print(log.getvalue())
    return result


def _main() -> int:
    """Developer entry point: ``python -m grader.grade DIR [--no-notebooks] [--public]``."""
    import argparse

    parser = argparse.ArgumentParser(description="grade one submission folder and print every case")
    parser.add_argument("path", type=Path)
    parser.add_argument("--no-notebooks", action="store_true")
    parser.add_argument("--public", action="store_true")
    parser.add_argument("--isolation", default="auto", choices=("auto", "bwrap", "rlimit"))
    parser.add_argument("-k", default=None, help="pytest -k expression (development only)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args()
    extra = ("-k", args.k) if args.k else ()
    result = grade_submission(args.path, args.path.name, GradeOptions(
        notebooks=not args.no_notebooks, public_only=args.public, isolation=args.isolation, pytest_args=extra))
    if args.json:
        args.json.write_text(result.to_json())
    for case in result.cases():
        print(f"{case.item:7} {case.status:8} {case.score:6.3f}/{case.max_score:6.3f} {case.name}")
        if case.message and not case.passed:
            print("        " + case.message.replace("\n", "\n        ")[:1500])
    for item in result.items.values():
        print(f"{item.item:7} {item.score:6.3f}/{item.possible:6.3f}")
    print(f"total {result.score:.3f}/{result.possible:.3f}  isolation={result.isolation}  "
          f"time={result.execution_time:.1f}s  grader_error={result.grader_error}")
    for w in result.warnings:
        print("warning:", w)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
