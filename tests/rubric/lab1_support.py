"""Lab 1 helpers for the rubric tests: layouts, set-valued step checks, error carried forward.

Three decisions the Lab 1 tests share, made once here:

* **Layouts.** DESIGN section 2 accepts W of shape (5,) or (5, 1). A student who wrote every
  function for column vectors may fail (or broadcast to a wrong shape) when called with 1-D
  inputs, so :func:`call_in_layouts` calls with 1-D vectors first and, if that fails, once more
  with W as (n, 1) and y as (m, 1); the student passes if either call is right.
* **Trajectories are checked step by step.** Row 0 must be ``W0 = 0`` and every row must be one
  valid iteration from the row before it (:func:`check_run`). This accepts every tie-break of
  ``P_k`` and of the trimmed prox (a tie changes the rest of the trajectory, so comparing with
  one reference trajectory would punish a valid choice), accepts the pre-step selection of (f)
  for the whole run, and absorbs float32 drift. Rows are compared with a tolerance derived from
  float32 rounding of the step's own terms (:func:`step_tolerance`).
* **Error carried forward.** A runner that is wrong only because the student's own ``gradient``
  (item a) or, in (f), ``soft_threshold`` (item e) is wrong is graded as right, so one bug costs
  points once (DESIGN section 4). The student's function is evaluated at every row in one round
  trip (``Submission.call_many``: a batch the student's code reaches exactly as it reaches a
  test's own call) and the step check is repeated with its values. This only ever turns a
  failure into a pass; a correct submission never calls it. It pays only for runs that do the
  work (issue 14): never for a trajectory that stays at W0, nor with a function that is
  degenerate -- zeros, a constant, the input back, a gradient that ignores W or the data, a
  soft_threshold that ignores tau (:class:`NotCarried`) -- or that answers two of the rows,
  asked first as ordinary calls, differently from the batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from hypothesis import strategies as st
from rubric_support import as_trajectory, as_vector, fmt, trivial_answer

import reference.lab1 as ref
from grader.errors import BadReturn, StudentError, StudentException
from grader.oracle import call as reference_call  # what public checks need of the reference (grader.oracle)
from reference.lab1_variants import all_projections, valid_selections

__all__ = [
    "TERM_WEIGHTS",
    "UPDATES",
    "Divergence",
    "NotCarried",
    "Run",
    "as_run_trajectory",
    "as_scalar",
    "call_in_layouts",
    "call_soft_threshold",
    "check_gradient",
    "check_loss",
    "check_projection",
    "check_run",
    "check_runner",
    "check_soft_threshold",
    "check_trimmed",
    "operator_tolerance",
    "own_gradient",
    "own_soft",
    "own_values",
    "require_finite",
    "runner_data",
    "soft_references",
    "step_tolerance",
]

#: the update of each method, as the feedback states it (V = W - lr * grad L(W))
UPDATES = {
    "gd": "W <- W - lr * grad L(W)",
    "projected": "W <- P_k(W - lr * grad L(W)), keeping the k entries of largest magnitude",
    "l1": "W <- W - lr * (grad L(W) + lam * sign(W)), with sign(0) = 0",
    "proximal": "W <- S_tau(W - lr * grad L(W)), S_tau(v) = sign(v) * max(|v| - tau, 0)",
    "trimmed": "W <- T_tau(W - lr * grad L(W)), soft-thresholding only the `trim` smallest entries",
}

#: the student-facing runner of each method
RUNNERS = {"gd": "run_gd", "projected": "run_projected_gd", "l1": "run_l1_gd",
           "proximal": "run_proximal_gd", "trimmed": "run_trimmed_l1"}

_RETRYABLE = (AssertionError, BadReturn, StudentException)


# ----------------------------------------------------------------------------- return values


def as_scalar(value, what: str) -> float:
    """A float from a student return: a number or any array holding exactly one number."""
    try:
        arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value, dtype=float)
    except (TypeError, ValueError):
        raise BadReturn(f"{what} returned {type(value).__name__}, expected a number") from None
    if arr.size != 1:
        raise BadReturn(f"{what} returned an array of shape {arr.shape}, expected a single number")
    return float(arr.reshape(()))


def require_finite(arr: np.ndarray, what: str) -> None:
    """Fail (as the student's result) when ``arr`` holds nan or inf."""
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(f"{what}: the result holds nan or inf (first at index {where}); "
                             "expected finite numbers")


def as_run_trajectory(value, steps: int, n: int, what: str) -> np.ndarray:
    """A runner's trajectory, shape (steps + 1, n): the return value itself or, for a runner that
    returns ``(trajectory, losses)``, its first element. Logging the losses is fine, before or
    after each update (DESIGN section 3); they are not graded."""
    try:
        return as_trajectory(value, steps, n, what)
    except BadReturn:
        if not (isinstance(value, tuple) and len(value) == 2 and _ndim(value[0]) >= 2):
            raise
    # a (trajectory, losses) pair: a problem with the trajectory is reported as such
    return as_trajectory(value[0], steps, n, f"{what} (the first of the two values it returned)")


def _ndim(value) -> int:
    """Dimensions of a student value as an array; 0 when it is not one (ragged, not numeric)."""
    try:
        plain = value.detach().cpu().numpy() if hasattr(value, "detach") else value
        return np.asarray(plain, dtype=float).ndim
    except (TypeError, ValueError):
        return 0


# ----------------------------------------------------------------------------- layouts


def _column(a) -> np.ndarray:
    """``a`` as a column: always a new array (a view of the test's data would be passed on)."""
    return np.array(a, dtype=float).reshape(-1, 1)


def call_in_layouts(submission, name: str, args: Sequence, *, columns: Sequence[int],
                    check: Callable[[object, str], object], kwargs: dict | None = None):
    """Call ``name(*args, **kwargs)``; ``check(value, layout)`` raises if the value is wrong.

    The first call passes 1-D vectors (``layout = "row"``). If it raises, returns an ungradable
    value or fails ``check``, the function is called again with the arguments at ``columns``
    reshaped to columns (``layout = "column"``); either passing is a pass. Arrays are copied for
    each call, so a function that modifies its input in place cannot change the test's data.
    On two failures the more informative one is raised: a wrong value over a crash.
    """
    kwargs = kwargs or {}
    failures: list[BaseException] = []
    values = []
    for layout in ("row", "column"):
        call_args = [(_column(a) if layout == "column" and i in columns else _copy(a))
                     for i, a in enumerate(args)]
        try:
            values.append(submission.call(name, *call_args, **{k: _copy(v) for k, v in kwargs.items()}))
            if len(values) == 2 and _same(values[0], values[1]):
                # the column call returned what the row call did: checking it again (with its
                # error-carried-forward round trips) cannot change the verdict
                raise failures[0]
            return check(values[-1], layout)
        except _RETRYABLE as exc:
            failures.append(exc)
            if isinstance(exc, StudentException) and exc.message.startswith("NotImplementedError"):
                break  # a template stub: another layout cannot help, and Hypothesis calls it often
    first, second = failures[0], failures[-1]
    if not isinstance(first, AssertionError) and isinstance(second, AssertionError):
        raise AssertionError(f"{second}\n(your {name} failed with 1-D vectors, so it was also called with "
                             "W of shape (n, 1) and y of shape (m, 1); the message is about that call)")
    raise first


def _copy(a):
    return a.copy() if isinstance(a, np.ndarray) else a


def _same(a, b) -> bool:
    """Whether two student returns hold the same numbers in the same shape."""
    try:
        x, y = (np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=float)
                for v in (a, b))
    except (TypeError, ValueError):
        return False
    return x.shape == y.shape and bool(np.array_equal(x, y, equal_nan=True))


