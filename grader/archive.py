"""Unpack submissions safely: folders, zips, and LMS export zips of many students.

The grader reads submission files in the trusted process (``answers.yaml``, notebooks to
extract, checkpoints), so what it reads must be plain files inside the submission's folder --
never a link to the tests, a path outside the output folder, or a zip that expands to fill the
disk. This module turns whatever the instructor has into clean folders of regular files:

    >>> from grader.archive import unpack_submissions
    >>> result = unpack_submissions(Path("export.zip"), Path("/tmp/unpacked"))   # doctest: +SKIP
    >>> for student, folder in result.submissions: ...                          # doctest: +SKIP
    >>> result.warnings, result.rejected                                         # doctest: +SKIP

API (all paths are ``pathlib.Path``):

``unpack_submissions(source, dest, limits=ArchiveLimits()) -> Unpacked``
    ``source`` is a folder of submissions (each sub-folder or ``.zip`` is one student) or one
    zip of them (an LMS export: sub-folders, student zips, or Canvas-style flat files
    ``name_12345_67890_file.ext``, grouped by student). ``dest`` must be empty or missing; each
    student's files land in ``dest/<student id>/``.
``unpack_submission(source, dest, limits=ArchiveLimits()) -> tuple[Path, list[str]]``
    One submission (a folder or a zip) into ``dest``; returns the folder to grade and warnings.

``extract_zip(src, dest, limits=ArchiveLimits(), export=None, skipped=None) -> list[str]``
    The building block ``grader.batch`` uses: one zip into the empty folder ``dest`` with every
    check below, nothing unwrapped (zips inside stay files). ``export`` picks the byte limit
    (``max_total_bytes`` for an LMS export, ``max_submission_bytes`` for one student's zip) and
    the entry policy below; ``None`` guesses (two or more top-level folders or zips, or
    Canvas-style names: an export). ``skipped`` collects ``(entry name, reason)`` of an export's
    skipped entries, so the batch can tell the student whose file it was.
``copy_submission(src, dest, limits=ArchiveLimits()) -> list[str]``
    A submission *folder* copied the same way (regular files only, links resolved or dropped):
    grade the copy, not the original, whenever the grader reads files in the trusted process.

``Unpacked.submissions`` lists ``(student id, folder)``; ``Unpacked.rejected`` lists
``(student id, reason)`` for students whose archive was refused (they get 0 with the reason, the
rest of the batch goes on); ``Unpacked.warnings`` are human-readable notes, each naming its file.
:class:`ArchiveError` (a ``ValueError``) is raised only when ``source`` itself is unusable (not a
zip, an export that is itself a zip bomb, a non-empty ``dest``): its message names the file.

What is refused or dropped, and why. **One bad entry costs its own student at most**: in an LMS
export every entry that cannot be extracted is skipped with a warning naming it (it is one
student's file; the other students' files are untouched), and only what concerns the export as a
whole (unreadable, overlapping entries, too many entries or bytes) refuses it. In one student's
zip:

* entry names that cannot exist on this file system (a component over 255 bytes, a path over
  ``max_path_length``, a name the file system refuses): that entry is skipped with a warning,
  the rest of the submission is graded (such names come from other systems, not only attacks);
* entry names flagged UTF-8 that are not: extracted under the name with U+FFFD for the bad
  bytes, with a warning (``zipfile`` alone refuses the whole archive for one such name);
* entry names that are absolute (``/x``, ``C:\\x``), contain ``..``, a NUL or control
  characters: the archive is refused (they only come from crafted zips);
* two entries with the same name, or a file where a folder must be: refused (which one would a
  person see?);
* symlinks: one to a regular file inside the same submission becomes a copy of it; any other
  (outside the folder, dangling, to a folder) is dropped with a warning. Same on disk for folder
  submissions: links are never followed;
* zip bombs: more than ``max_members`` entries, more than ``max_file_bytes`` in one file or
  ``max_submission_bytes`` in one submission (bytes are counted as they are written, not taken
  from the headers), a compression ratio above ``max_ratio`` for a member over 1 MB, entries whose
  data overlap (the "non-recursive zip bomb"), zips nested deeper than ``max_depth``; and
  ``max_total_bytes`` for the whole call;
* password-protected entries, device files, FIFOs: refused / dropped;
* junk: ``__MACOSX/``, ``._*`` AppleDouble files, ``.DS_Store``, ``Thumbs.db``, hidden files,
  ``__pycache__``, ``.ipynb_checkpoints``, ``.git``: dropped silently.

A submission whose files sit in one wrapping folder (``alice.zip`` holding ``hw4/...``) is
unwrapped, and a submission that is nothing but one zip is opened (within ``max_depth``).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

__all__ = [
    "ArchiveError",
    "ArchiveLimits",
    "Unpacked",
    "copy_submission",
    "extract_zip",
    "unpack_submission",
    "unpack_submissions",
]

JUNK_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini", "__MACOSX", "__pycache__", ".ipynb_checkpoints",
              ".git"}
CANVAS_NAME = re.compile(r"^(?P<student>[A-Za-z0-9-]+(?:_LATE)?_\d+)_\d+_(?P<file>.+)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CHUNK = 1 << 16
_RATIO_MIN_BYTES = 1 << 20  # small members compress however they like (a file of zeros)


class ArchiveError(ValueError):
    """A submission archive or folder cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits of one :func:`unpack_submissions` call."""

    max_total_bytes: int = 4 << 30  # all students together
    max_submission_bytes: int = 256 << 20  # one student's files
    max_file_bytes: int = 64 << 20  # one file
    max_members: int = 20_000  # entries in all archives together
    max_ratio: float = 200.0  # uncompressed / compressed size of one member over 1 MB
    max_depth: int = 3  # an export zip holding student zips holding a zip: 3
    max_path_length: int = 512


@dataclass
class Unpacked:
    """What :func:`unpack_submissions` produced."""

    submissions: list[tuple[str, Path]] = field(default_factory=list)  # (student id, folder)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (student id, reason)
    warnings: list[str] = field(default_factory=list)


class _Budget:
    """Bytes and entries left, for the whole call and for the current submission."""

    def __init__(self, limits: ArchiveLimits):
        self.limits = limits
        self.total = 0
        self.members = 0
        self.submission = 0
        self.per_submission = True  # False while an export zip is staged: only the total counts

    def start_submission(self) -> None:
        self.submission = 0
        self.per_submission = True

    def add_members(self, n: int, where: str) -> None:
        self.members += n
        if self.members > self.limits.max_members:
            raise ArchiveError(f"{where}: more than {self.limits.max_members} entries in all (a zip bomb?)")

    def add_bytes(self, n: int, where: str) -> None:
        self.total += n
        self.submission += n
        if self.per_submission and self.submission > self.limits.max_submission_bytes:
            raise ArchiveError(f"{where}: the submission expands to more than "
                               f"{self.limits.max_submission_bytes >> 20} MB (a zip bomb?)")
        if self.total > self.limits.max_total_bytes:
            raise _TotalExceeded(f"{where}: all submissions together expand to more than "
                                 f"{self.limits.max_total_bytes >> 20} MB")


class _EntryError(ArchiveError):
    """One entry cannot exist here (its name is too long for this file system, or the file
    system refuses it): that entry is skipped with a warning, the rest is extracted."""


class _TotalExceeded(ArchiveError):
    """The whole call's byte budget is spent: no later student can be unpacked either."""


