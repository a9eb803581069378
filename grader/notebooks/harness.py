"""The kernel-side harness of a notebook run: loaded into the student's IPython kernel at startup.

Runs *inside the sandbox*, in the same process as the student's cells, before the first cell.
It sets up fast grading mode without touching the notebook file, and records what the cells do in
an event log (JSON lines) that the grader reads after the run:

* **environment**: seeds (``random``, NumPy, torch) at startup and before every cell (``seed +
  execution count``, so a cell's randomness does not depend on whether an earlier cell failed);
  torch thread count; in fast mode the fixture dataset stands in for
  ``torchvision.datasets.CIFAR10`` (``reference/data.py``, staged as ``fixture_data.py``), every
  ``DataLoader`` runs without worker processes, and a training epoch on the fixture sees at most
  a few small batches (the cap on batches per epoch: whatever epoch counts the notebook was
  written with, it runs in minutes); at full scale ``CIFAR10`` reads the real data folder (never
  downloads).
* **another machine's notebook** (``portability.py``): ``google.colab`` stubbed, paths under
  ``/content/drive/...`` resolved to the notebook's folder, missing output folders created.
* **CPU only** (fast mode): ``.cuda()``, ``.to("cuda")``, ``device="cuda"`` and
  ``torch.load(map_location="cuda")`` run on the CPU instead (``grader/sandbox/cpu_only.py``, the
  same mapping as in the function tests) and are logged (``cuda`` events), so a notebook written
  for a GPU still runs; anything else that needs CUDA fails in its cell and the grader explains why.
* **trusted helpers**: the given ``train_util`` (the grader's copy, in the notebook's folder) is
  imported first and wrapped: ``test`` logs the accuracy with a fingerprint of the model's
  weights and its bit width; ``finetune`` logs its start/end; every line it prints is logged, so
  the grader can tell the trusted lines from lines the student printed.
* **student functions**: ``prune_by_percentage``, ``global_prune_by_percentage``,
  ``finetune_after_prune`` and the Lab 1 runners are wrapped when a cell defines them (an IPython
  AST transformer adds ``name = <wrap>(name)`` after the definition; a sweep before every cell
  catches other ways of defining them). The wrappers log their arguments (``q``) and what the
  call did (zeros before/after, the zero pattern at the start of a masked finetuning epoch,
  a Lab 1 trajectory and the student's loss along it).
* **files and figures**: ``torch.save``/``torch.load`` log the file name and the fingerprint;
  every figure rendered (inline display or ``savefig``) logs its axes and line data.
* **inline STE**: when the submission has no ``FP_layers.py`` the grader stages the given
  wrappers, and a ``STE`` class defined in the notebook becomes the one they use.

Everything the harness records can be forged by code in the same process; the grader treats the
log as a record of an honest run and re-checks what matters (checkpoints, accuracies) itself.

Imports: the standard library, NumPy, torch, matplotlib (lazily) -- never the grader.
"""

from __future__ import annotations

import ast
import builtins
import functools
import hashlib
import inspect
import io
import json
import os
import random
import sys
import time
from typing import Any

import numpy as np

EVENT_LIMIT_BYTES = 16 << 20  # the log stops growing here (the grader reads at most this much)
FIGURE_POINTS = 4000  # points kept per plotted line
TRAJECTORY_LIMIT = 50_000  # numbers kept per Lab 1 trajectory
WRAP_HOOK = "__hw4grade_defined__"  # the builtin the AST transformer calls

LAB2_NAMES = ("prune_by_percentage", "global_prune_by_percentage", "finetune_after_prune")
LAB1_NAMES = ("run_gd", "run_projected_gd", "run_l1_gd", "run_proximal_gd", "run_trimmed_l1")


class _State:
    def __init__(self, options: dict):
        self.options = options
        self.shell = None
        self.cell = 0  # the ordinal of the running cell: 1 for the first cell executed, ...
        self.started = time.monotonic()
        self.depth = 0  # > 0 while a wrapped student function runs
        self.in_test = False
        self.log = open(options["events"], "a", encoding="utf-8")
        self.written = 0
        self.mask_seq = 0
        self.last_mask_digest: str | None = None
        self.cuda_noted: set[tuple[int, str]] = set()
        self.figures_seen: set[tuple[int, str]] = set()
        self.ste_linked = None
        self.torch_save = None
        self.batch_cap_noted = False
        self.cell_cpu = 0.0
        self.resolve_path = lambda path, mode: path  # portability.py's, once installed


