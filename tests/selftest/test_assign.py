"""`hw4grade assign`: the template and the solution sample are generated from reference/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from grader import assign


def test_committed_template_and_solution_are_up_to_date():
    assert assign.check() == []


@pytest.fixture
def scratch_repo(tmp_path, repo_root):
    """A copy of the parts of the repository that `assign --check` reads (it also records the
    public tests' values on the solution, so the fixtures and the Hypothesis profiles come too)."""
    for part in ("reference", "grader", "student_template", "tests/rubric", "fixtures/data"):
        shutil.copytree(repo_root / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("tests/conftest.py", "fixtures/pretrained_model.pt", "fixtures/pretrained_model.json"):
        shutil.copy(repo_root / part, tmp_path / part)
    (tmp_path / "fixtures" / "submissions" / "correct").mkdir(parents=True)
    shutil.copytree(repo_root / "fixtures/submissions/correct/reference",
                    tmp_path / "fixtures/submissions/correct/reference")
    return tmp_path


def _check(root):
    """``python -m grader assign --check`` as an instructor types it, on the copy at ``root``, with
    the session's reference cache (a copy grades as the same version; never the user's ~/.cache)."""
    return subprocess.run([sys.executable, "-m", "grader", "assign", "--check"],
                          cwd=root, capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root),
                               "HW4_CACHE_DIR": os.environ["HW4_CACHE_DIR"]})


def test_assign_check_passes_on_an_unchanged_copy(scratch_repo):
    result = _check(scratch_repo)
    assert result.returncode == 0, result.stdout + result.stderr


def test_assign_check_fails_when_the_recorded_values_are_stale(scratch_repo):
    """A public test that asks the reference something new (another example) needs a new recording."""
    path = scratch_repo / "tests" / "rubric" / "test_lab1_e_proximal.py"
    text = path.read_text()
    assert "([2.0, -3.5, 0.25], 0.0)," in text
    path.write_text(text.replace("([2.0, -3.5, 0.25], 0.0),", "([2.0, -3.5, 0.25], 0.0),\n    ([4.0, -1.0], 0.5),"))
    result = _check(scratch_repo)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "reference/assignment.recorded.json: out of date" in result.stdout


def test_assign_check_fails_when_a_public_test_needs_the_reference(scratch_repo):
    """The student edition has no reference: a public test importing it is refused by name."""
    path = scratch_repo / "tests" / "rubric" / "test_lab2_d_iterative_schedule.py"
    text = path.read_text()
    old = 'SCHEDULE = [oracle.call("reference.lab2:iterative_schedule", e) for e in range(PRUNE_EPOCHS)]'
    assert old in text
    path.write_text(text.replace(old, "import reference.lab2 as ref  # noqa: E402\n"
                                      "SCHEDULE = [ref.iterative_schedule(e) for e in range(PRUNE_EPOCHS)]"))
    result = _check(scratch_repo)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "test_lab2_d_iterative_schedule.py" in result.stdout and "reference.lab2" in result.stdout


def test_assign_check_fails_when_the_student_edition_would_name_a_hidden_test(scratch_repo):
    path = scratch_repo / "tests" / "rubric" / "test_lab2_b_prune_by_percentage.py"
    path.write_text(path.read_text() + "\n# the bias: see test_lab2b_leaves_the_bias_alone\n")
    result = _check(scratch_repo)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "names hidden test(s) test_lab2b_leaves_the_bias_alone" in result.stdout


def test_assign_check_fails_after_a_reference_docstring_changes(scratch_repo):
    path = scratch_repo / "reference" / "lab2.py"
    path.write_text(path.read_text().replace("Prune the ``q`` percent smallest-magnitude weights",
                                             "Prune the q% smallest weights", 1))
    result = _check(scratch_repo)
    assert result.returncode != 0
    assert "student_template/hw4.ipynb" in result.stdout + result.stderr


def test_assign_check_fails_after_a_solution_body_changes(scratch_repo):
    """A body inside SOLUTION markers does not reach the template, but it reaches the solution sample."""
    path = scratch_repo / "reference" / "lab1.py"
    text = path.read_text()
    assert "return 2.0 * X.T @ (X @ np.ravel(W) - np.ravel(y))" in text
    path.write_text(text.replace("return 2.0 * X.T @ (X @ np.ravel(W) - np.ravel(y))",
                                 "return 2 * X.T @ (X @ np.ravel(W) - np.ravel(y))"))
    result = _check(scratch_repo)
    assert result.returncode != 0
    assert "correct/reference/lab1.ipynb" in result.stdout + result.stderr


def test_template_stubs_replace_solutions_and_keep_the_todos():
    files = assign.render("template").files
    fp = files["FP_layers.py"]
    assert "raise NotImplementedError" in fp and "torch.round" not in fp
    assert "# TODO: alpha (scale) = max(w) - min(w)" in fp
    hw4 = json.loads(files["hw4.ipynb"])
    code = "\n".join("".join(c["source"]) for c in hw4["cells"] if c["cell_type"] == "code")
    assert "np.percentile" not in code  # the solution's threshold
    assert 'raise NotImplementedError("prune_by_percentage: your code here")' in code
    assert "BEGIN SOLUTION" not in code and "REFERENCE ONLY" not in code


def test_term_constants_are_written_from_the_config():
    files = assign.render("template").files
    lab1 = json.loads(files["lab1.ipynb"])
    code = "\n".join("".join(c["source"]) for c in lab1["cells"] if c["cell_type"] == "code")
    assert "def run_gd(X, y, lr=0.02, steps=200)" in code
    assert "for lam in [0.2, 0.5, 1.0, 2.0]:" in code
    assert "LR" not in code.split() and "STEPS" not in code


@pytest.mark.parametrize("name", ["hw4.ipynb", "lab1.ipynb"])
@pytest.mark.parametrize("mode", ["template", "solution"])
def test_notebooks_are_valid_nbformat_v4(mode, name):
    nb = nbformat.reads(assign.render(mode).files[name], as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4


def test_unbalanced_solution_marker_is_an_error():
    with pytest.raises(assign.AssignError, match="no # END SOLUTION"):
        assign.process_source("def f():\n    # BEGIN SOLUTION\n    return 1\n", "template", {})