# ----------------------------------------------------------------------------- step checks


@dataclass(frozen=True)
class Run:
    """One runner call to check: its method, data and parameter (k, lam or tau)."""

    method: str
    X: np.ndarray
    y: np.ndarray
    lr: float
    steps: int
    param: float | None = None
    trim: int | None = None

    @property
    def n(self) -> int:
        return self.X.shape[1]


@dataclass(frozen=True)
class Divergence:
    """The first row of a trajectory that does not follow the update."""

    row: int
    got: np.ndarray
    expected: list[np.ndarray]  # the valid values of this row (several when magnitudes tie)
    previous: np.ndarray | None
    hint: str = ""
    #: why the student's own functions did not excuse the run (error carried forward), if said
    note: str = ""

    def message(self, what: str, run: Run) -> str:
        closest = min(self.expected, key=lambda e: float(np.abs(e - self.got).max()))
        if self.row == 0:
            return f"{what}: row 0 of the trajectory must be the starting point W0 = 0, got {fmt(self.got)}"
        others = len(self.expected) - 1
        alternatives = f" (or one of {others} other tie-breaks)" if others else ""
        text = (f"{what}: row {self.row} is not one step of {UPDATES[run.method]} from row {self.row - 1}"
                f" (lr = {run.lr:g}).\n  row {self.row - 1}: {fmt(self.previous)}\n"
                f"  expected row {self.row}: {fmt(closest)}{alternatives}\n"
                f"  your row {self.row}:    {fmt(self.got)}")
        text += f"\n  Hint: {self.hint}" if self.hint else ""
        return text + (f"\n  (Not excused by your own functions: {self.note}.)" if self.note else "")


