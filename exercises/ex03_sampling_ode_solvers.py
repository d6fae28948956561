# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercises for chapter 3 — ODE solvers
#
# Three tasks: a Heun step, a classic Runge–Kutta step, and the observed
# order of a solver from its errors. The checks compare with fmlearn's
# solvers and measure the order of your steps.
#
# **Prerequisites:** chapter 3. **Run time:** a few seconds.

# %%
import fmlearn as fm  # first: it makes torch's idle CPU threads sleep (README, "Threads")
import numpy as np
import torch

from fmlearn.exercises import check_observed_order, check_step

_ = fm.seed_everything(0)  # seeds Python, NumPy and torch (it also returns a generator, unused here)

# %% [markdown]
# ## Task 1 — a Heun step (2 points)
#
# Heun's method predicts with Euler, then averages the slopes at both ends:
# $k_1 = u(x, t)$, $\hat k = u(x + h k_1, t + h)$, $x \leftarrow x + \frac h2 (k_1 + \hat k)$ (chapter 3's names).
# Write `heun_step(u, x, t, h)` (`t` and `h` are floats).

# %% nbgrader={"grade": false, "grade_id": "heun_step", "locked": false, "schema_version": 3, "solution": true, "task": false}
def heun_step(u, x, t, h):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "heun_step_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_step(heun_step, "heun")

# %% [markdown]
# ## Task 2 — a Runge–Kutta step (3 points)
#
# The classic fourth-order step evaluates the velocity four times:
# $k_1 = u(x, t)$, $k_2 = u(x + \frac h2 k_1, t + \frac h2)$,
# $k_3 = u(x + \frac h2 k_2, t + \frac h2)$, $k_4 = u(x + h k_3, t + h)$, and
# $x \leftarrow x + \frac h6 (k_1 + 2k_2 + 2k_3 + k_4)$. Write `rk4_step(u, x, t, h)`.

# %% nbgrader={"grade": false, "grade_id": "rk4_step", "locked": false, "schema_version": 3, "solution": true, "task": false}
def rk4_step(u, x, t, h):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "rk4_step_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_step(rk4_step, "rk4")

# %% [markdown]
# ## Task 3 — the observed order (2 points)
#
# A solver of order $p$ run with $n$ steps has error $e_n \approx C n^{-p}$,
# so $\log e_n \approx \log C - p \log n$: a line in log–log axes. Write
# `observed_order(steps, errors)` returning $p$ from a least-squares line
# through all the points (`np.polyfit` fits a line).

# %% nbgrader={"grade": false, "grade_id": "observed_order", "locked": false, "schema_version": 3, "solution": true, "task": false}
def observed_order(steps, errors):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "observed_order_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_observed_order(observed_order)

# %% [markdown]
# ## Your solvers on the oracle
#
# Your two steps, integrating chapter 2's exact velocity field of the
# 11-mode mixture, against a fine reference: your own observed-order
# function should find about 2 and 4.

# %%
oracle = fm.MixtureOracle(fm.GaussianMixture.symmetric_2d(), fm.AffineGaussianPath("condot"))
x0 = torch.randn(200, 2, dtype=torch.float64)
reference = fm.odeint(oracle, x0, steps=1024, method="rk4").x


def integrate(step, n):
    x = x0
    for i in range(n):
        x = step(oracle, x, i / n, 1 / n)
    return x


steps = np.array([16, 32, 64, 128])
for name, step, want in (("Heun", heun_step, 2), ("RK4", rk4_step, 4)):
    errors = np.array([float((integrate(step, n) - reference).norm(dim=1).max()) for n in steps])
    p = observed_order(steps, errors)
    print(f"{name}: errors {np.array2string(errors, precision=2)}, observed order {p:.2f}")
    assert abs(p - want) < 0.4
