"""Lab 1: answers a fair human grader accepts besides the reference (DESIGN section 3).

The grading tests accept a student's Lab 1 function when its result is one of the valid answers
written down here (within a tolerance justified by dtype), so each accepted reading of the
handout lives once, with its formula. With ``V = W - mu * grad L(W)`` the plain gradient step:

Any tie-break among equal magnitudes. ``P_k`` and the trimmed prox select entries by magnitude;
when magnitudes tie across the selection boundary, every choice is a valid projection (resp. a
valid minimiser of the trimmed-l1 proximal problem). A selection of ``count`` indices ``I`` is
valid for the keys ``a`` (``a_j = |V_j|`` or ``|W_j|``) when::

    smallest:  max_{j in I} a_j <= min_{j not in I} a_j         (largest: the reverse)

``valid_selections`` lists them; ``all_projections`` / ``all_trimmed`` give every valid answer.

Trimmed l1 with the selection made before the step (by ``|W_j|``, not ``|V_j|``)::

    I = the `trim` indices of smallest |W_j|,   W <- V with V_I replaced by S_tau(V_I)

``trimmed_soft_threshold_by`` and ``run_trimmed_l1_prestep`` implement it. (The exact proximal
operator selects by ``|V_j|``; selecting by ``|W_j|`` is the reading of students who trim the
weights that are small *now*. On the homework's data it reaches the same sparse solution.)

W of shape (5,) or (5, 1): the same numbers in another layout; the tests reshape, nothing here.
The loss logged before or after the update: it does not change the trajectory the runners return.

Not accepted (they must lose points): per-sample (not full-batch) updates, a gradient without
its factor 2, selecting by ``|grad L(W)|`` in (f), soft-thresholding every entry in (f).

>>> import numpy as np
>>> valid_selections(np.array([3.0, 1.0, 1.0, 2.0]), 1)
[(1,), (2,)]
>>> [p.tolist() for p in all_projections(np.array([2.0, -2.0, 1.0]), 1)]
[[2.0, 0.0, 0.0], [0.0, -2.0, 0.0]]
"""

from __future__ import annotations

import itertools

import numpy as np

from reference.lab1 import gradient, soft_threshold

__all__ = [
    "all_projections",
    "all_trimmed",
    "run_trimmed_l1_prestep",
    "trimmed_soft_threshold_by",
    "valid_selections",
]


def valid_selections(keys, count: int, smallest: bool = True, tol: float = 0.0) -> list[tuple[int, ...]]:
    """Every set of ``count`` indices holding the smallest (or largest) ``keys``, ties included.

    ``I`` is valid when ``max_{j in I} keys_j <= min_{j not in I} keys_j + tol`` (smallest) or
    ``min_{j in I} keys_j >= max_{j not in I} keys_j - tol`` (largest). ``tol`` widens what counts
    as a tie (a float32 computation orders values that differ by rounding either way).

    Args:
        keys: 1-D array of the values to select by (magnitudes).
        count: how many indices to select; clipped to ``[0, len(keys)]``.
        smallest: select the smallest keys (True) or the largest (False).
        tol: values within ``tol`` of each other count as tied, ``tol >= 0``.

    Returns:
        The valid index tuples (each sorted), in lexicographic order. Without ties there is one.

    Raises:
        ValueError: ``keys`` is not 1-D, or ``tol < 0``.

    >>> valid_selections(np.array([0.0, 0.0, 5.0]), 1)
    [(0,), (1,)]
    >>> valid_selections(np.array([0.0, 0.0, 5.0]), 1, smallest=False)
    [(2,)]
    """
    keys = np.asarray(keys, dtype=float)
    if keys.ndim != 1:
        raise ValueError(f"valid_selections: keys must be 1-D, got shape {keys.shape}")
    if tol < 0:
        raise ValueError(f"valid_selections: tol = {tol} must be >= 0")
    n = keys.size
    count = min(max(int(count), 0), n)
    signed = keys if smallest else -keys
    out = []
    # n is at most a few dozen in every use (Lab 1 vectors); enumerating subsets is the clearest
    # statement of "any tie-break" and cheap at that size.
    for chosen in itertools.combinations(range(n), count):
        inside = signed[list(chosen)]
        outside = np.delete(signed, list(chosen))
        if inside.size == 0 or outside.size == 0 or inside.max() <= outside.min() + tol:
            out.append(chosen)
    return out