# Any: every hook runs after install() has set it; the hooks would only repeat "is not None".
_S: Any = None


# ----------------------------------------------------------------------------- the event log


def emit(ev: str, /, **fields) -> None:
    """Append one event: ``{"ev": kind, "cell": <ordinal of the cell>, "t": seconds, ...}``."""
    s = _S
    if s is None or s.written >= EVENT_LIMIT_BYTES:
        return
    record = {"ev": ev, "cell": s.cell, "t": round(time.monotonic() - s.started, 3), **fields}
    try:
        line = json.dumps(record, default=_jsonable, allow_nan=False) + "\n"
    except ValueError:  # NaN/inf in a student's numbers
        line = json.dumps(_finite(record), default=_jsonable) + "\n"
    if s.written + len(line) > EVENT_LIMIT_BYTES:
        line = json.dumps({"ev": "log_full", "cell": s.cell}) + "\n"
        s.written = EVENT_LIMIT_BYTES
    else:
        s.written += len(line)
    s.log.write(line)
    s.log.flush()


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)[:200]


def _finite(value):
    if isinstance(value, float):
        return value if np.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# ----------------------------------------------------------------------------- model helpers


def fingerprint(state) -> str | None:
    """sha256 over a state dict's (key, dtype, shape, bytes), keys sorted; None if not one.

    The grader computes the same over a checkpoint it loads, so equal fingerprints mean the
    notebook evaluated (or saved) exactly those weights.
    """
    import torch

    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor)
                                                            for v in state.values()):
        return None
    h = hashlib.sha256()
    for key in sorted(state, key=str):
        t = state[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def prunable(net):
    """(name, layer) of every Conv2d/Linear not under ``id_mapping`` (the layers Lab 2 prunes)."""
    from torch import nn

    return [(name, layer) for name, layer in net.named_modules()
            if isinstance(layer, nn.Conv2d | nn.Linear) and "id_mapping" not in name]


def quantization(net) -> tuple[int | None, bool]:
    """(Nbits, symmetric) of a model built from FP layers (None: full precision)."""
    nbits, symmetric = None, False
    for module in net.modules():
        bits = getattr(module, "Nbits", None)
        if isinstance(bits, int) and not isinstance(bits, bool):
            nbits = bits if nbits is None else nbits
            symmetric = bool(getattr(module, "symmetric", False))
    return nbits, symmetric


def sparsity(net) -> dict:
    """Per-layer fraction of exact zeros of the prunable layers, and the total."""
    layers, zeros, total = {}, 0, 0
    for name, layer in prunable(net):
        w = layer.weight.detach()
        z, n = int((w == 0).sum()), w.numel()
        layers[name] = round(z / n, 6) if n else 0.0
        zeros, total = zeros + z, total + n
    return {"layers": layers, "total": round(zeros / total, 6) if total else 0.0}


def _user_nets() -> dict:
    """The notebook's top-level variables that are models with prunable layers."""
    from torch import nn

    ns: dict = _S.shell.user_ns if _S and _S.shell else {}
    return {k: v for k, v in list(ns.items())
            if not k.startswith("_") and isinstance(v, nn.Module) and prunable(v)}


def _layer_name(layer) -> str | None:
    for net in _user_nets().values():
        for name, module in net.named_modules():
            if module is layer:
                return name
    return None


# ----------------------------------------------------------------------------- setup


def install(shell, options: dict) -> None:
    """Set up the kernel for a graded run (called once, from the IPython startup file)."""
    global _S  # noqa: PLW0603 - one harness per kernel; every hook reads this state
    _S = _State(options)
    _S.shell = shell
    import torch

    torch.set_num_threads(int(options.get("threads", 1)))
    _seed(0)
    if options.get("fixture"):
        _install_fixture(options)
    elif options.get("data_root"):
        _install_real_data(options["data_root"])
    _install_loaders(options)
    if options.get("cpu_only"):
        _install_cpu_only(options)
    if options.get("portability_module"):
        _S.resolve_path = _load_path("_hw4grade_portability", options["portability_module"]).install(
            emit, known={"pretrained_model.pt"}, collected=set(options.get("collected", ())))
    _install_torch_io()
    _install_train_util(options)
    _install_figures()
    builtins.__dict__[WRAP_HOOK] = _defined
    shell.ast_transformers.append(_WrapDefinitions())
    shell.events.register("pre_run_cell", _pre_run_cell)
    shell.events.register("post_run_cell", _post_run_cell)
    emit("installed", options={k: v for k, v in options.items() if k != "events"},
         torch=torch.__version__, threads=torch.get_num_threads())


def _seed(offset: int) -> None:
    import torch

    seed = int(_S.options.get("seed", 0)) + offset
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _load_path(name: str, path: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _install_fixture(options: dict) -> None:
    data = _load_path("_hw4grade_fixture_data", options["fixture_module"])
    os.environ[data.SUBSET_ENV] = str(int(options.get("fast_train_size", 0)))
    os.environ[data.TEST_SUBSET_ENV] = str(int(options.get("fast_test_size", 0)))
    data.install(options["fixture"])


def _install_real_data(root: str) -> None:
    import torchvision

    original = torchvision.datasets.CIFAR10

    class CIFAR10(original):  # type: ignore[valid-type,misc]
        """The real CIFAR-10 from the grader's data folder (read-only; never downloaded)."""

        def __init__(self, root_ignored=None, train=True, transform=None, target_transform=None,
                     download=False, **kwargs):
            kwargs.pop("root", None)
            super().__init__(root, train=train, transform=transform, target_transform=target_transform,
                             download=False)

    torchvision.datasets.CIFAR10 = CIFAR10


def _install_loaders(options: dict) -> None:
    """``DataLoader`` as fast grading mode needs it: no worker processes (``no_loader_workers``),
    and over the fixture's train split at most ``fast_batches_per_epoch`` batches of at most
    ``fast_batch_size`` images per epoch (``len(loader)`` says so too), whatever batch size and
    epoch count the notebook was written with: the course's loops (20 epochs, three of them, and
    Lab 3's finetunes) then take minutes, and every epoch still trains, masks and evaluates.
    The first time the cap shortens an epoch it is logged (``batch_cap``), for the feedback."""
    import itertools

    import torch.utils.data as tud

    original, original_iter, original_len = tud.DataLoader.__init__, tud.DataLoader.__iter__, tud.DataLoader.__len__
    if getattr(original, "_hw4grade", False):
        return
    signature = inspect.signature(original)
    no_workers = bool(options.get("no_loader_workers"))
    size, batches = int(options.get("fast_batch_size") or 0), int(options.get("fast_batches_per_epoch") or 0)

    def capped(dataset) -> bool:
        return bool(options.get("fixture")) and type(dataset).__name__ == "FixtureCIFAR10" and \
            bool(getattr(dataset, "train", False))

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:
            return original(self, *args, **kwargs)  # let DataLoader report the student's mistake
        if no_workers:
            # No worker processes: the sandbox's process limit, and they buy nothing on the fixture.
            bound.arguments["num_workers"] = 0
            bound.arguments.pop("prefetch_factor", None)  # only allowed with worker processes
            if "persistent_workers" in bound.arguments:
                bound.arguments["persistent_workers"] = False
        cap = capped(bound.arguments.get("dataset")) and batches > 0
        asked = bound.arguments.get("batch_size", 1)
        if (cap and size > 0 and isinstance(asked, int) and asked > size
                and bound.arguments.get("batch_sampler") is None):
            bound.arguments["batch_size"] = size
        original(*bound.args, **bound.kwargs)
        self._hw4_batches = batches if cap else None
        self._hw4_asked = asked
        return None

    def length(self):
        n = original_len(self)
        cap = getattr(self, "_hw4_batches", None)
        return n if cap is None else min(n, cap)

    def iterate(self):
        cap = getattr(self, "_hw4_batches", None)
        if cap is None:
            return original_iter(self)
        if not _S.batch_cap_noted and (original_len(self) > cap or self.batch_size != self._hw4_asked):
            _S.batch_cap_noted = True
            emit("batch_cap", batches=cap, batch_size=self.batch_size, asked=_num(self._hw4_asked),
                 full=original_len(self))
        return itertools.islice(original_iter(self), cap)

    init._hw4grade = True  # type: ignore[attr-defined]
    tud.DataLoader.__init__ = init  # type: ignore[method-assign]
    tud.DataLoader.__len__ = length  # type: ignore[method-assign]
    tud.DataLoader.__iter__ = iterate  # type: ignore[method-assign]


def _install_cpu_only(options: dict) -> None:
    """CUDA calls run on the CPU (``grader/sandbox/cpu_only.py``, the mapping the function tests
    use too); each kind of call is logged once per cell (``cuda`` events)."""
    cpu_only = _load_path("_hw4grade_cpu_only", options["cpu_module"])

    def note(what: str) -> None:
        key = (_S.cell, what)
        if key not in _S.cuda_noted:
            _S.cuda_noted.add(key)
            emit("cuda", call=what)

    cpu_only.install(note)


def _install_torch_io() -> None:
    import torch

    save, load = torch.save, torch.load
    _S.torch_save = save

    @functools.wraps(save)
    def logged_save(obj, f, *args, **kwargs):
        if isinstance(f, str | os.PathLike):  # torch writes its zip file from C++, not with open()
            f = _S.resolve_path(os.fspath(f), "wb")
        result = save(obj, f, *args, **kwargs)
        if isinstance(f, str | os.PathLike):
            fp = fingerprint(obj)
            kind = "module" if isinstance(obj, torch.nn.Module) else "state_dict" if fp else "other"
            emit("save", file=os.path.basename(os.fspath(f)), fingerprint=fp, kind=kind)
        return result

    @functools.wraps(load)
    def logged_load(f, *args, **kwargs):
        if isinstance(f, str | os.PathLike):
            f = _S.resolve_path(os.fspath(f), "rb")
        result = load(f, *args, **kwargs)
        if isinstance(f, str | os.PathLike):
            emit("load", file=os.path.basename(os.fspath(f)), fingerprint=fingerprint(result))
        return result

    torch.save, torch.load = logged_save, logged_load


def _install_train_util(options: dict) -> None:
    """Wrap the trusted ``train_util`` (the grader's copy in the notebook's folder)."""
    sys.path.insert(0, os.getcwd())
    import train_util

    def trusted_print(*args, sep=" ", end="\n", file=None, flush=False):
        buffer = io.StringIO()
        builtins.print(*args, sep=sep, end=end, file=buffer)
        text = buffer.getvalue()
        builtins.print(text, end="", file=file, flush=flush)
        if file is None or file is sys.stdout:
            emit("trusted_print", text=text)

    original_test, original_eval = train_util.test, train_util._evaluate
    original_finetune = train_util.finetune

    @functools.wraps(original_test)
    def test(net):
        nbits, symmetric = quantization(net)
        fp = fingerprint(net)
        _S.in_test = True
        try:
            accuracy = original_test(net)
        finally:
            _S.in_test = False
        emit("test", accuracy=_num(accuracy), fingerprint=fp, nbits=nbits, symmetric=symmetric,
             sparsity=sparsity(net)["total"], variable=_variable_of(net))
        return accuracy

    @functools.wraps(original_eval)
    def evaluate(net, testloader, criterion):
        loss, accuracy = original_eval(net, testloader, criterion)
        if not _S.in_test:
            nbits, symmetric = quantization(net)
            emit("evaluate", accuracy=_num(accuracy), fingerprint=fingerprint(net), nbits=nbits,
                 symmetric=symmetric)
        return loss, accuracy

    @functools.wraps(original_finetune)
    def finetune(net, *args, **kwargs):
        nbits, symmetric = quantization(net)
        bound = _bind(original_finetune, (net, *args), kwargs)
        emit("finetune_start", nbits=nbits, symmetric=symmetric, fingerprint=fingerprint(net),
             epochs=_num(bound.get("epochs")), lr=_num(bound.get("lr")))
        best = original_finetune(net, *args, **kwargs)
        emit("finetune_end", nbits=nbits, best=_num(best))
        return best

    train_util.print = trusted_print
    train_util.test, train_util._evaluate, train_util.finetune = test, evaluate, finetune


def _variable_of(obj) -> str | None:
    ns: dict = _S.shell.user_ns if _S and _S.shell else {}
    for key, value in list(ns.items()):
        if value is obj and not key.startswith("_"):
            return key
    return None


def _num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _bind(fn, args, kwargs) -> dict:
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)
    except (TypeError, ValueError):
        return {}


# ----------------------------------------------------------------------------- figures


def _install_figures() -> None:
    from matplotlib.backend_bases import FigureCanvasBase

    original = FigureCanvasBase.print_figure

    @functools.wraps(original)
    def print_figure(self, *args, **kwargs):
        try:
            _record_figure(self.figure)
        except Exception as exc:
            emit("harness_error", where="figure", error=f"{type(exc).__name__}: {exc}")
        return original(self, *args, **kwargs)

    FigureCanvasBase.print_figure = print_figure  # type: ignore[method-assign]


def _record_figure(fig) -> None:
    axes = []
    for ax in fig.get_axes():
        lines = []
        for line in ax.get_lines():
            y = np.asarray(line.get_ydata(), dtype=float).ravel()[:FIGURE_POINTS]
            lines.append({"label": str(line.get_label())[:80], "y": _finite(y.tolist())})
        axes.append({"title": ax.get_title()[:200], "xlabel": ax.get_xlabel()[:80],
                     "ylabel": ax.get_ylabel()[:80], "yscale": ax.get_yscale(), "lines": lines})
    suptitle = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) else ""
    digest = hashlib.sha256(json.dumps([suptitle, axes], default=str).encode()).hexdigest()[:16]
    key = (id(fig), digest)
    if key in _S.figures_seen:  # shown and saved: the same figure twice
        return
    _S.figures_seen.add(key)
    emit("figure", title=suptitle[:200], axes=axes)