# ----------------------------------------------------------------------------- public API


def unpack_submissions(source: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits()) -> Unpacked:
    """Unpack a folder of submissions or an export zip into ``dest/<student id>/`` folders.

    Raises:
        ArchiveError: ``source`` is missing, not a folder or zip, an unreadable or oversized
            export zip, or ``dest`` is not empty.
    """
    source, dest = Path(source), Path(dest)
    _fresh_dest(dest)
    budget = _Budget(limits)
    out = Unpacked()
    if source.is_dir() and not source.is_symlink():
        entries = _folder_entries(source, out)
    elif _is_zip_file(source):
        staging = dest / ".hw4-export"
        staging.mkdir()
        budget.per_submission = False
        try:
            try:
                _extract_zip_file(source, staging, source.name, budget, depth=1, warnings=out.warnings,
                                  lenient=True)
            except _TotalExceeded:
                raise
            except ArchiveError as exc:
                raise ArchiveError(f"{source.name}: cannot be unpacked: {exc}") from None
            root = _unwrap_export(staging)
            entries = _folder_entries(root, out)
            _unpack_entries(entries, dest, budget, out, source_name=source.name, source_is_zip=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return out
    elif source.exists():
        raise ArchiveError(f"{source}: neither a folder of submissions nor a zip file")
    else:
        raise ArchiveError(f"{source}: no such file or folder")
    _unpack_entries(entries, dest, budget, out, source_name=source.name, source_is_zip=False)
    return out


def unpack_submission(source: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits(),
                      ) -> tuple[Path, list[str]]:
    """Unpack one submission (a folder or a zip) into the empty folder ``dest``.

    Returns:
        The folder to grade (``dest``, or a wrapping folder inside it unwrapped) and warnings.

    Raises:
        ArchiveError: the submission is refused (the message names the file and the reason).
    """
    source, dest = Path(source), Path(dest)
    _fresh_dest(dest)
    budget = _Budget(limits)
    warnings: list[str] = []
    budget.start_submission()
    if source.is_dir() and not source.is_symlink():
        _copy_folder(source, dest, source.name, budget, warnings)
        depth = 0
    elif _is_zip_file(source):
        _extract_zip_file(source, dest, source.name, budget, depth=1, warnings=warnings)
        depth = 1
    else:
        raise ArchiveError(f"{source}: neither a submission folder nor a zip file")
    return _unwrap_submission(dest, source.name, budget, warnings, depth), warnings


def extract_zip(src: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits(), export: bool | None = None,
                skipped: list[tuple[str, str]] | None = None) -> list[str]:
    """Extract one zip into the empty (or missing) folder ``dest``; return warnings.

    An export (``export``) skips every entry it cannot extract, with a warning, and appends
    ``(entry name, reason)`` to ``skipped`` (the batch tells that entry's student).

    Raises:
        ArchiveError: the zip is refused (the message names it and the reason).
    """
    src, dest = Path(src), Path(dest)
    _fresh_dest(dest)
    if not _is_zip_file(src):
        raise ArchiveError(f"{src.name}: not a zip file")
    budget = _Budget(limits)
    budget.start_submission()
    if export is None:
        export = _looks_like_export(src)
    budget.per_submission = not export
    warnings: list[str] = []
    _extract_zip_file(src, dest, src.name, budget, depth=1, warnings=warnings, lenient=export, skipped=skipped)
    return warnings


def copy_submission(src: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits()) -> list[str]:
    """Copy a submission folder into the empty (or missing) ``dest``: regular files only; a link
    to a file inside the folder becomes a copy, any other link is dropped; junk left out.

    Raises:
        ArchiveError: the folder is over the limits or unreadable.
    """
    src, dest = Path(src), Path(dest)
    if src.is_symlink() or not src.is_dir():
        raise ArchiveError(f"{src}: not a folder")
    _fresh_dest(dest)
    budget = _Budget(limits)
    budget.start_submission()
    warnings: list[str] = []
    _copy_folder(src, dest, src.name, budget, warnings)
    return warnings


def _looks_like_export(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [i.filename.replace("\\", "/") for i in zf.infolist()]
    except (zipfile.BadZipFile, OSError):
        return False
    tops: dict[str, bool] = {}  # top-level name -> is a folder or a zip
    for name in names:
        head, sep, _ = name.lstrip("/").partition("/")
        if not head or _is_junk(head):
            continue
        tops[head] = tops.get(head, False) or bool(sep) or head.lower().endswith(".zip")
    if any(CANVAS_NAME.match(t) for t in tops):
        return True
    return sum(tops.values()) >= 2


# ----------------------------------------------------------------------------- batch


@dataclass
class _Entry:
    student: str
    kind: str  # "dir", "zip" or "files"
    paths: list[Path]
    names: list[str]  # for "files": the names the files get (Canvas prefixes stripped)


def _folder_entries(root: Path, out: Unpacked) -> list[_Entry]:
    """One entry per student in a folder of submissions (sub-folders, zips, Canvas files)."""
    entries: list[_Entry] = []
    canvas: dict[str, _Entry] = {}
    for path in sorted(root.iterdir(), key=lambda p: p.name):
        name = path.name
        if _is_junk(name):
            continue
        if path.is_symlink():
            out.warnings.append(f"{name}: a symbolic link; not followed, skipped")
            continue
        match = CANVAS_NAME.match(name) if path.is_file() else None
        if match:
            entry = canvas.setdefault(match["student"], _Entry(match["student"], "files", [], []))
            entry.paths.append(path)
            entry.names.append(match["file"])
        elif path.is_dir():
            entries.append(_Entry(_student_id(name), "dir", [path], []))
        elif path.is_file() and name.lower().endswith(".zip"):
            entries.append(_Entry(_student_id(name[:-4]), "zip", [path], []))
        elif path.is_file():
            out.warnings.append(f"{name}: a loose file, not in a student's folder or zip; skipped")
        else:
            out.warnings.append(f"{name}: not a regular file or folder; skipped")
    for entry in canvas.values():
        # One uploaded zip per student (the usual Canvas case): unpack it like any student zip.
        if len(entry.paths) == 1 and entry.names[0].lower().endswith(".zip"):
            entry.kind = "zip"
        entries.append(entry)
    return entries


def _unpack_entries(entries: list[_Entry], dest: Path, budget: _Budget, out: Unpacked, source_name: str,
                    source_is_zip: bool) -> None:
    used: set[str] = set()
    for entry in entries:
        student = _unique(entry.student, used)
        if student != entry.student:
            out.warnings.append(f"{entry.paths[0].name}: student id {entry.student!r} already taken; "
                                f"graded as {student!r}")
        folder = dest / student
        folder.mkdir()
        warnings: list[str] = []
        budget.start_submission()
        where = entry.paths[0].name
        # An export zip was depth 1; anything inside it is one level deeper.
        depth = 1 if source_is_zip else 0
        try:
            if entry.kind == "dir":
                _copy_folder(entry.paths[0], folder, where, budget, warnings)
            elif entry.kind == "zip":
                depth += 1
                _extract_zip_file(entry.paths[0], folder, where, budget, depth=depth, warnings=warnings)
            else:
                for path, name in zip(entry.paths, entry.names, strict=True):
                    _copy_file(path, folder / _safe_component(name, where), where, budget)
            root = _unwrap_submission(folder, where, budget, warnings, depth)
        except _TotalExceeded as exc:
            shutil.rmtree(folder, ignore_errors=True)
            out.rejected.append((student, str(exc)))
            raise ArchiveError(f"{source_name}: {exc}") from None
        except ArchiveError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            out.rejected.append((student, str(exc)))
            out.warnings.append(f"{student}: not graded: {exc}")
            continue
        out.warnings.extend(f"{student}: {w}" for w in warnings)
        out.submissions.append((student, root))


def _unwrap_export(root: Path) -> Path:
    """An export zip often wraps everything in one folder: descend while that is all there is
    and the folder holds no source files of its own (then it is one student's submission)."""
    for _ in range(3):
        children = [p for p in root.iterdir() if not _is_junk(p.name)]
        if len(children) == 1 and children[0].is_dir() and not _has_sources(children[0]):
            root = children[0]
        else:
            break
    return root


def _has_sources(folder: Path) -> bool:
    return any(p.suffix in (".py", ".ipynb", ".yaml", ".yml") for p in folder.iterdir() if p.is_file())


def _unwrap_submission(folder: Path, where: str, budget: _Budget, warnings: list[str], depth: int) -> Path:
    """The folder to grade: open a lone nested zip (``depth``: how deep in zips ``folder`` already
    is), descend a lone wrapping folder."""
    root = folder
    for _ in range(budget.limits.max_depth + 1):
        children = [p for p in root.iterdir() if not _is_junk(p.name)]
        if len(children) == 1 and children[0].is_dir():
            root = children[0]
        elif len(children) == 1 and children[0].is_file() and children[0].name.lower().endswith(".zip"):
            inner = children[0]
            depth += 1
            target = root / "unzipped"  # the only other entry is the zip: the name is free
            target.mkdir()
            _extract_zip_file(inner, target, f"{where}/{inner.name}", budget, depth=depth, warnings=warnings)
            inner.unlink()
            root = target
        else:
            break
    return root


# ----------------------------------------------------------------------------- zips


def _is_zip_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink() and zipfile.is_zipfile(path)


def _extract_zip_file(path: Path, dest: Path, where: str, budget: _Budget, depth: int,
                      warnings: list[str], lenient: bool = False,
                      skipped: list[tuple[str, str]] | None = None) -> None:
    """Extract the zip at ``path`` into ``dest``; zips inside it stay files (callers open them).

    ``lenient`` (an LMS export): any entry that cannot be extracted is skipped with a warning
    (and listed in ``skipped`` as ``(entry name, reason)``), since it is one student's file; only
    what concerns the whole archive (unreadable, overlapping entries, too many entries or bytes)
    refuses it. Otherwise (one student's zip) only entries whose *name* cannot exist here are
    skipped; a crafted entry (``..``, absolute, control characters) refuses the archive.
    """
    if depth > budget.limits.max_depth:
        raise ArchiveError(f"{where}: zips nested more than {budget.limits.max_depth} deep")
    try:
        with open(path, "rb") as fh:
            _extract_zip(fh, dest, where, budget, warnings, lenient, skipped if skipped is not None else [])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"{where}: not a readable zip file ({exc})") from None
    except OSError as exc:
        raise ArchiveError(f"{where}: cannot be read ({exc.strerror or exc})") from None


def _extract_zip(fh: IO[bytes], dest: Path, where: str, budget: _Budget, warnings: list[str], lenient: bool,
                 skipped: list[tuple[str, str]]) -> None:
    limits = budget.limits
    zf, renamed = _open_zip(fh, where)
    with zf:
        infos = zf.infolist()
        budget.add_members(len(infos), where)
        _check_overlaps(infos, where)
        # Declared sizes can lie (bytes are counted again while writing), but an honest header
        # over the limit is refused before a byte is written.
        declared = sum(i.file_size for i in infos)
        limit = limits.max_submission_bytes if budget.per_submission else limits.max_total_bytes
        if declared > limit:
            raise ArchiveError(f"{where}: declares {declared >> 20} MB uncompressed, more than the "
                               f"{limit >> 20} MB limit (a zip bomb?)")
        seen: dict[str, str] = {}  # normalised path -> "file" / "dir"
        links: list[tuple[PurePosixPath, str]] = []
        for index, info in enumerate(infos):
            if index in renamed:
                warnings.append(f"{where}: entry '{renamed[index]}' has a name that is not valid UTF-8 (though "
                                f"the zip says it is); extracted as {info.filename!r}")
            try:
                _extract_member(zf, info, dest, where, budget, warnings, seen, links)
            except _TotalExceeded:
                raise
            except (_EntryError, ArchiveError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
                if not (lenient or isinstance(exc, _EntryError)):
                    raise
                why = str(exc).removeprefix(f"{where}: ").removeprefix(f"entry {info.filename!r} ")
                warnings.append(f"{where}: entry {info.filename!r} skipped: {why}")
                skipped.append((info.filename, why))
        _resolve_links(links, dest, where, budget, warnings)


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, where: str, budget: _Budget,
                    warnings: list[str], seen: dict[str, str], links: list[tuple[PurePosixPath, str]]) -> None:
    """One entry of a zip into ``dest`` (see :func:`_extract_zip_file` for what raises what)."""
    parts = _member_parts(info.filename, where, budget.limits)
    if parts is None:
        return  # junk
    rel = PurePosixPath(*parts)
    _claim(seen, parts, info.is_dir(), where)
    if info.flag_bits & 0x1:
        raise ArchiveError(f"{where}: {info.filename} is password-protected")
    mode = info.external_attr >> 16
    if info.is_dir():
        _mkdirs(dest, parts)
        return
    if mode and stat.S_ISLNK(mode):
        if info.file_size > 4096:
            raise ArchiveError(f"{where}: {info.filename} is a symlink with a {info.file_size}-byte target")
        links.append((rel, zf.read(info).decode("utf-8", errors="replace")))
        return
    if mode and not stat.S_ISREG(mode) and stat.S_IFMT(mode):
        warnings.append(f"{info.filename}: not a regular file (mode {oct(mode)}); dropped")
        return
    parent = _mkdirs(dest, parts[:-1])
    with zf.open(info) as src:
        _write_stream(src, parent / parts[-1], f"{where}: {info.filename}", budget, compressed=info.compress_size)


def _open_zip(fh: IO[bytes], where: str) -> tuple[zipfile.ZipFile, dict[int, str]]:
    """``zipfile.ZipFile(fh)``, also when an entry flagged as UTF-8 has a name that is not.

    ``zipfile`` refuses the whole archive then (``UnicodeDecodeError``). Such names come from
    real tools (a Latin-1 name behind the UTF-8 flag), so the archive is read again through a
    view of the file whose central directory has the flag cleared on those entries; their names
    become the bytes decoded as UTF-8 with U+FFFD for what does not decode. Returns the archive
    and ``{index in infolist(): the raw name, as shown}`` for the renamed entries.
    """
    try:
        return zipfile.ZipFile(fh), {}
    except UnicodeDecodeError:
        pass
    fh.seek(0)
    try:
        start, directory, raw_names = _central_directory(fh)
    except (OSError, struct.error, ValueError) as exc:
        raise ArchiveError(f"{where}: not a readable zip file ({exc})") from None
    view = _Patched(fh)
    view.patch(start, directory)
    zf = zipfile.ZipFile(view)
    renamed = {}
    for index, info in enumerate(zf.infolist()):  # in central-directory order, as raw_names
        raw = raw_names.get(index)
        if raw is not None:
            # zipfile checks the local header's name against the directory's, decoded as that
            # header's flag says: clear the flag there too (bytes 6-7 of the local header).
            fh.seek(info.header_offset + 6)
            (flags,) = struct.unpack("<H", fh.read(2))
            view.patch(info.header_offset + 6, struct.pack("<H", flags & ~0x800))
            info.filename = raw.decode("utf-8", errors="replace")
            renamed[index] = repr(raw)[2:-1]
    return zf, renamed


def _central_directory(fh: IO[bytes]) -> tuple[int, bytes, dict[int, bytes]]:
    """The central directory's start and bytes, the UTF-8 flag cleared on every entry whose name
    does not decode, and those entries' raw names by their index in the directory. Located as
    ``zipfile`` locates it (its own ``_EndRecData``: the end record, ZIP64 included)."""
    endrec = zipfile._EndRecData(fh)  # type: ignore[attr-defined]
    if not endrec:
        raise ValueError("no end of central directory")
    size = endrec[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    start = endrec[zipfile._ECD_LOCATION] - size  # type: ignore[attr-defined]
    if endrec[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # type: ignore[attr-defined]
        start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator  # type: ignore[attr-defined]
    fh.seek(start)
    data = bytearray(fh.read(size))
    raw_names: dict[int, bytes] = {}
    at, index = 0, 0
    header = zipfile.structCentralDir  # type: ignore[attr-defined]
    while at + 46 <= len(data):
        # fields: 5 flag bits (at byte 8), 12-14 name, extra and comment lengths
        fields = struct.unpack_from(header, data, at)
        name = bytes(data[at + 46:at + 46 + fields[12]])
        if fields[5] & 0x800:
            try:
                name.decode("utf-8")
            except UnicodeDecodeError:
                struct.pack_into("<H", data, at + 8, fields[5] & ~0x800)
                raw_names[index] = name
        at += 46 + fields[12] + fields[13] + fields[14]
        index += 1
    return start, bytes(data), raw_names


class _Patched:
    """A read-only view of a file with some byte ranges replaced (``patch``)."""

    def __init__(self, fh: IO[bytes]):
        self._fh = fh
        self._patches: list[tuple[int, bytes]] = []

    def patch(self, start: int, data: bytes) -> None:
        self._patches.append((start, data))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def seekable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        pos = self._fh.tell()
        chunk = bytearray(self._fh.read(n))
        for start, data in self._patches:
            lo, hi = max(pos, start), min(pos + len(chunk), start + len(data))
            if lo < hi:
                chunk[lo - pos:hi - pos] = data[lo - start:hi - start]
        return bytes(chunk)


def _check_overlaps(infos: list[zipfile.ZipInfo], where: str) -> None:
    """Refuse entries whose data overlap: the "non-recursive zip bomb" points many entries at one
    highly compressed block. An entry occupies at least its 30-byte local header plus its
    compressed data, so the next entry cannot start before that."""
    spans = sorted((i.header_offset, i.compress_size, i.filename) for i in infos)
    for (start_a, size_a, name_a), (start_b, _size_b, name_b) in itertools.pairwise(spans):
        if start_b < start_a + 30 + size_a:
            raise ArchiveError(f"{where}: entries {name_a} and {name_b} overlap (a zip bomb?)")


def _member_parts(name: str, where: str, limits: ArchiveLimits) -> tuple[str, ...] | None:
    """The safe relative path of a zip member; None for junk. Raises for a hostile name."""
    if _CONTROL.search(name):
        raise ArchiveError(f"{where}: entry {name!r} has control characters in its name")
    if len(name) > limits.max_path_length:
        raise _EntryError(f"{where}: entry name of {len(name)} characters is too long")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise ArchiveError(f"{where}: entry {name!r} is an absolute path")
    parts = tuple(p for p in norm.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ArchiveError(f"{where}: entry {name!r} points outside its folder (..)")
    if not parts or any(_is_junk(p) for p in parts):
        return None
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > 255:
            raise _EntryError(f"{where}: entry {name!r} has a name component over 255 bytes, more than a "
                              "file system here allows")
    return parts


def _claim(seen: dict[str, str], parts: tuple[str, ...], is_dir: bool, where: str) -> None:
    for i in range(1, len(parts)):
        prefix = "/".join(parts[:i])
        if seen.setdefault(prefix, "dir") != "dir":
            raise ArchiveError(f"{where}: {prefix} is both a file and a folder")
    key = "/".join(parts)
    kind = "dir" if is_dir else "file"
    if key in seen:
        if seen[key] == kind == "dir":
            return
        raise ArchiveError(f"{where}: two entries named {key}")
    seen[key] = kind


def _resolve_links(links: list[tuple[PurePosixPath, str]], dest: Path, where: str, budget: _Budget,
                   warnings: list[str]) -> None:
    for rel, target in links:
        resolved = _inside(rel.parent, target)
        source = dest.joinpath(*resolved.parts) if resolved is not None else None
        if source is None or source.is_symlink() or not source.is_file():
            warnings.append(f"{where}: {rel} is a symlink to {target!r}, outside the submission or not "
                            "a file in it; dropped")
            continue
        target_path = _mkdirs(dest, rel.parts[:-1]) / rel.name
        if target_path.exists() or target_path.is_symlink():
            raise ArchiveError(f"{where}: two entries named {rel}")
        _copy_file(source, target_path, f"{where}: {rel}", budget)
        warnings.append(f"{where}: {rel} was a symlink to {target}; graded as a copy of it")


def _inside(base: PurePosixPath, target: str) -> PurePosixPath | None:
    """``target`` (relative to ``base``) as a path inside the submission, or None."""
    if target.startswith("/") or "\\" in target or _CONTROL.search(target):
        return None
    parts: list[str] = list(base.parts)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return PurePosixPath(*parts) if parts else None


# ----------------------------------------------------------------------------- files


def _copy_folder(src: Path, dest: Path, where: str, budget: _Budget, warnings: list[str]) -> None:
    """Copy a submission folder: regular files only, links never followed (see the module doc)."""
    count = 0
    links: list[tuple[PurePosixPath, str]] = []
    stack = [PurePosixPath()]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(src.joinpath(*rel_dir.parts)) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise ArchiveError(f"{where}/{rel_dir}: cannot be read ({exc.strerror})") from None
        for entry in entries:
            count += 1
            if count > budget.limits.max_members:
                raise ArchiveError(f"{where}: more than {budget.limits.max_members} files and folders")
            if _is_junk(entry.name):
                continue
            rel = rel_dir / entry.name
            try:
                if entry.is_symlink():
                    links.append((rel, os.readlink(entry.path)))
                elif entry.is_dir(follow_symlinks=False):
                    _mkdirs(dest, rel.parts)
                    stack.append(rel)
                elif entry.is_file(follow_symlinks=False):
                    target = _mkdirs(dest, rel.parts[:-1]) / entry.name
                    _copy_file(Path(entry.path), target, f"{where}/{rel}", budget)
                else:
                    warnings.append(f"{rel}: not a regular file; dropped")
            except _EntryError as exc:  # a name this file system refuses: that file only
                warnings.append(f"{where}/{rel}: skipped: {str(exc).removeprefix(f'{where}/{rel}: ')}")
    budget.add_members(count, where)
    _resolve_links(links, dest, where, budget, warnings)


def _copy_file(src: Path, dst: Path, where: str, budget: _Budget) -> None:
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ArchiveError(f"{where}: cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ArchiveError(f"{where}: not a regular file")
        _write_stream(fh, dst, where, budget, compressed=None)


def _write_stream(src: IO[bytes], dst: Path, where: str, budget: _Budget, compressed: int | None) -> None:
    """Copy ``src`` to the new file ``dst``, counting bytes as they come (headers can lie)."""
    limits = budget.limits
    try:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise _EntryError(f"{where}: cannot be created here ({exc.strerror or exc})") from None
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                if written > limits.max_file_bytes:
                    raise ArchiveError(f"{where}: larger than the {limits.max_file_bytes >> 20} MB limit "
                                       "of one file (a zip bomb?)")
                if (compressed is not None and written > _RATIO_MIN_BYTES
                        and written > limits.max_ratio * max(compressed, 1)):
                    raise ArchiveError(f"{where}: compressed more than {limits.max_ratio:g} to 1 "
                                       "(a zip bomb?)")
                budget.add_bytes(len(chunk), where)
                out.write(chunk)
    except BaseException:
        dst.unlink(missing_ok=True)
        raise


def _mkdirs(root: Path, parts: tuple[str, ...] | list[str]) -> Path:
    path = root
    for part in parts:
        path = path / part
        try:
            if path.is_symlink():  # never created by us: refuse to write through one
                raise ArchiveError(f"{path}: a symlink where a folder must be")
            if not path.exists():
                path.mkdir(mode=0o755)
            elif not path.is_dir():
                raise ArchiveError(f"{path.name} is both a file and a folder")
        except OSError as exc:
            raise _EntryError(f"{part}: cannot be created here ({exc.strerror or exc})") from None
    return path


# ----------------------------------------------------------------------------- names


def _is_junk(name: str) -> bool:
    return name in JUNK_NAMES or name.startswith(".")


def _safe_component(name: str, where: str) -> str:
    if "/" in name or "\\" in name or name in ("", ".", "..") or _CONTROL.search(name):
        raise ArchiveError(f"{where}: unusable file name {name!r}")
    return name


def _student_id(name: str) -> str:
    """A folder name for a student from a folder/zip name (Moodle's suffix dropped)."""
    name = name.replace("_assignsubmission_file_", "").replace("_assignsubmission_file", "")
    clean = re.sub(r"[^A-Za-z0-9._@+-]+", "_", name).strip("._-")
    return clean[:100] or "student"


def _unique(student: str, used: set[str]) -> str:
    candidate, n = student, 2
    while candidate.lower() in used:
        candidate = f"{student}-{n}"
        n += 1
    used.add(candidate.lower())
    return candidate


def _fresh_dest(dest: Path) -> None:
    if dest.is_symlink():
        raise ArchiveError(f"{dest}: the output folder is a symlink")
    if dest.exists():
        if not dest.is_dir() or any(dest.iterdir()):
            raise ArchiveError(f"{dest}: the output folder must be empty or missing")
    else:
        dest.mkdir(parents=True)

