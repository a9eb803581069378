"""Scan an edition for what a student must never receive.

Three kinds of secret, each looked for in every file (text or binary, decoded leniently):

* **reference source**: every line of ``reference/lab*.py`` (the solutions and the variants, code,
  comments and docstrings) that is long enough to be specific (:data:`MIN_LENGTH` characters once
  whitespace is removed, as ``grader.redact`` does for the same reason) and that the students do
  not have anyway: a line the template rendering contains (the given files, the starter notebooks
  and ``FP_layers.py`` with their docstrings, signatures and TODO hints) is not secret, nor is an
  import statement or a line that is only a quoted name (``__all__`` entries: the handout names
  every function). Lines are compared without whitespace, so re-indenting or re-spacing a line
  does not hide it;
* **hidden tests**: the name of every hidden rubric test, as a whole identifier;
* **the True/False key**: an assignment of a choice to a question (``"1.1" = "F"``,
  ``"1.1": "F"``, ``1.1: F``) for each question with the key's choice, or the key's choices
  written in a row (``FFFFFFTFFT``, ``F, F, F, ...``).

:func:`scan` returns one problem per finding (file, what); an empty list means clean.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["MIN_LENGTH", "reference_lines", "scan", "template_lines"]

MIN_LENGTH = 24
_SPACE = re.compile(r"\s+")


def _norm(line: str) -> str:
    return _SPACE.sub("", line)


def template_lines(template: dict[str, str]) -> str:
    """The student template's text (notebook cells decoded), lines without whitespace."""
    out = []
    for rel, text in template.items():
        body = text
        if rel.endswith(".ipynb"):
            body = "\n".join("".join(c.get("source", "")) for c in json.loads(text).get("cells", []))
        out += [_norm(line) for line in body.splitlines()]
    return "\n".join(out)


def reference_lines(reference_dir: Path, public: str) -> dict[str, str]:
    """Secret lines of ``reference/lab*.py`` (not inside the template text ``public``):
    line without whitespace -> ``file:line`` where it is."""
    out: dict[str, str] = {}
    for path in sorted(reference_dir.glob("lab*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            norm = _norm(line)
            if len(norm) >= MIN_LENGTH and norm not in public and not _NOT_SECRET.match(line):
                out.setdefault(norm, f"reference/{path.name}:{n}")
    return out


#: an import statement, or a line holding only a quoted name (an ``__all__`` entry)
_NOT_SECRET = re.compile(r"^\s*(?:(?:from\s+[\w.]+\s+)?import\s+[\w., ()]+|[\"'][\w.]+[\"'],?)\s*$")


def _key_patterns(tf_key: dict[str, str]) -> list[tuple[re.Pattern[str], str]]:
    pats = []
    for q, choice in tf_key.items():
        qq = re.escape(q)
        pats.append((re.compile(rf"(?<![\d.]){qq}['\"]?\s*[:=]\s*['\"]?{choice}\b"),
                     f"the T/F key's answer to {q}"))
    choices = list(tf_key.values())
    if len(choices) >= 4:
        for sep in ("", ",", ", ", " ", "', '", '", "'):
            pats.append((re.compile(re.escape(sep.join(choices))), "the T/F key's choices in a row"))
    return pats


def scan(files: dict[str, bytes], *, secrets: dict[str, str], hidden_names: Iterable[str],
         tf_key: dict[str, str]) -> list[str]:
    """Every secret found in ``files`` (archive or installed path -> bytes), as messages."""
    problems: list[str] = []
    names = sorted(set(hidden_names))
    name_re = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b") if names else None
    key_pats = _key_patterns(tf_key)
    for rel in sorted(files):
        raw = files[rel].decode("utf-8", errors="replace")
        blob = "\n".join(_norm(line) for line in raw.splitlines())
        found = [where for line, where in secrets.items() if line in blob]
        if found:
            problems.append(f"{rel}: holds {len(found)} line(s) of the reference solution, e.g. {found[0]}")
        if name_re is not None:
            hits = sorted(set(name_re.findall(raw)))
            if hits:
                problems.append(f"{rel}: names hidden test(s) {', '.join(hits[:3])}")
        for pat, what in key_pats:
            if pat.search(raw):
                problems.append(f"{rel}: holds {what}")
                break
    return problems
