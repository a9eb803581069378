"""Mutation testing of the reference solutions, with the grading tests as the killer.

    .venv/bin/python tests/mutation/run.py [--only lab1] [--workers 2] [--limit N]

Each mutant is the reference solution with one small change (an operator, a comparison, a
constant, a dropped call, an off-by-one slice) in one student-facing function, written into a copy
of the correct sample (``fixtures/submissions/correct/reference``) exactly as a student would hand
it in. The mutant is graded by the real grader (function tests of that function's rubric item,
in the sandbox); it is *killed* when the item loses points. A surviving mutant is either a gap
in the tests or an *equivalent* mutant (a change that is still a correct answer, e.g. ``>=`` ->
``>`` in pruning, an accepted variant); ``tests/mutation/equivalent.toml`` lists the known
equivalents with the reason, and the report separates them.

Writes ``tests/mutation/report.md`` and ``report.json``. This is a benchmark-sized command
(minutes), not part of ``make test``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fixtures.samples.build import ReplaceDef, Sample, render  # noqa: E402

HERE = Path(__file__).resolve().parent
#: function -> (file in the correct sample, rubric item whose tests must kill it, pytest -k filter)
TARGETS = {
    "loss": ("lab1.ipynb", "lab1.a", "lab1_a"),
    "gradient": ("lab1.ipynb", "lab1.a", "lab1_a"),
    "_iterate": ("lab1.ipynb", "lab1.b", "lab1_b or lab1_c or lab1_d or lab1_e or lab1_f"),
    "project_top_k": ("lab1.ipynb", "lab1.c", "lab1_c"),
    "run_l1_gd": ("lab1.ipynb", "lab1.d", "lab1_d"),
    "soft_threshold": ("lab1.ipynb", "lab1.e", "lab1_e or lab1_f"),
    "trimmed_soft_threshold": ("lab1.ipynb", "lab1.f", "lab1_f"),
    "prune_by_percentage": ("hw4.ipynb", "lab2.b", "lab2_b or lab2_d"),
    "finetune_after_prune": ("hw4.ipynb", "lab2.c", "lab2_c"),
    "global_prune_by_percentage": ("hw4.ipynb", "lab2.e", "lab2_e"),
    "STE": ("FP_layers.py", "lab3.a", "lab3_a or lab3_e"),
}
SWAPS = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Pow: ast.Mult,
    ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.And: ast.Or, ast.Or: ast.And,
}
METHOD_DROPS = {"abs", "clone", "float"}
CALL_SWAPS = {"maximum": "minimum", "minimum": "maximum", "max": "min", "min": "max",
              "abs": None, "sign": None, "round": "floor", "argsort": None}


@dataclass
class Mutant:
    function: str
    item: str
    index: int
    description: str
    line: int
    source: str
    status: str = "pending"  # killed / survived / equivalent / error
    detail: str = ""


def function_source(file: str, name: str) -> str:
    files = render(Sample("correct", "reference", ""))
    text = files[file].decode()
    sources = [text] if file.endswith(".py") else [
        "".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "code"]
    for src in sources:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
                return ast.get_source_segment(src, node)
    raise SystemExit(f"{name} not found in {file}")


class _Points(ast.NodeVisitor):
    """Every place in a function where one mutation applies, in a stable order."""

    def __init__(self) -> None:
        self.points: list[tuple[ast.AST, str, str]] = []  # node, what, description

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant):
            return  # docstrings
        if isinstance(node, ast.BinOp | ast.BoolOp) and type(node.op) in SWAPS:
            self.points.append((node, "op", f"{type(node.op).__name__} -> {SWAPS[type(node.op)].__name__}"))
        if isinstance(node, ast.Compare) and type(node.ops[0]) in SWAPS:
            self.points.append((node, "cmp", f"{type(node.ops[0]).__name__} -> {SWAPS[type(node.ops[0])].__name__}"))
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            self.points.append((node, "bool", f"{node.value!r} -> {not node.value!r}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            self.points.append((node, "const", f"{node.value!r} -> {_bump(node.value)!r}"))
        if isinstance(node, ast.Slice) and node.upper is not None:
            self.points.append((node, "slice", "upper bound + 1"))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            self.points.append((node, "neg", "drop unary minus"))
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in CALL_SWAPS and node.args:
                new = CALL_SWAPS[name]
                self.points.append((node, "call", f"{name}(x) -> {new + '(x)' if new else 'x'}"))
            elif name in METHOD_DROPS and isinstance(node.func, ast.Attribute) and not node.args:
                self.points.append((node, "method", f"x.{name}() -> x"))
        super().generic_visit(node)


def _bump(value):
    if value == 0:
        return 1
    if value == 1:
        return 0 if isinstance(value, int) else 2.0
    return value + 1 if isinstance(value, int) else value * 2


def mutants_of(function: str) -> list[Mutant]:
    file, item, _ = TARGETS[function]
    src = function_source(file, function)
    tree = ast.parse(src)
    finder = _Points()
    finder.visit(tree)
    out = []
    for index, (_, kind, description) in enumerate(finder.points):
        mutated = copy.deepcopy(tree)
        node = _Points()
        node.visit(mutated)
        target = node.points[index][0]
        if not _apply(mutated, target, kind):
            continue
        out.append(Mutant(function, item, index, f"{kind}: {description}", getattr(target, "lineno", 0),
                          ast.unparse(mutated)))
    return out


def _apply(tree: ast.AST, node: ast.AST, kind: str) -> bool:
    if kind == "op":
        node.op = SWAPS[type(node.op)]()
    elif kind == "cmp":
        node.ops[0] = SWAPS[type(node.ops[0])]()
    elif kind == "const":
        node.value = _bump(node.value)
    elif kind == "bool":
        node.value = not node.value
    elif kind == "slice":
        node.upper = ast.BinOp(node.upper, ast.Add(), ast.Constant(1))
    elif kind in ("neg", "call", "method"):
        replacement = {"neg": lambda: node.operand, "call": lambda: _call_replacement(node),
                       "method": lambda: node.func.value}[kind]()
        for parent in ast.walk(tree):
            for field, value in ast.iter_fields(parent):
                if value is node:
                    setattr(parent, field, replacement)
                    return True
                if isinstance(value, list) and node in value:
                    value[value.index(node)] = replacement
                    return True
        return False
    return True


def _call_replacement(node: ast.Call) -> ast.AST:
    name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
    new = CALL_SWAPS[name]
    if new is None:
        return node.args[0]
    if isinstance(node.func, ast.Attribute):
        node.func.attr = new
    else:
        node.func.id = new
    return node


def grade_mutant(m: Mutant, workdir: Path, timeout: float) -> Mutant:
    file, _, keyword = TARGETS[m.function]
    sample = Sample("buggy", f"mut_{m.function}_{m.index}", m.description,
                    edits=(ReplaceDef(file, m.function, m.source),))
    folder = workdir / sample.name
    folder.mkdir()
    try:
        for name, content in render(sample).items():
            (folder / name).write_bytes(content)
    except SystemExit as exc:  # the mutant cannot be written back (should not happen)
        m.status, m.detail = "error", str(exc)
        return m
    out = workdir / f"{sample.name}.json"
    cmd = [sys.executable, "-m", "grader.grade", str(folder), "--no-notebooks", "-k", keyword, "--json", str(out)]
    try:
        subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        result = json.loads(out.read_text())
    except (subprocess.TimeoutExpired, FileNotFoundError, ValueError) as exc:
        m.status, m.detail = "error", f"grading failed: {exc}"
        return m
    lost = [(c["item"], c["name"]) for i in result["items"].values() for c in i["cases"]
            if c["status"] in ("failed", "error") and c["fraction"] < 1]
    if result.get("grader_error"):
        m.status, m.detail = "error", result["grader_error"][-500:]
    elif lost:
        m.status, m.detail = "killed", ", ".join(f"{n}" for _, n in lost[:3])
    else:
        m.status = "survived"
    shutil.rmtree(folder, ignore_errors=True)
    return m


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="functions or lab prefix, comma-separated (e.g. lab1,STE)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="at most this many mutants per function")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    wanted = [f for f in TARGETS if not args.only or any(
        w in (f, TARGETS[f][1].split(".")[0]) for w in args.only.split(","))]
    equivalent = tomllib.loads((HERE / "equivalent.toml").read_text()) if (HERE / "equivalent.toml").exists() else {}
    mutants = []
    for f in wanted:
        ms = mutants_of(f)
        mutants.extend(ms[: args.limit] if args.limit else ms)
    print(f"{len(mutants)} mutants of {len(wanted)} functions; grading with {args.workers} workers", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hw4-mutants-") as tmp, ThreadPoolExecutor(args.workers) as pool:
        done = 0
        for m in pool.map(lambda m: grade_mutant(m, Path(tmp), args.timeout), mutants):
            done += 1
            key = f"{m.function}:{m.description}"
            if m.status == "survived" and key in equivalent:
                m.status, m.detail = "equivalent", equivalent[key]
            print(f"[{done}/{len(mutants)}] {m.status:10} {m.function} {m.description} (line {m.line})", flush=True)
    seconds = time.monotonic() - started
    write_report(mutants, seconds)
    return 0


def write_report(mutants: list[Mutant], seconds: float) -> None:
    counts = {s: sum(m.status == s for m in mutants) for s in ("killed", "equivalent", "survived", "error")}
    scored = counts["killed"] + counts["survived"]
    score = counts["killed"] / scored if scored else 1.0
    (HERE / "report.json").write_text(json.dumps({"counts": counts, "score": score, "seconds": round(seconds),
                                                   "mutants": [asdict(m) for m in mutants]}, indent=1))
    lines = [
        "# Mutation testing of reference/ (grading tests as the killer)",
        "",
        f"Mutants: {len(mutants)}; killed {counts['killed']}, equivalent {counts['equivalent']}, "
        f"survived {counts['survived']}, errors {counts['error']}.",
        f"Score (killed / (killed + survived), equivalents excluded): **{score:.1%}**; "
        f"{seconds / 60:.1f} min with `tests/mutation/run.py`.",
        "",
        "| function | mutation | line | status | why / killed by |",
        "|---|---|---|---|---|",
    ]
    for m in mutants:
        if m.status != "killed":
            lines.append(f"| {m.function} | {m.description} | {m.line} | {m.status} | {m.detail} |")
    (HERE / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:5]))


if __name__ == "__main__":
    raise SystemExit(main())
