"""Charged time: how long a sandboxed call ran, not counting the time it waited for a CPU.

A call's time limit is there to stop endless loops, not to punish a busy machine: when the other
gradings of a batch, an instructor's other work or a hostile neighbour keep every core busy, an
honest call can take many times its limit in wall-clock time (seen in CI: a 2-second call of the
reference solution "did not finish within 20 s" while eight gradings shared two cores). The
kernel records for each task the time it sat runnable on a run queue (``/proc/<pid>/schedstat``,
second field, ``run_delay`` in ns), so the time charged to a call is::

    charged = (wall-clock time since the call started)
              - (run-queue wait of the worker's main thread since the call started)

Computing, sleeping and blocking on I/O are charged; waiting for a CPU is not. Both deadlines use
it: the worker's own soft deadline (``worker._arm``) and the grader's hard one
(``session.WorkerSession.request``), which reads the worker's schedstat from outside the sandbox
(its pid there: ``launcher.host_pid``), where the worker cannot forge it. A task can make its
main thread wait on purpose (many spinning threads), so the hard deadline keeps a wall-clock
backstop: :data:`BACKSTOP` times the limit.
Where schedstat cannot be read (no ``/proc``, or a kernel without scheduler statistics, which
reports zeros), charged time is wall-clock time, as before.

Standard library only: the worker imports this file from its own folder.
"""

from __future__ import annotations

import time

#: the hard deadline gives up after this many times the limit in wall-clock time, however busy
#: the machine (an honest call that needs its whole limit then still finishes at a quarter of a
#: CPU)
BACKSTOP = 4.0


def run_delay(pid: int | str = "self") -> int | None:
    """Nanoseconds task ``pid`` (its main thread) has waited for a CPU; None if unknown."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as fh:
            return int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


class Stopwatch:
    """Charged seconds of task ``pid`` since :meth:`start` (wall-clock seconds if ``pid`` is
    None or its run-queue wait cannot be read, then or later)."""

    def __init__(self, pid: int | str | None = "self"):
        self.pid = pid
        self.start()

    def start(self) -> None:
        self.started = time.monotonic()
        self.delay = run_delay(self.pid) if self.pid is not None else None

    def wall(self) -> float:
        return time.monotonic() - self.started

    def charged(self) -> float:
        wall = self.wall()
        now = run_delay(self.pid) if self.pid is not None and self.delay is not None else None
        if now is None or self.delay is None:
            return wall
        return max(0.0, wall - (now - self.delay) / 1e9)