def all_projections(W, k: int, tol: float = 0.0) -> list[np.ndarray]:
    """Every valid ``P_k(W)``: keep ``k`` entries of largest ``|W_j|`` (any tie-break), zero the rest.

    Args:
        W: vector, shape (n,) or (n, 1).
        k: how many entries to keep, ``k >= 0``.
        tol: magnitudes within ``tol`` count as tied (see :func:`valid_selections`).

    Returns:
        One array of shape (n,) per valid choice of kept entries.

    >>> [p.tolist() for p in all_projections(np.array([0.5, -3.0, 0.1, 2.0]), 2)]
    [[0.0, -3.0, 0.0, 2.0]]
    """
    W = np.ravel(np.asarray(W, dtype=float))
    out = []
    for keep in valid_selections(np.abs(W), k, smallest=False, tol=tol):
        p = np.zeros_like(W)
        p[list(keep)] = W[list(keep)]
        out.append(p)
    return out


def trimmed_soft_threshold_by(V, key, threshold: float, trim: int, select: tuple[int, ...] | None = None):
    """``S_tau`` applied to the ``trim`` entries of ``V`` with the smallest ``|key_j|``; others kept.

    ``key = V`` is the reference ``T_tau`` (the exact trimmed-l1 prox); ``key = W`` (the iterate
    before the step) is the accepted pre-step reading.

    Args:
        V: vector to threshold, shape (n,) or (n, 1).
        key: vector whose magnitudes pick the entries, same size as ``V``.
        threshold: tau >= 0.
        trim: how many entries are soft-thresholded.
        select: the chosen indices, if not the stable-sort choice (a tie-break from
            :func:`valid_selections`).

    Returns:
        Shape (n,).

    Raises:
        ValueError: ``V`` and ``key`` differ in size.

    >>> trimmed_soft_threshold_by(np.array([1.0, 2.0, 3.0]), np.array([3.0, 0.0, 1.0]), 0.5, 2).tolist()
    [1.0, 1.5, 2.5]
    """
    V = np.ravel(np.asarray(V, dtype=float)).copy()
    key = np.ravel(np.asarray(key, dtype=float))
    if key.size != V.size:
        raise ValueError(f"trimmed_soft_threshold_by: key has {key.size} entries, V has {V.size}")
    if select is None:
        select = tuple(np.argsort(np.abs(key), kind="stable")[: max(int(trim), 0)])
    idx = list(select)
    V[idx] = soft_threshold(V[idx], threshold)
    return V


def all_trimmed(V, threshold: float, trim: int, key=None, tol: float = 0.0) -> list[np.ndarray]:
    """Every valid trimmed prox of ``V``: one per tie-break of the ``trim`` smallest ``|key_j|``.

    Args:
        V: vector, shape (n,) or (n, 1).
        threshold: tau >= 0.
        trim: how many entries are soft-thresholded.
        key: the vector to select by (default ``V``: the exact prox).
        tol: magnitudes within ``tol`` count as tied.

    Returns:
        One array of shape (n,) per valid selection.

    >>> [t.tolist() for t in all_trimmed(np.array([1.0, -1.0, 4.0]), 0.5, 1)]
    [[0.5, -1.0, 4.0], [1.0, -0.5, 4.0]]
    """
    V = np.ravel(np.asarray(V, dtype=float))
    key = V if key is None else np.ravel(np.asarray(key, dtype=float))
    return [trimmed_soft_threshold_by(V, key, threshold, trim, select=s)
            for s in valid_selections(np.abs(key), trim, smallest=True, tol=tol)]


def run_trimmed_l1_prestep(X, y, threshold: float, trim: int = 3, *, lr: float = 0.02, steps: int = 200):
    """Trimmed l1 with the entries chosen before the step: ``W <- T_tau^{|W|}(W - lr grad L(W))``.

    ``I`` = the ``trim`` indices of smallest ``|W_j|`` (stable sort: lowest indices win ties,
    which matters at ``W0 = 0``, where every entry ties), then ``S_tau`` on ``V_I``.

    Args:
        X: data, shape (m, n).
        y: targets, shape (m,) or (m, 1).
        threshold: tau >= 0.
        trim: how many entries are soft-thresholded each step.
        lr: step size mu.
        steps: number of iterations.

    Returns:
        The trajectory, shape (steps + 1, n); row 0 is ``W0 = 0``.

    >>> from reference.config import load
    >>> c = load().lab1
    >>> (run_trimmed_l1_prestep(np.array(c.X), np.array(c.y), 0.1)[-1].round(6) + 0.0).tolist()
    [0.0, -3.0, 0.0, 0.0, 1.0]
    """
    X = np.asarray(X, dtype=float)
    y = np.ravel(np.asarray(y, dtype=float))
    W = np.zeros(X.shape[1])
    out = [W]
    for _ in range(int(steps)):
        W = trimmed_soft_threshold_by(W - lr * gradient(W, X, y), W, threshold, trim)
        out.append(W)
    return np.array(out)
