"""Executors run the grading jobs; :class:`ForkExecutor` forks one child per submission.

The parent has imported torch, numpy, pytest and Hypothesis once (``grader.batch.job.warm_up``);
each child grades one submission (so one can never disturb another's grading) with its own
sandbox slot. A child that crashes, hangs past the per-submission limit or is killed yields a
failure outcome, never a stopped batch. Ctrl-C is deferred to the loop's next safe point
(:func:`_deferred_ctrl_c`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from grader.batch.job import Job
from grader.outputs.atomic import write_text
from grader.sandbox.launcher import sweep_orphaned_uids
from grader.threads import ENV as THREADS_ENV
from grader.threads import batch_threads

__all__ = ["Executor", "ForkExecutor", "Outcome", "single_torch_thread"]


@dataclass
class Outcome:
    """What an executor gives back for one job: its record, or why there is none."""

    job: Job
    record: dict[str, Any] | None
    failure: str | None = None
    seconds: float = 0.0


class SlotHooks(Protocol):
    """What :class:`ForkExecutor` asks of per-slot resources (``grader.sandbox.shared.SlotSandboxes``)."""

    def before_fork(self, slot: int) -> None: ...
    def after_fork(self) -> None: ...
    def job_done(self, slot: int, clean: bool) -> None: ...
    def close(self) -> None: ...


class Executor(ABC):
    """Runs grading calls; :func:`run_batch` decides what to run and keeps what comes back.

    Contract of :meth:`run`: call ``fn(job, slot)`` once per job, ``slot`` an int in
    ``[0, workers)`` distinct among the calls running at the same time (it picks the sandbox's
    uid); yield an :class:`Outcome` per job as each finishes, in any order; a call that fails in
    any way (exception, crash, timeout) yields an outcome with ``failure`` set and never stops
    the others; closing the iterator (Ctrl-C) stops every running call.

    A distributed executor (Dask's ``client.submit`` + ``as_completed``, issue 7) fits as is:
    ``grade_job`` is a module-level function and :class:`Job` a frozen dataclass of strings, so
    both pickle; the slot becomes the Dask worker's index. The job's paths must then be visible
    on the workers (a shared file system) or the files shipped with the job.
    """

    workers: int = 1

    @abstractmethod
    def run(
        self,
        jobs: Iterable[Job],
        fn: Callable[[Job, int], dict[str, Any]],
        started: Callable[[Job], None] | None = None,
    ) -> Generator[Outcome, None, None]:
        """Run every job; see the class docstring."""


@dataclass
class _Child:
    pid: int
    job: Job
    slot: int
    result_path: Path
    tmp: Path
    log_path: Path
    started: float


class ForkExecutor(Executor):
    """One forked child per submission, at most ``workers`` at a time, from this (warm) process.

    The child is its own process group (a terminal's Ctrl-C reaches only the parent, which then
    stops the children), dies with the parent (``PR_SET_PDEATHSIG``, so a killed batch leaves no
    orphans grading on), writes its stdout/stderr to ``log_dir/<student>.log`` and uses a private
    temporary folder that the parent removes when it is done (sandbox staging included).
    """

    def __init__(
        self,
        workers: int,
        *,
        timeout_s: float | None,
        scratch: Path,
        log_dir: Path,
        threads: int | None = None,
        poll_s: float = 0.05,
        tmp_root: Path | None = None,
        slot_sandboxes: Callable[[Path], SlotHooks] | None = None,
    ):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers, self.timeout_s, self.poll_s = workers, timeout_s, poll_s
        self.scratch, self.log_dir = Path(scratch), Path(log_dir)
        # Children's temporary folders (sandbox staging) go under one root, removed at the end;
        # run_batch records it so the next run can remove what a killed batch left. It lives in
        # the system temp folder, which the sandbox's unprivileged uid can reach (OUT may be
        # under a private home).
        self.tmp_root = Path(tmp_root) if tmp_root else None
        self.threads = threads or batch_threads(workers)
        #: makes the slots' shared sandboxes (``grader.sandbox.shared``) given their staging root
        self.slot_sandboxes = slot_sandboxes

    def run(
        self,
        jobs: Iterable[Job],
        fn: Callable[[Job, int], dict[str, Any]],
        started: Callable[[Job], None] | None = None,
    ) -> Generator[Outcome, None, None]:
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.tmp_root is None:
            self.tmp_root = Path(tempfile.mkdtemp(prefix="hw4-batch-"))
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        self.tmp_root.chmod(0o755)
        pending = deque(jobs)
        running: dict[int, _Child] = {}
        free = list(range(self.workers - 1, -1, -1))
        slots = self.slot_sandboxes(self.tmp_root / "slots") if self.slot_sandboxes else None
        with _deferred_ctrl_c() as interrupted:
            try:
                while pending or running:
                    if interrupted():
                        raise KeyboardInterrupt
                    while pending and free:
                        child = self._start(pending.popleft(), free.pop(), fn, slots)
                        running[child.pid] = child
                        if started:
                            started(child.job)
                    finished = []
                    for pid, child in list(running.items()):
                        done, status = os.waitpid(pid, os.WNOHANG)
                        if done:
                            finished.append((child, _describe_exit(status)))
                        elif self.timeout_s and time.monotonic() - child.started > self.timeout_s:
                            _kill(pid)
                            finished.append(
                                (child, f"grading did not finish within {self.timeout_s:g} s and was stopped")
                            )
                    for child, how in finished:
                        del running[child.pid]
                        free.append(child.slot)
                        outcome = self._collect(child, how)
                        if slots:
                            slots.job_done(child.slot, clean=outcome.failure is None)
                        yield outcome
                    if not finished:
                        time.sleep(self.poll_s)
            finally:
                for pid, child in running.items():
                    _kill(pid)
                    self._cleanup(child)
                if slots:
                    slots.close()
                shutil.rmtree(self.tmp_root, ignore_errors=True)
                # A child killed outright never killed its sandbox: at the rlimit level its worker
                # and any daemon it forked would outlive the batch (issue 14). Their uids are
                # free now; whatever still runs as one of them is swept.
                sweep_orphaned_uids()

    def _start(self, job: Job, slot: int, fn: Callable[[Job, int], dict[str, Any]],
               slots: SlotHooks | None = None) -> _Child:
        result_path = self.scratch / f"{job.student}.{uuid.uuid4().hex}.json"
        tmp = Path(tempfile.mkdtemp(prefix=f"slot{slot}-", dir=self.tmp_root))
        # The sandbox's unprivileged uid must reach the staging folders created under it.
        tmp.chmod(0o755)
        log_path = self.log_dir / f"{job.student}.log"
        parent = os.getpid()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # else the child inherits and prints the parent's buffered text again
        if slots:
            slots.before_fork(slot)  # the child inherits the slot's sandbox
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its work shows in the records it writes
            _child_main(
                job,
                slot,
                fn,
                result_path=result_path,
                tmp=tmp,
                log_path=log_path,
                parent=parent,
                threads=self.threads,
            )
        if slots:
            slots.after_fork()
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done in the child: whichever runs first wins the race
        return _Child(pid, job, slot, result_path, tmp, log_path, time.monotonic())

    def _collect(self, child: _Child, how: str) -> Outcome:
        seconds = time.monotonic() - child.started
        record = None
        failure = None
        try:
            record = json.loads(child.result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tail = _tail(child.log_path)
            failure = f"the grading process {how} before it produced a result" + (
                f"\n\n{tail}" if tail else ""
            )
        if how.startswith("grading did not finish"):
            record, failure = None, how + (f"\n\n{_tail(child.log_path)}" if child.log_path.exists() else "")
        self._cleanup(child)
        return Outcome(child.job, record, failure, seconds)

    def _cleanup(self, child: _Child) -> None:
        with contextlib.suppress(OSError):
            child.result_path.unlink()
        shutil.rmtree(child.tmp, ignore_errors=True)


@contextlib.contextmanager
def _deferred_ctrl_c() -> Iterator[Callable[[], bool]]:
    """While the batch loop runs, Ctrl-C (SIGINT) only sets a flag; the loop raises
    ``KeyboardInterrupt`` at its next safe point (within ``poll_s``). Raised by Python's own
    handler, the interrupt can land inside one of ``os.fork()``'s at-fork callbacks (logging
    releases its lock there), where CPython reports and drops it: the batch then went on grading
    as if no Ctrl-C had come (about 1 press in 12 a few ms after a save; seen in CI). Only Python's
    default handler is replaced (an ignored SIGINT stays ignored, a caller's own handler stays)."""
    import threading

    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield lambda: False
        return
    hits: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: hits.append(signum))
    try:
        yield lambda: bool(hits)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _child_main(
    job: Job,
    slot: int,
    fn: Callable[[Job, int], dict[str, Any]],
    *,
    result_path: Path,
    tmp: Path,
    log_path: Path,
    parent: int,
    threads: int,
) -> None:  # pragma: no cover
    code = 70
    try:
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        # The parent decides when a grading run stops (and kills it then): a Ctrl-C arriving here
        # would turn into a half-finished result that looks like a real one.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _die_with_parent()
        if os.getppid() != parent:
            os._exit(code)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        tempfile.tempdir = str(tmp)
        os.environ["TMPDIR"] = str(tmp)
        # Parallel children share the CPUs: the student code's sandbox worker and notebook kernel
        # get this child's share (grader.threads). The trusted side's tensors are small: one torch
        # thread is faster than two (measured: 4 samples graded in 74 s instead of 103 s). Only if
        # the parent imported torch: else the grading imports it after starting its sandbox (the
        # grading plugin sets one thread then).
        if "torch" in sys.modules:
            single_torch_thread()
        os.environ[THREADS_ENV] = str(threads)  # batch_threads already kept a caller's HW4_THREADS
        record = fn(job, slot)
        write_text(result_path, json.dumps(record))
        code = 0
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
            sys.stderr.flush()
    finally:
        os._exit(code)


def single_torch_thread() -> None:
    """One intra-op thread for torch in a trusted grading process: its work is many small
    tensor operations, where a second OpenMP thread spins more than it helps."""
    import torch

    torch.set_num_threads(1)


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: an orphaned child finishes its one submission and exits


def _kill(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            target()
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"was killed by {name}" + (" (out of memory?)" if sig == signal.SIGKILL else "")
    return f"exited with status {os.WEXITSTATUS(status)}"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
