"""Code written for a GPU, run on the CPU: one mapping for the function tests and the notebooks.

The course ran on GPUs, and correct hand-ins say so: ``mask.cuda()`` inside
``prune_by_percentage``, ``net.to("cuda")``, ``torch.zeros(n, device="cuda")``,
``torch.load(path, map_location="cuda:0")``. On a grader without CUDA each of those raises, and a
right answer would lose its points. ``install(note)`` patches torch so they run on the CPU:

* ``Tensor.cuda()`` / ``Module.cuda()`` return the object itself (it is on the CPU already);
* ``Tensor.to`` / ``Module.to`` with a CUDA device (``"cuda"``, ``"cuda:1"``, ``torch.device("cuda")``,
  a GPU index such as ``0``), given by position or as ``device=``, go to ``"cpu"``;
* the tensor factories (``torch.tensor``, ``zeros``, ``ones``, ``full``, ``empty``, ``rand``,
  ``randn``, ``randint``, ``arange``, ``linspace``, ``eye``, ``as_tensor`` and the ``*_like``
  ones) build on the CPU when asked for ``device="cuda..."``;
* ``torch.load(..., map_location="cuda...")`` loads onto the CPU.

Each mapping calls ``note(kind)`` with one of :data:`MAPPED_CALLS` (a fixed set: the grader turns
a kind into its own words, so nothing a submission writes reaches the feedback this way). It is
reported as a warning, never a deduction. Nothing is patched where CUDA is available.

Loaded inside the sandbox (next to the worker, and by the notebook harness), so it imports only
the standard library and torch.
"""

from __future__ import annotations

import functools

__all__ = ["MAPPED_CALLS", "install", "is_cuda"]

#: the kinds of call ``note`` is told about
MAPPED_CALLS = (".cuda()", '.to("cuda")', 'device="cuda"', 'torch.load(map_location="cuda")')
_FACTORIES = ("tensor", "as_tensor", "zeros", "ones", "full", "empty", "rand", "randn", "randint",
              "arange", "linspace", "eye", "zeros_like", "ones_like", "full_like", "empty_like",
              "rand_like", "randn_like", "randint_like")
_INSTALLED = "_hw4grade_cpu_only"


def is_cuda(value) -> bool:
    """Does ``value`` name a CUDA device (a string, a ``torch.device`` or a GPU index)?"""
    import torch

    if isinstance(value, str):
        return value.strip().lower().startswith("cuda")
    if isinstance(value, torch.device):
        return value.type == "cuda"
    return isinstance(value, int) and not isinstance(value, bool)  # .to(0) means GPU 0


def install(note) -> bool:
    """Patch torch (see the module doc); returns False when CUDA is available (nothing patched)."""
    import torch

    if torch.cuda.is_available():
        return False
    if getattr(torch, _INSTALLED, False):
        return True
    setattr(torch, _INSTALLED, True)

    def itself(self, *args, **kwargs):
        note(".cuda()")
        return self

    def device_to_cpu(original):
        @functools.wraps(original)
        def to(self, *args, **kwargs):
            if args and not isinstance(args[0], torch.Tensor) and is_cuda(args[0]):
                note('.to("cuda")')
                args = ("cpu", *args[1:])
            if is_cuda(kwargs.get("device")):
                note('.to("cuda")')
                kwargs["device"] = "cpu"
            return original(self, *args, **kwargs)

        return to

    def factory_on_cpu(original):
        @functools.wraps(original)
        def factory(*args, **kwargs):
            if is_cuda(kwargs.get("device")):
                note('device="cuda"')
                kwargs["device"] = "cpu"
            return original(*args, **kwargs)

        return factory

    load = torch.load

    @functools.wraps(load)
    def load_on_cpu(f, *args, **kwargs):
        where = kwargs.get("map_location", args[0] if args else None)
        if isinstance(where, str | torch.device) and is_cuda(where):
            note('torch.load(map_location="cuda")')
            if "map_location" in kwargs:
                kwargs["map_location"] = "cpu"
            else:
                args = ("cpu", *args[1:])
        return load(f, *args, **kwargs)

    # monkeypatching is the point: the student's code keeps calling these names
    torch.nn.Module.cuda = itself  # type: ignore[method-assign,assignment]
    torch.Tensor.cuda = itself  # type: ignore[method-assign,assignment]
    torch.nn.Module.to = device_to_cpu(torch.nn.Module.to)  # type: ignore[method-assign]
    torch.Tensor.to = device_to_cpu(torch.Tensor.to)  # type: ignore[method-assign]
    for name in _FACTORIES:
        if hasattr(torch, name):
            setattr(torch, name, factory_on_cpu(getattr(torch, name)))
    torch.load = load_on_cpu
    return True
