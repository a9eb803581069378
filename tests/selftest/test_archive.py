"""Safe unpacking of submissions: exports, student zips, folders, and hostile archives.

Every hostile archive is built here at test time (a folder sample cannot hold a ``../`` entry or
a zip bomb): ``../`` and absolute entries, symlinks out of the folder, ratio bombs, overlapping
entries (the "non-recursive zip bomb"), too many entries, nesting, duplicates, encryption; and the
entries that cannot exist here (a 264-byte name, a name flagged UTF-8 that is not, a name the file
system refuses), which cost that entry only -- in an LMS export, every bad entry does.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
from pathlib import Path

import pytest

import grader.archive
from grader.archive import (
    ArchiveError,
    ArchiveLimits,
    copy_submission,
    extract_zip,
    unpack_submission,
    unpack_submissions,
)

SMALL = ArchiveLimits(max_total_bytes=64 << 20, max_submission_bytes=8 << 20, max_file_bytes=4 << 20,
                      max_members=200, max_ratio=100.0, max_depth=3)


def zip_bytes(files: dict[str, bytes | str] = (), links: dict[str, str] = (), encrypted: tuple[str, ...] = (),
              method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, content in dict(files).items():
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, content)
        for name, target in dict(links).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    raw = bytearray(buf.getvalue())
    for name in encrypted:
        # zipfile cannot write encrypted entries: set the "encrypted" flag bit in both headers.
        for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            start = 0
            while (start := raw.find(signature, start)) >= 0:
                name_at = start + (30 if flags_at == 6 else 46)
                if raw[name_at:name_at + len(name)] == name.encode():
                    raw[start + flags_at] |= 0x1
                start += 4
    return bytes(raw)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


GOOD = {"lab1.ipynb": "{}", "FP_layers.py": "import torch\n", "answers.yaml": "'1.1': F\n"}


# ----------------------------------------------------------------------------- exports


def test_an_export_of_folders_zips_and_canvas_files_gives_one_clean_folder_per_student(tmp_path):
    export = io.BytesIO()
    with zipfile.ZipFile(export, "w") as zf:
        zf.writestr("alice.zip", zip_bytes({f"hw4/{k}": v for k, v in GOOD.items()}))  # a wrapping folder
        for name, text in GOOD.items():
            zf.writestr(f"Bob Smith_123_assignsubmission_file_/{name}", text)  # Moodle
        zf.writestr("smithj_4567_8910_lab1.ipynb", "{}")  # Canvas, loose files
        zf.writestr("smithj_4567_8910_FP_layers.py", "x = 1\n")
        zf.writestr("lee_77_88_hw4.zip", zip_bytes(GOOD))  # Canvas, one zip
        zf.writestr("__MACOSX/._alice.zip", "junk")
        zf.writestr(".DS_Store", "junk")
        zf.writestr("readme.txt", "a stray file")
    src = write(tmp_path / "export.zip", export.getvalue())
    out = unpack_submissions(src, tmp_path / "out", SMALL)
    got = {student: tree(folder) for student, folder in out.submissions}
    assert sorted(got) == ["Bob_Smith_123", "alice", "lee_77", "smithj_4567"]
    assert got["alice"] == GOOD and got["Bob_Smith_123"] == GOOD and got["lee_77"] == GOOD
    assert got["smithj_4567"] == {"lab1.ipynb": "{}", "FP_layers.py": "x = 1\n"}
    assert out.rejected == []
    assert any(w.startswith("readme.txt: a loose file") for w in out.warnings)
    assert not (tmp_path / "out" / ".hw4-export").exists()  # the staging copy is gone


def test_a_folder_of_submissions_is_copied_not_used_in_place(tmp_path):
    src = tmp_path / "class"
    for student in ("ann", "ben"):
        for name, text in GOOD.items():
            write(src / student / name, text.encode())
    write(src / "cat.zip", zip_bytes(GOOD))
    write(src / "ann.zip", zip_bytes(GOOD))  # the same id twice
    out = unpack_submissions(src, tmp_path / "out", SMALL)
    ids = sorted(student for student, _ in out.submissions)
    assert ids == ["ann", "ann-2", "ben", "cat"]
    assert any("'ann' already taken" in w for w in out.warnings)
    for _, folder in out.submissions:
        assert (tmp_path / "out") in folder.parents and tree(folder) == GOOD


def test_the_output_folder_must_be_empty_and_the_source_must_exist(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    write(tmp_path / "a.zip", zip_bytes(GOOD))
    with pytest.raises(ArchiveError, match=r"must be empty"):
        unpack_submissions(tmp_path / "a.zip", tmp_path / "out")
    with pytest.raises(ArchiveError, match=r"no such file or folder"):
        unpack_submissions(tmp_path / "missing.zip", tmp_path / "out2")
    write(tmp_path / "notes.txt", b"hello")
    with pytest.raises(ArchiveError, match=r"neither a folder of submissions nor a zip"):
        unpack_submissions(tmp_path / "notes.txt", tmp_path / "out3")


# ----------------------------------------------------------------------------- hostile entries


@pytest.mark.parametrize("name, why", [
    ("../evil.py", "points outside its folder"),
    ("hw4/../../evil.py", "points outside its folder"),
    ("..\\evil.py", "points outside its folder"),
    ("/etc/evil.py", "absolute path"),
    ("C:/evil.py", "absolute path"),
    ("ok\x07.py", "control characters"),
])
def test_hostile_entry_names_reject_that_student_only(tmp_path, name, why):
    """The student with the crafted zip gets 0 with the reason; the batch goes on; nothing escapes."""
    src = tmp_path / "class"
    write(src / "mallory.zip", zip_bytes({**GOOD, name: "print('pwned')"}))
    write(src / "honest.zip", zip_bytes(GOOD))
    out = unpack_submissions(src, tmp_path / "out", SMALL)
    assert [s for s, _ in out.submissions] == ["honest"]
    assert len(out.rejected) == 1 and out.rejected[0][0] == "mallory"
    assert "mallory.zip" in out.rejected[0][1] and why in out.rejected[0][1]
    assert not (tmp_path / "evil.py").exists() and not (tmp_path / "out" / "evil.py").exists()
    assert not (tmp_path / "out" / "mallory").exists()


def test_symlinks_in_a_zip_are_copied_when_inside_and_dropped_when_pointing_out(tmp_path):
    links = {"alias.py": "FP_layers.py", "secret.py": "../../../work/main/reference/lab1.py",
             "abs.py": "/etc/passwd", "dir": "."}
    src = write(tmp_path / "s.zip", zip_bytes(GOOD, links=links))
    folder, warnings = unpack_submission(src, tmp_path / "out", SMALL)
    files = tree(folder)
    assert files["alias.py"] == GOOD["FP_layers.py"] and not (folder / "alias.py").is_symlink()
    assert "secret.py" not in files and "abs.py" not in files and "dir" not in files
    assert not any(p.is_symlink() for p in folder.rglob("*"))
    assert sum("outside the submission" in w for w in warnings) == 3


def test_symlinks_in_a_submission_folder_are_never_followed(tmp_path):
    """A folder handed in with links to the grader's files: the copy holds regular files only."""
    repo = Path(__file__).resolve().parent.parent.parent
    src = tmp_path / "sub"
    for name, text in GOOD.items():
        write(src / name, text.encode())
    (src / "answers2.yaml").symlink_to(repo / "reference" / "assignment.toml")
    (src / "rubric").symlink_to(repo / "tests" / "rubric")
    (src / "copy.py").symlink_to("FP_layers.py")
    warnings = copy_submission(src, tmp_path / "out", SMALL)
    assert tree(tmp_path / "out") == {**GOOD, "copy.py": GOOD["FP_layers.py"]}
    assert sum("outside the submission" in w for w in warnings) == 2


