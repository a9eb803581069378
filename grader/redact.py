"""Keep the grader's own text out of anything a submission can make us show.

A hostile submission may read the hidden tests or the reference from disk (possible at the
``rlimit`` isolation level, where the filesystem is not hidden) and print them, or put them in an
exception message. Every piece of student-derived text (printed output, exception messages,
tracebacks) passes through :func:`redact` before it reaches feedback, results or logs: any line
that contains a line of ``tests/rubric`` or ``reference`` source (long enough to be specific) is
replaced by a marker.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

__all__ = ["redact", "secret_lines", "MARKER"]

ROOT = Path(__file__).resolve().parent.parent
MARKER = "[line removed: it matches the grader's own source]"
MIN_LENGTH = 24
_SPACE = re.compile(r"\s+")


@functools.lru_cache(maxsize=1)
def secret_lines() -> frozenset[str]:
    """Normalised lines of the hidden tests and the reference solutions."""
    out = set()
    sources = list((ROOT / "tests" / "rubric").rglob("*.py")) + list((ROOT / "reference").glob("*.py"))
    # What students are given anyway (docstrings, given code) is not a secret.
    public = set()
    for path in (ROOT / "student_template").glob("*.py*"):
        public.update(_norm(line) for line in path.read_text(encoding="utf-8").splitlines())
    for path in sources:
        for line in path.read_text(encoding="utf-8").splitlines():
            norm = _norm(line)
            if len(norm) >= MIN_LENGTH and norm not in public and not norm.startswith(("#", "import ", "from ")):
                out.add(norm)
    return frozenset(out)


def _norm(line: str) -> str:
    return _SPACE.sub(" ", line).strip()


def redact(text: str) -> str:
    """``text`` with every line that quotes the grader's source replaced by :data:`MARKER`."""
    if not text:
        return text
    secrets = secret_lines()
    out = []
    for line in text.splitlines():
        norm = _norm(line)
        if len(norm) >= MIN_LENGTH and (norm in secrets or any(s in norm for s in _candidates(norm, secrets))):
            out.append(MARKER)
        else:
            out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _candidates(norm: str, secrets: frozenset[str]) -> list[str]:
    # A printed line may hold a secret line inside it (a repr, a prefix): check the secrets that
    # share a distinctive word with it, not all of them.
    words = {w for w in re.findall(r"[A-Za-z_]{6,}", norm)}
    return [s for s in _index().get_many(words) if s in norm]


class _Index:
    def __init__(self, secrets: frozenset[str]):
        self.by_word: dict[str, list[str]] = {}
        for s in secrets:
            for w in set(re.findall(r"[A-Za-z_]{6,}", s)):
                self.by_word.setdefault(w, []).append(s)

    def get_many(self, words: set[str]) -> set[str]:
        out: set[str] = set()
        for w in words:
            out.update(self.by_word.get(w, ()))
        return out


@functools.lru_cache(maxsize=1)
def _index() -> _Index:
    return _Index(secret_lines())
