"""The sandbox at both isolation levels: what student code can and cannot do from the worker.

Each attack runs through the real call proxy (``grader.sandbox.proxy.Submission``) in a worker
started at the ``bwrap`` and at the ``rlimit`` level. The attacks live in one ``attacks.py``
per level (one worker start each); the few that wreck their worker get a submission of their own.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from grader.discover import Location
from grader.errors import (
    BadReturn,
    BudgetExhausted,
    GraderError,
    SignatureMismatch,
    StudentCrash,
    StudentException,
    StudentTimeout,
)
from grader.sandbox import launcher, runclock
from grader.sandbox.launcher import Limits, detect_isolation, landlock_abi
from grader.sandbox.proxy import Submission

ROOT = Path(__file__).resolve().parent.parent.parent
LEVELS = ["bwrap", "rlimit"]
LIMITS = Limits(memory_mb=1536, processes=48, file_mb=4, output_bytes=64 << 10, flood_bytes=8 << 20,
                scratch_mb=16, scratch_files=500, cpu_seconds=600)
CALL_TIMEOUT = 2.0
SECRET_FILES = [ROOT / "tests" / "rubric" / "test_lab1_b_gradient_descent.py", ROOT / "reference" / "lab1.py",
                ROOT / "reference" / "assignment.toml"]

ATTACKS = '''
import os
import signal
import socket
import sys
import time

import numpy as np


def identity(x):
    return x


def whoami():
    import resource
    return {"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(), "prefix": sys.prefix,
            "submission": os.environ["HW4_SUBMISSION_DIR"], "given": os.environ["HW4_GIVEN_DIR"],
            "code": os.path.dirname(os.path.abspath(sys.argv[0])),
            "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0],
            "data": resource.getrlimit(resource.RLIMIT_DATA)[0],
            "fsize": resource.getrlimit(resource.RLIMIT_FSIZE)[0]}


def spin():
    while True:
        pass


def spin_swallowing_interrupts():
    while True:
        try:
            while True:
                pass
        except BaseException:
            pass


def sleep_then_answer(seconds):
    time.sleep(seconds)
    return 42


def burn(seconds):
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass
    return "done"


_POOL = {}


def burn_in_a_pool(seconds):
    """burn() in a helper thread that lives on for the next call, as a thread pool's do."""
    import queue
    import threading

    if "jobs" not in _POOL:
        _POOL["jobs"], _POOL["done"] = queue.Queue(), queue.Queue()

        def serve():
            while True:
                _POOL["done"].put(burn(_POOL["jobs"].get()))

        threading.Thread(target=serve, daemon=True).start()
    _POOL["jobs"].put(seconds)
    return _POOL["done"].get()


def memory_bomb():
    chunks = []
    while True:
        chunks.append(bytearray(32 << 20))


def slow_fail(seconds):
    time.sleep(seconds)
    raise ValueError("slow" if seconds else "quick")


def try_write(paths):
    done = []
    for path in paths:
        try:
            with open(path, "a") as fh:
                fh.write("HW4-PWNED")
            done.append(path)
        except OSError:
            pass
    return done


def try_delete(paths):
    done = []
    for path in paths:
        try:
            os.remove(path)
            done.append(path)
        except OSError:
            pass
    return done


def try_read(paths):
    got = []
    for path in paths:
        try:
            with open(path) as fh:
                fh.read(10)
            got.append(path)
        except OSError:
            pass
    return got


def try_connect(port):
    results = []
    for family, kind in ((socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET, socket.SOCK_DGRAM)):
        try:
            with socket.socket(family, kind) as s:
                s.settimeout(1)
                if kind == socket.SOCK_STREAM:
                    s.connect(("127.0.0.1", port))
                    s.sendall(b"HW4-NET")
                else:
                    s.sendto(b"HW4-NET", ("127.0.0.1", port))
                results.append(kind == socket.SOCK_STREAM)
        except OSError:
            pass
    return results


def signal_everyone():
    sent = []
    for pid in (os.getppid(), 1, -1):
        try:
            os.kill(pid, signal.SIGKILL)
            sent.append(pid)
        except OSError:
            pass
    return sent


def write_scratch(megabytes):
    written = 0
    try:
        for i in range(megabytes):
            with open("blob%d" % i, "wb") as fh:
                fh.write(b"x" * (1 << 20))
            written += 1
        time.sleep(1)
    except OSError as exc:
        return "OSError %d after %d MB" % (exc.errno, written)
    finally:
        for i in range(megabytes):
            if os.path.exists("blob%d" % i):
                os.remove("blob%d" % i)
    return "wrote %d MB" % written


def big_file(megabytes):
    try:
        with open("big.bin", "wb") as fh:
            fh.write(b"x" * (megabytes << 20))
    except OSError as exc:
        return "OSError %d" % exc.errno
    return "written"


def flood(megabytes):
    block = "y" * (1 << 20)
    for _ in range(megabytes):
        sys.stdout.write(block)
    return 1


