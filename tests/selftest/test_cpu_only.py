"""Code written for a GPU runs on the CPU in the function tests, noted, never a deduction (issue 11).

The notebook side of the same mapping is checked in test_notebooks_units.py
(``test_cuda_calls_run_on_the_cpu_and_are_noted``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from grader.discover import Location
from grader.sandbox.proxy import Submission

# The course's own style: a NumPy mask moved to the GPU, a device-named factory, a model moved there.
GPU_CODE = '''
import numpy as np
import torch

device = "cuda"


def prune_by_percentage(layer, q=70.0):
    w = layer.weight.data.cpu().numpy()
    keep = torch.from_numpy((np.abs(w) >= np.percentile(np.abs(w), q)).astype(np.float32)).cuda()
    layer.weight.data = layer.weight.data * keep.to("cuda")


def ones_on(device_name):
    return torch.ones(3, device=device_name) + torch.zeros(3).to(device)


def load_on_gpu(name):
    import os
    return torch.load(os.path.join(os.path.dirname(__file__), name), map_location="cuda:0")
'''


def test_the_cpu_mapping_patches_nothing_where_cuda_exists_and_maps_every_kind_here():
    """cpu_only.install in a fresh interpreter (it patches torch for good): each kind is noted once
    per call and the results are on the CPU."""
    code = (
        "import sys; sys.path.insert(0, 'grader/sandbox'); import cpu_only, torch, io\n"
        "seen = []\n"
        "assert cpu_only.install(seen.append) is (not torch.cuda.is_available())\n"
        "t = torch.ones(2).cuda(); m = torch.nn.Linear(2, 2).to('cuda'); z = torch.zeros(2, device='cuda')\n"
        "buf = io.BytesIO(); torch.save(t, buf); buf.seek(0); l = torch.load(buf, map_location='cuda')\n"
        "print(t.device, next(m.parameters()).device, z.device, l.device, sorted(set(seen)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split(" [")[0] == "cpu cpu cpu cpu"
    for kind in (".cuda()", '.to("cuda")', 'device="cuda"', 'torch.load(map_location="cuda")'):
        assert repr(kind) in out.stdout, out.stdout


def test_gpu_code_in_a_student_function_is_graded_on_the_cpu_and_noted(tmp_path):
    """Issue 11: correct code that calls .cuda() inside prune_by_percentage scored 0 on a CPU grader."""
    (tmp_path / "gpu.py").write_text(GPU_CODE)
    torch.save({"w": torch.ones(2)}, tmp_path / "state.pt")
    sub = Submission(tmp_path, call_timeout=20.0, load_timeout=60.0, budget=120.0)
    for name in ("ones_on", "load_on_gpu"):
        sub.discovery.found[name] = Location("gpu.py", "test")
    try:
        layer = nn.Linear(10, 10, bias=False)
        sub.prune_by_percentage(layer, q=70.0)
        assert int((layer.weight == 0).sum()) == 70
        assert torch.equal(sub.ones_on("cuda:0"), torch.ones(3))
        assert torch.equal(sub.load_on_gpu("state.pt")["w"], torch.ones(2))
    finally:
        sub.close()
    notes = [p for p in sub.discovery.problems if "asks for the GPU" in p]
    assert len(notes) == 4 and all("not a deduction" in n for n in notes), notes
