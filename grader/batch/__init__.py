"""Grade a class: many submissions in parallel, resumable, each in a forked child of a warm parent.

``hw4grade grade SUBMISSIONS --out OUT`` comes here (:func:`run_batch`, in ``run.py``). The flow,
one file per step:

1. **Collect** (``collect.py``: :func:`collect`): SUBMISSIONS is a folder or one LMS export zip;
   each entry (a folder or a ``.zip``) is one student's submission, named after it; groups
   (sections, the samples' kinds), Canvas-style loose files and duplicate names are handled there.
2. **Skip what is done** (``store.py``): a submission's key is the hash of its files plus the
   grading fingerprint (the grader, the rubric tests, the reference, the config and the options).
   A finished submission whose key is unchanged is not graded again; ``--regrade`` forces it.
3. **Grade** (``job.py``: :func:`grade_job`) through an :class:`Executor` (``executor.py``).
   :class:`ForkExecutor` imports torch, numpy, pytest and Hypothesis once in the parent
   (:func:`warm_up`) and forks one child per submission (so one submission can never disturb
   another's grading), each with its own sandbox slot. The child copies or unpacks the
   submission with ``grader.archive`` (:func:`prepare`) and grades the clean copy. A child that
   crashes, hangs past the per-submission limit or is killed yields a failure record, never a
   stopped batch. Ctrl-C stops the batch at the loop's next safe point.
4. **Write** as each finishes (``store.py``, ``write.py``): ``OUT/.hw4grade/records/<student>.json``
   (the full result, the instructor's copy, written atomically: it is what "done" means), then
   ``OUT/<student>/results.json`` and ``feedback.md``; at the end (or on Ctrl-C) the batch files:
   ``gradebook.csv``, ``manual.csv``, ``summary.html``, ``grader-errors/<student>.txt``. The
   progress line is ``progress.py``.

Everything written is a pure function of the records and the merged manual scores, so an
interrupted batch run again produces the same files as an uninterrupted one (``execution_time``
in ``results.json`` aside).
"""

from __future__ import annotations

from grader.archive import ArchiveError
from grader.batch.collect import LAYOUTS, Collection, Source, collect, prepare, sanitize_id
from grader.batch.errors import BatchError
from grader.batch.executor import Executor, ForkExecutor, Outcome, single_torch_thread
from grader.batch.job import Job, failure_result, grade_job, make_record, warm_up
from grader.batch.run import BatchReport, run_batch
from grader.batch.store import BatchDir, content_hash, grading_fingerprint, result_of
from grader.batch.write import write_outputs, write_student_outputs

__all__ = [
    "LAYOUTS",
    "ArchiveError",
    "BatchDir",
    "BatchError",
    "BatchReport",
    "Collection",
    "Executor",
    "ForkExecutor",
    "Job",
    "Outcome",
    "Source",
    "collect",
    "content_hash",
    "failure_result",
    "grade_job",
    "grading_fingerprint",
    "make_record",
    "prepare",
    "result_of",
    "run_batch",
    "sanitize_id",
    "single_torch_thread",
    "warm_up",
    "write_outputs",
    "write_student_outputs",
]