def _helper(x):
    return np.asarray(x) + undefined_name


def raises_deep(x):
    return _helper(x)


def older_signature(X, y):
    return X


class _Evil:
    def __init__(self, canary):
        self.canary = canary

    def __reduce__(self):
        return (os.system, ("touch " + self.canary + "/REDUCE-RAN",))


def returns_reducer(canary):
    return _Evil(canary)


class _Sneaky(float):
    def __eq__(self, other):
        return True

    __hash__ = float.__hash__


def returns_float_subclass():
    return _Sneaky(1.0)


class _EqArray(np.ndarray):
    def __eq__(self, other):
        return True


def returns_ndarray_subclass():
    return np.arange(3.0).view(_EqArray)


_MEMORY = []


def remember(secret):
    """Keep ``secret`` in memory and in a scratch file."""
    _MEMORY.append(secret)
    with open("remembered.txt", "a") as fh:
        fh.write(secret + "\\n")
    return len(_MEMORY)


def remember_in_daemon(secret):
    """A daemon (own session) that keeps writing ``secret`` into the scratch folder."""
    if os.fork() == 0:
        os.setsid()
        try:
            for _ in range(6000):
                with open("remembered.txt", "a") as fh:
                    fh.write(secret + "\\n")
                time.sleep(0.01)
        finally:
            os._exit(0)
    time.sleep(0.05)
    return 1


def recall():
    found = list(_MEMORY)
    try:
        with open("remembered.txt") as fh:
            found += fh.read().split()
    except OSError:
        pass
    return sorted(set(found))


def capabilities():
    with open("/proc/self/status") as fh:
        return {k: int(v, 16) for k, v in (line.split(":") for line in fh) if k.startswith("Cap")}


def read_block_devices():
    """Every block device it can see, those it can read the first bytes of (a raw disk holds
    every file, root-only ones included), and debugfs on the usual disk names."""
    import stat
    import subprocess
    found = set()
    for folder in ("/dev", "/sys/class/block"):
        try:
            found |= {"/dev/" + name for name in os.listdir(folder)}
        except OSError:
            pass
    found |= {"/dev/vda", "/dev/sda", "/dev/xvda", "/dev/nvme0n1"}
    got = []
    for path in sorted(found):
        try:
            if not stat.S_ISBLK(os.stat(path).st_mode):
                continue
            got.append("visible " + path)
            with open(path, "rb") as fh:
                if fh.read(512):
                    got.append("read " + path)
        except OSError:
            pass
    for disk in ("/dev/vda", "/dev/sda"):
        try:
            out = subprocess.run(["/usr/sbin/debugfs", "-R", "stat /", disk], capture_output=True, timeout=20)
            if out.returncode == 0 and b"Inode" in out.stdout:
                got.append("debugfs " + disk)
        except (OSError, subprocess.SubprocessError):
            pass
    return got


def mutate_inputs(a, t):
    a[...] = -1.0
    t.zero_()
    return float(a.sum())


def forge_reply():
    fd = int(sys.argv[sys.argv.index("--fd-out") + 1])
    os.write(fd, b"not a frame at all, just bytes")
    return 1


def segfault():
    import ctypes
    return ctypes.string_at(1)  # strlen at address 1: SIGSEGV


def hard_exit():
    os._exit(3)


def soft_exit():
    sys.exit(0)


def fork_bomb(marker):
    count = 0
    for _ in range(100000):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            try:
                os.setsid()
                os.execv("/bin/sleep", ["sleep", marker])
            finally:
                os._exit(0)
        count += 1
    return count


def fork_bomb_then_hang(marker):
    fork_bomb(marker)
    while True:
        time.sleep(0.05)
