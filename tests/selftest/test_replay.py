"""``grader.replay``: property tests run on their recorded examples give Hypothesis's own outcome.

Toy test modules run in a child pytest (``-p grader.replay``, a derandomized profile, a cache
folder of their own) check the mechanism; the rubric check compares, call by call, what the
student's functions receive when the correct sample is graded with and without replay.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from grader import replay

ROOT = Path(__file__).resolve().parent.parent.parent

# the project's profiles, and its Hypothesis without a local-constant pool (grading's determinism)
CONFTEST = f"exec(compile(open({str(ROOT / 'tests' / 'conftest.py')!r}).read(), 'tests/conftest.py', 'exec'))\n"

TOY = '''
import json, os
from dataclasses import dataclass
import numpy as np
import pytest
import torch
from hypothesis import example, given, strategies as st
from hypothesis.extra import numpy as hnp

LOG = os.environ["TOY_LOG"]

def log(name, **kw):
    with open(LOG, "a") as fh:
        fh.write(json.dumps([name, repr(kw)]) + "\\n")

def drawn(x):
    log("drawn")
    return x

@dataclass(frozen=True)
class Case:
    n: int
    scale: float

@given(case=st.builds(Case, st.integers(1, 9), st.floats(0.1, 5)), w=hnp.arrays(np.float64, 4),
       t=st.integers(1, 5).map(lambda n: torch.arange(n, dtype=torch.float32)), tag=st.text(max_size=3))
@example(case=Case(3, 1.0), w=np.zeros(4), t=torch.ones(2), tag="ex")
def test_toy_mixed(case, w, t, tag):
    log("mixed", case=case, w=w.tolist(), t=t.tolist(), tag=tag)
    w[0] = 99.0  # a body may change its inputs: the next replay must not see it
    t.add_(1)
    if os.environ.get("TOY_FAIL") and case.n >= 5:
        raise AssertionError(f"n={case.n} is too large for this submission")

@pytest.mark.parametrize("k", [1, 2])
@given(x=st.integers(0, 1000).map(drawn))
def test_toy_parametrized(k, x):
    log(f"param{k}", x=x)
    if os.environ.get("TOY_FLAKY") and os.path.exists(os.environ["TOY_FLAKY"]):
        os.unlink(os.environ["TOY_FLAKY"])  # fails once only
        raise AssertionError("different answers to one input")
'''


def _pytest(tmp: Path, **env: str) -> subprocess.CompletedProcess:
    (tmp / "conftest.py").write_text(CONFTEST)
    (tmp / "test_toy.py").write_text(TOY)
    full = {**os.environ, "HW4_CACHE_DIR": str(tmp / "cache"), "TOY_LOG": str(tmp / "log.jsonl"), **env}
    (tmp / "log.jsonl").unlink(missing_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "grader.replay", "-p", "no:cacheprovider", "-q",
         "--hypothesis-profile", "grading", "-o", "addopts=", "-W", "ignore::pytest.PytestAssertRewriteWarning",
         "--rootdir", str(tmp), str(tmp / "test_toy.py")],
        cwd=tmp, env=full, capture_output=True, text=True, timeout=300, check=False)


def _log(tmp: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A toy folder run once under Hypothesis (``HW4_REPLAY=0``) and once recording: (folder, the
    Hypothesis run's log, the recording run's log). Tests copy it before running it again."""
    tmp = tmp_path_factory.mktemp("toy")
    plain = _pytest(tmp, HW4_REPLAY="0")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    hypothesis_run = _log(tmp)
    recording = _pytest(tmp)
    assert recording.returncode == 0, recording.stdout + recording.stderr
    return tmp, hypothesis_run, _log(tmp)


def _copy(recorded, tmp_path: Path) -> Path:
    shutil.copytree(recorded[0], tmp_path / "toy")
    return tmp_path / "toy"


def test_replayed_examples_are_the_ones_hypothesis_generates_and_nothing_is_drawn(recorded, tmp_path):
    _, hypothesis_run, recording_run = recorded
    assert recording_run == hypothesis_run, "the recording run is not the run Hypothesis makes"
    toy = _copy(recorded, tmp_path)
    replayed = _pytest(toy)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    calls = [entry for entry in hypothesis_run if entry[0] != "drawn"]
    assert _log(toy) == calls, "the replay did not feed the body Hypothesis's examples, in order"
    assert len([c for c in calls if c[0] == "mixed"]) >= 20 and {c[0] for c in calls} == {"mixed", "param1", "param2"}


