"""Helpers for the tests of the command line and the batch: run ``hw4grade``, read what it wrote.

The bundled samples are graded once per test session (``sample_batch`` in ``conftest.py``) by
the real command, ``hw4grade grade SUBS --out OUT --workers 2 --no-notebooks``, and every test
that needs graded results reads that folder. The few hostile samples whose grading waits on a
limit (:data:`LIMITED`: an endless loop in a call or at import, a fork bomb) are graded by the
same command in a batch of their own, with a test config of short limits (:data:`LIMITS`), at
the same time: with the production limits they cost minutes each, and short limits prove the
same thing (the limit holds, the rest of the submission is graded).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from background import start_background, stop_background

ROOT = Path(__file__).resolve().parent.parent.parent
SUBMISSIONS = ROOT / "fixtures" / "submissions"
# Generous: 2 workers on 2 shared cores; the batch's own per-submission limits are far tighter.
BATCH_TIMEOUT_S = 3600
#: development only: comma-separated patterns (``buggy/lab1_*,correct/*``) restricting the session's
#: sample batch; test_samples then fails on purpose, saying the batch did not cover every sample
SAMPLE_FILTER = [p for p in os.environ.get("HW4_SAMPLES", "").split(",") if p]


def child_env(env: dict | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment of a command the suite starts: this one's, without the ``drop`` names and
    without ``GITHUB_*`` (when the suite itself runs in GitHub Actions, `hw4grade ci` must not
    write to the real job), updated with ``env``."""
    out = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("GITHUB_")}
    out.update(env or {})
    return out


def run_cli(
    *args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 1800
) -> subprocess.CompletedProcess:
    """``python -m grader ARGS`` in a child process, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "grader", *args],
        cwd=cwd,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def all_sample_dirs() -> list[Path]:
    """Every bundled sample: ``fixtures/submissions/<kind>/<name>/`` with an ``expected.json``."""
    return sorted(p.parent for p in SUBMISSIONS.glob("*/*/expected.json"))


def sample_dirs() -> list[Path]:
    """The samples the session batch grades: all of them unless ``$HW4_SAMPLES`` restricts it."""
    from fnmatch import fnmatch

    samples = all_sample_dirs()
    if SAMPLE_FILTER:
        samples = [
            s
            for s in samples
            if any(fnmatch(s.relative_to(SUBMISSIONS).as_posix(), p) for p in SAMPLE_FILTER)
        ]
    return samples


#: hostile samples whose grading waits on a limit: graded with :data:`LIMITS` (see the module doc)
LIMITED = ("malicious/mal_fork_bomb", "malicious/mal_loop_at_import", "malicious/mal_loop_in_call")
#: test-only limits: a hang costs seconds, not minutes; memory stays generous enough for torch
LIMITS = {"call_timeout_s": 3.0, "import_timeout_s": 15.0, "submission_budget_s": 120.0, "memory_mb": 1536,
          "max_output_bytes": 65536}


def limits_config(folder: Path) -> Path:
    """A copy of the term's config with the [grading] limits of :data:`LIMITS`."""
    return config_with(folder, LIMITS)


def config_with(folder: Path, values: dict) -> Path:
    """``folder/assignment.toml``: a copy of the term's config with each ``key = value`` of
    ``values`` replacing the config's single line for that key."""
    text = (ROOT / "reference" / "assignment.toml").read_text()
    for key, value in values.items():
        text, n = re.subn(rf"^{key} = [^\n#]*", f"{key} = {value}  ", text, flags=re.M)
        assert n == 1, f"assignment.toml has no single line for {key}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "assignment.toml"
    path.write_text(text)
    return path


def sample_config(sample: Path) -> str | None:
    """The term config a sample is graded with (``expected.json``'s ``config``, relative to the
    repository; None: the default term)."""
    return expected(sample).get("config")


@dataclass
class StartedSamples:
    """The session's sample batches, running (:func:`start_samples`); :meth:`finish` waits."""

    started: dict[str, _Started]
    limited_config: Path
    terms: list[str]

    def finish(self) -> SampleBatches:
        done = {name: finish_folder(run) for name, run in self.started.items()}
        return SampleBatches(done["main"], done.get("limited"), self.limited_config,
                             {t: done[t] for t in self.terms})

    def stop(self) -> None:
        for run in self.started.values():
            run.stop()


