"""``hw4grade assign``'s edition steps: record, build both wheels, scan the student's, say how to publish.

:func:`build_editions` (``hw4grade assign``) records the term's values (:mod:`grader.edition.record`)
into ``<config>.recorded.json`` when they changed, builds ``dist/hw4grade-*.whl`` and
``dist/hw4grade_student-*.whl``, and refuses to write a student edition that :func:`leaks` finds
anything in. :func:`check_editions` (``hw4grade assign --check``) records again and compares with
the committed table (stale values fail), then builds the student edition in memory and scans it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from grader.edition import backend
from grader.edition.contents import EditionError, full_files, student_files
from grader.edition.wheel import wheel_bytes, wheel_name

__all__ = ["Built", "build_editions", "check_editions", "hidden_test_names", "leaks", "publish_help"]


@dataclass
class Built:
    full: Path
    student: Path
    table: Path
    table_written: bool
    problems: list[str] = field(default_factory=list)


def hidden_test_names(root: Path) -> list[str]:
    """The names of the hidden rubric tests of this tree."""
    from grader.edition.shake import shake

    rubric = root / "tests" / "rubric"
    sources = {p.name: p.read_text(encoding="utf-8") for p in sorted(rubric.glob("*.py")) if p.name != "conftest.py"}
    return sorted({h.split("::", 1)[1] for h in shake(sources).hidden})


def leaks(files: dict[str, bytes], root: Path, tf_key: dict[str, str]) -> list[str]:
    """What of the reference, the hidden tests or the T/F key ``files`` hold (empty: nothing)."""
    from grader import assign
    from grader.edition.scan import reference_lines, scan, template_lines

    public = template_lines(assign.render("template").files)
    secrets = reference_lines(root / "reference", public)
    return scan(files, secrets=secrets, hidden_names=hidden_test_names(root), tf_key=tf_key)


def build_editions(root: Path, config_path: Path, out: Path, isolation: str = "auto") -> Built:
    """Record, build both editions into ``out``, scan the student's (see the module doc)."""
    from grader.edition.record import record
    from grader.oracle import _read, table_path
    from reference.config import load

    table = table_path(config_path)
    text = record(config_path, isolation).text()
    written = not table.is_file() or table.read_text(encoding="utf-8") != text
    if written:
        table.write_text(text, encoding="utf-8")
        _read.cache_clear()
    student = student_files(root, config_path)
    problems = leaks(student, root, load(config_path).tf_key)
    if problems:
        raise EditionError("the student edition would leak, so it was not written:\n  " + "\n  ".join(problems))
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for edition, files in (("full", full_files(root)), ("student", student)):
        meta = backend.metadata(edition, root)
        path = out / wheel_name(meta)
        path.write_bytes(wheel_bytes(meta, files))
        paths.append(path)
    return Built(paths[0], paths[1], table, written)


def check_editions(root: Path, config_path: Path, isolation: str = "auto") -> list[str]:
    """Problems with the term's recorded values or its student edition (empty: all good)."""
    from grader.edition.record import record
    from grader.oracle import table_path
    from reference.config import load

    table = table_path(config_path)
    rel = table.relative_to(root) if table.is_relative_to(root) else table
    if not table.is_file():
        return [f"{rel}: missing (the public tests' recorded reference values)"]
    # first what needs no recording run: can the student edition be built, and is it clean?
    try:
        student = student_files(root, config_path)
    except EditionError as exc:
        return [f"student edition: {exc}"]
    problems = [f"student edition: {p}" for p in leaks(student, root, load(config_path).tf_key)]
    if problems:
        return problems
    if table.read_text(encoding="utf-8") != record(config_path, isolation).text():
        problems.append(f"{rel}: out of date with the public tests and reference/ (recorded values differ)")
    return problems


def publish_help(built: Built, pip_spec: str) -> str:
    """How to get the student edition to the students, for the spec the workflow installs."""
    name = built.student.name
    remote = "://" in pip_spec
    lines = [f"Student edition: {built.student} ({built.student.stat().st_size / 1e6:.1f} MB; public tests, "
             "no reference, no hidden test, no T/F key).",
             f"Full edition:    {built.full} (instructors; `pip install` it to grade anywhere)."]
    if remote:
        url = pip_spec.split("@", 1)[1].strip() if "@" in pip_spec else pip_spec
        lines += ["The student template's workflow installs " + pip_spec + ".",
                  "Publish the wheel there, e.g. as a release asset of the course's repository:",
                  f"    gh release upload <tag> {built.student} --clobber     # so that {url} serves it"]
    else:
        lines += ["The student template's workflow installs " + pip_spec + " from the student's repository:",
                  f"    cp {built.student} <student repo>/{pip_spec.removeprefix('./')}   # commit it with the rest"]
    lines += ["Students install it locally with:", f"    python -m pip install {name}   # or its URL"]
    return "\n".join(lines)