# ----------------------------------------------------------------------------- student functions


class _WrapDefinitions(ast.NodeTransformer):
    """After a top-level ``def``/``class``/``from .. import`` of a watched name, add
    ``name = __hw4grade_defined__("name", name)`` so the function is wrapped before any later
    line of the same cell calls it."""

    WATCHED = (*LAB2_NAMES, *LAB1_NAMES, "STE")

    def visit_Module(self, node: ast.Module) -> ast.Module:
        body = []
        for stmt in node.body:
            body.append(stmt)
            for name in self._defined(stmt):
                call = ast.parse(f"{name} = {WRAP_HOOK}({name!r}, {name})").body[0]
                body.append(ast.copy_location(call, stmt))
        node.body = body
        return ast.fix_missing_locations(node)

    def _defined(self, stmt) -> list[str]:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return [stmt.name] if stmt.name in self.WATCHED else []
        if isinstance(stmt, ast.ImportFrom):
            return [a.asname or a.name for a in stmt.names if (a.asname or a.name) in self.WATCHED]
        return []


def _defined(name: str, obj):
    """The AST hook: wrap a watched student function; link an inline ``STE``."""
    if name == "STE":
        _link_ste(obj)
        return obj
    return _wrap(name, obj)


def _sweep() -> None:
    ns = _S.shell.user_ns
    for name in (*LAB2_NAMES, *LAB1_NAMES):
        obj = ns.get(name)
        if obj is not None and callable(obj) and not getattr(obj, "_hw4grade", False):
            ns[name] = _wrap(name, obj)
    if "STE" in ns:
        _link_ste(ns["STE"])


