"""One job: grade one submission in this process and turn the result into its record.

:func:`grade_job` is what every executor runs (a forked child, a Dask worker); :func:`warm_up`
imports and caches in the parent what every job needs, once for the whole batch.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from grader.batch.collect import prepare
from grader.batch.store import RECORD_VERSION
from grader.grade import GradeOptions, grade_submission
from grader.results import SubmissionResult, build_result
from reference.config import Config, load

__all__ = ["GradeFn", "Job", "failure_result", "grade_job", "make_record", "warm_up"]


@dataclass(frozen=True)
class Job:
    """One submission to grade. Plain strings only: a distributed executor pickles it."""

    student: str
    origin: str
    source: str
    kind: str
    key: str
    workdir: str
    options: GradeOptions
    warnings: tuple[str, ...] = ()


GradeFn = Callable[[Path, str, GradeOptions, Config], SubmissionResult]


def grade_job(job: Job, slot: int, grade_fn: GradeFn | None = None) -> dict[str, Any]:
    """Grade one submission in this process; return its record (JSON-able). Never raises: a
    grader crash becomes a result with ``grader_error`` holding the traceback."""
    from grader.answers import read_answers

    cfg = load()
    grade_fn = grade_fn or grade_submission
    warnings = list(job.warnings)
    answers: dict[str, Any] = {}
    try:
        folder, more = prepare(Path(job.source), job.kind, Path(job.workdir))
        warnings += more
        result = grade_fn(folder, job.student, replace(job.options, slot=slot), cfg)
        try:
            given = read_answers(folder)
            answers = {"choices": given.choices, "explanations": given.explanations}
        except Exception:
            answers = {}
    except Exception:
        result = failure_result(job.student, cfg, traceback.format_exc(), job.options)
    result.warnings = warnings + list(result.warnings)
    return make_record(job, result, answers)


def failure_result(student: str, cfg: Config, error: str, options: GradeOptions) -> SubmissionResult:
    return build_result(
        student,
        cfg,
        [],
        grader_error=error,
        mode="public" if options.public_only else ("full" if options.notebooks else "functions"),
    )


def make_record(job: Job, result: SubmissionResult, answers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "version": RECORD_VERSION,
        "student": job.student,
        "origin": job.origin,
        "key": job.key,
        "result": asdict(result),
        "answers": answers or {},
    }



def warm_up(options: GradeOptions) -> None:
    """Import and cache in the parent what every grading child needs, once for the whole batch."""
    import hypothesis  # noqa: F401
    import numpy  # noqa: F401
    import pytest  # noqa: F401
    import torch  # noqa: F401

    import grader.plugin
    import grader.sandbox.proxy
    from grader import redact, refcache
    from grader.sandbox.launcher import detect_isolation

    with contextlib.suppress(ImportError):
        import grader.notebooks  # noqa: F401
    with contextlib.suppress(RuntimeError):
        detect_isolation(options.isolation)  # the bubblewrap probe, cached for every child
    redact.secret_lines()
    refcache.prime()
    # Hypothesis registers its global Random on a process's first derandomized run, with a full
    # garbage collection (0.1 s with torch loaded): once here instead of once in every child. Every
    # run seeds that Random before use, so what the tests draw is the same either way.
    # (Hypothesis's internal module: a later version that moves it costs the 0.1 s, not the batch.)
    with contextlib.suppress(ImportError):
        from hypothesis.internal.entropy import deterministic_PRNG

        with deterministic_PRNG():
            pass
