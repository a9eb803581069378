"""The record store: OUT's layout, one record per graded submission, and the keys that say
whether a record is still current.

A submission's key is the hash of its files (:func:`content_hash`) plus the grading fingerprint
(:func:`grading_fingerprint`: the grader, the rubric tests, the reference, the config and the
options). A finished submission whose key is unchanged is not graded again. Its record,
``OUT/.hw4grade/records/<student>.json``, is the full result (the instructor's copy), written
atomically: it is what "done" means.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.batch.errors import BatchError
from grader.fingerprint import hash_file, sources_digest
from grader.outputs.atomic import write_text
from grader.results import SubmissionResult
from reference.config import ITEM_IDS, Config

if TYPE_CHECKING:
    from grader.batch.collect import Source
    from grader.grade import GradeOptions

__all__ = ["RECORD_VERSION", "STATE", "BatchDir", "content_hash", "grading_fingerprint", "result_of"]

STATE = ".hw4grade"
RECORD_VERSION = 1


def content_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's relative paths and file contents (symlinks by
    their target text, never followed). Caches (``__pycache__``) do not count."""
    h = hashlib.sha256()
    path = Path(path)
    if path.is_file():
        h.update(b"file\0")
        hash_file(h, path)
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
                hash_file(h, full)
            h.update(b"\0")
    return h.hexdigest()


def grading_fingerprint(options: GradeOptions, cfg: Config) -> str:
    """The grading version (``grader.fingerprint.sources_digest``) and the grading options."""
    h = hashlib.sha256(sources_digest(cfg).encode())
    opts = replace(options, slot=0)
    h.update(json.dumps(asdict(opts), sort_keys=True, default=str).encode())
    return h.hexdigest()


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
