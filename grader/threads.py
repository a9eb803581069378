"""How many CPU threads one grading's student code may use: the function tests' sandbox worker
and the notebook kernel alike.

A batch runs ``min(workers, submissions)`` gradings at once and gives each forked child
``CPUs // that`` threads, in ``HW4_THREADS`` (:func:`batch_threads`; a value the caller set wins,
and the batch's slot sandboxes are made with the same number, or no grading could borrow them);
a grading started any other way (``hw4grade check``, ``python -m grader.grade``) takes
``HW4_THREADS`` if set, else ``min(2, CPUs)`` (:func:`grading_threads`). The trusted side keeps
one torch thread whatever this says: its work is many small tensor operations, where a second
thread spins more than it helps.

Why a lone grading takes two: its trusted process mostly waits while the worker computes, and
the worker's largest calls are convolutions over real images (the quantized ResNet-20's accuracy,
the finetuning epochs). Measured 2026-12-04 on 2 cores: one submission alone, 8.95 s -> 8.35 s.
Float results do not depend on it: the tests compare with the tolerances they already allow
for summation order, and the suite checks a lone grading with two threads against the batch's.
"""

from __future__ import annotations

import os

__all__ = ["ENV", "batch_threads", "grading_threads", "threads_per_worker"]

ENV = "HW4_THREADS"


def threads_per_worker(workers: int) -> int:
    """The CPU threads each of ``workers`` parallel gradings gets."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def batch_threads(parallel: int) -> int:
    """What each of a batch's ``parallel`` gradings gets: ``HW4_THREADS`` if the caller set it,
    else :func:`threads_per_worker`."""
    return _explicit() or threads_per_worker(parallel)


def _explicit() -> int | None:
    value = os.environ.get(ENV, "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else None


def grading_threads() -> int:
    """This grading's share: ``HW4_THREADS`` (a batch sets it per child), else ``min(2, CPUs)``."""
    return _explicit() or max(1, min(2, os.cpu_count() or 1))
