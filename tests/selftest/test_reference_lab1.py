"""Lab 1: the reference, its accepted variants, and the Lab 1 grading logic.

* ``reference.lab1`` against an independent computation (explicit loops over Python floats) for
  every method and parameter of the term, closed-form facts (the sparse solution W*), and
  brute-force minimisation for the two proximal operators; clear errors for a bad config.
* ``reference.lab1_variants``: the accepted readings and the "any tie-break" sets.
* ``tests/rubric/lab1_support.py`` (what the Lab 1 rubric tests use): every accepted variant
  passes and every known wrong reading fails, checked in-process with ``LocalSubmission``
  standing in for the sandbox proxy. The Lab 1 samples are graded end to end, through the
  sandbox, by ``test_samples.py``.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import reference.lab1 as ref
from grader.errors import BadReturn, MissingDefinition, StudentException
from grader.plugin import Credit
from reference import config
from reference.config import ConfigError
from reference.lab1_variants import (
    all_projections,
    all_trimmed,
    run_trimmed_l1_prestep,
    trimmed_soft_threshold_by,
    valid_selections,
)

ROOT = Path(__file__).resolve().parent.parent.parent
# The rubric tests import their helpers as top-level modules (pytest puts tests/rubric on the path
# when it collects them); do the same to test those helpers here.
if str(ROOT / "tests" / "rubric") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "rubric"))
import lab1_runs as runs  # noqa: E402
import lab1_support as sup  # noqa: E402

CFG = config.load()
L1 = CFG.lab1
X_TERM, Y_TERM = np.array(L1.X), np.array(L1.y)
W_STAR = np.array(L1.sparse_solution)
TERM_RUNS = [(m, p) for m in ("gd", "projected", "l1", "proximal", "trimmed") for p in L1.params(m)]


# ----------------------------------------------------------------------------- independent computation


def _sign(v: float) -> float:
    return 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)


def _shrink(v: float, tau: float) -> float:
    if v > tau:
        return v - tau
    if v < -tau:
        return v + tau
    return 0.0


def _pick(v: list[float], count: int, largest: bool) -> set[int]:
    """Indices of the ``count`` largest (or smallest) |v_j| by repeated scans; lowest index wins ties."""
    chosen: list[int] = []
    for _ in range(count):
        best = None
        for j, vj in enumerate(v):
            if j in chosen:
                continue
            if best is None or (abs(vj) > abs(v[best]) if largest else abs(vj) < abs(v[best])):
                best = j
        chosen.append(best)
    return set(chosen)


def loop_trajectory(method, param, X, y, lr, steps, trim):
    """Every iterate of ``method`` with explicit loops over Python floats (no numpy algebra)."""
    X = [[float(v) for v in row] for row in X]
    y = [float(v) for v in y]
    m, n = len(X), len(X[0])
    W = [0.0] * n
    rows = [W[:]]
    for _ in range(steps):
        residual = [sum(X[i][j] * W[j] for j in range(n)) - y[i] for i in range(m)]
        grad = [sum(2.0 * X[i][j] * residual[i] for i in range(m)) for j in range(n)]
        V = [W[j] - lr * grad[j] for j in range(n)]
        if method == "gd":
            W = V
        elif method == "projected":
            keep = _pick(V, int(param), largest=True)
            W = [V[j] if j in keep else 0.0 for j in range(n)]
        elif method == "l1":
            W = [W[j] - lr * (grad[j] + param * _sign(W[j])) for j in range(n)]
        elif method == "proximal":
            W = [_shrink(v, param) for v in V]
        elif method == "trimmed":
            small = _pick(V, trim, largest=False)
            W = [_shrink(V[j], param) if j in small else V[j] for j in range(n)]
        rows.append(W[:])
    return np.array(rows)


@pytest.mark.parametrize(("method", "param"), TERM_RUNS)
def test_trajectory_matches_an_independent_loop_computation(method, param):
    got = ref.trajectory(method, param)
    expected = loop_trajectory(method, param, L1.X, L1.y, L1.lr, L1.steps, L1.trim)
    assert got.shape == (L1.steps + 1, len(L1.W0))
    worst = np.abs(got - expected).max()
    assert worst <= 1e-9, f"{method} {param}: max diff {worst:.3g}"


def test_trajectory_of_projected_defaults_to_the_configs_k():
    np.testing.assert_array_equal(ref.trajectory("projected"), ref.trajectory("projected", L1.k))


def test_w_star_solves_the_homework_exactly():
    np.testing.assert_allclose(X_TERM @ W_STAR, Y_TERM, atol=1e-12)
    assert np.count_nonzero(W_STAR) == L1.k


SPARSE_RUNS = [("projected", L1.k)] + [("trimmed", t) for t in L1.trimmed_thresholds]


@pytest.mark.parametrize(("method", "param"), SPARSE_RUNS)
def test_projected_and_trimmed_reach_the_sparse_solution(method, param):
    last = ref.trajectory(method, param)[-1]
    np.testing.assert_allclose(last, W_STAR, atol=1e-6, err_msg=f"{method} {param} ends at {last}")


@pytest.mark.parametrize(("method", "param"), [("gd", None), ("l1", 2.0), ("proximal", 0.04)])
def test_the_other_methods_do_not_reach_the_sparse_solution(method, param):
    """The sanity fact is specific to (c) and (f): plain GD finds the minimum-norm solution."""
    assert np.abs(ref.trajectory(method, param)[-1] - W_STAR).max() > 0.05


# ----------------------------------------------------------------------------- proximal operators


GRID_STEP = 0.01
GRID = np.arange(-400, 401) * GRID_STEP  # [-4, 4] with 0 exactly on the grid
VALUES = st.floats(-3, 3, allow_nan=False, width=32)


def _grid_2d():
    return np.meshgrid(GRID, GRID, indexing="ij")


@given(v=arrays(np.float64, 2, elements=VALUES), tau=st.floats(0, 2, allow_nan=False))
def test_soft_threshold_is_the_l1_prox_by_grid_search(v, tau):
    """S_tau(v) = argmin_w 0.5 ||w - v||^2 + tau ||w||_1, found by brute force on a 2-D grid."""
    w1, w2 = _grid_2d()
    objective = 0.5 * ((w1 - v[0]) ** 2 + (w2 - v[1]) ** 2) + tau * (np.abs(w1) + np.abs(w2))
    prox = ref.soft_threshold(v, tau)
    at_prox = 0.5 * np.sum((prox - v) ** 2) + tau * np.sum(np.abs(prox))
    assert at_prox <= objective.min() + 1e-12, "a grid point beats soft_threshold's output"
    # The objective is 1-strongly convex and 0 is on the grid, so the grid's best point lies within
    # GRID_STEP * sqrt(2) / 2 of the true minimiser.
    best = np.unravel_index(np.argmin(objective), objective.shape)
    np.testing.assert_allclose([GRID[best[0]], GRID[best[1]]], prox, atol=GRID_STEP)


def _trimmed_objective(w: np.ndarray, v: np.ndarray, tau: float, trim: int) -> np.ndarray:
    """0.5 ||w - v||^2 + tau * (sum of the `trim` smallest |w_j|), over the last axis."""
    smallest = np.sort(np.abs(w), axis=-1)[..., :trim].sum(axis=-1)
    return 0.5 * np.sum((w - v) ** 2, axis=-1) + tau * smallest


@given(v=arrays(np.float64, 2, elements=VALUES), tau=st.floats(0, 2, allow_nan=False), trim=st.integers(0, 2))
def test_trimmed_soft_threshold_minimises_trimmed_l1_on_a_2d_grid(v, tau, trim):
    """No point of a 2-D grid has a lower trimmed-l1 prox objective than trimmed_soft_threshold(v)."""
    w1, w2 = _grid_2d()
    grid = np.stack([w1, w2], axis=-1)
    at_grid = _trimmed_objective(grid, v, tau, trim)
    out = ref.trimmed_soft_threshold(v, tau, trim)
    # The grid minimum is within 2 * GRID_STEP^2 / 8 of the true minimum (first-order terms vanish at
    # the minimiser, zeros lie on the grid), so a wrong output would show by more than that.
    assert _trimmed_objective(out, v, tau, trim) <= at_grid.min() + 1e-12


@given(v=arrays(np.float64, 5, elements=VALUES), tau=st.floats(0, 2, allow_nan=False), trim=st.integers(0, 5))
def test_trimmed_soft_threshold_minimises_trimmed_l1_by_subset_enumeration(v, tau, trim):
    """For the homework's size (n = 5): min_w = min over the `trim`-subsets S of a separable problem,
    each coordinate minimised on a fine 1-D grid; the reference attains that minimum."""
    line = np.arange(-40000, 40001) * 1e-4
    penalised = [np.min(0.5 * (line - vj) ** 2 + tau * np.abs(line)) for vj in v]
    free = [np.min(0.5 * (line - vj) ** 2) for vj in v]
    brute = min(sum(penalised[j] if j in subset else free[j] for j in range(5))
                for subset in itertools.combinations(range(5), trim))
    out = ref.trimmed_soft_threshold(v, tau, trim)
    assert _trimmed_objective(out, v, tau, trim) <= brute + 1e-12


# ----------------------------------------------------------------------------- config errors


def _term(tmp_path, **replacements) -> config.Config:
    text = config.DEFAULT_PATH.read_text()
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "term.toml"
    path.write_text(text)
    return config.load(path)


@pytest.mark.parametrize(("args", "message"), [
    (("sgd",), "method 'sgd' is not one of gd, projected, l1, proximal, trimmed"),
    (("gd", 0.1), "method 'gd' takes no parameter"),
    (("l1",), "method 'l1' needs its lam"),
    (("proximal",), "method 'proximal' needs its threshold"),
])
def test_trajectory_rejects_bad_arguments_with_a_clear_message(args, message):
    with pytest.raises(ValueError, match=message):
        ref.trajectory(*args)


def test_nonzero_w0_in_the_config_is_refused_naming_the_file(tmp_path):
    cfg = _term(tmp_path, **{"W0 = [0.0, 0.0, 0.0, 0.0, 0.0]": "W0 = [0.0, 1.0, 0.0, 0.0, 0.0]"})
    with pytest.raises(ValueError, match=r"term\.toml: \[lab1\] W0 must be zero"):
        ref.trajectory("gd", config=cfg)


def test_x_rows_that_do_not_match_w0_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"\[lab1\] X must be 3 rows of 5 values"):
        _term(tmp_path, **{"[-1.0, 0.0, 2.0, 2.0, 1.0]]": "[-1.0, 0.0, 2.0, 2.0]]"})


def test_another_terms_step_size_and_steps_flow_into_the_trajectory(tmp_path):
    cfg = _term(tmp_path, **{"lr = 0.02": "lr = 0.01", "steps = 200": "steps = 50"})
    got = ref.trajectory("l1", 0.5, config=cfg)
    np.testing.assert_allclose(got, loop_trajectory("l1", 0.5, L1.X, L1.y, 0.01, 50, L1.trim), atol=1e-9)


# ----------------------------------------------------------------------------- accepted variants


def test_valid_selections_lists_every_tie_break():
    keys = np.array([3.0, 1.0, 1.0, 2.0])
    assert valid_selections(keys, 1) == [(1,), (2,)]
    assert valid_selections(keys, 2) == [(1, 2)]
    assert valid_selections(keys, 3) == [(1, 2, 3)]
    assert valid_selections(keys, 1, smallest=False) == [(0,)]
    assert valid_selections(keys, 3, smallest=False) == [(0, 1, 3), (0, 2, 3)]


def test_valid_selections_edges_and_tolerance():
    keys = np.array([1.0, 1.0 + 1e-9, 5.0])
    assert valid_selections(keys, 1) == [(0,)]
    assert valid_selections(keys, 1, tol=1e-6) == [(0,), (1,)]
    assert valid_selections(keys, 0) == [()]
    assert valid_selections(keys, 7) == [(0, 1, 2)]
    with pytest.raises(ValueError, match="keys must be 1-D"):
        valid_selections(np.ones((2, 2)), 1)
    with pytest.raises(ValueError, match="tol = -1 must be >= 0"):
        valid_selections(keys, 1, tol=-1)


# float32 values plus a few fixed ones drawn often, so that magnitudes tie
SMALL_VECTORS = st.lists(st.one_of(VALUES, st.sampled_from([0.0, 1.0, -1.0])), min_size=1, max_size=7).map(
    np.array)


@given(W=SMALL_VECTORS, data=st.data())
def test_all_projections_are_exactly_the_valid_top_k_choices(W, data):
    k = data.draw(st.integers(0, W.size))
    projections = all_projections(W, k)
    assert any(np.array_equal(p, ref.project_top_k(W, k)) for p in projections)
    for p in projections:
        kept = np.flatnonzero(p != 0)
        assert len(kept) <= k
        np.testing.assert_array_equal(p[kept], W[kept])
        dropped = np.abs(W[p == 0])
        if len(kept) and dropped.size:
            assert np.abs(W[kept]).min() >= dropped.max()


@given(W=SMALL_VECTORS, tau=st.floats(0, 3, allow_nan=False), data=st.data())
def test_trimmed_by_own_magnitudes_is_the_reference_trimmed_prox(W, tau, data):
    trim = data.draw(st.integers(0, W.size))
    expected = ref.trimmed_soft_threshold(W, tau, trim)
    np.testing.assert_array_equal(trimmed_soft_threshold_by(W, W, tau, trim), expected)
    assert any(np.array_equal(t, ref.trimmed_soft_threshold(W, tau, trim)) for t in all_trimmed(W, tau, trim))


def test_trimmed_by_another_key_thresholds_the_entries_that_key_picks():
    out = trimmed_soft_threshold_by(np.array([1.0, 2.0, 3.0]), np.array([3.0, 0.0, 1.0]), 0.5, 2)
    np.testing.assert_array_equal(out, [1.0, 1.5, 2.5])
    with pytest.raises(ValueError, match="key has 2 entries, V has 3"):
        trimmed_soft_threshold_by(np.ones(3), np.ones(2), 0.5, 1)


@pytest.mark.parametrize("tau", L1.trimmed_thresholds)
def test_prestep_trimmed_variant_reaches_w_star_by_another_path(tau):
    variant = run_trimmed_l1_prestep(X_TERM, Y_TERM, tau, L1.trim, lr=L1.lr, steps=L1.steps)
    assert variant.shape == (L1.steps + 1, 5) and not variant[0].any()
    np.testing.assert_allclose(variant[-1], W_STAR, atol=1e-6)
    # a genuinely different reading (not a relabelling of the reference): the paths differ
    assert np.abs(variant - ref.trajectory("trimmed", tau)).max() > 1e-3


# ----------------------------------------------------------------------------- grading logic


class LocalSubmission:
    """The call proxy's interface (``call``, ``call_many``, ``has``) over local functions.
    ``batch`` replaces a function for ``call_many`` only: a student function that answers a
    batch otherwise than a single call."""

    def __init__(self, batch=None, **functions):
        self.functions = functions
        self.batch = batch or {}

    def has(self, name):
        return name in self.functions

    def call(self, name, *args, **kwargs):
        if name not in self.functions:
            raise MissingDefinition(f"`{name}` is not defined", function=name)
        try:
            return self.functions[name](*args, **kwargs)
        except Exception as exc:  # a student's exception of any kind
            raise StudentException(f"{type(exc).__name__}: {exc}", function=name) from None

    def call_many(self, name, calls):
        if name in self.batch:
            return [self.batch[name](*args) for args in calls]
        return [self.call(name, *args) for args in calls]

    def probe(self, probe, name, **kwargs):  # the batch of the grader before issue 14
        assert probe == "lab1_map"
        return {"values": self.call_many(name, kwargs["calls"])}


def run_local(update, X, y, lr, steps, *, grad=ref.gradient, per_sample=False, dtype=np.float64):
    """A student's runner: ``W <- update(W, V, G)`` with ``V = W - lr * G`` from zero."""
    X, y = np.asarray(X, dtype), np.ravel(y).astype(dtype)
    W = np.zeros(X.shape[1], dtype)
    rows = [W]
    for _ in range(steps):
        if per_sample:
            V = W
            for i in range(len(y)):
                V = V - dtype(lr) * grad(V, X[i:i + 1], y[i:i + 1]).astype(dtype)
            G = (W - V) / lr
        else:
            G = grad(W, X, y).astype(dtype)
            V = (W - dtype(lr) * G).astype(dtype)
        W = np.asarray(update(W, V, G), dtype)
        rows.append(W)
    return np.array(rows)


