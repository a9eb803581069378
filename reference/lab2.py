"""Lab 2: magnitude pruning of ResNet-20 (PyTorch reference).

Prunable layers are every ``nn.Conv2d`` and ``nn.Linear`` whose module name does not contain
``id_mapping`` (the 1x1 shortcut convolutions stay dense). ``q`` is a percent in [0, 100].

Per layer (b):   t = percentile(|w|, q)  (numpy.percentile, linear interpolation)
                 w <- w * [|w| >= t]     in place; the bias is untouched
Global (e):      t = percentile(concat over prunable layers of |w|, q), then the same mask rule
Finetune (c):    one epoch of SGD; with ``prune=True`` the zero pattern at the start of the epoch
                 is re-applied after every ``optimizer.step()``, so every zero stays exactly 0
Iterative (d):   before epoch e = 1..E prune each layer to q_e = e * step percent, then F more
                 epochs with the mask fixed (term default: step 7, E = 10, F = 10: 7% -> 70%)

Accepted variants (DESIGN section 3): keep ``|w| > t`` instead of ``>=``; gradient masking instead
of weight masking in the finetune.

>>> import torch.nn as nn
>>> layer = nn.Linear(10, 10)
>>> prune_by_percentage(layer, q=70.0)
>>> round(float((layer.weight == 0).float().mean()), 2)
0.7
"""

# BEGIN REFERENCE ONLY
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.nn as nn

from reference.config import load

__all__ = [
    "prune_by_percentage",
    "global_prune_by_percentage",
    "finetune_after_prune",
    "prunable_layers",
    "sparsity_report",
    "iterative_schedule",
    "iterative_prune",
    "Q",
]

_CFG = load()
Q = _CFG.lab2.q
# END REFERENCE ONLY


def prune_by_percentage(layer, q=Q):
    """Prune the ``q`` percent smallest-magnitude weights of one layer, in place.

    ``t = numpy.percentile(|w|, q)``; weights with ``|w| < t`` become 0, the rest are unchanged.
    q = 0 keeps every weight; q = 100 keeps only the weight(s) of largest magnitude (``>=``
    keeps ties at the threshold). The bias is not pruned.

    Args:
        layer: an ``nn.Conv2d`` or ``nn.Linear`` (anything with a ``.weight`` tensor).
        q: percent of the weights to prune, 0 <= q <= 100.

    Returns:
        None (the layer is modified in place).

    >>> layer = nn.Linear(4, 1, bias=False)
    >>> with torch.no_grad(): _ = layer.weight.copy_(torch.tensor([[0.1, -0.4, 0.3, -0.2]]))
    >>> prune_by_percentage(layer, q=50.0)
    >>> layer.weight.tolist()
    [[0.0, -0.4000000059604645, 0.30000001192092896, 0.0]]
    """
    # BEGIN SOLUTION
    # TODO: convert layer.weight to a numpy array and compute the q-th percentile of |w|.
    # TODO: build a mask that is 1 where |w| >= threshold, 0 elsewhere; multiply it into the
    # TODO: weight in place (keep the weight's device and dtype).
    w = layer.weight.data
    magnitude = w.detach().abs().cpu().numpy()
    threshold = np.percentile(magnitude, q)
    mask = torch.from_numpy(magnitude >= threshold).to(device=w.device, dtype=w.dtype)
    w.mul_(mask)
    # END SOLUTION


def global_prune_by_percentage(net, q=Q):
    """Prune ``q`` percent of all prunable weights of ``net`` with one global threshold, in place.

    ``t = numpy.percentile(concat_l |w_l|, q)`` over every prunable layer l (``nn.Conv2d`` and
    ``nn.Linear`` whose name does not contain ``id_mapping``); then ``w_l <- w_l * [|w_l| >= t]``.
    Layers with many small weights end up sparser than others.

    Args:
        net: the model.
        q: percent of all prunable weights to prune, 0 <= q <= 100.

    Returns:
        None (the model is modified in place).
    """
    layers = [
        layer for name, layer in net.named_modules()
        if isinstance(layer, (nn.Conv2d, nn.Linear)) and "id_mapping" not in name
    ]
    # BEGIN SOLUTION
    # TODO: concatenate |w| of all these layers into one flat numpy array, take its q-th
    # TODO: percentile, and prune every layer with that one threshold (in place).
    if not layers:  # a model with nothing to prune stays as it is
        return
    magnitudes = np.concatenate([layer.weight.detach().abs().cpu().numpy().ravel() for layer in layers])
    threshold = np.percentile(magnitudes, q)
    for layer in layers:
        w = layer.weight.data
        w.mul_(torch.from_numpy(w.abs().cpu().numpy() >= threshold).to(device=w.device, dtype=w.dtype))
    # END SOLUTION


