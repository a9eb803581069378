"""The hostile-submission corpus, graded end to end: every attack scores as expected, nothing leaks.

Two gradings of the corpus are checked:

* **The session's sample batch** (``sample_batch``: the real ``hw4grade grade`` over every bundled
  sample, malicious ones among the well-behaved, two workers, the real config -- the test-only
  limits for the samples that wait on a limit, ``batch_support.LIMITED`` --, ``bwrap``): no
  grader error, no line of the grader's own source in any student-visible text, every attack
  marker at 0, a hang bounded by its timeouts, the correct sample exactly as graded alone.
  (``test_samples.py`` checks every item of every sample against its ``expected.json`` there.)
* **The ``rlimit`` level** for the attacks the two levels stop differently (namespaces vs a uid
  of its own plus Landlock): each graded here (``conftest.grade``, a few at a time) on the items it
  attacks plus one control item it must keep, with a test-only config (``$HW4_CONFIG``: short
  timeouts) while the test watches a world-writable canary folder, a TCP/UDP listener on the
  loopback port the samples try, and the process table (the fork bomb's escaped children).

The attacks report what they managed with markers (``HW4-WROTE n=0`` ...; see
``fixtures/samples/specs_malicious.py``); a marker above 0 is a breach.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from batch_support import BATCH_TIMEOUT_S, LIMITS, limits_config, meets
from conftest import ROOT, SUBMISSIONS
from grade_one import grade

from fixtures.samples.specs_malicious import CANARY_DIR, CANARY_FILE, FORK_SLEEP, NET_PORT, SAMPLES
from grader.archive import unpack_submissions
from grader.redact import MARKER, redact, submission_lines
from grader.sandbox import runclock
from reference.config import ITEM_IDS, load

MALICIOUS = SUBMISSIONS / "malicious"
NAMES = [s.name for s in SAMPLES]
#: attacks the two levels stop differently: graded at the rlimit level here as well
RLIMIT = ["mal_loop_in_call", "mal_fork_bomb", "mal_read_tests", "mal_uses_reference", "mal_write_outside",
          "mal_delete_files", "mal_socket", "mal_signal_grader", "mal_pickle_reduce", "mal_hidden_leak"]
CONTROLS = ["lab1.b", "lab1.a", "lab3.e"]  # cheap items; the first one a sample does not attack
#: samples that must report what they tried (the marker must be there, with 0)
MUST_REPORT = {"mal_read_tests": "READ-SECRETS found", "mal_socket": "NET connected",
               "mal_write_outside": "WROTE n", "mal_fake_results": "WROTE n", "mal_delete_files": "DELETED n"}
MARKERS = re.compile(r"HW4-(READ-SECRETS found|NET connected|WROTE n|DELETED n)=(\d+)")
PARALLEL = 3


def _expected(name: str) -> dict:
    return json.loads((MALICIOUS / name / "expected.json").read_text())["points_no_notebooks"]


def _attacked(name: str) -> list[str]:
    cfg = load()
    want = _expected(name)
    return [item for item in ITEM_IDS if want[item] != cfg.rubric[item].function]


def _selected(name: str) -> list[str]:
    attacked = _attacked(name)
    return [*attacked, next(c for c in CONTROLS if c not in attacked)]


def _k(items: list[str]) -> str:
    # Test names carry the item without its dot: test_lab1e_..., so "lab1e" selects the whole item.
    return " or ".join(item.replace(".", "") for item in items)


@pytest.fixture(scope="module")
def test_config(tmp_path_factory) -> Path:
    """The term's config with the test-only limits (``batch_support.LIMITS``: a hang costs seconds)."""
    return limits_config(tmp_path_factory.mktemp("config"))


class Listener:
    """TCP and UDP on the loopback port the samples try; records whatever arrives."""

    def __init__(self, port: int):
        self.received: list[str] = []
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", port))
        self.tcp.listen()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", port))
        for sock in (self.tcp, self.udp):
            sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, peer = self.tcp.accept()
                self.received.append(f"tcp from {peer}")
                conn.close()
            except OSError:
                pass
            try:
                data, peer = self.udp.recvfrom(100)
                self.received.append(f"udp from {peer}: {data!r}")
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.tcp.close()
        self.udp.close()


