"""One sandbox per batch slot: a batch's gradings take turns in the same started zygote.

Starting a sandbox costs a grading about 3 s of CPU (its zygote imports torch, torchvision and
matplotlib), a quarter of what one submission costs in a batch. So the batch parent
(``grader.batch.executor.ForkExecutor``) starts one sandbox per slot (:class:`SlotSandboxes`) and
each grading child, forked right after, *borrows* it (:func:`borrowable`,
``WorkerSession(shared=...)``) instead of starting its own.

What keeps one submission from reaching the next through the shared sandbox:

* only where the zygote's sweep reaches everything the sandbox ran: the ``bwrap`` level (a PID
  namespace of its own, a tmpfs scratch folder). The ``rlimit`` level keeps one sandbox per
  submission;
* a borrowing grading first has the zygote sweep (kill every process of the sandbox but the
  zygote, empty the scratch folder and the System V IPC objects) and uses the sandbox only if the
  scratch folder is then empty; then it replaces the staged submission (read-only inside). Its
  workers are forked from the zygote, which never runs student code;
* each worker of a borrowed sandbox prints into a pipe of its own grading (the output shown in
  feedback, the flood limit), never into the zygote's output;
* anything unexpected (the zygote gone, a reply late or malformed, the sweep leaving files, a
  grading child that did not end normally, a health check after the job failing) retires the
  slot's sandbox; the next grading of that slot gets a fresh one, and a borrowing grading that
  meets a broken sandbox starts its own as before.

The parent never runs student code either: it starts the slot's sandbox, pings it between jobs
and kills it at the end of the batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.sandbox.launcher import Limits, control_exchange, flood_reason, output_text, read_capped

if TYPE_CHECKING:
    from grader.sandbox.session import WorkerSession

__all__ = ["BorrowedProcess", "SharedSandbox", "SlotSandboxes", "borrowable"]

#: seconds the parent waits for a slot's zygote to answer its health check between jobs
HEALTH_TIMEOUT = 5.0


@dataclasses.dataclass
class SharedSandbox:
    """A started sandbox a grading may borrow: its zygote's control socket and staging folder,
    and the arguments it was made with (a grading borrows it only if its own are the same)."""

    session: WorkerSession
    args: dict[str, Any]

    @property
    def stage(self) -> Path:
        return self.session.stage


#: the sandbox of the slot this process grades in: set by the batch parent just before it forks
#: the grading child (the child reads its copy; the parent clears its own right after the fork)
_INHERITED: dict[str, SharedSandbox] = {}


def borrowable(args: dict[str, Any]) -> SharedSandbox | None:
    """The inherited slot sandbox if it was made with exactly ``args``, once: a second session
    in the same grading process starts its own."""
    shared = _INHERITED.pop("slot", None)
    if shared is None or shared.args != args:
        return None
    return shared


class SlotSandboxes:
    """The batch parent's sandboxes, one per slot, made on a slot's first job and kept while
    they stay healthy.

    ``args_for(slot)`` gives the ``sandbox_session`` arguments of the batch's gradings in that
    slot; ``root`` is where their staging folders go (removed by :meth:`close`).
    """

    def __init__(self, args_for: Callable[[int], dict[str, Any]], root: Path):
        self.args_for, self.root = args_for, Path(root)
        self.slots: dict[int, SharedSandbox] = {}
        self.started = 0  # sandboxes started (a healthy batch starts one per slot)

    def before_fork(self, slot: int) -> None:
        """Make sure ``slot`` has a started sandbox and hand it to the next forked child."""
        _INHERITED.clear()
        shared = self.slots.get(slot)
        if shared is None:
            shared = self._start(slot)
            if shared is None:
                return
            self.slots[slot] = shared
        _INHERITED["slot"] = shared

    def after_fork(self) -> None:
        _INHERITED.clear()

    def job_done(self, slot: int, clean: bool) -> None:
        """After a job of ``slot``: keep its sandbox only if the job ended normally and the
        zygote answers a ping with nothing else waiting on its socket."""
        shared = self.slots.get(slot)
        if shared is None:
            return
        if not (clean and shared.session.ping(HEALTH_TIMEOUT)):
            self.retire(slot)

    def retire(self, slot: int) -> None:
        shared = self.slots.pop(slot, None)
        if shared is not None:
            shared.session.close()

    def close(self) -> None:
        for slot in list(self.slots):
            self.retire(slot)

    def _start(self, slot: int) -> SharedSandbox | None:
        from grader.sandbox.session import sandbox_session

        args = self.args_for(slot)
        self.root.mkdir(parents=True, exist_ok=True)
        empty = Path(tempfile.mkdtemp(prefix=f"slot{slot}-empty-", dir=self.root))
        try:
            # made as each grading makes its own (nothing is handed over in this process)
            session = sandbox_session(empty, **args)
        except Exception:
            return None
        finally:
            shutil.rmtree(empty, ignore_errors=True)
        if session.isolation.level != "bwrap":
            session.close()
            return None
        try:
            session.launch()
        except Exception:
            session.close()
            return None
        self.started += 1
        # as sandbox_session compares them with a grading's own (threads: its default, 1)
        return SharedSandbox(session, {**args, "threads": session.threads})


class _Popen:
    """``poll``/``wait`` of a borrowed sandbox, whose process belongs to the batch parent."""

    def __init__(self, owner: BorrowedProcess):
        self.owner = owner

    def poll(self) -> int | None:
        return None if self.owner.usable else 1

    def wait(self, timeout: float | None = None) -> int | None:
        return self.poll()


class BorrowedProcess:
    """What a ``WorkerSession`` needs of its ``SandboxProcess``, for a borrowed sandbox: its
    workers' output (each fork's own pipe, drained here, capped like the owner's, a flood stops
    the worker), whether it is still usable, and ``kill`` (sweep the workers, stop using it)."""

    def __init__(self, ctl: socket.socket, limits: Limits, wake: Callable[[], None], root_pid: int | None = None):
        self.ctl, self.limits, self.wake = ctl, limits, wake
        self.root_pid = root_pid  # the owner's first process: its workers descend from it (runclock)
        self.popen = _Popen(self)
        self.usable = True  # False: never sent another request (a flood, a failure, killed)
        self._swept = False
        self.output = bytearray()
        self.output_total = 0
        self.stop_reason: str | None = None
        self._threads: list[threading.Thread] = []

    def drain(self, stream) -> None:
        def run() -> None:
            with stream:
                read_capped(self, stream, self._flooded, stop_at_flood=True)

        thread = threading.Thread(target=run, daemon=True, name="sandbox-drain")
        thread.start()
        self._threads.append(thread)

    def _flooded(self) -> None:
        # As the owner's watchdog kills the sandbox: no request goes out any more and the waiting
        # one ends now; the session's kill() sweeps the worker.
        self.stop_reason = flood_reason(self.limits)
        self.usable = False
        self.wake()

    def output_text(self) -> str:
        return output_text(self)

    def exit_description(self) -> str:
        if self.stop_reason:
            return f"was stopped: it {self.stop_reason}"
        # the zygote went away (a submission killed it) or stopped answering
        return "still running" if self.usable else "was stopped (its sandbox ended)"

    def kill(self) -> None:
        """Stop every worker of the sandbox (the zygote's sweep, once) and use it no more."""
        self.usable = False
        if self._swept:
            return
        self._swept = True
        with contextlib.suppress(OSError):
            control_exchange(self.ctl, {"op": "sweep"}, timeout=HEALTH_TIMEOUT)
        for thread in self._threads:
            thread.join(timeout=2)
