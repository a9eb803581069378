"""Helpers of the Lab 2 rubric tests: generated layers, pruning checks, the fixture model and data,
and dry runs of notebook cells (the iterative loop, the sparsity check).

Everything here runs in the trusted process. Student code runs only through ``submission``
(the sandbox proxy); notebook cells are located by parsing (``ast``), never executed here.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from hypothesis import settings
from hypothesis import strategies as st

from grader.errors import BadReturn, GraderError, MissingDefinition, StudentError
from grader.extract import ipython_to_python
from grader.given import float_resnet_class
from grader.notebooks.evidence import sparsity_claims
from reference.config import load
from reference.data import load_arrays

__all__ = [
    "ONE_FAILURE",
    "DryRun",
    "Epoch",
    "LayerCase",
    "ModelCase",
    "NotebookCell",
    "assert_kept_unchanged",
    "assert_prunes_q_percent",
    "assert_prunes_smallest",
    "build_layer",
    "count_allowed",
    "dry_run",
    "find_iterative_cell",
    "find_sparsity_cell",
    "fixture_batches",
    "fixture_model",
    "layer_cases",
    "layer_payload",
    "model_cases",
    "one_thread",
    "parse_sparsity_lines",
    "prunable_layers",
    "prune_call",
    "pruned_positions",
]

CFG = load()
#: For every @given test here: report one failure, not an ExceptionGroup of several (a test
#: asserting several properties can fail two ways on different inputs; one message is enough
#: feedback, and an exception group would read as a grader fault). Built at import, so it keeps
#: the active profile's other settings (the grading profile's 30 derandomized examples).
ONE_FAILURE = settings(report_multiple_bugs=False)
# Tie-free layers for the count checks: magnitudes are drawn until they are all distinct.
_TIE_VALUES = (0.25, 0.5, 1.0, 2.0)


# ----------------------------------------------------------------------------- generated layers


@dataclass(frozen=True)
class LayerCase:
    """A small ``nn.Conv2d``/``nn.Linear`` with seeded weights; its repr is what a student sees."""

    kind: str  # "Conv2d" or "Linear"
    out_features: int
    in_features: int
    kernel: int = 1
    bias: bool = False
    seed: int = 0
    scale: float = 1.0
    ties: bool = False  # weights drawn from a few values (many exact ties)

    def __repr__(self) -> str:
        if self.kind == "Conv2d":
            head = (f"nn.Conv2d({self.in_features}, {self.out_features}, kernel_size={self.kernel}, "
                    f"bias={self.bias})")
        else:
            head = f"nn.Linear({self.in_features}, {self.out_features}, bias={self.bias})"
        values = f"values in ±{{{', '.join(f'{v * self.scale:g}' for v in _TIE_VALUES)}}}" if self.ties \
            else f"N(0, {self.scale:g}²) weights"
        return f"{head} with {values} (seed {self.seed})"

    @property
    def init(self) -> dict:
        if self.kind == "Conv2d":
            return {"in_channels": self.in_features, "out_channels": self.out_features,
                    "kernel_size": self.kernel, "bias": self.bias}
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias}

    @property
    def numel(self) -> int:
        return self.out_features * self.in_features * (self.kernel ** 2 if self.kind == "Conv2d" else 1)


def build_layer(case: LayerCase) -> nn.Module:
    """The layer of ``case``: nonzero weights; distinct magnitudes unless ``case.ties``."""
    layer = getattr(nn, case.kind)(**case.init)
    gen = torch.Generator().manual_seed(case.seed)
    shape = layer.weight.shape
    if case.ties:
        values = torch.tensor(_TIE_VALUES)[torch.randint(len(_TIE_VALUES), shape, generator=gen)]
        weight = values * torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0) * case.scale
    else:
        weight = torch.randn(shape, generator=gen) * case.scale
        for _ in range(10):  # a float32 draw rarely repeats a magnitude; redraw those that do
            mags = weight.abs().flatten()
            dup = (mags.unsqueeze(0) == mags.unsqueeze(1)).sum(1) > 1
            zero = mags == 0
            if not (dup | zero).any():
                break
            redraw = torch.randn(shape, generator=gen) * case.scale
            weight = torch.where((dup | zero).view(shape), redraw, weight)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if layer.bias is not None:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 0.1)
    return layer


@st.composite
def layer_cases(draw, min_weights: int = 20, bias=None, ties: bool = False,
                kinds=("Conv2d", "Linear")) -> LayerCase:
    """Small layers (20 to about 300 weights) of either kind, seeded weights, any scale."""
    kind = draw(st.sampled_from(kinds))
    if kind == "Conv2d":
        out, kernel = draw(st.integers(2, 8)), draw(st.integers(1, 3))
        inp = max(draw(st.integers(1, 4)), math.ceil(min_weights / (out * kernel * kernel)))
    else:
        out, kernel = draw(st.integers(2, 12)), 1
        inp = max(draw(st.integers(1, 24)), math.ceil(min_weights / out))
    return LayerCase(kind, out, inp, kernel,
                     bias=draw(st.booleans()) if bias is None else bias,
                     seed=draw(st.integers(0, 2**16)),
                     scale=draw(st.sampled_from((0.01, 0.1, 1.0, 3.0))), ties=ties)


def layer_payload(path: str, layer: nn.Module) -> dict:
    """A layer as the ``lab2_prune`` probe rebuilds it."""
    kind = type(layer).__name__
    if kind == "Conv2d":
        init = {"in_channels": layer.in_channels, "out_channels": layer.out_channels,
                "kernel_size": list(layer.kernel_size), "bias": layer.bias is not None}
    else:
        init = {"in_features": layer.in_features, "out_features": layer.out_features,
                "bias": layer.bias is not None}
    return {"path": path, "kind": kind, "init": init, "weight": layer.weight.detach().clone(),
            "bias": None if layer.bias is None else layer.bias.detach().clone()}


# ----------------------------------------------------------------------------- generated models


@dataclass(frozen=True)
class ModelCase:
    """A model of a few prunable layers of very different scales plus one ``id_mapping`` shortcut
    (an ``nn.ModuleDict``; prunable = every Conv2d/Linear whose name lacks ``id_mapping``)."""

    layers: tuple[tuple[str, LayerCase], ...]

    def __repr__(self) -> str:
        return "ModuleDict(" + ", ".join(f"{path}={case!r}" for path, case in self.layers) + ")"

    def build(self) -> nn.ModuleDict:
        root = nn.ModuleDict()
        for path, case in self.layers:
            parent = root
            *parents, leaf = path.split(".")
            for part in parents:
                if part not in parent:
                    parent[part] = nn.ModuleDict()
                parent = parent[part]
            parent[leaf] = build_layer(case)
        return root


@st.composite
def model_cases(draw) -> ModelCase:
    """2-3 prunable layers, each at its own scale (so one global threshold prunes them to very
    different sparsities), and a shortcut ``block.id_mapping`` of tiny weights as large as the
    rest together: counting it in the threshold, or pruning it, shows at any q."""
    scales = draw(st.permutations((0.05, 0.3, 1.0, 4.0)))
    n_layers = draw(st.integers(2, 3))
    layers = []
    for i in range(n_layers):
        case = draw(layer_cases(min_weights=20, kinds=("Conv2d",) if i == 0 else ("Conv2d", "Linear")))
        path = ("conv", "block.conv1", "fc")[i]
        layers.append((path, LayerCase(case.kind, case.out_features, case.in_features, case.kernel,
                                       case.bias, case.seed + i, scales[i])))
    total = sum(c.numel for _, c in layers)
    out = draw(st.integers(2, 6))
    inp = max(1, math.ceil(total / out))
    layers.append(("block.id_mapping", LayerCase("Conv2d", out, inp, 1, False,
                                                 draw(st.integers(0, 2**16)), 0.001)))
    return ModelCase(tuple(layers))


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of the layers Lab 2 prunes, by the handout's rule: every ``nn.Conv2d`` and
    ``nn.Linear`` whose module name does not contain ``id_mapping``."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d | nn.Linear) and "id_mapping" not in name]


# ----------------------------------------------------------------------------- pruning checks


def pruned_positions(before: torch.Tensor, after: torch.Tensor, what: str) -> torch.Tensor:
    """The positions the call zeroed (bool), after checking the weight kept its shape."""
    if not isinstance(after, torch.Tensor) or tuple(after.shape) != tuple(before.shape):
        got = tuple(after.shape) if isinstance(after, torch.Tensor) else type(after).__name__
        raise BadReturn(f"{what}: the weight changed shape from {tuple(before.shape)} to {got}")
    return (after == 0) & (before != 0)


def assert_kept_unchanged(before: torch.Tensor, after: torch.Tensor, what: str) -> None:
    """Every weight is either exactly as before or exactly 0."""
    after = after.to(before.dtype)
    changed = (after != before) & (after != 0)
    if changed.any():
        idx = tuple(int(i) for i in torch.nonzero(changed)[0])
        raise AssertionError(
            f"{what}: {int(changed.sum())} weight(s) were changed instead of kept or zeroed; "
            f"e.g. at index {idx}: before {float(before[idx]):.8g}, after {float(after[idx]):.8g} "
            "(a kept weight must stay bit-identical: multiply by a 0/1 mask, nothing else)")


def count_allowed(sorted_mags: np.ndarray, zeros: int, q: float) -> tuple[bool, int, int]:
    """Is pruning ``zeros`` of these magnitudes within one element of ``q`` percent?

    ``m = q/100 * n``; any count in ``[ceil(m - 1), floor(m + 1)]`` is right (numpy.percentile
    with ``>=`` or ``>``, ``kthvalue``, ``quantile`` and sorting all land there). Beyond that window
    only exact ties move the count: the boundary may slide across a run of equal magnitudes
    that touches the window (``>=`` keeps the whole run at the threshold, ``>`` prunes it).

    Returns:
        (allowed, lo, hi): the verdict and the tie-free window.
    """
    n = len(sorted_mags)
    m = q / 100.0 * n
    lo, hi = max(0, math.ceil(m - 1 - 1e-9)), min(n, math.floor(m + 1 + 1e-9))
    if lo <= zeros <= hi:
        return True, lo, hi
    if n == 0 or not 0 <= zeros <= n:
        return False, lo, hi
    if zeros < lo:  # kept ranks zeros..lo-1 too: only if they tie the first weight it must keep
        return bool(sorted_mags[zeros] == sorted_mags[min(lo, n - 1)]), lo, hi
    # pruned ranks hi..zeros-1 too: only if they tie the last weight it may prune
    return bool(sorted_mags[zeros - 1] == sorted_mags[max(hi - 1, 0)]), lo, hi


def assert_prunes_q_percent(before: list[torch.Tensor], after: list[torch.Tensor], q: float,
                            what: str) -> None:
    """The zeroed count over these weights is within one element of q percent (ties aside)."""
    mags = np.sort(np.concatenate([b.detach().abs().double().flatten().numpy() for b in before]))
    zeros = sum(int(pruned_positions(b, a, what).sum()) for b, a in zip(before, after, strict=True))
    ok, lo, hi = count_allowed(mags, zeros, q)
    if ok:
        return
    n = len(mags)
    expect = f"{lo}" if lo == hi else f"{lo} to {hi}"
    hint = ""
    if zeros == 0:
        hint = " (nothing was zeroed: prune the layer's own weight, in place)"
    elif zeros <= math.ceil(q / 100 * n / 100) and q >= 5:
        hint = " (q is a percent from 0 to 100, not a fraction)"
    elif abs(zeros - (n - q / 100 * n)) <= 1 and abs(q - 50) > 1:
        hint = " (did it prune the largest weights instead of the smallest?)"
    raise AssertionError(
        f"{what}: zeroed {zeros} of {n} weights ({100 * zeros / n:.2f}%); q = {q:g}% of {n} weights "
        f"is {q / 100 * n:.2f}, so {expect} should be zeroed{hint}")


def assert_prunes_smallest(before: list[torch.Tensor], after: list[torch.Tensor], what: str) -> None:
    """Every zeroed weight had a magnitude no larger than every kept weight."""
    pruned_max, kept_min = -math.inf, math.inf
    for b, a in zip(before, after, strict=True):
        pruned = pruned_positions(b, a, what)
        mags = b.detach().abs().double()
        if pruned.any():
            pruned_max = max(pruned_max, float(mags[pruned].max()))
        if (~pruned).any():
            kept_min = min(kept_min, float(mags[~pruned].min()))
    if pruned_max > kept_min:
        raise AssertionError(
            f"{what}: it zeroed a weight of magnitude {pruned_max:.6g} but kept one of magnitude "
            f"{kept_min:.6g}; magnitude pruning removes the smallest |w| first (compare |w|, "
            "not the signed w)")


def refuse_trivial_pruning(before: list[torch.Tensor], after: list[torch.Tensor], q: float, what: str) -> None:
    """Fail a pruning property test on a trivial answer (issue 14): zeroing nothing where q% is
    at least one weight, zeroing every weight where some must stay, or one value everywhere.
    "Kept weights unchanged", "the bias alone" or "in place" hold for those answers too."""
    b = torch.cat([t.detach().double().flatten() for t in before])
    a = torch.cat([t.detach().double().flatten() for t in after]) if all(
        isinstance(t, torch.Tensor) and t.shape == u.shape for t, u in zip(after, before, strict=True)) else None
    if a is None:
        return  # a wrong shape is the other checks' business
    _, lo, hi = count_allowed(np.sort(b.abs().numpy()), 0, q)
    kind = None
    if lo >= 1 and torch.equal(a, b):
        kind = "left every weight as it was (nothing pruned)"
    elif hi < b.numel() and not bool((a != 0).any()):
        kind = "zeroed every weight"
    elif b.numel() > 1 and bool((a == a[0]).all()) and a[0] != 0 and not bool((b == b[0]).all()):
        kind = f"set every weight to {float(a[0]):.6g}"
    if kind is not None:
        raise AssertionError(f"{what}: it {kind}, a trivial answer; {q:g}% of the weights, the smallest, "
                             "should become 0 and the others stay as they were")


def refuse_trivial_training(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], what: str) -> None:
    """Fail a finetuning property test on a trivial answer (issue 14): no weight changed (no
    training), every weight 0, or one value everywhere -- "zeros stay zero" holds for those."""
    b = torch.cat([t.double().flatten() for t in before.values()])
    a = torch.cat([t.double().flatten() for t in after.values()])
    kind = None
    if torch.equal(a, b):
        kind = "left every weight as it was (no training step)"
    elif not bool((a != 0).any()):
        kind = "set every weight to 0"
    elif bool((a == a[0]).all()):
        kind = f"set every weight to {float(a[0]):.6g}"
    if kind is not None:
        raise AssertionError(f"{what}: it {kind}, a trivial answer; one epoch of SGD changes the weights")


def prune_call(submission, layers: list[tuple[str, nn.Module]], q: float, *, what: str,
               layout: str = "plain", model: bool = False) -> dict:
    """Run the student's pruning function on these layers inside the sandbox (``lab2_prune``);
    returns ``{path: {"weight", "bias", "same_parameter", "dtype", ...}}``. ``what`` describes
    the call in feedback."""
    name = "global_prune_by_percentage" if model else "prune_by_percentage"
    try:
        body = submission.probe("lab2_prune", name, layers=[layer_payload(p, m) for p, m in layers],
                                q=q, layout=layout, model=model)
    except StudentError as exc:  # name the call as the student wrote it, not the probe's arguments
        raise type(exc)(exc.message, function=name, traceback=exc.traceback, call=what) from None
    out = body.get("layers") if isinstance(body, dict) else None
    if not isinstance(out, dict) or set(out) != {p for p, _ in layers}:
        raise BadReturn("the layers came back unreadable", function=name)
    return out


# ----------------------------------------------------------------------------- fixture model and data


@functools.lru_cache(maxsize=1)
def _fixture_state() -> dict[str, torch.Tensor]:
    return torch.load(CFG.data.checkpoint, map_location="cpu", weights_only=True)


def fixture_model() -> nn.Module:
    """A fresh float ResNet-20 (the given files) holding the fixture checkpoint (train mode). Built
    each time: about 10 ms, less than ``copy.deepcopy`` of a built one (measured)."""
    net = float_resnet_class()(num_layers=20)
    net.load_state_dict(_fixture_state(), strict=True)
    return net.train()


@functools.lru_cache(maxsize=4)
def _fixture_images(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    arrays = load_arrays(CFG.data.fixture)
    x = torch.from_numpy(arrays[f"x_{split}"][:n]).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CFG.data.mean).view(1, 3, 1, 1)
    std = torch.tensor(CFG.data.std).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(), torch.from_numpy(arrays[f"y_{split}"][:n]).long()


@contextlib.contextmanager
def one_thread():
    """Trusted-side training on one thread, as in the worker: on a shared machine two threads
    contend with the grader's other processes and a 0.2 s epoch takes seconds."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def fixture_batches(n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` training images of the fixture, normalised as train_util does (no
    augmentation, so a finetune step is deterministic)."""
    x, y = _fixture_images("train", n)
    return x.clone(), y.clone()


# ----------------------------------------------------------------------------- notebook cells


@dataclass(frozen=True)
class NotebookCell:
    file: str
    label: str
    source: str

    def __str__(self) -> str:
        return f"{self.file}, {self.label}"


_PY_CELL = re.compile(r"^# ?(%%|In\[)")


def _cells_of(root: Path, file: str) -> list[NotebookCell]:
    path = root / file
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    if file.endswith(".ipynb"):
        try:
            nb = json.loads(text)
        except ValueError:
            return []
        cells = []
        for index, cell in enumerate(nb.get("cells", []) if isinstance(nb, dict) else []):
            if not isinstance(cell, dict) or cell.get("cell_type") != "code":
                continue
            source = cell.get("source", "")
            source = "".join(s for s in source if isinstance(s, str)) if isinstance(source, list) else source
            if isinstance(source, str):
                cells.append(NotebookCell(file, f"cell {index + 1}", source))
        return cells
    # a script: cells at "# %%" / "# In[ ]:" markers (an exported notebook), else the whole file
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _PY_CELL.match(line)] or [0]
    if starts[0] != 0:
        starts.insert(0, 0)
    bounds = zip(starts, [*starts[1:], len(lines)], strict=True)
    return [NotebookCell(file, f"line {a + 1}", "".join(lines[a:b])) for a, b in bounds]


def _parse(source: str) -> ast.Module | None:
    """The cell as IPython runs it (magics and shell lines turned into calls, lines in place)."""
    try:
        return ast.parse(ipython_to_python(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _called(node: ast.AST) -> set[str]:
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            names.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    return names


def is_iterative_loop(tree: ast.Module) -> bool:
    """A ``for``/``while`` loop that calls both ``prune_by_percentage`` and ``finetune_after_prune``."""
    return any(isinstance(node, ast.For | ast.While)
               and {"prune_by_percentage", "finetune_after_prune"} <= _called(node)
               for node in ast.walk(tree))


def is_sparsity_check(tree: ast.Module, checkpoint: str) -> bool:
    """Loads ``checkpoint``, walks the model's layers and prints; trains and saves nothing."""
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    called = _called(tree)
    return (any(checkpoint in s for s in strings) and "print" in called
            and bool(attrs & {"named_modules", "named_parameters", "state_dict"})
            and not called & {"finetune_after_prune", "prune_by_percentage", "global_prune_by_percentage",
                              "save", "finetune", "train"})


