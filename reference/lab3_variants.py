"""Lab 3: quantizers a fair human grader accepts besides the reference (DESIGN section 3).

The grading tests accept a student's ``STE`` forward when it equals ``reference.lab3.STE`` *or*
one of these (modulo rounding ties), so each accepted reading of the handout is written down
once, with its formula. With ``mask = [w != 0]`` and ``round`` torch's round-half-to-even:

Asymmetric, min/max over the nonzero weights only (``nz = w[w != 0]``), ``bit >= 1``::

    alpha = max(nz) - min(nz),  beta = min(nz),  step = 2^bit - 1
    wq = (round((w - beta) / alpha * step) / step * alpha + beta) * mask

It differs from the reference only when a zero is the smallest or the largest weight (all
nonzero weights of one sign): the zeros are masked anyway, so the grid spans the weights that
keep a value.

Symmetric without a zero level (mid-rise), ``bit >= 1``: the ``2^bit`` levels
``-alpha + k * delta``, ``k = 0 .. 2^bit - 1``, ``delta = 2 alpha / (2^bit - 1)``, symmetric
about zero and spanning ``[-alpha, alpha]``; the asymmetric quantizer on that range::

    alpha = max|w|,  step = 2^bit - 1
    wq = (round((w + alpha) / (2 alpha) * step) / step * 2 alpha - alpha) * mask

Asymmetric without the zero mask, accepted only in terms whose hand-out made the mask an optional
bonus (2021F, 2022F: ``[lab3] zero_mask_required = false``)::

    wq = round((w - beta) / alpha * step) / step * alpha + beta

Not accepted (DESIGN section 3): more than ``2^bit`` levels, an inverted mask, a missing mask where
the term requires it, a grid that does not reach ``min(w)``/``max(w)`` (resp. ``+-max|w|``).

>>> w = torch.tensor([0.0, 0.25, 0.5, 1.0])
>>> asymmetric_nonzero_range(w, 1).tolist()
[0.0, 0.25, 0.25, 1.0]
>>> symmetric_midrise(torch.tensor([-1.0, -0.2, 0.0, 0.3, 1.0]), 2).tolist()
[-1.0, -0.3333333134651184, 0.0, 0.3333333730697632, 1.0]
"""

from __future__ import annotations

import torch

__all__ = ["asymmetric_nonzero_range", "asymmetric_unmasked", "symmetric_midrise"]


def asymmetric_nonzero_range(w: torch.Tensor, bit: int) -> torch.Tensor:
    """Asymmetric quantization with ``min``/``max`` taken over the nonzero weights only.

    ``nz = w[w != 0]``; ``alpha = max(nz) - min(nz)``, ``beta = min(nz)``,
    ``wq = (round((w - beta) / alpha * (2^bit - 1)) / (2^bit - 1) * alpha + beta) * [w != 0]``.

    Args:
        w: the weight tensor, any shape, floating dtype, any device.
        bit: the number of bits, ``bit >= 1``.

    Returns:
        The quantized tensor, same shape, dtype and device as ``w``.

    Raises:
        TypeError: ``bit`` is not an int.
        ValueError: ``bit < 1``.

    >>> asymmetric_nonzero_range(torch.tensor([0.0, 0.25, 0.5, 1.0]), 2).tolist()  # levels 0.25 .. 1
    [0.0, 0.25, 0.5, 1.0]
    """
    _check_bit(bit, 1, "asymmetric_nonzero_range")
    mask = w != 0
    if not bool(mask.any()):  # all pruned: nothing to quantize
        return w.clone()
    nonzero = w[mask]
    beta = nonzero.min()
    alpha = nonzero.max() - beta
    if alpha == 0:  # one distinct nonzero value: exactly representable, nothing to round
        return w.clone()
    step = 2**bit - 1
    wq = torch.round((w - beta) / alpha * step) / step * alpha + beta
    return wq * mask.to(w.dtype)


def asymmetric_unmasked(w: torch.Tensor, bit: int) -> torch.Tensor:
    """The course's asymmetric formula without the zero mask (older terms: the mask was optional).

    ``alpha = max(w) - min(w)``, ``beta = min(w)``,
    ``wq = round((w - beta) / alpha * (2^bit - 1)) / (2^bit - 1) * alpha + beta``: a zero weight
    becomes the level nearest to 0.

    Raises:
        TypeError: ``bit`` is not an int.
        ValueError: ``bit < 1``.

    >>> asymmetric_unmasked(torch.tensor([-1.0, 0.0, 1.0, 2.0]), 1).tolist()
    [-1.0, -1.0, 2.0, 2.0]
    """
    _check_bit(bit, 1, "asymmetric_unmasked")
    beta = w.min()
    alpha = w.max() - beta
    if alpha == 0:  # a constant tensor is exactly representable
        return w.clone()
    step = 2**bit - 1
    return torch.round((w - beta) / alpha * step) / step * alpha + beta


def symmetric_midrise(w: torch.Tensor, bit: int) -> torch.Tensor:
    """Symmetric quantization on ``2^bit`` levels without a zero level (mid-rise).

    ``alpha = max|w|``, ``step = 2^bit - 1``,
    ``wq = (round((w + alpha) / (2 alpha) * step) / step * 2 alpha - alpha) * [w != 0]``: the levels
    ``-alpha + k * 2 alpha / step`` (``k = 0 .. step``) are symmetric about zero, uniformly
    spaced and include ``+-alpha``; zero is not a level, so only the mask keeps pruned weights 0.

    Args:
        w: the weight tensor, any shape, floating dtype, any device.
        bit: the number of bits, ``bit >= 1`` (one bit: the levels ``+-alpha``).

    Returns:
        The quantized tensor, same shape, dtype and device as ``w``.

    Raises:
        TypeError: ``bit`` is not an int.
        ValueError: ``bit < 1``.

    >>> symmetric_midrise(torch.tensor([-0.9, 0.1, 1.0]), 1).tolist()  # the levels -1, 1
    [-1.0, 1.0, 1.0]
    """
    _check_bit(bit, 1, "symmetric_midrise")
    alpha = w.abs().max() if w.numel() else w.new_zeros(())
    if alpha == 0:  # all zero: every weight is pruned
        return w.clone()
    step = 2**bit - 1
    wq = torch.round((w + alpha) / (2 * alpha) * step) / step * (2 * alpha) - alpha
    return wq * (w != 0).to(w.dtype)


def _check_bit(bit: int, least: int, where: str) -> None:
    # bool is an int subclass, but True as a bit width is a caller's mistake
    if isinstance(bit, bool) or not isinstance(bit, int):
        raise TypeError(f"{where}: bit must be an int, got {type(bit).__name__} ({bit!r})")
    if bit < least:
        raise ValueError(f"{where}: bit must be >= {least}, got bit={bit}")