def _link_ste(obj) -> None:
    if not _S.options.get("link_ste") or not isinstance(obj, type):
        return
    fp_layers: Any = sys.modules.get("FP_layers")
    if fp_layers is None:
        import importlib

        fp_layers = importlib.import_module("FP_layers")  # the given wrappers the grader staged
    if getattr(fp_layers, "STE", None) is not obj:
        fp_layers.STE = obj
        if _S.ste_linked is not obj:
            _S.ste_linked = obj
            emit("ste_linked")


def _wrap(name: str, fn):
    if not callable(fn) or getattr(fn, "_hw4grade", False):
        return fn
    handler = {"prune_by_percentage": _on_prune, "global_prune_by_percentage": _on_global_prune,
               "finetune_after_prune": _on_finetune}.get(name, _on_lab1_run)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _S.depth:  # called from another watched function: that call is what is logged
            return fn(*args, **kwargs)
        _S.depth += 1
        try:
            return handler(name, fn, args, kwargs)
        finally:
            _S.depth -= 1

    wrapper._hw4grade = True  # type: ignore[attr-defined]
    return wrapper


def _call(name, fn, args, kwargs, fields):
    try:
        return fn(*args, **kwargs)
    except BaseException as exc:
        emit(name, raised=f"{type(exc).__name__}", **fields)
        raise


