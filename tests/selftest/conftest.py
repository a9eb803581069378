"""Fixtures shared by the project's own tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SUBMISSIONS = ROOT / "fixtures" / "submissions"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def correct_sample() -> Path:
    return SUBMISSIONS / "correct" / "reference"


@pytest.fixture(scope="session")
def template_sample() -> Path:
    return SUBMISSIONS / "partial" / "untouched_template"


@pytest.fixture
def submission_copy(tmp_path):
    """``submission_copy(src)``: a writable copy of a sample folder under tmp_path."""

    def copy(src: Path, name: str | None = None) -> Path:
        dest = tmp_path / (name or src.name)
        shutil.copytree(src, dest)
        return dest

    return copy


@pytest.fixture(scope="session", autouse=True)
def reference_cache(tmp_path_factory):
    """One ``grader.refcache`` folder for the session (``HW4_CACHE_DIR``, inherited by every grading
    process): the suite starts from nothing, as on a fresh machine, and its gradings share the
    reference values and recorded examples the first of them stored."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("refcache")
        mp.setenv("HW4_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session", autouse=True)
def _one_batch_workers_share_of_the_cpus():
    """Every grading of the session -- a batch's children, a test's own grading, a notebook run --
    gets the CPU threads one notebook-batch worker gets (``HW4_THREADS``): they run next to the
    two session batches, where a second thread per worker only adds contention, and a notebook run
    made alone then serves the batch too (the run cache's key includes the thread count). A test
    of a lone grading's default sets it back explicitly."""
    from batch_support import NOTEBOOK_WORKERS

    from grader.threads import ENV, threads_per_worker

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, str(threads_per_worker(NOTEBOOK_WORKERS)))
        yield


#: the session's background jobs (each fixture here has a ``_<name>_started`` fixture that starts
#: it) -> the late group of the tests reading it (:func:`run_batch_tests_last`): the notebook
#: batch takes longest, so its tests come after the others'
BACKGROUND = {"sample_batch": 1, "student_checks": 1, "notebook_batch": 2}
#: fixtures that cost minutes: a test using one is slow whether or not it says so; the notebook
#: cache's tests run notebooks, so they wait with the notebook batch's
_SLOW_FIXTURES = {**BACKGROUND, "notebook_cache": BACKGROUND["notebook_batch"]}


@pytest.fixture(scope="session", autouse=True)
def _background_jobs_start_first(request, _one_batch_workers_share_of_the_cpus):
    """The session's background jobs -- the two session batches and the installed student
    edition's self-check of every buggy sample (below) -- cost most of the suite's time, so they
    start in the background before the first test whenever a collected test needs them; the tests
    that need them run last (:func:`run_batch_tests_last`), so the rest of the suite runs while
    they work instead of after. Without this the suite ran its serial tests on one core while the
    other idled, then waited on each batch in turn (26 min here, 2026-12-03); with the
    self-check in the foreground, the suite's last ~7 minutes ran on one core (2026-12-04).
    The jobs inherit the session's thread count, so this fixture asks for it: pytest orders
    autouse fixtures of one scope by name, and the jobs once started first (2026-12-05)."""
    needed = set().union(*(item.fixturenames for item in request.session.items))
    for job in BACKGROUND:
        if job in needed:
            request.getfixturevalue(f"_{job}_started")


@pytest.fixture(scope="session")
def _sample_batch_started(tmp_path_factory, reference_cache):
    from batch_support import start_samples

    started = start_samples(tmp_path_factory.mktemp("sample-batch"))
    yield started
    started.stop()  # if the session ended early (-x, Ctrl-C)


@pytest.fixture(scope="session")
def sample_batch(_sample_batch_started):
    """Every bundled sample graded once per session by the real command line:
    ``hw4grade grade SUBS --out OUT --workers 2 --no-notebooks`` (``batch_support.SampleBatches``:
    the samples that wait on a limit in a batch of their own with short test limits; read it,
    never write to it: copy it first). Started with the session (``_background_jobs_start_first``)."""
    return _sample_batch_started.finish()


@pytest.fixture(scope="session")
def notebook_cache(tmp_path_factory):
    """One notebook-run cache (``HW4_NOTEBOOK_CACHE``) for the whole session: a sample whose
    notebooks one test ran is not run again by another (runs are keyed by content, so a changed
    file still runs afresh; every run of the session has the same thread count,
    :func:`_one_batch_workers_share_of_the_cpus`). Grading children inherit the variable."""
    from grader.notebooks.run import CACHE_ENV

    path = tmp_path_factory.mktemp("notebook-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(path))
        yield path


@pytest.fixture(scope="session")
def _notebook_batch_started(tmp_path_factory, reference_cache, notebook_cache):
    from batch_support import start_notebook_samples

    started = start_notebook_samples(tmp_path_factory.mktemp("notebook-batch"))
    yield started
    started.stop()  # if the session ended early (-x, Ctrl-C)


@pytest.fixture(scope="session")
def notebook_batch(_notebook_batch_started):
    """The samples whose notebooks are checked (``batch_support.notebook_sample_dirs``), graded in
    full once per session by the real command: ``hw4grade grade SUBS --out OUT --workers 2``,
    notebooks executed. test_notebooks.py reads their notebook checks, test_samples.py their
    points. Read it, never write to it. Started with the session (``_background_jobs_start_first``)."""
    from batch_support import finish_folder

    return finish_folder(_notebook_batch_started)


@pytest.fixture(scope="session")
def _student_checks_started(student_env, editions_dir):
    from edition_support import start_student_checks

    started = start_student_checks(student_env, editions_dir / "student-checks")
    yield started
    started.stop()  # if the session ended early (-x, Ctrl-C)


@pytest.fixture(scope="session")
def student_checks(_student_checks_started) -> dict[str, dict]:
    """The installed student edition's self-check of the correct sample (every public test) and of
    every buggy one (the public tests of the lab its mistake is in), by the same call ``hw4grade
    check`` makes: ``{"correct" | "buggy-<name>": SubmissionResult as a dict}``. Started with the
    session (``_background_jobs_start_first``)."""
    import time

    from edition_support import timed

    started = time.monotonic()
    out = _student_checks_started.results()
    timed("student edition: waiting for the background self-check of every buggy sample", started)
    return out


def pytest_configure(config):
    # The installed editions' fixtures (editions_fixtures.py), registered as a plugin so every test
    # module, and the session-start fixture of the student edition's self-check, reaches them.
    config.pluginmanager.import_plugin("editions_fixtures")


def pytest_collection_modifyitems(config, items):
    mark_slow_tests(items)
    run_batch_tests_last(items)


def run_batch_tests_last(items) -> None:
    """Tests that read a background job move to the end (those of the sample batch and the
    student edition's self-check first, then those of the notebook batch, each group in its
    collected order): the jobs run in the background while everything else runs."""
    def waits_for(item) -> int:
        return max((_SLOW_FIXTURES.get(name, 0) for name in getattr(item, "fixturenames", ())), default=0)

    items.sort(key=waits_for)  # stable: the collected order within each group


def mark_slow_tests(items) -> None:
    """``-m "not slow"`` leaves out every test that waits for the sample batch or a notebook run,
    and such a test gets the batch's own time limit: whichever of them runs first builds the
    session fixture inside its setup, which takes longer than pyproject's per-test ``timeout``
    (900 s) on a busy 2-core machine (CI once failed every batch test that way)."""
    from batch_support import BATCH_TIMEOUT_S

    for item in items:
        if not _SLOW_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            continue
        if not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
        if not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(BATCH_TIMEOUT_S))
