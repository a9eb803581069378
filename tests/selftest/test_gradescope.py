"""``hw4grade gradescope``: the autograder bundle, unpacked and run as Gradescope runs it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest
from batch_support import SUBMISSIONS, run_cli

from grader.outputs.gradescope import build_bundle
from grader.outputs.results_json import problems


@pytest.fixture(scope="session")  # not module: this module's batch tests run last (test_suite_markers.py)
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    proc = run_cli("gradescope", "--out", str(path))
    assert proc.returncode == 0, proc.stderr
    return path


def unpack(bundle, root):
    """Lay the bundle out as Gradescope does: /autograder/source holds the zip's files."""
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(root / "source")
        for info in zf.infolist():  # zipfile drops the modes: restore them
            (root / "source" / info.filename).chmod(info.external_attr >> 16 & 0o777)
    return root


def test_the_bundle_holds_the_grader_and_gradescopes_entry_points_and_no_samples(bundle):
    with zipfile.ZipFile(bundle) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    for name in ("setup.sh", "run_autograder"):
        assert stat.S_IMODE(infos[name].external_attr >> 16) == 0o755, name
    for name in (
        "grader/grade.py",
        "grader/plugin.py",
        "reference/assignment.toml",
        "tests/conftest.py",
        "student_template/resnet20.py",
        "requirements.txt",
        "fixtures/pretrained_model.pt",
    ):
        assert name in infos, name
    assert any(n.startswith("tests/rubric/test_") for n in infos)
    assert not any(
        n.startswith(("fixtures/submissions/", "tests/selftest/", ".venv/")) or "__pycache__" in n
        for n in infos
    )


def test_the_bundle_is_byte_for_byte_reproducible(bundle, tmp_path):
    again = tmp_path / "again.zip"
    build_bundle(again)
    assert again.read_bytes() == bundle.read_bytes()


def test_the_shell_scripts_parse(bundle, tmp_path):
    root = unpack(bundle, tmp_path / "autograder")
    for script in ("setup.sh", "run_autograder"):
        assert subprocess.run(["bash", "-n", str(root / "source" / script)], check=False).returncode == 0


def test_run_autograder_still_writes_a_valid_result_when_python_cannot_start(bundle, tmp_path):
    root = unpack(bundle, tmp_path / "autograder")
    (root / "submission").mkdir()
    proc = subprocess.run(
        ["bash", str(root / "source" / "run_autograder")],
        capture_output=True,
        text=True,
        env={**os.environ, "HW4_AUTOGRADER_ROOT": str(root), "HW4_PYTHON": "/bin/false"},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    data = json.loads((root / "results" / "results.json").read_text())
    assert problems(data) == [] and "could not start" in data["output"]


@pytest.mark.slow
def test_run_autograder_grades_a_submission_laid_out_as_on_gradescope(bundle, tmp_path, sample_batch):
    sample = SUBMISSIONS / "correct" / "reference"
    root = unpack(bundle, tmp_path / "autograder")
    shutil.copytree(sample, root / "submission")
    (root / "submission_metadata.json").write_text(json.dumps({"users": [{"email": "alice@example.edu"}]}))
    env = {
        **os.environ,
        "HW4_AUTOGRADER_ROOT": str(root),
        "HW4_PYTHON": sys.executable,
        "HW4_NOTEBOOKS": "skip",
    }
    proc = subprocess.run(
        ["bash", str(root / "source" / "run_autograder")],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((root / "results" / "results.json").read_text())
    assert problems(data) == []
    assert data["extra_data"]["grader_failed"] is False
    # Same suite, same config: the same tests with the same scores as `hw4grade grade`.
    batch = sample_batch.results_json(sample_batch.student_for(sample))
    assert {t["name"]: t["score"] for t in data["tests"]} == {t["name"]: t["score"] for t in batch["tests"]}
    assert data["score"] == pytest.approx(batch["score"])
