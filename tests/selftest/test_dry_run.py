"""Dry runs of the course's own notebook cells (Lab 2 (c) sparsity check, Lab 2 (d) iterative loop).

The cells are the course's, filled as students fill them (``fixtures/samples/specs_course.py``):
their own test loop after each epoch (``correct / total``, ``len(testloader)``), the globals of the
setup cell, explicit ``q``, sparsity printed without a total. Issue 11: the dry run gave an empty
loader and every correct loop stopped with ZeroDivisionError.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fixtures.samples import specs_course as course
from grader.errors import GraderError
from grader.sandbox.proxy import Submission

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rubric"))
import lab2_support as l2

import reference.lab2 as ref

# The loop cell of Lab 2 (d) as a student who made a typo in the loop's last line hands it in.
_TYPO = course.CourseNotebook(iterative_q="q = (epoch + 1) * 7\n                acc_so_far = val_acc_typo")


def _submission(folder: Path, notebook: course.CourseNotebook) -> Submission:
    folder.mkdir()
    (folder / "hw4.ipynb").write_text(notebook.render())
    (folder / "FP_layers.py").write_text(course.fp_layers(course.STE_2023F))
    return Submission(folder, call_timeout=60.0, load_timeout=60.0, budget=600.0)


@pytest.fixture(scope="module")
def handin(tmp_path_factory):
    sub = _submission(tmp_path_factory.mktemp("course") / "student", course.CourseNotebook())
    yield sub
    sub.close()


def test_the_courses_iterative_cell_runs_its_own_test_loop(handin):
    cell = l2.find_iterative_cell(handin)
    run = l2.dry_run(handin, cell, l2.fixture_model().state_dict())
    assert run.error is None, run.error_note()
    epochs = run.epochs()
    assert [e.prune_flag for e in epochs] == [False] * 9 + [True] * 11  # the course's schedule
    layers = set(run.layers)
    for i, epoch in enumerate(epochs[:10]):
        assert {name for name, _ in epoch.prunes} == layers and {q for _, q in epoch.prunes} == {7.0 * (i + 1)}
    assert run.stdout.count("Test acc=") == 20  # the cell's own evaluation on the stand-in testloader


def test_the_courses_sparsity_check_is_read_without_a_total(handin):
    """The course's first check cell prints 'Sparsity of <name>: <x>' per layer and no total."""
    cell = l2.find_sparsity_cell(handin)
    net = l2.fixture_model()
    for i, (_, layer) in enumerate(ref.prunable_layers(net)):
        ref.prune_by_percentage(layer, q=20.0 + 3.0 * i)
    truth = ref.sparsity_report(net)
    run = l2.dry_run(handin, cell, net.state_dict())
    printed, total = l2.parse_sparsity_lines(run.stdout, list(truth["layers"]))
    assert total is None
    assert printed == pytest.approx({k: v["sparsity"] for k, v in truth["layers"].items()}, abs=1e-6)


def test_the_lab2c_sparsity_test_gives_full_credit_to_the_courses_cell(handin):
    """The grading test itself (graded as a batch grades): no 'Total sparsity' line demanded."""
    from grade_one import grade

    result = grade(handin.root, k="lab2c_sparsity")
    (case,) = [c for c in result.cases() if "sparsity" in c.name and c.kind == "function"]
    assert case.status == "passed", case.message


def test_a_dry_run_that_stops_in_the_students_code_says_which_line_and_why(tmp_path):
    sub = _submission(tmp_path / "student", _TYPO)
    try:
        cell = l2.find_iterative_cell(sub)
        run = l2.dry_run(sub, cell, l2.fixture_model().state_dict())
    finally:
        sub.close()
    assert run.error["type"] == "NameError" and run.error["origin"] == "student"
    line = cell.source.splitlines().index("                acc_so_far = val_acc_typo") + 1
    note = run.error_note()
    assert f"stopped at line {line} (`acc_so_far = val_acc_typo`) with NameError" in note, note


def test_a_dry_run_that_stops_in_the_graders_stand_ins_is_not_the_students_fault(handin, monkeypatch):
    """Images the stand-in dataset cannot decode: the student's loop is innocent."""
    bad = {split: (np.zeros((8, 32, 32, 3), np.float64), np.zeros(8, np.int64)) for split in ("train", "test")}
    monkeypatch.setattr(l2, "_dry_run_images", lambda: bad)
    with pytest.raises(GraderError, match="stopped in the grader's stand-ins"):
        l2.dry_run(handin, l2.find_iterative_cell(handin), l2.fixture_model().state_dict())
