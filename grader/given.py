"""The given files as the trusted process uses them: a float ResNet-20 from ``student_template/``.

Tests that need a model for something other than quantization (a model to prune, to finetune, to
read a state dict from) build it from the very files the students are given
(``student_template/resnet20.py`` and the template's ``FP_layers.py``, whose ``Nbits=None`` path is
given code), so both editions build it alike and neither needs the reference solution.
"""

from __future__ import annotations

import functools
import sys
import types

from reference.config import REPO_ROOT

__all__ = ["GIVEN_DIR", "float_resnet_class"]

GIVEN_DIR = REPO_ROOT / "student_template"


@functools.lru_cache(maxsize=1)
def float_resnet_class() -> type:
    """``ResNetCIFAR`` of the given ``resnet20.py`` over the template's ``FP_layers.py`` wrappers,
    full precision only."""
    fp = _load("hw4_given_FP_layers", "FP_layers.py", {})
    fp.STE = _FullPrecisionSTE  # type: ignore[attr-defined]  # the template's STE is a stub
    net = _load("hw4_given_resnet20", "resnet20.py", {"FP_layers": fp})
    return net.ResNetCIFAR


class _FullPrecisionSTE:
    """``STE`` of the trusted float model: the weight itself, so autograd differentiates the plain
    layer (the template's ``STE.backward`` raises NotImplementedError), as the worker's does."""

    @staticmethod
    def apply(w, bit=None, symmetric=False):
        if bit is not None:
            raise ValueError(f"the trusted float ResNet-20 cannot quantize (Nbits={bit})")
        return w


def _load(name: str, file: str, imports: dict[str, types.ModuleType]) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = str(GIVEN_DIR / file)
    source = (GIVEN_DIR / file).read_text(encoding="utf-8")
    saved = {k: sys.modules.get(k) for k in imports}
    sys.modules.update(imports)  # the given file's `from FP_layers import ...`, for this exec only
    try:
        exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own given file
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    sys.modules[name] = module  # pickling/repr of its classes finds the module
    return module
