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
# # Exercises for chapter 2 — probability paths
#
# Three tasks: the exact marginal velocity of a Gaussian target, the marginal
# velocity of a mixture (the "oracle" of chapter 2), both written by hand,
# and a numerical test of the continuity equation, which says that a velocity
# carries a path of densities along. After each task, run the check cell
# below it.
#
# **Prerequisites:** chapter 2. **Run time:** a few seconds.

# %%
import math

import fmlearn as fm  # first: it makes torch's idle CPU threads sleep (README, "Threads")
import torch

from fmlearn.exercises import check_continuity_residual, check_gaussian_velocity, check_mixture_velocity

_ = fm.seed_everything(0)  # seeds Python, NumPy and torch (it also returns a generator, unused here)

# %% [markdown]
# ## Task 1 — the marginal velocity of a Gaussian target (3 points)
#
# Source $\mathcal N(0, I)$, target $\mathcal N(m, s^2 I)$, CondOT path
# $x_t = t\,x_1 + (1 - t)\,x_0$. Then $x_t \sim \mathcal N(t m, \sigma_t^2 I)$
# with $\sigma_t^2 = t^2 s^2 + (1 - t)^2$, and the flow that carries these
# Gaussians into each other moves each point affinely:
# $u_t(x) = \frac{d}{dt}(t m) + \frac{\dot\sigma_t}{\sigma_t}\,(x - t m)$.
# Work out $\dot\sigma_t / \sigma_t$ and write `velocity(x, t, m, s)` for
# `x` of shape `(n, d)`, `t` a float, `m` of shape `(d,)`, `s` a float.

# %% nbgrader={"grade": false, "grade_id": "gaussian_velocity", "locked": false, "schema_version": 3, "solution": true, "task": false}
def velocity(x, t, m, s):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "gaussian_velocity_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_gaussian_velocity(velocity)

# %% [markdown]
# ## Task 2 — the marginal velocity of a mixture (3 points)
#
# For the target $\sum_k w_k \mathcal N(m_k, s^2 I)$ the marginal velocity is
# the average of the components' velocities (task 1), each weighted by the
# posterior probability that $x_t = x$ came from component $k$:
# $r_k(x) \propto w_k\, \mathcal N(x;\, t m_k, \sigma_t^2 I)$. Write
# `mixture_velocity(x, t, means, s, weights)` (`means` of shape `(K, d)`,
# `weights` of shape `(K,)`). Work in log space (`torch.softmax`) so that far
# from every mode nothing underflows.

# %% nbgrader={"grade": false, "grade_id": "mixture_velocity", "locked": false, "schema_version": 3, "solution": true, "task": false}
def mixture_velocity(x, t, means, s, weights):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "mixture_velocity_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_mixture_velocity(mixture_velocity)

# %% [markdown]
# ## Task 3 — the continuity equation, numerically (2 points)
#
# A velocity field $u_t$ carries a path of densities $p_t$ exactly when no
# mass appears or disappears anywhere:
# $$\partial_t p_t(x) + \nabla\cdot\big(p_t(x)\, u_t(x)\big) = 0 .$$
# Chapter 2 checked this on a grid. Write the test for any points:
# `continuity_residual(p, u, x, t, h)` returns the left-hand side at the
# points `x` (shape `(n, d)`), with every derivative, in $t$ and along each
# coordinate $x_i$, taken by a central difference of step `h`,
# $f'(s) \approx \big(f(s + h) - f(s - h)\big) / 2h$. Here `p(x, t)` returns
# the density at each point (shape `(n,)`), `u(x, t)` the velocity (shape
# `(n, d)`); `t` and `h` are floats. Return a tensor of shape `(n,)`.
#
# The check uses a Gaussian path in 2-D and 3-D: the residual must vanish for
# the path's own velocity and take the right value for a wrong one.

# %% nbgrader={"grade": false, "grade_id": "continuity_residual", "locked": false, "schema_version": 3, "solution": true, "task": false}
def continuity_residual(p, u, x, t, h):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "continuity_residual_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_continuity_residual(continuity_residual)

# %% [markdown]
# ## Your oracle at work
#
# Your `mixture_velocity` is the exact velocity of chapter 1's 11-mode
# mixture on the CondOT path, so your `continuity_residual` should find it
# (nearly) zero against the path's density, which `fm.MixtureOracle` knows
# in closed form; a velocity only 5% too fast should leave a clear residual.
# The residual of $u = 0$ is $\partial_t p_t$ itself, the scale to compare with.

# %%
target = fm.GaussianMixture.symmetric_2d()
oracle = fm.MixtureOracle(target, fm.AffineGaussianPath("condot"))
means, weights = target.means.double(), target.weights.double()
x = oracle.marginal(0.5).sample(500, generator=torch.Generator().manual_seed(0)).double()
density = lambda x, t: torch.exp(oracle.log_prob(x, t))  # noqa: E731
dp_dt = continuity_residual(density, lambda x, t: 0 * x, x, 0.5, 1e-4)
relative = {}
for label, scale in (("your mixture velocity", 1.0), ("1.05 x your mixture velocity", 1.05)):
    res = continuity_residual(density, lambda x, t: scale * mixture_velocity(x, t, means, 1.0, weights), x, 0.5, 1e-4)
    relative[label] = float(res.norm() / dp_dt.norm())
    print(f"{label:30s} |residual| / |dp/dt| = {relative[label]:.1e}")
assert relative["your mixture velocity"] < 1e-4, relative
assert relative["1.05 x your mixture velocity"] > 1e-2, relative

# %% [markdown]
# Integrating your exact velocity from noise samples the mixture, with no
# training at all:

# %%
x0 = torch.randn(2000, 2, dtype=torch.float64)
samples = fm.odeint(lambda x, t: mixture_velocity(x, t, means, 1.0, weights),
                    x0, steps=50, method="rk4").x
share = fm.mode_fractions(target, samples)
print("share of samples per mode:", [f"{p:.3f}" for p in share.tolist()])
assert share.min() > 0.06 and share.max() < 0.12
