"""The course's notebook as students filled it, graded by the real grader (issue 11).

The bundled course-format samples (``fixtures/samples/specs_course.py``) are graded in full by the
session's batches (test_samples.py); these tests pin single constructs to the item they concern.
"""

from __future__ import annotations

from grade_one import grade

from fixtures.samples import specs_course as course
from reference.config import load

CFG = load()

# The course's notebook always passes q (`prune_by_percentage(layer, q=70.0)`,
# `global_prune_by_percentage(net, q=q)`); students delete or change the defaults freely.
_NO_DEFAULTS = course.CourseNotebook(
    prune=course.PRUNE_TO_DEVICE,
    global_prune=course.GLOBAL_CUDA.replace("def global_prune_by_percentage(net, q=70.0):",
                                            "def global_prune_by_percentage(net, q=None):"),
)


def test_a_default_q_the_notebook_never_uses_is_not_graded(tmp_path):
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "hw4.ipynb").write_text(_NO_DEFAULTS.render())
    result = grade(folder, k="lab2b or lab2e")
    for item in ("lab2.b", "lab2.e"):
        failed = [f"{c.name}: {c.message}" for c in result.cases() if c.item == item and c.kind == "function"
                  and c.status != "passed"]
        assert not failed, failed
        assert abs(result.items[item].score - CFG.rubric[item].function) < 1e-3


def test_an_older_term_without_lab3e_grades_its_two_argument_ste_in_full(tmp_path, monkeypatch, repo_root):
    """2022F: STE.forward(ctx, w, bit), the zero mask an optional bonus, no Lab 3 (e). With the
    term's config Lab 3 (e) runs no test and is worth 0, Lab 3 (a) takes its points."""
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "FP_layers.py").write_text(course.fp_layers(course.STE_2022F, symmetric=False))
    monkeypatch.setenv("HW4_CONFIG", str(repo_root / "reference" / "terms" / "2022F.toml"))
    result = grade(folder, k="lab3a or lab3e")
    assert [c for c in result.cases() if c.item == "lab3.e"] == []
    assert (result.items["lab3.e"].score, result.items["lab3.e"].possible) == (0, 0)
    failed = [f"{c.name}: {c.message}" for c in result.cases() if c.item == "lab3.a" and c.status != "passed"]
    assert not failed, failed
    assert abs(result.items["lab3.a"].score - 14) < 1e-3


def test_lab1_without_our_names_goes_to_the_manual_sheet_with_the_file_to_read(tmp_path, repo_root):
    """Before the project's lab1.ipynb, Lab 1 was free-form (hw4q1.ipynb, the student's own names)
    and the T/F answers were in the written report: their points go to manual.csv, not a silent 0."""
    import csv
    import io

    import pytest

    from grader.outputs.manual import MergeError, manual_csv, manual_maxima, merge_sheet

    sample = repo_root / "fixtures" / "submissions" / "alternative" / "course_2023f_handin"
    result = grade(sample, k="lab1 or tf")
    for item in ("lab1.b", "lab1.f", "tf.3"):
        assert result.items[item].manual == CFG.rubric[item].points and result.items[item].possible == 0
    lab1_case = next(c for c in result.cases() if c.item == "lab1.b")
    assert lab1_case.status == "not run" and "a person reads hw4q1.ipynb" in lab1_case.message
    assert any(w.startswith("Lab 1: graded by hand") and "hw4q1.ipynb" in w for w in result.warnings)
    rows = {r["item"]: r for r in csv.DictReader(io.StringIO(manual_csv([result], {}, CFG, {})))}
    assert rows["lab1.b"]["max_points"] == "3" and "hw4q1.ipynb" in rows["lab1.b"]["what_to_grade"]
    assert rows["tf.1"]["max_points"] == "2" and "written report" in rows["tf.1"]["what_to_grade"]
    sheet = tmp_path / "manual.csv"
    sheet.write_text(f"student,item,points\n{result.student},lab1.b,3\n")
    maxima = {result.student: manual_maxima(result, CFG)}
    merged, _ = merge_sheet(sheet, [result.student], CFG, {}, maxima)
    assert merged[result.student]["lab1.b"]["points"] == 3
    with pytest.raises(MergeError):  # a submission that wrote our names has no such row
        merge_sheet(sheet, [result.student], CFG, {})


def test_answers_in_the_folder_a_hand_in_was_zipped_with_are_read(tmp_path, correct_sample):
    """A hand-in zipped with its folder ('HW4 final, Jane Doe/answers.yaml'): the answers are read
    there (the shallowest copy wins), and T/F is not handed over to a person."""
    from grader.answers import read_answers
    from grader.discover import discover

    inner = tmp_path / "HW4 final, Jane Doe"
    (inner / "old").mkdir(parents=True)
    (inner / "answers.yaml").write_bytes((correct_sample / "answers.yaml").read_bytes())
    (inner / "old" / "answers.yaml").write_text('"1.1": T\n')
    answers = read_answers(tmp_path)
    assert answers.file == "HW4 final, Jane Doe/answers.yaml" and answers.choice("1.1") == CFG.tf_key["1.1"]
    assert "tf" not in discover(tmp_path).by_hand()
