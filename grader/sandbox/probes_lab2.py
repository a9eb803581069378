"""Worker probes for Lab 2: a pruning call on a layer the proxy cannot describe, and a dry run of
a notebook cell (the iterative-pruning loop, the sparsity check) with stubs in place of training.

Loaded by ``worker.py`` inside the sandbox (``register(api)``); see ``ProbeAPI`` there. Both probes
return plain data only.

``lab2_prune`` builds ``nn.Conv2d``/``nn.Linear`` layers here (so they can be float64, or hold a
non-contiguous weight such as a ``channels_last`` convolution's, which a module spec sent through
``load_state_dict`` would turn back into a contiguous float32 one), calls the student's pruning
function on one layer or on a model of them, and reports whether each ``layer.weight`` is still
the same ``Parameter`` afterwards (``layer.weight.data = ...`` keeps it; a new ``nn.Parameter``
does not, and an optimizer built before the call would go on updating the old one).

``lab2_cell`` executes one cell of the student's notebook in the notebook's own namespace with
these names replaced for the duration of the run (and restored afterwards):

* ``prune_by_percentage`` / ``global_prune_by_percentage``: recorders (they also prune by
  magnitude, so code that reads the sparsity sees what a pruning function would leave);
* ``finetune_after_prune``: records its ``prune`` flag, trains nothing;
* ``test`` / ``train`` / ``finetune`` (train_util): no training, ``test`` returns a rising float;
* ``net``: the trusted float ResNet-20 holding ``state``;
* the globals the course's setup cell makes, when the notebook does not define them:
  ``trainloader``/``testloader`` (small, non-empty: the cell's own test loop computes
  ``correct / total`` and ``len(testloader)``), ``trainset``/``testset``, ``transform_train``/
  ``transform_test``, ``criterion``, ``optimizer``, ``device`` (``"cpu"``), ``best_acc``,
  ``start_epoch`` and the training settings;
* ``torchvision.datasets.CIFAR10`` builds the same few images (a cell that makes its own loaders
  with ``download=True`` needs no network), ``DataLoader`` runs without worker processes
  (``num_workers=16`` in the course's cell);
* ``get_ipython()``: the cell arrives as the Python IPython would run (magics turned into
  ``get_ipython().run_line_magic(...)`` calls by the grader); here they do nothing;
* ``torch.save`` records the path, ``torch.load`` returns a copy of ``state``.

What the cell prints is captured. An exception in the cell is returned with the events recorded
before it, the cell's line it stopped at and whose code raised it (``origin``: ``student`` when
the innermost frame of student or grader code on the traceback is the student's, ``grader`` when
it is one of these stubs); a cell that never ends is stopped by the call's wall-clock timeout.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import linecache
import math
import os
import traceback
import types
from typing import Any

api: Any = None

STUDENT_PREFIX = "<student>"  # the worker's prefix for filenames of student code
MAX_EVENTS = 5000  # a 20-epoch loop over 20 layers records about 420: far more is a runaway loop
MAX_STDOUT = 200_000
LOADER_BATCH = 4  # images per batch of the stand-in loaders
_STUBBED_FUNCTIONS = ("prune_by_percentage", "global_prune_by_percentage", "finetune_after_prune",
                      "test", "train", "finetune")


def register(worker_api) -> None:
    global api  # noqa: PLW0603 - the worker hands its API over once, at registration
    api = worker_api
    api.add("lab2_prune", probe_prune)
    api.add("lab2_cell", probe_cell)


# ----------------------------------------------------------------------------- pruning calls


def probe_prune(target: str, layers: list, q, layout: str = "plain", model: bool = False):
    """Build layers here, call the student's pruning function on them, report what it did.

    Args:
        layers: ``[{"path", "kind", "init", "weight", "bias"}, ...]``: ``kind`` is ``Conv2d`` or
            ``Linear`` with constructor arguments ``init``; ``path`` a dotted name
            (``block.id_mapping``); ``bias`` None when the layer has none.
        q: passed as ``q=q``.
        layout: ``plain``; ``float64`` (every layer in double precision); ``channels_last``
            (convolutions in channels-last memory format: non-contiguous weights);
            ``transposed`` (linear weights stored transposed: non-contiguous).
        model: False: ``fn(layer, q=q)`` on the one layer; True: ``fn(net, q=q)`` on an
            ``nn.ModuleDict`` holding every layer at its path.

    Returns:
        ``{"layers": {path: {"weight", "bias", "same_parameter", "dtype", "device",
        "contiguous_before"}}, "returned": type name}``.
    """
    import torch
    from torch import nn

    fn = api.resolve(target)
    root = nn.ModuleDict()
    built = {}
    for spec in layers:
        if spec["kind"] not in ("Conv2d", "Linear"):
            raise api.Reply("grader", f"lab2_prune: unknown layer kind {spec['kind']!r}")
        layer = getattr(nn, spec["kind"])(**spec["init"])
        with torch.no_grad():
            layer.weight.copy_(spec["weight"])
            if spec["bias"] is not None:
                layer.bias.copy_(spec["bias"])
        layer = _with_layout(layer, layout)
        parent = root
        *parents, leaf = spec["path"].split(".")
        for part in parents:
            if part not in parent:
                parent[part] = nn.ModuleDict()
            parent = parent[part]
        parent[leaf] = layer
        built[spec["path"]] = layer
    if not model and len(built) != 1:
        raise api.Reply("grader", "lab2_prune: a layer call needs exactly one layer")
    before = {path: (layer.weight, layer.weight.is_contiguous()) for path, layer in built.items()}
    value = fn(root if model else next(iter(built.values())), q=q)
    out = {}
    for path, layer in built.items():
        weight = layer.weight
        out[path] = {
            "weight": weight.detach().clone(),
            "bias": None if layer.bias is None else layer.bias.detach().clone(),
            "same_parameter": weight is before[path][0],
            "dtype": str(weight.dtype).removeprefix("torch."),
            "device": str(weight.device),
            "contiguous_before": before[path][1],
        }
    return {"layers": out, "returned": type(value).__name__}


def _with_layout(layer, layout: str):
    import torch
    from torch import nn

    if layout == "float64":
        return layer.double()
    if layout == "channels_last":
        return layer.to(memory_format=torch.channels_last) if isinstance(layer, nn.Conv2d) else layer
    if layout == "transposed":
        if isinstance(layer, nn.Linear):
            layer.weight = nn.Parameter(layer.weight.detach().t().contiguous().t())
        return layer
    if layout != "plain":
        raise api.Reply("grader", f"lab2_prune: unknown layout {layout!r}")
    return layer


# ----------------------------------------------------------------------------- one cell


class _Runaway(Exception):
    """Raised by a stub when the cell makes far more calls than any loop of the assignment."""


def probe_cell(target, *, unit: str, label: str, source: str, init: dict, state: dict,
               settings: dict, images: dict | None = None):
    """Dry-run one notebook cell with stubs; return the recorded events and the printed text.

    Args:
        target: unused (the probe grades a cell, not a function).
        unit: the file whose namespace the cell runs in (``hw4.ipynb``).
        label: the cell's label for tracebacks (``cell 15``).
        source: the cell as Python (IPython syntax already turned into calls, lines in place).
        init, state: the trusted ResNet-20 to use as ``net`` (and to return from ``torch.load``).
        settings: values for names the notebook may not define (``lr``, ``reg``, ...).
        images: ``{"train": (x, y), "test": (x, y)}``: a few images per split (uint8 NHWC, int
            labels) behind the stand-in loaders and datasets.

    Returns:
        ``{"events": [[kind, ...], ...], "stdout": str, "error": None | {...}, "layers": [...]}``.
        Events: ``["prune", layer_name, q]``, ``["global", q]``, ``["finetune", prune]``,
        ``["test"]``, ``["save", path]``; ``q`` is a float, or a string when it is not a number.
        ``error``: ``{"type", "message", "traceback", "line", "text", "origin"}``.
    """
    import torch
    import torch.utils.data as tud
    import torchvision

    del target
    module = api.units.get(unit) or _fresh_namespace(unit)
    namespace = module.__dict__
    net = api.given_resnet("float").ResNetCIFAR(**init)
    net.load_state_dict(state, strict=True)
    rec = _Recorder(namespace, net)
    filename = f"{STUDENT_PREFIX}{unit}, {label}"
    code = _compile_cell(source, filename)
    stubs = {
        "prune_by_percentage": rec.prune_stub(namespace.get("prune_by_percentage")),
        "global_prune_by_percentage": rec.global_stub(namespace.get("global_prune_by_percentage")),
        "finetune_after_prune": rec.finetune_stub(namespace.get("finetune_after_prune")),
        "test": rec.test_stub,
        "train": rec.noop_stub,
        "finetune": rec.noop_stub,
        "net": net,
    }
    dataset = _stand_in_dataset(images or {})
    transform = _course_transform()
    trainset, testset = dataset(train=True, transform=transform), dataset(train=False, transform=transform)
    defaults = {
        "optimizer": torch.optim.SGD(net.parameters(), lr=float(settings.get("lr", 0.002)),
                                     momentum=0.875, weight_decay=float(settings.get("reg", 1e-4))),
        "trainset": trainset,
        "testset": testset,
        "trainloader": tud.DataLoader(trainset, batch_size=LOADER_BATCH, shuffle=False),
        "testloader": tud.DataLoader(testset, batch_size=LOADER_BATCH, shuffle=False),
        "transform_train": transform,
        "transform_test": transform,
        "criterion": torch.nn.CrossEntropyLoss(),
        "best_acc": 0.0,
        "start_epoch": 0,
        "device": "cpu",
        **settings,
    }
    missing = object()
    saved = {name: namespace.get(name, missing) for name in (*stubs, *defaults, "get_ipython")}
    saved_torch = (torch.save, torch.load, torchvision.datasets.CIFAR10, tud.DataLoader.__init__)
    out = io.StringIO()
    error: dict | None = None
    try:
        namespace.update(stubs)
        for name, value in defaults.items():
            namespace.setdefault(name, value)
        namespace["get_ipython"] = _NoShell
        torch.save, torch.load = rec.save_stub, rec.load_stub(state)
        torchvision.datasets.CIFAR10 = dataset
        tud.DataLoader.__init__ = _without_workers(saved_torch[3])  # type: ignore[method-assign]
        with contextlib.redirect_stdout(_Capped(out)):
            exec(code, namespace)  # noqa: S102 - the student's cell, inside the sandbox, with stubs
    except _Runaway as exc:
        error = {"type": "Runaway", "message": str(exc), "traceback": "", "origin": "student"}
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        line = _student_line(exc, filename)
        error = {"type": type(exc).__name__, "message": _safe_str(exc), "traceback": _traceback(exc),
                 "line": line, "text": _line_text(source, line), "origin": _origin(exc)}
    finally:
        torch.save, torch.load, torchvision.datasets.CIFAR10, tud.DataLoader.__init__ = saved_torch  # type: ignore[method-assign]
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value
    return {"events": rec.events, "stdout": out.getvalue(), "error": error, "layers": rec.prunable_names()}


class _NoShell:
    """``get_ipython()`` of a dry run: the magics and shell lines of the cell do nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return lambda *args, **kwargs: None if name != "getoutput" else []


