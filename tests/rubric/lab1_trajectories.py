"""Every accepted trajectory of a Lab 1 runner, and the trajectories of the known wrong readings.

Reached only through ``grader.oracle`` (``"lab1_trajectories:runs"``): the public runner tests of
``lab1_runs`` compare a student's whole trajectory with these, recorded by ``hw4grade assign`` for
the term's data, so the student edition judges a run without the reference. This module uses the
reference and is never part of the student edition.

From ``W0 = 0`` each rule of ``lab1_support.RULES`` (the reference and the accepted variants, one
rule for a whole run) is followed step by step; where magnitudes tie (within the step tolerance)
every valid next row starts a branch, so all tie-breaks are listed. The known wrong readings
(``lab1_support.HINTS``) are followed the same way (first choice at a tie) for their first
:data:`HINT_ROWS` steps: a student's run that starts like one of them, and like no other, gets its
hint (two readings rarely agree for even two steps; the whole run would only make the recorded
table ten times larger).
"""

from __future__ import annotations

import numpy as np
from lab1_support import HINTS, RULES, Run, step_tolerance

import reference.lab1 as ref
from grader.errors import GraderError

__all__ = ["MAX_BRANCHES", "runs"]

#: more accepted trajectories than this means the term's data ties everywhere: refuse to record
MAX_BRANCHES = 32
#: steps of each wrong reading recorded for hints
HINT_ROWS = 20


def runs(method: str, X: np.ndarray, y: np.ndarray, lr: float, steps: int, param: float | None = None,
         trim: int | None = None) -> dict:
    """``{"accepted": [trajectory, ...], "wrong": {hint: first rows}}``: accepted runs of shape
    (steps + 1, n), wrong readings' first ``min(steps, HINT_ROWS) + 1`` rows."""
    run = Run(method, np.asarray(X, dtype=float), np.asarray(y, dtype=float), lr, steps, param, trim)
    accepted: list[np.ndarray] = []
    for rule in RULES[method].values():
        for traj in _branches(run, rule):
            if not any(np.array_equal(traj, a) for a in accepted):
                accepted.append(traj)
    wrong: dict[str, np.ndarray] = {}
    for hint, rule in HINTS["*"] + HINTS.get(method, []):
        traj = _follow(run, rule, min(steps, HINT_ROWS))
        if traj is not None and not any(np.abs(traj - a[:len(traj)]).max() <= 1e-9 for a in accepted):
            wrong[hint] = traj
    return {"accepted": accepted, "wrong": wrong}


def _step(run: Run, rule, W: np.ndarray) -> list[np.ndarray]:
    G = ref.gradient(W, run.X, run.y)
    V = W - run.lr * G
    SV = ref.soft_threshold(V, run.param) if run.method in ("proximal", "trimmed") else V
    out: list[np.ndarray] = []
    for cand in rule(run, W, G, V, SV, step_tolerance(run, W)):
        c = np.asarray(cand, dtype=float).reshape(run.n)
        if not any(np.array_equal(c, o) for o in out):
            out.append(c)
    return out


def _branches(run: Run, rule) -> list[np.ndarray]:
    done: list[np.ndarray] = []
    stack: list[list[np.ndarray]] = [[np.zeros(run.n)]]
    while stack:
        rows = stack.pop()
        while len(rows) <= run.steps:
            nxt = _step(run, rule, rows[-1])
            if not nxt:
                break
            for alt in nxt[1:]:
                stack.append([*rows, alt])
                if len(stack) + len(done) > MAX_BRANCHES:
                    raise GraderError(f"{run.method}: more than {MAX_BRANCHES} tie-broken trajectories on "
                                      "this data; the recorded check cannot list them all")
            rows.append(nxt[0])
        if len(rows) == run.steps + 1:
            done.append(np.array(rows))
    return done


def _follow(run: Run, rule, steps: int) -> np.ndarray | None:
    rows = [np.zeros(run.n)]
    with np.errstate(all="ignore"):
        for _ in range(steps):
            nxt = _step(run, rule, rows[-1])
            if not nxt or not np.isfinite(nxt[0]).all():
                return None
            rows.append(nxt[0])
    return np.array(rows)