def _float32_runner(method: str):
    """A runner of ``method`` computed entirely in float32 (as a torch.float32 hand-in would)."""
    f = np.float32

    def soft(V, tau):
        return (np.sign(V) * np.maximum(np.abs(V) - f(tau), f(0))).astype(f)

    def step(W, V, param, trim):
        if method == "projected":
            out = np.zeros_like(V)
            keep = np.argsort(-np.abs(V), kind="stable")[:int(param)]
            out[keep] = V[keep]
            return out
        if method == "l1":
            return V - f(0.02) * f(param) * np.sign(W)
        if method == "proximal":
            return soft(V, param)
        if method == "trimmed":
            out = V.copy()
            small = np.argsort(np.abs(V), kind="stable")[:trim]
            out[small] = soft(V[small], param)
            return out
        return V

    def run(X, y, param=None, trim=3, lr=0.02, steps=200, k=2):
        param = k if method == "projected" else param
        return run_local(lambda W, V, G: step(W, V, param, trim), X, y, lr, steps,
                         grad=lambda W, X, y: 2 * X.T @ (X @ W - y), dtype=f)

    return run


def _stable_top(V, k):
    return ref.project_top_k(V, k)


def _last_index_top(V, k):
    """P_k with the highest index winning ties (another valid tie-break)."""
    order = np.argsort(-np.abs(V[::-1]), kind="stable")[:k]
    out = np.zeros_like(V)
    keep = V.size - 1 - order
    out[keep] = V[keep]
    return out