def _stand_in_dataset(images: dict):
    """A ``torchvision.datasets.CIFAR10`` look-alike over a few images (no files, no download)."""

    class CIFAR10:
        def __init__(self, root=None, train=True, transform=None, target_transform=None, download=False,
                     **kwargs):
            import numpy as np

            x, y = images.get("train" if train else "test") or (np.zeros((8, 32, 32, 3), np.uint8),
                                                                  np.zeros(8, np.int64))
            self.data, self.targets = np.asarray(x), [int(v) for v in y]
            self.transform, self.target_transform, self.train = transform, target_transform, train

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, index):
            from PIL import Image

            img, target = Image.fromarray(self.data[index]), self.targets[index]
            if self.transform is not None:
                img = self.transform(img)
            if self.target_transform is not None:
                target = self.target_transform(target)
            return img, target

    return CIFAR10


def _course_transform():
    from torchvision import transforms

    return transforms.Compose([transforms.ToTensor(),
                               transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))])


def _without_workers(original):
    """``DataLoader.__init__`` with ``num_workers=0``: the sandbox allows few processes."""

    def init(self, *args, **kwargs):
        kwargs.pop("num_workers", None)
        kwargs.pop("prefetch_factor", None)
        kwargs.pop("persistent_workers", None)
        if len(args) > 5:  # num_workers given by position (dataset, batch_size, shuffle, sampler,
            args = (*args[:5], 0, *args[6:])  # batch_sampler, num_workers, ...)
        return original(self, *args, **kwargs)

    return init