def test_duplicate_entries_and_file_folder_clashes_are_refused(tmp_path):
    dup = io.BytesIO()
    with zipfile.ZipFile(dup, "w") as zf:
        zf.writestr("lab1.py", "a = 1")
        with pytest.warns(UserWarning, match=r"Duplicate name"):
            zf.writestr("lab1.py", "a = 2")
    write(tmp_path / "dup.zip", dup.getvalue())
    with pytest.raises(ArchiveError, match=r"dup.zip: two entries named lab1.py"):
        unpack_submission(tmp_path / "dup.zip", tmp_path / "o1", SMALL)
    write(tmp_path / "clash.zip", zip_bytes({"a": "file", "a/b.py": "x"}))
    with pytest.raises(ArchiveError, match=r"clash.zip: a is both a file and a folder"):
        unpack_submission(tmp_path / "clash.zip", tmp_path / "o2", SMALL)


def test_password_protected_entries_are_refused_by_name(tmp_path):
    write(tmp_path / "locked.zip", zip_bytes(GOOD, encrypted=("lab1.ipynb",)))
    with pytest.raises(ArchiveError, match=r"locked.zip: lab1.ipynb is password-protected"):
        unpack_submission(tmp_path / "locked.zip", tmp_path / "out", SMALL)


def test_a_corrupt_zip_is_refused_by_name(tmp_path):
    write(tmp_path / "bad.zip", zip_bytes(GOOD)[:-30])
    with pytest.raises(ArchiveError, match=r"bad.zip"):
        unpack_submission(tmp_path / "bad.zip", tmp_path / "out", SMALL)


