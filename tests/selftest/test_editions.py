"""Issue 12: both editions install anywhere, judge like the full grader, and the student's holds no answer.

Each edition is built from this tree, pip-installed (non-editable, no package index) into a fresh
virtual environment outside the checkout (``edition_support.fresh_env``: third-party packages hard
linked from this suite's environment, nothing of hw4grade) and run from a folder outside the
checkout with a clean environment, as a student, a course's CI or an instructor would.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml
from edition_support import (
    BUGGY,
    CORRECT,
    ROOT,
    SUBMISSIONS,
    TIMES,
    buggy_lab,
    check_many,
    clean_env,
    fresh_env,
    installed,
    installed_files,
    public_verdicts,
    run,
    timed,
)

from grader import assign
from grader.edition.build import leaks
from grader.edition.contents import full_files, student_files
from reference.config import load

# Minutes: wheels installed into fresh environments, the self-check of every buggy sample, the
# sample batch for the full grader's verdicts.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

CFG = load()
#: the full edition's message adds why error-carried-forward points were given back; the verdict
#: and the rest of the message are the student edition's
_CREDIT_NOTE = re.compile(r"\n\n\(\d+ of these \d+ runs still earn their points.*\)\Z", re.S)
#: object addresses in Hypothesis's report of a failing example differ between any two runs
_ADDRESS = re.compile(r" at 0x[0-9a-f]+>")


def _same_text(message: str) -> str:
    return _ADDRESS.sub(" at 0x...>", _CREDIT_NOTE.sub("", message))


# editions_dir, edition_wheels, student_env and student_checks are in conftest.py: the student
# edition's self-check of every buggy sample starts in the background with the session, as the
# batches do.
@pytest.fixture(scope="session", autouse=True)
def _report_times():
    yield
    if TIMES:
        print("\nedition tests, seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in TIMES.items()))


# Session-scoped, not module-scoped: this module's batch tests run last, and a module fixture
# would be built again for them (test_suite_markers.py says why).
@pytest.fixture(scope="session")
def full_env(editions_dir, edition_wheels) -> Path:
    return installed(editions_dir, edition_wheels["full"], "full")


def _copy(sample: Path, dest: Path) -> Path:
    shutil.copytree(sample, dest, ignore=shutil.ignore_patterns("expected.json"))
    return dest


# ----------------------------------------------------------------------------- installing


@pytest.mark.parametrize("edition", ["student", "full"])
def test_each_edition_runs_from_its_own_installed_files(edition, request, editions_dir):
    """Installed non-editable: the package, its tests and data come from the environment's
    site-packages, never from the checkout; the student edition says which it is."""
    python = request.getfixturevalue(f"{edition}_env")
    probe = ("import grader, reference.config as c, grader.grade as g; from grader.edition import current; "
             "print(grader.__file__); print(c.REPO_ROOT); print(g.RUBRIC_DIR); print(current())")
    proc = run(python, "-c", probe, cwd=editions_dir)
    assert proc.returncode == 0, proc.stderr
    package, data, rubric, which = proc.stdout.split()
    site = str(python.parent.parent)
    assert all(p.startswith(site) for p in (package, data, rubric)), proc.stdout
    assert not any(p.startswith(str(ROOT)) for p in (package, data, rubric))
    assert Path(rubric).is_dir() and which == edition


@pytest.mark.parametrize("edition", ["full", "student"])
def test_pip_wheel_of_the_checkout_builds_each_edition(edition, editions_dir):
    """``pip wheel .`` goes through the project's own backend and gives the full edition's files;
    ``--config-settings edition=student`` the student edition's."""
    import zipfile

    started = time.monotonic()
    out = editions_dir / f"pip-wheel-{edition}"
    proc = run(Path(sys.executable), "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out),
               "--config-settings", f"edition={edition}", str(ROOT), cwd=editions_dir)
    timed(f"pip wheel . ({edition})", started)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = set(zipfile.ZipFile(next(out.glob("hw4grade*.whl"))).namelist())
    want = full_files(ROOT) if edition == "full" else student_files(ROOT, CFG.path)
    assert set(want) <= names
    assert ("reference/lab1.py" in names) == (edition == "full")