def _fresh_namespace(unit: str) -> types.ModuleType:
    """A namespace with the notebook's usual imports, for a notebook with no definitions at all."""
    module = types.ModuleType("_hw4_dry_run")
    exec("import numpy as np\nimport torch\nimport torch.nn as nn\nimport torch.optim as optim\n",  # noqa: S102
         module.__dict__)
    return module


def _compile_cell(source: str, filename: str):
    """Compile the cell without the definitions of stubbed names (the extracted ones are loaded,
    and a cell that redefines ``prune_by_percentage`` before its loop must still call the stub)."""
    text = source if source.endswith("\n") else source + "\n"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    tree = ast.parse(text, filename)
    tree.body = [node for node in tree.body
                 if not (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                         and node.name in _STUBBED_FUNCTIONS)]
    return compile(tree, filename, "exec", dont_inherit=True)


class _Capped(io.TextIOBase):
    """A stdout that keeps the first ``MAX_STDOUT`` characters and drops the rest."""

    def __init__(self, sink: io.StringIO):
        self.sink = sink

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        text = str(text)
        room = MAX_STDOUT - self.sink.tell()
        if room > 0:
            self.sink.write(text[:room])
        return len(text)


class _Recorder:
    """The stubs of one dry run and what they saw."""

    def __init__(self, namespace: dict, net):
        self.namespace, self.net = namespace, net
        self.events: list[list] = []
        self.accuracy = 0.5

    def _add(self, event: list) -> None:
        if len(self.events) >= MAX_EVENTS:
            raise _Runaway(f"the cell made more than {MAX_EVENTS} calls of the pruning/training "
                           "functions (a loop that does not end?)")
        self.events.append(event)

    def prunable_names(self) -> list[str]:
        return [name for name, layer in self._current_net().named_modules() if _prunable(name, layer)]

    def _current_net(self):
        from torch import nn

        net = self.namespace.get("net")
        return net if isinstance(net, nn.Module) else self.net

    def _layer_name(self, layer) -> str:
        from torch import nn

        candidates = [self._current_net(), self.net]
        candidates += [v for v in list(self.namespace.values()) if isinstance(v, nn.Module)]
        for model in candidates:
            for name, module in model.named_modules():
                if module is layer and name:
                    return name
        shape = tuple(getattr(getattr(layer, "weight", None), "shape", ()))
        return f"<a {type(layer).__name__} of shape {shape} outside net>"

    def prune_stub(self, student_fn):
        default_q = _default(student_fn, "q", 70.0)

        def prune_by_percentage(layer, q=default_q, *args, **kwargs):
            self._add(["prune", self._layer_name(layer), _number(q)])
            if hasattr(layer, "weight"):
                _magnitude_prune([layer], q)

        return prune_by_percentage

    def global_stub(self, student_fn):
        default_q = _default(student_fn, "q", 70.0)

        def global_prune_by_percentage(net, q=default_q, *args, **kwargs):
            self._add(["global", _number(q)])
            layers = [m for name, m in net.named_modules() if _prunable(name, m)]
            _magnitude_prune(layers, q)

        return global_prune_by_percentage

    def finetune_stub(self, student_fn):
        default_prune = _default(student_fn, "prune", True)

        def finetune_after_prune(net, trainloader=None, criterion=None, optimizer=None,
                                 prune=default_prune, *args, **kwargs):
            self._add(["finetune", bool(prune)])

        return finetune_after_prune

    def test_stub(self, *args, **kwargs):
        self._add(["test"])
        self.accuracy = min(self.accuracy + 0.01, 0.99)  # rising, so "save the best" paths run
        return self.accuracy

    def noop_stub(self, *args, **kwargs):
        self._add(["train"])

    def save_stub(self, obj, f, *args, **kwargs):
        self._add(["save", str(f)])

    def load_stub(self, state):
        def load(*args, **kwargs):
            return {k: v.clone() for k, v in state.items()}

        return load


