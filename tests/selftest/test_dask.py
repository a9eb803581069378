"""`hw4grade grade --executor dask`: the same batch on a Dask cluster gives the same gradebook."""

from __future__ import annotations

import shutil

import pytest

from grader.batch import run_batch
from grader.grade import GradeOptions

SAMPLES = ["correct/reference", "buggy/lab1_gd_missing_factor_2", "buggy/tf_two_wrong"]
# A slice of the rubric keeps this test about a minute; the executor does not see which tests run.
OPTIONS = GradeOptions(notebooks=False, pytest_args=("-k", "lab1_b or tf_"))


@pytest.fixture(scope="module")
def submissions(tmp_path_factory, repo_root):
    root = tmp_path_factory.mktemp("dask-subs")
    for rel in SAMPLES:
        shutil.copytree(repo_root / "fixtures" / "submissions" / rel, root / rel.replace("/", "-"))
    return root


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as lc, Client(lc) as client:
        yield client


@pytest.mark.timeout(900)
def test_dask_batch_gradebook_is_byte_identical_to_the_local_one(submissions, cluster, tmp_path):
    from grader.dask_executor import DaskExecutor

    local = run_batch(submissions, tmp_path / "local", OPTIONS, workers=2, progress=False)
    remote = run_batch(submissions, tmp_path / "dask", OPTIONS, executor=DaskExecutor(cluster),
                       progress=False)
    assert sorted(local.graded) == sorted(remote.graded) == sorted(p.name for p in submissions.iterdir())
    assert not local.grader_errors and not remote.grader_errors
    local_book = (tmp_path / "local" / "gradebook.csv").read_bytes()
    assert local_book == (tmp_path / "dask" / "gradebook.csv").read_bytes()
    # and the grading was real: the buggy samples lost points where the correct one did not
    rows = {line.split(",")[0]: line for line in local_book.decode().splitlines()[1:]}
    assert rows["buggy-lab1_gd_missing_factor_2"] != rows["correct-reference"]


def test_dask_executor_refuses_a_stand_in_grader(cluster):
    from functools import partial

    from grader.batch import grade_job
    from grader.dask_executor import DaskExecutor

    ex = DaskExecutor(cluster)
    with pytest.raises(ValueError, match="real grader"):
        list(ex.run([], partial(grade_job, grade_fn=lambda *a: None)))