def step_tolerance(run: Run, W: np.ndarray) -> float:
    """How far a correct float32 implementation may land from the exact step at ``W``.

    A float32 step ``W - lr * 2 X^T (X W - y)`` (then a threshold) sums at most n + 3 products;
    each rounding errs by eps32 = 6e-8 relative to the *terms*, not the result, so the error is
    below (n + 3) * eps32 * scale with ``scale = |W| + lr * 2 |X|^T (|X| |W| + |y|) + lr * lam + tau``.
    1e-5 * scale is ~20x that bound for n <= 8; every known mistake moves a step by far more
    (a missing factor 2 by lr * |grad L|, sign(0) = 1 by lr * lam).
    """
    X, y = np.abs(run.X), np.abs(run.y)
    scale = np.abs(W) + run.lr * 2 * X.T @ (X @ np.abs(W) + y)
    penalty = {"l1": run.lr * (run.param or 0.0), "proximal": run.param, "trimmed": run.param}
    extra = penalty.get(run.method) or 0.0
    return 1e-6 + 1e-5 * (float(scale.max()) + abs(extra))


def operator_tolerance(W: np.ndarray, tau: float = 0.0) -> float:
    """Tolerance for an operator applied to ``W`` (projection, thresholds): float32 rounding of
    the inputs alone is 6e-8 relative; 1e-6 relative to the largest input leaves room for it."""
    return 1e-9 + 1e-6 * (float(np.abs(W).max(initial=0.0)) + abs(tau))


def _selected(values: np.ndarray, replaced: np.ndarray, chosen: tuple[int, ...]) -> np.ndarray:
    out = values.copy()
    out[list(chosen)] = replaced[list(chosen)]
    return out


def _trimmed(V: np.ndarray, SV: np.ndarray, key: np.ndarray, trim: int, tol: float) -> list[np.ndarray]:
    return [_selected(V, SV, s) for s in valid_selections(np.abs(key), trim, smallest=True, tol=tol)]


#: the accepted rules of each method: name -> candidates(run, W, G, V, SV, tol) -> valid next rows
_Rule = Callable[[Run, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float], list[np.ndarray]]
RULES: dict[str, dict[str, _Rule]] = {
    "gd": {"reference": lambda r, W, G, V, SV, tol: [V]},
    "projected": {"reference": lambda r, W, G, V, SV, tol: all_projections(V, int(r.param), tol)},
    "l1": {"reference": lambda r, W, G, V, SV, tol: [V - r.lr * r.param * np.sign(W)]},
    "proximal": {"reference": lambda r, W, G, V, SV, tol: [SV]},
    "trimmed": {
        "reference": lambda r, W, G, V, SV, tol: _trimmed(V, SV, V, r.trim, tol),
        # DESIGN section 3: selecting the entries by |W| before the step is accepted
        "selection by |W| before the step": lambda r, W, G, V, SV, tol: _trimmed(V, SV, W, r.trim, tol),
    },
}


def _operator(run: Run, W: np.ndarray, V: np.ndarray, tol: float) -> list[np.ndarray]:
    """The method's reference operator applied to another gradient step ``V`` (for hints)."""
    SV = ref.soft_threshold(V, run.param) if run.method in ("proximal", "trimmed") else V
    G = (W - V) / run.lr
    return RULES[run.method]["reference"](run, W, G, V, SV, tol)


def _per_sample(run: Run, W: np.ndarray) -> np.ndarray:
    for Xi, yi in zip(run.X, run.y, strict=True):
        W = W - run.lr * 2 * Xi * (Xi @ W - yi)
    return W


#: readings known to be wrong, recognised at the first wrong row to say what went wrong
HINTS: dict[str, list[tuple[str, _Rule]]] = {
    "*": [
        ("this is the step with half the gradient: is the factor 2 of grad L = 2 X^T (X W - y) missing?",
         lambda r, W, G, V, SV, tol: _operator(r, W, W - r.lr * G / 2, tol)),
        ("this is a step up the gradient (W + lr * grad L): check the sign of the update.",
         lambda r, W, G, V, SV, tol: _operator(r, W, W + r.lr * G, tol)),
        ("this is one step per sample (X_i, y_i); the update uses the full-batch gradient of all samples.",
         lambda r, W, G, V, SV, tol: _operator(r, W, _per_sample(r, W), tol)),
    ],
    "projected": [("this keeps the k entries of *smallest* magnitude; keep the largest.",
                   lambda r, W, G, V, SV, tol: [_selected(np.zeros_like(V), V, s) for s in
                                                valid_selections(np.abs(V), int(r.param), True, tol)])],
    "l1": [("this takes sign(0) = +1; sign(0) must be 0 (np.sign does that).",
            lambda r, W, G, V, SV, tol: [V - r.lr * r.param * np.where(W >= 0, 1.0, -1.0)]),
           ("lam * sign(W) is not multiplied by lr.",
            lambda r, W, G, V, SV, tol: [V - r.param * np.sign(W)])],
    "proximal": [("this thresholds by lr * tau; the threshold tau is used as given.",
                  lambda r, W, G, V, SV, tol: [ref.soft_threshold(V, r.lr * r.param)])],
    "trimmed": [("every entry was soft-thresholded; only the `trim` smallest should be.",
                 lambda r, W, G, V, SV, tol: [SV]),
                ("the entries of *largest* magnitude were soft-thresholded; threshold the smallest.",
                 lambda r, W, G, V, SV, tol: [_selected(V, SV, s) for s in
                                              valid_selections(np.abs(V), r.trim, False, tol)]),
                ("the entries were selected by |grad L(W)|; select by the magnitude of the step V.",
                 lambda r, W, G, V, SV, tol: _trimmed(V, SV, G, r.trim, tol))],
}