def _fingerprint(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def rlimit_runs(test_config):
    """The RLIMIT samples graded at the rlimit level, a few at a time, with the canary and the
    listener armed."""
    canary = Path(CANARY_DIR)
    canary.mkdir(exist_ok=True)
    for path in canary.iterdir():
        path.unlink()
    canary.chmod(0o777)
    (canary / CANARY_FILE).write_text("original")
    (canary / CANARY_FILE).chmod(0o666)
    listener = Listener(NET_PORT)
    before = {name: _fingerprint(MALICIOUS / name) for name in NAMES}
    try:
        with pytest.MonkeyPatch.context() as mp, ThreadPoolExecutor(PARALLEL) as pool:
            mp.setenv("HW4_CONFIG", str(test_config))
            futures = {name: pool.submit(grade, MALICIOUS / name, isolation="rlimit", k=_k(_selected(name)))
                       for name in RLIMIT}
            results = {name: future.result() for name, future in futures.items()}
    finally:
        listener.close()
    yield {"results": results, "listener": listener.received, "before": before}
    for path in canary.iterdir():
        path.unlink()
    canary.rmdir()


def _visible_texts(result) -> list[str]:
    """Every student-derived text a result shows: feedback messages, warnings, the Gradescope
    notes, the captured output, and the grader error. (The tests' own docstrings are shown by
    design and are not student-derived.)"""
    return [c.message for c in result.cases()] + result.warnings + [
        result.to_gradescope()["output"], result.output, result.grader_error or ""]


def _assert_no_breach(result, name: str, where: str) -> None:
    assert result.grader_error is None, f"{name} ({where}): {result.grader_error}"
    own = submission_lines(MALICIOUS / name)  # the student's own lines may be shown back to them
    for text in _visible_texts(result):
        leaked = [line for line in text.splitlines() if redact(line, own) != line and line != MARKER]
        assert leaked == [], f"{name} ({where}): grader source in a visible text: {leaked[:3]}"
    found = MARKERS.findall(result.output)
    assert all(int(count) == 0 for _, count in found), f"{name} ({where}): {found}"
    if name in MUST_REPORT:
        assert any(kind == MUST_REPORT[name] for kind, _ in found), (
            f"{name} ({where}): the attack never reported (its code did not run?)\n{result.output[-2000:]}")


# ----------------------------------------------------------------------------- the session batch


# The session batch grades every sample (minutes): whichever test asks first waits for it.
@pytest.mark.timeout(BATCH_TIMEOUT_S)
@pytest.mark.parametrize("name", NAMES)
def test_in_the_batch_the_sample_leaks_nothing_and_every_attack_failed(sample_batch, name):
    """Graded among all samples (bwrap, real config): no grader source shown, every marker 0."""
    result = sample_batch.result(sample_batch.student_for(MALICIOUS / name))
    assert result.isolation.startswith("bwrap ("), result.isolation
    _assert_no_breach(result, name, "batch")


LEAK = re.compile(r"HW4-LEAK hidden=(\d+) public=(\d+)")


def _assert_phases_apart(result, where: str) -> None:
    """mal_hidden_leak reports, in each runner test's message, how many hidden and public inputs
    its project_top_k remembers (memory and scratch files): public tests must see no hidden
    input, hidden tests no public one (issue 14)."""
    seen = {"public": [], "hidden": []}
    for case in result.items["lab1.c"].cases:
        for hidden, public in LEAK.findall(case.message):
            seen[case.visibility].append((int(hidden), int(public)))
    assert seen["public"] and seen["hidden"], f"{where}: the attack never reported: {seen}"
    assert all(hidden == 0 for hidden, _ in seen["public"]), f"{where}: hidden inputs in a public test {seen}"
    assert all(public == 0 for _, public in seen["hidden"]), f"{where}: public inputs in a hidden test {seen}"
    assert any(public > 0 for _, public in seen["public"]), f"{where}: nothing remembered at all? {seen}"


# The session batch grades every sample (minutes): whichever test asks first waits for it.
@pytest.mark.timeout(BATCH_TIMEOUT_S)
def test_in_the_batch_no_public_test_shows_a_hidden_input(sample_batch):
    """Public and hidden tests run in different workers: what a function saw in one phase is gone in the other."""
    result = sample_batch.result(sample_batch.student_for(MALICIOUS / "mal_hidden_leak"))
    _assert_phases_apart(result, "batch")


def test_at_the_rlimit_level_no_public_test_shows_a_hidden_input(rlimit_runs):
    _assert_phases_apart(rlimit_runs["results"]["mal_hidden_leak"], "rlimit")


# The session batch grades every sample (minutes): whichever test asks first waits for it.
@pytest.mark.timeout(BATCH_TIMEOUT_S)
def test_in_the_batch_a_hang_costs_at_most_its_timeouts(sample_batch):
    """An endless loop in soft_threshold costs max_strikes timeouts per hanging function, no more
    (graded with the test-only limits, as every sample that waits on a limit: batch_support.LIMITED)."""
    cfg = load(sample_batch.limited_config)
    result = sample_batch.result(sample_batch.student_for(MALICIOUS / "mal_loop_in_call"))
    hung = [c for item in ("lab1.e", "lab1.f") for c in result.items[item].cases if c.kind == "function"]
    timeout = cfg.grading.call_timeout_s
    assert hung and all(f"did not finish within {timeout:g} s" in c.message for c in hung), [
        c.message[:200] for c in hung]
    # soft_threshold, run_proximal_gd, trimmed_soft_threshold, run_trimmed_l1: two strikes each,
    # each at most the timeout plus the hard-kill grace; then every further call fails at once
    # (5 s per test covers Hypothesis's own work and the worker's start on a busy machine).
    # Without the strikes, every example and every shrink step would cost a full timeout.
    # Limits count charged time (runclock): on a machine the suite keeps busy a hung call may
    # take up to BACKSTOP times its limit in wall-clock time, which is what c.seconds measures.
    bound = runclock.BACKSTOP * 4 * 2 * (timeout + min(max(1.0, timeout / 4), 10.0)) + 5 * len(hung)
    assert sum(c.seconds for c in hung) <= bound
    assert result.execution_time < runclock.BACKSTOP * cfg.grading.submission_budget_s + 120


# The session batch grades every sample (minutes): whichever test asks first waits for it.
@pytest.mark.timeout(BATCH_TIMEOUT_S)
def test_in_the_batch_the_correct_sample_scores_as_it_does_alone(sample_batch):
    """Next to every hostile sample, the correct one gets exactly what it gets graded alone."""
    in_batch = sample_batch.result(sample_batch.student_for(SUBMISSIONS / "correct" / "reference"))
    items = ["lab1.c", "lab2.b"]
    alone = grade(SUBMISSIONS / "correct" / "reference", k=_k(items))
    for item in items:
        got = [(c.name, c.status, c.score) for c in in_batch.items[item].cases if c.kind == "function"]
        want = [(c.name, c.status, c.score) for c in alone.items[item].cases if c.kind == "function"]
        assert got == want and got, item


# ----------------------------------------------------------------------------- the rlimit level


@pytest.mark.parametrize("name", RLIMIT)
def test_at_the_rlimit_level_the_sample_scores_as_expected_and_leaks_nothing(rlimit_runs, name):
    """The attacked items lose (no more than the honest parts earn); the control keeps full points."""
    result = rlimit_runs["results"][name]
    assert result.isolation.startswith("rlimit ("), result.isolation
    _assert_no_breach(result, name, "rlimit")
    want = _expected(name)
    misses = {item: (round(result.items[item].score, 4), want[item]) for item in _selected(name)
              if not meets(result.items[item].score, want[item])}
    assert misses == {}, f"{name} at rlimit: item -> (got, expected) {misses}"
    graded_cases = [c for item in _selected(name) for c in result.items[item].cases if c.kind == "function"]
    assert graded_cases and all(c.status in ("passed", "failed") for c in graded_cases), (
        [(c.name, c.status, c.message[:200]) for c in graded_cases if c.status not in ("passed", "failed")])


def test_at_the_rlimit_level_nothing_outside_the_sandbox_was_touched(rlimit_runs):
    """The canary, the samples, /tmp and the repository are as they were; no pickle payload ran."""
    canary = Path(CANARY_DIR)
    assert (canary / CANARY_FILE).read_text() == "original"
    assert sorted(p.name for p in canary.iterdir()) == [CANARY_FILE]
    for name in NAMES:
        assert _fingerprint(MALICIOUS / name) == rlimit_runs["before"][name], f"{name}'s files changed"
    for path in [Path("/tmp/results.json"), Path("/tmp/hw4grade-pwned-write"), ROOT / "results.json",
                 ROOT.parent / "results.json", Path("/autograder/results/results.json")]:
        assert not (path.exists() and "HW4" in path.read_text(errors="replace")), f"{path} was written"
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    custom = site / "sitecustomize.py"
    assert not custom.exists() or "HW4-PWNED" not in custom.read_text()


def test_at_the_rlimit_level_no_network_traffic_reached_the_host(rlimit_runs):
    assert rlimit_runs["listener"] == []


def test_at_the_rlimit_level_no_process_of_a_sandbox_survives(rlimit_runs):
    """The fork bomb's children left their session and process group; they died with the sandbox."""
    survivors = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd[:2] == [b"sleep", FORK_SLEEP.encode()]:
                survivors.append(int(pid))
    assert survivors == []


def test_at_the_rlimit_level_a_hang_costs_at_most_its_timeouts(rlimit_runs):
    result = rlimit_runs["results"]["mal_loop_in_call"]
    hung = [c for item in ("lab1.e", "lab1.f") for c in result.items[item].cases if c.kind == "function"]
    messages = [c.message for c in hung]
    assert hung and all("did not finish within 3 s" in m for m in messages), [m[:200] for m in messages]
    # Four hanging functions, two strikes each, 3 s + 1 s grace per strike; 5 s per test for
    # Hypothesis and the worker's start on a busy machine (see the batch version above).
    assert sum(c.seconds for c in hung) <= runclock.BACKSTOP * 4 * 2 * (LIMITS["call_timeout_s"] + 1.0) + 5 * len(hung)
    assert result.items["lab1.b"].score == pytest.approx(load().rubric["lab1.b"].function, abs=1e-3)


# ----------------------------------------------------------------------------- built at test time


def _correct_files() -> dict[str, bytes]:
    folder = SUBMISSIONS / "correct" / "reference"
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "expected.json"}


