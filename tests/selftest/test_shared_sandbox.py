"""A batch slot's sandbox shared by its gradings in turn (``grader.sandbox.shared``).

Each test plays the batch parent (``SlotSandboxes``) and the gradings that borrow its sandbox one
after the other, in this process (a borrowing session uses a descriptor of its own, as a forked
child would). What must hold: a grading sees nothing the previous one left (memory, scratch files,
processes, output), a broken or misused shared sandbox is retired, not reused, and a grading made
with other limits never borrows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_sandbox import ATTACKS, LIMITS, _expose

from grader.sandbox import shared
from grader.sandbox.launcher import Limits, detect_isolation
from grader.sandbox.proxy import Submission
from grader.sandbox.shared import SlotSandboxes

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="the shared sandbox is a bwrap-level feature")

ARGS = {"load_timeout": 20.0, "limits": LIMITS, "isolation": "bwrap", "slot": 0, "max_result_bytes": 64 << 20}
EXTRA = '''

def zygote_pid():
    """The zygote's pid and start time (pids alone repeat: each sandbox has its own PID namespace)."""
    with open(f"/proc/{os.getppid()}/stat") as fh:
        return [os.getppid(), fh.read().rsplit(")", 1)[1].split()[19]]


def print_and_answer(text):
    print(text)
    return 1


def writable_places():
    """Every folder this worker could leave a file in (the next grading's worker would find it)."""
    found = []
    for top, dirs, _files in os.walk("/"):
        if top in ("/proc", "/sys"):
            dirs[:] = []
            continue
        if os.access(top, os.W_OK | os.X_OK):
            found.append(top)
    return sorted(found)


def chmod_trap():
    """A folder in scratch that nobody (not even its owner) may enter or list."""
    os.makedirs("trap/inner", exist_ok=True)
    with open("trap/inner/f.txt", "w") as fh:
        fh.write("x")
    os.chmod("trap/inner", 0)
    os.chmod("trap", 0)
    return 1
