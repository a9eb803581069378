"""The pytest plugin that turns ``tests/rubric`` into a grader.

Loaded with ``-p grader.plugin``. It provides:

* the marker ``@pytest.mark.rubric(item="lab2.b", weight=1.0, visibility="public",
  kind="function")`` (registered, so ``--strict-markers`` catches typos); every rubric test must
  carry exactly one, naming an item of the config;
* the ``submission`` fixture: the sandboxed call proxy of the submission under test
  (``--submission DIR``), one sandbox per session; public tests run first, hidden tests after
  them in a fresh worker (public and hidden tests never share a worker's memory);
* the ``credit`` fixture: ``credit.set(0.75)`` gives partial credit if the test then fails;
* the ``notebook_run`` fixture: the submission's executed notebooks (see ``grader.notebooks``);
* collection of every test's outcome into case records written to ``--hw4-report`` (JSON).

Option precedence: the assignment config < environment (``HW4_*``) < command line < marker.
Tests not run in this session (hidden tests during a self-check, notebook checks with
``--no-notebooks``) are still recorded as "not run", so every test keeps its share of points.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from grader.errors import GraderError, StudentError
from grader.results import STATUS_NOT_RUN, CaseResult
from reference.config import ITEM_IDS, load

if TYPE_CHECKING:
    pass

VISIBILITIES = ("public", "hidden")
KINDS = ("function", "notebook")
_RECORDS: list[CaseResult] = []


class Credit:
    """Partial credit for a failing test: a fraction in [0, 1] of its points."""

    def __init__(self) -> None:
        self.fraction: float | None = None

    def set(self, fraction: float) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise GraderError(f"credit.set: fraction {fraction} outside [0, 1]")
        self.fraction = float(fraction)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hw4grade", "HW4 grading")
    group.addoption("--submission", default=os.environ.get("HW4_SUBMISSION"),
                    help="the submission folder to grade (env HW4_SUBMISSION)")
    group.addoption("--hw4-visibility", choices=("public", "all"), default="all",
                    help="public: run only public tests (student self-check); all: grading")
    group.addoption("--hw4-notebooks", choices=("run", "skip"), default=os.environ.get("HW4_NOTEBOOKS", "run"),
                    help="run: execute the notebooks and check them; skip: function tests only")
    group.addoption("--hw4-report", default=None, help="write the case records (JSON) here")
    group.addoption("--hw4-isolation", choices=("auto", "bwrap", "rlimit"),
                    default=os.environ.get("HW4_ISOLATION", "auto"), help="sandbox level")
    group.addoption("--hw4-slot", type=int, default=int(os.environ.get("HW4_SLOT", "0")),
                    help="which concurrent sandbox this is (picks its uid)")
    group.addoption("--hw4-data-root", default=os.environ.get("HW4_DATA_ROOT"),
                    help="a real CIFAR-10 folder for full-scale notebook runs")
    group.addoption("--hw4-checkpoint", default=os.environ.get("HW4_CHECKPOINT"),
                    help="the instructor's pretrained_model.pt for full-scale runs")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "rubric(item, weight=1.0, visibility='hidden', kind='function'): the rubric item a grading "
        "test belongs to, its share of the item's points, who sees it, and whether it checks a "
        "function or an executed notebook",
    )
    _RECORDS.clear()
    _prelaunch(config)


def _prelaunch(config: pytest.Config) -> None:
    """Start the submission's sandbox before the tests are collected: its zygote imports torch
    (seconds) while this process imports the tests, and torch too, on the other core. The
    ``submission`` fixture takes it over (an unused one is closed at the end). Then one torch
    thread for the trusted side: its work is many small tensor operations."""
    path = config.getoption("--submission", None)
    if path and not config.getoption("collectonly", False):
        from grader.sandbox.session import sandbox_session

        try:
            session = sandbox_session(Path(path), **_sandbox_args(config, load()))
        except Exception:  # noqa: S110 - the fixture makes its own and reports what goes wrong
            pass
        else:
            try:
                session.launch()
            except Exception:
                session.close()
            else:
                config.stash[_LAUNCHED] = session
    import torch

    torch.set_num_threads(1)


def _sandbox_args(config: pytest.Config, cfg) -> dict:
    """How the submission's sandbox is made (the config's limits, the command line's isolation and slot)."""
    return sandbox_args(cfg, config.getoption("--hw4-isolation"), config.getoption("--hw4-slot"))


