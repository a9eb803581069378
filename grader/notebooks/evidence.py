"""What a notebook run left behind, read safely: cells, errors, events, checkpoints, claims.

Everything here reads files a sandboxed run produced (see ``run.py``'s harvest): JSON with size
limits, checkpoints with ``torch.load(weights_only=True)`` into plain tensors and checked against
ResNet-20's parameter names and shapes. Nothing a submission produced is unpickled.

**Claims** are numbers the notebook *printed* about itself: accuracy lines (a number after
``acc``/``accuracy``; lines about training accuracy are left out) and sparsity lines (a line that
names a prunable layer, says total or says ``spars``, and the fraction or percent on it; see
``sparsity_claims``). Lines printed by the grader's own
``train_util`` are logged by the harness and are not claims. A claim is compared with the truth at
the precision it was printed with (half a unit in its last decimal, at least 1e-5).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

__all__ = [
    "CellError",
    "CellRecord",
    "Claim",
    "NotebookRun",
    "accuracy_claims",
    "load_state_dict",
    "output_text",
    "read_json",
    "sparsity_claims",
    "text_lines",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NUMBER = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?"
_ACC = re.compile(r"acc(?:uracy)?\w*[^\w\d\n+-]{0,4}?\s*(?:[:=]|is|of)?\s*(" + _NUMBER + r")\s*(%?)", re.I)
_LINE_NO = re.compile(r"Cell In\s*\[\d*\],\s*line\s+(\d+)")  # IPython names the cell's own frame so
MIN_TOLERANCE = 1e-5


def read_json(path: Path, limit: int):
    """JSON from ``path`` if it exists and is at most ``limit`` bytes, else None."""
    if not path.is_file() or path.stat().st_size > limit:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except ValueError:
        return None


def load_state_dict(path: Path, limit: int = 64 << 20):
    """``(state_dict, problem)``: a ResNet-20 state dict read with ``weights_only=True``, or None
    and what is wrong with the file (for feedback)."""
    import torch

    from reference.resnet20 import ResNetCIFAR

    if not path.is_file():
        return None, "was not written"
    if path.stat().st_size > limit:
        return None, f"is {path.stat().st_size >> 20} MB, over the {limit >> 20} MB limit"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        hint = " (save net.state_dict(), not the model object)" if "weights_only" in str(exc) else ""
        return None, f"cannot be read as a state dict{hint}: {type(exc).__name__}"
    tensors = isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items())
    if not tensors:
        return None, f"holds a {type(obj).__name__}, not a state dict of tensors"
    expected = ResNetCIFAR(num_layers=20).state_dict()
    missing = [k for k in expected if k not in obj]
    wrong = [k for k in expected if k in obj and obj[k].shape != expected[k].shape]
    if missing or wrong:
        names = ", ".join((missing + wrong)[:3])
        return None, f"is not a ResNet-20 state dict (missing or misshaped: {names}...)"
    return {k: obj[k] for k in expected}, None


# ----------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Claim:
    """A number a notebook printed: ``value`` (a fraction), ``tolerance`` from its printed digits."""

    value: float
    tolerance: float
    line: str
    layer: str | None = None  # sparsity claims: the layer the line names, "total", or None

    def agrees(self, truth: float) -> bool:
        return abs(self.value - truth) <= self.tolerance + 1e-12


def _tolerance(number: str, percent: bool) -> float:
    mantissa = number.lower().split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(number.lower().split("e")[1]) if "e" in number.lower() else 0
    tol = 0.5 * 10.0 ** (exponent - decimals)
    return max(tol / 100 if percent else tol, MIN_TOLERANCE)


def _fraction(number: str, percent: bool) -> tuple[float, bool]:
    value = float(number)
    # "92.5" without a % sign is still a percentage when it cannot be a fraction
    if not percent and 1.0 < value <= 100.0:
        percent = True
    return (value / 100.0 if percent else value), percent


def accuracy_claims(line: str) -> list[Claim]:
    """Accuracy values printed on ``line`` (none on lines about training accuracy)."""
    if re.search(r"train", line, re.I):
        return []
    out = []
    for m in _ACC.finditer(line):
        value, percent = _fraction(m.group(1), m.group(2) == "%")
        if 0.0 <= value <= 1.0:
            out.append(Claim(value, _tolerance(m.group(1), percent), line.strip()))
    return out


_TOTAL = re.compile(r"total|overall|global|whole|all layers|model", re.I)


def sparsity_claims(line: str, layer_names: list[str]) -> list[Claim]:
    """The sparsity printed on ``line``, with the layer it names (or ``"total"``).

    Real hand-ins print it in many ways -- ``Sparsity of <name>: 0.7``, ``<name>: 0.7000``,
    ``<name> sparsity 70.00%``, ``<name>: 302/432 zeros = 69.91%``, ``Total sparsity of: 0.7``,
    ``Total: 70.00%`` -- so a line counts when it names a prunable layer, says total (overall,
    global, ...) or says "spars". Its value is read after the layer's name and the last ``:``/``=``:
    the last number with a ``%`` sign, else the last number written with a decimal point (a
    fraction, or a percent when above 1); bare integers are counts (zeros, parameters), never a
    sparsity, unless the line says "spars" and the integer is all there is.
    """
    layer = None
    for name in sorted(layer_names, key=len, reverse=True):
        if re.search(r"(?<![\w.])" + re.escape(name) + r"(?![\w.])", line):
            layer = name
            break
    says_sparsity = "spars" in line.lower()
    if layer is None and _TOTAL.search(line):
        layer = "total"
    if layer is None and not says_sparsity:
        return []
    # the value comes after the layer's name (which may hold digits: body_op.0.conv1.0.conv)
    rest = line.replace(layer, " ") if layer and layer != "total" else line
    rest = re.split(r"[:=]", rest)[-1]
    numbers = [(m.group(1), m.group(2) == "%") for m in re.finditer("(" + _NUMBER + r")\s*(%?)", rest)]
    percent = [n for n in numbers if n[1]]
    decimal = [n for n in numbers if not n[1] and re.search(r"[.eE]", n[0])]
    if percent:
        raw, sign = percent[-1]
    elif decimal:
        raw, sign = decimal[-1]
    elif says_sparsity and len(numbers) == 1:
        raw, sign = numbers[0]
    else:
        return []
    value, is_percent = _fraction(raw, sign)
    if not 0.0 <= value <= 1.0:
        return []
    return [Claim(value, _tolerance(raw, is_percent), line.strip(), layer)]


# ----------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class CellError:
    ename: str
    evalue: str
    traceback: str
    line: int | None

    def describe(self) -> str:
        if self.ename in ("CellTimeoutError", "Stopped"):  # the grader's words, not an exception
            return self.evalue
        where = f" (line {self.line})" if self.line else ""
        text = f"{self.ename}: {self.evalue}".strip()
        if re.search(r"cuda|nvidia|gpu", self.evalue, re.I):
            text += (" -- this needs a GPU; the grader runs notebooks on the CPU: use "
                     "device = 'cuda' if torch.cuda.is_available() else 'cpu'")
        return (text[:600] + where).strip()


@dataclass
class CellRecord:
    """One cell of the executed notebook (``number`` counts every cell from 1, as "cell N" in
    feedback; ``index`` is its 0-based position)."""

    index: int
    source: str
    cell_type: str
    status: str = "not run"
    seconds: float = 0.0
    execution_count: int | None = None
    ordinal: int | None = None  # the n-th cell executed: what the harness's events call "cell"
    stdout: str = ""
    text: str = ""
    images: int = 0
    error: CellError | None = None

    @property
    def number(self) -> int:
        return self.index + 1


def output_text(outputs: list, streams: tuple[str, ...] = ("stdout",), results: bool = True) -> str:
    """The text of a cell's outputs: the named streams, plus text/plain results if asked."""
    parts = []
    for out in outputs if isinstance(outputs, list) else []:
        if not isinstance(out, dict):
            continue
        kind = out.get("output_type")
        if kind == "stream" and out.get("name") in streams:
            parts.append(_text(out.get("text")))
        elif results and kind in ("execute_result", "display_data"):
            data = out.get("data")
            if isinstance(data, dict) and "text/plain" in data:
                parts.append(_text(data["text/plain"]) + "\n")
    return "".join(parts)


