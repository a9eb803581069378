"""Worker probes for Lab 3: the STE autograd round trip and a quantized model's accuracy.

Loaded by ``worker.py`` inside the sandbox (``register(api)``); see ``ProbeAPI`` there.
"""

from __future__ import annotations

import inspect

api = None


def register(worker_api) -> None:
    global api
    api = worker_api
    api.add("ste", probe_ste)
    api.add("accuracy", probe_accuracy)


def probe_ste(target: str, w, bit, symmetric: bool | None, grad):
    """Forward ``STE.apply`` with autograd, backward ``grad``; also call ``STE.backward`` raw.

    ``symmetric=None`` calls ``STE.apply(w, bit)`` (the older two-argument form).
    """
    import torch

    ste = api.resolve(target)
    params = _forward_params(ste)
    if symmetric is not None and "symmetric" not in params and len(params) < 3:
        if symmetric:
            raise api.Reply("signature", "STE.forward(ctx, w, bit) has no `symmetric` parameter: "
                                     "symmetric quantization (Lab 3 (e)) is not implemented")
        symmetric = None
    leaf = w.detach().clone().requires_grad_(True)
    out = ste.apply(leaf, bit) if symmetric is None else ste.apply(leaf, bit, symmetric)
    if not isinstance(out, torch.Tensor):
        raise api.Reply("exception", f"STE.apply returned {type(out).__name__}, not a tensor")
    forward = out.detach().clone()
    w_grad = None
    if grad is not None and out.requires_grad:
        out.backward(grad)
        w_grad = None if leaf.grad is None else leaf.grad.detach().clone()
    raw = None
    if grad is not None:
        raw = ste.backward(None, grad.clone())
        raw = list(raw) if isinstance(raw, tuple | list) else [raw]
        raw = [r if r is None or isinstance(r, torch.Tensor) else repr(r) for r in raw]
    return {"forward": forward, "grad": w_grad, "backward": raw, "inputs": len(params)}


def _forward_params(ste) -> list[str]:
    try:
        return list(inspect.signature(ste.forward).parameters)[1:]  # drop ctx
    except (TypeError, ValueError):
        return ["w", "bit", "symmetric"]


def probe_accuracy(fp: str, init: dict, state: dict, x, y, batch_size: int = 250):
    """Accuracy of the trusted ResNet-20 (``fp`` FP layers) with ``state`` on (x, y)."""
    import torch

    net = api.given_resnet(fp).ResNetCIFAR(**init)
    net.load_state_dict(state, strict=True)
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            pred = net(x[start:start + batch_size]).argmax(1)
            correct += int((pred == y[start:start + batch_size]).sum())
    return {"accuracy": correct / max(len(x), 1)}
