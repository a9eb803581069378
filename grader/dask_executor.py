"""Grade a batch on a Dask distributed cluster: ``hw4grade grade ... --executor dask --scheduler ADDR``.

Beyond one machine the same grading function is dispatched by an existing engine (DESIGN §6).
Each submission is one Dask task. On the worker the task starts a fresh Python process
(``python -m grader.dask_executor``, the job in on stdin, its record out on stdout): a grading
run is a pytest session with process-wide state, and a Dask worker runs tasks in threads, so two
gradings must never share an interpreter. The record is plain JSON, so the result the scheduler
ships back is data; the batch then writes every output exactly as a local run does, and the
gradebook is byte-identical to one graded locally (``tests/selftest/test_dask.py``).

Requirements on the workers: this repository installed at the same version (same grader, tests,
reference and config, or the grading fingerprint differs), bubblewrap for the same isolation
level, and the job's paths (the submission and the batch's work folder) on a shared file system.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Generator, Iterable
from dataclasses import asdict
from typing import Any

from grader.batch import Executor, Job, Outcome, grade_job
from grader.grade import GradeOptions

__all__ = ["DaskExecutor", "run_job_in_subprocess"]

#: wall-clock limit of one submission's child process on a worker (the grading itself has its own)
CHILD_TIMEOUT_S = 3600


def run_job_in_subprocess(job_data: dict, slot: int) -> dict[str, Any]:
    """The Dask task: grade one job in a fresh interpreter on this worker; return its record."""
    proc = subprocess.run(
        [sys.executable, "-m", "grader.dask_executor", str(slot)],
        input=json.dumps(job_data), capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"grading child exited with status {proc.returncode}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def _job_from_data(data: dict) -> Job:
    options = GradeOptions(**{**data["options"], "pytest_args": tuple(data["options"]["pytest_args"])})
    return Job(**{**data, "options": options, "warnings": tuple(data["warnings"])})


class DaskExecutor(Executor):
    """Submit one task per job to a Dask scheduler; yield outcomes as they complete.

    Args:
        scheduler: the scheduler's address (``tcp://host:8786``), or a ``distributed.Client``.
    """

    def __init__(self, scheduler: Any):
        from distributed import Client

        self.client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
        self._own_client = not isinstance(scheduler, Client)
        self.workers = max(len(self.client.scheduler_info().get("workers", {})), 1)

    def run(
        self,
        jobs: Iterable[Job],
        fn: Callable[[Job, int], dict[str, Any]],
        started: Callable[[Job], None] | None = None,
    ) -> Generator[Outcome, None, None]:
        from distributed import as_completed

        if getattr(fn, "func", fn) is not grade_job or (getattr(fn, "keywords", None) or {}).get("grade_fn"):
            raise ValueError("DaskExecutor runs the real grader only (grade_job), not a stand-in")
        futures = {}
        for i, job in enumerate(jobs):
            data = asdict(job)
            # pure=False: the same job graded again (a regrade) must run again, not be reused.
            future = self.client.submit(run_job_in_subprocess, data, i % self.workers, pure=False,
                                        key=f"hw4grade-{job.student}-{job.key[:12]}-{i}")
            futures[future] = job
            if started:
                started(job)
        try:
            for future in as_completed(futures):
                job = futures[future]
                try:
                    record = future.result()
                except Exception as exc:
                    yield Outcome(job, None, failure=f"the Dask task failed: {type(exc).__name__}: {exc}")
                else:
                    yield Outcome(job, record)
        finally:
            for future in futures:
                future.cancel()
            if self._own_client:
                self.client.close()


def _child_main() -> int:
    """``python -m grader.dask_executor SLOT``: one job from stdin, its record to stdout.

    Grading prints (pytest's own chatter) go to stderr; stdout carries the record only.
    """
    slot = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    job = _job_from_data(json.loads(sys.stdin.read()))
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        record = grade_job(job, slot)
    finally:
        sys.stdout = real_stdout
    real_stdout.write(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main())
