"""Charged time: how long a sandboxed call ran, not counting the time it waited for a CPU.

A call's time limit is there to stop endless loops, not to punish a busy machine: when the other
gradings of a batch, an instructor's other work or a hostile neighbour keep every core busy, an
honest call can take many times its limit in wall-clock time (seen in CI: a 2-second call of the
reference solution "did not finish within 20 s" while eight gradings shared two cores). The
kernel records for each task the time it sat runnable on a run queue (``/proc/<pid>/task/<tid>/schedstat``,
second field, ``run_delay`` in ns), so the time charged to a call is::

    charged = (wall-clock time since the call started)
              - max over the worker's threads of (its run-queue wait since the call started)

Computing, sleeping and blocking on I/O are charged; waiting for a CPU is not. The maximum over
threads, not the main thread's wait alone: a call whose work runs in helper threads (torch's
intra-op pool, a data loader) has its main thread asleep at a barrier while a helper waits for
a CPU, and that wait is not the student's either (2026-12-05: a finetune call with two threads
failed a 3-second limit on a loaded machine). A thread that started during the call counts from
zero; one that has ended counts with the wait last read (the charge can only be higher than
exact): the threads of a pool (torch's, OpenMP's) live on, so their waits are exact. Both
deadlines use it: the worker's own soft deadline (``worker._arm``) and the grader's hard one
(``session.WorkerSession.request``), which reads the worker's schedstat from outside the sandbox
(its pid there: ``launcher.host_pid``), where the worker cannot forge it. A task can make its
main thread or a helper wait on purpose (more spinning threads than CPUs), so the hard deadline
keeps a wall-clock backstop: :data:`BACKSTOP` times the limit.
Where schedstat cannot be read (no ``/proc``, or a kernel without scheduler statistics, which
reports zeros), charged time is wall-clock time, as before.

Standard library only: the worker imports this file from its own folder.
"""

from __future__ import annotations

import os
import time

#: the hard deadline gives up after this many times the limit in wall-clock time, however busy
#: the machine (an honest call that needs its whole limit then still finishes at a quarter of a
#: CPU)
BACKSTOP = 4.0


def run_delays(pid: int | str = "self") -> dict[str, int] | None:
    """Nanoseconds each thread of process ``pid`` has waited for a CPU, by thread id; None if
    unknown (no ``/proc`` view of it)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    out = {}
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as fh:
                out[tid] = int(fh.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return out or None


class Stopwatch:
    """Charged seconds of process ``pid`` since :meth:`start` (wall-clock seconds if ``pid`` is
    None or its threads' run-queue waits cannot be read, then or later)."""

    def __init__(self, pid: int | str | None = "self"):
        self.pid = pid
        self.start()

    def start(self) -> None:
        self.started = time.monotonic()
        self.delays = run_delays(self.pid) if self.pid is not None else None
        self.seen = dict(self.delays or {})  # each thread's wait as last read

    def wall(self) -> float:
        return time.monotonic() - self.started

    def charged(self) -> float:
        wall = self.wall()
        if self.pid is None or self.delays is None:
            return wall
        now = run_delays(self.pid)
        if now is None:
            return wall
        self.seen.update(now)
        waited = max((ns - self.delays.get(tid, 0) for tid, ns in self.seen.items()), default=0)
        return max(0.0, wall - max(waited, 0) / 1e9)