def updates(method, p, trim=L1.trim, lr=L1.lr, soft=ref.soft_threshold):
    """The reference update of each method as ``update(W, V, G)``."""
    return {
        "gd": lambda W, V, G: V,
        "projected": lambda W, V, G: _stable_top(V, int(p)),
        "l1": lambda W, V, G: V - lr * p * np.sign(W),
        "proximal": lambda W, V, G: soft(V, p),
        "trimmed": lambda W, V, G: _trim_with(V, V, p, trim, soft),
    }[method]


def _trim_with(V, key, tau, trim, soft=ref.soft_threshold, last_on_ties=False, largest=False):
    """S_tau on the `trim` entries of V with the smallest (or largest) |key_j|; the others kept."""
    idx = np.argsort(-np.abs(key) if largest else np.abs(key), kind="stable")
    if last_on_ties:
        idx = key.size - 1 - np.argsort(np.abs(key[::-1]), kind="stable")
    out = V.copy()
    out[idx[:trim]] = soft(V[idx[:trim]], tau)
    return out


def _run(method, p):
    trim = L1.trim if method == "trimmed" else None
    return sup.Run(method, X_TERM, Y_TERM, L1.lr, L1.steps, param=p, trim=trim)


def _traj(method, p, update=None, **kw):
    return run_local(update or updates(method, p), X_TERM, Y_TERM, L1.lr, L1.steps, **kw)