def test_an_export_with_hostile_zips_grades_only_what_is_safe(tmp_path, test_config):
    """An LMS export holding an honest zip, a zip with ../ entries, a zip bomb and a zip whose
    answers.yaml is a symlink to the grader's config: the hostile ones are refused or stripped
    (each named), and the stripped one is graded without ever reading the config."""
    def student_zip(extra: dict[str, bytes] = (), link: tuple[str, str] | None = None, drop=()) -> bytes:
        import io
        import stat

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in {**_correct_files(), **dict(extra)}.items():
                if name not in drop:
                    zf.writestr(f"hw4/{name}", data)
            if link:
                info = zipfile.ZipInfo(f"hw4/{link[0]}")
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, link[1])
        return buf.getvalue()

    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w") as zf:
        zf.writestr("honest.zip", student_zip())
        zf.writestr("dotdot.zip", student_zip({"../../../../tmp/hw4grade-canary/PWNED-zip": b"x"}))
        zf.writestr("bomb.zip", student_zip({"zeros.bin": b"\0" * (64 << 20)}))
        config = ROOT / "reference" / "assignment.toml"
        zf.writestr("linker.zip", student_zip(link=("answers.yaml", os.path.relpath(config, "/tmp/x/y")),
                                              drop=("answers.yaml",)))
    out = unpack_submissions(export, tmp_path / "unpacked")
    assert sorted(s for s, _ in out.submissions) == ["honest", "linker"]
    rejected = dict(out.rejected)
    assert "points outside its folder" in rejected["dotdot"] and "dotdot.zip" in rejected["dotdot"]
    assert "zip bomb" in rejected["bomb"] and "bomb.zip" in rejected["bomb"]
    assert any("linker" in w and "answers.yaml is a symlink" in w for w in out.warnings)
    assert not Path(CANARY_DIR, "PWNED-zip").exists()
    folders = dict(out.submissions)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HW4_CONFIG", str(test_config))
        honest = grade(folders["honest"], k="tf_choice")
        linker = grade(folders["linker"], k="tf_choice")
    tf = [f"tf.{i}" for i in range(1, 11)]
    assert all(honest.items[i].score == pytest.approx(load().rubric[i].function, abs=1e-3) for i in tf)
    assert all(linker.items[i].score == 0 for i in tf)  # no answers.yaml: nothing to earn
    key_line = next(line for line in config.read_text().splitlines() if line.startswith("key = "))
    assert all(key_line not in text for text in _visible_texts(linker))


