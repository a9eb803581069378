"""Find the required names in whatever files of a submission define them.

Real hand-ins name their files freely (``HW4_Lab2_and_3.ipynb``, ``lab1_<name>.ipynb``,
``hw4q1.ipynb``, a notebook that redefines ``STE`` inline). Every ``.py`` and ``.ipynb`` of the
submission is scanned (without running it, see ``extract``); each required name is taken from the
file that defines it, and the report says where. A name defined in several files with different
code is graded from the preferred file (``FP_layers.py`` for Lab 3, the Lab 1 file for Lab 1, the
Lab 2/3 notebook for Lab 2) and reported.

The given files ``resnet20.py`` and ``train_util.py`` are never taken from a submission.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from grader.extract import Extracted, ExtractError, extract_file

__all__ = [
    "GIVEN_FILES",
    "IGNORED_DIRS",
    "MAX_ENTRIES",
    "REQUIRED",
    "Discovery",
    "Location",
    "discover",
    "walk_files",
]

#: required name -> the part of the homework it belongs to
REQUIRED: dict[str, str] = {
    **{n: "lab1" for n in ("loss", "gradient", "project_top_k", "soft_threshold",
                           "trimmed_soft_threshold", "run_gd", "run_projected_gd", "run_l1_gd",
                           "run_proximal_gd", "run_trimmed_l1")},
    **{n: "lab2" for n in ("prune_by_percentage", "finetune_after_prune", "global_prune_by_percentage")},
    **{n: "lab3" for n in ("STE", "FP_Linear", "FP_Conv")},
}
GIVEN_FILES = {"resnet20.py", "train_util.py"}
IGNORED_DIRS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__", ".git", ".github", "data", "figures"}
MAX_FILES = 200  # source files read per submission
MAX_ENTRIES = 20_000  # directory entries scanned per submission (a folder of a million files)
MAX_DEPTH = 3  # source files deeper than this many path parts are not read


@dataclass(frozen=True)
class Location:
    file: str
    where: str  # "cell 7, line 3" / "line 12"

    def __str__(self) -> str:
        return f"{self.file} ({self.where})"


@dataclass
class Discovery:
    """What a submission holds: files, their extracted definitions, and where each name is."""

    root: Path
    files: dict[str, Extracted] = field(default_factory=dict)
    found: dict[str, Location] = field(default_factory=dict)
    duplicates: dict[str, list[Location]] = field(default_factory=dict)  # defined differently
    problems: list[str] = field(default_factory=list)  # unreadable files, cells that do not parse
    ignored: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [n for n in REQUIRED if n not in self.found]

    def units(self) -> list[str]:
        """Files to load in the worker, modules first (``FP_layers.py`` before all)."""
        names = [f for f in self.files if self.files[f].cells]
        return sorted(names, key=lambda f: (not f.endswith(".py"), Path(f).name != "FP_layers.py", f))

    def summary(self) -> list[str]:
        lines = [f"{name}: {loc}" for name, loc in self.found.items()]
        lines += [f"{name}: not found in any file" for name in self.missing]
        for name, locs in self.duplicates.items():
            lines.append(f"{name}: defined differently in {', '.join(map(str, locs))}; graded {self.found[name]}")
        return lines


def walk_files(root: Path, max_entries: int | None = None) -> tuple[list[Path], bool]:
    """Relative paths of the regular files under ``root``, sorted; and whether the scan stopped
    at ``max_entries`` (default :data:`MAX_ENTRIES`). Symlinks (to files or folders) are never
    followed or listed; hidden entries and :data:`IGNORED_DIRS` are left out."""
    max_entries = MAX_ENTRIES if max_entries is None else max_entries
    out: list[Path] = []
    seen = 0
    stack = [Path()]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(root / rel_dir) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > max_entries:
                return sorted(out), True
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            rel = rel_dir / entry.name
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in IGNORED_DIRS:
                    stack.append(rel)
            elif entry.is_file(follow_symlinks=False):
                out.append(rel)
    return sorted(out), False


def discover(root: Path) -> Discovery:
    """Scan a submission folder (already unpacked)."""
    disc = Discovery(root)
    candidates = []
    files, truncated = walk_files(root)
    if truncated:
        disc.problems.append(f"more than {MAX_ENTRIES} files and folders: only the first were scanned")
    for rel in files:
        path = root / rel
        if path.suffix not in (".py", ".ipynb"):
            continue
        if path.name in GIVEN_FILES:
            disc.ignored.append(f"{rel}: a given file; the grader uses its own copy")
            continue
        if len(rel.parts) > MAX_DEPTH:
            disc.ignored.append(f"{rel}: deeper than {MAX_DEPTH} folders; not read")
            continue
        candidates.append(path)
    if len(candidates) > MAX_FILES:
        disc.problems.append(f"{len(candidates)} source files; only the first {MAX_FILES} were read")
        candidates = candidates[:MAX_FILES]
    for path in candidates:
        name = str(path.relative_to(root))
        try:
            extracted = extract_file(path)
        except ExtractError as exc:
            disc.problems.append(str(exc).replace(path.name, name, 1))
            continue
        extracted.file = name
        disc.files[name] = extracted
        disc.problems.extend(extracted.errors)
    _resolve(disc)
    return disc


def _resolve(disc: Discovery) -> None:
    for name, part in REQUIRED.items():
        defs = [(file, d) for file, ex in disc.files.items() for d in ex.definitions
                if d.name == name and d.kind in ("function", "class")]
        if not defs:
            continue
        # Within one file the last definition wins (as when the notebook runs top to bottom).
        per_file: dict[str, object] = {}
        for file, d in defs:
            per_file[file] = d
        ranked = sorted(per_file.items(), key=lambda fd: _preference(fd[0], part))
        best_file, best = ranked[0]
        disc.found[name] = Location(best_file, best.label)  # type: ignore[attr-defined]
        prints = {d.fingerprint for d in per_file.values()}  # type: ignore[attr-defined]
        if len(prints) > 1:
            disc.duplicates[name] = [Location(f, d.label) for f, d in ranked]  # type: ignore[attr-defined]


def _preference(file: str, part: str) -> tuple[int, str]:
    """Lower is preferred: the file a student most plausibly meant for this part."""
    name = Path(file).name.lower()
    is_lab1 = bool(re.search(r"lab_?1|q1|part_?1", name))
    if part == "lab3":
        order = 0 if name == "fp_layers.py" else 1 if name.endswith(".py") else 2
    elif part == "lab1":
        order = 0 if is_lab1 else 1 if name.endswith(".py") else 2
    else:
        order = 0 if (name.endswith(".ipynb") and not is_lab1) else 1
    return order, file
