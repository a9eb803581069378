"""Lab 3: fixed-point quantization with a straight-through estimator (the FP_layers module).

``STE.apply(w, bit, symmetric)`` quantizes a weight tensor in the forward pass and passes the
gradient straight through in the backward pass. With ``mask = [w != 0]`` (pruned weights stay 0):

Asymmetric (linear quantizer with dynamic scaling), ``bit >= 1``::

    alpha = max(w) - min(w),  beta = min(w),  ws = (w - beta) / alpha,  step = 2^bit - 1
    R = round(ws * step) / step,  wq = (R * alpha + beta) * mask

Symmetric, ``bit >= 2``::

    alpha = max|w|,  step = 2^(bit-1) - 1,  wq = round(w / alpha * step) / step * alpha * mask

``bit is None`` returns ``w``; ``bit == 0`` returns ``w * 0``. Backward: ``dL/dw = g`` unchanged,
``None`` for ``bit`` and ``symmetric``. ``round`` is torch's round-half-to-even.

``FP_Linear`` and ``FP_Conv`` wrap ``nn.Linear``/``nn.Conv2d`` (as ``self.linear``/``self.conv``)
and quantize the weight with ``STE`` in every forward pass (``Nbits=None``: full precision).

>>> w = torch.tensor([-1.0, -0.2, 0.0, 0.3, 1.0])
>>> STE.apply(w, 2).tolist()
[-1.0, -0.3333333134651184, 0.0, 0.3333333432674408, 1.0]
>>> STE.apply(w, 2, True).tolist()
[-1.0, -0.0, 0.0, 0.0, 1.0]
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class STE(torch.autograd.Function):
    """Quantize in the forward pass, pass the gradient straight through in the backward pass."""

    @staticmethod
    def forward(ctx, w, bit, symmetric=False):
        """Fixed-point quantization of ``w`` to ``bit`` bits (see the module docstring).

        Args:
            ctx: the autograd context (unused: the backward pass needs nothing saved).
            w: the weight tensor, any shape.
            bit: None (no quantization), 0 (all zeros) or the number of bits.
            symmetric: False for the asymmetric min/max quantizer, True for the symmetric one.

        Returns:
            The quantized tensor, same shape, dtype and device as ``w``.
        """
        if bit is None:
            wq = w
        elif bit == 0:
            wq = w * 0
        else:
            # TODO: build a mask that is 1 where w is nonzero and 0 where w is zero.
            raise NotImplementedError("STE.forward: your code here")
            if not symmetric:
                # TODO: alpha (scale) = max(w) - min(w); beta (bias) = min(w);
                # TODO: ws = (w - beta) / alpha lies in [0, 1]; step = 2 ** bit - 1;
                # TODO: R = round(ws * step) / step; wq = R * alpha + beta.
                raise NotImplementedError("STE.forward: your code here")
            else:
                # TODO: alpha = max(|w|); step = 2 ** (bit - 1) - 1;
                # TODO: wq = round(w / alpha * step) / step * alpha.
                raise NotImplementedError("STE.forward: your code here")
            # Restore the zero elements of w in wq.
            wq = wq * weight_mask
        return wq

    @staticmethod
    def backward(ctx, g):
        """Straight-through: the incoming gradient ``g`` is the gradient of ``w``."""
        # TODO: return the gradient of each input of forward: w, bit, symmetric.
        raise NotImplementedError("STE.backward: your code here")


class FP_Linear(nn.Module):
    """``nn.Linear`` whose weight is quantized to ``Nbits`` bits in the forward pass."""

    def __init__(self, in_features, out_features, Nbits=None, symmetric=False):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.Nbits = Nbits
        self.symmetric = symmetric
        self.linear = nn.Linear(in_features, out_features)
        m, n = self.in_features, self.out_features
        self.linear.weight.data.normal_(0, math.sqrt(2.0 / (m + n)))

    def forward(self, x):
        return F.linear(x, STE.apply(self.linear.weight, self.Nbits, self.symmetric), self.linear.bias)


class FP_Conv(nn.Module):
    """``nn.Conv2d`` whose weight is quantized to ``Nbits`` bits in the forward pass."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=False,
                 Nbits=None, symmetric=False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.Nbits = Nbits
        self.symmetric = symmetric
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        n = self.kernel_size * self.kernel_size * self.out_channels
        m = self.kernel_size * self.kernel_size * self.in_channels
        self.conv.weight.data.normal_(0, math.sqrt(2.0 / (n + m)))

    def forward(self, x):
        return F.conv2d(
            x,
            STE.apply(self.conv.weight, self.Nbits, self.symmetric),
            self.conv.bias,
            self.conv.stride,
            self.conv.padding,
            self.conv.dilation,
            self.conv.groups,
        )