def start_samples(tmp: Path) -> StartedSamples:
    """Start the session's sample batches (the real command, all at once): every sample but the
    :data:`LIMITED` ones and those of another term with the production config, the
    :data:`LIMITED` ones with :data:`LIMITS`, each other term's samples with that term's config
    (``expected.json``'s ``config``, as ``hw4grade --config`` would). Each batch grades a copy of
    its samples in the ``<kind>/<name>`` layout, so ids are those of the corpus."""
    samples = sample_dirs()
    limited = [s for s in samples if s.relative_to(SUBMISSIONS).as_posix() in LIMITED]
    terms: dict[str, list[Path]] = {}
    for s in samples:
        if sample_config(s):
            terms.setdefault(str(sample_config(s)), []).append(s)
    main = [s for s in samples if s not in limited and not sample_config(s)]
    config = limits_config(tmp / "limits-config")
    args = ("--no-notebooks", "--layout", "grouped")
    started = {"main": start_folder(copy_samples(main, tmp / "subs"), tmp / "out", *args)}
    if limited:
        started["limited"] = start_folder(copy_samples(limited, tmp / "limited-subs"), tmp / "limited-out", *args,
                                          workers=1, config=config)
    for term, group in terms.items():
        name = Path(term).stem
        started[term] = start_folder(copy_samples(group, tmp / f"term-{name}-subs"), tmp / f"term-{name}-out",
                                     *args, workers=1, config=ROOT / term)
    return StartedSamples(started, config, list(terms))


#: parallel gradings in the session's notebook batch; each notebook kernel gets its share of the CPUs
NOTEBOOK_WORKERS = 2
#: the notebook batch's fast mode, smaller than the term's (2 batches per epoch, 200 test images):
#: the notebook checks compare a run with itself and with the reference on the same data, so what
#: they prove does not depend on the size, and the course's 60 training epochs then cost under half
#: (608 -> 332 CPU-s for the batch, 2026-12-04). The term's own size is run once, by
#: test_notebooks.py's correct sample, and timed by ``make bench``.
NOTEBOOK_FAST = {"fast_batches_per_epoch": 1, "fast_test_size": 64}


def notebook_sample_dirs() -> list[Path]:
    """The samples graded with their notebooks executed: the correct one and those whose
    ``expected.json`` says ``notebook_check`` (the untouched template among them)."""
    correct = SUBMISSIONS / "correct" / "reference"
    return [correct, *(s for s in all_sample_dirs() if s != correct and expected(s).get("notebook_check")
                       and not sample_config(s))]