def _candidate_files(submission) -> list[str]:
    files = list(submission.discovery.files) or []
    root = Path(submission.root)
    # notebooks the discovery could not read still hold cells; list every notebook it skipped
    for path in sorted(root.glob("*.ipynb")):
        if path.name not in files:
            files.append(path.name)
    home = submission.discovery.found.get("finetune_after_prune") or submission.discovery.found.get(
        "prune_by_percentage")
    return sorted(files, key=lambda f: (f != (home.file if home else None), not f.endswith(".ipynb"), f))


def _find_cell(submission, matches, what: str, pick_last: bool) -> NotebookCell:
    files = _candidate_files(submission)
    for file in files:
        hits = [c for c in _cells_of(Path(submission.root), file)
                if (tree := _parse(c.source)) is not None and matches(tree)]
        if hits:
            return hits[-1] if pick_last else hits[0]
    looked = ", ".join(files) or "no .py or .ipynb files"
    raise MissingDefinition(f"not found (looked in: {looked}); it is graded from that cell of your "
                            "notebook, run with stubs in place of training", function=what)


def find_iterative_cell(submission) -> NotebookCell:
    """The iterative-pruning cell: the last cell with a loop calling both prune_by_percentage and
    finetune_after_prune (as when the notebook runs top to bottom)."""
    return _find_cell(submission, is_iterative_loop,
                      "the iterative-pruning cell (a `for epoch in range(...)` loop that calls both "
                      "prune_by_percentage and finetune_after_prune)", pick_last=True)