def _matches(got: np.ndarray, candidates: list[np.ndarray], tol: float) -> bool:
    return any(np.abs(got - c).max(initial=0.0) <= tol for c in candidates)


def _first_divergence(run: Run, traj: np.ndarray, rule: _Rule, G: np.ndarray,
                      SV: np.ndarray | None) -> Divergence | None:
    if np.abs(traj[0]).max(initial=0.0) > 1e-12:
        return Divergence(0, traj[0], [np.zeros(run.n)], None)
    V_all = traj[:-1] - run.lr * G
    for t in range(run.steps):
        W, V, nxt = traj[t], V_all[t], traj[t + 1]
        tol = step_tolerance(run, W)
        sv = SV[t] if SV is not None else V
        candidates = rule(run, W, G[t], V, sv, tol)
        if not _matches(nxt, candidates, tol):
            return Divergence(t + 1, nxt, candidates, W)
    return None


def check_run(run: Run, traj: np.ndarray, *,
              student_gradient: Callable[[np.ndarray], np.ndarray | None] | None = None,
              student_soft: Callable[[np.ndarray], np.ndarray | None] | None = None) -> Divergence | None:
    """None if ``traj`` is a valid run of ``run.method``; else the first wrong row (for feedback).

    Valid: row 0 is zero and every row is one accepted step (:data:`RULES`, one rule for the whole
    run) from the previous one, within :func:`step_tolerance`. If not, and ``student_gradient``
    (rows -> the student's gradients there) or ``student_soft`` (V rows -> the student's
    ``soft_threshold``, for (f)) are given, the check is repeated with their values (error carried
    forward) -- unless they raise :class:`NotCarried`, or the trajectory never leaves W0 while
    the student's gradient is 0 there (a step of zero is no work). The
    returned divergence is always the one against the reference, with a hint when the wrong row
    matches a known wrong reading and a note when the student's functions could not excuse it.
    """
    with np.errstate(all="ignore"):
        G_ref = np.array([ref.gradient(W, run.X, run.y) for W in traj[:-1]]).reshape(run.steps, run.n)
        thresholded = run.method in ("proximal", "trimmed")

        def soft_ref(G):
            return ref.soft_threshold(traj[:-1] - run.lr * G, run.param) if thresholded else None

        first = None
        for rule in RULES[run.method].values():
            div = _first_divergence(run, traj, rule, G_ref, soft_ref(G_ref))
            if div is None:
                return None
            first = first or div
        assert first is not None
        if first.row == 0:
            return first
        notes: list[str] = []
        sources = [G_ref]
        student_G = _carried(student_gradient, traj[:-1], notes)
        if student_G is not None and not float(np.ptp(traj, axis=0).max()) > 0 and not np.abs(student_G[0]).max() > 0:
            # A run that never leaves W0 because the student's step is zero there did no work
            # (zeros are then "a valid run" of every method); one that a threshold keeps at W0
            # from a nonzero step is checked like any other.
            notes.append("the trajectory never moves from W0 = 0, where your gradient is 0")
            student_G, student_soft = None, None
        if student_G is not None and not np.allclose(student_G, G_ref, rtol=1e-5, atol=1e-6):
            sources.append(student_G)
            for rule in RULES[run.method].values():
                if _first_divergence(run, traj, rule, student_G, soft_ref(student_G)) is None:
                    return None
        if run.method == "trimmed" and student_soft is not None:
            for G in sources:
                SV = _carried(student_soft, traj[:-1] - run.lr * G, notes)
                if SV is None:
                    break
                for rule in RULES[run.method].values():
                    if _first_divergence(run, traj, rule, G, SV) is None:
                        return None
        return replace(_with_hint(run, traj, first, G_ref), note="; ".join(notes))


