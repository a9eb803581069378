"""The public part of ``tests/rubric``: what the student edition carries of the rubric tests.

1. In every ``test_*.py``, each test function whose ``rubric`` marker says ``visibility="hidden"``
   (the default) is removed; a module left without tests is dropped.
2. Top-level statements nobody uses any more are removed, across the rubric modules, until
   nothing changes: a ``def``/``class``/assignment/import is kept only when a kept statement of
   its module uses one of its names (a Name, a decorator, a fixture parameter) or a kept module
   imports it (``from lab1_support import check_loss``). Imports keep only the names used.
   Statements that bind nothing (a call at module level) are kept.
3. What is left must not import the reference solutions (``reference.lab1``, ``lab2``, ``lab3``,
   the variants, ``reference.resnet20``/``train_util`` whose FP layers are the solution): a public
   test reaches them through :mod:`grader.oracle`. A kept import of one is an error naming the
   file and line, so a public test that needs the reference fails ``hw4grade assign``, never a
   student's install.

Kept code is copied line for line (only whole statements are cut, with the comment lines
directly above them), so a kept test's source -- and with it Hypothesis's derandomized examples,
which are seeded from that source -- is the same in both editions.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

__all__ = ["FORBIDDEN", "ShakeError", "Shaken", "shake"]

#: modules a student-edition rubric module must not import (each is, or imports, a solution)
FORBIDDEN = ("reference.lab1", "reference.lab2", "reference.lab3", "reference.lab1_variants",
             "reference.lab3_variants", "reference.resnet20", "reference.train_util")
_FORBIDDEN_NAMES = {m.rsplit(".", 1)[1] for m in FORBIDDEN}


class ShakeError(ValueError):
    """The public tests cannot be separated from hidden ones or from the reference."""


@dataclass
class Shaken:
    files: dict[str, str]  # kept module file name -> source
    public: list[str] = field(default_factory=list)  # "file::test" of the kept tests
    hidden: list[str] = field(default_factory=list)  # "file::test" of the removed tests


# ----------------------------------------------------------------------------- markers


def _rubric_calls(node: ast.AST) -> list[ast.Call]:
    out = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name == "rubric":
                out.append(sub)
    return out


def _const(call: ast.Call, key: str, default: object) -> object:
    for kw in call.keywords:
        if kw.arg == key:
            if isinstance(kw.value, ast.Constant):
                return kw.value.value
            return ast.unparse(kw.value)  # an expression: decided at run time
    return default


def _markers(fn: ast.FunctionDef | ast.AsyncFunctionDef, where: str) -> list[dict]:
    calls = [c for d in fn.decorator_list for c in _rubric_calls(d)]
    if not calls:
        raise ShakeError(f"{where}: no @rubric marker found in its decorators, so its visibility is unknown")
    out = []
    for c in calls:
        vis = _const(c, "visibility", "hidden")
        if vis not in ("public", "hidden"):
            raise ShakeError(f"{where}: visibility {vis!r} is not a literal 'public' or 'hidden'")
        out.append({"visibility": vis})
    return out


# ----------------------------------------------------------------------------- statements


@dataclass
class _Stmt:
    node: ast.stmt
    start: int  # first line (decorators and attached comments included), 1-based
    end: int
    binds: set[str]
    uses: set[str]
    imports: list[tuple[str, str, str]]  # (module, name, alias) of a `from M import name as alias`
    keep: bool = False
    always: bool = False  # binds nothing: a side effect, kept


def _binds(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Import):
        return {(a.asname or a.name.split(".")[0]) for a in node.names}
    if isinstance(node, ast.ImportFrom):
        return {(a.asname or a.name) for a in node.names}
    names: set[str] = set()
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
        node, ast.AnnAssign | ast.AugAssign) else []
    for t in targets:
        for sub in ast.walk(t):
            if isinstance(sub, ast.Name):
                names.add(sub.id)
    return names


def _uses(node: ast.stmt) -> set[str]:
    out = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        # fixture parameters name the fixtures a test or fixture uses
        a = node.args
        out |= {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]}
    if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
        out.add(node.target.id)
    return out


def _statements(source: str, tree: ast.Module) -> list[_Stmt]:
    lines = source.splitlines()
    out: list[_Stmt] = []
    for i, node in enumerate(tree.body):
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        prev_end = out[-1].end if out else 0
        # comment lines directly above (no blank line between) belong to the statement
        while start - 2 >= prev_end and lines[start - 2].lstrip().startswith("#"):
            start -= 1
        imports = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imports = [(node.module, a.name, a.asname or a.name) for a in node.names]
        is_doc = i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        binds = _binds(node)
        out.append(_Stmt(node, start, node.end_lineno or node.lineno, binds, _uses(node), imports,
                         always=not binds or is_doc or future or binds == {"__all__"}))
    return out


# ----------------------------------------------------------------------------- shaking


def shake(sources: dict[str, str], test_prefix: str = "test_") -> Shaken:
    """Reduce the rubric modules ``sources`` (file name -> text) to their public part."""
    modules = {f[:-3]: f for f in sources if f.endswith(".py")}

    result = Shaken(files={})
    parsed: dict[str, tuple[ast.Module, list[_Stmt]]] = {}
    for file, text in sources.items():
        tree = ast.parse(text, filename=file)
        parsed[file] = (tree, _statements(text, tree))
    # 1. tests: public kept, hidden removed
    is_test = {f: f.startswith(test_prefix) for f in sources}
    for file, (_, stmts) in parsed.items():
        if not is_test[file]:
            continue
        for s in stmts:
            node = s.node
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
                where = f"tests/rubric/{file}:{node.lineno} {node.name}"
                marks = _markers(node, where)
                if {m["visibility"] for m in marks} == {"public"}:
                    s.keep = True
                    result.public.append(f"{file}::{node.name}")
                elif {m["visibility"] for m in marks} == {"hidden"}:
                    result.hidden.append(f"{file}::{node.name}")
                else:
                    raise ShakeError(f"{where}: mixes public and hidden cases; split it into two tests")
    # 2. fixpoint: keep what kept statements use, within a module and across imports
    changed = True
    used_modules: set[str] = set()
    while changed:
        changed = False
        imported: dict[str, set[str]] = {m: set() for m in modules}
        for _, stmts in parsed.values():
            used_here = _used_names(stmts)
            for s in stmts:
                if s.keep or s.always:
                    for module, name, alias in s.imports:
                        if module in modules and alias in used_here:
                            imported[module].add(name)
        used_modules = {m for m, names in imported.items() if names}
        for file, (_, stmts) in parsed.items():
            used = _used_names(stmts) | imported.get(file[:-3], set())
            for s in stmts:
                if not s.keep and not s.always and not _is_hidden_test(s, result, file) and s.binds & used:
                    s.keep = True
                    changed = True
    alive = {f for f in sources if (f.startswith(test_prefix) and any(s.keep for s in parsed[f][1]))
             or (not f.startswith(test_prefix) and f[:-3] in used_modules)}
    # 3. emit and check
    for file in sorted(alive):
        tree, stmts = parsed[file]
        text = _emit(sources[file], stmts)
        _check_imports(file, text)
        result.files[file] = text
    return result


def _is_hidden_test(s: _Stmt, result: Shaken, file: str) -> bool:
    node = s.node
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and f"{file}::{node.name}" in result.hidden


def _used_names(stmts: list[_Stmt]) -> set[str]:
    out: set[str] = set()
    for s in stmts:
        if s.keep or s.always:
            out |= s.uses
    return out


def _emit(source: str, stmts: list[_Stmt]) -> str:
    lines = source.splitlines()
    used = _used_names(stmts)
    kept_names = set().union(*(s.binds for s in stmts if s.keep)) if stmts else set()
    out: list[str] = []
    cursor = 0  # lines[:cursor] are handled
    for s in stmts:
        out.extend(lines[cursor:s.start - 1])  # blank lines and free comments between statements
        cursor = s.end
        if not (s.keep or s.always):
            continue
        block = lines[s.start - 1:s.end]
        node = s.node
        if isinstance(node, ast.ImportFrom | ast.Import) and not s.binds <= used:
            block = _import_line(node, used)
        elif s.binds == {"__all__"} and isinstance(node, ast.Assign):
            names = [e.value for e in getattr(node.value, "elts", []) if isinstance(e, ast.Constant)]
            keep = [n for n in names if n in kept_names]
            block = ["__all__ = [" + ", ".join(repr(n) for n in keep) + "]"]
        out.extend(block)
    out.extend(lines[cursor:])
    text = "\n".join(out).strip("\n") + "\n"
    return re.sub(r"\n{4,}", "\n\n\n", text)


def _import_line(node: ast.Import | ast.ImportFrom, used: set[str]) -> list[str]:
    names = [a for a in node.names if (a.asname or (a.name if isinstance(node, ast.ImportFrom)
                                                     else a.name.split(".")[0])) in used]
    if not names:
        return []
    parts = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in names)
    if isinstance(node, ast.ImportFrom):
        return [f"from {'.' * node.level}{node.module or ''} import {parts}"]
    return [f"import {parts}"]


def _check_imports(file: str, text: str) -> None:
    for node in ast.walk(ast.parse(text)):
        bad = None
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Import):
            bad = next((a.name for a in node.names if a.name in FORBIDDEN or
                        any(a.name.startswith(m + ".") for m in FORBIDDEN)), None)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in FORBIDDEN:
                bad = node.module
            elif node.module == "reference":
                bad = next((f"reference.{a.name}" for a in node.names if a.name in _FORBIDDEN_NAMES), None)
        if bad:
            raise ShakeError(
                f"tests/rubric/{file}:{node.lineno}: public tests need {bad} through this import, but the "
                "student edition has no reference solution; reach it through grader.oracle.call(...) "
                "(recorded at assign time) or check a property instead")
