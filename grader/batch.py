"""Grade a class: many submissions in parallel, resumable, each in a forked child of a warm parent.

``hw4grade grade SUBMISSIONS --out OUT`` comes here. The flow:

1. **Collect** (:func:`collect`): SUBMISSIONS is a folder or one LMS export zip. Each entry is a
   submission: a folder or a ``.zip`` (student id = its name, sanitized to ``[A-Za-z0-9._-]``).
   A top-level folder with no homework files of its own whose subfolders are submissions is a
   *group* (a section, or the samples' kind): its submissions are named ``<group>-<name>``, so
   ``fixtures/submissions/buggy/lab1_missing_factor_2`` is ``buggy-lab1_missing_factor_2``.
   Groups are recognised when some top-level folder holds two or more submissions; ``--layout``
   forces ``flat`` or ``grouped``. ``__MACOSX``, ``.DS_Store`` and hidden entries are ignored;
   stray files are reported and skipped, except Canvas-style loose files
   (``name_userid_subid_file.ext``), grouped per student (id ``name_userid``). Two entries that
   end up with the same id (``alice/`` and ``alice.zip``) are both graded, the second as
   ``alice-2``, with a warning naming both.
2. **Skip what is done**: a submission's key is the hash of its files plus the grading
   fingerprint (the grader, the rubric tests, the reference, the config and the options). A
   finished submission whose key is unchanged is not graded again; ``--regrade`` forces it.
3. **Grade** (:func:`grade_job`) through an :class:`Executor`. :class:`ForkExecutor` imports
   torch, numpy, pytest and Hypothesis once in the parent and forks one child per submission
   (so one submission can never disturb another's grading), each with its own sandbox slot. The
   child copies or unpacks the submission with ``grader.archive`` (nested zips, wrapping
   folders, links and zip bombs are handled there) and grades the clean copy. A child that
   crashes, hangs past the per-submission limit or is killed yields a failure record, never a
   stopped batch.
4. **Write** as each finishes: ``OUT/.hw4grade/records/<student>.json`` (the full result, the
   instructor's copy, written atomically: it is what "done" means), then
   ``OUT/<student>/results.json`` and ``feedback.md``; at the end (or on Ctrl-C) the batch files:
   ``gradebook.csv``, ``manual.csv``, ``summary.html``, ``grader-errors/<student>.txt``.

Everything written is a pure function of the records and the merged manual scores, so an
interrupted batch run again produces the same files as an uninterrupted one (``execution_time``
in ``results.json`` aside).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import time
import traceback
import uuid
import zipfile
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from grader import archive
from grader.archive import ArchiveError
from grader.grade import GradeOptions, grade_submission
from grader.outputs import manual as manual_out
from grader.outputs.atomic import write_text
from grader.outputs.feedback import feedback_markdown
from grader.outputs.gradebook import gradebook_csv
from grader.outputs.results_json import results_text
from grader.outputs.summary import summary_html
from grader.results import SubmissionResult, build_result
from reference.config import ITEM_IDS, REPO_ROOT, Config, load

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
    "grade_job",
    "grading_fingerprint",
    "prepare",
    "run_batch",
    "warm_up",
    "write_outputs",
]

STATE = ".hw4grade"
RECORD_VERSION = 1
LAYOUTS = ("auto", "flat", "grouped")
#: names never taken as submissions (OS and tool litter)
JUNK = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini", "__pycache__", ".ipynb_checkpoints", ".git"}
HOMEWORK_SUFFIXES = {".py", ".ipynb"}
HOMEWORK_NAMES = {"answers.yaml", "answers.yml"}
#: names a student id may not take: they are the batch's own files in OUT
RESERVED = {"grader-errors", "gradebook.csv", "manual.csv", "manual.new.csv", "summary.html", STATE}
# Canvas "download submissions": <name>[_LATE]_<user id>_<submission id>_<original file name>
CANVAS = re.compile(r"^(?P<who>[A-Za-z][A-Za-z0-9-]*)(?:_LATE)?_(?P<uid>\d+)_(?P<sid>\d+)_(?P<file>.+)$")
# Margin over the config's time budgets before the parent stops a grading child itself.
TIMEOUT_MARGIN_S = 300.0


class BatchError(Exception):
    """A problem with the batch as a whole (a missing input, OUT in use); the CLI exits 2."""


# ============================================================================ collection


@dataclass(frozen=True)
class Source:
    """One submission found in SUBMISSIONS."""

    student: str
    path: Path  # a folder or a zip file
    kind: str  # "folder" or "zip"
    origin: str  # where it came from, as the instructor named it


@dataclass
class Collection:
    sources: list[Source]
    warnings: list[str] = field(default_factory=list)


def collect(submissions: Path, work: Path, layout: str = "auto") -> Collection:
    """Find every submission in ``submissions`` (a folder or an export zip).

    ``work`` is a scratch folder of the batch (an export zip is unpacked there).

    Raises:
        BatchError: ``submissions`` does not exist, is not a folder or zip, holds no submission.
    """
    if layout not in LAYOUTS:
        raise BatchError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    submissions = Path(submissions)
    warnings: list[str] = []
    if submissions.is_dir():
        root, label = submissions, ""
    elif submissions.is_file():
        if not zipfile.is_zipfile(submissions):
            raise BatchError(f"{submissions}: not a folder and not a .zip file")
        export = work / "export"
        shutil.rmtree(export, ignore_errors=True)
        try:
            # Student zips inside stay zips here; each is unpacked by its own grading child.
            warnings += [
                f"{submissions.name}: {w}" for w in archive.extract_zip(submissions, export, export=True)
            ]
        except ArchiveError as exc:
            raise BatchError(f"{submissions}: cannot be unpacked: {exc}") from None
        with contextlib.suppress(OSError, zipfile.BadZipFile), zipfile.ZipFile(submissions) as zf:
            if any(n.startswith("__MACOSX/") or "/__MACOSX/" in n for n in zf.namelist()):
                warnings.append(f"{submissions.name}: __MACOSX/ entries (macOS archive metadata) ignored")
        root, label = _unwrap_export(export), f"{submissions.name}:"
    else:
        raise BatchError(f"{submissions}: no such file or folder")
    loose_homework = [
        p
        for p in _entries(root)
        if p.is_file()
        and (p.suffix in HOMEWORK_SUFFIXES or p.name in HOMEWORK_NAMES)
        and not CANVAS.match(p.name)
    ]
    if loose_homework and not _children(root):
        raise BatchError(
            f"{submissions}: this is one submission, not a folder of them (it holds "
            f"{', '.join(p.name for p in loose_homework)[:80]}); pass the folder that "
            "contains it, or run `hw4grade check` on it"
        )
    sources = _scan(root, label, work, layout, warnings)
    if not sources:
        raise BatchError(
            f"{submissions}: no submissions found (expected one folder or .zip file per student)"
        )
    return Collection(_dedupe(sources, warnings), warnings)


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(
            (p for p in folder.iterdir() if p.name not in JUNK and not p.name.startswith(".")),
            key=lambda p: p.name,
        )
    except OSError:
        return []


def _has_homework(folder: Path) -> bool:
    return any(
        p.is_file() and (p.suffix in HOMEWORK_SUFFIXES or p.name in HOMEWORK_NAMES) for p in _entries(folder)
    )


def _is_zip(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".zip"


def _children(folder: Path) -> list[Path]:
    """What inside ``folder`` could be a submission: folders and zips."""
    return [p for p in _entries(folder) if not p.is_symlink() and (p.is_dir() or _is_zip(p))]


def _unwrap_export(root: Path) -> Path:
    # An export often wraps everything in one folder ("submissions/"); a folder that is itself a
    # submission is not a wrapper.
    for _ in range(3):
        entries = _entries(root)
        if (
            len(entries) == 1
            and entries[0].is_dir()
            and not entries[0].is_symlink()
            and not _has_homework(entries[0])
        ):
            root = entries[0]
        else:
            break
    return root


def _scan(root: Path, label: str, work: Path, layout: str, warnings: list[str]) -> list[Source]:
    entries = []
    for p in sorted(root.iterdir(), key=lambda p: p.name):
        if p.name == "__MACOSX":
            warnings.append(f"{label}__MACOSX/: macOS archive metadata, ignored")
        elif p.name in JUNK or p.name.startswith("."):
            continue
        elif p.is_symlink():
            warnings.append(f"{label}{p.name}: a symbolic link, ignored")
        else:
            entries.append(p)
    folders = [p for p in entries if p.is_dir()]
    # A candidate group holds no homework files of its own; it *is* a group when the layout says
    # so, or (auto) when some candidate holds two or more submissions: then a one-child candidate
    # is a group of one, not one student's work wrapped in a folder.
    candidates = {p: _children(p) for p in folders if not _has_homework(p) and _children(p)}
    grouped = layout == "grouped" or (layout == "auto" and any(len(c) >= 2 for c in candidates.values()))
    sources: list[Source] = []
    loose: dict[str, list[Path]] = {}
    for p in entries:
        if p.is_dir() and grouped and p in candidates:
            for child in candidates[p]:
                sources.append(_source(f"{p.name}-{_stem(child)}", child, f"{label}{p.name}/{child.name}"))
            strays = [c.name for c in _entries(p) if c not in candidates[p]]
            if strays:
                warnings.append(
                    f"{label}{p.name}/: stray files ignored: {', '.join(strays[:5])}"
                    + (f" and {len(strays) - 5} more" if len(strays) > 5 else "")
                )
        elif p.is_dir() or _is_zip(p):
            sources.append(_source(_stem(p), p, f"{label}{p.name}"))
        elif m := CANVAS.match(p.name):
            loose.setdefault(f"{m.group('who')}_{m.group('uid')}", []).append(p)
        else:
            warnings.append(
                f"{label}{p.name}: a stray file at the top level, ignored "
                "(expected one folder or .zip file per student)"
            )
    if loose:
        canvas = work / "canvas"
        shutil.rmtree(canvas, ignore_errors=True)
        for who, files in sorted(loose.items()):
            dest = canvas / who
            dest.mkdir(parents=True)
            for f in files:
                m = CANVAS.match(f.name)
                assert m is not None  # matched when collected
                shutil.copyfile(f, dest / m.group("file"))
            sources.append(_source(who, dest, f"{label}{who}_* ({len(files)} loose files)"))
        warnings.append(
            f"{label}: grouped {sum(map(len, loose.values()))} loose files into "
            f"{len(loose)} submissions by their Canvas-style names (name_userid_subid_file)"
        )
    return sources


def _stem(path: Path) -> str:
    return path.stem if _is_zip(path) else path.name


def _source(name: str, path: Path, origin: str) -> Source:
    return Source(sanitize_id(name), path, "zip" if _is_zip(path) else "folder", origin)


def sanitize_id(name: str) -> str:
    """A student id safe as a folder name and a CSV cell: ``[A-Za-z0-9._-]``, no leading dot;
    Moodle's ``_assignsubmission_file_`` suffix dropped."""
    name = re.sub(r"_assignsubmission_file_?$", "", name)
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "submission"
    text = text[:100]
    return text + "_" if text in RESERVED else text


