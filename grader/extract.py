"""Extract the definitions of a notebook or module without running anything.

A code cell is parsed (IPython magics and shell lines are blanked first); of its top-level
statements only these are kept:

* ``import`` / ``from ... import`` (and ``try:`` blocks made only of imports),
* ``def`` / ``async def`` / ``class`` (with their decorators),
* assignments whose value is a *plain constant expression*: literals, names, attribute access,
  arithmetic, comparisons, ``x if c else y``, and calls of a few pure constructors
  (``np.array``, ``torch.tensor``, ``torch.device``, ``torch.cuda.is_available``, ...).

Everything else (training loops, ``net = ResNetCIFAR()``, ``torch.load``, plotting) is dropped:
its lines are replaced by blank lines, so line numbers in the kept source still match the
student's cell and tracebacks point at the right line. Cells that do not parse are reported and
skipped; the other cells still load.

Cells that are not Python are skipped whole: cell magics other than a few that only wrap Python
(``%%bash``, ``%%writefile``, ``%%html``... are not code to define anything). Limits: a notebook
of at most ``MAX_NOTEBOOK_BYTES``, a module or one cell of at most ``MAX_SOURCE_BYTES``; JSON nested
too deeply for the parser, or source too deeply nested for ``ast``, is reported, never raised.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MAX_NOTEBOOK_BYTES",
    "MAX_SOURCE_BYTES",
    "Cell",
    "Definition",
    "ExtractError",
    "Extracted",
    "extract_file",
    "extract_source",
]

MAX_NOTEBOOK_BYTES = 32 << 20
MAX_SOURCE_BYTES = 2 << 20
_MAGIC = re.compile(r"^\s*[%!]")
_CELL_MAGIC = re.compile(r"^\s*%%(\w+)")
#: cell magics whose body is Python (the magic line is blanked, the body extracted as usual)
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug"}

#: Calls allowed in a kept constant assignment (dotted names as written).
PURE_CALLS = {
    "np.array", "numpy.array", "np.asarray", "np.zeros", "np.ones", "np.arange", "np.linspace",
    "np.float64", "np.float32", "torch.tensor", "torch.device", "torch.cuda.is_available",
    "torch.backends.mps.is_available", "float", "int", "str", "bool", "list", "tuple", "dict",
    "set", "range", "len", "abs", "min", "max", "round", "pow", "nn.CrossEntropyLoss",
    "torch.nn.CrossEntropyLoss", "math.sqrt", "np.sqrt", "os.path.join",
}


class ExtractError(ValueError):
    """A file cannot be read as a notebook or module (message names the file)."""


@dataclass(frozen=True)
class Definition:
    name: str
    kind: str  # "function", "class" or "constant"
    label: str  # "cell 7" or "line 12"
    line: int
    fingerprint: str  # ast.dump of the definition: equal iff the code is the same


@dataclass
class Cell:
    label: str
    source: str  # the kept source, dropped lines blanked
    error: str | None = None


@dataclass
class Extracted:
    file: str
    cells: list[Cell] = field(default_factory=list)
    definitions: list[Definition] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what was dropped, for feedback

    @property
    def errors(self) -> list[str]:
        return [f"{self.file}, {c.label}: {c.error}" for c in self.cells if c.error]


def extract_file(path: Path) -> Extracted:
    """Extract one ``.ipynb`` or ``.py`` file.

    Raises:
        ExtractError: the file is too large, not UTF-8, or (for a notebook) not notebook JSON.
    """
    size = path.stat().st_size
    limit = MAX_NOTEBOOK_BYTES if path.suffix == ".ipynb" else MAX_SOURCE_BYTES
    if size > limit:
        raise ExtractError(f"{path.name}: {size} bytes is larger than the {limit >> 20} MB limit")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ExtractError(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.suffix == ".ipynb":
        return _extract_notebook(path.name, text)
    out = Extracted(path.name)
    _add_cell(out, "module", text)
    return out


def extract_source(name: str, text: str) -> Extracted:
    out = Extracted(name)
    _add_cell(out, "module", text)
    return out


def _extract_notebook(name: str, text: str) -> Extracted:
    try:
        nb = json.loads(text)
    except ValueError as exc:
        raise ExtractError(f"{name}: not valid notebook JSON ({exc})") from None
    except RecursionError:
        raise ExtractError(f"{name}: not valid notebook JSON (nested too deeply)") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ExtractError(f"{name}: not a Jupyter notebook (no 'cells' list)")
    out = Extracted(name)
    for index, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        if not isinstance(source, str):
            continue
        _add_cell(out, f"cell {index + 1}", source)
    return out


def _add_cell(out: Extracted, label: str, source: str) -> None:
    if len(source) > MAX_SOURCE_BYTES:
        out.cells.append(Cell(label, "", error=f"{len(source)} characters: larger than the "
                                                 f"{MAX_SOURCE_BYTES >> 20} MB limit of one cell; skipped"))
        return
    first = next((line for line in source.splitlines() if line.strip()), "")
    magic = _CELL_MAGIC.match(first)
    if magic and magic.group(1) not in PYTHON_CELL_MAGICS:
        out.skipped.append(f"{label}: a %%{magic.group(1)} cell (not Python)")
        return
    lines = source.splitlines()
    # Magics and shell escapes are IPython syntax, not Python: blank them before parsing.
    lines = ["" if _MAGIC.match(line) else line for line in lines]
    text = "\n".join(lines)
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        out.cells.append(Cell(label, "", error=f"SyntaxError: {exc.msg} (line {exc.lineno})"))
        return
    except (ValueError, RecursionError, MemoryError) as exc:
        out.cells.append(Cell(label, "", error=f"cannot parse: {type(exc).__name__}"))
        return
    keep = [False] * (len(lines) + 1)
    for node in tree.body:
        kind = _kept_kind(node)
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        end = node.end_lineno or node.lineno
        if kind is None:
            out.skipped.append(f"{label}, line {node.lineno}: {type(node).__name__}")
            continue
        for i in range(start, end + 1):
            keep[i] = True
        for name in _defined_names(node):
            line = f"{label}, line {node.lineno}" if label != "module" else f"line {node.lineno}"
            out.definitions.append(Definition(name, kind, line, node.lineno, _fingerprint(node)))
    kept = "\n".join(line if keep[i + 1] else "" for i, line in enumerate(lines))
    if kept.strip():
        out.cells.append(Cell(label, kept + "\n"))


def _kept_kind(node: ast.stmt) -> str | None:
    if isinstance(node, ast.Import | ast.ImportFrom):
        return "import"
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return "function"
    if isinstance(node, ast.ClassDef):
        return "class"
    if isinstance(node, ast.Try) and all(
        isinstance(s, ast.Import | ast.ImportFrom | ast.Pass)
        or (isinstance(s, ast.Assign) and all(_plain_target(t) for t in s.targets) and _constant(s.value))
        for s in node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
    ):
        return "import"
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if node.value is not None and all(_plain_target(t) for t in targets) and _constant(node.value):
            return "constant"
    return None


def _plain_target(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return True
    return isinstance(node, ast.Tuple | ast.List) and all(isinstance(e, ast.Name) for e in node.elts)


def _constant(node: ast.expr, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if isinstance(node, ast.Constant | ast.Name):
        return True
    if isinstance(node, ast.Attribute):
        return _constant(node.value, depth + 1)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return all(_constant(e, depth + 1) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is None or _constant(k, depth + 1) for k in node.keys) and all(
            _constant(v, depth + 1) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return _constant(node.operand, depth + 1)
    if isinstance(node, ast.BinOp):
        # ** with a huge exponent would hang the loader: allow only small literal exponents.
        if isinstance(node.op, ast.Pow) and not (
            isinstance(node.right, ast.Constant) and isinstance(node.right.value, int) and abs(node.right.value) <= 64
        ):
            return False
        return _constant(node.left, depth + 1) and _constant(node.right, depth + 1)
    if isinstance(node, ast.BoolOp):
        return all(_constant(v, depth + 1) for v in node.values)
    if isinstance(node, ast.Compare):
        return _constant(node.left, depth + 1) and all(_constant(c, depth + 1) for c in node.comparators)
    if isinstance(node, ast.IfExp):
        return all(_constant(n, depth + 1) for n in (node.test, node.body, node.orelse))
    if isinstance(node, ast.Call):
        return (_dotted(node.func) in PURE_CALLS and all(_constant(a, depth + 1) for a in node.args)
                and all(_constant(k.value, depth + 1) for k in node.keywords))
    return False


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = []
        for t in targets:
            if isinstance(t, ast.Name):
                names.append(t.id)
            elif isinstance(t, ast.Tuple | ast.List):
                names += [e.id for e in t.elts if isinstance(e, ast.Name)]
        return names
    return []


def _fingerprint(node: ast.stmt) -> str:
    try:
        return ast.dump(node, annotate_fields=False, include_attributes=False)
    except RecursionError:  # parsed, but too deep to dump: compare by position instead
        return f"<deep {type(node).__name__} at line {node.lineno}>"
