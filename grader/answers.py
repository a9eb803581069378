"""Read ``answers.yaml`` (the True/False part) safely and forgivingly.

Accepted forms per question: ``"1.1": {choice: T, explanation: ...}``, ``"1.1": T``, or
``1.1: "False -- because ..."``; choices ``T``/``F``/``True``/``False`` in any case. The file is read
with ``yaml.safe_load`` (no object construction) and a size limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = ["ANSWER_FILES", "Answers", "read_answers"]

ANSWER_FILES = ("answers.yaml", "answers.yml", "answers.YAML")
MAX_BYTES = 256 << 10


@dataclass
class Answers:
    file: str | None
    choices: dict[str, str] = field(default_factory=dict)
    explanations: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def choice(self, question: str) -> str | None:
        return self.choices.get(question)


def read_answers(root: Path) -> Answers:
    path = next((root / n for n in ANSWER_FILES if (root / n).is_file()), None)
    if path is None:
        return Answers(None, problems=["answers.yaml not found"])
    out = Answers(path.name)
    if path.stat().st_size > MAX_BYTES:
        out.problems.append(f"{path.name}: larger than {MAX_BYTES >> 10} KB; not read")
        return out
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        out.problems.append(f"{path.name}: not valid YAML ({str(exc).splitlines()[0]})")
        return out
    if not isinstance(data, dict):
        out.problems.append(f"{path.name}: expected a mapping of question -> answer")
        return out
    for key, value in data.items():
        question = _question(key)
        if question is None:
            continue
        if isinstance(value, dict):
            raw, explanation = value.get("choice"), value.get("explanation")
        else:
            raw, explanation = value, None
        choice = _choice(raw)
        if choice:
            out.choices[question] = choice
        elif raw not in (None, ""):
            out.problems.append(f"{path.name}: question {question}: cannot read {str(raw)[:40]!r} as T or F")
        if explanation:
            out.explanations[question] = str(explanation)[:2000]
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
