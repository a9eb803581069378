"""Redaction: the grader's own source never reaches what a student sees."""

from __future__ import annotations

import json
from pathlib import Path

from grader.redact import MARKER, MIN_LENGTH, redact, secret_lines, submission_lines

ROOT = Path(__file__).resolve().parent.parent.parent


def _a_line_of(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        norm = " ".join(line.split())
        if norm in secret_lines():
            return line
    raise AssertionError(f"{path} has no line long and specific enough to be a secret")


def test_every_line_of_a_hidden_test_or_the_reference_is_removed():
    for path in [ROOT / "tests" / "rubric" / "test_lab1_b_gradient_descent.py",
                 ROOT / "reference" / "lab1.py", ROOT / "reference" / "lab3.py"]:
        text = path.read_text(encoding="utf-8")
        out = redact(text)
        for line in out.splitlines():
            norm = " ".join(line.split())
            assert norm not in secret_lines(), f"{path.name}: {line!r} survived redaction"
        assert MARKER in out


def test_the_config_with_the_tf_key_is_a_secret():
    key_line = next(line for line in (ROOT / "reference" / "assignment.toml").read_text().splitlines()
                    if line.startswith("key = "))
    assert redact(f"printed: {key_line}\n") == MARKER + "\n"


def test_a_secret_inside_a_longer_line_or_with_other_spacing_is_removed():
    secret = _a_line_of(ROOT / "reference" / "lab1.py")
    squeezed = "   ".join(secret.split())
    out = redact(f"ok line\nValueError('{squeezed}')\nanother ok line\n")
    assert out == f"ok line\n{MARKER}\nanother ok line\n"


def test_short_lines_and_the_students_template_are_not_secrets():
    template = (ROOT / "student_template" / "FP_layers.py").read_text().splitlines()
    template_line = next(line for line in template if len(line.strip()) >= MIN_LENGTH)
    text = f"x = 1\n{template_line}\nreturn w\n"
    assert redact(text) == text


def test_the_students_own_lines_are_kept_so_redaction_is_no_oracle(tmp_path):
    """A line the student wrote (even if it equals the reference's) is shown back to them:
    otherwise hiding it would confirm that their guess matches the solution."""
    secret = _a_line_of(ROOT / "reference" / "lab1.py")
    (tmp_path / "lab1.py").write_text(f"def f():\n{secret}\n")
    cell = {"cell_type": "code", "source": [secret + "\n", "pass\n"], "metadata": {}, "outputs": []}
    nb = {"cells": [cell]}
    (tmp_path / "hw4.ipynb").write_text(json.dumps(nb, indent=1))
    own = submission_lines(tmp_path)
    traceback_line = f"    {secret.strip()}"
    assert redact(traceback_line, own=own) == traceback_line
    other = _a_line_of(ROOT / "reference" / "lab3.py")
    assert redact(other, own=own) == MARKER


def test_redacting_a_large_output_is_fast():
    """1 MB of printed output (the cap) is redacted in well under a second per MB."""
    import time

    text = ("loss at step 12: 0.5 prune_by_percentage(layer, q=70.0) global threshold\n" * 15_000)
    started = time.monotonic()
    assert redact(text) == text
    assert time.monotonic() - started < 5.0