'''

NAMES = [line[4:line.index("(")] for line in ATTACKS.splitlines()
         if line.startswith("def ") and not line.startswith("def _")]


def _expose(sub: Submission, file: str, names: list[str]) -> None:
    """The proxy calls only the homework's required names; let it call these too."""
    for name in names:
        sub.discovery.found[name] = Location(file, "test")


def _submission(folder: Path, isolation: str, **kwargs) -> Submission:
    options = dict(call_timeout=CALL_TIMEOUT, load_timeout=20.0, budget=600.0, limits=LIMITS,
                   isolation=isolation)
    options.update(kwargs)
    sub = Submission(folder, **options)
    _expose(sub, "attacks.py", NAMES)
    return sub


@pytest.fixture(scope="module")
def canary():
    """A world-writable folder outside every sandbox, holding one world-writable file: only the
    sandbox (not file permissions) stands between student code and them."""
    folder = Path(tempfile.mkdtemp(prefix="hw4-canary-", dir="/tmp"))
    folder.chmod(0o777)
    keep = folder / "keep.txt"
    keep.write_text("original")
    keep.chmod(0o666)
    yield folder
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


@pytest.fixture(scope="module", params=LEVELS)
def sandbox(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"attacks-{request.param}")
    (folder / "attacks.py").write_text(ATTACKS)
    sub = _submission(folder, request.param)
    sub.start()
    yield sub
    sub.close()


def _fresh(tmp_path: Path, isolation: str, files: dict[str, str] | None = None, **kwargs) -> Submission:
    folder = tmp_path / "sub"
    folder.mkdir()
    for name, text in (files or {"attacks.py": ATTACKS}).items():
        (folder / name).write_text(text)
    return _submission(folder, isolation, **kwargs)


# ----------------------------------------------------------------------------- who runs, how


def test_each_level_records_what_it_isolates():
    """The isolation detail says what holds at each level, as recorded in every result."""
    bwrap = detect_isolation("bwrap")
    assert bwrap.level == "bwrap" and "net" in bwrap.detail and "private read-only filesystem" in bwrap.detail
    rlimit = detect_isolation("rlimit")
    assert rlimit.level == "rlimit"
    if landlock_abi():
        assert f"Landlock ABI {landlock_abi()}" in rlimit.detail
    else:
        assert "the filesystem is readable" in rlimit.detail
    if os.geteuid() == 0:
        # Here the interpreter sits under /root: the detail must say how the uid drop works.
        assert rlimit.uid_mode in ("unprivileged", "root")
        assert "CAP_DAC_READ_SEARCH" not in rlimit.detail
        assert ("process-count limit does not bind" in rlimit.detail) == (rlimit.uid_mode == "root")


def test_worker_runs_unprivileged_with_its_limits(sandbox):
    """The student's code runs as a uid of its own (not root), in its scratch folder, with the limits."""
    info = sandbox.whoami()
    if os.geteuid() == 0:
        assert info["uid"] >= launcher.UID_BASE and info["gid"] == info["uid"]
    assert info["nproc"] == LIMITS.processes
    assert info["data"] == LIMITS.memory_mb << 20
    assert info["fsize"] == LIMITS.file_mb << 20
    assert info["cwd"].endswith("scratch")


def test_no_capability_and_no_block_device_is_within_reach(sandbox):
    """Issue 14: the worker holds no capability at all (the rlimit level kept CAP_DAC_READ_SEARCH
    where Python lives under /root) and sees no disk: /dev holds no block device, raw reads and
    debugfs all fail, so no root-only file can be read off the disk."""
    caps = sandbox.capabilities()
    assert {k: v for k, v in caps.items() if v} == {}, caps
    assert sandbox.read_block_devices() == []


def test_concurrent_sandboxes_get_different_uids(sandbox, tmp_path):
    """Two sandboxes alive at once never share a uid (the process limit and the kill sweep are per uid)."""
    if os.geteuid() != 0:
        assert launcher.lease_uid(0) is None
        return
    other = _fresh(tmp_path, sandbox.isolation.level)
    try:
        assert other.whoami()["uid"] != sandbox.whoami()["uid"]
    finally:
        other.close()


# ----------------------------------------------------------------------------- time


def test_endless_loop_is_interrupted_at_its_timeout_and_the_next_call_gets_a_fresh_worker(sandbox):
    """A Python-level endless loop ends at the call's timeout (the worker interrupts it: no wait
    for the hard timeout); the interrupted worker is then replaced, so what the loop left
    half-done never reaches the next call."""
    sandbox.strikes.pop("spin", None)
    assert sandbox.identity(1) == 1
    worker = sandbox.session._child_pid_here
    started = time.monotonic()
    with pytest.raises(StudentTimeout, match=rf"did not finish within {CALL_TIMEOUT:g} s"):
        sandbox.spin()
    # charged time: on a machine the suite's batches keep busy, the wall clock runs longer
    assert sandbox.session.last_charged < CALL_TIMEOUT + 1.5
    assert time.monotonic() - started < runclock.BACKSTOP * CALL_TIMEOUT + 1.5
    assert not sandbox.session.alive
    assert sandbox.identity(7) == 7
    assert sandbox.session._child_pid_here not in (None, worker)


@pytest.mark.parametrize("level", LEVELS)
def test_processes_a_timed_out_call_left_behind_never_reach_the_next_call(tmp_path, level):
    """A call that forks until the process limit and then hangs: once it times out, every process
    it started is gone (they would fill the uid's process limit, and the next call, needing a
    thread, would fail or hang) and the next call runs."""
    marker = f"{os.getpid() % 1000}{len(level)}78"
    sub = _fresh(tmp_path, level)
    try:
        with pytest.raises(StudentTimeout):
            sub.fork_bomb_then_hang(marker)
        assert _sleepers(marker) == []
        assert sub.identity("after") == "after"
    finally:
        sub.close()


def test_loop_that_swallows_the_interrupt_is_killed_shortly_after(sandbox):
    """Code that catches the interrupt is killed by the hard timeout; the next call gets a fresh worker."""
    sandbox.strikes.pop("spin_swallowing_interrupts", None)
    started = time.monotonic()
    with pytest.raises(StudentTimeout):
        sandbox.spin_swallowing_interrupts()
    hard = CALL_TIMEOUT + max(1.0, 0.25 * CALL_TIMEOUT)
    assert sandbox.session.last_charged < hard + 1.0
    assert time.monotonic() - started < runclock.BACKSTOP * hard + 3.0
    assert not sandbox.session.alive
    assert sandbox.identity("after") == "after"


def test_slow_call_that_returns_after_its_timeout_still_times_out(sandbox):
    """Returning late is a timeout too (the interrupt cannot be dodged by catching it)."""
    with pytest.raises(StudentTimeout):
        sandbox.sleep_then_answer(CALL_TIMEOUT + 1)
    assert sandbox.sleep_then_answer(0) == 42


@contextlib.contextmanager
def _starved(sub: Submission, spinners: int = 3):
    """The worker's main thread shares one CPU with ``spinners`` busy processes: it gets a
    quarter of a core at most, as on a machine a whole batch keeps busy."""
    sub.identity(0)  # a worker is running (an earlier test may have killed it)
    worker = launcher.host_pid(sub.session._child_pid, sub.session.proc.popen.pid)
    assert worker is not None
    cpu = min(os.sched_getaffinity(worker))
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)  # own autogroups
            for _ in range(spinners)]
    try:
        for proc in busy:
            os.sched_setaffinity(proc.pid, {cpu})
        os.sched_setaffinity(worker, {cpu})
        yield
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def test_time_spent_waiting_for_a_cpu_is_not_charged_to_the_call(sandbox):
    """An honest call that needs 60 % of its limit in CPU time finishes on a machine so busy
    that it takes twice its limit and more in wall-clock time (soft and hard deadline alike)."""
    sandbox.strikes.pop("burn", None)
    with _starved(sandbox):
        started = time.monotonic()
        assert sandbox.burn(0.6 * CALL_TIMEOUT) == "done"
        took = time.monotonic() - started
    assert took > CALL_TIMEOUT + max(1.0, 0.25 * CALL_TIMEOUT)  # the old wall-clock hard deadline
    assert sandbox.session.last_charged < CALL_TIMEOUT


def test_a_helper_threads_waits_for_a_cpu_are_not_charged_either(sandbox):
    """The same call with its work in a pool's helper thread (as torch's intra-op pool runs it)
    while the main thread waits for it: the helper's waits for a CPU are not the student's
    either (they once were: only the main thread's were left out)."""
    sandbox.strikes.pop("burn_in_a_pool", None)
    with _starved(sandbox):
        started = time.monotonic()
        assert sandbox.burn_in_a_pool(0.6 * CALL_TIMEOUT) == "done"
        took = time.monotonic() - started
    assert took > CALL_TIMEOUT + max(1.0, 0.25 * CALL_TIMEOUT)
    assert sandbox.session.last_charged < CALL_TIMEOUT


def test_a_starved_loop_that_swallows_the_interrupt_is_killed_within_the_backstop(sandbox):
    """The grader's hard deadline reads the worker's clock from outside: a loop that swallows
    the interrupt while it waits for a CPU is still killed, no later than ``runclock.BACKSTOP``
    times the hard limit in wall-clock time, and the next call gets a fresh worker."""
    hard = CALL_TIMEOUT + max(1.0, 0.25 * CALL_TIMEOUT)
    sandbox.strikes.pop("spin_swallowing_interrupts", None)
    with _starved(sandbox):
        started = time.monotonic()
        with pytest.raises(StudentTimeout):
            sandbox.spin_swallowing_interrupts()
        took = time.monotonic() - started
    assert hard < took < runclock.BACKSTOP * hard + 3.0
    assert sandbox.identity("after") == "after"


def test_a_function_that_keeps_hanging_fails_fast_after_its_strikes(sandbox):
    """After max_strikes timeouts the same failure is reported at once, without running it again."""
    sandbox.strikes.pop("spin", None)
    for _ in range(sandbox.max_strikes):
        with pytest.raises(StudentTimeout):
            sandbox.spin()
    started = time.monotonic()
    with pytest.raises(StudentTimeout, match=r"not run again"):
        sandbox.spin()
    assert time.monotonic() - started < 0.5


def test_the_submission_budget_bounds_all_calls_together(tmp_path):
    """Once the submission's time budget is spent, every call fails at once."""
    sub = _fresh(tmp_path, "bwrap", budget=1.5)
    try:
        sub.start()
        sub.spent = 0.0  # the budget counts calls from here
        with pytest.raises(StudentTimeout):
            sub.spin()
        started = time.monotonic()
        with pytest.raises(BudgetExhausted, match=r"time budget"):
            sub.identity(1)
        assert time.monotonic() - started < 0.5
    finally:
        sub.close()


@pytest.mark.parametrize("level", LEVELS)
def test_public_and_hidden_tests_never_share_a_workers_memory(tmp_path, level):
    """Issue 14: what a function remembers during one phase (memory, scratch files, a daemon that
    keeps writing) is gone in the next, in both directions; within a phase it stays."""
    sub = _fresh(tmp_path, level)
    try:
        sub.set_phase("hidden")
        assert sub.remember("hidden-input") == 1
        assert sub.remember_in_daemon("hidden-daemon") == 1
        assert sub.recall()[:2] == ["hidden-daemon", "hidden-input"]  # the phase keeps its memory
        sub.set_phase("public")
        assert sub.recall() == []
        sub.remember("public-input")
        sub.set_phase("hidden")
        assert sub.recall() == []
    finally:
        sub.close()


def test_a_function_that_answers_slowly_fails_fast_after_its_strikes(sandbox):
    """Issue 14: answers that come after three quarters of the call's timeout count as strikes;
    after max_strikes of them the function is not run again (each would cost a timeout's worth)."""
    sandbox.strikes.pop("sleep_then_answer", None)
    assert sandbox.sleep_then_answer(CALL_TIMEOUT * 0.4) == 42  # well within: no strike
    assert sandbox.strikes.get("sleep_then_answer", 0) == 0
    for _ in range(sandbox.max_strikes):
        assert sandbox.sleep_then_answer(CALL_TIMEOUT * 0.8) == 42  # a slow answer still counts
    started = time.monotonic()
    with pytest.raises(StudentTimeout, match=r"more than three quarters of its .* limit.*not run again"):
        sandbox.sleep_then_answer(0)
    assert time.monotonic() - started < 0.5


# ----------------------------------------------------------------------------- resources


def test_memory_bomb_ends_in_a_memory_error(sandbox):
    """Allocating without end hits the memory limit as a MemoryError; the worker lives on."""
    with pytest.raises(StudentException, match=r"MemoryError"):
        # A generous timeout: the point is the memory limit, not the clock, on a busy machine.
        sandbox.call("memory_bomb", timeout=30)
    assert sandbox.identity(1) == 1


def test_a_function_that_keeps_hitting_the_memory_limit_fails_fast_after_its_strikes(sandbox):
    """Hitting the memory limit can cost seconds per call (the memory is touched first): after
    max_strikes such calls the function is not run again, so it cannot eat the others' budget."""
    sandbox.strikes.pop("memory_bomb", None)
    for _ in range(sandbox.max_strikes):
        with pytest.raises(StudentException, match="reached the sandbox's memory limit"):
            sandbox.call("memory_bomb", timeout=30)
    started = time.monotonic()
    with pytest.raises(StudentException, match="not run again"):
        sandbox.memory_bomb()
    assert time.monotonic() - started < 0.5


def test_a_function_that_fails_slowly_fails_fast_after_its_strikes(sandbox):
    """An exception raised only after half the timeout strikes too; a quick one never does."""
    sandbox.strikes.pop("slow_fail", None)
    for _ in range(3):
        with pytest.raises(StudentException, match="ValueError: quick"):
            sandbox.slow_fail(0.0)
    assert sandbox.strikes.get("slow_fail", 0) == 0
    for _ in range(sandbox.max_strikes):
        with pytest.raises(StudentException, match="ValueError: slow"):
            sandbox.slow_fail(CALL_TIMEOUT * 0.6)
    started = time.monotonic()
    with pytest.raises(StudentException, match="not run again"):
        sandbox.slow_fail(0.0)
    assert time.monotonic() - started < 0.5


def test_file_size_is_limited(sandbox):
    """A file larger than the limit cannot be written (EFBIG)."""
    assert sandbox.big_file(LIMITS.file_mb + 2) == "OSError 27"
    assert sandbox.big_file(1) == "written"


def test_scratch_folder_is_limited(sandbox):
    """Filling the scratch folder past its size fails (bwrap: the tmpfs is full; rlimit: the
    watchdog stops the worker)."""
    try:
        outcome = sandbox.write_scratch(LIMITS.scratch_mb * 3)
    except StudentCrash as exc:
        assert sandbox.isolation.level == "rlimit"
        assert f"more than {LIMITS.scratch_mb} MB to its scratch folder" in str(exc)
    else:
        assert sandbox.isolation.level == "bwrap"
        assert outcome.startswith("OSError 28"), outcome  # ENOSPC
        written = int(outcome.split()[-2])
        assert written <= LIMITS.scratch_mb


def test_output_flood_stops_the_worker_and_output_is_capped(tmp_path):
    """Printing past the flood limit kills the worker with that reason; the kept output is capped."""
    sub = _fresh(tmp_path, "bwrap")
    try:
        with pytest.raises(StudentCrash, match=r"printed more than 8 MB"):
            sub.flood(64)
        output = sub.session.output()
        kept = output.split("\n[... output truncated")[0]
        assert len(kept.encode()) <= LIMITS.output_bytes
        assert "output truncated" in output
    finally:
        sub.close()


def _sleepers(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd[:2] == [b"sleep", marker.encode()]:
                found.append(int(pid))
    return found


@pytest.mark.parametrize("level", LEVELS)
def test_fork_bomb_is_bounded_and_leaves_no_process_behind(tmp_path, level):
    """Forking stops at the process limit; children that escaped into new sessions die with the sandbox."""
    marker = f"{os.getpid() % 1000}{len(level)}77"
    sub = _fresh(tmp_path, level)
    try:
        children = sub.fork_bomb(marker)
        assert 0 < children < LIMITS.processes
        assert _sleepers(marker), "the escaped children should be alive until the sandbox is killed"
    finally:
        sub.close()
    deadline = time.monotonic() + 5
    while _sleepers(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sleepers(marker) == []


# ----------------------------------------------------------------------------- the outside world


def test_cannot_write_or_delete_outside_the_scratch_folder(sandbox, canary):
    """Writes and deletes outside the scratch folder fail: a world-writable canary, the submission,
    the given files, the worker's code, the virtual environment."""
    info = sandbox.whoami()
    inside = [f"{info['submission']}/attacks.py", f"{info['given']}/resnet20.py",
              f"{info['code']}/channel.py"]
    outside = [canary / "keep.txt", canary / "new.txt", Path("/tmp/hw4-sandbox-test-pwned"),
               ROOT / "hw4-pwned.txt", Path(info["prefix"]) / "hw4-pwned.txt"]
    paths = [str(p) for p in outside] + inside
    assert sandbox.try_write(paths) == []
    assert sandbox.try_delete(paths) == []
    assert (canary / "keep.txt").read_text() == "original"
    assert sorted(p.name for p in canary.iterdir()) == ["keep.txt"]
    assert [p for p in outside[2:] if p.exists()] == []
    assert sandbox.identity("still loaded") == "still loaded"  # its own files are intact
    assert sandbox.try_write(["inside-scratch.txt"]) == ["inside-scratch.txt"]


def test_cannot_read_the_grader_files(sandbox):
    """The tests, the reference and the config are out of reach (rlimit: with Landlock)."""
    readable = sandbox.try_read([str(p) for p in SECRET_FILES] + ["/etc/shadow"])
    if sandbox.isolation.level == "rlimit" and not sandbox.isolation.landlock:
        assert "the filesystem is readable" in sandbox.isolation.detail
    else:
        assert readable == []


def test_no_network(sandbox):
    """TCP and UDP to the grader's loopback never arrive."""
    received: list[bytes] = []
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp.bind(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    udp.bind(("127.0.0.1", port))
    tcp.listen()
    tcp.settimeout(0.2)
    udp.settimeout(0.2)
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            for sock in (tcp, udp):
                try:
                    if sock is tcp:
                        conn, _ = tcp.accept()
                        received.append(b"tcp connection")
                        conn.close()
                    else:
                        received.append(udp.recv(100))
                except OSError:
                    pass

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        outcomes = sandbox.try_connect(port)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(2)
        tcp.close()
        udp.close()
    assert received == []
    assert True not in outcomes  # no TCP connection succeeded


def test_signals_reach_neither_the_grader_nor_the_sandbox_init(sandbox):
    """SIGKILL to the parent, to pid 1 and to every process (-1) harms no one outside the sandbox."""
    sandbox.signal_everyone()
    assert sandbox.identity(5) == 5


# ----------------------------------------------------------------------------- crashes and values


def test_segfault_is_reported_and_the_worker_restarts(sandbox):
    """A segmentation fault kills the worker; the student is told so; the next call works."""
    sandbox.strikes.pop("segfault", None)
    with pytest.raises(StudentCrash, match=r"SIGSEGV"):
        sandbox.segfault()
    assert sandbox.identity(2) == 2


def test_exits_read_as_the_students_doing(sandbox):
    """os._exit is a crash with its status; sys.exit is an exception; neither touches the grader."""
    with pytest.raises(StudentCrash, match=r"exited with status 3"):
        sandbox.hard_exit()
    with pytest.raises(StudentException, match=r"SystemExit"):
        sandbox.soft_exit()
    assert sandbox.identity(3) == 3


def test_only_plain_data_comes_back(sandbox, canary):
    """Objects with __reduce__ and float subclasses are refused; an ndarray subclass arrives as a
    plain array."""
    with pytest.raises(BadReturn, match=r"cannot be graded"):
        sandbox.returns_reducer(str(canary))
    with pytest.raises(BadReturn, match=r"_Sneaky"):
        sandbox.returns_float_subclass()
    value = sandbox.returns_ndarray_subclass()
    assert type(value) is np.ndarray and value.tolist() == [0.0, 1.0, 2.0]
    assert not (canary / "REDUCE-RAN").exists()


def test_arguments_are_copies_and_never_written_back(sandbox):
    """A function writing into its array and tensor arguments changes its own copies only: not
    the test's data, even when the test passed a view of session data (issue 14)."""
    import torch

    data = np.arange(3.0)
    column = data.reshape(-1, 1)  # a view, as a column-layout call passes the homework's y
    tensor = torch.ones(2)
    assert sandbox.mutate_inputs(column, tensor) == -3.0  # the worker's copy did change
    assert data.tolist() == [0.0, 1.0, 2.0] and tensor.tolist() == [1.0, 1.0]


def test_forged_bytes_on_the_reply_channel_break_only_that_call(sandbox):
    """Bytes that are not a frame end the call as a crash; the next call gets a fresh worker."""
    sandbox.strikes.pop("forge_reply", None)
    with pytest.raises(StudentCrash, match=r"malformed reply"):
        sandbox.forge_reply()
    assert sandbox.identity(4) == 4


def test_tracebacks_show_only_the_students_frames(sandbox):
    """An exception's traceback lists the student's own lines, not the worker's or the libraries'."""
    with pytest.raises(StudentException) as info:
        sandbox.raises_deep([1.0])
    tb = info.value.traceback
    assert 'File "attacks.py, module", line' in tb and "return _helper(x)" in tb
    assert "NameError: name 'undefined_name' is not defined" in tb
    assert "worker.py" not in tb and "site-packages" not in tb and "/sandbox/" not in tb


def test_a_signature_from_another_term_is_named_not_blamed_on_the_body(sandbox):
    """Calling with parameters the function lacks says which signature the grader expects."""
    with pytest.raises(SignatureMismatch) as info:
        sandbox.older_signature(np.eye(2), np.ones(2), lr=0.1, steps=3)
    message = str(info.value)
    assert "older_signature(<arg>, <arg>, lr=..., steps=...)" in message
    assert "older_signature(X, y)" in message and "unexpected keyword argument 'lr'" in message


# ----------------------------------------------------------------------------- loading


@pytest.mark.parametrize("level", LEVELS)
def test_a_file_that_hangs_while_loading_costs_only_its_own_functions(tmp_path, level):
    """A class body that never ends breaks its file (with the reason); the other files load and run."""
    files = {"lab1.py": "def run_gd(X, y, lr=0.02, steps=200):\n    return X\n\n\nclass Hang:\n"
                        "    while True:\n        pass\n",
             "attacks.py": ATTACKS}
    sub = _fresh(tmp_path, level, files=files, load_timeout=3.0)
    try:
        started = time.monotonic()
        report = sub.start()
        assert time.monotonic() - started < 3.0 + 60  # one load timeout plus two worker starts
        assert "did not finish within 3 s" in sub.session.broken.get("lab1.py", "")
        assert any(line.startswith("lab1.py: could not be loaded") for line in report.unit_errors())
        with pytest.raises(StudentCrash, match=r"lab1.py could not be loaded"):
            sub.run_gd(np.eye(2), np.ones(2))
        assert sub.identity(9) == 9
    finally:
        sub.close()


@pytest.mark.parametrize("level", LEVELS)
def test_loading_counts_against_the_submission_and_has_an_allowance(tmp_path, level):
    """Issue 14: files that each load just under the load timeout cannot hold the worker for
    (files x timeout): all files together get twice the timeout per start, the files not loaded
    by then are left out (named), and the loading time counts against the budget."""
    files = {"attacks.py": ATTACKS}
    files.update({f"slow_{i}.py": "import time\n\n\nclass Slow:\n    time.sleep(0.9)\n" for i in range(6)})
    sub = _fresh(tmp_path, level, files=files, load_timeout=1.5)
    try:
        started = time.monotonic()
        report = sub.start()
        took = time.monotonic() - started
        loaded = {u["unit"] for u in report.units}
        left_out = [f for f, why in sub.session.broken.items() if "took more than 3 s in all" in why]
        assert "attacks.py" in loaded and len(left_out) >= 2, (loaded, sub.session.broken)
        assert loaded | set(left_out) == set(files), (loaded, sub.session.broken)
        # one pass cut at 3 s, the restart's reload of what fitted: not six times 0.9 s twice
        assert report.seconds < 2 * 3.0 + 30, report.seconds  # + two worker starts on a busy machine
        assert sub.spent >= took - 1.0
        assert sub.identity(11) == 11
    finally:
        sub.close()


def test_a_student_file_named_like_a_library_does_not_replace_it(tmp_path):
    """numpy.py in a submission loads under a private name: the worker and the student keep the real numpy."""
    files = {"numpy.py": "def asarray(*a, **k):\n    raise RuntimeError('hijacked')\n", "attacks.py": ATTACKS}
    sub = _fresh(tmp_path, "bwrap", files=files)
    try:
        report = sub.start()
        assert {u["unit"]: u.get("shadowing") for u in report.units}["numpy.py"] == "numpy"
        assert any(e.startswith("numpy.py: named like the module numpy") for e in report.unit_errors())
        # np.arange in attacks.py and the worker's own array encoding both need the real numpy.
        assert sub.returns_ndarray_subclass().tolist() == [0.0, 1.0, 2.0]
    finally:
        sub.close()


def test_a_sandbox_that_cannot_start_is_a_grader_fault(tmp_path):
    """If the worker dies before any student code ran, the grader is at fault, not the student."""
    sub = _fresh(tmp_path, "rlimit", limits=Limits(memory_mb=64, address_space_mb=256))
    try:
        with pytest.raises(GraderError, match=r"did not start"):
            sub.identity(1)
        with pytest.raises(GraderError):  # and stays so, without another attempt
            sub.identity(1)
    finally:
        sub.close()


# ----------------------------------------------------------------------------- launcher


def test_kill_sweeps_processes_that_left_the_session():
    """Killing a sandbox also kills what daemonized out of its process group and session."""
    iso = detect_isolation("rlimit")
    folder = Path(tempfile.mkdtemp(prefix="hw4-daemon-", dir="/tmp"))
    folder.chmod(0o755)
    script = folder / "daemon.py"
    script.write_text("import os, time\nif os.fork() == 0:\n    os.setsid()\n"
                      "    os.execv('/bin/sleep', ['sleep', '8123'])\ntime.sleep(60)\n")
    script.chmod(0o644)
    proc = launcher.spawn([sys.executable, str(script)], isolation=iso, limits=LIMITS,
                          binds=[(str(folder), str(folder))], env={"PATH": "/usr/bin:/bin"}, cwd=str(folder))
    deadline = time.monotonic() + 30
    while not _sleepers("8123") and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert _sleepers("8123"), proc.output_text()
    finally:
        proc.kill()
        script.unlink()
        folder.rmdir()
    assert _sleepers("8123") == []
    if proc.lease is not None:
        assert proc.lease.fd == -1  # the uid went back only once nothing of it was left


def test_a_late_watchdog_cannot_kill_the_next_sandbox_of_the_same_uid():
    """Once a sandbox is killed and its uid handed on, its watchdogs (flood, disk) must not sweep
    that uid again: the next sandbox holding it would die. (Found as a restart killed by SIGKILL
    right after the scratch watchdog had stopped the previous worker.)"""
    iso = detect_isolation("rlimit")
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    first = launcher.spawn(argv, isolation=iso, limits=LIMITS, binds=[], env={"PATH": "/usr/bin:/bin"}, cwd="/")
    first.kill()
    lease = first.lease
    second = launcher.spawn(argv, isolation=iso, limits=LIMITS, binds=[], env={"PATH": "/usr/bin:/bin"},
                            cwd="/", lease=launcher.lease_uid(lease.uid - launcher.UID_BASE) if lease else None)
    try:
        if lease is not None:
            assert second.uid == lease.uid  # the same uid, handed on
        first.stop("printed too much, too late")
        time.sleep(0.5)
        assert second.popen.poll() is None, second.exit_description()
    finally:
        second.kill()


def test_uid_leases_use_a_private_lock_folder(tmp_path, monkeypatch):
    """Leases are private lock files, and a lock folder another user could have prepared is refused."""
    if os.geteuid() != 0:
        assert launcher.lease_uid() is None
        return
    lease = launcher.lease_uid(500)
    try:
        assert lease is not None and lease.uid >= launcher.UID_BASE
        assert stat.S_IMODE(os.stat(Path(launcher.LOCK_DIR) / str(lease.uid)).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(launcher.LOCK_DIR).st_mode) == 0o700
    finally:
        lease.release()
    folder = tmp_path / "locks"
    folder.mkdir()
    folder.chmod(0o777)
    monkeypatch.setattr(launcher, "LOCK_DIR", str(folder))
    with pytest.raises(RuntimeError, match=r"not a root-owned private folder"):
        launcher.lease_uid()


def test_each_call_is_seeded_from_its_own_text_for_python_numpy_and_torch(tmp_path):
    """The same call draws the same numbers every time, and torch's CPU generator is in the state
    ``torch.manual_seed`` of the call's seed gives (the worker seeds that generator alone)."""
    import torch

    from grader.sandbox.proxy import _seed, describe_call

    code = ("import random\nimport numpy as np\nimport torch\n\n"
            "def draw(n):\n    return [random.random(), float(np.random.rand()), torch.rand(n).tolist()]\n")
    sub = _fresh(tmp_path, "auto", {"draws.py": code})
    sub.discovery.found["draw"] = Location("draws.py", "test")
    try:
        first, again, other = sub.call("draw", 3), sub.call("draw", 3), sub.call("draw", 4)
    finally:
        sub.close()
    assert first == again and first[2] != other[2][:3]
    torch.manual_seed(_seed(describe_call("draw", (3,), {})))
    assert first[2] == torch.rand(3).tolist()
