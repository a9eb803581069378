"""``manual.csv`` and ``hw4grade merge``: the points a person gives, merged into every output."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from batch_support import fake_grade, make_submissions, run_cli

import grader.batch.run
from grader.batch import run_batch
from grader.grade import GradeOptions
from grader.outputs.manual import COLUMNS, manual_items
from grader.outputs.results_json import problems
from reference.config import load

CFG = load()
ALICE_ANSWERS = '"1.1":\n  choice: F\n  explanation: "Pruning removes weights, not whole layers."\n'


@pytest.fixture(autouse=True)
def steady_fingerprint(monkeypatch):
    """The fake grader reads none of the grader's sources (which other work may edit meanwhile)."""
    monkeypatch.setattr(grader.batch.run, "grading_fingerprint", lambda options, cfg: "fake-grader")


@pytest.fixture
def graded(tmp_path):
    """Three students graded by the fake grader (lab1.b only: 2, 1 and 0 points)."""
    subs = make_submissions(tmp_path / "subs", {"alice": "score 1", "bob": "score 0.5", "carol": "score 0"})
    (subs / "alice" / "answers.yaml").write_text(ALICE_ANSWERS)
    out = tmp_path / "out"
    run_batch(subs, out, GradeOptions(notebooks=False), workers=2, grade_fn=fake_grade, progress=False)
    return subs, out


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_sheet(path: Path, entries: list[dict[str, str]], delimiter: str = ",") -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    for e in entries:
        writer.writerow({c: e.get(c, "") for c in COLUMNS})
    path.write_text(buf.getvalue())
    return path


def snapshot(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and "/logs/" not in p.as_posix() and p.name != "lock"
    }


def gradebook(out: Path) -> dict[str, dict[str, str]]:
    return {r["student"]: r for r in rows(out / "gradebook.csv")}


def test_the_sheet_has_a_row_per_student_and_manual_item_with_the_students_explanation(graded):
    _, out = graded
    sheet = rows(out / "manual.csv")
    items = manual_items(CFG)
    assert list(sheet[0]) == list(COLUMNS)
    assert [(r["student"], r["item"]) for r in sheet] == [
        (s, i) for s in ("alice", "bob", "carol") for i in items
    ]
    alice_tf1 = next(r for r in sheet if r["student"] == "alice" and r["item"] == "tf.1")
    assert alice_tf1["student_answer"] == "Pruning removes weights, not whole layers."
    assert (
        "chose F" in alice_tf1["what_to_grade"] and f"key {CFG.tf_key['1.1']}" in alice_tf1["what_to_grade"]
    )
    bob_tf1 = next(r for r in sheet if r["student"] == "bob" and r["item"] == "tf.1")
    assert "no choice given" in bob_tf1["what_to_grade"]
    assert all(r["points"] == "" for r in sheet)
    assert {r["item"]: float(r["max_points"]) for r in sheet} == {i: CFG.rubric[i].manual for i in items}