def sandbox_args(cfg, isolation: str, slot: int, threads: int | None = None) -> dict:
    """``sandbox_session``'s arguments for a grading with ``cfg`` (its limits) in ``slot``, its
    worker given ``threads`` (default: this grading's share, ``grader.threads``); a batch parent
    starts its slots' sandboxes with the same (``grader.sandbox.shared``)."""
    from grader.sandbox.launcher import Limits
    from grader.threads import grading_threads

    g = cfg.grading
    limits = Limits(memory_mb=g.memory_mb, cpu_seconds=int(g.submission_budget_s) + 60,
                    processes=g.max_processes, file_mb=g.max_file_mb, output_bytes=g.max_output_bytes)
    return {"load_timeout": g.import_timeout_s, "limits": limits, "isolation": isolation, "slot": slot,
            "max_result_bytes": g.max_result_mb << 20, "threads": threads or grading_threads()}


def pytest_collection_finish(session: pytest.Session) -> None:
    """No test selected needs the sandbox (``-k`` on the T/F answers): stop the launched one."""
    if not any("submission" in getattr(item, "fixturenames", ()) for item in session.items):
        pytest_unconfigure(session.config)


def pytest_unconfigure(config: pytest.Config) -> None:
    launched = config.stash.get(_LAUNCHED, None)
    if launched is not None:  # launched, never used
        del config.stash[_LAUNCHED]
        launched.close()


_LAUNCHED = pytest.StashKey["WorkerSession"]()


def _marker(item: pytest.Item) -> dict:
    marks = list(item.iter_markers("rubric"))
    if len(marks) != 1:
        raise pytest.UsageError(f"{item.nodeid}: a grading test needs exactly one @rubric marker")
    kw = dict(marks[0].kwargs)
    if marks[0].args:
        kw.setdefault("item", marks[0].args[0])
    spec = {"item": kw.get("item"), "weight": float(kw.get("weight", 1.0)),
            "visibility": kw.get("visibility", "hidden"), "kind": kw.get("kind", "function")}
    if spec["item"] not in ITEM_IDS:
        raise pytest.UsageError(f"{item.nodeid}: rubric item {spec['item']!r} is not one of the config's items")
    if spec["visibility"] not in VISIBILITIES or spec["kind"] not in KINDS or spec["weight"] <= 0:
        raise pytest.UsageError(f"{item.nodeid}: bad rubric marker {kw}")
    return spec


def _doc(item: pytest.Item) -> str:
    fn = getattr(item, "function", None)
    doc = (fn.__doc__ or "").strip().splitlines() if fn else []
    return doc[0] if doc else ""


def _short_name(item: pytest.Item) -> str:
    return item.name


@pytest.hookimpl(trylast=True)  # after pytest's own reordering: the phase order must hold
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--submission") is None:
        return
    public_only = config.getoption("--hw4-visibility") == "public"
    skip_notebooks = config.getoption("--hw4-notebooks") == "skip"
    keep, drop = [], []
    for item in items:
        spec = _marker(item)
        item.stash[_SPEC] = spec
        reason = None
        if public_only and spec["visibility"] != "public":
            reason = "hidden test: run when your submission is graded"
        elif skip_notebooks and spec["kind"] == "notebook":
            reason = "notebooks were not executed (--no-notebooks)"
        if spec["visibility"] == "hidden":
            _no_shrinking(item)
        if reason:
            drop.append(item)
            _RECORDS.append(CaseResult(name=_short_name(item), item=spec["item"], kind=spec["kind"],
                                       visibility=spec["visibility"], weight=spec["weight"],
                                       status=STATUS_NOT_RUN, doc=_doc(item), message=reason))
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    # Every public test before every hidden one (stable: file order within each), so the
    # submission's worker switches phase once (see Submission.set_phase).
    items[:] = sorted(keep, key=lambda item: item.stash[_SPEC]["visibility"] != "public")
    if public_only:
        _RECORDS.extend(_absent_hidden_tests())