def test_a_notebook_over_the_size_limit_costs_only_its_own_lab(tmp_path, test_config):
    """A 40 MB lab1.ipynb (huge outputs) is reported by name and not read; Labs 2-3 are graded."""
    from grader.extract import MAX_NOTEBOOK_BYTES

    folder = tmp_path / "huge"
    folder.mkdir()
    for name, data in _correct_files().items():
        (folder / name).write_bytes(data)
    nb = json.loads((folder / "lab1.ipynb").read_text())
    line = "x" * 1023 + "\n"
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    cell["outputs"] = [{"output_type": "stream", "name": "stdout",
                        "text": [line] * (MAX_NOTEBOOK_BYTES // len(line) + 8192)}]  # 32 MB + 8 MB
    (folder / "lab1.ipynb").write_text(json.dumps(nb))
    assert (folder / "lab1.ipynb").stat().st_size > MAX_NOTEBOOK_BYTES
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HW4_CONFIG", str(test_config))
        result = grade(folder, k=_k(["lab1.b", "lab3.e"]))
    assert any("lab1.ipynb" in w and "larger than the 32 MB limit" in w for w in result.warnings)
    assert result.items["lab1.b"].score == 0
    assert result.items["lab3.e"].score == pytest.approx(load().rubric["lab3.e"].function, abs=1e-3)