def _text(value) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return str(value or "")


def text_lines(text: str) -> list[str]:
    """Lines as a terminal shows them (carriage returns overwrite)."""
    return [line.split("\r")[-1] for line in text.splitlines()]


# ----------------------------------------------------------------------------- a run


@dataclass
class NotebookRun:
    """One executed notebook: its cells, the harness's events and the files it wrote."""

    kind: str  # "hw4" or "lab1"
    file: str  # as named in the submission
    folder: Path  # the harvest folder of this notebook
    status: str = "not run"
    error: str | None = None
    seconds: float = 0.0
    cells: list[CellRecord] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    figure_files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _states: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, kind: str, file: str, folder: Path) -> NotebookRun:
        run = cls(kind, file, folder)
        record = read_json(folder / "run.json", 1 << 20) or {}
        run.status = str(record.get("status", "not run"))
        run.error = record.get("error")
        run.seconds = float(record.get("seconds") or 0.0)
        nb = read_json(folder / "executed.ipynb", 32 << 20)
        cells = nb.get("cells", []) if isinstance(nb, dict) else []
        status = {c.get("index"): c for c in record.get("cells", []) if isinstance(c, dict)}
        for index, raw in enumerate(cells if isinstance(cells, list) else []):
            if not isinstance(raw, dict):
                continue
            cell = CellRecord(index=index, source=_text(raw.get("source")),
                              cell_type=str(raw.get("cell_type")))
            if cell.cell_type == "code":
                info = status.get(index, {})
                cell.status = str(info.get("status", "not run"))
                cell.seconds = float(info.get("seconds") or 0.0)
                count = raw.get("execution_count")
                cell.execution_count = count if isinstance(count, int) else None
                ordinal = info.get("ordinal")
                cell.ordinal = ordinal if isinstance(ordinal, int) else None
                outputs = raw.get("outputs", [])
                cell.stdout = output_text(outputs, results=False)
                cell.text = output_text(outputs, ("stdout", "stderr"))
                cell.images = sum(1 for o in outputs
                                  if isinstance(o, dict) and "image/png" in (o.get("data") or {}))
                for o in outputs:
                    if isinstance(o, dict) and o.get("output_type") == "error":
                        full = _ANSI.sub("", "\n".join(str(t) for t in o.get("traceback", [])))
                        lines = _LINE_NO.findall(full)  # before cutting: the cell's frame comes first
                        tb = full if len(full) <= 4000 else full[:1500] + "\n...\n" + full[-2500:]
                        # the first frame is the cell itself; later ones are functions it called
                        cell.error = CellError(str(o.get("ename", ""))[:200], str(o.get("evalue", ""))[:1000],
                                               tb, int(lines[0]) if lines else None)
            run.cells.append(cell)
        run.events = _read_events(folder / "events.jsonl")
        figures = read_json(folder / "figures.json", 1 << 20) or []
        run.figure_files = [f["name"] for f in figures
                            if isinstance(f, dict) and isinstance(f.get("name"), str)]
        skipped = read_json(folder / "skipped.json", 1 << 20) or []
        run.problems = [f"{file}: a file of the run was not read: {s}" for s in skipped if isinstance(s, str)]
        return run

    # ------------------------------------------------------------------ cells

    @property
    def ran(self) -> bool:
        return any(c.status != "not run" for c in self.cells if c.cell_type == "code")

    def where(self, cell: CellRecord) -> str:
        return f"{self.file} cell {cell.number}"

    def cell_of(self, ordinal: int | None) -> CellRecord | None:
        """The cell an event happened in (an event's ``cell`` is the ordinal of the cell)."""
        for cell in self.cells:
            if cell.ordinal is not None and cell.ordinal == ordinal:
                return cell
        return None

    def failed_cells(self) -> list[CellRecord]:
        return [c for c in self.cells if c.error is not None or c.status in ("timeout", "kernel died")]

    def describe_failure(self, cell: CellRecord) -> str:
        if cell.error is not None and cell.error.ename in ("CellTimeoutError", "Stopped"):
            return f"{self.where(cell)}: {cell.error.describe()}"
        if cell.error is not None:
            return f"{self.where(cell)} raised {cell.error.describe()}"
        if cell.status == "kernel died":
            return f"the kernel died while running {self.where(cell)} (out of memory?)"
        return f"{self.where(cell)}: {cell.status}"

    def failure_near(self, *needles: str) -> str:
        """Why something was not produced: the failed cell whose source mentions a needle, else
        the first failed cell, else the run's own status."""
        failed = self.failed_cells()
        for cell in failed:
            if any(n in cell.source for n in needles):
                return self.describe_failure(cell)
        not_run = [c for c in self.cells if c.cell_type == "code" and c.status.startswith("not run")
                   and any(n in c.source for n in needles)]
        if not_run:
            return f"{self.where(not_run[0])} was {not_run[0].status}"
        if failed:
            return self.describe_failure(failed[0])
        if self.status not in ("finished",):
            return f"the run of {self.file} ended: {self.status}" + (f" ({self.error})" if self.error else "")
        return f"no cell of {self.file} did it"

    # ------------------------------------------------------------------ events

    def events_of(self, *kinds: str) -> list[dict]:
        return [e for e in self.events if e.get("ev") in kinds]

    def trusted_lines(self, ordinal: int | None) -> list[str]:
        """Lines the grader's ``train_util`` printed in one cell."""
        out: list[str] = []
        for e in self.events_of("trusted_print"):
            if e.get("cell") == ordinal and isinstance(e.get("text"), str):
                out.extend(text_lines(e["text"]))
        return out

    def student_lines(self, cell: CellRecord) -> list[str]:
        """The cell's stdout lines minus those the grader's own code printed."""
        trusted: dict[str, int] = {}
        for line in self.trusted_lines(cell.ordinal):
            trusted[line] = trusted.get(line, 0) + 1
        out = []
        for line in text_lines(cell.stdout):
            if trusted.get(line, 0) > 0:
                trusted[line] -= 1
            elif line.strip():
                out.append(line)
        return out

    # ------------------------------------------------------------------ files

    def checkpoint(self, name: str):
        """``(state_dict, problem)`` for a checkpoint the run wrote (cached)."""
        if name not in self._states:
            self._states[name] = load_state_dict(self.folder / "files" / name)
        return self._states[name]

    def mask(self, seq) -> dict | None:
        """The zero pattern the harness saved at a masked finetuning epoch (layer -> bool)."""
        import torch

        path = self.folder / "masks" / f"mask-{int(seq)}.pt"
        if not isinstance(seq, int) or not path.is_file():
            return None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            return None
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            return None
        return {str(k): v.bool() for k, v in obj.items()}

    @cached_property
    def installed(self) -> bool:
        return bool(self.events_of("installed"))


def _read_events(path: Path, limit: int = 16 << 20) -> list[dict]:
    if not path.is_file():
        return []
    events = []
    with open(path, encoding="utf-8", errors="replace") as f:
        data = f.read(limit)
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("ev"), str):
            events.append(event)
    return events