def test_a_failure_on_replay_is_hypothesiss_own_failure(recorded, tmp_path):
    """A submission failing a replayed test gets the message (shrunk input) Hypothesis gives it."""
    toy = _copy(recorded, tmp_path)
    replayed = _pytest(toy, TOY_FAIL="1")
    plain = _pytest(toy, TOY_FAIL="1", HW4_REPLAY="0")
    assert replayed.returncode == plain.returncode == 1

    def failure(out: str) -> list[str]:
        return [line for line in out.splitlines() if "too large" in line or "case=" in line]

    assert failure(replayed.stdout) == failure(plain.stdout) != []


def test_a_test_that_fails_on_replay_and_passes_under_hypothesis_fails_as_flaky(recorded, tmp_path):
    """Two answers to one input: Hypothesis's final replay would have caught it; so does this."""
    toy = _copy(recorded, tmp_path)
    marker = tmp_path / "fail-once"
    marker.write_text("")
    run = _pytest(toy, TOY_FLAKY=str(marker))
    assert run.returncode == 1
    assert "FlakyFailure" in run.stdout and "passed under Hypothesis and failed when replayed" in run.stdout


@dataclasses.dataclass(frozen=True)
class _Frozen:
    a: int
    b: tuple


@dataclasses.dataclass
class _Mutable:
    a: int


def test_recordings_hold_plain_data_and_come_back_as_fresh_equal_objects():
    value = {"w": np.arange(6.0).reshape(2, 3), "f": np.asfortranarray(np.ones((2, 2), dtype=np.float32)),
             "t": torch.arange(4.0), "g": torch.ones(2, requires_grad=True), "c": _Frozen(1, (2.5, "x")),
             "l": [1, True, None, -0.0, float("inf")], "s": "q"}
    data = replay.encode(value)
    back = replay.decode(data)
    assert back["c"] == value["c"] and back["l"][:3] == [1, True, None] and back["s"] == "q"
    assert np.array_equal(back["w"], value["w"]) and back["w"].dtype == value["w"].dtype
    assert back["f"].flags.f_contiguous and back["f"].dtype == np.float32
    assert torch.equal(back["t"], value["t"]) and back["g"].requires_grad
    back["w"][0, 0] = 7.0
    back["t"][0] = 7.0
    again = replay.decode(data)
    assert again["w"][0, 0] == 0.0 and again["t"][0] == 0.0, "decoded objects share memory"


@pytest.mark.parametrize("bad", [_Mutable(1), object(), {1: 2}, torch.ones(3, 3).t(), np.array(["a"]),
                                 torch.ones(2, requires_grad=True) * 2])
def test_anything_else_is_not_recorded(bad):
    with pytest.raises(replay.Unrecordable):
        replay.encode({"x": bad})


def test_a_recorded_dataclass_is_rebuilt_only_as_a_frozen_dataclass_of_a_loaded_module():
    data = replay.encode(_Frozen(1, ()))
    assert replay.decode(data) == _Frozen(1, ())
    data["$dataclass"] = "os:system"
    with pytest.raises(replay.Unrecordable):
        replay.decode(data)


@pytest.mark.slow
def test_grading_with_replay_sends_the_student_exactly_the_calls_grading_without_it_sends(tmp_path):
    """The correct sample, graded three times (Hypothesis; recording; replaying): every call to
    the student's code, in order and with its arguments, is the same."""
    script = textwrap.dedent("""
        import json, sys
        from pathlib import Path
        from grader.grade import GradeOptions, grade_submission
        from grader.sandbox import proxy

        calls = []
        send = proxy.Submission._send
        def spy(self, request, blobs, name, call_text, *a, **k):
            calls.append(call_text)
            return send(self, request, blobs, name, call_text, *a, **k)
        proxy.Submission._send = spy
        result = grade_submission(Path(sys.argv[1]), "s", GradeOptions(notebooks=False))
        scores = {c.name: (c.status, c.score) for c in result.cases()}
        Path(sys.argv[2]).write_text(json.dumps({"calls": calls, "scores": scores}))
    """)
    runs = []
    for i, mode in enumerate(("0", "1", "1")):
        out = tmp_path / f"run{i}.json"
        proc = subprocess.run(
            [sys.executable, "-c", script, str(ROOT / "fixtures/submissions/correct/reference"), str(out)],
            cwd=ROOT, env={**os.environ, "HW4_REPLAY": mode, "HW4_CACHE_DIR": str(tmp_path / "cache")},
            capture_output=True, text=True, timeout=1800, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads(out.read_text()))
    assert len(runs[0]["calls"]) > 1000
    assert runs[1] == runs[0], "recording changed what the student's code receives"
    assert runs[2] == runs[0], "replaying changed what the student's code receives"