def _on_prune(name, fn, args, kwargs):
    bound = _bind(fn, args, kwargs)
    layer = bound.get("layer", args[0] if args else None)
    fields = {"q": _num(bound.get("q")), "layer": _layer_name(layer)}
    result = _call("prune", fn, args, kwargs, fields)
    w = getattr(layer, "weight", None)
    if w is not None and hasattr(w, "numel"):
        fields.update(zeros=int((w.detach() == 0).sum()), size=int(w.numel()))
    emit("prune", **fields)
    return result


def _on_global_prune(name, fn, args, kwargs):
    bound = _bind(fn, args, kwargs)
    net = bound.get("net", args[0] if args else None)
    fields = {"q": _num(bound.get("q")), "net": _variable_of(net)}
    result = _call("global_prune", fn, args, kwargs, fields)
    if hasattr(net, "named_modules"):
        fields["sparsity"] = sparsity(net)
    emit("global_prune", **fields)
    return result


def _on_finetune(name, fn, args, kwargs):
    """One epoch of the student's finetuning: log whether every zero weight stayed zero, and save
    the zero pattern it started from (when masking is on and the pattern is new)."""

    bound = _bind(fn, args, kwargs)
    net = bound.get("net", args[0] if args else None)
    keep = bound.get("prune", True)
    if not hasattr(net, "named_modules"):
        return fn(*args, **kwargs)
    masks = {n: (layer.weight.detach() == 0).clone() for n, layer in prunable(net)}
    fields = {"prune": bool(keep), "zeros_before": int(sum(int(m.sum()) for m in masks.values()))}
    if keep:
        digest = hashlib.sha256(b"".join(m.cpu().numpy().tobytes() for m in masks.values())).hexdigest()
        if digest != _S.last_mask_digest:
            _S.mask_seq += 1
            _S.last_mask_digest = digest
            path = os.path.join(_S.options["masks"], f"mask-{_S.mask_seq}.pt")
            _S.torch_save({n: m.cpu() for n, m in masks.items()}, path)  # unwrapped: not a student save
        fields["mask"] = _S.mask_seq
    result = _call("finetune_after_prune", fn, args, kwargs, fields)
    lost = 0
    for n, layer in prunable(net):
        if n in masks and masks[n].shape == layer.weight.shape:
            lost += int((layer.weight.detach()[masks[n].to(layer.weight.device)] != 0).sum())
    fields.update(lost=lost, zeros_after=sparsity_zeros(net), fingerprint=fingerprint(net))
    emit("finetune_after_prune", **fields)
    return result