def _prunable(name: str, module) -> bool:
    from torch import nn

    return isinstance(module, nn.Conv2d | nn.Linear) and "id_mapping" not in name


def _magnitude_prune(layers: list, q) -> None:
    """Zero the ``q`` percent smallest magnitudes over ``layers`` (so sparsity-reading code sees
    a plausible model); silently does nothing for a q that is not a number."""
    import torch

    try:
        q = float(q)
    except (TypeError, ValueError):
        return
    with torch.no_grad():
        flat = torch.cat([layer.weight.detach().abs().flatten().double() for layer in layers])
        k = round(min(max(q, 0.0), 100.0) / 100.0 * flat.numel())
        if k == 0:  # kthvalue needs k >= 1
            return
        threshold = flat.kthvalue(k).values
        for layer in layers:
            layer.weight.mul_((layer.weight.abs().double() > threshold).to(layer.weight.dtype))


def _number(q):
    """q as a float when it is one (int, float, numpy or 0-d tensor), else its repr."""
    try:
        value = float(q)
    except (TypeError, ValueError):
        return repr(q)[:80]
    return repr(q)[:80] if math.isnan(value) else value


def _default(fn, param: str, fallback):
    """The student's own default for ``param`` (a call without it gets what the student wrote)."""
    try:
        p = inspect.signature(fn).parameters.get(param)
    except (TypeError, ValueError):
        return fallback
    if p is None or p.default is inspect.Parameter.empty:
        return fallback
    return p.default


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)[:2000]
    except BaseException:
        return "<unprintable>"


def _traceback(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(STUDENT_PREFIX)]
    lines = ["Traceback (your code):"]
    for f in frames:
        lines.append(f'  File "{f.filename.removeprefix(STUDENT_PREFIX)}", line {f.lineno}, in {f.name}')
        if f.line:
            lines.append(f"    {f.line.strip()}")
    lines.append(f"{type(exc).__name__}: {_safe_str(exc)}")
    return "\n".join(lines)


def _origin(exc: BaseException) -> str:
    """Whose code raised: the innermost frame on the traceback that is the student's (a cell or
    a submission file) or this module's (the stubs) decides; library frames (torch, numpy)
    between them do not. An exception with neither on its traceback is the grader's."""
    here = os.path.abspath(__file__)
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith(STUDENT_PREFIX):
            return "student"
        if os.path.abspath(frame.filename) == here:
            return "grader"
    return "grader"


def _line_text(source: str, line: int | None) -> str:
    lines = source.splitlines()
    return lines[line - 1].strip()[:200] if line and 0 < line <= len(lines) else ""


def _student_line(exc: BaseException, filename: str) -> int | None:
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    return lines[-1] if lines else None
