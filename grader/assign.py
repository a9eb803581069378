"""``hw4grade assign``: generate the student template (and the solution sample) from reference/.

Sources (all in ``reference/``): the lab modules, the given files and the handout notebooks in
``reference/handout/`` (percent format: ``# %%`` starts a code cell, ``# %% [markdown]`` a
markdown cell, ``# %% include: lab2 prune_by_percentage`` a code cell holding those functions).

Markers in the sources:

* ``# BEGIN SOLUTION`` ... ``# END SOLUTION``: the template keeps the block's ``# TODO`` lines and
  replaces its code with ``raise NotImplementedError`` (nothing, at module level); the solution
  keeps the code and drops the TODO lines.
* ``# BEGIN REFERENCE ONLY`` ... ``# END REFERENCE ONLY``: dropped from both.
* ``<code>  # template: <replacement>``: the line becomes ``<replacement>`` in both.
* Term constants (``LR``, ``Q``, ``BITS``, ...; see :func:`constants`) are written as their values
  from the assignment config, in code and in markdown; ``{{TITLE}}`` and ``{{PTS_<item>}}`` too.

Two renderings: ``template`` -> ``student_template/``; ``solution`` -> the ``correct`` sample
(``fixtures/submissions/correct/reference/``). ``--check`` regenerates both in memory and fails
when a committed file differs, so a reference change without regeneration is caught.
"""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

from reference.config import REPO_ROOT, Config, load

__all__ = ["SOLUTION_DIR", "TEMPLATE_DIR", "AssignError", "check", "constants", "render", "write"]

REFERENCE_DIR = REPO_ROOT / "reference"
HANDOUT_DIR = REFERENCE_DIR / "handout"
TEMPLATE_DIR = REPO_ROOT / "student_template"
SOLUTION_DIR = REPO_ROOT / "fixtures" / "submissions" / "correct" / "reference"

#: student file -> reference module it is generated from (whole file).
MODULES = {
    "FP_layers.py": "lab3.py",
    "resnet20.py": "resnet20.py",
    "train_util.py": "train_util.py",
}
#: student notebook -> handout source.
NOTEBOOKS = {"hw4.ipynb": "hw4.py", "lab1.ipynb": "lab1.py"}
#: files of the template only (the solution sample is a hand-in, not a starter kit).
TEMPLATE_ONLY = ("README.md", ".github/workflows/hw4.yml")

_BEGIN_SOLUTION = re.compile(r"^\s*# BEGIN SOLUTION\s*$")
_END_SOLUTION = re.compile(r"^\s*# END SOLUTION\s*$")
_BEGIN_REF = re.compile(r"^\s*# BEGIN REFERENCE ONLY\s*$")
_END_REF = re.compile(r"^\s*# END REFERENCE ONLY\s*$")
_TEMPLATE_LINE = re.compile(r"^(?P<indent>\s*).*?\s+# template: (?P<repl>.+?)\s*$")
_TODO = re.compile(r"^\s*# TODO:?\s?(?P<text>.*)$")
_DEF = re.compile(r"^(?P<indent>\s*)(?:async\s+def|def|class)\s+(?P<name>\w+)")


class AssignError(RuntimeError):
    """A handout source is malformed (unbalanced markers, an unknown include)."""


@dataclass(frozen=True)
class Rendering:
    """The files of one rendering: relative path -> text."""

    mode: str
    files: dict[str, str]


def constants(cfg: Config) -> dict[str, object]:
    """The term constants the sources refer to by name, with their values from the config."""
    c1, c2, c3 = cfg.lab1, cfg.lab2, cfg.lab3
    return {
        "LR": c1.lr,
        "STEPS": c1.steps,
        "K": c1.k,
        "TRIM": c1.trim,
        "X_DATA": [list(row) for row in c1.X],
        "Y_DATA": list(c1.y),
        "LAMBDAS": list(c1.lambdas),
        "PROX_THRESHOLDS": list(c1.prox_thresholds),
        "TRIMMED_THRESHOLDS": list(c1.trimmed_thresholds),
        "Q": c2.q,
        "ITER_STEP": c2.iterative_step,
        "ITER_PRUNE_EPOCHS": c2.iterative_prune_epochs,
        "ITER_FIXED_EPOCHS": c2.iterative_fixed_epochs,
        "FINETUNE_EPOCHS": c2.finetune_epochs,
        "BATCH_SIZE": c2.batch_size,
        "FINETUNE_LR": c2.lr,
        "REG": c2.reg,
        "BITS": list(c3.bits),
        "FINETUNE_BITS": list(c3.finetune_bits),
        "PRUNED_BITS": list(c3.pruned_bits),
        "SYMMETRIC_BITS": list(c3.symmetric_bits),
        "Q_FINETUNE_EPOCHS": c3.finetune_epochs,
    }