def _dedupe(sources: list[Source], warnings: list[str]) -> list[Source]:
    seen: dict[str, Source] = {}
    out = []
    for s in sorted(sources, key=lambda s: (s.student.lower(), s.origin)):
        student = s.student
        n = 1
        # Case-insensitive: OUT may live on a file system that folds case.
        while student.lower() in seen:
            n += 1
            student = f"{s.student}-{n}"
        if student != s.student:
            first = seen[s.student.lower()]
            warnings.append(
                f"duplicate name {s.student!r}: {first.origin} is graded as {first.student}, "
                f"{s.origin} as {student}"
            )
            renamed = replace(s, student=student)
        else:
            renamed = s
        seen[student.lower()] = renamed
        out.append(renamed)
    return sorted(out, key=lambda s: s.student)


# ============================================================================ unpacking


def prepare(source: Path, kind: str, workdir: Path) -> tuple[Path, list[str]]:
    """The folder to grade for one submission: a clean copy in ``workdir`` (``kind`` is
    ``folder`` or ``zip``), made by ``grader.archive.unpack_submission``.

    A copy even of a folder: the grader reads some submission files in the trusted process
    (``answers.yaml``), and the copy holds regular files only (a link to the tests or to
    ``/etc`` is dropped), unwrapped (``alice.zip`` -> ``hw4/...``, a lone zip inside a folder is
    opened). A refused or corrupt archive is not an error of the batch: the student is graded on
    an empty folder (0 points) with the reason as a warning they will read.
    """
    shutil.rmtree(workdir, ignore_errors=True)
    try:
        return archive.unpack_submission(source, workdir)
    except ArchiveError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        what = "archive" if kind == "zip" else "folder"
        return workdir, [f"your submission's {what} could not be unpacked: {exc}"]


