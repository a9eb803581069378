"""Keep the grader's own text out of anything a submission can make us show.

A hostile submission may read the hidden tests or the reference from disk (possible at the
``rlimit`` isolation level without Landlock, where the filesystem is not hidden) and print them,
or put them in an exception message. Every piece of student-derived text (printed output,
exception messages, tracebacks, warnings) passes through :func:`redact` before it reaches
feedback, results or logs: any line that contains a line of ``tests/rubric``, ``reference/*.py``
or the assignment config (long enough to be specific, and not also in the student template) is
replaced by :data:`MARKER`.

Lines the student wrote themselves are never redacted (``own``, see :func:`submission_lines`):
otherwise redaction would be an oracle -- put a guess of the reference's line into your code,
raise an exception on it, and see whether the grader hides it. A line you already have in your
own files leaks nothing when it is shown back to you.

Redaction matches text, so text that was re-encoded (base64, reversed, split across lines) is not
caught: hiding the files (bwrap, Landlock) is the protection, redaction the second line.

>>> line = next(iter(secret_lines()))
>>> redact("hello\\n" + line + "\\n") == "hello\\n" + MARKER + "\\n"
True
>>> redact(line + "\\n", own=frozenset([_norm(line)])) == line + "\\n"
True
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path

from reference import config as reference_config
from reference.config import REPO_ROOT

__all__ = ["MARKER", "MIN_LENGTH", "redact", "secret_lines", "submission_lines"]

ROOT = REPO_ROOT  # tests/rubric and student_template: the checkout's, or an installed edition's
REFERENCE = Path(reference_config.__file__).resolve().parent  # the reference package, wherever installed
MARKER = "[line removed: it matches the grader's own source]"
MIN_LENGTH = 24
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[A-Za-z_]{6,}")
MAX_OWN_BYTES = 64 << 20  # the submission files read for ``submission_lines``


def _secret_sources() -> list[Path]:
    return sorted((ROOT / "tests" / "rubric").rglob("*.py")) + sorted(REFERENCE.glob("*.py")) + [
        REFERENCE / "assignment.toml"]


@functools.lru_cache(maxsize=1)
def secret_lines() -> frozenset[str]:
    """Normalised lines of the grading tests, the reference solutions and the config."""
    out = set()
    # What students are given anyway (docstrings, given code) is not a secret.
    public: set[str] = set()
    for path in (ROOT / "student_template").glob("*.py*"):
        public.update(_norm(line) for line in path.read_text(encoding="utf-8").splitlines())
    for path in _secret_sources():
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            norm = _norm(line)
            if len(norm) >= MIN_LENGTH and norm not in public and not norm.startswith(("#", "import ", "from ")):
                out.add(norm)
    return frozenset(out)


def _norm(line: str) -> str:
    return _SPACE.sub(" ", line).strip()


def submission_lines(root: Path) -> frozenset[str]:
    """Normalised lines of a submission's own text files (``.py``, ``.ipynb``, ``.yaml``, ...),
    for ``redact(..., own=...)``. Symlinks are not followed; at most ``MAX_OWN_BYTES`` are read."""
    from grader.discover import walk_files

    out: set[str] = set()
    budget = MAX_OWN_BYTES
    files, _ = walk_files(Path(root))
    for rel in files:
        path = Path(root) / rel
        try:
            size = path.lstat().st_size
            if size > budget:
                continue
            budget -= size
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            continue
        # A notebook's lines are JSON strings ("    return x\n",): decode them roughly.
        for line in text.splitlines():
            out.add(_norm(line))
            if path.suffix == ".ipynb":
                out.add(_norm(_json_line(line)))
    return frozenset(out)


def _json_line(line: str) -> str:
    s = line.strip().rstrip(",")
    if len(s) >= 2 and s[0] == s[-1] == '"':
        s = s[1:-1]
    return s.replace("\\n", "").replace('\\"', '"').replace("\\\\", "\\")


def redact(text: str, own: Iterable[str] = frozenset()) -> str:
    """``text`` with every line that quotes the grader's source replaced by :data:`MARKER`.

    Args:
        text: student-derived text (output, an exception message, a traceback).
        own: normalised lines of the student's own files (:func:`submission_lines`): a line equal
            to one of them is the student's and is kept.
    """
    if not text:
        return text
    secrets = secret_lines()
    own = own if isinstance(own, frozenset | set) else frozenset(own)
    out = []
    for line in text.splitlines():
        norm = _norm(line)
        if len(norm) >= MIN_LENGTH and norm not in own and (norm in secrets or _contains_secret(norm, own)):
            out.append(MARKER)
        else:
            out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _contains_secret(norm: str, own: frozenset[str] | set[str]) -> bool:
    # A printed line may hold a secret line inside it (a repr, a prefix, a traceback's source
    # line): check the secrets that share a distinctive word with it, not all of them. A secret
    # the student's own file holds is theirs to see (see the module doc).
    words = set(_WORD.findall(norm))
    return any(s in norm and s not in own for s in _index().get_many(words))


class _Index:
    def __init__(self, secrets: frozenset[str]):
        self.by_word: dict[str, list[str]] = {}
        self.wordless: list[str] = []  # no distinctive word to index them by: always checked
        for s in secrets:
            words = set(_WORD.findall(s))
            if not words:
                self.wordless.append(s)
            for w in words:
                self.by_word.setdefault(w, []).append(s)

    def get_many(self, words: set[str]) -> set[str]:
        out: set[str] = set(self.wordless)
        for w in words:
            out.update(self.by_word.get(w, ()))
        return out


@functools.lru_cache(maxsize=1)
def _index() -> _Index:
    return _Index(secret_lines())