def find_sparsity_cell(submission) -> NotebookCell:
    """The sparsity-check cell: the first cell that loads the finetuned checkpoint, walks the
    layers and prints."""
    ckpt = CFG.lab2.checkpoints["finetune"]
    return _find_cell(submission, lambda tree: is_sparsity_check(tree, ckpt),
                      f"the sparsity-check cell (a cell that loads {ckpt} and prints the sparsity "
                      "of every pruned layer)", pick_last=False)


# ----------------------------------------------------------------------------- dry runs


@dataclass
class Epoch:
    """What the loop did between two ``finetune_after_prune`` calls (and that call's flag)."""

    index: int
    prunes: list[tuple[str, object]] = field(default_factory=list)  # (layer, q)
    global_prunes: list[object] = field(default_factory=list)
    prune_flag: bool | None = None  # None: the loop ended before finetuning


@dataclass
class DryRun:
    cell: NotebookCell
    events: list[list]
    stdout: str
    error: dict | None
    layers: list[str]  # the prunable layers of `net`

    def epochs(self) -> list[Epoch]:
        out, current = [], Epoch(0)
        for event in self.events:
            kind = event[0]
            if kind == "prune":
                current.prunes.append((event[1], event[2]))
            elif kind == "global":
                current.global_prunes.append(event[1])
            elif kind == "finetune":
                current.prune_flag = bool(event[1])
                out.append(current)
                current = Epoch(len(out))
        if current.prunes or current.global_prunes:
            out.append(current)
        return out

    def error_note(self) -> str:
        """The cell's exception, for a message (empty when it ran to the end): which line, and why."""
        if not self.error:
            return ""
        line = ""
        if self.error.get("line"):
            text = self.error.get("text") or ""
            line = f" at line {self.error['line']}" + (f" (`{text}`)" if text else "")
        hint = ""
        if self.error.get("type") == "NameError":
            hint = ("; the grader runs this cell alone, with stubs for net, the training functions and "
                    "the globals of the course's setup cell (trainloader, testloader, criterion, "
                    "optimizer, device, best_acc, ...), so define anything else it uses in the cell")
        return (f"\nThe dry run of {self.cell} stopped{line} with {self.error['type']}: "
                f"{self.error['message']}{hint}")