def _carried(own: Callable[[np.ndarray], np.ndarray | None] | None, arg: np.ndarray,
             notes: list[str]) -> np.ndarray | None:
    """``own(arg)``, or None when there is no such function or it cannot excuse the run (then
    its reason joins ``notes``)."""
    if own is None:
        return None
    try:
        return own(arg)
    except NotCarried as exc:
        if str(exc) and str(exc) not in notes:
            notes.append(str(exc))
        return None


def _with_hint(run: Run, traj: np.ndarray, div: Divergence, G_ref: np.ndarray) -> Divergence:
    """``div`` with a hint when exactly one known wrong reading explains the whole trajectory
    (one matching row proves little: on a small example several readings coincide)."""
    thresholded = run.method in ("proximal", "trimmed")
    SV = ref.soft_threshold(traj[:-1] - run.lr * G_ref, run.param) if thresholded else None
    explains = [hint for hint, rule in HINTS["*"] + HINTS.get(run.method, [])
                if _first_divergence(run, traj, rule, G_ref, SV) is None]
    if len(explains) == 1:
        return Divergence(div.row, div.got, div.expected, div.previous, explains[0])
    return div


# ----------------------------------------------------------------------------- error carried forward


class NotCarried(Exception):
    """The student's own function cannot excuse a trajectory (error carried forward); the message
    says why, for feedback ("" when the function simply could not be evaluated)."""


#: rows of a batch first asked as ordinary calls (error carried forward's spot checks)
SPOT_CHECKS = 2


def own_values(submission, name: str, calls: list[list], size: int, *, columns: Sequence[int]) -> np.ndarray:
    """The student's ``name(*args)`` for every argument list in ``calls``, as a (len(calls), size)
    array, for error carried forward; tried with 1-D vectors, then (if ``columns``) with columns.

    :data:`SPOT_CHECKS` of the calls, picked from a hash of all the arguments, are first made as
    ordinary calls; the batch (``Submission.call_many``) must then answer them the same, so a
    function that answers a batch otherwise than a test gets no credit from it.

    Raises:
        NotCarried: the function fails or returns non-finite values in every layout, or the batch
            disagrees with the ordinary calls.
    """
    picks = _spot_checks(calls)
    for layout in ("row", "column") if columns else ("row",):
        wire = [[(_column(a) if layout == "column" and i in columns else a) for i, a in enumerate(args)]
                for args in calls]
        try:
            single = {i: as_vector(submission.call(name, *wire[i]), size, name) for i in picks}
            if len(picks) == len(calls):
                out = np.array([single[i] for i in range(len(calls))])
            else:
                out = np.array([as_vector(v, size, name) for v in submission.call_many(name, wire)])
        except (StudentError, AssertionError):
            continue
        if not np.isfinite(out).all():
            continue
        if any(not np.array_equal(out[i], value) for i, value in single.items()):
            raise NotCarried(f"your {name} gave other values for the same arguments when asked again")
        return out
    raise NotCarried("")


def _spot_checks(calls: list[list]) -> list[int]:
    """Which calls :func:`own_values` makes one by one: fixed by the arguments (deterministic
    grading), not by their position, so a student cannot know which rows they will be."""
    if len(calls) <= SPOT_CHECKS:
        return list(range(len(calls)))
    digest = hashlib.sha256()
    for args in calls:
        for a in args:
            digest.update(np.ascontiguousarray(np.asarray(a, dtype=float)).tobytes())
    rng = np.random.default_rng(int.from_bytes(digest.digest()[:8], "little"))
    return sorted(int(i) for i in rng.choice(len(calls), size=SPOT_CHECKS, replace=False))


def _ignores(got: np.ndarray, got_moved: np.ndarray, want: np.ndarray, want_moved: np.ndarray) -> bool:
    """Does the student's value stay put (below 1e-3 of the right change) where the right value
    moves? (A wrong formula still moves with its inputs; a degenerate one does not.)"""
    right = float(np.abs(want_moved - want).max(initial=0.0))
    return right > 0 and float(np.abs(got_moved - got).max(initial=0.0)) <= 1e-3 * right


