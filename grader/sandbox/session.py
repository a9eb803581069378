"""One sandboxed worker for one submission, seen from the trusted side.

``WorkerSession`` stages the worker code, the given files and a sanitized copy of the submission,
starts the sandbox (``launcher.spawn``) with the zygote in it (``worker.zygote``: torch imported,
no student code) and checks that it answers (else the *grader* is at fault:
:class:`~grader.errors.GraderError`). Each ``start()`` has the zygote fork a fresh worker -- it
kills every process the sandbox ran before and empties the scratch folder -- and loads the
submission's extracted definitions into it **one file at a time**: a file whose loading hangs or
kills the worker is recorded in :attr:`WorkerSession.broken` with the reason, the worker is
restarted and the other files are loaded without it -- so an endless loop in ``lab1.ipynb``
costs Lab 1, not the whole submission. All files together get at most twice the load timeout
per start, and the caller's budget (loading counts against the submission's time).

``request()`` sends one frame and waits for the answer with a timeout in the worker's charged
time (``runclock``: not counting its waits for a CPU; at most ``runclock.BACKSTOP`` times the
timeout in wall-clock time); a timeout, a
crash or a malformed answer ends the worker (``WorkerTimedOut`` / ``WorkerDied``; the zygote
reports how it ended), and the next ``start()`` forks a fresh one (a fresh sandbox where the
zygote is gone, or where it may not sweep: a non-root ``rlimit`` sandbox shares the grader's
uid). Replies are read by one thread per worker into a queue of one, so a worker that spams
frames blocks on its pipe instead of filling the grader's memory.

In a batch, a grading borrows its slot's started sandbox instead of starting its own
(``grader.sandbox.shared``: the zygote sweeps first, the scratch folder must then be empty, the
staged submission is replaced, each worker prints into a pipe of the grading's own); anything
unexpected and the grading starts its own sandbox as above.

At the ``rlimit`` level the scratch folder is a plain folder: the launcher's watchdog stops the
worker when it holds more than ``Limits.scratch_mb`` or ``Limits.scratch_files`` entries (at the
``bwrap`` level a size-limited tmpfs does that).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.discover import Discovery, discover, walk_files
from grader.errors import GraderError
from grader.sandbox import channel as ch
from grader.sandbox import runclock
from grader.sandbox.launcher import (
    Isolation,
    Limits,
    SandboxProcess,
    control_exchange,
    describe_exit,
    detect_isolation,
    host_pid,
    spawn,
    stage_dir,
)
from grader.sandbox.shared import BorrowedProcess, SharedSandbox, borrowable
from reference import data as reference_data
from reference.config import REPO_ROOT

__all__ = [
    "GIVEN_SOURCES",
    "LoadReport",
    "WorkerDied",
    "WorkerSession",
    "WorkerTimedOut",
    "sandbox_session",
    "stage_submission",
    "unit_module_name",
]

HERE = Path(__file__).resolve().parent
REPO = REPO_ROOT  # the checkout, or an installed edition's grader/_bundle
#: staged name -> source of the given files the worker may import (none holds a solution)
GIVEN_SOURCES = {
    "resnet20.py": REPO / "student_template" / "resnet20.py",
    "train_util.py": REPO / "student_template" / "train_util.py",
    "fp_layers_float.py": REPO / "student_template" / "FP_layers.py",
    "hw4_fixture_data.py": Path(reference_data.__file__).resolve(),
}
MAX_COPY_FILE = 1 << 20  # other files of a submission are copied only if smaller than this
MAX_COPY_TOTAL = 64 << 20
START_TIMEOUT = 120.0  # the worker's own start (importing torch) on a loaded machine
FORK_TIMEOUT = 30.0  # the zygote forking a worker (after killing what ran before)


class WorkerDied(Exception):
    def __init__(self, how: str, output: str):
        super().__init__(how)
        self.how, self.output = how, output


class WorkerTimedOut(Exception):
    def __init__(self, seconds: float, output: str):
        super().__init__(f"no answer within {seconds:g} s")
        self.seconds, self.output = seconds, output


@dataclass
class LoadReport:
    units: list[dict] = field(default_factory=list)  # worker's per-unit status
    broken: dict[str, str] = field(default_factory=dict)  # file -> why it could not be loaded
    error: str | None = None  # kept for callers: the whole load failed
    seconds: float = 0.0

    def unit_errors(self) -> list[str]:
        out = [f"{unit}: could not be loaded: {why}" for unit, why in self.broken.items()]
        out += [f"{u['unit']}: named like the module {u['shadowing']}, so `import {u['shadowing']}` gets the "
                "real one; rename the file if you meant to import it" for u in self.units if u.get("shadowing")]
        for u in self.units:
            for cell in u.get("cells", []):
                err = cell["error"]
                where = f"{u['unit']}, {cell['label']}" + (f", line {cell['line']}" if cell.get("line") else "")
                out.append(f"{where}: {err['type']}: {err['message']}")
        return out


def unit_module_name(file: str) -> str:
    """The module name a unit is loaded as: ``FP_layers.py`` -> ``FP_layers`` (so a notebook's
    ``import FP_layers`` finds it), ``hw4.ipynb`` -> ``nb_hw4``."""
    stem = Path(file).stem
    if file.endswith(".py"):
        return stem
    return "nb_" + "".join(c if c.isalnum() else "_" for c in stem)


def stage_submission(src: Path, dest: Path) -> list[str]:
    """Copy what the worker may need of a submission: sources always, small other files.

    Never follows a symlink (file or folder) and copies only regular files; hidden files,
    ignored folders and anything past ``discover.MAX_ENTRIES`` entries are left out.
    Returns the relative paths left out for their size.
    """
    skipped: list[str] = []
    total = 0
    dest.mkdir(parents=True, exist_ok=True)
    for rel in walk_files(src)[0]:
        path = src / rel
        size = path.lstat().st_size
        is_source = path.suffix in (".py", ".ipynb")
        if (not is_source and size > MAX_COPY_FILE) or total + size > MAX_COPY_TOTAL:
            skipped.append(str(rel))
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_regular(path, target)
        total += size
    for d in [dest, *[p for p in dest.rglob("*") if p.is_dir()]]:
        d.chmod(0o755)
    return skipped


def _copy_regular(src: Path, dst: Path) -> None:
    # O_NOFOLLOW: the entry was checked not to be a symlink, and must not become one meanwhile.
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with os.fdopen(fd, "rb", closefd=False) as fin, open(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    finally:
        os.close(fd)
    dst.chmod(0o644)


def sandbox_session(root: Path, *, load_timeout: float = 60.0, limits: Limits | None = None,
                    isolation: str = "auto", slot: int = 0, max_result_bytes: int = 64 << 20,
                    threads: int = 1) -> WorkerSession:
    """The sandbox of the submission at ``root`` (staged, not started), as a
    ``proxy.Submission`` makes it; apart so that a grading can launch it before importing torch
    (this module does not import it)."""
    root = Path(root)
    limits = limits or Limits()
    shared = borrowable({"load_timeout": load_timeout, "limits": limits, "isolation": isolation, "slot": slot,
                         "max_result_bytes": max_result_bytes, "threads": threads})
    return WorkerSession(discover(root), shared.session.isolation if shared else detect_isolation(isolation), limits,
                         load_timeout=load_timeout, max_result_bytes=max_result_bytes, slot=slot, threads=threads,
                         shared=shared)


class WorkerSession:
    """A sandboxed worker holding one submission's definitions."""

    def __init__(self, discovery: Discovery, isolation: Isolation, limits: Limits, *,
                 load_timeout: float, max_result_bytes: int, slot: int = 0, threads: int = 1,
                 shared: SharedSandbox | None = None):
        self.discovery = discovery
        self.isolation, self.limits = isolation, limits
        self.load_timeout, self.max_result_bytes = load_timeout, max_result_bytes
        self.slot, self.threads = slot, threads
        self.proc: SandboxProcess | BorrowedProcess | None = None
        self.load_report: LoadReport | None = None
        #: files whose loading hung or killed the worker -> why; never loaded again
        self.broken: dict[str, str] = {}
        self.restarts = 0
        #: files of the submission left out of the staged copy for their size (see left_out)
        self.copy_skipped: list[str] = []
        self._ids = 0
        self._replies: queue.Queue = queue.Queue(maxsize=1)
        self._stop_reader = threading.Event()
        self._in_file: Any = None  # the request pipe's write end (a raw file object)
        self._ctl: socket.socket | None = None  # the zygote's control socket
        self._child_pid: int | None = None  # the worker's pid (as the zygote sees it)
        self._child_pid_here: int | None = None  # the same worker's pid as this process sees it
        self.last_charged = 0.0  # charged seconds of the last request (runclock)
        self._forks = 0  # workers forked by this sandbox's zygote
        self._ready = False  # the zygote answered its ping (see launch)
        self._taken = True  # a borrowed sandbox was swept and holds this submission (see _take_over)
        if shared is not None and self._borrow(shared):
            return
        self.stage = stage_dir()
        self._own_stage = True
        try:
            self._stage_files()
        except BaseException:
            shutil.rmtree(self.stage, ignore_errors=True)
            raise

    def _borrow(self, shared: SharedSandbox) -> bool:
        """Take over a batch slot's started sandbox (``grader.sandbox.shared``); it is swept and
        the submission staged in it on the first start (:meth:`_take_over`), so that a grading
        imports its tests while a slot's first zygote still imports torch."""
        if shared.session._ctl is None:
            return False
        self.stage, self._own_stage = shared.stage, False
        # a descriptor of our own: closing it (kill) leaves the owner's open
        self._ctl = shared.session._ctl.dup()
        self.proc = BorrowedProcess(self._ctl, self.limits, self._wake,
                                    root_pid=shared.session.proc.root_pid if shared.session.proc else None)
        self._taken = False
        return True

    def _take_over(self) -> None:
        """The first start in a borrowed sandbox: the zygote sweeps what the previous grading
        left, and only with its scratch folder then empty is the submission staged in place of
        the previous one. Else (or on any error) this grading starts a sandbox of its own."""
        self._taken = True
        try:
            if self._control({"op": "sweep"}, timeout=START_TIMEOUT).get("left") != 0:
                raise WorkerDied("its sandbox could not be emptied", "")
            target = self.stage / "submission"
            for entry in list(target.iterdir()):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            self.copy_skipped = stage_submission(self.discovery.root, target)
            self._ready = True  # its zygote answered the sweep
        except (WorkerDied, WorkerTimedOut, OSError):
            self.kill()
            self.proc = None
            self._restage()

    def _wake(self) -> None:
        """End the wait for a reply now (a borrowed sandbox's worker flooded its output)."""
        with contextlib.suppress(queue.Full):
            self._replies.put_nowait(("eof", None))

    # -------------------------------------------------------------- staging and start

    def _stage_files(self) -> None:
        (self.stage / "code").mkdir()
        (self.stage / "given").mkdir()
        for src in [HERE / "worker.py", HERE / "channel.py", HERE / "cpu_only.py", HERE / "runclock.py",
                    *sorted(HERE.glob("probes_*.py"))]:
            shutil.copyfile(src, self.stage / "code" / src.name)
        for name, src in GIVEN_SOURCES.items():
            shutil.copyfile(src, self.stage / "given" / name)
        self.copy_skipped = stage_submission(self.discovery.root, self.stage / "submission")
        for sub in ("code", "given"):
            (self.stage / sub).chmod(0o755)
            for f in (self.stage / sub).iterdir():
                f.chmod(0o644)
        self._fresh_scratch()

    def _restage(self) -> None:
        self.stage, self._own_stage = stage_dir(), True
        self._stage_files()

    def _fresh_scratch(self) -> None:
        scratch = self.stage / "scratch"
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        scratch.chmod(0o1777)

    def _paths(self) -> dict[str, str]:
        if self.isolation.level == "bwrap":
            return {"code": "/sandbox/code", "given": "/sandbox/given", "submission": "/submission",
                    "scratch": "/scratch"}
        return {k: str(self.stage / k) for k in ("code", "given", "submission", "scratch")}

    def launch(self) -> None:
        """Start the sandbox now without waiting for it: the zygote imports torch (seconds) while
        the caller does its own work (a fresh grading process imports torch and pytest too); the
        first worker's start waits for it. A sandbox already started is left as it is.

        Raises:
            GraderError: the sandbox could not be started at all.
        """
        if self.proc is None:
            self._launch()

    def _spawn(self) -> None:
        """Start a fresh sandbox (killing the old one) and wait until its zygote answers."""
        self._launch()
        self._await_ready()

    def _launch(self) -> None:
        """Start a fresh sandbox (killing the old one) with a clean scratch folder: the zygote
        (``worker.zygote``), which imports torch and waits on the control socket."""
        self.kill()
        if not self._own_stage:  # a borrowed sandbox failed: ours gets a staging folder of its own
            self._restage()
        self._fresh_scratch()
        paths = self._paths()
        env = {
            "PATH": "/usr/bin:/bin", "HOME": paths["scratch"], "TMPDIR": paths["scratch"],
            "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{paths['scratch']}/.mpl",
            "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
            "HW4_GIVEN_DIR": paths["given"], "HW4_SUBMISSION_DIR": paths["submission"],
            "HW4_SCRATCH_DIR": paths["scratch"],
        }
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-I", f"{paths['code']}/worker.py", "--ctl", str(theirs.fileno()),
                "--max-bytes", str(self.max_result_bytes), "--threads", str(self.threads)]
        if self.can_sweep:
            argv.append("--sweep")
        binds = [(str(self.stage / "code"), paths["code"]), (str(self.stage / "given"), paths["given"]),
                 (str(self.stage / "submission"), paths["submission"])]
        bwrap = self.isolation.level == "bwrap"
        rw_binds = [] if bwrap else [(paths["scratch"], paths["scratch"])]
        try:
            self.proc = spawn(argv, isolation=self.isolation, limits=self.limits, binds=binds,
                              rw_binds=rw_binds, env=env, cwd=paths["scratch"], pass_fds=(theirs.fileno(),),
                              slot=self.slot, tmpfs_scratch=paths["scratch"] if bwrap else None)
        except (OSError, ValueError, RuntimeError) as exc:
            ours.close()
            raise GraderError(f"the sandbox could not be started ({self.isolation.level}): {exc}") from exc
        finally:
            theirs.close()
        self._ctl = ours
        self._forks = 0
        self._ready = False

    def _await_ready(self) -> None:
        """Wait for the launched zygote's answer (else the *grader* is at fault)."""
        try:
            reply = self._control({"op": "ping"}, timeout=max(START_TIMEOUT, self.load_timeout))
        except (WorkerTimedOut, WorkerDied) as exc:
            how = exc.how if isinstance(exc, WorkerDied) else str(exc)
            tail = "\n".join(exc.output.strip().splitlines()[-20:])
            raise GraderError(f"the sandboxed worker did not start ({how}) before any student code "
                              f"ran:\n{tail}") from None
        if not reply.get("ok"):
            raise GraderError(f"the sandboxed worker did not start: {reply.get('error')}")
        self._ready = True

    def left_out(self) -> list[str]:
        """What the student is told about files of the submission not staged in the sandbox
        (:func:`stage_submission`): their code cannot open them while it is graded."""
        skipped = self.copy_skipped
        if not skipped:
            return []
        names = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
        return [f"not copied into the sandbox, so your code cannot read them while it is graded (files other "
                f"than .py/.ipynb over {MAX_COPY_FILE >> 20} MB, or past {MAX_COPY_TOTAL >> 20} MB in all): {names}"]

    def ping(self, timeout: float) -> bool:
        """Is the started zygote idle and answering? False when it is gone, a reply nobody read
        waits on its socket (a job ended in the middle of a request) or it does not answer a ping
        in ``timeout`` seconds (the batch parent's check between two borrowers of a slot
        sandbox, ``grader.sandbox.shared``)."""
        ctl = self._ctl
        if ctl is None or self.proc is None or self.proc.popen.poll() is not None:
            return False
        try:
            ctl.setblocking(False)
            try:
                ctl.recv(1 << 16)
                return False
            except BlockingIOError:
                pass
            finally:
                ctl.setblocking(True)
            reply = self._control({"op": "ping"}, timeout=timeout)
        except (OSError, WorkerDied, WorkerTimedOut):
            return False
        self._ready = bool(reply.get("ok"))
        return self._ready

    @property
    def borrowed(self) -> bool:
        """This grading uses a batch slot's sandbox (``grader.sandbox.shared``), still usable."""
        return isinstance(self.proc, BorrowedProcess) and self.proc.usable

    @property
    def can_sweep(self) -> bool:
        """May the zygote ``kill(-1)``? Only where that reaches the sandbox alone: a PID
        namespace (bwrap) or a uid of its own (rlimit as root). A non-root rlimit sandbox shares
        the grader's uid, so each fresh worker is a fresh sandbox there."""
        return self.isolation.level == "bwrap" or (os.geteuid() == 0 and self.isolation.uid_mode != "root")

    def _control(self, message: dict, fds: tuple[int, ...] = (), timeout: float = FORK_TIMEOUT) -> dict:
        """One request on the zygote's control socket (see ``worker.zygote``).

        Raises:
            WorkerTimedOut / WorkerDied: no answer in time, or the zygote is gone (the sandbox is
                then killed: the next start spawns a new one).
        """
        if self._ctl is None or self.proc is None or self.proc.popen.poll() is not None:
            raise WorkerDied(self._how_died(), self._output())
        try:
            data = control_exchange(self._ctl, message, fds, timeout)
        except TimeoutError:
            self.kill()
            raise WorkerTimedOut(timeout, self._output()) from None
        except OSError:
            data = b""
        try:
            reply = json.loads(data) if data else None
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            how = self._how_died() if data == b"" else "sent a malformed control reply"
            self.kill()
            raise WorkerDied(how, self._output())
        return reply

    def _fork(self) -> None:
        """A fresh worker for the next phase or restart: forked by the zygote, which first kills
        whatever ran before in the sandbox (see ``worker.zygote``). Where the zygote may not
        sweep, or is gone or hung, a whole new sandbox is started first."""
        self.end_child()
        if self.borrowed and not self._taken:
            self._take_over()
        for attempt in (1, 2):
            if self.proc is None or self.proc.popen.poll() is not None or (self._forks and not self.can_sweep):
                self._spawn()
            elif not self._ready:  # launched early (see launch): its zygote must answer first
                self._await_ready()
            req_r, req_w = os.pipe()
            resp_r, resp_w = os.pipe()
            # a borrowed sandbox's worker prints into a pipe of this grading's own
            out_r, out_w = os.pipe() if self.borrowed else (-1, -1)
            try:
                reply = self._control({"op": "fork"}, fds=(req_r, resp_w, *((out_w,) if out_w >= 0 else ())))
            except (WorkerTimedOut, WorkerDied):
                reply = {"ok": False}
            finally:
                os.close(req_r)
                os.close(resp_w)
                if out_w >= 0:
                    os.close(out_w)
            if out_r >= 0:
                if reply.get("ok") and isinstance(self.proc, BorrowedProcess):
                    self.proc.drain(os.fdopen(out_r, "rb", buffering=0))
                else:
                    os.close(out_r)
            if reply.get("ok") and isinstance(reply.get("pid"), int):
                self._child_pid = reply["pid"]
                # its pid here, for its charged time (runclock), once per worker
                root = getattr(self.proc, "root_pid", None)
                self._child_pid_here = host_pid(self._child_pid, root) if isinstance(root, int) else None
                break
            os.close(req_w)
            os.close(resp_r)
            self.kill()
            if attempt == 2:
                raise GraderError(f"the sandbox's zygote could not start a worker: {reply.get('error', 'it died')}")
        self._forks += 1
        self._in_file = os.fdopen(req_w, "wb", buffering=0)
        self._replies = queue.Queue(maxsize=1)
        self._stop_reader = threading.Event()
        reader = os.fdopen(resp_r, "rb", buffering=0)
        threading.Thread(target=self._read_loop, args=(reader, self._replies, self._stop_reader),
                         daemon=True, name="sandbox-reader").start()

    def start(self, allowance: float | None = None) -> LoadReport:
        """A fresh worker with the submission's files loaded into it, one at a time.

        Loading counts against the submission (issue 14): each file may take ``load_timeout``
        seconds and all of them together ``allowance`` (at most ``2 * load_timeout``; the caller
        passes what is left of the submission's budget). A file that hangs or kills the worker
        is left out with the reason (``broken``); when the allowance runs out, the file being
        loaded and those not reached yet are left out too, and the worker is restarted with the
        files that did load.

        Raises:
            GraderError: the sandbox does not start or answer although no student code ran yet.
        """
        started = time.monotonic()
        units = self._units()
        report = LoadReport(broken=self.broken)
        limit = 2 * self.load_timeout if allowance is None else min(allowance, 2 * self.load_timeout)
        clock: dict[str, Any] = {"used": 0.0, "limit": max(limit, 0.0), "good": set()}
        for _attempt in range(len(units) + 1):
            self._fork()
            report.units = []
            if self._load_all(units, report, clock):
                break
        report.seconds = time.monotonic() - started
        self.load_report = report
        return report

    def _load_all(self, units: list[dict], report: LoadReport, clock: dict) -> bool:
        """Load every unit not known to be broken; False when one broke (restart needed).

        ``clock``: the start's ``limit`` and the seconds ``used`` so far, counting each unit's
        first load and each failure once: a restart loads the units that loaded before again
        (``good``, each within ``load_timeout``) without charging them twice, and hanging
        files cannot each take a fresh allowance.
        """
        pending = [u["unit"] for u in units if u["unit"] not in self.broken]
        ran_out = (f"not loaded: loading your files took more than {clock['limit']:g} s in all "
                   "(each start of your code loads them again)")
        for unit in units:
            name = unit["unit"]
            if name in self.broken:
                continue
            known = name in clock["good"]
            timeout = self.load_timeout if known else min(self.load_timeout, clock["limit"] - clock["used"])
            if timeout <= 0:
                for rest in pending[pending.index(name):]:
                    self.broken[rest] = ran_out
                return True
            try:
                reply, blobs = self.request({"op": "load", "units": [unit]}, timeout=timeout)
            except WorkerTimedOut as exc:
                clock["used"] += self.last_charged  # charged: a busy machine's delays are not the student's
                if timeout < self.load_timeout:
                    for rest in pending[pending.index(name):]:
                        self.broken[rest] = ran_out
                else:
                    self.broken[name] = (f"loading it did not finish within {exc.seconds:g} s (an endless "
                                         "loop in a class body, decorator, default argument or import?)")
                return False
            except WorkerDied as exc:
                clock["used"] += self.last_charged
                self.broken[name] = f"the worker running your code {exc.how} while loading it"
                return False
            if not known:
                clock["used"] += self.last_charged
                clock["good"].add(name)
            try:
                body = ch.decode(reply.get("body"), blobs) if reply.get("ok") else None
            except ch.ChannelError as exc:
                body, reply = None, {"error": {"message": f"a malformed answer ({exc})"}}
            if not isinstance(body, dict) or not isinstance(body.get("units"), list):
                err = reply.get("error")
                message = err.get("message") if isinstance(err, dict) else "a malformed answer"
                # Only student code ran in this worker since the fork: its doing, not ours.
                self.broken[name] = f"the worker could not load it: {message}"
                self.end_child()
                return False
            report.units.extend(u for u in body["units"] if isinstance(u, dict))
        return True

    def _units(self) -> list[dict]:
        units = []
        for file in self.discovery.units():
            ex = self.discovery.files[file]
            units.append({"unit": file, "module": unit_module_name(file),
                          "cells": [{"label": c.label, "source": c.source} for c in ex.cells]})
        return units

    def _read_loop(self, reader, replies: queue.Queue, stop: threading.Event) -> None:
        def put(item: tuple) -> bool:
            while not stop.is_set():
                try:
                    replies.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        with reader:
            while not stop.is_set():
                try:
                    frame = ch.read_frame(reader, self.max_result_bytes)
                except EOFError:
                    put(("eof", None))
                    return
                except (ch.ChannelError, OSError, ValueError) as exc:
                    put(("bad", str(exc)))
                    return
                if not put(("frame", frame)):
                    return

    # -------------------------------------------------------------- requests

    @property
    def alive(self) -> bool:
        """A worker is ready for requests (its sandbox runs and its channel is open)."""
        return self.proc is not None and self.proc.popen.poll() is None and self._in_file is not None

    def request(self, header: dict, blobs: list[bytes] | None = None, timeout: float = 30.0,
                ) -> tuple[dict, list[bytes]]:
        """Send one request to the worker; return the decoded reply header and blobs.

        A reply of kind ``timeout`` (the worker's own soft deadline) is returned, and the worker
        is ended all the same.

        Raises:
            WorkerTimedOut: no reply in ``timeout`` seconds of the worker's charged time (see
                :meth:`_await_reply`; the worker is killed).
            WorkerDied: the worker exited, was stopped by a watchdog, or broke the channel.
        """
        self.last_charged = 0.0
        if not self.alive or self._in_file is None:
            raise WorkerDied(self._how_died(), self._output())
        self._ids += 1
        header = dict(header, id=self._ids)
        clock = runclock.Stopwatch(self._child_pid_here)  # wall-clock time where the pid is unknown
        try:
            ch.write_frame(self._in_file, header, blobs or [])
        except (BrokenPipeError, OSError):
            how = self._child_death()
            raise WorkerDied(how, self._output()) from None
        try:
            kind, payload = self._await_reply(timeout, clock)
        except queue.Empty:
            self.end_child(sweep=True)
            raise WorkerTimedOut(timeout, self._output()) from None
        if kind == "eof":
            how = self._child_death()  # asks the zygote, so the real exit status is reported
            raise WorkerDied(how, self._output())
        if kind == "bad":
            self.end_child(sweep=True)
            raise WorkerDied(f"sent a malformed reply ({payload})", self._output())
        reply, reply_blobs = payload
        if not isinstance(reply, dict) or reply.get("id") != self._ids:
            self.end_child(sweep=True)
            raise WorkerDied("sent a reply that does not answer the request", self._output())
        error = reply.get("error")
        if isinstance(error, dict) and error.get("kind") == "timeout":
            # The worker interrupted the call itself (its soft deadline), but what the call left
            # running or half-done stays: processes filling the uid's process limit (the next
            # call needing a thread then fails, or not, depending on how far a fork bomb got
            # before its deadline), module state mid-update. Like a hard timeout, it ends the
            # worker; the next start forks a fresh one after the zygote's sweep.
            self.end_child(sweep=True)
        return reply, reply_blobs

    def _await_reply(self, limit: float, clock: runclock.Stopwatch) -> tuple[str, Any]:
        """The worker's next reply within ``limit`` seconds of its charged time (``runclock``:
        time it waited for a CPU does not count) and ``runclock.BACKSTOP * limit`` wall-clock
        seconds. Records the charged seconds in ``last_charged``. Raises ``queue.Empty`` when
        the time is up."""
        wait = limit
        try:
            while True:
                try:
                    return self._replies.get(timeout=wait)
                except queue.Empty:
                    wait = min(limit - clock.charged(), runclock.BACKSTOP * limit - clock.wall())
                    if wait <= 0.01:
                        raise
        finally:
            self.last_charged = clock.charged()

    def _child_death(self) -> str:
        """How the worker ended: the sandbox's own exit (a watchdog, the zygote gone), or the
        child's status as the zygote reaped it. The worker is gone afterwards."""
        pid = self._child_pid
        self.end_child()
        if self.proc is None or self.proc.stop_reason or self.proc.popen.poll() is not None or pid is None:
            how = self._how_died()
            self.kill()
            return how
        try:
            reply = self._control({"op": "status", "pid": pid}, timeout=10.0)
        except (WorkerTimedOut, WorkerDied):
            return self._how_died()
        if self.proc.stop_reason:
            return self.proc.exit_description()
        code = reply.get("exit")
        return describe_exit(code) if isinstance(code, int) else "ended"

    def _how_died(self) -> str:
        if self.proc is None:
            return "never started"
        with contextlib.suppress(Exception):
            self.proc.popen.wait(timeout=2)
        return self.proc.exit_description()

    def _output(self) -> str:
        return self.proc.output_text() if self.proc else ""

    def output(self) -> str:
        """What the student's code printed so far (capped)."""
        return self._output()

    # -------------------------------------------------------------- lifecycle

    def end_child(self, sweep: bool = False) -> None:
        """Close the worker's channel; with ``sweep`` also have the zygote kill it now (a hung
        worker must not burn CPU until the next start). The next start forks a fresh one."""
        self._stop_reader.set()
        if self._in_file is not None:
            with contextlib.suppress(OSError):
                self._in_file.close()
            self._in_file = None
        self._child_pid = self._child_pid_here = None
        if sweep and self.proc is not None and self.proc.popen.poll() is None:
            try:
                self._control({"op": "sweep"}, timeout=10.0)
            except (WorkerTimedOut, WorkerDied):
                self.kill()

    def kill(self) -> None:
        """Kill the whole sandbox (zygote, worker and anything they started)."""
        self.end_child()
        if self.proc is not None:
            self.proc.kill()
        if self._ctl is not None:
            with contextlib.suppress(OSError):
                self._ctl.close()
            self._ctl = None

    def restart(self, allowance: float | None = None) -> LoadReport:
        self.restarts += 1
        return self.start(allowance)

    def close(self) -> None:
        self.kill()
        if self._own_stage:
            shutil.rmtree(self.stage, ignore_errors=True)

    def __enter__(self) -> WorkerSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
