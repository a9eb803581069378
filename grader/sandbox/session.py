"""One sandboxed worker for one submission, seen from the trusted side.

``WorkerSession`` stages the worker code, the given files and a sanitized copy of the submission,
starts the worker (``launcher.spawn``), checks that it answers (else the *grader* is at fault:
:class:`~grader.errors.GraderError`), then loads the submission's extracted definitions into it
**one file at a time**: a file whose loading hangs or kills the worker is recorded in
:attr:`WorkerSession.broken` with the reason, the worker is restarted and the other files are
loaded without it -- so an endless loop in ``lab1.ipynb`` costs Lab 1, not the whole submission.

``request()`` sends one frame and waits for the answer with a wall-clock timeout; a timeout, a
crash or a malformed answer kills the worker (``WorkerTimedOut`` / ``WorkerDied``), and the next
``start()`` brings up a fresh one. Replies are read by one thread per worker into a queue of one,
so a worker that spams frames blocks on its pipe instead of filling the grader's memory.

At the ``rlimit`` level the scratch folder is a plain folder: the launcher's watchdog stops the
worker when it holds more than ``Limits.scratch_mb`` or ``Limits.scratch_files`` entries (at the
``bwrap`` level a size-limited tmpfs does that).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.discover import Discovery, walk_files
from grader.errors import GraderError
from grader.sandbox import channel as ch
from grader.sandbox.launcher import Isolation, Limits, SandboxProcess, spawn, stage_dir

__all__ = [
    "GIVEN_SOURCES",
    "LoadReport",
    "WorkerDied",
    "WorkerSession",
    "WorkerTimedOut",
    "stage_submission",
    "unit_module_name",
]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
#: staged name -> source of the given files the worker may import (none holds a solution)
GIVEN_SOURCES = {
    "resnet20.py": REPO / "student_template" / "resnet20.py",
    "train_util.py": REPO / "student_template" / "train_util.py",
    "fp_layers_float.py": REPO / "student_template" / "FP_layers.py",
    "hw4_fixture_data.py": REPO / "reference" / "data.py",
}
MAX_COPY_FILE = 1 << 20  # other files of a submission are copied only if smaller than this
MAX_COPY_TOTAL = 64 << 20
START_TIMEOUT = 120.0  # the worker's own start (importing torch) on a loaded machine


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


class WorkerSession:
    """A sandboxed worker holding one submission's definitions."""

    def __init__(self, discovery: Discovery, isolation: Isolation, limits: Limits, *,
                 load_timeout: float, max_result_bytes: int, slot: int = 0, threads: int = 1):
        self.discovery = discovery
        self.isolation, self.limits = isolation, limits
        self.load_timeout, self.max_result_bytes = load_timeout, max_result_bytes
        self.slot, self.threads = slot, threads
        self.stage = stage_dir()
        self.proc: SandboxProcess | None = None
        self.load_report: LoadReport | None = None
        #: files whose loading hung or killed the worker -> why; never loaded again
        self.broken: dict[str, str] = {}
        self.restarts = 0
        self._ids = 0
        self._replies: queue.Queue = queue.Queue(maxsize=1)
        self._stop_reader = threading.Event()
        self._in_file: Any = None  # the request pipe's write end (a raw file object)
        try:
            self._stage_files()
        except BaseException:
            shutil.rmtree(self.stage, ignore_errors=True)
            raise

    # -------------------------------------------------------------- staging and start

    def _stage_files(self) -> None:
        (self.stage / "code").mkdir()
        (self.stage / "given").mkdir()
        for src in [HERE / "worker.py", HERE / "channel.py", *sorted(HERE.glob("probes_*.py"))]:
            shutil.copyfile(src, self.stage / "code" / src.name)
        for name, src in GIVEN_SOURCES.items():
            shutil.copyfile(src, self.stage / "given" / name)
        self.copy_skipped = stage_submission(self.discovery.root, self.stage / "submission")
        for sub in ("code", "given"):
            (self.stage / sub).chmod(0o755)
            for f in (self.stage / sub).iterdir():
                f.chmod(0o644)
        self._fresh_scratch()

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

    def _spawn(self) -> None:
        """Start a fresh worker process (killing the old one) with a clean scratch folder."""
        self.kill()
        self._fresh_scratch()
        paths = self._paths()
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        env = {
            "PATH": "/usr/bin:/bin", "HOME": paths["scratch"], "TMPDIR": paths["scratch"],
            "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{paths['scratch']}/.mpl",
            "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
            "HW4_GIVEN_DIR": paths["given"], "HW4_SUBMISSION_DIR": paths["submission"],
        }
        argv = [sys.executable, "-I", f"{paths['code']}/worker.py", "--fd-in", str(req_r),
                "--fd-out", str(resp_w), "--max-bytes", str(self.max_result_bytes),
                "--threads", str(self.threads)]
        binds = [(str(self.stage / "code"), paths["code"]), (str(self.stage / "given"), paths["given"]),
                 (str(self.stage / "submission"), paths["submission"])]
        bwrap = self.isolation.level == "bwrap"
        rw_binds = [] if bwrap else [(paths["scratch"], paths["scratch"])]
        try:
            self.proc = spawn(argv, isolation=self.isolation, limits=self.limits, binds=binds,
                              rw_binds=rw_binds, env=env, cwd=paths["scratch"], pass_fds=(req_r, resp_w),
                              slot=self.slot, tmpfs_scratch=paths["scratch"] if bwrap else None)
        except (OSError, ValueError, RuntimeError) as exc:
            for fd in (req_w, resp_r):
                os.close(fd)
            raise GraderError(f"the sandbox could not be started ({self.isolation.level}): {exc}") from exc
        finally:
            os.close(req_r)
            os.close(resp_w)
        self._in_file = os.fdopen(req_w, "wb", buffering=0)
        self._replies = queue.Queue(maxsize=1)
        self._stop_reader = threading.Event()
        reader = os.fdopen(resp_r, "rb", buffering=0)
        threading.Thread(target=self._read_loop, args=(reader, self._replies, self._stop_reader),
                         daemon=True, name="sandbox-reader").start()

    def start(self) -> LoadReport:
        """Start the worker and load the submission's files into it, one at a time.

        Raises:
            GraderError: the worker does not start or answer although no student code ran yet.
        """
        started = time.monotonic()
        units = self._units()
        report = LoadReport(broken=self.broken)
        for _attempt in range(len(units) + 1):
            self._spawn()
            self._check_started()
            report.units = []
            if self._load_all(units, report):
                break
        report.seconds = time.monotonic() - started
        self.load_report = report
        return report

    def _check_started(self) -> None:
        try:
            reply, _ = self.request({"op": "ping"}, timeout=max(START_TIMEOUT, self.load_timeout))
        except (WorkerTimedOut, WorkerDied) as exc:
            how = exc.how if isinstance(exc, WorkerDied) else str(exc)
            tail = "\n".join(exc.output.strip().splitlines()[-20:])
            raise GraderError(f"the sandboxed worker did not start ({how}) before any student code "
                              f"ran:\n{tail}") from None
        if not reply.get("ok"):
            raise GraderError(f"the sandboxed worker did not start: {reply.get('error')}")

    def _load_all(self, units: list[dict], report: LoadReport) -> bool:
        """Load every unit not known to be broken; False when one broke (restart needed)."""
        for unit in units:
            name = unit["unit"]
            if name in self.broken:
                continue
            try:
                reply, blobs = self.request({"op": "load", "units": [unit]}, timeout=self.load_timeout)
            except WorkerTimedOut as exc:
                self.broken[name] = (f"loading it did not finish within {exc.seconds:g} s (an endless "
                                     "loop in a class body, decorator, default argument or import?)")
                return False
            except WorkerDied as exc:
                self.broken[name] = f"the worker running your code {exc.how} while loading it"
                return False
            try:
                body = ch.decode(reply.get("body"), blobs) if reply.get("ok") else None
            except ch.ChannelError as exc:
                body, reply = None, {"error": {"message": f"a malformed answer ({exc})"}}
            if not isinstance(body, dict) or not isinstance(body.get("units"), list):
                err = reply.get("error")
                message = err.get("message") if isinstance(err, dict) else "a malformed answer"
                # Only student code ran in this worker since the ping: its doing, not ours.
                self.broken[name] = f"the worker could not load it: {message}"
                self.kill()
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
        return self.proc is not None and self.proc.popen.poll() is None

    def request(self, header: dict, blobs: list[bytes] | None = None, timeout: float = 30.0,
                ) -> tuple[dict, list[bytes]]:
        """Send one request; return the decoded reply header and blobs.

        Raises:
            WorkerTimedOut: no reply in ``timeout`` seconds (the worker is killed).
            WorkerDied: the worker exited, was stopped by a watchdog, or broke the channel.
        """
        if not self.alive or self._in_file is None:
            raise WorkerDied(self._how_died(), self._output())
        self._ids += 1
        header = dict(header, id=self._ids)
        try:
            ch.write_frame(self._in_file, header, blobs or [])
        except (BrokenPipeError, OSError):
            how = self._how_died()
            self.kill()
            raise WorkerDied(how, self._output()) from None
        try:
            kind, payload = self._replies.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise WorkerTimedOut(timeout, self._output()) from None
        if kind == "eof":
            how = self._how_died()  # waits briefly, so the real exit status is reported
            self.kill()
            raise WorkerDied(how, self._output())
        if kind == "bad":
            self.kill()
            raise WorkerDied(f"sent a malformed reply ({payload})", self._output())
        reply, reply_blobs = payload
        if not isinstance(reply, dict) or reply.get("id") != self._ids:
            self.kill()
            raise WorkerDied("sent a reply that does not answer the request", self._output())
        return reply, reply_blobs

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

    def kill(self) -> None:
        self._stop_reader.set()
        if self.proc is not None:
            self.proc.kill()
        if self._in_file is not None:
            with contextlib.suppress(OSError):
                self._in_file.close()
            self._in_file = None

    def restart(self) -> LoadReport:
        self.restarts += 1
        return self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.stage, ignore_errors=True)

    def __enter__(self) -> WorkerSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