def _absent_hidden_tests() -> list[CaseResult]:
    """The student edition has no hidden tests, only their count, item, kind and weight (recorded
    by ``hw4grade assign``): they are recorded as "not run" like the full edition's, so every
    public test keeps its share of the item's points."""
    from grader.edition import current
    from grader.oracle import load_hidden

    if current() != "student":
        return []
    return [CaseResult(name=f"hidden test {i + 1} of {h['item']}", item=h["item"], kind=h["kind"],
                       visibility="hidden", weight=float(h["weight"]), status=STATUS_NOT_RUN, doc="",
                       message="hidden test: run when your submission is graded")
            for i, h in enumerate(load_hidden())]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before a test's fixtures are set up: the phase (public or hidden) its calls belong to."""
    spec = item.stash.get(_SPEC, None)
    if spec is None:
        return
    item.config.stash[_PHASE] = spec["visibility"]
    sub = item.config.stash.get(_SUBMISSION, None)
    if sub is not None:
        sub.set_phase(spec["visibility"])


_PHASE = pytest.StashKey[str]()


_SPEC = pytest.StashKey[dict]()


def _no_shrinking(item: pytest.Item) -> None:
    """Hidden tests never show their failing input, so shrinking it would only cost time
    (each shrink step is a call into the sandbox): keep Hypothesis's other phases."""
    from hypothesis import Phase, settings

    fn = getattr(item, "obj", None)
    if fn is None or not hasattr(fn, "hypothesis"):
        return
    current = getattr(fn, "_hypothesis_internal_use_settings", None) or settings()
    fn._hypothesis_internal_use_settings = settings(current, phases=[p for p in current.phases if p != Phase.shrink])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Tell the oracle (``grader.oracle``) whether a public or a hidden test is running."""
    from grader import oracle

    spec = item.stash.get(_SPEC, None)
    oracle.set_visibility(spec["visibility"] if spec else None)
    try:
        yield
    finally:
        oracle.set_visibility(None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    spec = item.stash.get(_SPEC, None)
    if spec is None:
        return
    if report.when == "setup" and report.passed:
        item.stash[_START] = time.monotonic()
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        credit: Credit | None = getattr(item, "funcargs", {}).get("credit")
        case = CaseResult(name=_short_name(item), item=spec["item"], kind=spec["kind"],
                          visibility=spec["visibility"], weight=spec["weight"], status="passed",
                          doc=_doc(item), seconds=time.monotonic() - item.stash.get(_START, time.monotonic()))
        if report.passed:
            case.fraction = 1.0
        elif report.skipped:
            # A grading test never skips silently: a skip is recorded as not earned, with its reason.
            case.status, case.fault = "failed", "grader"
            case.message = f"not graded: {_skip_reason(report)}"
        else:
            exc = call.excinfo.value if call.excinfo else None
            case.status = "failed"
            case.fraction = credit.fraction if credit and credit.fraction is not None else 0.0
            case.message, case.detail, case.fault = _explain(exc, report, spec["visibility"])
            if case.fault == "grader":
                case.status = "error"
        _RECORDS.append(case)


_START = pytest.StashKey[float]()


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _explain(exc: BaseException | None, report: pytest.TestReport, visibility: str) -> tuple[str, str, str]:
    """(student-facing message, instructor detail, fault) for a failed test."""
    if exc is not None and type(exc).__name__ in ("Flaky", "FlakyFailure", "FlakyReplay"):
        return "the result was not reproducible: the same input passed once and failed once", str(exc), "student"
    if isinstance(exc, BaseExceptionGroup):
        # Several distinct failures of one test (Hypothesis can report more than one): the
        # fault is the student's when every member is, and the first one is explained.
        leaves = _leaves(exc)
        if leaves and all(isinstance(e, StudentError | AssertionError) for e in leaves):
            message, _, fault = _explain(leaves[0], report, visibility)
            return (f"{message}\n({len(leaves)} different failures; the first is shown)", "", fault)
    notes = "\n".join(getattr(exc, "__notes__", []) or [])
    if isinstance(exc, StudentError):
        message = exc.feedback()
        return _with_notes(message, notes, visibility), "", "student"
    if isinstance(exc, AssertionError):
        message = str(exc).split("\nassert ")[0].strip() or "a property check failed"
        return _with_notes(message, notes, visibility), "", "student"
    detail = str(report.longrepr)
    return ("the grader failed on this test (not your fault); your instructor has the details",
            detail[-6000:], "grader")


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


def _with_notes(message: str, notes: str, visibility: str) -> str:
    """Public tests show Hypothesis's smallest failing input; hidden tests keep inputs private."""
    if visibility == "public" and notes:
        return f"{message}\n{notes}"
    return message