def own_gradient(submission, run: Run, rows: np.ndarray, layout: str) -> np.ndarray:
    """The student's ``gradient`` at each of ``rows`` (with the run's X, y, in ``layout``), for
    error carried forward; four more calls show whether it depends on W and on the data: at
    ``A = ``the row farthest from W0 plus 1 (never 0, where ``2 X^T X W`` vanishes whatever X),
    with X, y, then y + 1, then 2 X.

    Raises:
        NotCarried: it cannot be evaluated (:func:`own_values`), returns zeros everywhere, or
            ignores W or the data (then it excuses nothing: a runner stepping by a constant or
            by zero did not do the work).
    """
    col = layout == "column"
    far = int(np.argmax(np.abs(rows).sum(axis=1)))
    A = rows[far] + 1.0
    points = [(W, run.X, run.y) for W in rows] + [(A, run.X, run.y), (A, run.X, run.y + 1.0), (A, 2.0 * run.X, run.y)]
    calls = [[W, X, _column(y) if col else y] for W, X, y in points]
    values = own_values(submission, "gradient", calls, run.n, columns=(0, 2) if col else ())
    G, (at_A, moved_y, moved_X) = values[:len(rows)], values[len(rows):]
    want = [ref.gradient(W, X, y) for W, X, y in points[len(rows):]]
    if not np.abs(values).max(initial=0.0) > 0:
        raise NotCarried("your gradient returns zeros")
    if _ignores(G[far], at_A, ref.gradient(rows[far], run.X, run.y), want[0]):
        raise NotCarried("your gradient does not change with W")
    data_moves = [(g, w) for g, w in ((moved_y, want[1]), (moved_X, want[2])) if np.abs(w - want[0]).max() > 0]
    if data_moves and all(_ignores(at_A, g, want[0], w) for g, w in data_moves):
        raise NotCarried("your gradient does not change with X and y")
    return G


def own_soft(submission, V_rows: np.ndarray, tau: float, layout: str) -> np.ndarray:
    """The student's ``soft_threshold(V, tau)`` for each of ``V_rows`` (in ``layout``), for
    error carried forward, with one more call at another threshold that shows whether it
    depends on tau.

    Raises:
        NotCarried: it cannot be evaluated, returns a trivial answer (zeros, V itself, a
            constant) where soft-thresholding does not, or ignores tau.
    """
    right, at, other, right_at, right_other = soft_references(V_rows, tau)
    calls = [[V, float(tau)] for V in V_rows] + [[at, other]]
    values = own_values(submission, "soft_threshold", calls, V_rows.shape[1],
                        columns=(0,) if layout == "column" else ())
    SV, moved = values[:-1], values[-1]
    kind = trivial_answer(SV, [V_rows], right, operator_tolerance(V_rows, tau))
    if kind is not None:
        raise NotCarried(f"your soft_threshold returned {kind}")
    base = SV[int(np.argmax(np.abs(V_rows).sum(axis=1)))]
    if _ignores(base, moved, right_at, right_other):
        raise NotCarried("your soft_threshold does not change with the threshold")
    return SV


def soft_references(V_rows: np.ndarray, tau: float) -> tuple:
    """What :func:`own_soft` compares the student's soft_threshold with: (S_tau of every row, the
    row ``at`` it asks once more, the ``other`` threshold it asks there, S_tau(at), S_other(at)).
    A public test asks for these before calling the student (``grader.oracle``: the student
    edition has only what the solution's run asked for)."""
    at = V_rows[int(np.argmax(np.abs(V_rows).sum(axis=1)))]
    other = 2.0 * tau + 0.5
    return (reference_call("reference.lab1:soft_threshold", V_rows, tau), at, other,
            reference_call("reference.lab1:soft_threshold", at, tau),
            reference_call("reference.lab1:soft_threshold", at, other))


# ----------------------------------------------------------------------------- runners


def check_runner(submission, run: Run, args: Sequence, kwargs: dict, what: str) -> None:
    """Call the student's runner of ``run.method`` and check its trajectory; raise on a mistake.

    ``args``/``kwargs`` are the call's arguments (``args[1]`` is y, sent as a column in the column
    layout). Error carried forward uses the student's ``gradient`` (and, for (f), their
    ``soft_threshold``) in the layout the runner was called with.
    """
    name = RUNNERS[run.method]

    def check(value, layout: str) -> None:
        traj = as_run_trajectory(value, run.steps, run.n, what)
        require_finite(traj, what)

        def student_gradient(rows):
            return own_gradient(submission, run, rows, layout) if submission.has("gradient") else None

        def student_soft(V_rows):
            if not submission.has("soft_threshold"):
                return None
            return own_soft(submission, V_rows, float(run.param), layout)

        div = check_run(run, traj, student_gradient=student_gradient, student_soft=student_soft)
        if div is not None:
            raise AssertionError(div.message(what, run))

    call_in_layouts(submission, name, args, kwargs=kwargs, columns=(1,), check=check)


@st.composite
def runner_data(draw, max_steps: int = 25):
    """(X, y, lr, steps) for a runner on generated data: the homework's shape (3 samples, 5
    features; students may fix n = 5), small integer entries (so magnitudes tie now and then,
    exercising tie-breaks), and a step size that keeps gradient descent stable:
    lr = 0.5 / lambda_max(2 X^T X)."""
    X = np.array(draw(st.lists(st.lists(st.integers(-2, 2), min_size=5, max_size=5), min_size=3, max_size=3)),
                 dtype=float)
    y = np.array(draw(st.lists(st.integers(-5, 5), min_size=3, max_size=3)), dtype=float)
    steps = draw(st.integers(1, max_steps))
    lr = 0.5 / max(float(np.linalg.eigvalsh(2 * X.T @ X).max()), 1.0)
    return X, y, lr, steps


