"""``hw4grade`` as its users type it: usage errors, ``check``, ``python -m grader``. ``assign --check``'s
exit status (0 up to date, 1 stale, naming what) is tested on a copy of the repository in test_assign.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from batch_support import ROOT, SUBMISSIONS, run_cli

from grader.cli import DEFAULTS, build_parser


def test_python_dash_m_grader_is_the_command_line():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("check", "grade", "ci", "assign", "gradescope", "merge"):
        assert command in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "required: COMMAND"),
        (("grade", "fixtures/submissions"), "--out"),
        (("grade", "no/such/folder", "--out", "x"), "SUBMISSIONS no/such/folder: no such file or folder"),
        (("grade", "fixtures/submissions", "--out", "x", "--workers", "0"), "must be at least 1"),
        (("grade", "fixtures/submissions", "--out", "x", "--workers", "two"), "'two' is not a whole number"),
        (("grade", "fixtures/submissions", "--out", "x", "--layout", "nested"), "invalid choice"),
        (("check", "no/such/folder"), "DIR no/such/folder: no such folder"),
        (("check", "pyproject.toml"), "DIR pyproject.toml: not a folder"),
        (("ci", "no/such/folder"), "DIR no/such/folder: no such folder"),
        (("gradescope", "--out", "bundle.tar"), "the bundle is a .zip file"),
        (("--config", "no/such.toml", "check"), "assignment config not found"),
        (("frobnicate",), "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_a_message_naming_the_problem(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_defaults_live_in_one_place_and_the_parser_uses_them():
    parser = build_parser()
    grade = parser.parse_args(["grade", "s", "--out", "o"])
    assert (grade.workers, grade.layout, grade.isolation) == (
        DEFAULTS.workers,
        DEFAULTS.layout,
        DEFAULTS.isolation,
    )
    assert parser.parse_args(["check"]).dir == DEFAULTS.check_dir
    ci = parser.parse_args(["ci"])
    assert (ci.dir, ci.out) == (DEFAULTS.ci_dir, DEFAULTS.ci_out)
    assert DEFAULTS.workers >= 1


def test_data_root_and_checkpoint_reach_the_grading_options(monkeypatch, tmp_path):
    """--data-root and --checkpoint pass through to notebook runs (GradeOptions)."""
    import grader.batch
    from grader import cli

    seen = {}

    def fake_run_batch(submissions, out, options, **kw):
        seen["options"] = options
        raise grader.batch.BatchError("stop here")

    monkeypatch.setattr(grader.batch, "run_batch", fake_run_batch)
    with pytest.raises(SystemExit) as stop:
        cli.main(
            [
                "grade",
                str(SUBMISSIONS),
                "--out",
                str(tmp_path / "o"),
                "--data-root",
                "/data/cifar",
                "--checkpoint",
                "/data/pretrained_model.pt",
                "--no-notebooks",
            ]
        )
    assert stop.value.code == 2
    options = seen["options"]
    assert (options.data_root, options.checkpoint, options.notebooks) == (
        "/data/cifar",
        "/data/pretrained_model.pt",
        False,
    )


# ============================================================================ check


CHECKED = {
    "template": SUBMISSIONS / "partial" / "untouched_template",
    "correct": SUBMISSIONS / "correct" / "reference",
    "buggy": SUBMISSIONS / "buggy" / "lab1_gd_missing_factor_2",
}


@pytest.fixture(scope="session")  # not module: this module's batch tests run last (test_suite_markers.py)
def checks():
    """``hw4grade check`` on three samples, run side by side (each is a grading run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "grader", "check", str(path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, path in CHECKED.items()
    }
    done = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=1200)  # a check prints little: no pipe fills while we wait
        done[name] = (proc.returncode, out, err)
    return done


@pytest.mark.slow
def test_check_on_the_untouched_template_says_what_to_do_first_in_under_20_lines(checks):
    code, out, err = checks["template"]
    assert code == 1, err
    lines = out.strip().splitlines()
    assert len(lines) < 20, out
    assert "Nothing is implemented yet" in out
    steps = [ln.strip() for ln in lines if ln.strip()[:3] in ("1. ", "2. ", "3. ", "4. ")]
    assert steps[0].startswith("1. lab1.ipynb: loss, gradient"), out
    assert any("answers.yaml" in s for s in steps)


@pytest.mark.slow
def test_check_passes_on_the_correct_sample_and_lists_each_item(checks, sample_batch):
    code, out, err = checks["correct"]
    assert code == 0, out + err
    result = sample_batch.result(sample_batch.student_for(CHECKED["correct"]))
    public_items = sorted(
        {c.item for c in result.cases() if c.visibility == "public" and c.kind == "function"}
    )
    table = {
        ln.split()[0]: ln.split()[2]
        for ln in out.splitlines()
        if ln.split() and ln.split()[0] in public_items
    }
    assert table == {item: "passed" for item in public_items}
    assert "All public tests pass" in out


@pytest.mark.slow
def test_check_on_a_buggy_sample_shows_the_failing_call_and_exits_1(checks, sample_batch):
    code, out, err = checks["buggy"]
    assert code == 1, err
    result = sample_batch.result(sample_batch.student_for(CHECKED["buggy"]))
    failed = sorted({c.item for c in result.cases() if c.visibility == "public" and c.status == "failed"})
    assert failed, "the buggy sample should fail a public test"
    rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.split() and ln.split()[0] in failed}
    assert set(rows) == set(failed) and all(" FAILED " in r for r in rows.values())
    assert "Details of the first failures:" in out and "expected" in out
    assert f"Next: fix {failed[0]}." in out


@pytest.mark.slow
def test_check_never_names_a_hidden_test(checks, sample_batch):
    for name, path in CHECKED.items():
        _, out, _ = checks[name]
        result = sample_batch.result(sample_batch.student_for(path))
        hidden = {c.name for c in result.cases() if c.visibility == "hidden"}
        assert hidden, name
        assert [h for h in hidden if h in out] == [], name
        hidden_docs = {c.doc for c in result.cases() if c.visibility == "hidden" and c.doc} - {
            c.doc for c in result.cases() if c.visibility == "public"
        }
        assert [d for d in hidden_docs if d in out] == [], name


@pytest.mark.slow
def test_check_with_notebooks_runs_them_and_names_the_cell_that_fails(notebook_batch):
    """``hw4grade check --notebooks`` runs the notebooks in the fast grading mode and says, per
    notebook, whether it ran to the end, naming the cell and the error where it did not; such a
    notebook makes the check fail (exit 1) even when every public function test passes. The
    notebook batch ran this sample before with the same config, so the run comes from the
    session's cache."""
    sample = SUBMISSIONS / "buggy" / "nb_error_in_one_cell"
    proc = run_cli("check", str(sample), "--notebooks", env={"HW4_CONFIG": str(notebook_batch.config)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    section = proc.stdout.split("Notebooks (run in the fast grading mode):", 1)
    assert len(section) == 2, proc.stdout
    lines = section[1].splitlines()
    assert any(ln.strip().startswith("lab1.ipynb: ran to the end") for ln in lines), proc.stdout
    hw4 = [ln for ln in lines if "hw4.ipynb" in ln and "NameError" in ln]
    assert hw4 and "cell" in hw4[0], proc.stdout
