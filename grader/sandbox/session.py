"""One sandboxed worker for one submission, seen from the trusted side.

``WorkerSession`` stages the worker code, the given files and a sanitized copy of the submission,
starts the worker (``launcher.spawn``), loads the submission's extracted definitions into it and
then answers ``request()`` calls with wall-clock timeouts. When a call times out or the worker
dies, the session is marked dead; ``restart()`` starts a fresh worker and loads again.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.discover import IGNORED_DIRS, Discovery
from grader.sandbox import channel as ch
from grader.sandbox.launcher import Isolation, Limits, SandboxProcess, spawn, stage_dir

__all__ = ["WorkerSession", "WorkerDied", "WorkerTimedOut", "LoadReport", "stage_submission", "GIVEN_SOURCES"]

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
    error: str | None = None  # the whole load failed (timeout, crash)
    seconds: float = 0.0

    def unit_errors(self) -> list[str]:
        out = []
        for u in self.units:
            for cell in u.get("cells", []):
                err = cell["error"]
                where = f"{u['unit']}, {cell['label']}" + (f", line {cell['line']}" if cell.get("line") else "")
                out.append(f"{where}: {err['type']}: {err['message']}")
        return out


def stage_submission(src: Path, dest: Path) -> list[str]:
    """Copy what the worker may need of a submission: sources always, small other files."""
    skipped, total = [], 0
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(p in IGNORED_DIRS or p.startswith(".") for p in rel.parts) or path.is_symlink():
            continue
        if not path.is_file():
            continue
        size = path.stat().st_size
        is_source = path.suffix in (".py", ".ipynb")
        if (not is_source and size > MAX_COPY_FILE) or total + size > MAX_COPY_TOTAL:
            skipped.append(str(rel))
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        target.chmod(0o644)
        total += size
    for d in [dest, *[p for p in dest.rglob("*") if p.is_dir()]]:
        d.chmod(0o755)
    return skipped


class WorkerSession:
    """A sandboxed worker holding one submission's definitions."""

    def __init__(self, discovery: Discovery, isolation: Isolation, limits: Limits, *,
                 load_timeout: float, max_result_bytes: int, slot: int = 0, threads: int = 1):
        self.discovery = discovery
        self.isolation, self.limits = isolation, limits
        self.load_timeout, self.max_result_bytes = load_timeout, max_result_bytes
        self.slot, self.threads = slot, threads
        self.stage = stage_dir()
        self._stage_files()
        self.proc: SandboxProcess | None = None
        self.load_report: LoadReport | None = None
        self.restarts = 0
        self._ids = 0
        self._replies: queue.Queue = queue.Queue()
        self._out_fd: int | None = None
        self._in_file = None

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
        scratch = self.stage / "scratch"
        scratch.mkdir()
        scratch.chmod(0o1777)

    def _paths(self) -> dict[str, str]:
        if self.isolation.level == "bwrap":
            return {"code": "/sandbox/code", "given": "/sandbox/given", "submission": "/submission",
                    "scratch": "/scratch"}
        return {k: str(self.stage / k) for k in ("code", "given", "submission", "scratch")}

    def start(self) -> LoadReport:
        """Start the worker and load the submission's definitions into it."""
        import sys

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
        try:
            self.proc = spawn(argv, isolation=self.isolation, limits=self.limits, binds=binds,
                              env=env, cwd=paths["scratch"], pass_fds=(req_r, resp_w), slot=self.slot,
                              tmpfs_scratch=paths["scratch"] if self.isolation.level == "bwrap" else None)
        finally:
            os.close(req_r)
            os.close(resp_w)
        self._in_file = os.fdopen(req_w, "wb", buffering=0)
        self._replies = queue.Queue()
        reader = os.fdopen(resp_r, "rb", buffering=0)
        threading.Thread(target=self._read_loop, args=(reader, self._replies), daemon=True).start()
        started = time.monotonic()
        report = LoadReport()
        try:
            reply, _ = self.request({"op": "load", "units": self._units()}, timeout=self.load_timeout)
            if reply.get("ok"):
                report.units = ch.decode(reply["body"], [])["units"]
            else:
                report.error = reply["error"]["message"]
        except WorkerTimedOut as exc:
            report.error = f"loading your files did not finish within {exc.seconds:g} s (an endless loop at the top level?)"
        except WorkerDied as exc:
            report.error = f"the worker {exc.how} while loading your files"
        report.seconds = time.monotonic() - started
        self.load_report = report
        return report

    def _units(self) -> list[dict]:
        units = []
        for file in self.discovery.units():
            ex = self.discovery.files[file]
            module = Path(file).stem if file.endswith(".py") else "nb_" + "".join(
                c if c.isalnum() else "_" for c in Path(file).stem)
            units.append({"unit": file, "module": module,
                          "cells": [{"label": c.label, "source": c.source} for c in ex.cells]})
        return units

    def _read_loop(self, reader, replies: queue.Queue) -> None:
        with reader:
            while True:
                try:
                    replies.put(("frame", ch.read_frame(reader, self.max_result_bytes)))
                except EOFError:
                    replies.put(("eof", None))
                    return
                except (ch.ChannelError, OSError, ValueError) as exc:
                    replies.put(("bad", str(exc)))
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
            WorkerDied: the worker exited, or broke the channel.
        """
        if not self.alive or self._in_file is None:
            raise WorkerDied(self._how_died(), self._output())
        self._ids += 1
        header = dict(header, id=self._ids)
        try:
            ch.write_frame(self._in_file, header, blobs or [])
        except (BrokenPipeError, OSError):
            self.kill()
            raise WorkerDied(self._how_died(), self._output()) from None
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
        if self.proc is not None:
            self.proc.kill()
        if self._in_file is not None:
            with contextlib.suppress(OSError):
                self._in_file.close()
            self._in_file = None

    def restart(self) -> LoadReport:
        self.kill()
        self.restarts += 1
        return self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.stage, ignore_errors=True)

    def __enter__(self) -> WorkerSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