def render(mode: str, cfg: Config | None = None) -> Rendering:
    """Render every student file in ``mode`` (``template`` or ``solution``)."""
    if mode not in ("template", "solution"):
        raise ValueError(f"render: mode must be 'template' or 'solution', got {mode!r}")
    cfg = cfg or load()
    consts = constants(cfg)
    modules = {
        name: process_source((REFERENCE_DIR / name).read_text(), mode, consts)
        for name in ("lab1.py", "lab2.py", "lab3.py", "resnet20.py", "train_util.py")
    }
    files = {student: modules[ref] for student, ref in MODULES.items()}
    for student, source in NOTEBOOKS.items():
        files[student] = build_notebook((HANDOUT_DIR / source).read_text(), mode, modules, consts, cfg)
    files["answers.yaml"] = answers_yaml(cfg, filled=(mode == "solution"))
    if mode == "template":
        readme = (HANDOUT_DIR / "README.md").read_text().replace("{{PIP_SPEC}}", cfg.grading.pip_spec)
        files["README.md"] = substitute_markdown(readme, consts, cfg)
        workflow = (HANDOUT_DIR / "workflow.yml").read_text()
        files[".github/workflows/hw4.yml"] = workflow.replace("{{PIP_SPEC}}", cfg.grading.pip_spec)
    return Rendering(mode, files)


def write(cfg: Config | None = None) -> list[Path]:
    """Regenerate ``student_template/`` and the solution sample; return the files written.

    A notebook whose sources are unchanged is left as it is (it may hold a run's outputs).
    """
    written = []
    for mode, root in (("template", TEMPLATE_DIR), ("solution", SOLUTION_DIR)):
        for rel, text in render(mode, cfg).files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or _comparable(rel, path.read_text()) != _comparable(rel, text):
                path.write_text(text)
                written.append(path)
    return written


def check(cfg: Config | None = None) -> list[str]:
    """Differences between the committed files and a fresh rendering (empty: up to date).

    Notebooks are compared cell by cell on their sources only: the solution sample's notebooks
    may carry the outputs of a real run (a hand-in does), which a rendering cannot reproduce.
    """
    problems = []
    for mode, root in (("template", TEMPLATE_DIR), ("solution", SOLUTION_DIR)):
        for rel, text in render(mode, cfg).files.items():
            path = root / rel
            if not path.exists():
                problems.append(f"{path.relative_to(REPO_ROOT)}: missing")
            elif _comparable(rel, path.read_text()) != _comparable(rel, text):
                problems.append(f"{path.relative_to(REPO_ROOT)}: out of date with reference/")
    return problems


def _comparable(rel: str, text: str) -> object:
    if not rel.endswith(".ipynb"):
        return text
    try:
        nb = json.loads(text)
    except ValueError:
        return text
    return [(c.get("cell_type"), "".join(c.get("source", ""))) for c in nb.get("cells", [])]


# ----------------------------------------------------------------------------- source processing


def process_source(text: str, mode: str, consts: dict[str, object]) -> str:
    """Apply the markers and the constants to one Python source."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    enclosing: list[tuple[int, str]] = []  # (indent, def name) of the defs we are inside
    while i < len(lines):
        line = lines[i]
        if _BEGIN_REF.match(line):
            i = _find_end(lines, i, _END_REF, "REFERENCE ONLY") + 1
            continue
        if _BEGIN_SOLUTION.match(line):
            end = _find_end(lines, i, _END_SOLUTION, "SOLUTION")
            indent = line[: len(line) - len(line.lstrip())]
            block = lines[i + 1 : end]
            if mode == "solution":
                out.extend(b for b in block if not _TODO.match(b))
            else:
                todos = [m.group("text") for m in map(_TODO.match, block) if m]
                out.extend(f"{indent}# TODO: {t}".rstrip() for t in todos)
                if indent:
                    name = _enclosing_name(enclosing, len(indent))
                    out.append(f'{indent}raise NotImplementedError("{name}: your code here")')
            i = end + 1
            continue
        m = _TEMPLATE_LINE.match(line)
        if m:
            line = m.group("indent") + m.group("repl")
        d = _DEF.match(line)
        if d:
            enclosing = [e for e in enclosing if e[0] < len(d.group("indent"))]
            enclosing.append((len(d.group("indent")), d.group("name")))
        out.append(line)
        i += 1
    source = "\n".join(out).strip("\n") + "\n"
    source = re.sub(r"\n{4,}", "\n\n\n", source)
    return substitute_code(source, consts)


def _find_end(lines: list[str], start: int, end_re: re.Pattern[str], what: str) -> int:
    for j in range(start + 1, len(lines)):
        if end_re.match(lines[j]):
            return j
    raise AssignError(f"line {start + 1}: # BEGIN {what} has no # END {what}")


def _enclosing_name(enclosing: list[tuple[int, str]], indent: int) -> str:
    inside = [name for ind, name in enclosing if ind < indent]
    return ".".join(inside) if inside else "this cell"


def substitute_code(source: str, consts: dict[str, object]) -> str:
    """Replace every NAME token that is a term constant (not an attribute) by its value."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    lines = source.splitlines(keepends=True)
    edits = []
    for idx, tok in enumerate(tokens):
        if tok.type != tokenize.NAME or tok.string not in consts:
            continue
        prev = tokens[idx - 1].string if idx else ""
        if prev == ".":
            continue
        edits.append((tok.start, tok.end, repr(consts[tok.string])))
    for (srow, scol), (_erow, ecol), value in reversed(edits):
        line = lines[srow - 1]
        lines[srow - 1] = line[:scol] + value + line[ecol:]
    return "".join(lines)