@pytest.mark.parametrize(("method", "param"), TERM_RUNS)
def test_grading_accepts_the_reference_and_a_float32_run(method, param):
    assert sup.check_run(_run(method, param), ref.trajectory(method, param)) is None
    float32 = _traj(method, param, dtype=np.float32)
    assert np.abs(float32 - ref.trajectory(method, param)).max() > 1e-9  # it really did round
    assert sup.check_run(_run(method, param), float32.astype(float)) is None


@pytest.mark.parametrize("tau", L1.trimmed_thresholds)
@pytest.mark.parametrize("last_on_ties", [False, True])
def test_grading_accepts_prestep_selection_with_any_tie_break_at_w0(tau, last_on_ties):
    """At W0 = 0 all five entries tie by |W|: whichever three a student picks, the run is valid."""
    traj = _traj("trimmed", tau, lambda W, V, G: _trim_with(V, W, tau, 3, last_on_ties=last_on_ties))
    assert sup.check_run(_run("trimmed", tau), traj) is None


def test_grading_accepts_any_tie_break_of_the_projection():
    X = np.array([[1.0, 1.0, 0.0, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0, 0.0]])
    y = np.array([2.0, 1.0, 2.0])  # columns 0 and 1 are equal: their steps tie
    runs = [run_local(lambda W, V, G, f=f: f(V, 1), X, y, 0.05, 20) for f in (_stable_top, _last_index_top)]
    assert np.abs(runs[0] - runs[1]).max() > 0.1  # the tie-breaks lead to different paths
    for traj in runs:
        assert sup.check_run(sup.Run("projected", X, y, 0.05, 20, param=1), traj) is None


