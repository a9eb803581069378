"""The public Lab 1 runner tests: the homework's runs compared with the recorded reference runs.

``grade_each_parameter`` calls a runner (``run_gd(X, y)``, ``run_l1_gd(X, y, lam)``, ...) on the
homework's data for every parameter value of the term and compares the whole trajectory with the
accepted ones (``lab1_trajectories.runs``, reached through ``grader.oracle``: live in the full
edition, recorded in the student edition -- the same numbers in both, so both give the same
verdict). A trajectory is accepted when it stays within the accumulated step tolerance of an
accepted run::

    |T_t - A_t| <= sum_{s < t} step_tolerance(A_s)   for every row t

(``lab1_support.step_tolerance`` bounds one float32 step; errors of a non-expansive step add up,
so a float32 implementation stays inside while every known mistake leaves at row 1). A student's
run that starts as exactly one known wrong reading does gets that reading's hint.

**Error carried forward** (a runner that is right given the student's own ``gradient`` or
``soft_threshold``, DESIGN section 4) needs the reference evaluated on the student's values, so it
cannot be recorded: the verdict stays the strict one in both editions, and the full edition gives
the points back (``credit``) for a parameter value that ``lab1_support.check_runner`` -- the step
check with error carried forward -- accepts, saying so in the message.
"""

from __future__ import annotations

import importlib

import numpy as np
from lab1_support import RUNNERS, UPDATES, Run, as_run_trajectory, call_in_layouts, require_finite, step_tolerance
from rubric_support import fmt

from grader.edition import current
from grader.errors import StudentError
from grader.oracle import call as reference_call

__all__ = ["accepted_runs", "check_recorded_runner", "grade_each_parameter"]


def accepted_runs(run: Run) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """(accepted trajectories, {hint: trajectory of a known wrong reading}) of ``run``."""
    runs = reference_call("lab1_trajectories:runs", run.method, run.X, run.y, run.lr, run.steps, run.param,
                          run.trim)
    return runs["accepted"], runs["wrong"]


def _budget(run: Run, reference: np.ndarray) -> np.ndarray:
    """Per row, how far a right float32 run may have drifted from ``reference``."""
    per_step = np.array([step_tolerance(run, W) for W in reference[:-1]])
    return np.concatenate([[1e-12], np.cumsum(per_step)])


def _first_off(traj: np.ndarray, reference: np.ndarray, budget: np.ndarray) -> int | None:
    off = np.abs(traj - reference).max(axis=1) > budget
    return int(np.argmax(off)) if off.any() else None


def check_recorded_runner(submission, run: Run, args, kwargs: dict, what: str) -> None:
    """Call the student's runner and compare its trajectory with the accepted runs; raise
    ``AssertionError`` with the first row that is off (and a hint) when none matches."""
    accepted, wrong = accepted_runs(run)

    def check(value, layout: str) -> None:
        traj = as_run_trajectory(value, run.steps, run.n, what)
        require_finite(traj, what)
        if np.abs(traj[0]).max(initial=0.0) > 1e-12:
            raise AssertionError(f"{what}: row 0 of the trajectory must be the starting point W0 = 0, "
                                 f"got {fmt(traj[0])}")
        offs = []
        for reference in accepted:
            row = _first_off(traj, reference, _budget(run, reference))
            if row is None:
                return
            offs.append((row, reference))
        row, reference = max(offs, key=lambda o: o[0])  # the accepted run it follows longest
        alternatives = f" (or one of {len(accepted) - 1} other accepted runs)" if len(accepted) > 1 else ""
        text = (f"{what}: row {row} is off the expected run of {UPDATES[run.method]} (lr = {run.lr:g})"
                f"{alternatives}.\n"
                f"  expected row {row - 1}: {fmt(reference[row - 1])}\n  your row {row - 1}:    {fmt(traj[row - 1])}\n"
                f"  expected row {row}: {fmt(reference[row])}\n  your row {row}:    {fmt(traj[row])}")
        hints = [h for h, t in wrong.items() if _first_off(traj[:len(t)], t, _budget(run, t)) is None]
        if len(hints) == 1:
            text += f"\n  Hint: {hints[0]}"
        raise AssertionError(text)

    call_in_layouts(submission, RUNNERS[run.method], args, kwargs=kwargs, columns=(1,), check=check)


def grade_each_parameter(submission, credit, method: str, X: np.ndarray, y: np.ndarray, cfg) -> None:
    """Run ``method``'s runner on the homework's data for every parameter value of the term, the
    way the notebook does (``run_l1_gd(X, y, lam)``: lr and steps at their defaults); the test
    passes when every value's run is accepted. Partial credit: the fraction of values right
    (in the full edition also those right by error carried forward)."""
    c = cfg.lab1
    params = c.params(method)
    wrong, carried = [], 0
    for p in params:
        if p is None:
            run, args = Run(method, X, y, c.lr, c.steps), (X, y)
        elif method == "projected":
            run, args = Run(method, X, y, c.lr, c.steps, param=p), (X, y)
        else:
            run = Run(method, X, y, c.lr, c.steps, param=p, trim=c.trim if method == "trimmed" else None)
            args = (X, y, p)
        shown = "" if p is None or method == "projected" else f", {p:g}"
        what = f"{RUNNERS[method]}(X, y{shown}) on the homework's X, y"
        try:
            check_recorded_runner(submission, run, args, {}, what)
            continue
        except AssertionError as exc:
            wrong.append(str(exc))
        except StudentError as exc:
            wrong.append(exc.feedback())
        carried += _right_by_the_step_check(submission, run, args, what)
    if wrong:
        credit.set(1 - (len(wrong) - carried) / len(params))
        right = len(params) - len(wrong)
        # one message per distinct failure: a submission that cannot load fails every value alike
        shown = list(dict.fromkeys(wrong))
        head = f"{right} of {len(params)} parameter values right.\n\n" if len(params) > 1 else ""
        tail = (f"\n\n({carried} of these {len(wrong)} runs still earn their points: each of their steps is "
                "right from the row before it, given your own gradient and soft_threshold where those are "
                "wrong -- error carried forward, graded where those functions are)") if carried else ""
        raise AssertionError(head + "\n\n".join(shown) + tail)


def _right_by_the_step_check(submission, run: Run, args, what: str) -> bool:
    """Full edition only: does the step check with error carried forward accept this run?"""
    if current() == "student":
        return False
    support = importlib.import_module("lab1_support")  # by name: the student edition lacks its step check
    try:
        support.check_runner(submission, run, args, {}, what)
    except (AssertionError, StudentError):
        return False
    return True
