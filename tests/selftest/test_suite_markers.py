"""The suite's own bookkeeping: tests that wait for minutes-long session fixtures are marked so."""

import pytest
from batch_support import BATCH_TIMEOUT_S
from conftest import _SLOW_FIXTURES, mark_slow_tests, run_batch_tests_last


class _Item:
    def __init__(self, fixtures, *marks):
        self.fixturenames, self.marks = list(fixtures), list(marks)

    def add_marker(self, mark):
        self.marks.append(mark.mark)

    def get_closest_marker(self, name):
        return next((m for m in reversed(self.marks) if m.name == name), None)


def test_tests_waiting_for_the_sample_batch_are_slow_and_get_the_batch_time_limit():
    """Whichever such test runs first builds the sample batch in its setup: the per-test limit
    (900 s) must not cut it off, and ``-m "not slow"`` must leave it out."""
    batch, notebooks = _Item(["tmp_path", "sample_batch"]), _Item(["notebook_cache"])
    own_limit = _Item(["sample_batch"], pytest.mark.timeout(7200).mark)
    quick = _Item(["tmp_path"])
    mark_slow_tests([batch, notebooks, own_limit, quick])
    for item in (batch, notebooks):
        assert item.get_closest_marker("slow") is not None
        assert item.get_closest_marker("timeout").args == (BATCH_TIMEOUT_S,)
    assert own_limit.get_closest_marker("timeout").args == (7200,)
    assert quick.marks == []


def test_the_collected_batch_tests_carry_the_markers(request):
    """On this very run, every collected test that uses the sample batch carries both markers."""
    for item in request.session.items:
        if "sample_batch" in item.fixturenames:
            assert item.get_closest_marker("slow") is not None, item.nodeid
            assert item.get_closest_marker("timeout").args[0] >= BATCH_TIMEOUT_S, item.nodeid


def test_tests_reading_a_session_batch_run_last_in_their_collected_order():
    """The batches grade in the background from the session's start: every other test runs
    first, then those of the sample batch, then those of the notebook batch."""
    items = [_Item(["notebook_batch"]), _Item(["sample_batch"]), _Item(["tmp_path"]),
             _Item(["notebook_cache"]), _Item(["sample_batch", "tmp_path"]), _Item([])]
    order = list(items)
    run_batch_tests_last(order)
    assert [items.index(i) for i in order] == [2, 5, 1, 4, 0, 3]


#: run in a child: collect the whole suite as `make test` does, print what a module's early and
#: late tests (those using a fixture named in argv[2], as JSON) share at module scope or narrower
_SHARED_BY_EARLY_AND_LATE = r"""
import json, sys
import pytest

class Report:
    def pytest_collection_finish(self, session):
        late_names = set(json.loads(sys.argv[2]))
        early, late = {}, {}
        for item in session.items:
            module = item.nodeid.split("::")[0]
            scoped = {name for name in item.fixturenames
                      if (defs := item._fixtureinfo.name2fixturedefs.get(name))
                      and defs[-1].scope in ("module", "package", "class")}
            (late if late_names & set(item.fixturenames) else early).setdefault(module, set()).update(scoped)
        shared = {m: sorted(n & early.get(m, set())) for m, n in late.items()}
        print("SHARED" + json.dumps({m: n for m, n in shared.items() if n}))

pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", sys.argv[1]], plugins=[Report()])
"""


def test_no_fixture_of_a_module_is_built_again_when_its_batch_tests_run_last(repo_root):
    """Moving a module's batch tests to the end tears its module-scoped fixtures down after its
    other tests and builds them again for the late ones (pytest finalizes a module's fixtures when
    the next test is in another module): the student edition's 48 self-checks once ran twice that
    way. A fixture that early and late tests of one module share must be session-scoped."""
    import json
    import subprocess
    import sys

    # _SLOW_FIXTURES is imported with this module: once an in-process grading has run tests/rubric,
    # `import conftest` here would find the rubric's conftest.
    proc = subprocess.run([sys.executable, "-c", _SHARED_BY_EARLY_AND_LATE, str(repo_root / "tests" / "selftest"),
                           json.dumps(sorted(_SLOW_FIXTURES))],
                          cwd=repo_root, capture_output=True, text=True, timeout=600, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("SHARED")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert json.loads(line.removeprefix("SHARED")) == {}


def test_the_background_jobs_start_after_the_sessions_thread_count_is_set(repo_root):
    """The background batches inherit ``HW4_THREADS`` from the session (one thread per grading):
    set up after it, whatever the fixtures are named. pytest orders same-scope autouse fixtures
    by name; once the start fixture's name sorted first, the one-worker batches graded with two
    threads each, and a hostile sample's finetune call, charged its helper thread's waits for a
    CPU, failed its 3-second test limit (CI, 2026-12-05)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "pytest", "--setup-plan", "-q", "-p", "no:cacheprovider",
                           "tests/selftest/test_suite_markers.py"],
                          cwd=repo_root, capture_output=True, text=True, timeout=600, check=False)
    setups = [line.split()[2] for line in proc.stdout.splitlines() if line.strip().startswith("SETUP    S")]
    assert "_background_jobs_start_first" in setups, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert setups.index("_one_batch_workers_share_of_the_cpus") < setups.index("_background_jobs_start_first")