# ----------------------------------------------------------------------------- bombs


def test_a_ratio_bomb_is_stopped_while_writing(tmp_path):
    """64 MB of zeros in a ~64 KB zip: refused once the written bytes pass the ratio, not after
    (and refused from its header alone when the declared size is over the limit)."""
    write(tmp_path / "bomb.zip", zip_bytes({"zeros.bin": b"\0" * (64 << 20)}))
    assert (tmp_path / "bomb.zip").stat().st_size < 200_000
    with pytest.raises(ArchiveError, match=r"bomb.zip: declares 64 MB uncompressed, more than the 8 MB"):
        unpack_submission(tmp_path / "bomb.zip", tmp_path / "o1", SMALL)
    roomy = ArchiveLimits(max_submission_bytes=256 << 20, max_file_bytes=128 << 20, max_ratio=100.0)
    with pytest.raises(ArchiveError, match=r"bomb.zip: zeros.bin: compressed more than 100 to 1"):
        unpack_submission(tmp_path / "bomb.zip", tmp_path / "o2", roomy)
    assert not any((tmp_path / "o2").rglob("*.bin"))  # the partial file is removed


def test_a_header_that_understates_the_size_lets_no_more_bytes_through(tmp_path):
    """Declared 1 KB, holds 6 MB: the declared-size check passes, reading stops at the declared
    size and the CRC check refuses the entry; no partial file is left."""
    data = os.urandom(6 << 20)
    raw = bytearray(zip_bytes({"big.bin": data}, method=zipfile.ZIP_DEFLATED))
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24:cd + 28] = struct.pack("<I", 1024)  # the central directory's uncompressed size
    write(tmp_path / "liar.zip", bytes(raw))
    with pytest.raises(ArchiveError, match=r"liar.zip: not a readable zip file"):
        unpack_submission(tmp_path / "liar.zip", tmp_path / "out", SMALL)
    assert not any((tmp_path / "out").rglob("*.bin"))


def test_too_many_entries_or_too_many_bytes_in_all_are_refused(tmp_path):
    write(tmp_path / "many.zip", zip_bytes({f"f{i}.txt": "x" for i in range(SMALL.max_members + 1)}))
    with pytest.raises(ArchiveError, match=r"many.zip: more than 200 entries"):
        unpack_submission(tmp_path / "many.zip", tmp_path / "o1", SMALL)
    files = {f"f{i}.bin": os.urandom(3 << 20) for i in range(4)}  # 12 MB > 8 MB per submission
    write(tmp_path / "fat.zip", zip_bytes(files, method=zipfile.ZIP_STORED))
    with pytest.raises(ArchiveError, match=r"fat.zip: declares 12 MB uncompressed"):
        unpack_submission(tmp_path / "fat.zip", tmp_path / "o2", SMALL)