'''
NAMES = ["writable_places", "remember", "remember_in_daemon", "recall", "flood", "zygote_pid", "print_and_answer",
         "chmod_trap", "identity"]


@pytest.fixture
def slots(tmp_path):
    detect_isolation("bwrap")
    hooks = SlotSandboxes(lambda slot: dict(ARGS, slot=slot), tmp_path / "slots")
    yield hooks
    hooks.close()
    shared._INHERITED.clear()


def _grading(slots: SlotSandboxes, folder: Path, *, handed: bool = True, **kwargs) -> Submission:
    """One grading of the slot: the parent hands the sandbox over, the grading makes its session."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "attacks.py").write_text(ATTACKS + EXTRA)
    if handed:
        slots.before_fork(0)
    options = dict(ARGS, call_timeout=5.0, budget=600.0)
    options.update(kwargs)
    sub = Submission(folder, **options)
    slots.after_fork()
    _expose(sub, "attacks.py", NAMES)
    return sub


def test_gradings_of_a_slot_take_turns_in_one_zygote_and_see_nothing_of_each_other(slots, tmp_path):
    first = _grading(slots, tmp_path / "a")
    zygote = first.zygote_pid()
    assert first.session.borrowed
    assert first.remember("first-secret") == 1
    assert first.remember_in_daemon("first-daemon") == 1  # a daemon still writing to scratch
    assert "first-daemon" in first.recall()
    first.close()
    slots.job_done(0, clean=True)

    second = _grading(slots, tmp_path / "b")
    assert second.zygote_pid() == zygote, "the second grading should reuse the slot's zygote"
    assert second.session.borrowed
    assert second.recall() == [], "the second grading saw what the first left (memory, scratch or a daemon)"
    assert (second.session.stage / "submission" / "attacks.py").exists()
    second.close()
    assert slots.started == 1


def test_the_only_folder_a_worker_can_write_is_the_scratch_folder_the_sweep_empties(slots, tmp_path):
    sub = _grading(slots, tmp_path / "a", call_timeout=60.0)  # it walks the whole filesystem view
    assert sub.writable_places() == ["/scratch"]
    sub.close()


def _output_once_read(sub: Submission, text: str) -> str:
    """The grading's output once ``text`` was read from the pipe (a thread drains it)."""
    deadline = time.monotonic() + 10
    while text not in sub.session.output() and time.monotonic() < deadline:
        time.sleep(0.02)
    return sub.session.output()


def test_a_grading_sees_only_its_own_output(slots, tmp_path):
    first = _grading(slots, tmp_path / "a")
    first.print_and_answer("FIRST-PRINTS-THIS")
    assert "FIRST-PRINTS-THIS" in _output_once_read(first, "FIRST-PRINTS-THIS")
    first.close()
    slots.job_done(0, clean=True)
    second = _grading(slots, tmp_path / "b")
    second.print_and_answer("SECOND")
    shown = _output_once_read(second, "SECOND")
    assert "SECOND" in shown and "FIRST-PRINTS-THIS" not in shown
    second.close()


def test_a_scratch_folder_made_unremovable_is_emptied_anyway(slots, tmp_path):
    first = _grading(slots, tmp_path / "a")
    assert first.chmod_trap() == 1
    first.close()
    slots.job_done(0, clean=True)
    second = _grading(slots, tmp_path / "b")
    assert second.identity(1) == 1
    assert second.session.borrowed, "the sweep left the trap in scratch, so the sandbox was not lent"
    second.close()


def test_a_flood_ends_the_call_and_the_next_start_gets_a_sandbox_of_its_own(slots, tmp_path):
    from grader.errors import StudentCrash

    sub = _grading(slots, tmp_path / "a")
    with pytest.raises(StudentCrash, match="printed more than 8 MB"):
        sub.flood(64)
    assert not sub.session.borrowed
    assert sub.identity(3) == 3  # restarted in a sandbox of its own
    sub.close()


def test_a_job_that_did_not_end_normally_retires_the_slots_sandbox(slots, tmp_path):
    first = _grading(slots, tmp_path / "a")
    zygote = first.zygote_pid()
    first.close()
    slots.job_done(0, clean=False)
    assert 0 not in slots.slots
    second = _grading(slots, tmp_path / "b")
    assert second.zygote_pid() != zygote and second.session.borrowed
    second.close()
    assert slots.started == 2


def test_a_dead_zygote_is_retired_between_jobs_and_the_grading_that_meets_it_starts_its_own(slots, tmp_path):
    first = _grading(slots, tmp_path / "a")
    first.identity(1)
    first.close()
    owner = slots.slots[0].session
    owner.proc.kill()  # the zygote is gone (as if a submission had killed it)
    slots.before_fork(0)
    slots.after_fork()
    second = _grading(slots, tmp_path / "b")
    assert second.identity(2) == 2
    assert not second.session.borrowed
    second.close()
    slots.job_done(0, clean=True)
    assert 0 not in slots.slots, "a dead zygote passed the health check"


def test_a_grading_with_other_limits_does_not_borrow(slots, tmp_path):
    sub = _grading(slots, tmp_path / "a", limits=Limits(memory_mb=1024))
    assert sub.identity(5) == 5
    assert not sub.session.borrowed
    sub.close()
    assert not shared._INHERITED, "the handed-over sandbox must be taken once, whoever asks"


def test_the_zygotes_sweep_empties_folders_their_owner_locked():
    """``worker._empty_scratch`` on a folder tree made unreadable and unwritable by its owner."""
    tmp_path = Path(tempfile.mkdtemp(prefix="hw4-scratch-test-"))  # reachable by another uid
    request_cleanup.append(tmp_path)
    scratch = tmp_path / "scratch"
    (scratch / "trap" / "inner").mkdir(parents=True)
    (scratch / "trap" / "inner" / "f").write_text("x")
    (scratch / "plain.txt").write_text("x")
    os.chmod(scratch / "trap" / "inner", 0)
    os.chmod(scratch / "trap", 0)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import worker; print(worker._empty_scratch())")
    env = dict(os.environ, HW4_SCRATCH_DIR=str(scratch))
    worker_dir = Path(__file__).resolve().parents[2] / "grader" / "sandbox"
    if os.geteuid() == 0:  # root reads anything: run it as an unprivileged owner of the tree
        subprocess.run(["chown", "-R", "nobody", str(tmp_path)], check=True)
        tmp_path.chmod(0o755)
        argv = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
    else:
        argv = []
    out = subprocess.run([*argv, sys.executable, "-I", "-c", code, str(worker_dir)], env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0", out.stderr
    assert list(scratch.iterdir()) == []


request_cleanup: list[Path] = []


@pytest.fixture(autouse=True, scope="module")
def _remove_test_folders():
    yield
    for path in request_cleanup:
        shutil.rmtree(path, ignore_errors=True)
