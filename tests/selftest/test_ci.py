"""``hw4grade ci``: the GitHub Actions job summary, annotations and the hw4-results/ artifact."""

from __future__ import annotations

import json
import shutil

import pytest
from batch_support import SUBMISSIONS, run_cli

from grader.cli import DEFAULTS
from grader.outputs import ci, escape
from grader.outputs.results_json import problems
from grader.results import CaseResult, build_result
from reference.config import REPO_ROOT, load

CFG = load()


def made_up():
    cases = [
        CaseResult(
            "test_gd",
            "lab1.b",
            "function",
            "public",
            1.0,
            "failed",
            0.0,
            doc="run_gd follows the update.",
            message="run_gd(X, y): step 1: expected 0.28, got 0.14\n  (a factor 2: 50%, 100%)",
            fault="student",
        ),
        CaseResult("test_loss", "lab1.a", "function", "public", 1.0, "passed", 1.0),
        CaseResult(
            "test_ste",
            "lab3.a",
            "function",
            "public",
            1.0,
            "failed",
            0.0,
            message="STE.forward: NotImplementedError: STE.forward: your code here",
            fault="student",
        ),
        CaseResult(
            "test_hidden",
            "lab2.b",
            "function",
            "hidden",
            1.0,
            "not run",
            0.0,
            message="hidden test: run when your submission is graded",
        ),
    ]
    return build_result("alice", CFG, cases, mode="public")


def test_workflow_command_values_are_escaped_as_github_does():
    assert escape.gh_data("50% done\r\nnext") == "50%25 done%0Anext"  # CR LF is one line break
    assert escape.gh_data("50% done\nnext") == "50%25 done%0Anext"
    assert escape.gh_property("lab1.b: a, b") == "lab1.b%3A a%2C b"


def test_annotations_say_what_failed_and_what_is_still_to_do():
    notes = ci.workflow_commands(made_up())
    assert notes[0].startswith("::error title=lab1.b%3A Lab 1 (b)%3A plain gradient descent::")
    assert "expected 0.28, got 0.14%0A  (a factor 2%3A 50%25" not in notes[0]  # data is not property-escaped
    assert "expected 0.28, got 0.14%0A  (a factor 2: 50%25, 100%25)" in notes[0]
    assert notes[1].startswith("::warning title=lab3.a to do::")
    assert len(notes) == 2 and not any("lab1.a" in n or "lab2.b" in n for n in notes)


def test_the_job_summary_is_a_table_of_public_items_and_names_no_hidden_test():
    text = ci.step_summary(made_up())
    assert (
        "| lab1.b | Lab 1 (b): plain gradient descent | 0 / 2 | ❌ failed | "
        "`run_gd(X, y): step 1: expected 0.28, got 0.14` |" in text  # the message is a code span
    )
    assert "| lab1.a |" in text and "✅ passed" in text and "⬜ to do" in text
    assert "test_hidden" not in text and "lab2.b" not in text
    assert "<details><summary>lab1.b: run_gd follows the update.</summary>" in text


def test_the_template_workflow_runs_ci_and_uploads_its_artifact_folder():
    workflow = (REPO_ROOT / "student_template" / ".github" / "workflows" / "hw4.yml").read_text()
    assert "hw4grade ci ." in workflow
    assert f"path: {DEFAULTS.ci_out}/" in workflow


@pytest.mark.slow
def test_ci_on_a_push_with_a_failing_public_test(tmp_path, sample_batch):
    sample = SUBMISSIONS / "buggy" / "lab1_gd_missing_factor_2"
    repo = tmp_path / "hw4-alice"
    shutil.copytree(sample, repo)
    summary = tmp_path / "summary.md"
    summary.write_text("## earlier step\n")
    proc = run_cli(
        "ci",
        ".",
        cwd=repo,
        env={"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_REPOSITORY": "course/hw4-alice"},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = sample_batch.result(sample_batch.student_for(sample))
    failing = sorted({c.item for c in result.cases() if c.visibility == "public" and not c.passed})
    assert failing
    text = summary.read_text()
    assert text.startswith("## earlier step\n")  # appended, not overwritten
    for item in failing:
        assert f"| {item} |" in text and f"::error title={item}%3A" in proc.stdout
    data = json.loads((repo / DEFAULTS.ci_out / "results.json").read_text())
    assert problems(data) == []
    assert data["tests"] and all(t["visibility"] == "visible" for t in data["tests"])
    assert data["extra_data"]["mode"] == "public"
    assert "hw4-alice" in (repo / DEFAULTS.ci_out / "feedback.md").read_text()
    public = {
        f"{c.item} {c.name}": c.score
        for c in result.cases()
        if c.visibility == "public" and c.kind == "function"
    }
    assert {t["name"]: t["score"] for t in data["tests"]} == pytest.approx(public, abs=1e-4)