def test_one_file_over_the_file_limit_is_refused_while_writing(tmp_path):
    write(tmp_path / "one.zip", zip_bytes({"w.bin": os.urandom(6 << 20)}, method=zipfile.ZIP_STORED))
    with pytest.raises(ArchiveError, match=r"one.zip: w.bin: larger than the 4 MB limit of one file"):
        unpack_submission(tmp_path / "one.zip", tmp_path / "out", SMALL)
    assert not any((tmp_path / "out").rglob("*.bin"))


def _overlapping_zip(copies: int) -> bytes:
    """One compressed member, then ``copies`` central-directory entries all pointing at it: each
    extracts to the full size (Fifield's non-recursive zip bomb, in miniature)."""
    raw = zip_bytes({"a0": b"\0" * (1 << 20)})
    eocd = raw.rfind(b"PK\x05\x06")
    cd_start = struct.unpack("<I", raw[eocd + 16:eocd + 20])[0]
    entry = raw[cd_start:eocd]
    entries = [entry[:46] + f"{i:02d}".encode() + entry[48:] for i in range(copies)]  # same name length
    cd = b"".join(entries)
    tail = bytearray(raw[eocd:])
    tail[8:10] = tail[10:12] = struct.pack("<H", copies)
    tail[12:16] = struct.pack("<I", len(cd))
    return raw[:cd_start] + cd + bytes(tail)


def test_entries_sharing_their_data_are_refused(tmp_path):
    write(tmp_path / "overlap.zip", _overlapping_zip(50))
    with zipfile.ZipFile(tmp_path / "overlap.zip") as zf:  # a valid zip to every other reader
        assert len({i.header_offset for i in zf.infolist()}) == 1
    with pytest.raises(ArchiveError, match=r"overlap.zip: entries 00 and 01 overlap"):
        unpack_submission(tmp_path / "overlap.zip", tmp_path / "out", SMALL)


def test_zips_inside_zips_are_opened_up_to_the_depth_limit(tmp_path):
    inner = zip_bytes(GOOD)
    write(tmp_path / "once.zip", zip_bytes({"submission.zip": inner}))
    folder, _ = unpack_submission(tmp_path / "once.zip", tmp_path / "o1", SMALL)
    assert tree(folder) == GOOD
    nested = inner
    for _ in range(SMALL.max_depth + 1):
        nested = zip_bytes({"again.zip": nested})
    write(tmp_path / "deep.zip", nested)
    with pytest.raises(ArchiveError, match=r"nested more than 3 deep"):
        unpack_submission(tmp_path / "deep.zip", tmp_path / "o2", SMALL)


def test_an_export_over_the_total_budget_stops_the_unpacking(tmp_path):
    src = tmp_path / "class"
    for i in range(4):
        write(src / f"s{i}.zip", zip_bytes({"x.bin": os.urandom(3 << 20)}, method=zipfile.ZIP_STORED))
    limits = ArchiveLimits(max_total_bytes=8 << 20, max_submission_bytes=4 << 20, max_file_bytes=4 << 20)
    with pytest.raises(ArchiveError, match=r"class: .*all submissions together expand to more than 8 MB"):
        unpack_submissions(src, tmp_path / "out", limits)


def test_extract_zip_is_the_building_block_the_batch_uses(tmp_path):
    """One zip, every check, nothing unwrapped; an export is allowed the total budget."""
    write(tmp_path / "s.zip", zip_bytes({"hw4/lab1.ipynb": "{}", "__MACOSX/._x": "j"}))
    assert extract_zip(tmp_path / "s.zip", tmp_path / "o1", SMALL) == []
    assert tree(tmp_path / "o1") == {"hw4/lab1.ipynb": "{}"}
    export = zip_bytes({f"s{i}/x.bin": os.urandom(3 << 20) for i in range(4)}, method=zipfile.ZIP_STORED)
    write(tmp_path / "export.zip", export)
    extract_zip(tmp_path / "export.zip", tmp_path / "o2", SMALL)  # 12 MB: over one submission's 8 MB
    assert len(list((tmp_path / "o2").rglob("*.bin"))) == 4
    with pytest.raises(ArchiveError, match=r"declares 12 MB"):
        extract_zip(tmp_path / "export.zip", tmp_path / "o3", SMALL, export=False)
    write(tmp_path / "evil.zip", zip_bytes({"../x.py": "1"}))
    with pytest.raises(ArchiveError, match=r"evil.zip: entry '../x.py' points outside its folder"):
        extract_zip(tmp_path / "evil.zip", tmp_path / "o4", SMALL)