def test_merge_adds_the_points_to_the_gradebook_results_and_feedback(graded):
    _, out = graded
    before = gradebook(out)
    sheet = rows(out / "manual.csv")
    for r in sheet:
        if (r["student"], r["item"]) == ("alice", "tf.1"):
            r.update(points="1", comment="Right idea, well put.")
        if (r["student"], r["item"]) == ("bob", "lab1.a"):
            r["points"] = "1.5"
    write_sheet(out / "manual.csv", sheet)
    proc = run_cli("merge", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "merged 2 score(s) for 2 student(s)" in proc.stdout
    after = gradebook(out)
    assert float(after["alice"]["tf.1"]) == float(before["alice"]["tf.1"]) + 1
    assert float(after["alice"]["total"]) == float(before["alice"]["total"]) + 1
    assert float(after["bob"]["lab1.a"]) == float(before["bob"]["lab1.a"]) + 1.5
    assert after["carol"] == before["carol"]
    for student, row in after.items():
        assert abs(sum(float(row[i]) for i in CFG.rubric) - float(row["total"])) < 1e-3
        data = json.loads((out / student / "results.json").read_text())
        assert problems(data) == []
        assert abs(data["score"] - float(row["total"])) < 1e-3
    alice = json.loads((out / "alice" / "results.json").read_text())
    by_hand = [t for t in alice["tests"] if t["tags"] == ["tf.1", "manual"]]
    assert len(by_hand) == 1 and by_hand[0]["score"] == 1 and "Right idea, well put." in by_hand[0]["output"]
    assert "Right idea, well put." in (out / "alice" / "feedback.md").read_text()
    refreshed = {(r["student"], r["item"]): r["points"] for r in rows(out / "manual.csv")}
    assert refreshed["alice", "tf.1"] == "1" and refreshed["bob", "lab1.a"] == "1.5"


def test_merge_reports_every_bad_row_by_line_and_changes_nothing(graded, tmp_path):
    _, out = graded
    sheet = write_sheet(
        tmp_path / "filled.csv",
        [
            {"student": "alice", "item": "tf.1", "points": "1"},  # line 2: fine
            {"student": "dave", "item": "tf.1", "points": "1"},  # line 3: unknown student
            {"student": "alice", "item": "lab9.z", "points": "1"},  # line 4: unknown item
            {"student": "alice", "item": "lab2.b", "points": "1"},  # line 5: no manual points
            {"student": "alice", "item": "tf.2", "points": "1.5"},  # line 6: above the maximum
            {"student": "bob", "item": "tf.3", "points": "-1"},  # line 7: negative
            {"student": "bob", "item": "tf.4", "points": "full"},  # line 8: not a number
            {"student": "alice", "item": "tf.1", "points": "0"},  # line 9: twice
        ],
    )
    before = snapshot(out)
    proc = run_cli("merge", str(sheet), "--out", str(out))
    assert proc.returncode == 1
    err = proc.stderr
    for line, words in [
        (3, ["'dave'", "not in this batch"]),
        (4, ["'lab9.z'", "not a rubric item"]),
        (5, ["'lab2.b'", "no points graded by hand"]),
        (6, ["above its maximum of 1"]),
        (7, ["between 0 and 1"]),
        (8, ["'full'", "not a number"]),
        (9, ["appears twice", "line 2"]),
    ]:
        hit = [ln for ln in err.splitlines() if f"filled.csv: line {line}:" in ln]
        assert len(hit) == 1 and all(w in hit[0] for w in words), (line, err)
    assert "nothing was merged" in err
    assert snapshot(out) == before


def test_merge_names_the_file_and_columns_when_the_sheet_is_not_a_manual_sheet(graded):
    _, out = graded
    proc = run_cli("merge", str(out / "gradebook.csv"), "--out", str(out))
    assert proc.returncode == 1
    assert "gradebook.csv: missing column(s) item, points" in proc.stderr


def test_merge_without_a_graded_batch_is_a_usage_error(tmp_path):
    proc = run_cli("merge", "--out", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and "no graded batch there" in proc.stderr


def test_a_blank_cell_keeps_the_score_merged_earlier_and_spreadsheet_dialects_are_read(graded, tmp_path):
    _, out = graded
    first = write_sheet(tmp_path / "a.csv", [{"student": "alice", "item": "tf.1", "points": "1"}])
    assert run_cli("merge", str(first), "--out", str(out)).returncode == 0
    # A European spreadsheet: semicolons between cells, a comma before the decimals.
    second = write_sheet(
        tmp_path / "b.csv",
        [
            {"student": "alice", "item": "tf.1", "points": ""},
            {"student": "alice", "item": "lab1.a", "points": "0,5"},
        ],
        delimiter=";",
    )
    proc = run_cli("merge", str(second), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "1 row(s) still blank" in proc.stdout
    row = gradebook(out)["alice"]
    assert float(row["tf.1"]) == 1 and float(row["lab1.a"]) == 0.5


def test_an_edited_unmerged_sheet_survives_a_rerun_of_grade(graded, capsys):
    subs, out = graded
    sheet = rows(out / "manual.csv")
    sheet[0]["points"] = "1"
    write_sheet(out / "manual.csv", sheet)
    edited = (out / "manual.csv").read_bytes()
    report = run_batch(
        subs, out, GradeOptions(notebooks=False), workers=2, grade_fn=fake_grade, progress=False
    )
    assert report.graded == []
    assert (out / "manual.csv").read_bytes() == edited
    assert (out / "manual.new.csv").is_file()
    assert "was edited and not merged" in capsys.readouterr().err
    assert run_cli("merge", "--out", str(out)).returncode == 0
    assert not (out / "manual.new.csv").exists()
    assert rows(out / "manual.csv")[0]["points"] == "1"


def test_merged_scores_survive_regrading_a_changed_submission(graded, tmp_path):
    subs, out = graded
    sheet = write_sheet(tmp_path / "s.csv", [{"student": "alice", "item": "tf.1", "points": "1"}])
    assert run_cli("merge", str(sheet), "--out", str(out)).returncode == 0
    (subs / "alice" / "behaviour.txt").write_text("score 0.5")
    report = run_batch(
        subs, out, GradeOptions(notebooks=False), workers=2, grade_fn=fake_grade, progress=False
    )
    assert report.graded == ["alice"]
    row = gradebook(out)["alice"]
    assert float(row["lab1.b"]) == 1 and float(row["tf.1"]) == 1 and float(row["total"]) == 2


@pytest.mark.slow
def test_merge_into_the_graded_samples(sample_batch, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(sample_batch.out, out, ignore=shutil.ignore_patterns("lock"))
    student = sample_batch.students()[0]
    before = gradebook(out)[student]
    sheet = write_sheet(
        tmp_path / "s.csv",
        [
            {"student": student, "item": "lab1.a", "points": "2"},
            {"student": student, "item": "tf.10", "points": "0.5"},
        ],
    )
    proc = run_cli("merge", str(sheet), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    after = gradebook(out)[student]
    assert float(after["total"]) == pytest.approx(float(before["total"]) + 2.5)
    data = json.loads((out / student / "results.json").read_text())
    assert problems(data) == [] and data["score"] == pytest.approx(float(after["total"]))
    others = [s for s in sample_batch.students() if s != student]
    assert all(gradebook(out)[s] == {r["student"]: r for r in sample_batch.gradebook()}[s] for s in others)
