"""The student template: its definition cells load without error; stubs raise only when called."""

from __future__ import annotations

import types

import pytest
import torch

from grader.discover import discover


@pytest.fixture(scope="module")
def template_namespace(repo_root, tmp_path_factory):
    """Execute the template's extracted definitions (what the grader's worker loads), in order."""
    import sys

    root = repo_root / "student_template"
    disc = discover(root)
    assert disc.problems == []
    modules = {}
    sys.path.insert(0, str(root))
    try:
        for file in disc.units():
            module = types.ModuleType(file.replace(".", "_"))
            if file == "FP_layers.py":
                sys.modules["FP_layers"] = module
            for cell in disc.files[file].cells:
                exec(compile(cell.source, f"{file}:{cell.label}", "exec"), module.__dict__)
            modules[file] = module
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("FP_layers", None)
    return modules


def test_template_defines_every_required_name(repo_root):
    disc = discover(repo_root / "student_template")
    assert disc.missing == []
    assert disc.duplicates == {}


def test_template_definitions_execute_without_error(template_namespace):
    assert set(template_namespace) == {"FP_layers.py", "hw4.ipynb", "lab1.ipynb"}


@pytest.mark.parametrize("name, args", [
    ("loss", ("W", "X", "y")), ("gradient", ("W", "X", "y")), ("project_top_k", ("W",)),
    ("soft_threshold", ("W", 0.1)), ("trimmed_soft_threshold", ("W", 0.1)), ("run_gd", ("X", "y")),
])
def test_lab1_stubs_raise_not_implemented_when_called(template_namespace, name, args):
    import numpy as np

    values = {"W": np.zeros(5), "X": np.ones((3, 5)), "y": np.ones(3)}
    fn = getattr(template_namespace["lab1.ipynb"], name)
    with pytest.raises(NotImplementedError, match=name):
        fn(*[values.get(a, a) if isinstance(a, str) else a for a in args])


def test_lab2_stub_raises_not_implemented_when_called(template_namespace):
    with pytest.raises(NotImplementedError, match="prune_by_percentage"):
        template_namespace["hw4.ipynb"].prune_by_percentage(torch.nn.Linear(3, 3), q=50.0)


def test_template_ste_is_identity_without_bits_and_a_stub_with_bits(template_namespace):
    fp = template_namespace["FP_layers.py"]
    w = torch.randn(4, 4)
    assert torch.equal(fp.STE.apply(w, None, False), w)
    assert torch.equal(fp.STE.apply(w, 0, False), torch.zeros_like(w))
    with pytest.raises(NotImplementedError, match=r"STE\.forward"):
        fp.STE.apply(w, 4, False)
