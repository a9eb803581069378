# %% [markdown]
# # {{TITLE}} -- Lab 1: sparse optimization of a linear model
#
# Fill in every `raise NotImplementedError`, run the notebook top to bottom, and hand it in.
# Conventions the grader relies on: `W` has shape (5,) (a (5, 1) column is accepted), `X` is
# (3, 5), `y` is (3,), every runner starts from `W = 0` and returns its whole trajectory, an
# array of shape (steps + 1, 5) whose first row is `W0`.
#
# Check your work at any time with `hw4grade check .` (public tests only).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

# %%
X = np.array(X_DATA)
y = np.array(Y_DATA)

# %% [markdown]
# ## (a) The loss, its gradient and the gradient-descent update ({{PTS_lab1.a}} pts)
#
# Derive the gradient of `L(W) = sum_i (X_i W - y_i)^2` and the update of one gradient-descent
# step with step size `lr` (write the derivation in this cell), then implement both.

# %% include: lab1 loss gradient

# %% [markdown]
# A plotting helper (given): the loss on a log scale and the trajectory of each weight.

# %%
def plot_run(trajectory, title, filename):
    """Plot log10(loss) and every weight against the step; save to figures/<filename>.png."""
    trajectory = np.asarray(trajectory).reshape(len(trajectory), -1)
    losses = [loss(W, X, y) for W in trajectory]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(np.log10(np.maximum(losses, 1e-16)))
    ax1.set_xlabel("step")
    ax1.set_ylabel("log10 loss")
    for j in range(trajectory.shape[1]):
        ax2.plot(trajectory[:, j], label="W%d" % (j + 1))
    ax2.set_xlabel("step")
    ax2.legend()
    fig.suptitle(title)
    os.makedirs("figures", exist_ok=True)
    fig.savefig(os.path.join("figures", filename + ".png"))
    plt.show()
    plt.close(fig)

# %% [markdown]
# ## (b) Plain gradient descent ({{PTS_lab1.b}} pts)

# %% include: lab1 _iterate? run_gd

# %%
plot_run(run_gd(X, y), "(b) gradient descent", "lab1_b")

# %% [markdown]
# ## (c) Projected gradient descent onto ||W||_0 <= K ({{PTS_lab1.c}} pts)

# %% include: lab1 project_top_k run_projected_gd

# %%
plot_run(run_projected_gd(X, y), "(c) projected GD, k = %d" % K, "lab1_c")

# %% [markdown]
# ## (d) l1 regularization by subgradient descent ({{PTS_lab1.d}} pts)

# %% include: lab1 run_l1_gd

# %%
for lam in LAMBDAS:
    plot_run(run_l1_gd(X, y, lam), "(d) l1 subgradient, lambda = %g" % lam, "lab1_d_%g" % lam)

# %% [markdown]
# ## (e) Proximal gradient descent with soft-thresholding ({{PTS_lab1.e}} pts)

# %% include: lab1 soft_threshold run_proximal_gd

# %%
for tau in PROX_THRESHOLDS:
    plot_run(run_proximal_gd(X, y, tau), "(e) proximal GD, tau = %g" % tau, "lab1_e_%g" % tau)

# %% [markdown]
# ## (f) Trimmed l1: soft-threshold only the TRIM smallest entries ({{PTS_lab1.f}} pts)

# %% include: lab1 trimmed_soft_threshold run_trimmed_l1

# %%
for tau in TRIMMED_THRESHOLDS:
    plot_run(run_trimmed_l1(X, y, tau), "(f) trimmed l1, tau = %g" % tau, "lab1_f_%g" % tau)