def _keep_smallest(V, k):
    """The wrong projection: keep the k entries of *smallest* magnitude."""
    keep = np.argsort(np.abs(V), kind="stable")[:k]
    out = np.zeros_like(V)
    out[keep] = V[keep]
    return out


def _half_gradient(W, X, y):
    return ref.gradient(W, X, y) / 2


WRONG_READINGS = [
    *[(m, p, "per-sample updates", {"per_sample": True}) for m, p in TERM_RUNS],
    *[(m, p, "missing factor 2", {"grad": _half_gradient}) for m, p in TERM_RUNS],
    ("projected", 2.0, "keeps the smallest", {"update": lambda W, V, G: _keep_smallest(V, 2)}),
    *[("l1", lam, "sign(0) = 1",
       {"update": lambda W, V, G, lam=lam: V - L1.lr * lam * np.where(W >= 0, 1.0, -1.0)})
      for lam in L1.lambdas],
    *[("l1", lam, "lam sign(W) without lr", {"update": lambda W, V, G, lam=lam: V - lam * np.sign(W)})
      for lam in L1.lambdas],
    *[("proximal", t, "threshold lr * tau", {"update": lambda W, V, G, t=t: ref.soft_threshold(V, L1.lr * t)})
      for t in L1.prox_thresholds],
    *[("trimmed", t, "selects by |gradient|", {"update": lambda W, V, G, t=t: _trim_with(V, G, t, 3)})
      for t in L1.trimmed_thresholds],
    *[("trimmed", t, "soft-thresholds all", {"update": lambda W, V, G, t=t: ref.soft_threshold(V, t)})
      for t in L1.trimmed_thresholds],
    *[("trimmed", t, "trims the largest",
       {"update": lambda W, V, G, t=t: _trim_with(V, V, t, 3, largest=True)}) for t in L1.trimmed_thresholds],
]


@pytest.mark.parametrize(("method", "param", "reading", "how"), WRONG_READINGS,
                         ids=[f"{m}-{p}-{r}" for m, p, r, _ in WRONG_READINGS])
def test_grading_rejects_each_known_wrong_reading(method, param, reading, how):
    how = dict(how)
    traj = _traj(method, param, how.pop("update", None), **how)
    # the student's own gradient is the correct one: error carried forward must not excuse this
    def right_gradient(rows):
        return np.array([ref.gradient(W, X_TERM, Y_TERM) for W in rows])

    div = sup.check_run(_run(method, param), traj, student_gradient=right_gradient,
                        student_soft=lambda V: ref.soft_threshold(V, param))
    assert div is not None, f"{method} {param}: {reading} was accepted"
    assert div.row >= 1


@pytest.mark.parametrize(("method", "param"), TERM_RUNS)
def test_error_carried_forward_accepts_a_run_right_given_the_students_gradient(method, param):
    traj = _traj(method, param, grad=_half_gradient)
    own = lambda rows: np.array([_half_gradient(W, X_TERM, Y_TERM) for W in rows])  # noqa: E731
    assert sup.check_run(_run(method, param), traj, student_gradient=own) is None
    assert sup.check_run(_run(method, param), traj) is not None


@pytest.mark.parametrize("tau", L1.trimmed_thresholds)
def test_error_carried_forward_accepts_trimmed_right_given_the_students_soft_threshold(tau):
    def double(V, t):
        return ref.soft_threshold(V, 2 * t)

    traj = _traj("trimmed", tau, updates("trimmed", tau, soft=double))
    assert sup.check_run(_run("trimmed", tau), traj, student_soft=lambda V: double(V, tau)) is None
    right = sup.check_run(_run("trimmed", tau), traj, student_soft=lambda V: ref.soft_threshold(V, tau))
    assert right is not None


@pytest.mark.parametrize(("method", "param", "how", "hint"), [
    ("gd", None, {"per_sample": True}, "one step per sample"),
    ("gd", None, {"grad": _half_gradient}, "factor 2"),
    ("l1", 1.0, {"update": lambda W, V, G: V - L1.lr * np.where(W >= 0, 1.0, -1.0)}, "sign(0) = +1"),
    ("trimmed", 0.1, {"update": lambda W, V, G: ref.soft_threshold(V, 0.1)},
     "every entry was soft-thresholded"),
    ("trimmed", 0.1, {"update": lambda W, V, G: _trim_with(V, G, 0.1, 3)}, "selected by |grad L(W)|"),
])
def test_a_wrong_run_gets_a_hint_naming_the_mistake(method, param, how, hint):
    how = dict(how)
    traj = _traj(method, param, how.pop("update", None), **how)
    div = sup.check_run(_run(method, param), traj)
    message = div.message("run_x(X, y)", _run(method, param))
    assert hint in message and "expected row" in message and "your row" in message


