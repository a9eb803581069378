"""Reference values every submission's grading needs, computed once per process.

In a batch, ``prime()`` runs in the warm parent before the grading children fork, so each child
inherits the values instead of recomputing them (a quantized ResNet-20 evaluated at five bit
widths costs seconds, every submission). Everything here is derived from ``reference/`` and the
fixtures only; nothing from a submission.
"""

from __future__ import annotations

import functools

import torch

from reference.config import load

__all__ = ["ACCURACY_IMAGES", "fixture_test_split", "pretrained_state", "prime", "quantized_accuracy"]

#: test images used by the quantized-accuracy check (200 keep it about a second per submission;
#: a wrong level set moves the accuracy far more than a couple of images).
ACCURACY_IMAGES = 200


@functools.lru_cache(maxsize=1)
def fixture_test_split() -> tuple[torch.Tensor, torch.Tensor]:
    """The fixture's test images as train_util's test transform gives them, and their labels."""
    from reference.data import load_arrays

    cfg = load()
    arrays = load_arrays(cfg.data.fixture)
    x = torch.from_numpy(arrays["x_test"]).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    mean = torch.tensor(cfg.data.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.data.std).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(), torch.from_numpy(arrays["y_test"]).to(torch.int64)


@functools.lru_cache(maxsize=1)
def _pretrained_state() -> dict[str, torch.Tensor]:
    return torch.load(load().data.checkpoint, map_location="cpu", weights_only=True)


def pretrained_state() -> dict[str, torch.Tensor]:
    """A copy of the fixture checkpoint's state dict."""
    return {k: v.clone() for k, v in _pretrained_state().items()}


@functools.lru_cache(maxsize=32)
def quantized_accuracy(bits: int | None, images: int = ACCURACY_IMAGES, symmetric: bool = False) -> float:
    """Accuracy of the reference ResNet-20 (reference STE at ``bits``) with the fixture checkpoint
    on the first ``images`` test images."""
    from reference.resnet20 import ResNetCIFAR

    x, y = fixture_test_split()
    x, y = x[:images], y[:images]
    net = ResNetCIFAR(num_layers=20, Nbits=bits, symmetric=symmetric)
    net.load_state_dict(_pretrained_state(), strict=True)
    net.eval()
    with torch.no_grad():
        correct = sum(int((net(x[i:i + 250]).argmax(1) == y[i:i + 250]).sum()) for i in range(0, len(x), 250))
    return correct / len(x)


def prime() -> None:
    """Compute what every grading child would (call before forking)."""
    for bits in load().lab3.bits:
        quantized_accuracy(bits)
