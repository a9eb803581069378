"""Read ``answers.yaml`` (the True/False part) safely and forgivingly.

Accepted forms per question: ``"1.1": {choice: T, explanation: ...}``, ``"1.1": T``, or
``1.1: "False -- because ..."``; choices ``T``/``F``/``True``/``False`` in any case.

The file is the student's and is read in the trusted process (once per T/F test and once by the
batch), so the reading is bounded before anything is built from it:

* at most :data:`MAX_BYTES` are read;
* no aliases (``*name``): an "alias bomb" of a kilobyte expands to millions of strings (8 levels
  of 8 aliases each: 8^8), and printing or copying the result is what costs minutes and
  gigabytes -- an answers file has no use for them;
* at most :data:`MAX_DEPTH` levels of nesting and :data:`MAX_NODES` values in all (the YAML
  composer recurses per level, and parsing is what takes time: it stops at the cap);
* ``yaml.SafeLoader`` underneath: no object construction.

A file refused whole (too large, not YAML, aliases, too deep, too many values, not a mapping) is
:attr:`Answers.refused`, a message naming the file that grading shows as a warning; its T/F
choices then count as not given.

>>> import tempfile; folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "answers.yaml").write_text('a: &a [x, x]\\nb: [*a, *a]\\n"1.1": T\\n')
>>> read_answers(folder).refused
'answers.yaml: not read: it uses a YAML alias (*a, line 2); write each answer out in full'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = ["ANSWER_FILES", "MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "Answers", "find_answers", "read_answers"]

ANSWER_FILES = ("answers.yaml", "answers.yml", "answers.YAML")
MAX_BYTES = 64 << 10  # ten explanations of 2,000 characters are 20 KB
MAX_DEPTH = 8  # question -> {choice, explanation} is 2 levels
MAX_NODES = 2_000  # ten questions are about 50 values


@dataclass
class Answers:
    file: str | None
    choices: dict[str, str] = field(default_factory=dict)
    explanations: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: why the whole file was not read (names the file); None when it was read or is missing
    refused: str | None = None

    def choice(self, question: str) -> str | None:
        return self.choices.get(question)


class _Refused(yaml.YAMLError):
    """The file is not read: the message says why (an alias, the depth or the size)."""


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader refusing aliases, deep nesting and too many values."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(
                f"it uses a YAML alias (*{event.anchor}, line {event.start_mark.line + 1}); "
                "write each answer out in full"
            )
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Refused(f"it holds more than {MAX_NODES} values (an answers file has about 50)")
        if self._depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise _Refused(f"it nests more than {MAX_DEPTH} levels deep (line {mark.line + 1})")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def find_answers(root: Path) -> Path | None:
    """The answers file: at the top of the submission, else the shallowest one in a folder (a
    hand-in zipped with its folder: ``HW4 final/answers.yaml``); links are never followed."""
    path = next((root / n for n in ANSWER_FILES if (root / n).is_file()), None)
    if path is not None:
        return path
    from grader.discover import walk_files

    found = [rel for rel in walk_files(root)[0] if rel.name in ANSWER_FILES and len(rel.parts) <= 3]
    return root / min(found, key=lambda rel: (len(rel.parts), str(rel))) if found else None


def read_answers(root: Path) -> Answers:
    path = find_answers(root)
    if path is None:
        return Answers(None, problems=["answers.yaml not found"])
    out = Answers(path.relative_to(root).as_posix())
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        return _refuse(out, f"cannot be read ({exc.strerror or exc})")
    if len(raw) > MAX_BYTES:
        return _refuse(out, f"larger than {MAX_BYTES >> 10} KB")
    try:
        loader = _BoundedLoader(raw.decode("utf-8"))
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except _Refused as exc:
        return _refuse(out, str(exc))
    except UnicodeDecodeError as exc:
        return _refuse(out, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    except yaml.YAMLError as exc:
        return _refuse(out, f"not valid YAML ({str(exc).splitlines()[0]})")
    except (ValueError, OverflowError) as exc:  # a value YAML parses but Python cannot hold
        return _refuse(out, f"not valid YAML ({str(exc).splitlines()[0][:120]})")
    if not isinstance(data, dict):
        return _refuse(out, "expected a mapping of question -> answer")
    for key, value in data.items():
        question = _question(key)
        if question is None:
            continue
        if isinstance(value, dict):
            raw_choice, explanation = value.get("choice"), value.get("explanation")
        else:
            raw_choice, explanation = value, None
        choice = _choice(raw_choice)
        if choice:
            out.choices[question] = choice
        elif raw_choice not in (None, ""):
            out.problems.append(
                f"{out.file}: question {question}: cannot read {str(raw_choice)[:40]!r} as T or F"
            )
        if explanation:
            out.explanations[question] = str(explanation)[:2000]
    return out


def _refuse(out: Answers, why: str) -> Answers:
    out.refused = f"{out.file}: not read: {why}"
    out.problems.append(out.refused)
    return out


def _question(key) -> str | None:
    text = str(key).strip()
    if isinstance(key, float):
        # YAML reads 1.10 as the float 1.1: a key written without quotes is ambiguous.
        text = repr(key)
    text = text.removeprefix("q").removeprefix("Q")
    parts = text.split(".")
    if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
        return f"{int(parts[0])}.{int(parts[1])}"
    return None


def _choice(raw) -> str | None:
    if isinstance(raw, bool):
        return "T" if raw else "F"
    if not isinstance(raw, str):
        return None
    word = raw.strip().split()[0].strip(".,:;-").upper() if raw.strip() else ""
    return {"T": "T", "TRUE": "T", "F": "F", "FALSE": "F"}.get(word)
