"""``run_batch``: collect, skip what is done, grade through an executor, write as each finishes.

See ``grader.batch``'s docstring for the flow and which file does what.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TextIO

from grader.batch.collect import collect
from grader.batch.executor import Executor, ForkExecutor
from grader.batch.job import GradeFn, Job, failure_result, grade_job, make_record, warm_up
from grader.batch.progress import Progress
from grader.batch.store import BatchDir, _fresh_tmp_root, content_hash, grading_fingerprint, result_of
from grader.batch.write import write_outputs, write_student_outputs
from grader.grade import GradeOptions
from grader.outputs import manual as manual_out
from grader.results import SubmissionResult
from grader.threads import batch_threads
from reference.config import Config, load

__all__ = ["BatchReport", "run_batch"]

# Margin over the config's time budgets before the parent stops a grading child itself.
TIMEOUT_MARGIN_S = 300.0


@dataclass
class BatchReport:
    out: Path
    students: list[str]
    graded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    grader_errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    results: list[SubmissionResult] = field(default_factory=list)


def run_batch(
    submissions: Path,
    out: Path,
    options: GradeOptions | None = None,
    *,
    workers: int = 1,
    layout: str = "auto",
    regrade: bool = False,
    executor: Executor | None = None,
    grade_fn: GradeFn | None = None,
    progress: bool = True,
    cfg: Config | None = None,
    stream: TextIO | None = None,
) -> BatchReport:
    """Grade every submission in ``submissions`` into ``out``; see the module docstring.

    Raises:
        BatchError: for the batch as a whole (nothing to grade, OUT in use). A problem with one
            submission never raises: it is in that submission's result.
    """
    cfg = cfg or load()
    options = options or GradeOptions()
    started = time.monotonic()
    bd = BatchDir(out)
    with bd.locked():
        shutil.rmtree(bd.tmp, ignore_errors=True)  # leftovers of a killed run
        coll = collect(Path(submissions), bd.work, layout)
        fingerprint = grading_fingerprint(options, cfg)
        report = BatchReport(Path(out), [s.student for s in coll.sources], warnings=list(coll.warnings))
        jobs = []
        for src in coll.sources:
            key = hashlib.sha256(f"{fingerprint}\0{src.kind}\0{content_hash(src.path)}".encode()).hexdigest()
            record = bd.load_record(src.student)
            if not regrade and record is not None and record.get("key") == key:
                report.skipped.append(src.student)
                continue
            jobs.append(
                Job(
                    src.student,
                    src.origin,
                    str(src.path),
                    src.kind,
                    key,
                    str(bd.work / "unpacked" / src.student),
                    options,
                    warnings=src.warnings,
                )
            )
        bd.write_batch_info(coll.sources, coll.warnings, Path(submissions))
        shown = Progress(len(jobs), stream, enabled=progress)
        if report.skipped:
            print(
                f"hw4grade: {len(report.skipped)} of {len(coll.sources)} submissions already graded and "
                f"unchanged; grading {len(jobs)}",
                file=shown.stream,
            )
        if len(jobs) > 1:
            # Children forked from a warm parent import nothing again. One submission alone gains
            # nothing from it: its grading imports torch while its sandbox starts (in parallel).
            warm_up(options)
        g = cfg.grading
        timeout = (
            g.import_timeout_s + g.submission_budget_s + (g.notebook_budget_s if options.notebooks else 0)
        )
        # each child's share of the CPUs: fewer submissions than workers leave CPUs to share
        threads = batch_threads(min(workers, max(1, len(jobs))))
        if executor is None:
            executor = ForkExecutor(
                workers,
                timeout_s=timeout + TIMEOUT_MARGIN_S,
                scratch=bd.tmp,
                log_dir=bd.logs,
                tmp_root=_fresh_tmp_root(bd),
                threads=threads,
                # the real grading: one sandbox per slot, borrowed by each grading in turn; started
                # here before the fork, so even one submission alone has its zygote importing torch
                # while its child starts pytest and reads the submission (not after)
                slot_sandboxes=_slot_sandboxes(cfg, options, threads) if grade_fn is None else None,
            )
        fn = partial(grade_job, grade_fn=grade_fn)
        try:
            with contextlib.closing(executor.run(jobs, fn, started=shown.started)) as outcomes:
                for outcome in outcomes:
                    record = outcome.record or make_record(
                        outcome.job,
                        failure_result(outcome.job.student, cfg, outcome.failure or "no result", options),
                    )
                    bd.save_record(record)
                    result = result_of(record)
                    write_student_outputs(
                        bd, manual_out.apply_manual(result, manual_out.load_scores(bd.manual_file)), cfg
                    )
                    report.graded.append(outcome.job.student)
                    shown.finished(outcome, result)
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            shown.close()
            report.results = write_outputs(bd, cfg, report.students)
        if jobs and grading_fingerprint(options, cfg) != fingerprint:
            # Records carry the key computed at the start: the next run regrades them all.
            report.warnings.append(
                "the grader, its tests or the config changed while this batch ran; "
                "run it again to grade every submission with the current version"
            )
    report.grader_errors = [r.student for r in report.results if r.grader_error]
    report.seconds = time.monotonic() - started
    return report


def _slot_sandboxes(cfg: Config, options: GradeOptions, threads: int):
    """The slots' shared sandboxes of a batch (``grader.sandbox.shared``), made the way each
    grading would make its own (with the ``threads`` its child gets). ``HW4_SHARED_SANDBOX=0``
    turns them off (one per submission)."""
    if os.environ.get("HW4_SHARED_SANDBOX", "1") == "0":
        return None
    from grader.plugin import sandbox_args
    from grader.sandbox.shared import SlotSandboxes

    return partial(SlotSandboxes, lambda slot: sandbox_args(cfg, options.isolation, slot, threads))