# ----------------------------------------------------------------------------- (a) loss and gradient

#: weights the public tests evaluate on the homework's data: zero, the sparse solution, others
TERM_WEIGHTS = [
    [0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, -3.0, 0.0, 0.0, 1.0],
    [1.0, 1.0, 1.0, 1.0, 1.0],
    [0.5, -1.0, 2.0, 0.0, -0.25],
]


def loss_tolerance(X, y, W) -> float:
    """float32 rounding of the residual r_i errs by at most (n + 1) * eps32 * s_i with
    s = |X| |W| + |y|, so r_i^2 errs by at most ~2 (n + 1) * eps32 * s_i^2 (< 1e-6 s_i^2 for n <= 6):
    1e-5 * sum s_i^2 leaves a margin of 10 and is far below a wrong formula's effect."""
    s = np.abs(X) @ np.abs(W) + np.abs(y)
    return 1e-6 + 1e-5 * float(s @ s)


def gradient_tolerance(X, y, W) -> np.ndarray:
    """Per entry: the float32 error of 2 X^T r is below (m + n + 1) * eps32 * (2 |X|^T s)_j
    (< 1e-6 of it for m, n <= 6) with s as in ``loss_tolerance``; 1e-5 leaves a margin of 10."""
    s = np.abs(X) @ np.abs(W) + np.abs(y)
    return 1e-6 + 1e-5 * (2 * np.abs(X).T @ s)


def check_loss(submission, X, y, W, what: str) -> None:
    """The student's loss(W, X, y) equals sum_i (X_i W - y_i)^2 within ``loss_tolerance``."""
    expected = reference_call("reference.lab1:loss", W, X, y)
    tol = loss_tolerance(X, y, W)

    def check(value, layout):
        got = as_scalar(value, what)
        if not abs(got - expected) <= tol:
            hint = _loss_hint(got, expected, X)
            raise AssertionError(f"{what}: expected {fmt(expected)}, got {fmt(got)}{hint}")

    call_in_layouts(submission, "loss", (W, X, y), columns=(0, 2), check=check)


def _loss_hint(got: float, expected: float, X) -> str:
    m = X.shape[0]
    if m > 1 and np.isclose(got * m, expected, rtol=1e-6):
        return " (that is the mean over the samples; the loss is their sum)"
    if np.isclose(got * got, expected, rtol=1e-6):
        return " (that is ||X W - y||, not its square)"
    return ""


def check_gradient(submission, X, y, W, what: str) -> None:
    """The student's gradient(W, X, y) equals 2 X^T (X W - y) within ``gradient_tolerance``."""
    expected = reference_call("reference.lab1:gradient", W, X, y)
    tol = gradient_tolerance(X, y, W)

    def check(value, layout):
        got = as_vector(value, X.shape[1], what)
        require_finite(got, what)
        if not np.all(np.abs(got - expected) <= tol):
            hint = ""
            if np.all(np.abs(2 * got - expected) <= tol):
                hint = " (half the expected value: is the factor 2 missing?)"
            elif np.all(np.abs(got + expected) <= tol):
                hint = " (the expected value with the opposite sign: the residual is X W - y)"
            raise AssertionError(f"{what}: expected {fmt(expected)}, got {fmt(got)}{hint}")

    call_in_layouts(submission, "gradient", (W, X, y), columns=(0, 2), check=check)


# ----------------------------------------------------------------------------- (c), (e), (f) operators


def check_projection(submission, W, k, what: str, validate: bool = True, pass_k: bool = True) -> np.ndarray:
    """The student's P_k(W), checked to be a valid projection (unless ``validate`` is False).
    ``pass_k=False`` calls ``project_top_k(W)``: ``k`` is then the signature's default."""
    tol = operator_tolerance(W)
    valid = reference_call("reference.lab1_variants:all_projections", W, k, tol=tol)

    def check(value, layout):
        got = as_vector(value, W.size, what)
        require_finite(got, what)
        if validate and not any(np.abs(got - p).max() <= tol for p in valid):
            closest = min(valid, key=lambda p: float(np.abs(got - p).max()))
            also = f" (or one of {len(valid) - 1} other tie-breaks)" if len(valid) > 1 else ""
            kept = int(np.count_nonzero(got))
            raise AssertionError(f"{what}: expected {fmt(closest)}{also}: the {k} entries of largest |W_j| "
                                 f"kept, the others 0; got {fmt(got)} ({kept} nonzero)")
        return got

    return call_in_layouts(submission, "project_top_k", (W, k) if pass_k else (W,), columns=(0,), check=check)


