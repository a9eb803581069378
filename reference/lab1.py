"""Lab 1: sparse optimization of a linear model (NumPy reference).

The model is ``y ~ X W`` with the least-squares loss

    L(W) = sum_i (X_i W - y_i)^2 = ||X W - y||^2,      grad L(W) = 2 X^T (X W - y).

Every method takes full-batch steps from ``W0`` with step size ``mu`` (``lr``). Let
``V = W - mu * grad L(W)`` be the plain gradient step. Then one iteration is

    (b) plain GD           W <- V
    (c) projected GD       W <- P_k(V)            keep the k largest |V_j|, zero the rest
    (d) l1 subgradient     W <- W - mu * (grad L(W) + lambda * sign(W))      sign(0) = 0
    (e) proximal (ISTA)    W <- S_tau(V)          S_tau(v) = sign(v) * max(|v| - tau, 0)
    (f) trimmed l1 prox    W <- T_tau(V)          S_tau applied only to the `trim` entries of
                                                  V with the smallest |V_j|; others kept

Every runner returns the whole trajectory, ``W0`` included: an array of shape (steps + 1, n).
Student-facing names follow DESIGN section 2; ``trajectory`` is the grader's entry point.

>>> import numpy as np
>>> X = np.array(load().lab1.X); y = np.array(load().lab1.y)
>>> run_gd(X, y).shape
(201, 5)
>>> np.round(run_projected_gd(X, y)[-1], 6).tolist()
[0.0, -3.0, 0.0, 0.0, 1.0]
"""

# BEGIN REFERENCE ONLY
from __future__ import annotations

import numpy as np

from reference.config import Config, load

__all__ = [
    "loss",
    "gradient",
    "project_top_k",
    "soft_threshold",
    "trimmed_soft_threshold",
    "run_gd",
    "run_projected_gd",
    "run_l1_gd",
    "run_proximal_gd",
    "run_trimmed_l1",
    "trajectory",
    "METHODS",
]

_CFG = load()
# Term defaults of the student-facing signatures. `hw4grade assign` writes their values into the
# template, so the config stays the only place they are set.
LR = _CFG.lab1.lr
STEPS = _CFG.lab1.steps
K = _CFG.lab1.k
TRIM = _CFG.lab1.trim
# END REFERENCE ONLY


def loss(W, X, y):
    """Least-squares loss ``L(W) = sum_i (X_i W - y_i)^2``.

    Args:
        W: weights, shape (n,) or (n, 1).
        X: data, shape (m, n).
        y: targets, shape (m,) or (m, 1).

    Returns:
        The loss as a Python float.

    >>> loss(np.zeros(2), np.eye(2), np.array([1.0, 2.0]))
    5.0
    """
    # BEGIN SOLUTION
    # TODO: return sum_i (X_i W - y_i)^2 as a float.
    r = np.asarray(X, float) @ np.ravel(W) - np.ravel(y)
    return float(r @ r)
    # END SOLUTION


def gradient(W, X, y):
    """Gradient of the loss: ``grad L(W) = 2 X^T (X W - y)``.

    Args:
        W: weights, shape (n,) or (n, 1).
        X: data, shape (m, n).
        y: targets, shape (m,) or (m, 1).

    Returns:
        The gradient, shape (n,).

    >>> gradient(np.zeros(2), np.eye(2), np.array([1.0, 2.0])).tolist()
    [-2.0, -4.0]
    """
    # BEGIN SOLUTION
    # TODO: return 2 X^T (X W - y), shape (n,).
    X = np.asarray(X, float)
    return 2.0 * X.T @ (X @ np.ravel(W) - np.ravel(y))
    # END SOLUTION


