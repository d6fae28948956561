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
    ### BEGIN SOLUTION
    return torch.sin(math.pi * t / 2)
    ### END SOLUTION


def beta(t):
    ### BEGIN SOLUTION
    return torch.cos(math.pi * t / 2)
    ### END SOLUTION


def d_alpha(t):
    ### BEGIN SOLUTION
    return math.pi / 2 * torch.cos(math.pi * t / 2)
    ### END SOLUTION


def d_beta(t):
    ### BEGIN SOLUTION
    return -math.pi / 2 * torch.sin(math.pi * t / 2)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "cosine_schedule_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_schedule(alpha, beta, d_alpha, d_beta, name="cosine")
### BEGIN HIDDEN TESTS
_t = torch.rand(20, dtype=torch.float64)
assert torch.allclose(alpha(_t) ** 2 + beta(_t) ** 2, torch.ones(20, dtype=torch.float64))
assert torch.allclose(alpha(_t) * d_alpha(_t) + beta(_t) * d_beta(_t), torch.zeros(20, dtype=torch.float64))
### END HIDDEN TESTS

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
    ### BEGIN SOLUTION
    var = t ** 2 * s ** 2 + (1 - t) ** 2
    return m + (t * s ** 2 - (1 - t)) / var * (x - t * m)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "gaussian_velocity_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_gaussian_velocity(velocity)
### BEGIN HIDDEN TESTS
_m = torch.tensor([1.0, 2.0], dtype=torch.float64)
_x = torch.randn(10, 2, dtype=torch.float64)
assert torch.allclose(velocity(_x, 1.0, _m, 1.0), _m + (_x - _m))  # s = 1: at t = 1 the velocity is x
assert torch.allclose(velocity(_x, 0.0, _m, 0.3), _m - _x)
### END HIDDEN TESTS

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
    ### BEGIN SOLUTION
    var = t ** 2 * s ** 2 + (1 - t) ** 2
    log_r = torch.log(weights)[None] - ((x[:, None, :] - t * means[None]) ** 2).sum(-1) / (2 * var)
    r = torch.softmax(log_r, dim=1)  # (n, K)
    per_component = torch.stack([velocity(x, t, m, s) for m in means], dim=1)  # (n, K, d)
    return (r[:, :, None] * per_component).sum(1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "mixture_velocity_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_mixture_velocity(mixture_velocity)
### BEGIN HIDDEN TESTS
_mix = fm.GaussianMixture.symmetric_2d()
_oracle = fm.MixtureOracle(_mix, fm.AffineGaussianPath("condot"))
_x = _oracle.marginal(0.5).sample(100).double()
assert torch.allclose(mixture_velocity(_x, 0.5, _mix.means.double(), 1.0, _mix.weights.double()),
                      _oracle.velocity(_x, 0.5), atol=1e-6)
### END HIDDEN TESTS

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