def finetune_after_prune(net, trainloader, criterion, optimizer, prune=True):
    """Finetune ``net`` for one epoch; with ``prune=True`` every zero weight stays exactly zero.

    The masks ``m_l = [w_l != 0]`` of the prunable layers are taken at the start of the epoch
    and applied after every ``optimizer.step()``: ``w_l <- w_l * m_l``. With ``prune=False``
    this is a plain training epoch.

    Args:
        net: the model (in train mode).
        trainloader: an iterable of ``(inputs, targets)`` batches.
        criterion: the loss, e.g. ``nn.CrossEntropyLoss()``.
        optimizer: an optimizer over ``net.parameters()``.
        prune: keep the zero pattern fixed.

    Returns:
        None.
    """
    device = next(net.parameters()).device
    weight_mask = {}
    for name, layer in net.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)) and "id_mapping" not in name:
            # BEGIN SOLUTION
            # TODO: a tensor on the weight's device: 1 where the weight is nonzero, 0 where it is 0.
            weight_mask[name] = (layer.weight.data != 0).to(layer.weight.dtype)
            # END SOLUTION
    for inputs, targets in trainloader:
        inputs, targets = inputs.to(device), targets.to(device)
        optimizer.zero_grad()
        outputs = net(inputs)
        loss = criterion(outputs, targets)
        loss.backward()
        optimizer.step()
        if prune:
            for name, layer in net.named_modules():
                if name in weight_mask:
                    # BEGIN SOLUTION
                    # TODO: use weight_mask[name] to make sure zero weights stay exactly zero.
                    layer.weight.data.mul_(weight_mask[name])
                    # END SOLUTION


# BEGIN REFERENCE ONLY
def prunable_layers(net: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, layer)`` for every layer Lab 2 prunes: Conv2d/Linear not under ``id_mapping``."""
    for name, layer in net.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)) and "id_mapping" not in name:
            yield name, layer


def sparsity_report(net: nn.Module, layers: Iterable[tuple[str, nn.Module]] | None = None) -> dict:
    """Per-layer and total weight sparsity (fraction of exact zeros).

    ``sparsity_l = #{w_l == 0} / size(w_l)``; ``total = sum_l #{w_l == 0} / sum_l size(w_l)``.

    Args:
        net: the model.
        layers: the layers to count (default: ``prunable_layers(net)``).

    Returns:
        ``{"layers": {name: {"zeros": int, "total": int, "sparsity": float}}, "zeros": int,
        "total": int, "sparsity": float}``.
    """
    out: dict = {"layers": {}, "zeros": 0, "total": 0}
    for name, layer in layers if layers is not None else prunable_layers(net):
        w = layer.weight.detach()
        zeros, total = int((w == 0).sum()), w.numel()
        out["layers"][name] = {"zeros": zeros, "total": total, "sparsity": zeros / total}
        out["zeros"] += zeros
        out["total"] += total
    out["sparsity"] = out["zeros"] / out["total"] if out["total"] else 0.0
    return out


def iterative_schedule(epoch: int, config=None) -> float | None:
    """The iterative-pruning percent to prune to before 0-based ``epoch``, or None when fixed.

    ``q(epoch) = (epoch + 1) * step`` for ``epoch < E`` (E = ``iterative_prune_epochs``); None for
    the ``F`` later epochs, when the mask stays fixed.

    >>> [iterative_schedule(e) for e in (0, 1, 9, 10)]
    [7.0, 14.0, 70.0, None]
    """
    c = (config or _CFG).lab2
    if epoch < 0 or epoch >= c.iterative_prune_epochs + c.iterative_fixed_epochs:
        raise ValueError(
            f"iterative_schedule: epoch {epoch} outside 0..{c.iterative_prune_epochs + c.iterative_fixed_epochs - 1}"
        )
    return (epoch + 1) * c.iterative_step if epoch < c.iterative_prune_epochs else None


def iterative_prune(net: nn.Module, trainloader, criterion, optimizer, config=None,
                    global_prune: bool = False) -> list[float]:
    """Iterative pruning: before each of the first E epochs prune to ``iterative_schedule(e)``,
    finetune one epoch (masks free while the sparsity still grows, fixed in the last pruning
    epoch and after), as the course's loop does.

    Returns:
        The total sparsity after each epoch.
    """
    cfg = config or _CFG
    history = []
    epochs = cfg.lab2.iterative_prune_epochs + cfg.lab2.iterative_fixed_epochs
    for epoch in range(epochs):
        q = iterative_schedule(epoch, cfg)
        net.train()
        if q is not None:
            if global_prune:
                global_prune_by_percentage(net, q=q)
            else:
                for _, layer in prunable_layers(net):
                    prune_by_percentage(layer, q=q)
        keep_mask = epoch >= cfg.lab2.iterative_prune_epochs - 1
        finetune_after_prune(net, trainloader, criterion, optimizer, prune=keep_mask)
        history.append(sparsity_report(net)["sparsity"])
    return history
# END REFERENCE ONLY
