"""Collect the submissions of a batch: a folder of them or an LMS export zip, and unpack one.

SUBMISSIONS is a folder or one LMS export zip. Each entry is a submission: a folder or a ``.zip``
(student id = its name, sanitized to ``[A-Za-z0-9._-]``). A top-level folder with no homework
files of its own whose subfolders are submissions is a *group* (a section, or the samples'
kind): its submissions are named ``<group>-<name>``, so
``fixtures/submissions/buggy/lab1_missing_factor_2`` is ``buggy-lab1_missing_factor_2``. Groups
are recognised when some top-level folder holds two or more submissions; ``--layout`` forces
``flat`` or ``grouped``. ``__MACOSX``, ``.DS_Store`` and hidden entries are ignored; stray files
are reported and skipped, except Canvas-style loose files (``name_userid_subid_file.ext``),
grouped per student (id ``name_userid``). Two entries that end up with the same id (``alice/``
and ``alice.zip``) are both graded, the second as ``alice-2``, with a warning naming both.

:func:`prepare` makes the clean copy one grading child grades (``grader.archive`` handles nested
zips, wrapping folders, links and zip bombs).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from grader import archive
from grader.archive import ArchiveError
from grader.batch.errors import BatchError
from grader.batch.store import STATE

__all__ = ["LAYOUTS", "Collection", "Source", "collect", "prepare", "sanitize_id"]

LAYOUTS = ("auto", "flat", "grouped")
#: names never taken as submissions (OS and tool litter)
JUNK = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini", "__pycache__", ".ipynb_checkpoints", ".git"}
HOMEWORK_SUFFIXES = {".py", ".ipynb"}
HOMEWORK_NAMES = {"answers.yaml", "answers.yml"}
#: names a student id may not take: they are the batch's own files in OUT
RESERVED = {"grader-errors", "gradebook.csv", "manual.csv", "manual.new.csv", "summary.html", STATE}
# Canvas "download submissions": <name>[_LATE]_<user id>_<submission id>_<original file name>
CANVAS = re.compile(r"^(?P<who>[A-Za-z][A-Za-z0-9-]*)(?:_LATE)?_(?P<uid>\d+)_(?P<sid>\d+)_(?P<file>.+)$")


@dataclass(frozen=True)
class Source:
    """One submission found in SUBMISSIONS."""

    student: str
    path: Path  # a folder or a zip file
    kind: str  # "folder" or "zip"
    origin: str  # where it came from, as the instructor named it
    warnings: tuple[str, ...] = ()  # for the student: e.g. an entry of the export not unpacked


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
        skipped: list[tuple[str, str]] = []
        try:
            # Student zips inside stay zips here; each is unpacked by its own grading child. An
            # entry that cannot be extracted is skipped (and its student told, below).
            warnings += [
                f"{submissions.name}: {w}"
                for w in archive.extract_zip(submissions, export, export=True, skipped=skipped)
            ]
        except ArchiveError as exc:
            raise BatchError(f"{submissions}: cannot be unpacked: {exc}") from None
        # (a name flagged UTF-8 that is not makes zipfile raise UnicodeDecodeError, a ValueError;
        # extract_zip read that export anyway, so only this note is lost then)
        with contextlib.suppress(OSError, ValueError, zipfile.BadZipFile), zipfile.ZipFile(submissions) as zf:
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
    if submissions.is_file() and skipped:
        sources = _tell_owners(sources, skipped, export, root, work, label)
    return Collection(_dedupe(sources, warnings), warnings)


def _tell_owners(
    sources: list[Source], skipped: list[tuple[str, str]], export: Path, root: Path, work: Path, label: str
) -> list[Source]:
    """Give each export entry that was not unpacked to the submission it belonged to, as a
    warning that student reads (the batch's warnings name it too). An entry that was a whole
    submission (a student's zip, or every file of a student's folder) leaves that student with
    nothing to grade: they still get a submission, an empty one, whose warning says why -- a
    row of 0 points in the gradebook rather than a student who silently vanished."""
    prefix = root.relative_to(export).parts
    paths = {s.path for s in sources}
    told: dict[Path, list[str]] = {}
    lost: dict[str, tuple[str, list[str]]] = {}  # student id -> (origin, warnings)
    for name, why in skipped:
        parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
        rest = parts[len(prefix):] if parts[: len(prefix)] == list(prefix) else []
        if not rest:
            continue
        owners = [root / rest[0], root.joinpath(*rest[:2])]
        if m := CANVAS.match(rest[0]):
            owners.append(work / "canvas" / f"{m.group('who')}_{m.group('uid')}")
        owner = next((o for o in owners if o in paths), None)
        if owner is not None:
            told.setdefault(owner, []).append(
                f"{'/'.join(rest)}: not unpacked from the export ({why}); graded without it"
            )
        elif (whose := _lost_submission(rest, root)) is not None:
            student, origin = whose
            lost.setdefault(student, (f"{label}{origin}", []))[1].append(
                f"{'/'.join(rest)}: your submission could not be unpacked from the export ({why}); "
                "nothing of it could be graded"
            )
    out = [replace(s, warnings=(*s.warnings, *told.get(s.path, ()))) for s in sources]
    for student, (origin, warnings) in sorted(lost.items()):
        empty = work / "not-unpacked" / student
        shutil.rmtree(empty, ignore_errors=True)
        empty.mkdir(parents=True)
        out.append(Source(student, empty, "folder", origin, tuple(warnings)))
    return out


def _lost_submission(rest: list[str], root: Path) -> tuple[str, str] | None:
    """(student id, origin) of the submission a skipped export entry was all of, or None when the
    entry was a stray file. ``rest``: the entry's path below the export's root."""
    def stem(name: str) -> str:
        return name[:-4] if name.lower().endswith(".zip") else name

    if m := CANVAS.match(rest[0]):  # a loose Canvas file of a student none of whose files remain
        return sanitize_id(f"{m.group('who')}_{m.group('uid')}"), f"{m.group('who')}_{m.group('uid')}_*"
    if len(rest) == 1:
        return (sanitize_id(stem(rest[0])), rest[0]) if rest[0].lower().endswith(".zip") else None
    if (root / rest[0]).is_dir():  # a group whose member (a zip or a folder) was lost whole
        return sanitize_id(f"{rest[0]}-{stem(rest[1])}"), "/".join(rest[:2])
    return sanitize_id(rest[0]), rest[0]  # a student folder none of whose files could be unpacked


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
    """A student id safe as a folder name and a CSV cell: ``[A-Za-z0-9._-]``, no leading dot or dash;
    Moodle's ``_assignsubmission_file_`` suffix dropped."""
    name = re.sub(r"_assignsubmission_file_?$", "", name)
    # No leading "-" either: a spreadsheet reads "-2+3" (the id starts a gradebook row) as a formula.
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip("._-").rstrip("._") or "submission"
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
