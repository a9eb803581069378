"""The two editions of hw4grade, built from one source tree.

=========  ===============================================================================
edition    what it holds, who installs it
=========  ===============================================================================
full       ``pip install .`` (or ``hw4grade assign`` -> ``dist/hw4grade-*.whl``): the grader,
           the reference solutions, every rubric test, the assignment config with its T/F key,
           the fixtures. Instructors, the Gradescope bundle, ``hw4grade grade``.
student    ``hw4grade assign`` -> ``dist/hw4grade_student-*.whl``: the grader's runtime and
           sandbox, the **public** tests only (hidden ones removed, see
           :mod:`grader.edition.shake`), the values they compare with, recorded from the
           reference at assign time (:mod:`grader.oracle`), the config without the T/F key,
           the given files and fixtures. No reference solution, no hidden test, no key.
           Students (``hw4grade check``) and their CI (``hw4grade ci``).
=========  ===============================================================================

An installed edition keeps its data (``tests/``, ``fixtures/``, the given files) in
``grader/_bundle/`` with the repository's relative layout; ``reference.config.REPO_ROOT`` points
there, so nothing depends on the source tree. ``grader/_bundle/EDITION`` names the edition; a
source checkout (or an editable install) has no bundle and counts as the full edition.
"""

from __future__ import annotations

from reference.config import REPO_ROOT

__all__ = ["EDITIONS", "INSTRUCTOR_COMMANDS", "current"]

EDITIONS = ("full", "student")
#: commands the student edition does not have (they need hidden tests, the key or the reference)
INSTRUCTOR_COMMANDS = ("grade", "assign", "gradescope", "merge")


def current() -> str:
    """``"source"`` (a checkout or editable install), ``"full"`` or ``"student"``."""
    marker = REPO_ROOT / "EDITION"
    if not marker.is_file():
        return "source"
    edition = marker.read_text(encoding="utf-8").split()[0] if marker.read_text(encoding="utf-8").split() else ""
    return edition if edition in EDITIONS else "source"
