"""Extract the definitions of a notebook or module without running anything.

A code cell is first turned into Python as IPython itself does it (``ipython_to_python``: IPython's
own input transformer, so ``%magic``, ``!shell``, ``x = !cmd`` and ``obj?`` become calls, while a
line that starts with ``%`` inside an open bracket -- the course's ``print("..."`` /
``% (steps, ...))`` -- stays the Python it is), with every line kept where it was. Then it is
parsed; of its top-level statements only these are kept:

* ``import`` / ``from ... import`` (and ``try:`` blocks made only of imports),
* ``def`` / ``async def`` / ``class`` (with their decorators),
* assignments whose value is a *plain constant expression*: literals, names, attribute access,
  arithmetic, comparisons, ``x if c else y``, and calls of a few pure constructors
  (``np.array``, ``torch.tensor``, ``torch.device``, ``torch.cuda.is_available``, ...).

Everything else (training loops, ``net = ResNetCIFAR()``, ``torch.load``, plotting, the calls the
magics became) is dropped:
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
import functools
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
    "ipython_to_python",
    "is_blank",
]

MAX_NOTEBOOK_BYTES = 32 << 20
MAX_SOURCE_BYTES = 2 << 20
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
    blank: bool = False  # still a hand-out's blank (see ``is_blank``)


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
        _add_cell(out, f"cell {index + 1}", source, ipython=True)
    return out


def ipython_to_python(source: str) -> str:
    """The Python an IPython kernel runs for ``source`` (one cell), line for line.

    IPython's own transformer (``IPython.core.inputtransformer2``) decides what is IPython syntax:
    a ``%``/``!``/``?`` escape only at the start of a logical line, never inside an open bracket.
    Magics become ``get_ipython().run_line_magic(...)``, shell lines ``get_ipython().system(...)``.
    Unlike IPython, leading blank lines are kept and a magic continued over several lines with
    ``\\`` leaves blank lines behind it, so line N of the result is line N of the cell. A cell
    magic (``%%time``) is left as it is: callers decide what its body is (see ``_add_cell``).
    A source IPython cannot transform is returned unchanged (it then fails to parse, and says so).
    """
    try:
        return _line_keeping_transformer().transform_cell(source)
    except Exception:  # any failure of the transformer: the parser then reports the cell
        return source


@functools.cache
def _line_keeping_transformer():
    from IPython.core.inputtransformer2 import TransformerManager, leading_empty_lines

    class LineKeeping(TransformerManager):
        """IPython's transformer without the steps that move lines."""

        def __init__(self) -> None:
            super().__init__()
            self.cleanup_transforms = [t for t in self.cleanup_transforms if t is not leading_empty_lines]
            self.line_transforms = []  # cell magics: see _add_cell

        def do_one_token_transform(self, lines):
            from IPython.core.inputtransformer2 import TokenTransformBase, make_tokens_by_line

            tokens = make_tokens_by_line(lines)
            found = [t for cls in self.token_transformers if (t := cls.find(tokens))]
            for transformer in sorted(found, key=TokenTransformBase.sortby):
                try:
                    new = transformer.transform(lines)
                except SyntaxError:
                    continue
                # a magic continued with backslashes became one line: keep the lines after it in place
                lost = len(lines) - len(new)
                at = transformer.start_line + 1
                return True, new[:at] + ["\n"] * max(lost, 0) + new[at:]
            return False, lines

    return LineKeeping()


def _add_cell(out: Extracted, label: str, source: str, ipython: bool = False) -> None:
    """Extract one cell (``ipython``: a notebook cell, IPython syntax allowed) or module (read
    as IPython would only when it is not Python)."""
    if len(source) > MAX_SOURCE_BYTES:
        out.cells.append(Cell(label, "", error=f"{len(source)} characters: larger than the "
                                                 f"{MAX_SOURCE_BYTES >> 20} MB limit of one cell; skipped"))
        return
    if not ipython:
        # A module is Python; one that is not (a notebook exported with its magics, `!pip` lines
        # pasted from Colab) is read the way IPython would read it.
        ipython = not _parses(source)
    first = next((line for line in source.splitlines() if line.strip()), "")
    magic = _CELL_MAGIC.match(first) if ipython else None
    if magic and magic.group(1) not in PYTHON_CELL_MAGICS:
        out.skipped.append(f"{label}: a %%{magic.group(1)} cell (not Python)")
        return
    if magic:  # a Python cell magic (%%time): its body is the cell
        source = source.replace(magic.group(0), "", 1)
    lines = (ipython_to_python(source) if ipython else source).splitlines()
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
            out.definitions.append(Definition(name, kind, line, node.lineno, _fingerprint(node),
                                              is_blank(node)))
    kept = "\n".join(line if keep[i + 1] else "" for i, line in enumerate(lines))
    if kept.strip():
        out.cells.append(Cell(label, kept + "\n"))


def is_blank(node: ast.stmt) -> bool:
    """Is this ``def``/``class`` still the hand-out's blank, not the student's answer?

    A function is blank when its body (docstring and comments aside) is only placeholders
    (``pass``, ``...``), when it starts with ``raise NotImplementedError``, or when it still
    assigns or returns the course's ``...`` blanks (``alpha = ...``, ``weight_mask[name] = ...``;
    ``w[..., 0]`` is an index, not a blank). A class is blank when one of its methods is.
    """
    if isinstance(node, ast.ClassDef):
        return any(is_blank(n) for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    body = [s for s in body if not isinstance(s, ast.Pass)]
    if not body or _raises_not_implemented(body[0]):
        return True
    for sub in ast.walk(node):
        value = getattr(sub, "value", None) if isinstance(sub, ast.Assign | ast.AugAssign | ast.AnnAssign
                                                          | ast.Return) else None
        if isinstance(value, ast.Constant) and value.value is Ellipsis:
            return True
    return False


def _raises_not_implemented(stmt: ast.stmt) -> bool:
    if not isinstance(stmt, ast.Raise) or stmt.exc is None:
        return False
    exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


#: modules that exist only on another machine and define nothing a test calls: their imports are
#: dropped (a Colab hand-in's ``from google.colab import drive``; notebook runs stub them instead)
MACHINE_MODULES = ("google.colab",)


def _kept_kind(node: ast.stmt) -> str | None:
    if isinstance(node, ast.Import | ast.ImportFrom):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
        if any(n == m or n.startswith(m + ".") for n in names for m in MACHINE_MODULES):
            return None
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
