"""The installed editions' session fixtures (test_editions.py, and the student edition's
background self-check in ``conftest.py``): a work folder outside the checkout, both editions'
wheels built from this tree, the student edition pip-installed into a fresh environment."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="session")
def editions_dir():
    """The installed editions' work folder (outside the checkout; test_editions.py)."""
    from edition_support import work_dir

    path = work_dir("hw4-editions-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def edition_wheels(editions_dir) -> dict[str, Path]:
    """Both editions' wheels, built from this tree: ``{"full": ..., "student": ...}``."""
    import time

    from edition_support import timed

    from grader.edition import backend
    from grader.edition.contents import full_files, student_files
    from grader.edition.wheel import write_wheel
    from reference.config import load

    started = time.monotonic()
    out = {"full": write_wheel(editions_dir / "dist", backend.metadata("full", ROOT), full_files(ROOT)),
           "student": write_wheel(editions_dir / "dist", backend.metadata("student", ROOT),
                                  student_files(ROOT, load().path))}
    timed("build both wheels", started)
    return out


@pytest.fixture(scope="session")
def student_env(editions_dir, edition_wheels) -> Path:
    """The student edition pip-installed (non-editable) into a fresh environment: its ``python``."""
    from edition_support import installed

    return installed(editions_dir, edition_wheels["student"], "student")