def start_notebook_samples(tmp: Path) -> _Started:
    """Start the session's notebook batch: the real command, notebooks executed, on a copy of
    :func:`notebook_sample_dirs` (same layout and ids), with the term's config in the smaller fast
    mode of :data:`NOTEBOOK_FAST` (``GradedBatch.config``); :func:`finish_folder` waits for it."""
    subs = copy_samples(notebook_sample_dirs(), tmp / "subs")
    config = config_with(tmp / "config", NOTEBOOK_FAST)
    started = start_folder(subs, tmp / "out", "--layout", "grouped", workers=NOTEBOOK_WORKERS, config=config)
    # The correct sample at the term's own size too (test_notebooks.py reads it from the session's
    # notebook cache): in the background now, not alone at the suite's end.
    started.companions.append(start_background(
        [sys.executable, "-m", "grader.notebooks.execute", str(SUBMISSIONS / "correct" / "reference")],
        cwd=ROOT, env=child_env(drop=("HW4_CONFIG",)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return started


def expected(sample: Path) -> dict:
    return json.loads((sample / "expected.json").read_text())


def meets(points: float, want) -> bool:
    """``want`` is a number (exact up to rounding) or ``[lo, hi]`` (inclusive)."""
    if isinstance(want, list):
        return want[0] - 1e-3 <= points <= want[1] + 1e-3
    return abs(points - float(want)) <= 1e-3


@dataclass
class GradedBatch:
    out: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    #: the config the batch was graded with (``$HW4_CONFIG``); None: the term's own
    config: Path | None = None

    @property
    def state(self) -> Path:
        return self.out / ".hw4grade"

    def batch_info(self) -> dict:
        return json.loads((self.state / "batch.json").read_text())

    def students(self) -> list[str]:
        return self.batch_info()["students"]

    def student_for(self, sample: Path) -> str:
        """The student id the batch gave a sample folder (from its origin, ``<kind>/<name>``)."""
        rel = sample.relative_to(SUBMISSIONS).as_posix()
        by_origin = {origin: student for student, origin in self.batch_info()["origins"].items()}
        return by_origin[rel]

    def record(self, student: str) -> dict:
        return json.loads((self.state / "records" / f"{student}.json").read_text())

    def result(self, student: str):
        from grader.results import SubmissionResult

        return SubmissionResult.from_dict(self.record(student)["result"])

    def results_json(self, student: str) -> dict:
        return json.loads((self.out / student / "results.json").read_text())

    def gradebook(self) -> list[dict[str, str]]:
        with open(self.out / "gradebook.csv", newline="") as fh:
            return list(csv.DictReader(fh))


@dataclass
class SampleBatches:
    """The session's sample batches: ``main`` (production config) and ``limited`` (the
    :data:`LIMITED` samples, with ``limited_config``). A sample's results are found in whichever
    graded it (:meth:`student_for`, :meth:`result`, ...); the batch-wide files and listings
    (``out``, ``gradebook()``, ``students()``, ``stdout``...) are the main batch's."""

    main: GradedBatch
    limited: GradedBatch | None
    limited_config: Path
    #: the samples of other terms, one batch per term config (the config's path -> its batch)
    terms: dict[str, GradedBatch] = field(default_factory=dict)

    def __getattr__(self, name: str):
        return getattr(self.main, name)

    def _parts(self) -> list[GradedBatch]:
        return [self.main] + ([self.limited] if self.limited is not None else []) + list(self.terms.values())

    def student_for(self, sample: Path) -> str:
        rel = sample.relative_to(SUBMISSIONS).as_posix()
        if sample_config(sample) in self.terms:
            return self.terms[str(sample_config(sample))].student_for(sample)
        return self._part_of_sample(rel).student_for(sample)

    def _part_of_sample(self, rel: str) -> GradedBatch:
        return self.limited if rel in LIMITED and self.limited is not None else self.main

    def part(self, student: str) -> GradedBatch:
        """The batch that graded ``student``."""
        for part in self._parts():
            if student in part.students():
                return part
        raise KeyError(f"{student} was graded by neither sample batch")

    def all_students(self) -> list[str]:
        return sorted(s for part in self._parts() for s in part.students())

    def record(self, student: str) -> dict:
        return self.part(student).record(student)

    def result(self, student: str):
        return self.part(student).result(student)

    def results_json(self, student: str) -> dict:
        return self.part(student).results_json(student)


@dataclass
class _Started:
    out: Path
    proc: subprocess.Popen
    started: float
    config: Path | None = None
    #: processes started with the batch that :func:`finish_folder` waits for too (output unread)
    companions: list[subprocess.Popen] = field(default_factory=list)

    def stop(self) -> None:
        """Kill what still runs (the session ended early: ``-x``, Ctrl-C, a failed fixture)."""
        for proc in (self.proc, *self.companions):
            stop_background(proc)


def start_folder(submissions: Path, out: Path, *extra: str, workers: int = 2,
                 config: Path | None = None) -> _Started:
    """Start ``hw4grade grade SUBMISSIONS --out OUT --workers N --quiet EXTRA`` (see :func:`finish_folder`),
    with ``config`` as ``$HW4_CONFIG`` or, without it, the term's own config (never one this
    process's environment happens to name)."""
    env = child_env({"HW4_CONFIG": str(config)} if config else None, drop=("HW4_CONFIG",))
    proc = start_background(
        [sys.executable, "-m", "grader", "grade", str(submissions), "--out", str(out), "--workers", str(workers),
         "--quiet", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return _Started(out, proc, time.monotonic(), config)


def finish_folder(run: _Started) -> GradedBatch:
    """Wait for a started batch (at most :data:`BATCH_TIMEOUT_S`) and read what it printed."""
    try:
        stdout, stderr = run.proc.communicate(timeout=BATCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop_background(run.proc)
        stdout, stderr = run.proc.communicate()
        stderr += f"\n(stopped after {BATCH_TIMEOUT_S} s)"
    for companion in run.companions:
        try:
            companion.wait(timeout=max(1.0, BATCH_TIMEOUT_S - (time.monotonic() - run.started)))
        except subprocess.TimeoutExpired:
            stop_background(companion)
    return GradedBatch(run.out, run.proc.returncode, stdout, stderr, time.monotonic() - run.started, run.config)


def copy_samples(samples: list[Path], dest: Path) -> Path:
    """A SUBMISSIONS folder holding copies of ``samples`` in the same ``<kind>/<name>`` layout."""
    for sample in samples:
        shutil.copytree(sample, dest / sample.relative_to(SUBMISSIONS))
    return dest


# ----------------------------------------------------------------------------- a fake grader

_POLLUTED = False


def fake_grade(folder: Path, student: str, options, cfg):
    """A stand-in for ``grade_submission`` driven by ``behaviour.txt`` in the submission:
    ``score F`` (one public lab1.b test earning fraction F), ``raise``, ``exit`` (os._exit),
    ``kill`` (SIGKILL itself), ``sleep S`` (then full score; ``$HW4_FAKE_SLEEP`` overrides S),
    ``pollute`` (leaves a global and an environment variable behind), ``no-notebooks`` (full
    score, plus lab1.b's notebook check recorded as not run). Its first case's message is JSON
    saying which process and slot graded it and whether it saw another's pollution."""
    import signal

    from grader.results import STATUS_NOT_RUN, CaseResult, build_result

    global _POLLUTED  # noqa: PLW0603 - the point: state one grading leaves behind
    started = time.time()
    saw = _POLLUTED or "HW4_FAKE_POLLUTED" in os.environ
    spec = (
        (folder / "behaviour.txt").read_text().split()
        if (folder / "behaviour.txt").exists()
        else ["score", "1"]
    )
    what = spec[0]
    if what == "raise":
        raise RuntimeError("a bug in the grader (fake)")
    if what == "exit":
        os._exit(3)
    if what == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if what == "sleep":
        time.sleep(float(os.environ.get("HW4_FAKE_SLEEP", spec[1])))
    if what == "pollute":
        _POLLUTED = True
        os.environ["HW4_FAKE_POLLUTED"] = "1"
    fraction = float(spec[1]) if what == "score" else 1.0
    info = {
        "pid": os.getpid(),
        "slot": options.slot,
        "threads": os.environ.get("HW4_THREADS"),
        "start": started,
        "end": time.time(),
        "saw_pollution": saw,
    }
    case = CaseResult(
        name="test_fake",
        item="lab1.b",
        kind="function",
        visibility="public",
        weight=1.0,
        status="passed" if fraction == 1.0 else "failed",
        fraction=fraction,
        message=json.dumps(info),
        fault=None if fraction == 1.0 else "student",
    )
    cases = [case]
    if what == "no-notebooks":
        cases.append(CaseResult(name="test_fake_run", item="lab1.b", kind="notebook", visibility="hidden",
                                weight=1.0, status=STATUS_NOT_RUN, message="notebooks were not executed"))
    return build_result(student, cfg, cases, mode="functions")


def make_submissions(root: Path, behaviours: dict[str, str]) -> Path:
    """A SUBMISSIONS folder with one folder per student holding ``behaviour.txt`` and a stub file."""
    for student, behaviour in behaviours.items():
        (root / student).mkdir(parents=True)
        (root / student / "behaviour.txt").write_text(behaviour)
        (root / student / "lab1.py").write_text("def run_gd(X, y, lr=0.02, steps=200):\n    pass\n")
    return root