def test_row_zero_must_be_w0():
    traj = ref.trajectory("gd").copy()
    traj[0] = 0.1
    div = sup.check_run(_run("gd", None), traj)
    assert div.row == 0 and "W0 = 0" in div.message("run_gd(X, y)", _run("gd", None))


# ----------------------------------------------------------------------------- via the proxy's interface


def _column_runner(X, y, lr=0.02, steps=200):
    """A column-vector student: with 1-D y its residual broadcasts to (3, 3) and the stack fails."""
    W = np.zeros((X.shape[1], 1))
    rows = [W]
    for _ in range(steps):
        W = W - lr * 2 * X.T @ (X @ W - y)
        rows.append(W)
    return np.array(rows)


def test_check_runner_retries_a_column_vector_student_with_columns():
    with pytest.raises(ValueError):
        _column_runner(X_TERM, Y_TERM)  # the 1-D call really fails
    sub = LocalSubmission(run_gd=_column_runner)
    sup.check_runner(sub, _run("gd", None), (X_TERM, Y_TERM), {}, "run_gd(X, y)")


def test_check_runner_reports_a_missing_w0_as_a_bad_return_with_a_hint():
    sub = LocalSubmission(run_gd=lambda X, y: ref.run_gd(X, y)[1:])
    with pytest.raises(BadReturn, match=r"include W0 as the first row"):
        sup.check_runner(sub, _run("gd", None), (X_TERM, Y_TERM), {}, "run_gd(X, y)")


def test_a_runner_returning_trajectory_and_losses_is_graded_on_its_trajectory():
    traj = ref.trajectory("gd")
    losses = [ref.loss(W, X_TERM, Y_TERM) for W in traj[1:]]  # logged after each update
    sub = LocalSubmission(run_gd=lambda X, y: (traj, losses))
    sup.check_runner(sub, _run("gd", None), (X_TERM, Y_TERM), {}, "run_gd(X, y)")
    rows = tuple(ref.run_gd(X_TERM, Y_TERM, steps=1))  # a 1-step trajectory as a tuple of two rows
    np.testing.assert_array_equal(sup.as_run_trajectory(rows, 1, 5, "run_gd"), np.array(rows))
    with pytest.raises(BadReturn, match=r"expected \(201, 5\)"):
        sup.as_run_trajectory((traj[1:], losses), L1.steps, 5, "run_gd")


def test_check_runner_carries_the_students_gradient_forward():
    def gradient(W, X, y):
        return X.T @ (X @ np.ravel(W) - np.ravel(y))

    def run_gd(X, y, lr=0.02, steps=200):
        return run_local(lambda W, V, G: V, X, y, lr, steps, grad=gradient)

    sup.check_runner(LocalSubmission(run_gd=run_gd, gradient=gradient), _run("gd", None),
                     (X_TERM, Y_TERM), {}, "run_gd(X, y)")
    with pytest.raises(AssertionError, match="factor 2"):
        sup.check_runner(LocalSubmission(run_gd=run_gd, gradient=ref.gradient), _run("gd", None),
                         (X_TERM, Y_TERM), {}, "run_gd(X, y)")


def test_each_parameter_right_earns_its_share():
    def run_l1_gd(X, y, lam, lr=0.02, steps=200):
        lam_used = lam if lam <= 0.5 else 0.0  # wrong for the two larger lambdas
        return ref.run_l1_gd(X, y, lam_used, lr=lr, steps=steps)

    credit = Credit()
    with pytest.raises(AssertionError, match="2 of 4 parameter values right"):
        runs.grade_each_parameter(LocalSubmission(run_l1_gd=run_l1_gd), credit, "l1", X_TERM, Y_TERM, CFG)
    assert credit.fraction == 0.5


def test_a_run_right_only_by_the_students_own_gradient_fails_but_keeps_its_points():
    """The public runner test's verdict is the strict one (the student edition cannot carry an
    error forward); the full edition gives the points back and says why."""
    def gradient(W, X, y):
        return X.T @ (X @ np.ravel(W) - np.ravel(y))  # the factor 2 is missing: graded in (a)

    def run_gd(X, y, lr=0.02, steps=200):
        return run_local(lambda W, V, G: V, X, y, lr, steps, grad=gradient)

    credit = Credit()
    with pytest.raises(AssertionError, match=r"(?s)factor 2.*still earn their points.*error carried forward"):
        runs.grade_each_parameter(LocalSubmission(run_gd=run_gd, gradient=gradient), credit, "gd", X_TERM,
                                  Y_TERM, CFG)
    assert credit.fraction == 1.0


def test_the_student_edition_judges_the_same_run_strictly_without_credit(monkeypatch):
    def gradient(W, X, y):
        return X.T @ (X @ np.ravel(W) - np.ravel(y))

    def run_gd(X, y, lr=0.02, steps=200):
        return run_local(lambda W, V, G: V, X, y, lr, steps, grad=gradient)

    monkeypatch.setattr(runs, "current", lambda: "student")
    credit = Credit()
    with pytest.raises(AssertionError, match="factor 2") as failure:
        runs.grade_each_parameter(LocalSubmission(run_gd=run_gd, gradient=gradient), credit, "gd", X_TERM,
                                  Y_TERM, CFG)
    assert "still earn" not in str(failure.value)
    assert credit.fraction == 0.0