#: images per split behind the dry run's loaders: enough for two batches, so a cell's own test
#: loop (``correct / total``, ``len(testloader)``) runs as on real data, in milliseconds
DRY_RUN_IMAGES = 8


@functools.lru_cache(maxsize=1)
def _dry_run_images() -> dict:
    arrays = load_arrays(CFG.data.fixture)
    n = DRY_RUN_IMAGES
    return {split: (arrays[f"x_{split}"][:n].copy(), arrays[f"y_{split}"][:n].astype(np.int64))
            for split in ("train", "test")}


def dry_run(submission, cell: NotebookCell, state: dict[str, torch.Tensor]) -> DryRun:
    """Run ``cell`` in the sandbox with stubbed training (probe ``lab2_cell``), with the globals of
    the course's setup cell and small non-empty loaders.

    Raises:
        GraderError: the run stopped in the grader's stubs, not in the student's code.
    """
    settings = {"lr": CFG.lab2.lr, "reg": CFG.lab2.reg, "batch_size": CFG.lab2.batch_size}
    try:
        body = submission.probe("lab2_cell", None, unit=cell.file, label=cell.label,
                                source=ipython_to_python(cell.source),
                                init={"num_layers": 20, "Nbits": None, "symmetric": False},
                                state=dict(state), settings=settings, images=_dry_run_images())
    except StudentError as exc:
        # say which cell, not the probe's arguments (the whole cell source)
        raise type(exc)(exc.message, function=str(cell), traceback=exc.traceback,
                        call=f"{cell} (dry run with stubbed training)") from None
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise BadReturn("the dry run came back unreadable", function=str(cell))
    events = [e for e in body["events"] if isinstance(e, list) and e and isinstance(e[0], str)]
    error = body.get("error") if isinstance(body.get("error"), dict) else None
    if error and error.get("origin") == "grader":
        raise GraderError(f"the dry run of {cell} stopped in the grader's stand-ins, not in the "
                          f"student's code: {error.get('type')}: {error.get('message')}\n"
                          f"{error.get('traceback', '')}")
    return DryRun(cell, events, str(body.get("stdout", "")), error, [str(n) for n in body.get("layers", [])])


def parse_sparsity_lines(stdout: str, names: list[str]) -> tuple[dict[str, float | None], float | None]:
    """The sparsity printed for each layer name (on the last line that names it) and the total
    (on the last line that gives one), in any of the formats real hand-ins print
    (``grader.notebooks.evidence.sparsity_claims``: name and number, fraction or percent)."""
    per_layer: dict[str, float | None] = dict.fromkeys(names)
    total = None
    for line in stdout.splitlines():
        for claim in sparsity_claims(line, names):
            if claim.layer == "total":
                total = claim.value
            elif claim.layer in per_layer:
                per_layer[claim.layer] = claim.value
    return per_layer, total
