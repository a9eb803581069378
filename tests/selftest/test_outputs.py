"""What the batch writes: results.json (Gradescope, schema-valid), feedback.md, gradebook.csv.

Unit tests use a hand-made result (a passing public test, a failing hidden one, a grader fault,
a test not run); the rest read the session's graded samples (``sample_batch``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest

from grader.outputs.feedback import feedback_markdown
from grader.outputs.gradebook import COLUMNS, gradebook_csv
from grader.outputs.points import fmt_points
from grader.outputs.results_json import gradescope_results, problems
from grader.results import CaseResult, build_result
from reference.config import ITEM_IDS, load

CFG = load()
SECRET = "assert_close(got, ref.trajectory('gd'))  # a line of a hidden test"


def made_up_result(student: str = "alice"):
    cases = [
        CaseResult(
            "test_public_passes",
            "lab1.b",
            "function",
            "public",
            1.0,
            "passed",
            1.0,
            doc="run_gd follows the update on the homework data.",
        ),
        CaseResult(
            "test_hidden_fails",
            "lab1.b",
            "function",
            "hidden",
            1.0,
            "failed",
            0.0,
            doc="run_gd follows the update on other data too.",
            message="step 3: expected 0.25, got 0.5",
            fault="student",
        ),
        CaseResult(
            "test_grader_breaks",
            "lab2.b",
            "function",
            "hidden",
            1.0,
            "error",
            0.0,
            doc="prune_by_percentage prunes q percent.",
            fault="grader",
            message="the grader failed on this test (not your fault); your instructor has the details",
            detail=f"Traceback (most recent call last):\n  {SECRET}\nKeyError: 'q'",
        ),
        CaseResult(
            "test_notebook_ran",
            "lab2.a",
            "notebook",
            "public",
            1.0,
            "not run",
            message="notebooks were not executed (--no-notebooks)",
        ),
    ]
    return build_result(
        student,
        CFG,
        cases,
        mode="functions",
        isolation="bwrap (test)",
        warnings=["FP_layers.py: not found; STE taken from hw4.ipynb"],
    )


def with_visibility(value: str):
    return replace(CFG, grading=replace(CFG.grading, hidden_visibility=value))


# ============================================================================ results.json


def test_results_json_of_a_made_up_result_is_valid_and_tags_every_test_with_its_item():
    data = gradescope_results(made_up_result(), CFG)
    assert problems(data) == []
    assert [t["tags"][0] for t in data["tests"]] == ["lab1.b", "lab1.b", "lab2.a", "lab2.b"]
    assert data["score"] == pytest.approx(1.0)  # half of lab1.b's 2 function points


@pytest.mark.parametrize("visibility", ["hidden", "after_due_date", "after_published"])
def test_hidden_tests_get_the_configs_visibility_and_public_tests_are_visible(visibility):
    data = gradescope_results(made_up_result(), with_visibility(visibility))
    seen = {t["name"].split()[1]: t["visibility"] for t in data["tests"]}
    assert seen == {
        "test_public_passes": "visible",
        "test_hidden_fails": visibility,
        "test_grader_breaks": visibility,
        "test_notebook_ran": "visible",
    }


def test_results_json_never_carries_the_graders_traceback():
    text = json.dumps(gradescope_results(made_up_result(), CFG))
    assert SECRET not in text and "KeyError" not in text


def test_a_public_only_run_leaves_out_the_tests_it_did_not_run():
    data = gradescope_results(made_up_result(), CFG, public_only=True)
    assert "test_notebook_ran" not in json.dumps(data)
    assert problems(data) == []


@pytest.mark.parametrize(
    "breakage",
    [
        "score_above_max",
        "total_not_sum",
        "no_tags",
        "bad_visibility",
        "unknown_item",
        "bad_status",
        "extra_key",
        "negative",
    ],
)
def test_the_schema_check_rejects_malformed_results(breakage):
    data = gradescope_results(made_up_result(), CFG)
    bad = copy.deepcopy(data)
    test = bad["tests"][0]
    if breakage == "score_above_max":
        test["score"] = test["max_score"] + 1
        bad["score"] += 1
    elif breakage == "total_not_sum":
        bad["score"] += 5
    elif breakage == "no_tags":
        test["tags"] = []
    elif breakage == "bad_visibility":
        test["visibility"] = "students"
    elif breakage == "unknown_item":
        test["tags"] = ["lab4.a", "function"]
    elif breakage == "bad_status":
        test["status"] = "error"
    elif breakage == "extra_key":
        bad["grade"] = 10
    elif breakage == "negative":
        test["score"] = -1
    assert problems(data) == [] and problems(bad) != []


# ============================================================================ feedback.md


def test_feedback_explains_failures_but_never_shows_the_instructors_detail():
    text = feedback_markdown(made_up_result(), CFG)
    assert "step 3: expected 0.25, got 0.5" in text
    assert "not your fault" in text
    assert SECRET not in text and "KeyError" not in text
    for item in ITEM_IDS:
        assert f"| {item} |" in text
    assert "FP_layers.py: not found" in text


def test_feedback_hides_hidden_tests_when_the_config_says_hidden():
    shown = feedback_markdown(made_up_result(), with_visibility("after_published"))
    hidden = feedback_markdown(made_up_result(), with_visibility("hidden"))
    assert "run_gd follows the update on other data too." in shown
    for secret in (
        "run_gd follows the update on other data too.",
        "step 3: expected 0.25, got 0.5",
        "test_hidden_fails",
        "prune_by_percentage prunes q percent.",
    ):
        assert secret not in hidden
    assert "1 hidden test(s) failed" in hidden


def test_feedback_of_a_grader_crash_says_it_is_not_the_students_fault():
    crashed = build_result("bob", CFG, [], grader_error="Traceback ...\nRuntimeError: boom", mode="full")
    text = feedback_markdown(crashed, CFG)
    assert "not your fault" in text and "RuntimeError" not in text


# ============================================================================ gradebook.csv


def test_a_crashed_submission_has_blank_cells_not_zeros():
    crashed = build_result("bob", CFG, [], grader_error="boom", mode="full")
    lines = gradebook_csv([made_up_result(), crashed]).splitlines()
    assert lines[0].split(",") == list(COLUMNS)
    assert lines[2] == "bob" + "," * (len(COLUMNS) - 1)
    alice = dict(zip(COLUMNS, lines[1].split(","), strict=True))
    assert alice["lab1.b"] == "1" and alice["total"] == "1"


def test_points_are_written_without_float_noise():
    assert [fmt_points(x) for x in (6.0, 2.5, 1 / 3, -0.0, 0.1 + 0.2, 4.99999999)] == [
        "6",
        "2.5",
        "0.3333",
        "0",
        "0.3",
        "5",
    ]
    assert fmt_points(2 / 3, 2) == "0.67"


# ============================================================================ the graded samples


@pytest.mark.slow
def test_the_sample_batch_ran_to_the_end_without_grader_errors(sample_batch):
    assert sample_batch.returncode == 0, sample_batch.stderr[-3000:]
    students = sample_batch.students()
    assert [r["student"] for r in sample_batch.gradebook()] == sorted(students)
    for student in students:  # the printed gradebook names everyone
        assert any(line.startswith(student + " ") for line in sample_batch.stdout.splitlines())
    assert not (sample_batch.out / "grader-errors").exists()


@pytest.mark.slow
def test_no_feedback_shows_a_memory_address(sample_batch):
    """A failing example's arguments include the grader's own objects (the ``submission``
    fixture): their text must not change from one grading to the next (determinism)."""
    import re

    shown = {s: re.findall(r"object at 0x[0-9a-f]+", (sample_batch.out / s / "feedback.md").read_text())
             for s in sample_batch.students()}
    assert not {s: found[:2] for s, found in shown.items() if found}


@pytest.mark.slow
def test_every_results_json_of_the_samples_is_schema_valid(sample_batch):
    bad = {s: problems(sample_batch.results_json(s)) for s in sample_batch.students()}
    assert {s: p for s, p in bad.items() if p} == {}


@pytest.mark.slow
def test_gradebook_rows_add_up_and_agree_with_each_results_json(sample_batch):
    assert list(sample_batch.gradebook()[0]) == list(COLUMNS)
    for row in sample_batch.gradebook():
        student = row["student"]
        cells = {item: float(row[item]) for item in ITEM_IDS}
        assert sum(cells.values()) == pytest.approx(float(row["total"]), abs=1e-3), student
        data = sample_batch.results_json(student)
        assert data["score"] == pytest.approx(float(row["total"]), abs=1e-3), student
        for item in ITEM_IDS:
            tagged = sum(t["score"] for t in data["tests"] if t["tags"][0] == item)
            assert tagged == pytest.approx(cells[item], abs=1e-3), (student, item)
        result = sample_batch.result(student)
        assert {i: round(result.items[i].score, 4) for i in ITEM_IDS} == pytest.approx(cells, abs=1e-4)


@pytest.mark.slow
def test_hidden_sample_tests_follow_the_configs_visibility(sample_batch):
    student = sample_batch.students()[0]
    visibility = {f"{c.item} {c.name}": c.visibility for c in sample_batch.result(student).cases()}
    assert "hidden" in visibility.values() and "public" in visibility.values()
    for test in sample_batch.results_json(student)["tests"]:
        want = "visible" if visibility[test["name"]] == "public" else CFG.grading.hidden_visibility
        assert test["visibility"] == want, test["name"]


@pytest.mark.slow
def test_sample_feedback_states_the_automatic_points_of_the_record(sample_batch):
    for student in sample_batch.students():
        result = sample_batch.result(student)
        text = (sample_batch.out / student / "feedback.md").read_text()
        assert f"**Automatic points: {fmt_points(result.score)} of {fmt_points(result.possible)}**" in text
        for case in result.cases():
            if case.detail:
                assert case.detail not in text


def test_a_saved_and_reloaded_result_keeps_the_rubric_order():
    """Records are saved with sorted keys; outputs must still list tf.2 before tf.10."""
    from grader.batch import Job, make_record, result_of
    from grader.grade import GradeOptions

    job = Job("alice", "alice", "/nowhere", "folder", "key", "/nowhere", GradeOptions())
    record = json.loads(json.dumps(make_record(job, made_up_result()), sort_keys=True))
    result = result_of(record)
    assert list(result.items) == list(ITEM_IDS)
    text = feedback_markdown(result, CFG)
    assert text.index("| tf.2 |") < text.index("| tf.10 |") < text.index("| lab1.a |")
    names = [t["tags"][0] for t in gradescope_results(result, CFG)["tests"]]
    assert names == ["lab1.b", "lab1.b", "lab2.a", "lab2.b"]


def test_feedback_says_not_run_rather_than_zero_of_zero():
    text = feedback_markdown(made_up_result(), CFG)
    assert "| lab2.a | Lab 2 (a): evaluate the pretrained model | 0 / 2 | not run in this grading |" in text
    assert "0 of 0" not in text


def test_a_self_checks_notebook_notes_are_shown_once_whatever_their_indent():
    """A notebook run's notes are also warnings of the result: the report shows them in the
    notebook section only, told apart by value (``notebook_run["notes"]``), not by the section's
    formatting."""
    from grader.outputs.selfcheck import render

    note = "hw4.ipynb: .cuda() ran on the CPU"
    result = build_result("alice", CFG, [], mode="public", warnings=[note, "another warning"])
    result.notebook_run = {"ok": True, "lines": ["hw4.ipynb: ran to the end (27 code cells)", f"    - {note}"],
                           "notes": [note]}
    text = render(result, "alice")
    assert text.count(note) == 1, text
    assert "note: another warning" in text