def project_top_k(W, k=K):
    """Projection onto ``{W : ||W||_0 <= k}``: keep the k entries of largest magnitude.

    ``P_k(W)_j = W_j`` if ``|W_j|`` is among the k largest magnitudes, else 0. Ties at the k-th
    magnitude keep the lowest indices (any tie-break is a valid projection).

    Args:
        W: vector, shape (n,) or (n, 1).
        k: how many entries to keep, 0 <= k.

    Returns:
        The projected vector, shape (n,).

    >>> project_top_k(np.array([0.5, -3.0, 0.1, 2.0]), k=2).tolist()
    [0.0, -3.0, 0.0, 2.0]
    """
    # BEGIN SOLUTION
    # TODO: keep the k entries of W with the largest |W_j| and set the others to 0.
    W = np.ravel(np.asarray(W, float))
    out = np.zeros_like(W)
    keep = np.argsort(-np.abs(W), kind="stable")[: max(int(k), 0)]
    out[keep] = W[keep]
    return out
    # END SOLUTION


def soft_threshold(W, threshold):
    """Soft-thresholding, the proximal operator of ``tau * ||W||_1``.

    ``S_tau(w) = sign(w) * max(|w| - tau, 0)`` elementwise.

    Args:
        W: array of any shape.
        threshold: tau >= 0.

    Returns:
        ``S_tau(W)``, same shape as ``W``.

    >>> soft_threshold(np.array([3.0, -0.5, -2.0]), 1.0).tolist()
    [2.0, -0.0, -1.0]
    """
    # BEGIN SOLUTION
    # TODO: return sign(W) * max(|W| - threshold, 0).
    W = np.asarray(W, float)
    return np.sign(W) * np.maximum(np.abs(W) - threshold, 0.0)
    # END SOLUTION


def trimmed_soft_threshold(W, threshold, trim=TRIM):
    """Proximal operator of trimmed l1: soft-threshold only the ``trim`` smallest entries.

    ``T_tau(w)_j = S_tau(w_j)`` if ``|w_j|`` is among the ``trim`` smallest magnitudes, else
    ``w_j``. (Ties keep the lowest indices among the trimmed ones, as a stable sort does.)

    Args:
        W: vector, shape (n,) or (n, 1).
        threshold: tau >= 0.
        trim: how many of the smallest-magnitude entries are thresholded.

    Returns:
        ``T_tau(W)``, shape (n,).

    >>> trimmed_soft_threshold(np.array([3.0, -0.5, 0.2, 2.0]), 0.3, trim=2).tolist()
    [3.0, -0.2, 0.0, 2.0]
    """
    # BEGIN SOLUTION
    # TODO: soft-threshold the `trim` entries of W with the smallest |W_j|; keep the others.
    W = np.ravel(np.asarray(W, float)).copy()
    small = np.argsort(np.abs(W), kind="stable")[: max(int(trim), 0)]
    W[small] = soft_threshold(W[small], threshold)
    return W
    # END SOLUTION


def run_gd(X, y, lr=LR, steps=STEPS):
    """Plain gradient descent: ``W <- W - lr * grad L(W)`` from ``W = 0``.

    Returns:
        The trajectory, shape (steps + 1, n); row 0 is ``W0 = 0``.
    """
    # BEGIN SOLUTION
    # TODO: start from W = 0 and record W before the first step and after every step.
    return _iterate(X, y, lr, steps, lambda W, V: V)
    # END SOLUTION


def run_projected_gd(X, y, k=K, lr=LR, steps=STEPS):
    """Projected GD onto ``||W||_0 <= k``: ``W <- P_k(W - lr * grad L(W))``.

    Returns:
        The trajectory, shape (steps + 1, n).
    """
    # BEGIN SOLUTION
    # TODO: a gradient step, then project_top_k.
    return _iterate(X, y, lr, steps, lambda W, V: project_top_k(V, k))
    # END SOLUTION


def run_l1_gd(X, y, lam, lr=LR, steps=STEPS):
    """Subgradient descent on ``L(W) + lam * ||W||_1``: ``W <- W - lr (grad L(W) + lam sign(W))``.

    ``sign(0) = 0``, so the first step from ``W = 0`` is a plain gradient step.

    Returns:
        The trajectory, shape (steps + 1, n).
    """
    # BEGIN SOLUTION
    # TODO: add lam * sign(W) to the gradient before the step.
    return _iterate(X, y, lr, steps, lambda W, V: V - lr * lam * np.sign(W))
    # END SOLUTION