def substitute_markdown(text: str, consts: dict[str, object], cfg: Config) -> str:
    """``{{TITLE}}``, ``{{PTS_<item>}}`` and bare constant names in prose."""

    def brace(m: re.Match[str]) -> str:
        key = m.group(1)
        if key == "TITLE":
            return cfg.title
        if key.startswith("PTS_") and key[4:] in cfg.rubric:
            return f"{cfg.rubric[key[4:]].points:g}"
        raise AssignError(f"unknown placeholder {{{{{key}}}}}")

    text = re.sub(r"\{\{([\w.]+)\}\}", brace, text)
    names = sorted(consts, key=len, reverse=True)
    return re.sub(r"\b(" + "|".join(names) + r")\b", lambda m: _prose(consts[m.group(1)]), text)


def _prose(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(_prose(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ----------------------------------------------------------------------------- notebooks


def build_notebook(text: str, mode: str, modules: dict[str, str], consts: dict[str, object],
                   cfg: Config) -> str:
    """A handout source in percent format -> nbformat v4 JSON (deterministic cell ids)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for n, (kind, header, body) in enumerate(_split_cells(text)):
        cell_id = f"cell-{n:02d}"
        if kind == "markdown":
            prose = "\n".join(re.sub(r"^# ?", "", line) for line in body).strip("\n")
            nb.cells.append(nbformat.v4.new_markdown_cell(substitute_markdown(prose, consts, cfg), id=cell_id))
            continue
        if header.startswith("include:"):
            module, *names = header[len("include:"):].split()
            source = _definitions(modules[module + ".py"], names, module)
        else:
            source = process_source("\n".join(body), mode, consts)
        nb.cells.append(nbformat.v4.new_code_cell(source.strip("\n"), id=cell_id))
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def _split_cells(text: str) -> list[tuple[str, str, list[str]]]:
    cells: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            header = line[4:].strip()
            kind = "markdown" if header == "[markdown]" else "code"
            cells.append((kind, "" if kind == "markdown" else header, []))
        elif cells:
            cells[-1][2].append(line)
        elif line.strip():
            raise AssignError(f"text before the first '# %%' cell marker: {line!r}")
    return cells


def _definitions(module_source: str, names: list[str], module: str) -> str:
    """The source of the named top-level functions/classes of an already processed module.

    A name ending in ``?`` is optional: a solution-only helper that the template lacks.
    """
    tree = ast.parse(module_source)
    lines = module_source.splitlines()
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in [n.rstrip("?") for n in names]:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            found[node.name] = "\n".join(lines[start - 1 : node.end_lineno])
    missing = [n for n in names if n not in found and not n.endswith("?")]
    if missing:
        raise AssignError(f"include: {module} has no top-level {', '.join(missing)}")
    return "\n\n\n".join(found[n.rstrip("?")] for n in names if n.rstrip("?") in found) + "\n"


# ----------------------------------------------------------------------------- answers


def answers_yaml(cfg: Config, filled: bool) -> str:
    """``answers.yaml``: one entry per T/F question (the key's choices when ``filled``)."""
    lines = [
        "# True/False answers: for each question, choice T or F and a one-line explanation.",
        "# The choice is graded automatically, the explanation by a person.",
    ]
    for q, choice in cfg.tf_key.items():
        lines.append(f'"{q}":')
        lines.append(f"  choice: {choice if filled else ''}".rstrip() + ("" if filled else "   # T or F"))
        explanation = "See the lecture notes on this point." if filled else ""
        lines.append(f"  explanation: {json.dumps(explanation)}")
    return "\n".join(lines) + "\n"