def sparsity_zeros(net) -> int:
    return int(sum(int((layer.weight.detach() == 0).sum()) for _, layer in prunable(net)))


def _on_lab1_run(name, fn, args, kwargs):
    bound = _bind(fn, args, kwargs)
    params = {k: _num(v) for k, v in bound.items()
              if isinstance(v, int | float | np.number) and not isinstance(v, bool)}
    result = _call("lab1_run", fn, args, kwargs, {"fn": name, "params": params})
    fields = {"fn": name, "params": params}
    try:
        traj = np.asarray(result.detach().cpu().numpy() if hasattr(result, "detach") else result, dtype=float)
        traj = traj.reshape(len(traj), -1)
    except (TypeError, ValueError):
        emit("lab1_run", returned=type(result).__name__, **fields)
        return result
    if traj.size <= TRAJECTORY_LIMIT:
        fields["trajectory"] = _finite(traj.tolist())
        fields["student_loss"] = _student_losses(result, bound)
    emit("lab1_run", **fields)
    return result


def _student_losses(result, bound) -> list | None:
    """The student's own ``loss`` along the trajectory (so a plotted loss curve can be matched
    even when their loss function differs from the reference's)."""
    loss = _S.shell.user_ns.get("loss")
    X, y = bound.get("X"), bound.get("y")
    if not callable(loss) or X is None or y is None:
        return None
    out = []
    try:
        for W in result:
            out.append(float(np.asarray(loss(W, X, y), dtype=float).reshape(-1)[0]))
    except Exception:
        return None
    return _finite(out)


# ----------------------------------------------------------------------------- cells


def _pre_run_cell(info) -> None:
    # An ordinal, not IPython's execution count: IPython 9 increments that before this event and
    # older versions after it. The runner numbers the cells it executes the same way.
    _S.cell += 1
    _seed(_S.cell)
    _sweep()
    _S.cell_cpu = time.process_time()
    emit("cell_start")


def _post_run_cell(result) -> None:
    _sweep()
    error = result.error_in_exec or result.error_before_exec
    fields = {}
    if error is not None:
        fields["error"] = f"{type(error).__name__}: {str(error)[:500]}"
    try:
        nets = {name: sparsity(net) for name, net in _user_nets().items()}
    except Exception as exc:
        nets = {}
        fields["harness_error"] = f"{type(exc).__name__}: {exc}"
    # CPU seconds of the cell (this process: the kernel), for timing reports on a busy machine
    emit("cell_end", nets=nets, cpu=round(time.process_time() - _S.cell_cpu, 3), **fields)
