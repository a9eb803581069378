"""The suite's background jobs: commands started with the session that run while the other tests
do (``conftest.BACKGROUND``: the sample batches, the notebook batch, the installed student
edition's self-check), and how each is ended if the session ends early.

Standard library only: both support modules (``batch_support``, ``edition_support``) import it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def start_background(argv: list[str], **popen) -> subprocess.Popen:
    """Start one of the session's background jobs in a session of its own. A session is a
    scheduling group of its own (Linux's autogroups): the foreground tests then share the CPUs
    with the job as a whole, not with each of its grading processes (2026-12-04: the foreground
    got about a sixth of a core while the batches graded; the suite's time did not measurably
    change, docs/ARCHITECTURE.md). Ctrl-C no longer reaches it, so :func:`stop_background` ends
    it with the session."""
    return subprocess.Popen(argv, start_new_session=True, **popen)


def stop_background(proc: subprocess.Popen) -> None:
    """Kill a :func:`start_background` job and everything in its session's process group (its
    sandboxes die with their parents), if it still runs."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