@pytest.mark.parametrize("method", ["gd", "projected", "l1", "proximal", "trimmed"])
def test_float32_runners_stay_within_the_recorded_runs_budget(method):
    """A float32 implementation drifts from the float64 reference run; the accumulated step
    tolerance must absorb that on every parameter of the term."""
    submission = LocalSubmission(**{sup.RUNNERS[method]: _float32_runner(method)})
    runs.grade_each_parameter(submission, Credit(), method, X_TERM, Y_TERM, CFG)


def _column_loss(W, X, y):
    r = X @ W - y
    return (r.T @ r)[0, 0]


@pytest.mark.parametrize(("functions", "check", "args", "error"), [
    ({"loss": ref.loss}, sup.check_loss, (X_TERM, Y_TERM, np.ones(5)), None),
    ({"loss": _column_loss}, sup.check_loss, (X_TERM, Y_TERM, np.ones(5)), None),
    ({"loss": lambda W, X, y: ref.loss(W, X, y) / 3}, sup.check_loss, (X_TERM, Y_TERM, np.ones(5)), "mean"),
    ({"gradient": _half_gradient}, sup.check_gradient, (X_TERM, Y_TERM, np.ones(5)), "factor 2 missing"),
    ({"gradient": lambda W, X, y: -ref.gradient(W, X, y)}, sup.check_gradient, (X_TERM, Y_TERM, np.ones(5)),
     "opposite sign"),
], ids=["reference loss", "column loss", "mean loss", "half gradient", "negated gradient"])
def test_loss_and_gradient_checks(functions, check, args, error):
    sub = LocalSubmission(**functions)
    if error is None:
        check(sub, *args, "call")
    else:
        with pytest.raises(AssertionError, match=error):
            check(sub, *args, "call")


def _argpartition_top(W, k=2):
    W = np.ravel(W).astype(float)
    out = np.zeros_like(W)
    if k > 0:
        keep = np.argpartition(np.abs(W), -k)[-k:]
        out[keep] = W[keep]
    return out


def _argpartition_trimmed(W, threshold, trim=3):
    W = np.ravel(W).astype(float).copy()
    if trim > 0:
        small = np.argpartition(np.abs(W), trim - 1)[:trim]
        W[small] = ref.soft_threshold(W[small], threshold)
    return W


TIES = np.array([1.0, -1.0, 1.0, 0.5, -1.0, 2.0])


def test_operator_checks_accept_other_tie_breaks_and_styles():
    for k in range(7):
        sup.check_projection(LocalSubmission(project_top_k=_argpartition_top), TIES, k, "p")
        sup.check_projection(LocalSubmission(project_top_k=_last_index_top), TIES, k, "p")
    clip = LocalSubmission(soft_threshold=lambda W, t: W - np.clip(W, -t, t))
    sup.check_soft_threshold(clip, TIES, 0.75, "s")
    for trim in range(7):
        sup.check_trimmed(LocalSubmission(trimmed_soft_threshold=_argpartition_trimmed), TIES, 0.3, trim, "t")


def test_operator_checks_reject_the_known_mistakes():
    with pytest.raises(AssertionError, match="largest"):
        sup.check_projection(LocalSubmission(project_top_k=_keep_smallest), TIES, 2, "keeps the smallest")
    with pytest.raises(AssertionError, match="outside"):
        sup.check_soft_threshold(LocalSubmission(soft_threshold=lambda W, t: ref.soft_threshold(W, 2 * t)),
                                 TIES, 0.25, "2 tau")
    everything = LocalSubmission(trimmed_soft_threshold=lambda W, t, trim: ref.soft_threshold(W, t),
                                 soft_threshold=ref.soft_threshold)
    with pytest.raises(AssertionError, match="every entry was soft-thresholded"):
        sup.check_trimmed(everything, np.array([3.0, -0.5, 0.2, 2.0]), 0.3, 2, "all")
    largest = LocalSubmission(
        trimmed_soft_threshold=lambda W, t, trim: _trim_with(W, W, t, trim, largest=True))
    with pytest.raises(AssertionError, match="largest magnitude"):
        sup.check_trimmed(largest, np.array([3.0, -0.5, 0.2, 2.0]), 0.3, 2, "largest")


def test_trimmed_check_carries_the_students_soft_threshold_forward():
    def soft(W, t):
        return ref.soft_threshold(W, 2 * t)

    def trimmed(W, t, trim=3):
        return _trim_with(np.asarray(W, float), np.asarray(W, float), t, trim, soft)

    W = np.array([3.0, -0.5, 0.2, 2.0, 0.9])
    sup.check_trimmed(LocalSubmission(trimmed_soft_threshold=trimmed, soft_threshold=soft), W, 0.3, 3, "t")
    with pytest.raises(AssertionError):
        sup.check_trimmed(LocalSubmission(trimmed_soft_threshold=trimmed, soft_threshold=ref.soft_threshold),
                          W, 0.3, 3, "t")


# ----------------------------------------------------------------------------- error carried forward pays for work only


def _zeros_runner(X, y, lr=0.02, steps=200):
    return np.zeros((steps + 1, np.shape(X)[1]))


def _half_runner(X, y, lr=0.02, steps=200):
    return run_local(lambda W, V, G: V, X, y, lr, steps, grad=_half_gradient)


