"""Finding the required names in whatever files of a submission define them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from grader import discover as disc
from grader.discover import discover, walk_files
from grader.sandbox.session import sandbox_session, stage_submission


def _nb(path: Path, *sources: str) -> None:
    cells = [{"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
             for s in sources]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def test_the_correct_sample_defines_every_required_name(correct_sample):
    found = discover(correct_sample)
    assert found.missing == [] and found.problems == [] and found.duplicates == {}
    assert str(found.found["STE"]).startswith("FP_layers.py") and found.found["run_gd"].file == "lab1.ipynb"
    assert any("resnet20.py: a given file" in line for line in found.ignored)


def test_names_are_found_in_freely_named_files_and_reported_where(tmp_path):
    _nb(tmp_path / "lab1_alice.ipynb", "def run_gd(X, y, lr=0.02, steps=200):\n    return X\n")
    _nb(tmp_path / "HW4_Lab2_and_3.ipynb", "import torch\n",
        "def prune_by_percentage(layer, q=70.0):\n    pass\n")
    found = discover(tmp_path)
    assert str(found.found["run_gd"]) == "lab1_alice.ipynb (cell 1, line 1)"
    assert str(found.found["prune_by_percentage"]) == "HW4_Lab2_and_3.ipynb (cell 2, line 1)"
    assert "STE: not found in any file" in found.summary()


def test_a_name_defined_twice_differently_is_reported_and_graded_from_the_preferred_file(tmp_path):
    (tmp_path / "FP_layers.py").write_text("class STE:\n    pass\n")
    _nb(tmp_path / "hw4.ipynb", "class STE:\n    x = 1\n")
    found = discover(tmp_path)
    assert found.found["STE"].file == "FP_layers.py"
    assert [loc.file for loc in found.duplicates["STE"]] == ["FP_layers.py", "hw4.ipynb"]


def test_symlinks_are_never_followed_into_the_grader(tmp_path):
    """A link to the grader's tests (a folder or a file) is not read as part of the submission."""
    repo = Path(__file__).resolve().parent.parent.parent
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "rubric").symlink_to(repo / "tests" / "rubric")
    (sub / "lab1.py").symlink_to(repo / "reference" / "lab1.py")
    (sub / "mine.py").write_text("def loss(W, X, y):\n    return 0.0\n")
    found = discover(sub)
    assert list(found.files) == ["mine.py"]
    staged = tmp_path / "staged"
    stage_submission(sub, staged)
    assert sorted(p.name for p in staged.rglob("*")) == ["mine.py"]


def test_a_file_too_big_to_stage_is_named_in_the_students_warnings(tmp_path):
    """A data file over the staging limit is not in the sandbox; the student is told which, so a
    FileNotFoundError in their graded code has its explanation next to it."""
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "mine.py").write_text("def loss(W, X, y):\n    return 0.0\n")
    (sub / "weights.bin").write_bytes(b"\0" * (2 << 20))
    (sub / "small.txt").write_text("ok")
    with sandbox_session(sub) as session:
        (note,) = session.left_out()
        assert note.endswith(": weights.bin") and "cannot read them" in note
        assert sorted(p.name for p in (session.stage / "submission").iterdir()) == ["mine.py", "small.txt"]
    (sub / "weights.bin").unlink()
    with sandbox_session(sub) as session:
        assert session.left_out() == []


