"""Grade one sample folder in a child process, for tests that need one grading of their own.

A module of its own rather than ``conftest``: grading in-process (``hw4grade assign --check``
records the public tests with ``pytest.main``) imports ``tests/rubric/conftest.py`` under the same
module name ``conftest``, so a later ``from conftest import grade`` found the wrong file.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def grade(path: Path, *, notebooks: bool = False, public: bool = False, isolation: str = "auto",
          k: str | None = None, env: dict[str, str] | None = None):
    """Grade one folder with ``python -m grader.grade`` in a child process (a grading run is a
    pytest session of its own; it must not share this one's global state). Returns the
    ``SubmissionResult``. ``k``: a pytest ``-k`` expression selecting rubric tests (whole items,
    e.g. ``"lab1e or lab1b"``), to keep a test of a few items fast; ``env``: variables to set."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    from grader.results import SubmissionResult

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "grader.grade", str(path), "--json", str(out), "--isolation", isolation]
        cmd += [] if notebooks else ["--no-notebooks"]
        cmd += ["--public"] if public else []
        cmd += ["-k", k] if k else []
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800, check=False,
                              env={**os.environ, **(env or {})})
        if proc.returncode != 0 or not out.exists():
            raise AssertionError(f"grading {path} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return SubmissionResult.from_dict(json.loads(out.read_text()))
