"""The grading version: one digest of everything that decides a grade besides the submission.

:func:`sources_digest` hashes the grader, the rubric tests, the Hypothesis profiles, the reference,
the template's given files, the config and the fixture data the config names (the checkpoint and
the image set: the reference values' inputs). Files that only present results
(:data:`PRESENTATION`), caches and tool state are left out, so editing them changes nothing.

A batch keys its records on it (``grader.batch.store.grading_fingerprint``: a changed grader
regrades every submission), and ``grader.refcache`` its stored reference values (a changed
reference or test computes them again).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from reference import config as _reference_config
from reference.config import REPO_ROOT, Config

__all__ = ["GRADING_SOURCES", "PRESENTATION", "hash_file", "sources_digest"]

#: the folder holding the grader and reference packages (the checkout, or site-packages)
PACKAGES = Path(_reference_config.__file__).resolve().parent.parent
#: what decides a grade besides the submission (changing any of it regrades every submission)
GRADING_SOURCES = ("grader", "tests/rubric", "tests/conftest.py", "reference", "student_template")
#: files under GRADING_SOURCES that only present results: editing them does not regrade
PRESENTATION = (
    "grader/outputs",
    "grader/cli.py",
    "grader/batch/",
    "grader/__main__.py",
    "reference/handout",
)


def sources_digest(cfg: Config) -> str:
    """SHA-256 of the grading sources' relative paths and bytes, the config file and its data files."""
    h = hashlib.sha256()
    for rel in GRADING_SOURCES:
        # grader/ and reference/ are the packages wherever installed; the rest is data (REPO_ROOT:
        # the checkout, or an installed edition's grader/_bundle, hashed under its own names)
        root = PACKAGES if rel in ("grader", "reference") else REPO_ROOT
        base = root / rel
        files = (
            [base]
            if base.is_file()
            else sorted(p for p in base.rglob("*") if p.is_file())
            if base.exists()
            else []
        )
        for f in files:
            name = f.relative_to(root).as_posix()
            # Caches and tool state (.hypothesis, .pytest_cache) are not grading sources.
            parts = name.split("/")
            if "__pycache__" in parts or "_bundle" in parts or any(p.startswith(".") for p in parts) \
                    or name.startswith(PRESENTATION):
                continue
            h.update(name.encode() + b"\0")
            hash_file(h, f)
    for source in cfg.sources or (cfg.path,):  # the term file and the files it extends
        h.update(b"config\0" + source.read_bytes())
    for data in (cfg.data.checkpoint, cfg.data.fixture):
        h.update(b"data\0")
        if Path(data).is_file():
            hash_file(h, Path(data))
    return h.hexdigest()


def hash_file(h: Any, path: Path) -> None:
    """Feed a file's bytes into the hash ``h``."""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