def test_hidden_files_junk_and_deep_files_are_left_out(tmp_path):
    for rel in ("__MACOSX/._lab1.py", ".ipynb_checkpoints/lab1-checkpoint.py", ".hidden.py",
                "a/b/c/deep.py", "a/ok.py"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("def loss(W, X, y):\n    return 0.0\n")
    found = discover(tmp_path)
    assert list(found.files) == ["a/ok.py"]
    assert "a/b/c/deep.py: deeper than 3 folders; not read" in found.ignored


def test_a_folder_of_very_many_entries_costs_a_bounded_scan(tmp_path, monkeypatch):
    monkeypatch.setattr(disc, "MAX_ENTRIES", 50)
    for i in range(120):
        (tmp_path / f"f{i:03}.txt").write_text("")
    (tmp_path / "zz.py").write_text("def loss(W, X, y):\n    return 0\n")
    files, truncated = walk_files(tmp_path, 50)
    assert truncated and len(files) == 50
    found = discover(tmp_path)
    assert any("more than 50 files and folders" in p for p in found.problems)


def test_unreadable_files_become_problems_naming_them(tmp_path):
    (tmp_path / "broken.ipynb").write_text("{not json")
    (tmp_path / "fine.py").write_text("def loss(W, X, y):\n    return 0\n")
    found = discover(tmp_path)
    assert list(found.files) == ["fine.py"]
    assert len(found.problems) == 1 and found.problems[0].startswith("broken.ipynb: not valid notebook JSON")


def test_special_files_are_not_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.py")  # reading a FIFO would block the grader forever
    (tmp_path / "fine.py").write_text("def loss(W, X, y):\n    return 0\n")
    assert list(discover(tmp_path).files) == ["fine.py"]


# ----------------------------------------------------------------------------- template copies

_FILLED_PRUNE = ("def prune_by_percentage(layer, q=70.0):\n"
                 "    w = layer.weight.data\n"
                 "    t = np.percentile(w.abs().cpu().numpy(), q)\n"
                 "    layer.weight.data = w * (w.abs() >= t)\n")
# the course's unfilled cell: comments and `pass`
_BLANK_PRUNE = ("def prune_by_percentage(layer, q=70.0):\n"
                '    """Pruning the weight paramters by threshold."""\n'
                "    # Convert the weight of \"layer\" to numpy array\n\n    pass\n")
_BLANK_STE = ("class STE(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, w, bit):\n"
              "        if bit is None:\n            wq = w\n        else:\n            alpha = ...\n"
              "            wq = ...\n        return wq\n")


def test_a_template_copy_beside_the_answer_is_ignored_and_the_report_says_so(tmp_path):
    """Issue 11: a student kept the unfilled hand-out (hw4_raw.ipynb, FP_layers_template.py) next to
    the answer in submit/; the answer is graded, wherever the files sort."""
    _nb(tmp_path / "hw4_raw.ipynb", _BLANK_PRUNE)
    (tmp_path / "FP_layers_template.py").write_text(_BLANK_STE)
    (tmp_path / "submit").mkdir()
    _nb(tmp_path / "submit" / "HW4_Lab2_and_3.ipynb", _FILLED_PRUNE)
    (tmp_path / "submit" / "layers.py").write_text(_BLANK_STE.replace("alpha = ...", "alpha = w.max() - w.min()")
                                                   .replace("wq = ...", "wq = w * alpha"))
    found = discover(tmp_path)
    assert found.found["prune_by_percentage"].file == "submit/HW4_Lab2_and_3.ipynb"
    assert found.found["STE"].file == "submit/layers.py"
    assert "prune_by_percentage" not in found.duplicates and "STE" not in found.duplicates
    summary = "\n".join(found.summary())
    assert ("prune_by_percentage: graded submit/HW4_Lab2_and_3.ipynb (cell 1, line 1); ignored the unfilled "
            "template copy in hw4_raw.ipynb (cell 1, line 1)") in summary
    assert "ignored the unfilled template copy in FP_layers_template.py" in summary


def test_a_copy_of_our_own_template_loses_to_the_answer(tmp_path, repo_root):
    """Our template's blanks (raise NotImplementedError, also nested) are a template copy too."""
    (tmp_path / "FP_layers.py").write_bytes((repo_root / "student_template" / "FP_layers.py").read_bytes())
    filled = (repo_root / "fixtures" / "submissions" / "correct" / "reference" / "FP_layers.py").read_text()
    (tmp_path / "FP_layers_solution.py").write_text(filled)
    found = discover(tmp_path)
    assert found.found["STE"].file == "FP_layers_solution.py"
    assert [loc.file for loc in found.blanks["STE"]] == ["FP_layers.py"]


def test_a_template_copy_alone_is_still_graded(tmp_path):
    """With no filled copy anywhere the blank is what there is: it is graded (and earns nothing)."""
    _nb(tmp_path / "hw4.ipynb", _BLANK_PRUNE)
    found = discover(tmp_path)
    assert found.found["prune_by_percentage"].file == "hw4.ipynb" and found.blanks == {}


def test_blanks_are_told_from_answers_by_their_placeholders():
    import ast

    from grader.extract import is_blank

    def blank(src: str) -> bool:
        return is_blank(ast.parse(src).body[0])

    assert blank(_BLANK_PRUNE) and blank(_BLANK_STE)
    assert blank("def f(x):\n    raise NotImplementedError('your code here')\n")
    assert blank("def f(net):\n    for n in net:\n        mask[n] = ...\n    return mask\n")
    assert not blank(_FILLED_PRUNE)
    assert not blank("def f(w):\n    return w[..., 0]\n")  # an index, not a blank
    assert not blank("def f(w, bit):\n    if bit < 2:\n        raise NotImplementedError('bit < 2')\n"
                     "    return w * bit\n")