@pytest.fixture
def credit() -> Credit:
    """Partial credit: ``credit.set(fraction)`` before the failing assertion."""
    return Credit()


@pytest.fixture(scope="session")
def hw4_config():
    """The assignment config."""
    return load()


@pytest.fixture(scope="session")
def submission(request: pytest.FixtureRequest, hw4_config):
    """The submission under test, loaded in a sandboxed worker (see ``grader.sandbox.proxy``)."""
    from grader.sandbox.proxy import Submission

    path = request.config.getoption("--submission")
    if not path:
        raise pytest.UsageError("grading tests need --submission DIR")
    g = hw4_config.grading
    launched = request.config.stash.get(_LAUNCHED, None)
    if launched is not None:
        del request.config.stash[_LAUNCHED]
    sub = Submission(Path(path), call_timeout=g.call_timeout_s, budget=g.submission_budget_s,
                     session=launched, **_sandbox_args(request.config, hw4_config))
    sub.set_phase(request.config.stash.get(_PHASE, "public"))
    request.config.stash[_SUBMISSION] = sub
    yield sub
    sub.close()


_SUBMISSION = pytest.StashKey["Submission"]()


@pytest.fixture(scope="session")
def notebook_run(request: pytest.FixtureRequest, submission, hw4_config):
    """The submission's notebooks executed in the sandbox (fast grading mode), run once per
    session on first use: see ``grader.notebooks``."""
    from grader.notebooks import run_for_session

    return run_for_session(request.config, submission, hw4_config)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--hw4-report", None)
    if not path:
        return
    sub = session.config.stash.get(_SUBMISSION, None)
    notebook_run = _self_check_notebooks(session.config, sub)
    payload = {
        "cases": [vars(c) for c in _RECORDS],
        "isolation": sub.isolation.describe() if sub is not None else "",
        "found": sub.discovery.summary() if sub is not None else [],
        "by_hand": sub.discovery.by_hand() if sub is not None else {},
        "problems": ([*sub.discovery.problems, *sub.session.left_out()] if sub is not None else []),
        "load_errors": (sub.load_report.unit_errors() if sub is not None and sub.load_report else []),
        "load_failed": sub.load_failed if sub is not None else None,
        "output": sub.session.output() if sub is not None else "",
        "exitstatus": int(exitstatus),
        "notebook_run": notebook_run,
    }
    Path(path).write_text(json.dumps(payload))


def _self_check_notebooks(config: pytest.Config, sub) -> dict:
    """A self-check with ``--notebooks`` (public tests, notebooks run): every notebook check is
    hidden, so none would run them; run them here and say, per notebook, whether it ran to the
    end in the fast grading mode, and the run's notes (a failed cell with its error, the GPU or
    Colab mappings, the fast mode's epoch cap). No points: the checks are the grading's."""
    public_only = config.getoption("--hw4-visibility") == "public"
    if not public_only or config.getoption("--hw4-notebooks") != "run" or sub is None:
        return {}
    from grader.notebooks import run_for_session

    try:
        nb = run_for_session(config, sub, load())
    except GraderError as exc:
        return {"ok": False, "lines": [f"the notebooks could not be run (not your fault): {exc}"]}
    if not nb.runs:
        return {"ok": True, "lines": ["no notebook to run (hw4.ipynb, lab1.ipynb or one defining their code)"]}
    lines, ok = [], True
    runs = list({id(r): r for r in nb.runs.values()}.values())  # a notebook holding both labs ran once
    for run in runs:
        failed = run.failed_cells()
        if run.status == "finished" and not failed:
            lines.append(f"{run.file}: ran to the end ({len([c for c in run.cells if c.cell_type == 'code'])} "
                         "code cells)")
        elif run.status == "finished":
            ok = False
            lines.append(f"{run.file}: ran to the end, but {len(failed)} cell(s) raised an error (below)")
        else:
            ok = False
            lines.append(f"{run.file}: did not run to the end ({run.status}; below)")
    lines += [f"  {note}" for note in nb.notes]
    # the notes also reach the result's warnings: the report shows them in this section only
    return {"ok": ok, "lines": lines, "notes": list(nb.notes)}