# ----------------------------------------------------------------------------- entries that cannot exist here

LONG = "x" * 260 + ".py"  # 264 bytes: over the 255 a file name may have on Linux file systems
DEEP = "d" * 100 + "/" + "e" * 100 + "/" + "f" * 100 + "/" + "g" * 100 + "/" + "h" * 100 + "/i.py"  # 506+


def mislabelled_utf8(data: bytes, name: str, raw: bytes) -> bytes:
    """``data`` (a zip) with entry ``name`` renamed to the bytes ``raw`` (same length), flagged
    UTF-8 in both headers although ``raw`` is not UTF-8 (as some tools write Latin-1 names)."""
    assert len(raw) == len(name.encode())
    out = bytearray(data)
    for signature, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = 0
        while (start := out.find(signature, start)) >= 0:
            if out[start + name_at:start + name_at + len(raw)] == name.encode():
                out[start + flags_at + 1] |= 0x08  # bit 11 of the flags: "the name is UTF-8"
                out[start + name_at:start + name_at + len(raw)] = raw
            start += 4
    return bytes(out)


def test_names_that_cannot_exist_here_cost_that_entry_only(tmp_path):
    """A student's zip with a 264-byte file name and a 600-character path: those two files are
    skipped with a warning naming them; the rest is graded."""
    write(tmp_path / "s.zip", zip_bytes({**GOOD, LONG: "x = 1", DEEP + "x" * 100: "y = 2"}))
    folder, warnings = unpack_submission(tmp_path / "s.zip", tmp_path / "out", SMALL)
    assert tree(folder) == GOOD
    assert any(LONG in w and "over 255 bytes" in w and "skipped" in w for w in warnings)
    assert any("characters is too long" in w and "skipped" in w for w in warnings)


def test_a_name_flagged_utf8_that_is_not_is_extracted_under_a_readable_name(tmp_path):
    """zipfile alone refuses the whole archive (UnicodeDecodeError) for one such name."""
    data = mislabelled_utf8(zip_bytes({**GOOD, "hw4/cafe.py": "z = 3"}), "hw4/cafe.py", b"hw4/caf\xe9.py")
    with pytest.raises(UnicodeDecodeError):
        zipfile.ZipFile(io.BytesIO(data))
    write(tmp_path / "s.zip", data)
    folder, warnings = unpack_submission(tmp_path / "s.zip", tmp_path / "out", SMALL)
    assert tree(folder) == {**GOOD, "hw4/caf\ufffd.py": "z = 3"}
    assert any("hw4/caf\\xe9.py" in w and "not valid UTF-8" in w for w in warnings), warnings


def test_a_name_the_file_system_refuses_costs_that_entry_only(tmp_path, monkeypatch):
    """A file system that refuses a name (EILSEQ on a UTF-8-only volume, a reserved name...)."""
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if "é" in os.fspath(path):
            raise OSError(84, "Invalid or incomplete multibyte or wide character")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(grader.archive.os, "open", refusing_open)
    write(tmp_path / "s.zip", zip_bytes({**GOOD, "notes_é.py": "x = 1"}))
    folder, warnings = unpack_submission(tmp_path / "s.zip", tmp_path / "out", SMALL)
    assert tree(folder) == GOOD
    assert any("notes_é.py" in w and "cannot be created here" in w for w in warnings), warnings