def test_a_zero_gradient_never_excuses_a_runner_that_does_nothing():
    """Issue 14: with gradient = 0, zeros are a valid run of every method; they earn nothing."""
    sub = LocalSubmission(run_gd=_zeros_runner, gradient=lambda W, X, y: np.zeros(np.size(W)))
    with pytest.raises(AssertionError, match="returns zeros"):
        sup.check_runner(sub, _run("gd", None), (X_TERM, Y_TERM), {}, "run_gd(X, y)")


def test_a_gradient_that_is_zero_at_w0_excuses_no_run_that_stays_there():
    """A gradient that forgot y (2 X^T X W) is 0 at W0: zeros are "right given it", yet no work."""
    def forgot_y(W, X, y):
        X = np.asarray(X, float)
        return 2.0 * X.T @ (X @ np.ravel(W))

    sub = LocalSubmission(run_gd=_zeros_runner, gradient=forgot_y)
    with pytest.raises(AssertionError, match="never moves from W0 = 0, where your gradient is 0"):
        sup.check_runner(sub, _run("gd", None), (X_TERM, Y_TERM), {}, "run_gd(X, y)")


def test_a_run_that_a_threshold_keeps_at_w0_is_still_carried_forward():
    """Half the gradient, thresholded by a large tau: the student's own iteration stays at W0 (the
    step is nonzero, the threshold zeroes it). That run did the work and is right given it."""
    tau = 0.45  # above half the first step (0.3 at most), below the whole one (0.6)
    traj = _traj("proximal", tau, grad=_half_gradient)
    assert not traj.any() and sup.check_run(_run("proximal", tau), traj) is not None
    own = lambda rows: np.array([_half_gradient(W, X_TERM, Y_TERM) for W in rows])  # noqa: E731
    assert sup.check_run(_run("proximal", tau), traj, student_gradient=own) is None


def test_a_gradient_that_answers_a_batch_otherwise_excuses_nothing():
    """Issue 14's forger: right to single calls (the gradient tests), half the gradient to the
    batch that checks a runner with it; its half-step runner gets no credit."""
    sub = LocalSubmission(run_gd=_half_runner, gradient=ref.gradient, batch={"gradient": _half_gradient})
    with pytest.raises(AssertionError, match="gave other values for the same arguments"):
        sup.check_runner(sub, _run("gd", None), (X_TERM, Y_TERM), {}, "run_gd(X, y)")
    honest = LocalSubmission(run_gd=_half_runner, gradient=_half_gradient)
    sup.check_runner(honest, _run("gd", None), (X_TERM, Y_TERM), {}, "run_gd(X, y)")


@pytest.mark.parametrize(("gradient", "why"), [
    (lambda W, X, y: np.zeros(np.size(W)), "returns zeros"),
    (lambda W, X, y: np.full(np.size(W), -2.0), "does not change with W"),
    (lambda W, X, y: -2.0 * np.asarray(X, float).T @ np.ravel(y), "does not change with W"),
    (lambda W, X, y: np.ravel(W) - np.array([1.0, -3.0, 0.0, 0.0, 1.0]), "does not change with X and y"),
])
def test_a_degenerate_gradient_excuses_nothing(gradient, why):
    """A gradient that ignores W or the data (a constant, zeros, W - c) cannot carry a runner."""
    def runner(X, y, lr=0.02, steps=200):
        return run_local(lambda W, V, G: V, X, y, lr, steps, grad=gradient)

    with pytest.raises(sup.NotCarried, match=why):
        sup.own_gradient(LocalSubmission(gradient=gradient), _run("gd", None), runner(X_TERM, Y_TERM)[:-1], "row")
    traj = runner(X_TERM, Y_TERM)
    if np.ptp(traj, axis=0).max() > 0:
        with pytest.raises(AssertionError, match="Not excused by your own functions"):
            sup.check_runner(LocalSubmission(run_gd=runner, gradient=gradient), _run("gd", None),
                             (X_TERM, Y_TERM), {}, "run_gd(X, y)")


def test_a_trivial_soft_threshold_excuses_neither_trimmed_runs_nor_the_trimmed_prox():
    """soft_threshold returning its input would make plain gradient steps "right given it" in (f)."""
    def identity(W, t):
        return np.ravel(np.asarray(W, float))

    rows = ref.trajectory("trimmed", 0.1)[:-1] - L1.lr * np.array(
        [ref.gradient(W, X_TERM, Y_TERM) for W in ref.trajectory("trimmed", 0.1)[:-1]])
    with pytest.raises(sup.NotCarried, match="input unchanged"):
        sup.own_soft(LocalSubmission(soft_threshold=identity), rows, 0.1, "row")
    with pytest.raises(AssertionError):
        sup.check_trimmed(LocalSubmission(trimmed_soft_threshold=lambda W, t, trim=3: np.ravel(W),
                                          soft_threshold=identity), np.array([3.0, -0.5, 0.2, 2.0]), 0.3, 2, "t")
    ignores_tau = LocalSubmission(soft_threshold=lambda W, t: ref.soft_threshold(np.ravel(W), 0.05))
    with pytest.raises(sup.NotCarried, match="does not change with the threshold"):
        sup.own_soft(ignores_tau, rows, 0.1, "row")
