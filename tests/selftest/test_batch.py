"""``grader.batch``: collecting submissions, forked parallel grading, crashes, resuming.

Most tests drive the batch with a fake grader (``batch_support.fake_grade``) so that crashes,
hangs and interruptions are cheap and exact; one test kills a real batch of real samples halfway.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
from batch_support import SUBMISSIONS, copy_samples, fake_grade, make_submissions

import grader.batch.run
import grader.fingerprint
from grader.batch import (
    BatchDir,
    BatchError,
    ForkExecutor,
    collect,
    content_hash,
    prepare,
    run_batch,
    sanitize_id,
)
from grader.grade import GradeOptions
from grader.outputs.results_json import problems
from reference.config import load

FUNCTIONS = GradeOptions(notebooks=False)


@pytest.fixture(autouse=True)
def steady_fingerprint(monkeypatch):
    """The fake grader reads none of the grader's sources, which other work may edit while
    these tests run: here a submission's key depends on its files only."""
    monkeypatch.setattr(grader.batch.run, "grading_fingerprint", lambda options, cfg: "fake-grader")


def make_zip(path: Path, files: dict[str, bytes | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def hw(folder: Path, name: str = "lab1.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("x = 1\n")
    return folder


def students(coll) -> list[str]:
    return [s.student for s in coll.sources]


# ============================================================================ collecting


def test_collect_flat_folder_of_folders_and_zips(tmp_path):
    subs = tmp_path / "subs"
    hw(subs / "alice")
    make_zip(subs / "bob.zip", {"hw4.ipynb": "{}"})
    coll = collect(subs, tmp_path / "work")
    assert students(coll) == ["alice", "bob"]
    assert {s.student: s.kind for s in coll.sources} == {"alice": "folder", "bob": "zip"}
    assert coll.warnings == []


def test_collect_names_grouped_submissions_group_dash_name(tmp_path):
    """The samples' layout: kind folders holding sample folders; a group of one is still a group."""
    subs = tmp_path / "subs"
    hw(subs / "buggy" / "lab1_missing_factor_2")
    hw(subs / "buggy" / "lab3_floor")
    hw(subs / "correct" / "reference")
    coll = collect(subs, tmp_path / "work")
    assert students(coll) == ["buggy-lab1_missing_factor_2", "buggy-lab3_floor", "correct-reference"]
    assert {s.student: s.origin for s in coll.sources}["correct-reference"] == "correct/reference"


def test_collect_takes_one_wrapped_folder_per_student_as_students_not_groups(tmp_path):
    """alice/hw4/... and bob/hw4/...: students whose work sits in one subfolder."""
    subs = tmp_path / "subs"
    hw(subs / "alice" / "hw4")
    hw(subs / "bob" / "hw4")
    coll = collect(subs, tmp_path / "work")
    assert students(coll) == ["alice", "bob"]
    folder, _ = prepare(coll.sources[0].path, "folder", tmp_path / "w")
    assert folder.name == "hw4" and (folder / "lab1.py").is_file()


def test_collect_layout_option_overrides_the_guess(tmp_path):
    subs = tmp_path / "subs"
    hw(subs / "alice" / "hw4")
    hw(subs / "bob" / "hw4")
    assert students(collect(subs, tmp_path / "w", layout="grouped")) == ["alice-hw4", "bob-hw4"]
    subs2 = tmp_path / "subs2"
    hw(subs2 / "sec1" / "x")
    hw(subs2 / "sec1" / "y")
    assert students(collect(subs2, tmp_path / "w2", layout="flat")) == ["sec1"]
    with pytest.raises(BatchError, match="layout"):
        collect(subs2, tmp_path / "w3", layout="nested")


def test_collect_export_zip_unwraps_its_folder_and_ignores_macos_metadata(tmp_path):
    inner = tmp_path / "inner.zip"
    make_zip(inner, {"lab1.py": "x = 1\n"})
    export = make_zip(
        tmp_path / "export.zip",
        {
            "submissions/alice/lab1.py": "x = 1\n",
            "submissions/bob.zip": inner.read_bytes(),
            "__MACOSX/submissions/._alice": "junk",
            "submissions/.DS_Store": "junk",
        },
    )
    coll = collect(export, tmp_path / "work")
    assert students(coll) == ["alice", "bob"]
    assert all(s.origin.startswith("export.zip:") for s in coll.sources)
    assert coll.warnings == ["export.zip: __MACOSX/ entries (macOS archive metadata) ignored"]


def test_collect_reports_stray_files_and_skips_them(tmp_path):
    subs = tmp_path / "subs"
    hw(subs / "alice")
    (subs / "notes.txt").write_text("todo")
    (subs / ".hidden").write_text("x")
    coll = collect(subs, tmp_path / "work")
    assert students(coll) == ["alice"]
    assert len(coll.warnings) == 1 and "notes.txt" in coll.warnings[0] and "stray" in coll.warnings[0]


def test_collect_grades_both_of_two_same_names_and_says_so(tmp_path):
    subs = tmp_path / "subs"
    hw(subs / "alice")
    make_zip(subs / "alice.zip", {"lab1.py": "x = 2\n"})
    hw(subs / "Alice Smith")
    coll = collect(subs, tmp_path / "work")
    assert set(students(coll)) == {"alice", "alice-2", "Alice_Smith"}
    assert len(coll.warnings) == 1
    assert "alice.zip" in coll.warnings[0] and "alice-2" in coll.warnings[0]


def test_collect_groups_canvas_loose_files_per_student(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "smithjane_123_456_hw4.ipynb").write_text("{}")
    (subs / "smithjane_LATE_123_789_answers.yaml").write_text("a: 1\n")
    (subs / "doejohn_124_457_lab1.py").write_text("x = 1\n")
    coll = collect(subs, tmp_path / "work")
    assert students(coll) == ["doejohn_124", "smithjane_123"]
    jane = {s.student: s for s in coll.sources}["smithjane_123"]
    assert sorted(p.name for p in jane.path.iterdir()) == ["answers.yaml", "hw4.ipynb"]
    assert any("Canvas" in w for w in coll.warnings)


@pytest.mark.parametrize("make", ["missing", "empty", "not_zip"])
def test_collect_without_submissions_is_a_batch_error_naming_the_input(tmp_path, make):
    target = tmp_path / "subs"
    if make == "empty":
        target.mkdir()
    elif make == "not_zip":
        target.write_text("hello")
    with pytest.raises(BatchError, match=str(target)):
        collect(target, tmp_path / "work")


def test_collect_explains_when_given_one_submission_instead_of_a_folder_of_them(tmp_path):
    alice = hw(tmp_path / "alice", "hw4.ipynb")
    (alice / "answers.yaml").write_text("a: 1\n")
    with pytest.raises(BatchError, match="this is one submission, not a folder of them"):
        collect(alice, tmp_path / "work")


def test_sanitize_id_keeps_ids_safe_as_folder_names():
    assert sanitize_id("Jane Doe (1)") == "Jane_Doe_1"
    assert sanitize_id("../../etc") == "etc"
    assert sanitize_id(".hidden") == "hidden"
    assert sanitize_id("gradebook.csv") == "gradebook.csv_"
    assert sanitize_id("???") == "submission"
    assert sanitize_id("Jane Doe_12345_assignsubmission_file_") == "Jane_Doe_12345"


# ============================================================================ unpacking


def test_prepare_grades_a_clean_copy_without_links_to_outside_files(tmp_path):
    """answers.yaml is read in the trusted process: a link to a grader file must not come along."""
    sub = hw(tmp_path / "mallory")
    (sub / "answers.yaml").symlink_to(Path(__file__).resolve())
    folder, warnings = prepare(sub, "folder", tmp_path / "w")
    assert (folder / "lab1.py").is_file() and not (folder / "answers.yaml").exists()
    assert not any(p.is_symlink() for p in folder.rglob("*"))
    assert any("answers.yaml" in w for w in warnings)


def test_prepare_turns_a_refused_archive_into_a_warning(tmp_path):
    bad = make_zip(tmp_path / "mallory.zip", {"../escape.py": "x = 1\n", "lab1.py": "x = 1\n"})
    folder, warnings = prepare(bad, "zip", tmp_path / "w")
    assert not (tmp_path / "escape.py").exists()
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert len(warnings) == 1 and "could not be unpacked" in warnings[0] and "escape.py" in warnings[0]


def test_prepare_unwraps_a_zipped_folder_and_a_zip_inside_a_folder(tmp_path):
    zipped = make_zip(tmp_path / "alice.zip", {"hw4/lab1.py": "x = 1\n", "hw4/answers.yaml": "a: 1\n"})
    folder, _ = prepare(zipped, "zip", tmp_path / "w1")
    assert sorted(p.name for p in folder.iterdir()) == ["answers.yaml", "lab1.py"]
    lms = tmp_path / "bob_123_assignsubmission_file_"
    lms.mkdir()
    make_zip(lms / "HW4.zip", {"lab1.py": "x = 1\n"})
    folder, _ = prepare(lms, "folder", tmp_path / "w2")
    assert (folder / "lab1.py").is_file()


def test_prepare_turns_a_corrupt_zip_into_a_warning(tmp_path):
    broken = tmp_path / "carol.zip"
    broken.write_bytes(b"PK\x03\x04 this is not really a zip")
    folder, warnings = prepare(broken, "zip", tmp_path / "w")
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert len(warnings) == 1 and "could not be unpacked" in warnings[0] and "carol.zip" in warnings[0]


def test_the_fingerprint_follows_grading_sources_and_options_not_presentation(tmp_path, monkeypatch):
    monkeypatch.undo()  # the real function, on a made-up repository
    from grader.batch import grading_fingerprint

    repo = tmp_path / "repo"
    files = (
        "grader/plugin.py",
        "grader/outputs/summary.py",
        "tests/rubric/test_lab1.py",
        "reference/lab1.py",
    )
    for rel in files:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("x = 1\n")
    monkeypatch.setattr(grader.fingerprint, "REPO_ROOT", repo)
    cfg = load()
    base = grading_fingerprint(FUNCTIONS, cfg)
    assert grading_fingerprint(GradeOptions(notebooks=False, slot=5), cfg) == base  # the slot is no option
    assert grading_fingerprint(GradeOptions(notebooks=True), cfg) != base
    (repo / "grader/outputs/summary.py").write_text("x = 2\n")
    (repo / "tests/rubric/.hypothesis").mkdir()
    (repo / "tests/rubric/.hypothesis/db").write_text("cache")
    assert grading_fingerprint(FUNCTIONS, cfg) == base
    (repo / "tests/rubric/test_lab1.py").write_text("x = 2\n")
    assert grading_fingerprint(FUNCTIONS, cfg) != base


def test_content_hash_changes_with_content_and_names_but_not_caches(tmp_path):
    a = hw(tmp_path / "a")
    before = content_hash(a)
    (a / "__pycache__").mkdir()
    (a / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert content_hash(a) == before
    (a / "lab1.py").write_text("x = 2\n")
    changed = content_hash(a)
    assert changed != before
    (a / "lab1.py").rename(a / "lab1b.py")
    assert content_hash(a) != changed


# ============================================================================ grading in forked children


def _batch(subs: Path, out: Path, **kw):
    kw.setdefault("workers", 2)
    return run_batch(subs, out, FUNCTIONS, grade_fn=fake_grade, progress=False, **kw)


def test_the_progress_line_counts_only_the_points_graded_in_this_mode(tmp_path):
    """With --no-notebooks the notebook checks' points are not lost: the per-submission line says
    "of N graded in this mode", not "of <all points>" (the correct sample read "59 of 78")."""
    import io

    cfg = load()
    function, notebook = cfg.rubric["lab1.b"].function, cfg.rubric["lab1.b"].notebook
    assert function > 0 and notebook > 0
    subs = make_submissions(tmp_path / "subs", {"a": "no-notebooks", "b": "score 0.5"})
    shown = io.StringIO()
    run_batch(subs, tmp_path / "out", FUNCTIONS, grade_fn=fake_grade, workers=1, stream=shown)
    lines = {line.split("] ")[1].split(":")[0]: line for line in shown.getvalue().splitlines() if "] " in line}
    pts = lambda x: f"{x:g}"  # noqa: E731
    want = f"a: {pts(function)} of {pts(function)} graded in this mode ({pts(function + notebook)} in all)"
    assert want in lines["a"]
    assert f"b: {pts(function / 2)} of {pts(function)} automatic points" in lines["b"]


def test_only_a_batch_of_several_warms_up_its_parent(tmp_path, monkeypatch):
    """Children forked from a warm parent import nothing again; one submission alone gains nothing
    from it and waits for it: its grading imports torch while its sandbox (started by the parent
    just before the fork) imports torch too."""
    warmed = []
    monkeypatch.setattr(grader.batch.run, "warm_up", warmed.append)
    _batch(make_submissions(tmp_path / "one", {"a": "score 1"}), tmp_path / "out1")
    assert warmed == []
    _batch(make_submissions(tmp_path / "two", {"a": "score 1", "b": "score 1"}), tmp_path / "out2")
    assert warmed == [FUNCTIONS]


_FIRST_PRNG = """
import gc, sys
from grader.batch.job import warm_up
from grader.grade import GradeOptions
if sys.argv[1] == "warm":
    warm_up(GradeOptions(notebooks=False))
from hypothesis.internal.entropy import deterministic_PRNG
collected = []
gc.collect = lambda *a: collected.append(a) or 0
with deterministic_PRNG():
    pass
print(len(collected))
"""


def test_a_warm_parent_spares_its_children_hypothesiss_first_run_collection():
    """Hypothesis registers its global Random on a process's first derandomized run, with a full
    garbage collection (0.1 s with torch loaded, once per grading child). ``warm_up`` does it in
    the parent; a cold process still pays it (so the check is not vacuous)."""
    runs = {mode: subprocess.run([sys.executable, "-c", _FIRST_PRNG, mode], capture_output=True, text=True,
                                 timeout=300, cwd=SUBMISSIONS.parent.parent, check=False)
            for mode in ("cold", "warm")}
    for mode, proc in runs.items():
        assert proc.returncode == 0, f"{mode}: {proc.stderr[-2000:]}"
    assert int(runs["cold"].stdout.split()[-1]) >= 1
    assert int(runs["warm"].stdout.split()[-1]) == 0


def _info(out: Path, student: str) -> dict:
    record = json.loads((out / ".hw4grade" / "records" / f"{student}.json").read_text())
    return json.loads(record["result"]["items"]["lab1.b"]["cases"][0]["message"])


def test_a_grader_crash_gives_a_valid_result_with_a_visible_failure_and_the_batch_goes_on(tmp_path):
    subs = make_submissions(
        tmp_path / "subs",
        {"ok1": "score 1", "raiser": "raise", "exiter": "exit", "killer": "kill", "ok2": "score 0.5"},
    )
    out = tmp_path / "out"
    report = _batch(subs, out)
    assert sorted(report.graded) == ["exiter", "killer", "ok1", "ok2", "raiser"]
    assert sorted(report.grader_errors) == ["exiter", "killer", "raiser"]
    for student in report.students:
        data = json.loads((out / student / "results.json").read_text())
        assert problems(data) == [], student
        assert (out / student / "feedback.md").is_file()
    for student in ("raiser", "exiter", "killer"):
        data = json.loads((out / student / "results.json").read_text())
        failure = [t for t in data["tests"] if t["tags"] == ["grader"]]
        assert len(failure) == 1 and failure[0]["visibility"] == "visible"
        assert "not your fault" in failure[0]["output"]
        kept = (out / "grader-errors" / f"{student}.txt").read_text()
        assert student in kept
    raiser_text = (out / "raiser" / "results.json").read_text()
    assert "a bug in the grader (fake)" in (out / "grader-errors" / "raiser.txt").read_text()
    assert "Traceback" in (out / "grader-errors" / "raiser.txt").read_text()
    assert "a bug in the grader" not in raiser_text and "Traceback" not in raiser_text
    assert "exited with status 3" in (out / "grader-errors" / "exiter.txt").read_text()
    assert "SIGKILL" in (out / "grader-errors" / "killer.txt").read_text()
    rows = {r.split(",")[0]: r.split(",") for r in (out / "gradebook.csv").read_text().splitlines()[1:]}
    assert rows["raiser"][1:] == [""] * (len(rows["raiser"]) - 1)  # blank, not a zero earned
    assert rows["ok1"][-1] == "2" and rows["ok2"][-1] == "1"  # lab1.b's 2 function points, in full and half


def test_a_hung_grading_is_stopped_and_the_others_are_graded(tmp_path):
    subs = make_submissions(tmp_path / "subs", {"fast": "score 1", "hung": "sleep 600"})
    out = tmp_path / "out"
    bd = BatchDir(out)
    executor = ForkExecutor(2, timeout_s=3, scratch=bd.tmp, log_dir=bd.logs)
    started = time.monotonic()
    report = _batch(subs, out, executor=executor)
    assert time.monotonic() - started < 60
    assert report.grader_errors == ["hung"]
    assert "did not finish within 3 s" in (out / "grader-errors" / "hung.txt").read_text()
    assert json.loads((out / "fast" / "results.json").read_text())["score"] == 2


def test_each_submission_is_graded_in_its_own_child_with_a_distinct_slot(tmp_path):
    behaviours = {"a": "pollute", "b": "sleep 1", "c": "sleep 1", "d": "score 1", "e": "sleep 1"}
    subs = make_submissions(tmp_path / "subs", behaviours)
    out = tmp_path / "out"
    _batch(subs, out)
    infos = {s: _info(out, s) for s in behaviours}
    pids = [i["pid"] for i in infos.values()]
    assert len(set(pids)) == len(pids) and os.getpid() not in pids
    assert not any(i["saw_pollution"] for i in infos.values())  # "a" polluted only its own process
    assert {i["slot"] for i in infos.values()} <= {0, 1}
    for s, i in infos.items():
        for t, j in infos.items():
            overlap = s < t and i["start"] < j["end"] and j["start"] < i["end"]
            assert not (overlap and i["slot"] == j["slot"]), f"{s} and {t} ran at once in slot {i['slot']}"


def test_each_child_gets_its_share_of_the_cpus_and_one_alone_gets_more(tmp_path, monkeypatch):
    """HW4_THREADS (grader.threads: the student code's worker and notebook kernel) is the CPUs
    divided among the gradings that run at once: fewer submissions than workers share fewer ways."""
    monkeypatch.delenv("HW4_THREADS", raising=False)  # the suite's own setting
    monkeypatch.setattr(os, "cpu_count", lambda: 4)  # the forked children inherit it
    _batch(make_submissions(tmp_path / "one", {"a": "score 1"}), tmp_path / "out1", workers=2)
    assert _info(tmp_path / "out1", "a")["threads"] == "4"
    three = {"a": "score 1", "b": "score 1", "c": "score 1"}
    _batch(make_submissions(tmp_path / "three", three), tmp_path / "out3", workers=2)
    assert {_info(tmp_path / "out3", s)["threads"] for s in three} == {"2"}
    monkeypatch.setenv("HW4_THREADS", "1")  # set by the caller: kept
    _batch(make_submissions(tmp_path / "kept", {"a": "score 1"}), tmp_path / "outk", workers=2)
    assert _info(tmp_path / "outk", "a")["threads"] == "1"


def test_the_slot_sandbox_is_made_with_the_threads_its_gradings_compare_against(tmp_path, monkeypatch):
    """A grading borrows its slot's sandbox only if it would have made the same one
    (``grader.sandbox.shared.borrowable``), threads included. With HW4_THREADS set by the caller the
    children keep it, so the slot sandboxes must be made with it too: they were made with the
    computed share, no grading borrowed them, and every grading started a zygote of its own (and
    the unused slot zygotes cost their start for nothing)."""
    from grader.batch import run as batch_run
    from grader.plugin import sandbox_args

    made = {}

    class NoGrading:
        def __init__(self, workers, **kw):
            made.update(kw)

        def run(self, jobs, fn, started=None):
            yield from ()

    monkeypatch.setattr(batch_run, "ForkExecutor", NoGrading)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setenv("HW4_THREADS", "1")
    run_batch(make_submissions(tmp_path / "subs", {"a": "score 1"}), tmp_path / "out", FUNCTIONS, workers=2,
              progress=False)
    cfg = load()
    child = sandbox_args(cfg, FUNCTIONS.isolation, 0)  # what the child's grading compares against
    assert made["threads"] == 1
    assert made["slot_sandboxes"] is not None, "one submission alone gets a slot sandbox too"
    assert made["slot_sandboxes"].args[0](0) == child
    monkeypatch.delenv("HW4_THREADS")
    run_batch(make_submissions(tmp_path / "subs2", {"a": "score 1", "b": "score 1"}), tmp_path / "out2",
              FUNCTIONS, workers=2, progress=False)
    assert made["threads"] == 2 and made["slot_sandboxes"].args[0](0)["threads"] == 2


def test_a_rerun_grades_only_new_or_changed_submissions(tmp_path):
    subs = make_submissions(tmp_path / "subs", {"a": "score 1", "b": "score 0.5", "c": "score 0"})
    out = tmp_path / "out"
    first = _batch(subs, out)
    assert sorted(first.graded) == ["a", "b", "c"]
    record_b = (out / ".hw4grade" / "records" / "b.json").read_bytes()
    gradebook = (out / "gradebook.csv").read_bytes()
    again = _batch(subs, out)
    assert again.graded == [] and sorted(again.skipped) == ["a", "b", "c"]
    assert (out / "gradebook.csv").read_bytes() == gradebook
    (subs / "a" / "behaviour.txt").write_text("score 0.25")
    make_submissions(subs, {"d": "score 1"})
    third = _batch(subs, out)
    assert sorted(third.graded) == ["a", "d"]
    assert (out / ".hw4grade" / "records" / "b.json").read_bytes() == record_b
    rows = {r.split(",")[0]: r.split(",")[-1] for r in (out / "gradebook.csv").read_text().splitlines()[1:]}
    assert rows == {"a": "0.5", "b": "1", "c": "0", "d": "2"}
    forced = _batch(subs, out, regrade=True)
    assert sorted(forced.graded) == ["a", "b", "c", "d"]


def test_a_second_batch_on_the_same_out_folder_is_refused(tmp_path):
    subs = make_submissions(tmp_path / "subs", {"a": "score 1"})
    out = tmp_path / "out"
    with BatchDir(out).locked(), pytest.raises(BatchError, match="another hw4grade"):
        _batch(subs, out)


def test_a_corrupt_zip_is_graded_as_empty_with_the_reason_and_others_are_unaffected(tmp_path):
    subs = make_submissions(tmp_path / "subs", {"ok": "score 1"})
    (subs / "broken.zip").write_bytes(b"PK\x03\x04 garbage")
    out = tmp_path / "out"
    report = _batch(subs, out)
    assert report.grader_errors == []
    broken = json.loads((out / "broken" / "results.json").read_text())
    assert "could not be unpacked" in broken["output"] and "broken.zip" in broken["output"]
    assert json.loads((out / "ok" / "results.json").read_text())["score"] == 2


# ============================================================================ interrupting


SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {support!r})
    os.environ["HW4_SHARED_SANDBOX"] = "0"  # fake gradings use no sandbox: the slots start none
    import batch_support
    import grader.batch.job, grader.batch.run
    grader.batch.job.grade_submission = batch_support.fake_grade  # the batch's grader, in every child
    grader.batch.run.grading_fingerprint = lambda options, cfg: "fake-grader"
    from grader.cli import main
    raise SystemExit(main(sys.argv[1:]))
""")


@pytest.fixture
def ctrl_c_works():
    """Batches a test interrupts start with SIGINT at its default, as a terminal starts a command.
    A suite started in the background of a non-interactive shell (`make test &`) inherits SIGINT
    ignored, and so would every batch it starts; a batch started with SIGINT ignored rightly keeps
    ignoring it, and the Ctrl-C tests failed for how the suite was launched. (A Python handler here
    becomes the default disposition in an exec'd child; an ignored signal stays ignored.)"""
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _fake_three_batch(tmp_path: Path, prelude: str = "") -> tuple[Path, list[str]]:
    """OUT and the command of a fake-graded batch of a_fast, b_slow (sleeps 120 s), c_fast on one
    worker; ``prelude`` runs in the batch process before the command does."""
    subs = make_submissions(
        tmp_path / "subs", {"a_fast": "score 1", "b_slow": "sleep 120", "c_fast": "score 1"}
    )
    out = tmp_path / "out"
    script = tmp_path / "hw4grade_fake.py"
    script.write_text(textwrap.dedent(prelude) + SCRIPT.format(support=str(Path(__file__).parent)))
    return out, [sys.executable, str(script), "grade", str(subs), "--out", str(out), "--workers", "1", "--quiet"]


def test_ctrl_c_keeps_what_is_graded_and_the_same_command_finishes_the_rest(tmp_path, ctrl_c_works):
    out, cmd = _fake_three_batch(tmp_path)
    proc = subprocess.Popen(
        cmd, cwd=Path(__file__).parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    record = out / ".hw4grade" / "records" / "a_fast.json"
    deadline = time.monotonic() + 120
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # b_slow is running now
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:  # a batch that ignored the Ctrl-C must not outlive this test (or warn in the next one)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "interrupted: 1 of 3 submissions graded and saved, 2 left" in stderr
    assert [r.split(",")[0] for r in (out / "gradebook.csv").read_text().splitlines()[1:]] == ["a_fast"]
    assert not (out / ".hw4grade" / "records" / "b_slow.json").exists()
    saved = record.read_bytes()
    rerun = subprocess.run(
        cmd,
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HW4_FAKE_SLEEP": "0"},
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "1 of 3 submissions already graded and unchanged; grading 2" in rerun.stderr
    assert record.read_bytes() == saved
    assert [r.split(",")[0] for r in (out / "gradebook.csv").read_text().splitlines()[1:]] == [
        "a_fast",
        "b_slow",
        "c_fast",
    ]


def test_a_ctrl_c_that_arrives_while_a_child_is_forked_still_stops_the_batch(tmp_path, ctrl_c_works):
    """Python runs ``os.fork()``'s at-fork callbacks in the parent; a KeyboardInterrupt raised in
    one is reported and dropped by CPython, so a Ctrl-C in that window was lost and the batch went
    on (a CI run saw it). Here the Ctrl-C arrives exactly there, on the second fork, every time."""
    out, cmd = _fake_three_batch(tmp_path, prelude="""
        import os, signal
        forks = []
        def ctrl_c_on_the_second_fork():
            forks.append(1)
            if len(forks) == 2:
                os.kill(os.getpid(), signal.SIGINT)
        os.register_at_fork(after_in_parent=ctrl_c_on_the_second_fork)
    """)
    proc = subprocess.run(cmd, cwd=Path(__file__).parent, capture_output=True, text=True, timeout=100, check=False)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "interrupted: 1 of 3 submissions graded and saved, 2 left" in proc.stderr
    assert [r.split(",")[0] for r in (out / "gradebook.csv").read_text().splitlines()[1:]] == ["a_fast"]


DAEMON_MARK = "8765"


@pytest.mark.parametrize("level", ["rlimit", "bwrap"])
def test_a_ctrl_c_leaves_no_sandbox_process_behind(tmp_path, level, ctrl_c_works):
    """Issue 14: Ctrl-C while a submission's sandbox runs (a worker busy in its own session and a
    daemon it forked into another): when the batch has exited, neither is left."""
    from grader.sandbox.launcher import stage_dir

    mark = f"{DAEMON_MARK}{len(level)}"
    slot = 900 + len(level)  # a uid nobody else leases meanwhile (leasing a uid sweeps it)
    folder = stage_dir()  # reachable by the sandbox's uid, unlike pytest's private tmp_path
    (folder / "daemon.py").write_text("import os, time\n"
                                      "if os.fork() == 0:\n"
                                      "    os.setsid()\n"
                                      f"    os.execv('/bin/sleep', ['sleep', '{mark}'])\n"
                                      "time.sleep(600)\n")
    (folder / "daemon.py").chmod(0o644)
    _, cmd = _fake_three_batch(tmp_path, prelude=f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import batch_support
        from grader.sandbox.launcher import Limits, detect_isolation, lease_uid, spawn

        def grade_in_a_sandbox(path, student, options, cfg=None):
            if not (path / "behaviour.txt").read_text().startswith("sleep"):
                return batch_support.fake_grade(path, student, options, cfg)
            spawn([sys.executable, {str(folder / "daemon.py")!r}], isolation=detect_isolation({level!r}),
                  limits=Limits(), binds=[({str(folder)!r}, {str(folder)!r})], env={{"PATH": "/usr/bin:/bin"}},
                  cwd={str(folder)!r}, lease=lease_uid({slot}))
            time.sleep(600)

        batch_support.fake_grade_in_sandbox = grade_in_a_sandbox
    """)
    script = Path(cmd[1])
    script.write_text(script.read_text().replace(
        "grader.batch.job.grade_submission = batch_support.fake_grade",
        "grader.batch.job.grade_submission = batch_support.fake_grade_in_sandbox"))
    proc = subprocess.Popen(cmd, cwd=Path(__file__).parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not _processes_with(f"sleep {mark}") and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert _processes_with(f"sleep {mark}"), "the sandbox's daemon never started"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        left = _processes_with(f"sleep {mark}") + _processes_with(str(folder / "daemon.py"))
        for pid in left:  # never outlive the test, whatever it found
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
    assert proc.returncode == 130, stderr
    assert left == []


def _processes_with(text: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and "pytest" not in cmdline:
                found.append(int(pid))
    return found


def _comparable(results_json: Path) -> dict:
    data = json.loads(results_json.read_text())
    data.pop("execution_time")  # the one field that differs from run to run
    return data


@pytest.mark.slow
def test_killing_a_real_batch_halfway_then_rerunning_gives_the_uninterrupted_outputs(tmp_path, sample_batch):
    """SIGKILL the batch after its first submission is saved; the same command then grades only
    the rest, and every output equals the session's uninterrupted batch for those students."""
    # Two samples, one worker: the second is being graded when the first is saved and we kill.
    picked = [SUBMISSIONS / "correct" / "reference", SUBMISSIONS / "buggy" / "lab1_gd_missing_factor_2"]
    subs = copy_samples(picked, tmp_path / "subs")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "grader",
        "grade",
        str(subs),
        "--out",
        str(out),
        "--workers",
        "1",
        "--no-notebooks",
        "--quiet",
        "--layout",
        "grouped",
    ]
    log = tmp_path / "first-run.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
    records = out / ".hw4grade" / "records"
    deadline = time.monotonic() + 900
    while (
        time.monotonic() < deadline
        and proc.poll() is None
        and not (records.exists() and any(records.iterdir()))
    ):
        time.sleep(0.2)
    assert proc.poll() is None, f"the batch ended before it could be killed: {log.read_text()}"
    proc.kill()
    proc.wait(timeout=30)
    done = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in records.iterdir()}
    assert len(done) == 1
    time.sleep(1)  # the children die with the parent (PR_SET_PDEATHSIG)
    assert _processes_mentioning(f"--out {out}") == [], "grading children outlived the killed batch"
    left_behind = Path((out / ".hw4grade" / "tmp_root").read_text().strip())
    assert left_behind.is_dir()  # the killed run's sandbox staging: the next run removes it

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert "1 of 2 submissions already graded and unchanged; grading 1" in rerun.stderr
    for name, (data, mtime) in done.items():
        assert (records / name).read_bytes() == data and (records / name).stat().st_mtime_ns == mtime
    assert not left_behind.exists()

    students = [sample_batch.student_for(p) for p in picked]
    reference_rows = {r["student"]: r for r in sample_batch.gradebook()}
    rows = {r["student"]: r for r in _csv_rows(out / "gradebook.csv")}
    assert sorted(rows) == sorted(students)
    for student in students:
        assert rows[student] == reference_rows[student]
        assert _comparable(out / student / "results.json") == _comparable(
            sample_batch.out / student / "results.json"
        )
        assert (out / student / "feedback.md").read_text() == (
            sample_batch.out / student / "feedback.md"
        ).read_text()
    reference_manual = [r for r in _csv_rows(sample_batch.out / "manual.csv") if r["student"] in students]
    assert _csv_rows(out / "manual.csv") == reference_manual


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(int(proc.name))
    return found
