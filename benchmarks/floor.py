"""The floor: import torch and run a submission's functions once, with no grader around them.

    .venv/bin/python benchmarks/floor.py fixtures/submissions/correct/reference

What a grading of that submission cannot go below: one interpreter, ``import torch``, the
submission's definitions executed in this process (no sandbox, no pytest, no Hypothesis, no
call proxy), and each graded function called once on inputs of the size the grading tests use:

* Lab 1: ``loss``/``gradient``/the two operators on the homework data, each runner once for
  each parameter value of the term (that is what the trajectory tests compare);
* Lab 2: ``prune_by_percentage`` on each prunable layer of the fixture ResNet-20,
  ``global_prune_by_percentage`` on the model, ``finetune_after_prune`` for one epoch of three
  batches of 16 fixture images (the grading tests' loader);
* Lab 3: ``STE.apply`` forward and backward on a pretrained layer at each bit width, asymmetric
  and symmetric, and the fixture test split (200 images) through a quantized ResNet-20 at each bit.

Prints one JSON object: seconds for ``import_torch``, ``load`` and ``calls``, and ``total``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load(submission: Path) -> dict[str, dict]:
    """Each file's extracted definitions executed as a module of this process."""
    import types

    from grader.discover import discover

    disc = discover(submission)
    # the submission's own FP_layers first, then the given files (template copies)
    sys.path[:0] = [str(submission), str(ROOT / "student_template")]
    spaces: dict[str, dict] = {}
    for unit in disc.units():
        name = Path(unit).stem
        module = types.ModuleType(name)
        sys.modules.setdefault(name, module)
        for cell in disc.files[unit].cells:
            exec(compile(cell.source, f"{unit}:{cell.label}", "exec"), module.__dict__)  # noqa: S102
        spaces[unit] = module.__dict__
    return {name: spaces[str(loc.file)] for name, loc in disc.found.items()}


def _calls(where: dict[str, dict]) -> None:
    import numpy as np
    import torch

    from reference import lab2 as ref2
    from reference.config import load
    from reference.resnet20 import ResNetCIFAR  # trusted model for the pruning calls

    cfg = load()

    def f(name):
        return where[name][name]

    x, y = np.array(cfg.lab1.X, dtype=float), np.array(cfg.lab1.y, dtype=float)
    w = np.zeros(x.shape[1])
    f("loss")(w, x, y)
    f("gradient")(w, x, y)
    f("project_top_k")(w, k=cfg.lab1.k)
    f("soft_threshold")(w, 0.01)
    f("trimmed_soft_threshold")(w, 0.01, trim=cfg.lab1.trim)
    f("run_gd")(x, y, lr=cfg.lab1.lr, steps=cfg.lab1.steps)
    f("run_projected_gd")(x, y, k=cfg.lab1.k, lr=cfg.lab1.lr, steps=cfg.lab1.steps)
    for lam in cfg.lab1.lambdas:
        f("run_l1_gd")(x, y, lam, lr=cfg.lab1.lr, steps=cfg.lab1.steps)
    for tau in cfg.lab1.prox_thresholds:
        f("run_proximal_gd")(x, y, tau, lr=cfg.lab1.lr, steps=cfg.lab1.steps)
    for tau in cfg.lab1.trimmed_thresholds:
        f("run_trimmed_l1")(x, y, tau, trim=cfg.lab1.trim, lr=cfg.lab1.lr, steps=cfg.lab1.steps)

    state = torch.load(cfg.data.checkpoint, map_location="cpu", weights_only=True)
    net = ResNetCIFAR(num_layers=20)
    net.load_state_dict(state)
    for _, layer in ref2.prunable_layers(net):
        f("prune_by_percentage")(layer, q=cfg.lab2.q)
    net.load_state_dict(state)
    f("global_prune_by_percentage")(net, q=cfg.lab2.q)
    from grader import refcache

    images, labels = refcache.fixture_test_split()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images[:48], labels[:48]),
                                         batch_size=16)
    f("finetune_after_prune")(net, loader, torch.nn.CrossEntropyLoss(),
                              torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9), prune=True)

    ste = f("STE")
    weight = state["body_op.0.conv1.0.conv.weight"].clone().requires_grad_(True)
    for bit in cfg.lab3.bits:
        for symmetric in (False, True):
            ste.apply(weight, bit, symmetric).sum().backward()
    # the quantized model goes through the submission's FP_layers (the given resnet20 imports it)
    import resnet20

    for bit in cfg.lab3.bits:
        model = resnet20.ResNetCIFAR(num_layers=20, Nbits=bit)
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            model(images[:200]).argmax(1)


def main() -> int:
    submission = Path(sys.argv[1]).resolve()
    sys.path.insert(0, str(ROOT))
    started = time.perf_counter()
    import torch

    torch.set_num_threads(1)  # as every grading worker does
    imported = time.perf_counter()
    where = _load(submission)
    loaded = time.perf_counter()
    _calls(where)
    done = time.perf_counter()
    print(json.dumps({"import_torch": round(imported - started, 3), "load": round(loaded - imported, 3),
                      "calls": round(done - loaded, 3), "total": round(done - started, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
