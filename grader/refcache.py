"""Reference values every submission's grading needs, computed once per grading version.

The grading examples are derandomized, so what the reference computes for them is the same for
every submission: computing it per submission and test was most of the trusted side's work that
is not Hypothesis's. :func:`stored` keeps such a value

1. in this process (a batch's warm parent loads or computes them in :func:`prime` before the
   grading children fork, so each child inherits them), and
2. on disk, one file per value under ``<cache>/<grading version>/`` (``<cache>`` is
   ``$HW4_CACHE_DIR``, else ``$XDG_CACHE_HOME/hw4grade``, else ``~/.cache/hw4grade``), so a
   self-check or a one-submission run after the first one does not compute them either. The
   grading version is ``grader.fingerprint.sources_digest``: editing the reference, a rubric test,
   the grader, the config or the fixture data computes every value again.

Values are tensors, numbers, strings and dicts/lists of them, stored with ``torch.save`` and read
with ``torch.load(weights_only=True)`` (data only, never code). A value read back is bit-identical
to the one computed, so grading with or without the disk copy gives the same results. Everything
here is derived from ``reference/``, the rubric tests and the fixtures only; nothing from a
submission. The disk copy is an optimisation: an unwritable or corrupt cache is ignored.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from reference.config import load

__all__ = ["ACCURACY_IMAGES", "cache_dir", "fixture_test_split", "keep", "lookup", "pretrained_state",
           "pretrained_weight", "prime", "quantized_accuracy", "stored"]

#: test images used by the quantized-accuracy check (200 keep it about a second per submission;
#: a wrong level set moves the accuracy far more than a couple of images).
ACCURACY_IMAGES = 200
#: grading versions whose values stay on disk (several checkouts may share one cache)
KEEP_VERSIONS = 8
_NAME = re.compile(r"^[A-Za-z0-9_.=-]{1,120}$")

T = TypeVar("T")
_memory: dict[str, Any] = {}


def cache_dir() -> Path:
    """Where stored values live on disk (see the module docstring)."""
    if os.environ.get("HW4_CACHE_DIR"):
        return Path(os.environ["HW4_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hw4grade"


@functools.lru_cache(maxsize=1)
def _version() -> str:
    """The grading sources' digest and the libraries that compute and generate the values
    (another Hypothesis generates other examples; another torch may round differently)."""
    import hashlib
    import sys

    import hypothesis
    import numpy

    from grader.fingerprint import sources_digest

    libs = (f"{sys.version_info[:3]} torch {torch.__version__} numpy {numpy.__version__} "
            f"hypothesis {hypothesis.__version__}")
    return hashlib.sha256(f"{sources_digest(load())}\0{libs}".encode()).hexdigest()[:32]


def _folder() -> Path:
    return cache_dir() / _version()


def stored(name: str, compute: Callable[[], T]) -> T:
    """``compute()``, computed once per grading version (see the module docstring).

    ``name`` identifies the value within the grading version (``[A-Za-z0-9_.=-]``): two different
    computations must not share a name. The value returned is shared: read it, never modify it.

    Raises:
        ValueError: ``name`` is not a valid name.
    """
    if not _NAME.match(name):
        raise ValueError(f"refcache.stored: name {name!r} must match {_NAME.pattern}")
    if name in _memory:
        return _memory[name]
    path = _folder() / f"{name}.pt"
    value: Any = None
    found = False
    with contextlib.suppress(Exception):  # missing, unreadable or corrupt: compute it again
        value = torch.load(path, map_location="cpu", weights_only=True)
        found = True
    if not found:
        value = compute()
        _save(path, value)
    _memory[name] = value
    return value


def lookup(name: str) -> Any | None:
    """The value stored under ``name`` (in memory, else on disk), or None."""
    if not _NAME.match(name):
        raise ValueError(f"refcache.lookup: name {name!r} must match {_NAME.pattern}")
    if name not in _memory:
        try:
            _memory[name] = torch.load(_folder() / f"{name}.pt", map_location="cpu", weights_only=True)
        except Exception:
            return None
    return _memory[name]


def keep(name: str, value: Any) -> None:
    """Store ``value`` under ``name`` (in memory and on disk) for :func:`lookup`."""
    if not _NAME.match(name):
        raise ValueError(f"refcache.keep: name {name!r} must match {_NAME.pattern}")
    _memory[name] = value
    _save(_folder() / f"{name}.pt", value)


def _save(path: Path, value: Any) -> None:
    """Write atomically (a reader never sees half a file); any failure leaves no file."""
    try:
        fresh = not path.parent.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        if fresh:
            _forget_old_versions(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(value, fh)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except Exception:  # noqa: S110 - the disk copy is an optimisation; the value is in memory
        pass


def _forget_old_versions(current: Path) -> None:
    """Keep the :data:`KEEP_VERSIONS` most recently created grading versions' values."""
    with contextlib.suppress(OSError):
        others = sorted((p for p in current.parent.iterdir() if p.is_dir() and p != current),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        for old in others[KEEP_VERSIONS - 1:]:
            shutil.rmtree(old, ignore_errors=True)


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


def pretrained_weight(name: str) -> torch.Tensor:
    """A copy of one tensor of the fixture checkpoint."""
    return _pretrained_state()[name].clone()


def quantized_accuracy(bits: int | None, images: int = ACCURACY_IMAGES, symmetric: bool = False) -> float:
    """Accuracy of the reference ResNet-20 (reference STE at ``bits``) with the fixture checkpoint
    on the first ``images`` test images."""
    return stored(f"quantized_accuracy-bits={bits}-images={images}-symmetric={symmetric}",
                  lambda: _quantized_accuracy(bits, images, symmetric))


def _quantized_accuracy(bits: int | None, images: int, symmetric: bool) -> float:
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
    """Load (or compute) in this process what every grading needs: call before forking, so each
    child inherits it. Every value stored on disk for this grading version is loaded, whichever
    test computed it first."""
    with contextlib.suppress(OSError):
        for path in sorted(_folder().glob("*.pt")):
            if path.stem not in _memory and _NAME.match(path.stem):
                with contextlib.suppress(Exception):
                    _memory[path.stem] = torch.load(path, map_location="cpu", weights_only=True)
    for bits in load().lab3.bits:
        quantized_accuracy(bits)
