"""Worker probes for Lab 3: the STE autograd round trip and a quantized model's accuracy.

Loaded by ``worker.py`` inside the sandbox (``register(api)``); see ``ProbeAPI`` there. Both
probes receive ``target`` (``"unit:STE"``, where discovery found the student's ``STE``) first.

``ste``       ``STE.apply(w, bit[, symmetric])`` on a fresh leaf tensor; with ``grad`` also the
              student's ``backward`` called raw (with the real autograd context) and through
              autograd. Older-term ``forward(ctx, w, bit)`` is called with two arguments.
``accuracy``  a trusted ResNet-20 with ``state`` evaluated on ``(x, y)``; ``fp`` picks its FP
              layers: ``float`` (the template's, full precision only), ``student`` (the
              submission's ``FP_layers`` module) or ``student_ste`` (the template's ``FP_Conv``/
              ``FP_Linear`` around the submission's ``STE``: only the STE is under test).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from typing import Any

api: Any = None  # the worker's ProbeAPI, set by register()
_RESNETS: dict = {}  # target -> resnet20 module built on the student's STE (fp="student_ste")


def register(worker_api) -> None:
    global api  # noqa: PLW0603 - the worker hands its API over once, when it loads the probes
    api = worker_api
    api.add("ste", probe_ste)
    api.add("accuracy", probe_accuracy)


def probe_ste(*, target: str, w, bit, symmetric: bool | None, grad=None, transpose: bool = False):
    """Forward ``STE.apply`` with autograd, then (with ``grad``) the raw and the autograd backward.

    Args:
        target: where the student's ``STE`` lives.
        w: the weight tensor (sent contiguous).
        bit, symmetric: the arguments of ``STE.apply``. ``symmetric=None`` always calls the
            two-argument form; ``False`` calls it too when ``forward`` has no ``symmetric``
            parameter (older terms); ``True`` then fails with a ``signature`` reply.
        grad: the incoming gradient for the backward pass, or None for forward only.
        transpose: quantize ``w.transpose(-1, -2)``, a non-contiguous view, instead of ``w``.

    Returns:
        ``forward`` (the output, detached), ``grad`` (``w.grad`` after ``out.backward(grad)``),
        ``grad_error`` (what autograd raised instead, as text), ``backward`` (the list the
        student's ``backward`` returned, non-tensors as their repr), ``inputs`` (how many
        arguments ``apply`` received), ``contiguous`` (whether the input was) and
        ``modified_input`` (whether ``forward`` wrote into ``w``).
    """
    import torch

    ste = api.resolve(target)
    if symmetric is not None and not _takes_symmetric(ste):
        if symmetric:
            raise api.Reply("signature", "STE.forward(ctx, w, bit) has no `symmetric` parameter: "
                                         "symmetric quantization (Lab 3 (e)) is not implemented")
        symmetric = None
    base = w.detach().clone()
    if transpose:
        base = base.transpose(-1, -2)
    leaf = base.requires_grad_(True)
    before = leaf.detach().clone()
    args = (leaf, bit) if symmetric is None else (leaf, bit, symmetric)
    out = ste.apply(*args)
    if not isinstance(out, torch.Tensor):
        raise api.Reply("return", f"STE.apply returned {type(out).__name__}, not a tensor")
    forward = out.detach().clone()
    modified = not torch.equal(leaf.detach(), before)
    w_grad, grad_error, raw = None, None, None
    if grad is not None:
        if out.grad_fn is not None:
            # grad_fn is the student's ctx: backward sees exactly what forward saved in it.
            raw = out.grad_fn.apply(grad.clone())  # type: ignore[attr-defined]
        else:
            raw = ste.backward(_Ctx(), grad.clone())
        raw = list(raw) if isinstance(raw, tuple | list) else [raw]
        raw = [r if r is None or isinstance(r, torch.Tensor) else repr(r) for r in raw]
        if out.requires_grad:
            try:
                out.backward(grad.clone())
            except RuntimeError as exc:  # autograd's own checks (gradient count, None for non-tensors)
                grad_error = f"{type(exc).__name__}: {exc}"
            else:
                w_grad = None if leaf.grad is None else leaf.grad.detach().clone()
        else:
            grad_error = "the output of STE.apply does not require grad: no gradient can reach w"
    return {"forward": forward, "grad": w_grad, "grad_error": grad_error, "backward": raw,
            "inputs": len(args), "contiguous": bool(before.is_contiguous() and leaf.is_contiguous()),
            "modified_input": modified}


class _Ctx:
    """A stand-in autograd context for a backward called without a graph."""

    needs_input_grad = (True, False, False)
    saved_tensors = ()


def _takes_symmetric(ste) -> bool:
    """Does ``STE.forward`` accept a third argument after ``ctx``?"""
    try:
        params = list(inspect.signature(ste.forward).parameters.values())[1:]  # drop ctx
    except (TypeError, ValueError):
        return True
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.name == "symmetric" for p in params)


def probe_accuracy(*, fp: str, init: dict, state: dict, x, y, batch_size: int = 250,
                   target: str | None = None):
    """Accuracy of the trusted ResNet-20 (``fp`` FP layers, see the module doc) with ``state``."""
    import torch

    if fp == "student_ste":
        if target is None:
            raise api.Reply("grader", "probe accuracy: fp='student_ste' needs the STE target")
        resnet = _resnet_on_student_ste(target)
    else:
        resnet = api.given_resnet(fp)
    net = resnet.ResNetCIFAR(**init)
    net.load_state_dict(state, strict=True)
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            pred = net(x[start:start + batch_size]).argmax(1)
            correct += int((pred == y[start:start + batch_size]).sum())
    return {"accuracy": correct / max(len(x), 1)}


class _STEAdapter:
    """``STE.apply(w, bit, symmetric)`` as the given FP layers call it, for either signature."""

    def __init__(self, ste, takes_symmetric: bool):
        self.ste, self.takes_symmetric = ste, takes_symmetric

    def apply(self, w, bit, symmetric=False):
        if self.takes_symmetric:
            return self.ste.apply(w, bit, symmetric)
        if symmetric:
            raise api.Reply("signature", "STE.forward(ctx, w, bit) has no `symmetric` parameter")
        return self.ste.apply(w, bit)


def _resnet_on_student_ste(target: str):
    """The given resnet20 built on the template's FP layers with the student's STE inside."""
    if target not in _RESNETS:
        given = os.environ.get("HW4_GIVEN_DIR", "")
        fp_layers = _load_file("_hw4_fp_student_ste", os.path.join(given, "fp_layers_float.py"))
        ste = api.resolve(target)
        fp_layers.STE = _STEAdapter(ste, _takes_symmetric(ste))
        saved = sys.modules.get("FP_layers")
        sys.modules["FP_layers"] = fp_layers
        try:
            _RESNETS[target] = _load_file("_hw4_resnet20_student_ste", os.path.join(given, "resnet20.py"))
        finally:
            if saved is None:
                sys.modules.pop("FP_layers", None)
            else:
                sys.modules["FP_layers"] = saved
    return _RESNETS[target]


def _load_file(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise api.Reply("grader", f"cannot load the given file {os.path.basename(path)}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
