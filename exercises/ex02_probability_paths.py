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
# Three tasks: the cosine schedule and its derivative, the exact marginal
# velocity of a Gaussian target, and the marginal velocity of a mixture (the
# "oracle" of chapter 2), written by hand. After each task, run the check
# cell below it.
#
# **Prerequisites:** chapter 2. **Run time:** a few seconds.

# %%
import math

import torch

import fmlearn as fm
from fmlearn.exercises import check_gaussian_velocity, check_mixture_velocity, check_schedule

fm.seed_everything(0)

# %% [markdown]
# ## Task 1 — the cosine schedule (2 points)
#
# $\alpha_t = \sin(\pi t / 2)$, $\beta_t = \cos(\pi t / 2)$: a path that
# keeps $\alpha_t^2 + \beta_t^2 = 1$. Write both and their time derivatives
# (functions of a tensor `t` of shape `(n,)`).

# %% nbgrader={"grade": false, "grade_id": "cosine_schedule", "locked": false, "schema_version": 3, "solution": true, "task": false}
def alpha(t):
    # YOUR CODE HERE
    raise NotImplementedError()


def beta(t):
    # YOUR CODE HERE
    raise NotImplementedError()


def d_alpha(t):
    # YOUR CODE HERE
    raise NotImplementedError()


def d_beta(t):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "cosine_schedule_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_schedule(alpha, beta, d_alpha, d_beta, name="cosine")

# %% [markdown]
# ## Task 2 — the marginal velocity of a Gaussian target (3 points)
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
# ## Task 3 — the marginal velocity of a mixture (3 points)
#
# For the target $\sum_k w_k \mathcal N(m_k, s^2 I)$ the marginal velocity is
# the average of the components' velocities (task 2), each weighted by the
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
# ## Your oracle at work
#
# Your `mixture_velocity` is an exact velocity field: integrating it from
# noise samples the 11-mode mixture of chapter 1 with no training at all.

# %%
target = fm.GaussianMixture.symmetric_2d()
x0 = torch.randn(2000, 2, dtype=torch.float64)
samples = fm.odeint(lambda x, t: mixture_velocity(x, t, target.means.double(), 1.0, target.weights.double()),
                    x0, steps=50, method="rk4").x
share = fm.mode_fractions(target, samples)
print("share of samples per mode:", [f"{p:.3f}" for p in share.tolist()])
assert share.min() > 0.06 and share.max() < 0.12