# ----------------------------------------------------------------------------- judging


def test_installed_student_edition_passes_every_public_test_on_the_correct_sample(student_env, editions_dir):
    """``hw4grade check`` of the installed student edition on the solution: every public test
    passes (as many as the full edition has), exit status 0."""
    sample = _copy(CORRECT, editions_dir / "alice-correct")
    started = time.monotonic()
    proc = run(student_env.parent / "hw4grade", "check", ".", cwd=sample)
    timed("student edition: hw4grade check correct", started)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    public = _public_test_count()
    assert f"{public} of {public} public tests pass" in proc.stdout, proc.stdout


def _public_test_count() -> int:
    from grader.edition.shake import shake

    rubric = ROOT / "tests" / "rubric"
    return len(shake({p.name: p.read_text() for p in rubric.glob("*.py") if p.name != "conftest.py"}).public)


def test_installed_full_edition_checks_and_grades_the_correct_sample(full_env, editions_dir):
    """The full edition installed non-editable: ``check`` passes every public test, ``grade``
    gives the solution its expected points (function tests) and ``gradescope`` bundles it."""
    sample = _copy(CORRECT, editions_dir / "subs" / "alice")
    started = time.monotonic()
    proc = run(full_env.parent / "hw4grade", "check", str(sample), cwd=editions_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run(full_env.parent / "hw4grade", "grade", str(sample.parent), "--out", str(editions_dir / "graded"),
               "--no-notebooks", "--workers", "1", "--quiet", cwd=editions_dir)
    timed("full edition: check + grade correct", started)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    bundle = editions_dir / "autograder.zip"
    proc = run(full_env.parent / "hw4grade", "gradescope", "--out", str(bundle), cwd=editions_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import zipfile

    names = set(zipfile.ZipFile(bundle).namelist())
    assert {"reference/lab1.py", "tests/rubric/test_tf.py", "pyproject.toml", "setup.sh"} <= names
    assert not any("_bundle" in n for n in names)
    results = json.loads((editions_dir / "graded" / "alice" / "results.json").read_text())
    want = json.loads((CORRECT / "expected.json").read_text())["points_no_notebooks"]
    by_item: dict[str, float] = {}
    for t in results["tests"]:
        for tag in t.get("tags", []):
            by_item[tag] = by_item.get(tag, 0.0) + t["score"]
    wrong = {i: (round(by_item.get(i, 0.0), 3), w) for i, w in want.items()
             if not (w[0] - 1e-3 <= by_item.get(i, 0.0) <= w[1] + 1e-3 if isinstance(w, list)
                     else abs(by_item.get(i, 0.0) - w) <= 1e-3)}
    assert not wrong, f"items off their expected points (got, want): {wrong}"


def test_installed_student_edition_checks_every_buggy_sample_without_a_grader_error(student_checks):
    """Every self-check of the installed student edition ran its public tests to a verdict (the
    comparison with the full grader is below). Apart from it so that the checks run while the
    session's sample batch grades, not after it (the tests that read the batch run last)."""
    assert {sid: r["grader_error"][-300:] for sid, r in student_checks.items() if r["grader_error"]} == {}
    for sid, result in student_checks.items():
        assert public_verdicts(result), f"{sid}: no public test ran"


def test_student_edition_gives_the_full_graders_public_verdicts_on_every_buggy_sample(student_checks, sample_batch):
    """The installed student edition's self-check and the full grader (the suite's sample batch)
    give every public test the same verdict on the correct sample and every buggy sample (the
    public tests of the lab its mistake is in), with the same message (the full edition may add
    why it gave error-carried-forward points back)."""
    assert student_checks["correct"]["grader_error"] is None
    assert all(s == "passed" for s, _ in public_verdicts(student_checks["correct"]).values())
    differ = []
    for sample in [CORRECT, *BUGGY]:
        sid = "correct" if sample == CORRECT else f"buggy-{sample.name}"
        mine = {name: (status, _same_text(message)) for name, (status, message) in
                public_verdicts(student_checks[sid]).items()}
        full = {name: (status, _same_text(message)) for name, (status, message) in
                public_verdicts(json.loads(sample_batch.result(sample_batch.student_for(sample)).to_json())).items()
                if sample == CORRECT or buggy_lab(sample) is None or name.startswith(f"test_{buggy_lab(sample)}")}
        assert set(mine) == set(full), f"{sid}: different public tests ran: {set(mine) ^ set(full)}"
        for name in sorted(full):
            if mine[name][0] != full[name][0]:
                differ.append(f"{sid} {name}: student edition {mine[name][0]}, full grader {full[name][0]}: "
                              f"{mine[name][1][:300]!r} / {full[name][1][:300]!r}")
            elif mine[name][1] != full[name][1]:
                differ.append(f"{sid} {name}: same verdict, other message:\n{mine[name][1][:600]}\n---\n"
                              f"{full[name][1][:600]}")
    assert not differ, "\n".join(differ[:10])


def test_installed_full_edition_gives_the_same_public_verdicts_as_the_checkout(full_env, editions_dir, sample_batch):
    """The installed full edition's self-check on one buggy sample per lab (and the one whose
    runners earn error-carried-forward credit) matches the checkout's grader, messages included."""
    picks = ["lab1_gradient_missing_factor_2", "lab1_trims_the_largest", "lab2_q_as_fraction",
             "lab2_sparsity_counts_nonzeros", "lab3_floor_rounding", "nb_fake_sparsity"]
    samples = {name: SUBMISSIONS / "buggy" / name for name in picks}
    started = time.monotonic()
    got = check_many(full_env, samples, editions_dir / "full-checks")
    timed(f"full edition: check {len(samples)} samples", started)
    for name, sample in samples.items():
        want = public_verdicts(json.loads(sample_batch.result(sample_batch.student_for(sample)).to_json()))
        assert {k: (s, _same_text(m)) for k, (s, m) in public_verdicts(got[name]).items()} == \
            {k: (s, _same_text(m)) for k, (s, m) in want.items()}, name


# ----------------------------------------------------------------------------- no answers


@pytest.mark.parametrize("isolation", ["bwrap", "rlimit"])
def test_installed_full_edition_keeps_its_reference_out_of_the_sandbox(full_env, editions_dir, isolation):
    """Installed non-editable, the reference solutions and the rubric tests sit in the environment
    every sandbox reads; a submission importing ``reference.lab1`` (mal_uses_reference) must not
    get it, at either isolation level."""
    sample = SUBMISSIONS / "malicious" / "mal_uses_reference"
    started = time.monotonic()
    got = check_many(full_env, {"mal": sample}, editions_dir / f"full-secret-{isolation}", workers=1,
                     isolation=isolation)["mal"]
    timed(f"full edition: hostile import at {isolation}", started)
    assert isolation in got["isolation"]
    assert "found=1" not in got["output"], got["output"][-2000:]
    status, message = public_verdicts(got)["test_lab1e_soft_threshold_on_examples"]
    assert status == "failed", message




def test_installed_student_edition_holds_no_reference_line_hidden_test_or_tf_key(student_env):
    """Every file pip installed for the student edition is scanned for each line of
    reference/lab*.py that students do not already have, each hidden test's name and the T/F key."""
    files = installed_files(student_env, "hw4grade_student")
    assert any(rel.endswith("tests/rubric/test_lab2_b_prune_by_percentage.py") for rel in files)
    assert not any(rel.startswith("reference/lab") for rel in files)
    assert leaks(files, ROOT, CFG.tf_key) == []


def test_the_scan_finds_a_reference_line_a_hidden_test_and_the_key(edition_wheels):
    """The scan is not blind: each kind of secret planted in the student edition's files is found."""
    files = student_files(ROOT, CFG.path)
    solution = (ROOT / "reference" / "lab2.py").read_text()
    line = next(ln for ln in solution.splitlines() if "np.percentile" in ln)
    planted = {
        "reference line": {**files, "grader/extra.py": f"x = 1\n    {line.strip()}\n".encode()},
        "hidden test": {**files, "grader/extra.py": b"# see test_lab2b_leaves_the_bias_alone\n"},
        "T/F key": {**files, "grader/extra.json": json.dumps(CFG.tf_key).encode()},
        "key as toml": {**files, "reference/assignment.toml": (ROOT / "reference" / "assignment.toml").read_bytes()},
    }
    for what, tree in planted.items():
        assert leaks(tree, ROOT, CFG.tf_key), f"the scan missed a planted {what}"


def test_student_edition_refuses_the_instructor_commands(student_env, editions_dir):
    commands = (["grade", str(editions_dir), "--out", str(editions_dir / "g")], ["assign"],
                ["gradescope", "--out", "x.zip"])
    for command in commands:
        proc = run(student_env.parent / "hw4grade", *command, cwd=editions_dir)
        assert proc.returncode == 2 and "student edition" in proc.stderr, (command, proc.stderr)


# ----------------------------------------------------------------------------- the CI workflow


def test_the_template_workflow_runs_ci_from_the_student_edition_in_a_clean_environment(edition_wheels, editions_dir):
    """The student template's workflow, run step by step in a fresh environment: checkout (a
    student's repository: the template's workflow and a finished hand-in), setup-python (a
    fresh venv with no hw4grade), its install step with the course's ``pip_spec`` as a path in the
    repository, ``hw4grade ci .``, and the artifact folder it uploads. What this machine cannot
    do: reach GitHub or a package index (torch and the other requirements are already in the
    fresh environment, so pip installs only the student edition), and ``sudo apt-get install
    bubblewrap`` (bubblewrap must already be here: the line is checked, not run)."""
    spec = f"./.hw4/{edition_wheels['student'].name}"
    cfg = dataclasses.replace(CFG, grading=dataclasses.replace(CFG.grading, pip_spec=spec))
    template = assign.render("template", cfg).files
    repo = _copy(CORRECT, editions_dir / "hw4-alice")
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "hw4.yml").write_text(template[".github/workflows/hw4.yml"])
    (repo / ".hw4").mkdir()
    shutil.copy(edition_wheels["student"], repo / spec)
    started = time.monotonic()
    python = fresh_env(editions_dir / "ci-env")
    steps = yaml.safe_load((repo / ".github" / "workflows" / "hw4.yml").read_text())["jobs"]["grade"]["steps"]
    summary = editions_dir / "step-summary.md"
    env = clean_env(python.parent.parent, repo, GITHUB_STEP_SUMMARY=str(summary), GITHUB_REPOSITORY="course/hw4-alice",
                    CI="true", GITHUB_ACTIONS="true")
    ran, uploaded = [], None
    for step in steps:
        uses = step.get("uses", "")
        if uses.startswith(("actions/checkout", "actions/setup-python")):
            continue  # the repository above; the fresh venv's python first on PATH
        if uses.startswith("actions/upload-artifact"):
            uploaded = repo / step["with"]["path"]
            continue
        for line in step["run"].strip().splitlines():
            if line.startswith("sudo apt-get"):
                assert "bubblewrap" in line and shutil.which("bwrap"), line
                continue
            proc = _bash(line, repo, env)
            ran.append((line, proc.returncode))
            assert proc.returncode == 0, f"workflow step `{line}` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    timed("workflow: fresh env, install, hw4grade ci", started)
    assert [line for line, _ in ran][-1] == "hw4grade ci ."
    assert uploaded is not None and (uploaded / "results.json").is_file() and (uploaded / "feedback.md").is_file()
    assert "lab1.a" in summary.read_text()
    files = installed_files(python, "hw4grade_student")
    assert any(rel.startswith("grader/_bundle/tests/rubric/") for rel in files)


def _bash(line: str, cwd: Path, env: dict[str, str]):
    import subprocess

    return subprocess.run(["bash", "-eo", "pipefail", "-c", line], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
