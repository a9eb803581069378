"""Every bundled sample gets the points its ``expected.json`` says (DESIGN section 7).

Function-only grading (``points_no_notebooks``) for every sample, read from the session's batches
(a sample of another term, whose expected.json names its config, is graded with that config);
full grading with notebook execution (``points``) for the samples of the session's notebook batch
(the correct one and those marked ``notebook_check``), which runs the notebooks in a smaller fast
mode than the term's (``batch_support.NOTEBOOK_FAST``; the checks do not depend on the size).
"""

from __future__ import annotations

import pytest
from batch_support import (
    SAMPLE_FILTER,
    SUBMISSIONS,
    all_sample_dirs,
    expected,
    meets,
    notebook_sample_dirs,
    sample_dirs,
)

from reference.config import ITEM_IDS

SAMPLES = sample_dirs()
NOTEBOOK_SAMPLES = notebook_sample_dirs()


def _name(sample) -> str:
    return sample.relative_to(SUBMISSIONS).as_posix()


def _misses(result, want: dict) -> dict:
    return {
        item: (round(result.items[item].score, 4), want[item])
        for item in ITEM_IDS
        if not meets(result.items[item].score, want[item])
    }


@pytest.mark.slow
def test_the_session_batch_covers_every_bundled_sample(sample_batch):
    assert not SAMPLE_FILTER, (
        f"$HW4_SAMPLES={','.join(SAMPLE_FILTER)} restricted the batch (development only)"
    )
    graded = {sample_batch.student_for(s) for s in all_sample_dirs()}
    assert graded == set(sample_batch.all_students())


@pytest.mark.slow
@pytest.mark.parametrize("sample", SAMPLES, ids=_name)
def test_sample_gets_its_expected_points_without_notebooks(sample_batch, sample):
    """The sample's automatic points per item, functions only, are what expected.json says."""
    student = sample_batch.student_for(sample)
    result = sample_batch.result(student)
    assert result.grader_error is None, result.grader_error
    assert result.mode == "functions"
    misses = _misses(result, expected(sample)["points_no_notebooks"])
    assert misses == {}, f"{student}: item -> (got, expected) {misses}"


@pytest.mark.slow
@pytest.mark.parametrize("sample", NOTEBOOK_SAMPLES, ids=_name)
def test_sample_gets_its_expected_points_with_notebooks(notebook_batch, sample):
    """Graded in full (notebooks executed), the sample earns expected.json's ``points``."""
    student = notebook_batch.student_for(sample)  # copies keep the <kind>/<name> origin
    result = notebook_batch.result(student)
    assert result.grader_error is None, result.grader_error
    assert result.mode == "full"
    misses = _misses(result, expected(sample)["points"])
    assert misses == {}, f"{student}: item -> (got, expected) {misses}"


@pytest.mark.slow
@pytest.mark.parametrize("sample", ["buggy/lab3_floor_rounding", "buggy/lab2_no_zero_grad"])
def test_grading_the_same_submission_again_gives_identical_results(sample_batch, sample):
    """Derandomized Hypothesis and seeded calls: a second grading (alone, in a new process, every
    property test under Hypothesis: no replayed examples, see grader.replay; and with the two CPU
    threads a grading alone gets, ``grader.threads``, where the batch's had one) of a sample that
    fails property tests and tests of convolutions over real images (the quantized ResNet-20's
    accuracy, a finetuning epoch) gives the same cases, scores and messages as the batch's."""
    from grade_one import grade

    path = SUBMISSIONS / sample
    in_batch = sample_batch.result(sample_batch.student_for(path))
    lost = [i for i in ITEM_IDS if in_batch.items[i].score < in_batch.items[i].possible - 1e-9
            and any(c.kind == "function" and not c.passed for c in in_batch.items[i].cases)]
    assert lost, f"{sample}: expected to fail some function tests"
    again = grade(path, k=" or ".join(i.replace(".", "") for i in lost), env={"HW4_REPLAY": "0", "HW4_THREADS": "2"})

    def cases(result):
        return [(c.name, c.status, c.fraction, c.score, c.message) for i in lost
                for c in result.items[i].cases if c.kind == "function"]

    assert cases(again) == cases(in_batch)
    assert [again.items[i].score for i in lost] == [in_batch.items[i].score for i in lost]
