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
    ### BEGIN SOLUTION
    var = t ** 2 * s ** 2 + (1 - t) ** 2
    return m + (t * s ** 2 - (1 - t)) / var * (x - t * m)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "gaussian_velocity_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_gaussian_velocity(velocity)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

_m = torch.tensor([1.0, 2.0], dtype=torch.float64)
_x = torch.randn(10, 2, dtype=torch.float64)
expect_close("the velocity at t = 1 for s = 1", velocity(_x, 1.0, _m, 1.0), _x,
             "at t = 1 with s = 1, sd_t = 1 and d sd_t / dt = 1, so u_1(x) = m + (x - m) = x")
expect_close("the velocity at t = 0", velocity(_x, 0.0, _m, 0.3), _m - _x,
             "at t = 0, sd_t = 1 and (t s^2 - (1 - t)) = -1, so u_0(x) = m - x")
### END HIDDEN TESTS

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
from fmlearn.exercises import expect_close

_mix = fm.GaussianMixture.symmetric_2d()
_oracle = fm.MixtureOracle(_mix, fm.AffineGaussianPath("condot"))
_x = _oracle.marginal(0.5).sample(100).double()
expect_close("the 11-mode mixture's velocity at t = 0.5", mixture_velocity(_x, 0.5, _mix.means.double(), 1.0,
             _mix.weights.double()), _oracle.velocity(_x, 0.5),
             "weight component k's velocity by its posterior p(k | x_t = x), normalized over k", atol=1e-6)
### END HIDDEN TESTS

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
    ### BEGIN SOLUTION
    out = (p(x, t + h) - p(x, t - h)) / (2 * h)
    for i in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, i] = h
        out = out + (p(x + e, t) * u(x + e, t)[:, i] - p(x - e, t) * u(x - e, t)[:, i]) / (2 * h)
    return out
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "continuity_residual_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_continuity_residual(continuity_residual)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

_x = torch.linspace(-3, 3, 13, dtype=torch.float64)[:, None]  # 1-D: x_t = (1 + t) z, z ~ N(0, 1)
_p = lambda x, t: torch.exp(-x[:, 0] ** 2 / (2 * (1 + t) ** 2)) / (math.sqrt(2 * math.pi) * (1 + t))  # noqa: E731
expect_close("the residual of the scaling flow u = x / (1 + t) in 1-D", continuity_residual(
    _p, lambda x, t: x / (1 + t), _x, 0.5, 1e-4), torch.zeros(13, dtype=torch.float64),
    "this velocity carries N(0, (1 + t)^2) along, so the residual must vanish; work for any d, d = 1 included",
    atol=1e-6)
expect_close("the residual of u = 0 (only d p / dt is left) in 1-D", continuity_residual(
    _p, lambda x, t: 0 * x, _x, 0.5, 1e-4), _p(_x, 0.5) * (_x[:, 0] ** 2 / 1.5 ** 2 - 1) / 1.5,
    "the time derivative is (p(x, t + h) - p(x, t - h)) / (2h)", atol=1e-6)
### END HIDDEN TESTS

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