# ============================================================================ keys


def content_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's relative paths and file contents (symlinks by
    their target text, never followed). Caches (``__pycache__``) do not count."""
    h = hashlib.sha256()
    path = Path(path)
    if path.is_file():
        h.update(b"file\0")
        _hash_file(h, path)
        return h.hexdigest()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(path).as_posix()
            h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            if full.is_symlink():
                h.update(b"link\0" + os.readlink(full).encode("utf-8", "surrogateescape"))
            else:
                _hash_file(h, full)
            h.update(b"\0")
    return h.hexdigest()


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)


#: what decides a grade besides the submission (changing any of it regrades every submission)
GRADING_SOURCES = ("grader", "tests/rubric", "tests/conftest.py", "reference", "student_template")
#: files under GRADING_SOURCES that only present results: editing them does not regrade
PRESENTATION = (
    "grader/outputs",
    "grader/cli.py",
    "grader/batch.py",
    "grader/__main__.py",
    "reference/handout",
)


def grading_fingerprint(options: GradeOptions, cfg: Config) -> str:
    h = hashlib.sha256()
    for rel in GRADING_SOURCES:
        base = REPO_ROOT / rel
        files = (
            [base]
            if base.is_file()
            else sorted(p for p in base.rglob("*") if p.is_file())
            if base.exists()
            else []
        )
        for f in files:
            name = f.relative_to(REPO_ROOT).as_posix()
            # Caches and tool state (.hypothesis, .pytest_cache) are not grading sources.
            parts = name.split("/")
            if (
                "__pycache__" in parts
                or any(p.startswith(".") for p in parts)
                or name.startswith(PRESENTATION)
            ):
                continue
            h.update(name.encode() + b"\0")
            _hash_file(h, f)
    h.update(b"config\0" + cfg.path.read_bytes())
    opts = replace(options, slot=0)
    h.update(json.dumps(asdict(opts), sort_keys=True, default=str).encode())
    return h.hexdigest()


# ============================================================================ one job


@dataclass(frozen=True)
class Job:
    """One submission to grade. Plain strings only: a distributed executor pickles it."""

    student: str
    origin: str
    source: str
    kind: str
    key: str
    workdir: str
    options: GradeOptions
    warnings: tuple[str, ...] = ()


GradeFn = Callable[[Path, str, GradeOptions, Config], SubmissionResult]


def grade_job(job: Job, slot: int, grade_fn: GradeFn | None = None) -> dict[str, Any]:
    """Grade one submission in this process; return its record (JSON-able). Never raises: a
    grader crash becomes a result with ``grader_error`` holding the traceback."""
    from grader.answers import read_answers

    cfg = load()
    grade_fn = grade_fn or grade_submission
    warnings = list(job.warnings)
    answers: dict[str, Any] = {}
    try:
        folder, more = prepare(Path(job.source), job.kind, Path(job.workdir))
        warnings += more
        result = grade_fn(folder, job.student, replace(job.options, slot=slot), cfg)
        try:
            given = read_answers(folder)
            answers = {"choices": given.choices, "explanations": given.explanations}
        except Exception:
            answers = {}
    except Exception:
        result = failure_result(job.student, cfg, traceback.format_exc(), job.options)
    result.warnings = warnings + list(result.warnings)
    return make_record(job, result, answers)


def failure_result(student: str, cfg: Config, error: str, options: GradeOptions) -> SubmissionResult:
    return build_result(
        student,
        cfg,
        [],
        grader_error=error,
        mode="public" if options.public_only else ("full" if options.notebooks else "functions"),
    )


def make_record(job: Job, result: SubmissionResult, answers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "version": RECORD_VERSION,
        "student": job.student,
        "origin": job.origin,
        "key": job.key,
        "result": asdict(result),
        "answers": answers or {},
    }


# ============================================================================ executors


@dataclass
class Outcome:
    """What an executor gives back for one job: its record, or why there is none."""

    job: Job
    record: dict[str, Any] | None
    failure: str | None = None
    seconds: float = 0.0


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
        self.threads = threads or threads_per_worker(workers)

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
        with _deferred_ctrl_c() as interrupted:
            try:
                while pending or running:
                    if interrupted():
                        raise KeyboardInterrupt
                    while pending and free:
                        child = self._start(pending.popleft(), free.pop(), fn)
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
                        yield self._collect(child, how)
                    if not finished:
                        time.sleep(self.poll_s)
            finally:
                for pid, child in running.items():
                    _kill(pid)
                    self._cleanup(child)
                shutil.rmtree(self.tmp_root, ignore_errors=True)

    def _start(self, job: Job, slot: int, fn: Callable[[Job, int], dict[str, Any]]) -> _Child:
        result_path = self.scratch / f"{job.student}.{uuid.uuid4().hex}.json"
        tmp = Path(tempfile.mkdtemp(prefix=f"slot{slot}-", dir=self.tmp_root))
        # The sandbox's unprivileged uid must reach the staging folders created under it.
        tmp.chmod(0o755)
        log_path = self.log_dir / f"{job.student}.log"
        parent = os.getpid()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # else the child inherits and prints the parent's buffered text again
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


def threads_per_worker(workers: int) -> int:
    """The CPU threads each of ``workers`` parallel gradings gets (its notebook kernel's share)."""
    return max(1, (os.cpu_count() or 1) // workers)


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
        # Parallel children share the CPUs: notebook kernels (grader.notebooks reads
        # HW4_NOTEBOOK_THREADS) get their share. The trusted side's tensors are small: one torch
        # thread is faster than two (measured: 4 samples graded in 74 s instead of 103 s).
        single_torch_thread()
        os.environ.setdefault("HW4_NOTEBOOK_THREADS", str(threads))
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


def warm_up(options: GradeOptions) -> None:
    """Import and cache in the parent what every grading child needs, once for the whole batch."""
    import hypothesis  # noqa: F401
    import numpy  # noqa: F401
    import pytest  # noqa: F401
    import torch  # noqa: F401

    import grader.plugin
    import grader.sandbox.proxy
    from grader import redact, refcache
    from grader.sandbox.launcher import detect_isolation

    with contextlib.suppress(ImportError):
        import grader.notebooks  # noqa: F401
    with contextlib.suppress(RuntimeError):
        detect_isolation(options.isolation)  # the bubblewrap probe, cached for every child
    redact.secret_lines()
    refcache.prime()


# ============================================================================ the batch folder


class BatchDir:
    """The layout of OUT: the products at the top, the batch's state in ``OUT/.hw4grade/``."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.state = self.out / STATE
        self.records = self.state / "records"
        self.work = self.state / "work"
        self.tmp = self.state / "tmp"
        self.logs = self.state / "logs"
        self.batch_file = self.state / "batch.json"
        self.manual_file = self.state / "manual.json"
        self.sheet_file = self.state / "sheet.json"
        self._lock_fd: int | None = None

    def exists(self) -> bool:
        return self.batch_file.exists()

    @contextlib.contextmanager
    def locked(self) -> Iterator[BatchDir]:
        """Hold OUT; a second ``hw4grade`` on the same OUT is refused.

        ``flock``, not ``lockf``: a POSIX record lock is dropped when the process closes *any*
        descriptor of the file, and never conflicts within one process. The kernel releases
        the lock when its last holder dies (the forked children die with the parent)."""
        if self.out.exists() and not self.out.is_dir():
            raise BatchError(f"--out {self.out}: exists and is not a folder")
        self.state.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise BatchError(f"{self.out}: another hw4grade is working on this folder") from None
        try:
            yield self
        finally:
            os.close(fd)

    def record_path(self, student: str) -> Path:
        return self.records / f"{student}.json"

    def load_record(self, student: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.record_path(student).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if data.get("version") == RECORD_VERSION else None

    def save_record(self, record: dict[str, Any]) -> None:
        write_text(self.record_path(record["student"]), json.dumps(record, indent=1, sort_keys=True) + "\n")

    def students(self) -> list[str]:
        """The students of the last ``grade`` run into this folder."""
        try:
            return list(json.loads(self.batch_file.read_text(encoding="utf-8"))["students"])
        except (OSError, ValueError, KeyError):
            return []

    def batch_warnings(self) -> list[str]:
        try:
            return list(json.loads(self.batch_file.read_text(encoding="utf-8")).get("warnings", []))
        except (OSError, ValueError):
            return []

    def write_batch_info(self, sources: list[Source], warnings: list[str], submissions: Path) -> None:
        write_text(
            self.batch_file,
            json.dumps(
                {
                    "submissions": str(submissions),
                    "students": [s.student for s in sources],
                    "origins": {s.student: s.origin for s in sources},
                    "warnings": warnings,
                },
                indent=1,
            )
            + "\n",
        )


def result_of(record: dict[str, Any]) -> SubmissionResult:
    """The record's result, items in rubric order (records are written with sorted keys, which
    would put tf.10 before tf.2)."""
    result = SubmissionResult.from_dict(json.loads(json.dumps(record["result"])))
    result.items = {i: result.items[i] for i in ITEM_IDS if i in result.items} | {
        i: it for i, it in result.items.items() if i not in ITEM_IDS
    }
    return result


def write_outputs(
    bd: BatchDir, cfg: Config, students: list[str] | None = None, merged_sheet: Path | None = None
) -> list[SubmissionResult]:
    """(Re)write every product of the batch from its records and merged manual scores.

    Returns the results written, in gradebook order. Students without a record yet (an
    interrupted batch) are left out of the batch files until they are graded. ``merged_sheet``
    is the sheet ``hw4grade merge`` just read: if it is ``OUT/manual.csv``, its edits are merged
    and it may be rewritten.
    """
    students = bd.students() if students is None else students
    scores = manual_out.load_scores(bd.manual_file)
    results, answers = [], {}
    for student in students:
        record = bd.load_record(student)
        if record is None:
            continue
        result = manual_out.apply_manual(result_of(record), scores)
        write_student_outputs(bd, result, cfg)
        results.append(result)
        answers[student] = record.get("answers", {})
    errors_dir = bd.out / "grader-errors"
    failed = {r.student for r in results if _grader_faults(r)}
    if errors_dir.exists():
        for stale in errors_dir.glob("*.txt"):
            if stale.stem not in failed:
                stale.unlink()
    write_text(bd.out / "gradebook.csv", gradebook_csv(results))
    merged = merged_sheet is not None and merged_sheet.resolve() == (bd.out / "manual.csv").resolve()
    _write_sheet(bd, manual_out.manual_csv(results, answers, cfg, scores), force=merged)
    write_text(bd.out / "summary.html", summary_html(results, cfg, bd.batch_warnings()))
    return results


def write_student_outputs(bd: BatchDir, result: SubmissionResult, cfg: Config) -> None:
    folder = bd.out / result.student
    write_text(folder / "results.json", results_text(result, cfg))
    write_text(folder / "feedback.md", feedback_markdown(result, cfg))
    faults = _grader_faults(result)
    if faults:
        write_text(bd.out / "grader-errors" / f"{result.student}.txt", faults)


def _grader_faults(result: SubmissionResult) -> str:
    """The instructor's account of what went wrong in the grader for one submission."""
    parts = []
    if result.grader_error:
        parts.append(f"The grader failed on {result.student}:\n\n{result.grader_error}")
    for case in result.cases():
        if case.fault == "grader":
            parts.append(f"{case.item} {case.name}: {case.status}\n{case.detail or case.message}")
    return "\n\n".join(parts) + "\n" if parts else ""


def _write_sheet(bd: BatchDir, text: str, force: bool = False) -> None:
    """Write ``manual.csv`` unless a person edited it since and has not merged it yet."""
    sheet = bd.out / "manual.csv"
    digest = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    try:
        last = json.loads(bd.sheet_file.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError):
        last = None
    if not force and sheet.exists() and last is not None and digest(sheet.read_bytes()) != last:
        write_text(bd.out / "manual.new.csv", text)
        print(
            f"hw4grade: {sheet} was edited and not merged; left as it is. The fresh sheet is "
            f"{bd.out / 'manual.new.csv'}: run `hw4grade merge --out {bd.out}` first.",
            file=sys.stderr,
        )
        return
    write_text(sheet, text)
    write_text(bd.sheet_file, json.dumps({"sha256": digest(text.encode())}) + "\n")
    with contextlib.suppress(FileNotFoundError):
        (bd.out / "manual.new.csv").unlink()


# ============================================================================ progress


def _fresh_tmp_root(bd: BatchDir) -> Path:
    """A new temporary root for this run's children, after removing the one a killed run left.

    The old one is trusted only if it is what we made: a real folder (not a link), ours, named
    ``hw4-batch-*`` in the temp folder; a predictable name in /tmp would invite a symlink race.
    """
    marker = bd.state / "tmp_root"
    with contextlib.suppress(OSError, ValueError):
        old = Path(marker.read_text(encoding="utf-8").strip())
        info = os.lstat(old)
        if (
            old.parent == Path(tempfile.gettempdir())
            and old.name.startswith("hw4-batch-")
            and stat.S_ISDIR(info.st_mode)
            and info.st_uid == os.getuid()
        ):
            shutil.rmtree(old, ignore_errors=True)
    root = Path(tempfile.mkdtemp(prefix="hw4-batch-"))
    write_text(marker, f"{root}\n")
    return root


class Progress:
    """One status line redrawn on a terminal; one line per submission otherwise (CI logs)."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True):
        self.total, self.done, self.running = total, 0, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.started_at = time.monotonic()
        self.last = ""

    def started(self, job: Job) -> None:
        self.running += 1
        self._draw()

    def finished(self, outcome: Outcome, result: SubmissionResult) -> None:
        self.running -= 1
        self.done += 1
        if result.grader_error:
            what = "GRADER ERROR (see grader-errors/)"
        else:
            what = f"{_pts(result.score)} of {_pts(result.possible)} automatic points"
        self.last = f"{outcome.job.student}: {what} ({outcome.seconds:.1f} s)"
        if self.enabled and not self.tty:
            print(
                f"[{self.done:>{len(str(self.total))}}/{self.total}] {self.last}",
                file=self.stream,
                flush=True,
            )
        self._draw()

    def _draw(self) -> None:
        if not self.tty:
            return
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        elapsed = int(time.monotonic() - self.started_at)
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}, {self.running} running, "
            f"{elapsed // 60:02d}:{elapsed % 60:02d}  {self.last}"
        )
        cols = shutil.get_terminal_size((100, 20)).columns
        self.stream.write("\r\x1b[K" + line[: cols - 1])
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _pts(x: float) -> str:
    from grader.outputs.points import fmt_points

    return fmt_points(x)


# ============================================================================ the batch


@dataclass
class BatchReport:
    out: Path
    students: list[str]
    graded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    grader_errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    results: list[SubmissionResult] = field(default_factory=list)


def run_batch(
    submissions: Path,
    out: Path,
    options: GradeOptions | None = None,
    *,
    workers: int = 1,
    layout: str = "auto",
    regrade: bool = False,
    executor: Executor | None = None,
    grade_fn: GradeFn | None = None,
    progress: bool = True,
    cfg: Config | None = None,
    stream: TextIO | None = None,
) -> BatchReport:
    """Grade every submission in ``submissions`` into ``out``; see the module docstring.

    Raises:
        BatchError: for the batch as a whole (nothing to grade, OUT in use). A problem with one
            submission never raises: it is in that submission's result.
    """
    cfg = cfg or load()
    options = options or GradeOptions()
    started = time.monotonic()
    bd = BatchDir(out)
    with bd.locked():
        shutil.rmtree(bd.tmp, ignore_errors=True)  # leftovers of a killed run
        coll = collect(Path(submissions), bd.work, layout)
        fingerprint = grading_fingerprint(options, cfg)
        report = BatchReport(Path(out), [s.student for s in coll.sources], warnings=list(coll.warnings))
        jobs = []
        for src in coll.sources:
            key = hashlib.sha256(f"{fingerprint}\0{src.kind}\0{content_hash(src.path)}".encode()).hexdigest()
            record = bd.load_record(src.student)
            if not regrade and record is not None and record.get("key") == key:
                report.skipped.append(src.student)
                continue
            jobs.append(
                Job(
                    src.student,
                    src.origin,
                    str(src.path),
                    src.kind,
                    key,
                    str(bd.work / "unpacked" / src.student),
                    options,
                )
            )
        bd.write_batch_info(coll.sources, coll.warnings, Path(submissions))
        shown = Progress(len(jobs), stream, enabled=progress)
        if report.skipped:
            print(
                f"hw4grade: {len(report.skipped)} of {len(coll.sources)} submissions already graded and "
                f"unchanged; grading {len(jobs)}",
                file=shown.stream,
            )
        if jobs:
            warm_up(options)
        g = cfg.grading
        timeout = (
            g.import_timeout_s + g.submission_budget_s + (g.notebook_budget_s if options.notebooks else 0)
        )
        if executor is None:
            executor = ForkExecutor(
                workers,
                timeout_s=timeout + TIMEOUT_MARGIN_S,
                scratch=bd.tmp,
                log_dir=bd.logs,
                tmp_root=_fresh_tmp_root(bd),
            )
        fn = partial(grade_job, grade_fn=grade_fn)
        try:
            with contextlib.closing(executor.run(jobs, fn, started=shown.started)) as outcomes:
                for outcome in outcomes:
                    record = outcome.record or make_record(
                        outcome.job,
                        failure_result(outcome.job.student, cfg, outcome.failure or "no result", options),
                    )
                    bd.save_record(record)
                    result = result_of(record)
                    write_student_outputs(
                        bd, manual_out.apply_manual(result, manual_out.load_scores(bd.manual_file)), cfg
                    )
                    report.graded.append(outcome.job.student)
                    shown.finished(outcome, result)
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            shown.close()
            report.results = write_outputs(bd, cfg, report.students)
        if jobs and grading_fingerprint(options, cfg) != fingerprint:
            # Records carry the key computed at the start: the next run regrades them all.
            report.warnings.append(
                "the grader, its tests or the config changed while this batch ran; "
                "run it again to grade every submission with the current version"
            )
    report.grader_errors = [r.student for r in report.results if r.grader_error]
    report.seconds = time.monotonic() - started
    return report
