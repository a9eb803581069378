"""Find the required names in whatever files of a submission define them.

Real hand-ins name their files freely (``HW4_Lab2_and_3.ipynb``, ``lab1_<name>.ipynb``,
``hw4q1.ipynb``, a notebook that redefines ``STE`` inline). Every ``.py`` and ``.ipynb`` of the
submission is scanned (without running it, see ``extract``); each required name is taken from the
file that defines it, and the report says where.

Students keep the unfilled hand-out next to their answer (``hw4_raw.ipynb``, ``hw4_orig.ipynb``,
``FP_layers_template.py``). A definition that is still a blank -- placeholders only, ``...``
blanks, a leading ``raise NotImplementedError`` (``extract.is_blank``: the course's template), or
the very code of our own template (``student_template/``) -- loses to a filled one in any other
file; the report names the file graded and the template copies ignored. Among filled
definitions, a name defined in several files with different code is graded from the preferred
file (``FP_layers.py`` for Lab 3, the Lab 1 file for Lab 1, the Lab 2/3 notebook for Lab 2) and
reported.

The given files ``resnet20.py`` and ``train_util.py`` are never taken from a submission.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from grader.extract import Definition, Extracted, ExtractError, extract_file

__all__ = [
    "GIVEN_FILES",
    "IGNORED_DIRS",
    "MAX_ENTRIES",
    "REQUIRED",
    "Discovery",
    "Location",
    "discover",
    "is_lab1_file",
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
TEMPLATE = Path(__file__).resolve().parent.parent / "student_template"
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
    blanks: dict[str, list[Location]] = field(default_factory=dict)  # unfilled copies not graded
    problems: list[str] = field(default_factory=list)  # unreadable files, cells that do not parse
    ignored: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [n for n in REQUIRED if n not in self.found]

    def units(self) -> list[str]:
        """Files to load in the worker, modules first (``FP_layers.py`` before all)."""
        names = [f for f in self.files if self.files[f].cells]
        return sorted(names, key=lambda f: (not f.endswith(".py"), Path(f).name != "FP_layers.py", f))

    def by_hand(self) -> dict[str, list[str]]:
        """Parts a person must grade because the submission holds nothing the grader can call:
        ``{"lab1": [files to read]}`` when it defines none of the Lab 1 names (Lab 1 was free-form
        before the project's lab1.ipynb: the student's own names or none), ``{"tf": []}`` when it
        has no answers file (the T/F answers were in the written report). Their automatic points
        go to the manual sheet instead of a silent 0 (``grader.results.hand_over``)."""
        from grader.answers import find_answers

        out: dict[str, list[str]] = {}
        if not any(REQUIRED[n] == "lab1" for n in self.found):
            out["lab1"] = [f for f in self.files if is_lab1_file(f)] or \
                [f for f in self.files if f.endswith(".ipynb")]
        if find_answers(self.root) is None:
            out["tf"] = []
        return out

    def summary(self) -> list[str]:
        lines = [f"{name}: {loc}" for name, loc in self.found.items()]
        lines += [f"{name}: not found in any file" for name in self.missing]
        for name, locs in self.duplicates.items():
            lines.append(f"{name}: defined differently in {', '.join(map(str, locs))}; graded {self.found[name]}")
        for name, locs in self.blanks.items():
            lines.append(f"{name}: graded {self.found[name]}; ignored the unfilled template copy in "
                         f"{', '.join(map(str, locs))}")
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
    ours = _our_template()
    for name, part in REQUIRED.items():
        defs = [(file, d) for file, ex in disc.files.items() for d in ex.definitions
                if d.name == name and d.kind in ("function", "class")]
        if not defs:
            continue
        # Within one file the last definition wins (as when the notebook runs top to bottom).
        per_file: dict[str, Definition] = {}
        for file, d in defs:
            per_file[file] = d

        def blank(d: Definition, name: str = name) -> bool:
            return d.blank or (name, d.fingerprint) in ours

        # A filled definition anywhere beats a template copy; then the preferred file.
        ranked = sorted(per_file.items(), key=lambda fd: (blank(fd[1]), _preference(fd[0], part)))
        best_file, best = ranked[0]
        disc.found[name] = Location(best_file, best.label)
        filled = [(f, d) for f, d in ranked if not blank(d)]
        if filled:
            ignored = [Location(f, d.label) for f, d in ranked if blank(d)]
            if ignored:
                disc.blanks[name] = ignored
        if len({d.fingerprint for _, d in filled}) > 1:
            disc.duplicates[name] = [Location(f, d.label) for f, d in filled]
    _quiet_template_copies(disc, ours)


def _quiet_template_copies(disc: Discovery, ours: frozenset) -> None:
    """A file whose every required definition is an ignored blank is a kept copy of the hand-out:
    one line says so, instead of its cells that do not parse (the course's own template has one)."""
    ignored = {loc.file for locs in disc.blanks.values() for loc in locs}
    for file in sorted(ignored):
        defs = [d for d in disc.files[file].definitions if d.name in REQUIRED]
        if not all(d.blank or (d.name, d.fingerprint) in ours for d in defs):
            continue
        prefix = f"{file}, "
        disc.problems[:] = [p for p in disc.problems if not p.startswith(prefix)]
        disc.ignored.append(f"{file}: an unfilled copy of the hand-out (its functions are still "
                            "blanks); graded the filled ones")


@functools.cache
def _our_template() -> frozenset[tuple[str, str]]:
    """(name, fingerprint) of the required definitions in our own template (student_template/)."""
    out = set()
    for rel in ("hw4.ipynb", "FP_layers.py", "lab1.ipynb"):
        path = TEMPLATE / rel
        if not path.is_file():  # an installation without the template: the blank rules still hold
            continue
        try:
            ex = extract_file(path)
        except ExtractError:
            continue
        out |= {(d.name, d.fingerprint) for d in ex.definitions if d.name in REQUIRED}
    return frozenset(out)


def is_lab1_file(file: str) -> bool:
    """Named like a Lab 1 hand-in: lab1.ipynb, lab1_<name>.ipynb, HW4_Lab1.ipynb, hw4q1.ipynb, part1.py."""
    return bool(re.search(r"lab_?1|q1|part_?1", Path(file).name.lower()))


def _preference(file: str, part: str) -> tuple[int, str]:
    """Lower is preferred: the file a student most plausibly meant for this part."""
    name = Path(file).name.lower()
    is_lab1 = is_lab1_file(file)
    if part == "lab3":
        order = 0 if name == "fp_layers.py" else 1 if name.endswith(".py") else 2
    elif part == "lab1":
        order = 0 if is_lab1 else 1 if name.endswith(".py") else 2
    else:
        order = 0 if (name.endswith(".ipynb") and not is_lab1) else 1
    return order, file