def export_with_bad_entries() -> bytes:
    """An LMS export: alice's folder holds a 264-byte name, a ``..`` entry, a control character
    and a duplicate; carol's a name flagged UTF-8 that is not; dave (Canvas files) a 264-byte name;
    bob is clean."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in GOOD.items():
            zf.writestr(f"alice/{name}", text)
            zf.writestr(f"carol/{name}", text)
            zf.writestr(f"dave_12_34_{name}", text)
        zf.writestr(f"alice/{LONG}", "x")
        zf.writestr("alice/../../escaped.py", "x")
        zf.writestr("alice/bell\x07.py", "x")
        with pytest.warns(UserWarning, match=r"Duplicate name"):
            zf.writestr("alice/lab1.ipynb", "a second one")
        zf.writestr("carol/cafe.py", "z = 3")
        zf.writestr(f"dave_12_34_{LONG}", "x")
        zf.writestr("bob.zip", zip_bytes(GOOD))
    return mislabelled_utf8(buf.getvalue(), "carol/cafe.py", b"carol/caf\xe9.py")


def test_one_bad_entry_of_an_export_costs_that_entry_only(tmp_path):
    write(tmp_path / "export.zip", export_with_bad_entries())
    skipped: list[tuple[str, str]] = []
    warnings = extract_zip(tmp_path / "export.zip", tmp_path / "flat", SMALL, export=True, skipped=skipped)
    assert sorted(n for n, _ in skipped) == sorted([
        f"alice/{LONG}", "alice/../../escaped.py", "alice/bell\x07.py", "alice/lab1.ipynb", f"dave_12_34_{LONG}"])
    assert len(warnings) >= len(skipped) and not any(tmp_path.rglob("escaped.py"))
    out = unpack_submissions(tmp_path / "export.zip", tmp_path / "out", SMALL)
    got = {student: tree(folder) for student, folder in out.submissions}
    assert sorted(got) == ["alice", "bob", "carol", "dave_12"] and out.rejected == []
    assert got["alice"] == GOOD and got["bob"] == GOOD and got["dave_12"] == GOOD
    assert got["carol"] == {**GOOD, "caf\ufffd.py": "z = 3"}


def test_a_batch_over_an_export_with_bad_entries_grades_every_student(tmp_path):
    """The whole batch (a stand-in grader): no BatchError (the CLI's exit 2), every student
    graded, and the students whose entries were skipped are told which, in their own results."""
    from batch_support import fake_grade

    from grader.batch import run_batch
    from grader.grade import GradeOptions

    write(tmp_path / "export.zip", export_with_bad_entries())
    report = run_batch(tmp_path / "export.zip", tmp_path / "out", GradeOptions(notebooks=False),
                       grade_fn=fake_grade, progress=False, workers=1)
    assert report.students == ["alice", "bob", "carol", "dave_12"] and report.grader_errors == []
    told = {r.student: [w for w in r.warnings if "not unpacked from the export" in w] for r in report.results}
    assert len(told["alice"]) == 4 and any(LONG in w and "over 255 bytes" in w for w in told["alice"])
    assert len(told["dave_12"]) == 1 and told["bob"] == told["carol"] == []
    assert any("caf\\xe9.py" in w and "not valid UTF-8" in w for w in report.warnings)


def test_a_student_whose_whole_entry_could_not_be_unpacked_is_still_in_the_gradebook(tmp_path):
    """A student's zip (or every file of a student's folder) that the export cannot give us is
    not a student who vanished: they get a row (graded on an empty folder, as a student whose own
    archive was refused) and feedback saying why; the others are graded as usual."""
    from batch_support import fake_grade

    from grader.batch import run_batch
    from grader.grade import GradeOptions

    lost_zip = "eve_" + "y" * 260 + ".zip"  # a name no Linux file system can hold
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bob.zip", zip_bytes(GOOD))
        zf.writestr(lost_zip, zip_bytes(GOOD))
        zf.writestr(f"frank/{LONG}", "x")  # frank's only file
    write(tmp_path / "export.zip", buf.getvalue())
    report = run_batch(tmp_path / "export.zip", tmp_path / "out", GradeOptions(notebooks=False),
                       grade_fn=fake_grade, progress=False, workers=1)
    eve = next((s for s in report.students if s.startswith("eve_")), None)
    assert eve is not None and "frank" in report.students and "bob" in report.students, report.students
    results = {r.student: r for r in report.results}
    for student in (eve, "frank"):
        told = [w for w in results[student].warnings if "could not be unpacked from the export" in w]
        assert told and "over 255 bytes" in told[0], results[student].warnings
    assert not any("export" in w for w in results["bob"].warnings)
