"""The call path's own cost (``grader.sandbox.proxy``, ``session``, the grading plugin): the trusted
side's work per call and when the sandbox starts, with the same results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from grader.sandbox import proxy
from reference.resnet20 import ResNetCIFAR


def _values():
    t = torch.arange(24.0).reshape(2, 3, 4)
    return [
        [{"path": "conv", "kind": "Conv2d", "weight": t, "bias": None}, {"path": "fc", "weight": t * 2}],
        {"conv1.weight": t, "bn.running_mean": torch.zeros(3), "n": 3},
        (1,), (), [], {}, [(1, "a'b"), {"k": (2.5, None, True)}], np.arange(12.0).reshape(3, 4),
        ["x" * 100], {"a": [1, 2, {"b": torch.ones(40)}]}, ({"q": 7.0},),
    ]


@pytest.mark.parametrize("limit", [1, 10, 61, 200, 10_000])
def test_the_call_text_is_the_repr_it_always_was(limit):
    """The text a call is described (and seeded) by is repr(value) cut to its length, as before."""
    for value in _values():
        assert proxy._repr_prefix(value, limit) == repr(value)[:limit], value


def test_describing_a_call_on_a_list_of_big_tensors_prints_at_most_one_of_them(monkeypatch):
    """A probe with a list of layers (or a state dict) used to print every tensor of it to keep
    60 characters of the text: thousands of tensor reprs per grading."""
    printed = []
    real = torch.Tensor.__repr__

    def counting(self, *args, **kwargs):
        printed.append(self.shape)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "__repr__", counting)
    layers = [{"path": f"layer{i}", "weight": torch.randn(16, 16, 3, 3)} for i in range(20)]
    text = proxy.describe_call("lab2_prune:prune_by_percentage", (), {"layers": layers, "q": 35.0})
    monkeypatch.setattr(torch.Tensor, "__repr__", real)
    assert text == f"lab2_prune:prune_by_percentage(layers={repr(layers)[:57]}..., q=35)"
    assert len(printed) <= 1


def test_writing_a_module_back_walks_its_modules_once(monkeypatch):
    """The worker's new state of a ResNet-20 (120 entries) used to cost a state_dict() per entry."""
    net = ResNetCIFAR(num_layers=20)
    after = {"state": {k: v.clone() + 1 for k, v in net.state_dict().items() if v.is_floating_point()}}
    walks = []
    real = nn.Module.state_dict

    def counting(self, *args, **kwargs):
        if self is net:
            walks.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "state_dict", counting)
    proxy._write_back(net, after, "finetune_after_prune")
    monkeypatch.setattr(nn.Module, "state_dict", real)
    assert len(walks) == 1
    state = net.state_dict()
    assert all(torch.equal(state[k], v) for k, v in after["state"].items())


_LAUNCH_SPY = """
import json, sys
from pathlib import Path
from grader.grade import GradeOptions, grade_submission
from grader.sandbox import session as S

seen = []
launch, close = S.WorkerSession._launch, S.WorkerSession.close
def spy_launch(self):
    seen.append(["launch", "torch" in sys.modules])
    return launch(self)
def spy_close(self):
    seen.append(["close", self.proc is not None and self.proc.popen.poll() is not None])
    return close(self)
S.WorkerSession._launch, S.WorkerSession.close = spy_launch, spy_close
result = grade_submission(Path(sys.argv[1]), "s", GradeOptions(notebooks=False, pytest_args=("-k", sys.argv[2])))
print(json.dumps({"seen": seen, "scores": {c.name: c.status for c in result.cases() if c.status != "not run"}}))
"""


@pytest.mark.parametrize(("k", "uses_sandbox"), [("lab1b", True), ("tf_choice", False)])
def test_the_sandbox_starts_before_the_grading_imports_torch_and_stops_if_unused(correct_sample, k, uses_sandbox):
    """A grading process starts its sandbox first thing: the zygote's torch import (seconds) runs
    while this process imports torch and the tests, on the other core, instead of after them. A
    run whose tests never call the student's code (T/F only) stops it again."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _LAUNCH_SPY, str(correct_sample), k], capture_output=True,
                          text=True, timeout=600, check=False, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["scores"] and set(out["scores"].values()) == {"passed"}, out["scores"]
    assert out["seen"][0] == ["launch", False], out["seen"]
    assert [e[0] for e in out["seen"]].count("launch") == 1, "the launched sandbox was not the one used"
    if not uses_sandbox:
        assert out["seen"][1][0] == "close", out["seen"]


def _worker_module(monkeypatch):
    """The sandbox side's ``worker.py``, imported here as the worker imports it (its folder on
    the path, for ``import channel``)."""
    import importlib
    import sys

    for name in ("worker", "channel"):  # gone again after the test, as they were before it
        monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(Path(proxy.__file__).parent))
    return importlib.import_module("worker")


def test_a_sequential_travels_to_the_worker_with_its_children_names_and_state(monkeypatch):
    """A model handed to student code as an ``nn.Sequential`` is rebuilt by the worker with the
    same children, names and weights (it was built with ``nn.Sequential(dict)``, which torch
    refuses: 'dict is not a Module subclass')."""
    worker = _worker_module(monkeypatch)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    net.add_module("head", nn.ModuleDict({"fc": nn.Linear(2, 2)}))
    spec = proxy.module_spec(net)
    rebuilt = worker.build_module(spec.body)
    assert isinstance(rebuilt, nn.Sequential)
    assert [name for name, _ in rebuilt.named_children()] == ["0", "1", "2", "3", "head"]
    assert isinstance(rebuilt.head, nn.ModuleDict)
    want, got = net.state_dict(), rebuilt.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