def call_soft_threshold(submission, W, tau, what: str) -> np.ndarray:
    """The student's soft_threshold(W, tau) as a vector (1-D or column layout)."""
    return call_in_layouts(submission, "soft_threshold", (W, tau), columns=(0,),
                           check=lambda value, layout: _finite(as_vector(value, W.size, what), what))


def _finite(v: np.ndarray, what: str) -> np.ndarray:
    require_finite(v, what)
    return v


def check_soft_threshold(submission, W, tau, what: str) -> None:
    """The student's soft_threshold(W, tau) equals sign(W) * max(|W| - tau, 0) entrywise."""
    expected = reference_call("reference.lab1:soft_threshold", W, tau)
    tol = operator_tolerance(W, tau)

    def check(value, layout):
        got = _finite(as_vector(value, W.size, what), what)
        bad = np.abs(got - expected) > tol
        if bad.any():
            j = int(np.argmax(bad))
            zone = ("inside [-tau, tau], so 0" if abs(W[j]) <= tau
                    else "outside [-tau, tau], so W_j moved by tau towards 0")
            raise AssertionError(f"{what}: expected {fmt(expected)}, got {fmt(got)}; entry {j} "
                                 f"(W_j = {W[j]:.6g}) is {zone}: expected {expected[j]:.6g}, "
                                 f"got {got[j]:.6g}")

    call_in_layouts(submission, "soft_threshold", (W, tau), columns=(0,), check=check)


def check_trimmed(submission, W, tau, trim, what: str, pass_trim: bool = True) -> None:
    """The student's trimmed_soft_threshold(W, tau, trim) is a valid trimmed prox of W (any
    tie-break), or is one given the student's own soft_threshold (error carried forward).
    ``pass_trim=False`` calls ``trimmed_soft_threshold(W, tau)``: ``trim`` is the default."""
    tol = operator_tolerance(W, tau)
    selections = reference_call("reference.lab1_variants:valid_selections", np.abs(W), trim, smallest=True,
                                tol=tol)
    valid = reference_call("reference.lab1_variants:all_trimmed", W, tau, trim, tol=tol)  # one per selection
    # what a failure's hint compares with, asked before the student's answer is known: the
    # student edition has only the values the solution's run asked for (grader.oracle)
    readings = _trimmed_readings(W, tau, trim, tol)
    soft_references(W.reshape(1, -1), tau)  # what carrying the student's soft_threshold forward needs

    def check(value, layout):
        got = as_vector(value, W.size, what)
        require_finite(got, what)
        if any(np.abs(got - t).max() <= tol for t in valid):
            return
        # error carried forward: right given the student's own soft_threshold (graded in (e))
        own = _carried(lambda rows: own_soft(submission, rows, tau, layout), W.reshape(1, -1), [])
        if own is not None:
            carried = [_selected(W, own[0], s) for s in selections]
            if any(np.abs(got - t).max() <= tol for t in carried):
                return
        best = min(range(len(valid)), key=lambda i: float(np.abs(got - valid[i]).max()))
        kept = [j for j in range(W.size) if j not in selections[best]]
        also = f" (or one of {len(valid) - 1} other tie-breaks)" if len(valid) > 1 else ""
        raise AssertionError(
            f"{what}: expected {fmt(valid[best])}{also}, got {fmt(got)}: the {trim} "
            f"entr{'y' if trim == 1 else 'ies'} of smallest |W_j| soft-thresholded by tau, the others "
            f"(here entries {kept}) kept as they are"
            + _trimmed_hint(readings, got, tol))

    call_in_layouts(submission, "trimmed_soft_threshold", (W, tau, trim) if pass_trim else (W, tau),
                    columns=(0,), check=check)


def _trimmed_readings(W, tau, trim, tol) -> dict[str, list[np.ndarray]]:
    """What the known wrong readings of the trimmed prox give on ``W``: hint -> outputs."""
    SW = reference_call("reference.lab1:soft_threshold", W, tau)
    largest = reference_call("reference.lab1_variants:valid_selections", np.abs(W), trim, smallest=False, tol=tol)
    return {
        "every entry was soft-thresholded; only the `trim` smallest should be": [SW],
        "the entries of largest magnitude were thresholded; threshold the smallest":
            [_selected(W, SW, s) for s in largest],
    }


def _trimmed_hint(readings: dict[str, list[np.ndarray]], got, tol) -> str:
    """A hint when exactly one known wrong reading gives ``got`` (on small inputs several may)."""
    explains = [h for h, outs in readings.items() if any(np.abs(got - o).max() <= tol for o in outs)]
    return f". Hint: {explains[0]}." if len(explains) == 1 else ""