def run_proximal_gd(X, y, threshold, lr=LR, steps=STEPS):
    """Proximal gradient (ISTA): ``W <- S_tau(W - lr * grad L(W))`` with ``tau = threshold``.

    Returns:
        The trajectory, shape (steps + 1, n).
    """
    # BEGIN SOLUTION
    # TODO: a gradient step, then soft_threshold.
    return _iterate(X, y, lr, steps, lambda W, V: soft_threshold(V, threshold))
    # END SOLUTION


def run_trimmed_l1(X, y, threshold, trim=TRIM, lr=LR, steps=STEPS):
    """Proximal GD on trimmed l1: ``W <- T_tau(W - lr * grad L(W))``.

    Returns:
        The trajectory, shape (steps + 1, n).
    """
    # BEGIN SOLUTION
    # TODO: a gradient step, then trimmed_soft_threshold.
    return _iterate(X, y, lr, steps, lambda W, V: trimmed_soft_threshold(V, threshold, trim))
    # END SOLUTION


# BEGIN SOLUTION
def _iterate(X, y, lr, steps, update):
    """Run ``W <- update(W, W - lr * grad L(W))`` from zero; return all iterates."""
    X = np.asarray(X, float)
    y = np.ravel(np.asarray(y, float))
    W = np.zeros(X.shape[1])
    out = [W]
    for _ in range(int(steps)):
        W = np.ravel(update(W, W - lr * gradient(W, X, y)))
        out.append(W)
    return np.array(out)
# END SOLUTION


# BEGIN REFERENCE ONLY
#: method name -> (runner, name of its parameter or None)
METHODS = {
    "gd": (run_gd, None),
    "projected": (run_projected_gd, "k"),
    "l1": (run_l1_gd, "lam"),
    "proximal": (run_proximal_gd, "threshold"),
    "trimmed": (run_trimmed_l1, "threshold"),
}


def trajectory(method: str, param: float | None = None, config: Config | None = None) -> np.ndarray:
    """The reference trajectory of one Lab 1 method on the term's data.

    Args:
        method: one of ``gd``, ``projected``, ``l1``, ``proximal``, ``trimmed``.
        param: k for ``projected`` (default: the config's k), lambda for ``l1``, tau for
            ``proximal`` and ``trimmed``; must be None for ``gd``.
        config: the assignment config (default: ``load()``); supplies X, y, lr, steps, trim.

    Returns:
        Array of shape (steps + 1, n): ``W0`` then the iterate after each step.

    Raises:
        ValueError: unknown method, or a parameter missing or given where none is taken.

    >>> trajectory("projected")[-1].round(6).tolist()
    [0.0, -3.0, 0.0, 0.0, 1.0]
    """
    cfg = config or _CFG
    if method not in METHODS:
        raise ValueError(f"trajectory: method {method!r} is not one of {', '.join(METHODS)}")
    runner, pname = METHODS[method]
    c = cfg.lab1
    X, y = np.array(c.X), np.array(c.y)
    if np.any(np.array(c.W0) != 0):
        raise ValueError(f"{cfg.path}: [lab1] W0 must be zero (the runners start from W = 0)")
    if pname is None:
        if param is not None:
            raise ValueError(f"trajectory: method 'gd' takes no parameter (got {param!r})")
        return runner(X, y, lr=c.lr, steps=c.steps)
    if param is None:
        if method != "projected":
            raise ValueError(f"trajectory: method {method!r} needs its {pname} (see [lab1] in the config)")
        param = c.k
    kwargs = {pname: int(param) if pname == "k" else float(param), "lr": c.lr, "steps": c.steps}
    if method == "trimmed":
        kwargs["trim"] = c.trim
    return runner(X, y, **kwargs)
# END REFERENCE ONLY
