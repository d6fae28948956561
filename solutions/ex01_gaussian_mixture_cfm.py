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
# # Exercises for chapter 1 — flow matching on a Gaussian mixture
#
# Five tasks that rebuild the pieces of chapter 1 by hand: a schedule and its
# derivative, the straight-line conditional path, its Gaussian marginal, the
# CFM loss and an Euler sampler. After each task, run the check cell below it:
# it prints `OK: ...` or tells you what it expected and gives a hint.
#
# **Prerequisites:** chapter 1. **Run time:** under a minute (most of it the final training run).
#
# Write your code where it says `# YOUR CODE HERE` (delete the
# `raise NotImplementedError()` line). Use torch operations only, keep the
# batch dimension first, and do not change the function signatures.

# %%
import fmlearn as fm  # first: it makes torch's idle CPU threads sleep (README, "Threads")
import torch

from fmlearn.exercises import (check_cfm_loss, check_conditional_path, check_euler_sampler, check_flow_samples,
                               check_gaussian_marginal, check_schedule)
from fmlearn.plotting import plot_samples

_ = fm.seed_everything(0)  # seeds Python, NumPy and torch (it also returns a generator, unused here)

# %% [markdown]
# ## Task 1 — a schedule and its derivative (2 points)
#
# Chapter 1's first path uses $\alpha_t = t$ and $\beta_t = \sqrt{1 - t}$, so
# $x_t = \alpha_t x_1 + \beta_t x_0$ runs from the noise $x_0$ at $t = 0$ to the
# data $x_1$ at $t = 1$. Write $\alpha_t$, $\beta_t$ and their time derivatives
# $\dot\alpha_t$, $\dot\beta_t$ as functions of a tensor `t` of shape `(n,)`.

# %% nbgrader={"grade": false, "grade_id": "schedule", "locked": false, "schema_version": 3, "solution": true, "task": false}
def alpha(t):
    ### BEGIN SOLUTION
    return t
    ### END SOLUTION


def beta(t):
    ### BEGIN SOLUTION
    return torch.sqrt(1 - t)
    ### END SOLUTION


def d_alpha(t):
    ### BEGIN SOLUTION
    return torch.ones_like(t)
    ### END SOLUTION


def d_beta(t):
    ### BEGIN SOLUTION
    return -0.5 / torch.sqrt(1 - t)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "schedule_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_schedule(alpha, beta, d_alpha, d_beta, name="sqrt")
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

_t = torch.tensor([0.5, 0.75], dtype=torch.float64)
expect_close("d_beta at t = 0.5 and 0.75", d_beta(_t), [-0.5 / 0.5 ** 0.5, -1.0],
             "d/dt sqrt(1 - t) = -1 / (2 sqrt(1 - t))")
expect_close("beta^2 + alpha at t = 0.5 and 0.75", beta(_t) ** 2 + alpha(_t), [1.0, 1.0],
             "for this schedule beta_t^2 = 1 - t = 1 - alpha_t")
### END HIDDEN TESTS

# %% [markdown]
# ## Task 2 — the straight-line conditional path (2 points)
#
# The CondOT path joins a noise sample $x_0$ to a data sample $x_1$ by a
# straight line, $x_t = t\,x_1 + (1 - t)\,x_0$. Write `interpolate(x0, x1, t)`
# and its velocity `velocity(x0, x1, t)` $= \frac{d}{dt} x_t$ (derive it on
# paper first). `x0`, `x1` have shape `(n, d)` and `t` shape `(n,)`.
#
# The check tests the end points ($x_t = x_0$ at $t = 0$, $x_1$ at $t = 1$), the
# values, and your velocity against a finite difference of your `interpolate`.

# %% nbgrader={"grade": false, "grade_id": "conditional_path", "locked": false, "schema_version": 3, "solution": true, "task": false}
def interpolate(x0, x1, t):
    ### BEGIN SOLUTION
    t = t[:, None]
    return t * x1 + (1 - t) * x0
    ### END SOLUTION


def velocity(x0, x1, t):
    ### BEGIN SOLUTION
    return x1 - x0
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "conditional_path_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_conditional_path(interpolate, velocity)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

_x0, _x1 = torch.randn(5, 3), torch.randn(5, 3)
_t = torch.rand(5)
expect_close("the velocity in float32, d = 3", velocity(_x0, _x1, _t), _x1 - _x0, "d x_t / dt = x1 - x0")
expect_close("x_t in float32, d = 3", interpolate(_x0, _x1, _t),
             fm.AffineGaussianPath("condot").sample(_x0, _x1, _t).xt, "x_t = t x1 + (1 - t) x0, with t[:, None]")
### END HIDDEN TESTS

# %% [markdown]
# ## Task 3 — the Gaussian marginal of the straight line (2 points)
#
# Take $x_0 \sim \mathcal N(m_0, S_0)$ and $x_1 \sim \mathcal N(m_1, S_1)$,
# independent. Then $x_t = (1 - t)\,x_0 + t\,x_1$ is Gaussian too. Work out
# its mean and covariance, and write `mean_cov(t, m0, S0, m1, S1)` returning
# both (`m0`, `m1` of shape `(d,)`, `S0`, `S1` of shape `(d, d)`, `t` a float).
#
# The check compares with 400,000 simulated $x_t$.

# %% nbgrader={"grade": false, "grade_id": "gaussian_marginal", "locked": false, "schema_version": 3, "solution": true, "task": false}
def mean_cov(t, m0, S0, m1, S1):
    ### BEGIN SOLUTION
    return (1 - t) * m0 + t * m1, (1 - t) ** 2 * S0 + t ** 2 * S1
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "gaussian_marginal_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_gaussian_marginal(mean_cov)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

_m, _S = mean_cov(0.5, torch.zeros(2), torch.eye(2), torch.ones(2), torch.eye(2))
expect_close("the mean halfway between N(0, I) and N(1, I)", _m, torch.full((2,), 0.5), "E[x_t] = (1 - t) m0 + t m1")
expect_close("the covariance halfway between N(0, I) and N(1, I)", _S, 0.5 * torch.eye(2),
             "Cov(x_t) = (1 - t)^2 S0 + t^2 S1 = 0.25 I + 0.25 I")
### END HIDDEN TESTS

# %% [markdown]
# ## Task 4 — the CFM loss (2 points)
#
# For a batch $(x_0, x_1, t)$, the conditional flow matching loss on the
# CondOT path is
# $$\mathcal L(\theta) = \frac1n \sum_{i=1}^n \big\| u_\theta(x_{t_i}, t_i) - (x_1^{(i)} - x_0^{(i)}) \big\|^2,$$
# the squared error summed over the data dimensions and averaged over the
# batch. Write `cfm_loss(model, x0, x1, t)`, with the model called as
# `model(x_t, t)`; you may reuse your `interpolate` and `velocity`.

# %% nbgrader={"grade": false, "grade_id": "cfm_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def cfm_loss(model, x0, x1, t):
    ### BEGIN SOLUTION
    xt = interpolate(x0, x1, t)
    return (model(xt, t) - velocity(x0, x1, t)).pow(2).sum(dim=1).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "cfm_loss_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_cfm_loss(cfm_loss)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

_model = fm.MLP(2, hidden=8, depth=1)
_x0, _x1, _t = torch.randn(16, 2), torch.randn(16, 2), torch.rand(16)
expect_close("the CFM loss on another model and batch", cfm_loss(_model, _x0, _x1, _t),
             fm.cfm_loss(_model, fm.AffineGaussianPath("condot"), _x0, _x1, _t),
             "mean over the batch of the squared error summed over dimensions")
### END HIDDEN TESTS

# %% [markdown]
# ## Task 5 — an Euler sampler (2 points)
#
# Sampling integrates $\frac{dx}{dt} = u(x, t)$ from $t = 0$ to $t = 1$. With
# `steps` equal steps of size $h = 1/\text{steps}$, Euler's method repeats
# $x \leftarrow x + h\,u(x, t_i)$ with $t_i = i h$, $i = 0, \dots,$ `steps` $- 1$.
# Write `euler(u, x0, steps)`, calling `u(x, t)` with `t` a Python float.

# %% nbgrader={"grade": false, "grade_id": "euler_sampler", "locked": false, "schema_version": 3, "solution": true, "task": false}
def euler(u, x0, steps):
    ### BEGIN SOLUTION
    x, h = x0, 1.0 / steps
    for i in range(steps):
        x = x + h * u(x, i * h)
    return x
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "euler_sampler_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_euler_sampler(euler)
### BEGIN HIDDEN TESTS
from fmlearn.exercises import expect_close

_x = torch.randn(4, 2)
expect_close("one Euler step of u = 1", euler(lambda x, t: torch.ones_like(x), _x.clone(), 1), _x + 1,
             "with steps = 1 the sampler takes one step of size 1")
expect_close("four Euler steps of u = t from 0", euler(lambda x, t: x * 0 + t, torch.zeros(1, 1), 4),
             torch.full((1, 1), (0 + 0.25 + 0.5 + 0.75) / 4), "u is evaluated at t = 0, 0.25, 0.5 and 0.75")
### END HIDDEN TESTS

# %% [markdown]
# ## Putting it together
#
# Your pieces train a flow: the loop below uses your `cfm_loss` and your
# `euler`, on chapter 1's 11-mode mixture, for a few thousand steps (seconds
# on a laptop CPU; the learning rate falls linearly to zero, which sharpens
# the modes at the end). Chapter 1 trains longer for the real thing.
#
# The last check asks more than "near some mode": neighbouring modes are
# 5.6 standard deviations apart, so a ring through all of them would have
# nearly every sample within 4 standard deviations of a mode. It asks that
# every mode be populated, that most samples lie within 2.5 standard
# deviations of a mode (true samples: 95.6%), and that the modes have the
# right shape: the energy distance to true samples with the same number of
# points in each mode, against what true samples themselves score (the floor).

# %%
target = fm.GaussianMixture.symmetric_2d()
model = fm.MLP(2, hidden=128, depth=3)
steps = fm.budget(default=6000, quick=3000)
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 - k / steps)
gen = torch.Generator().manual_seed(0)
for step in range(steps):
    x1 = target.sample(256, generator=gen)
    x0 = torch.randn(x1.shape, generator=gen)
    t = torch.rand(256, generator=gen)
    loss = cfm_loss(model, x0, x1, t)
    opt.zero_grad()
    loss.backward()
    opt.step()
    schedule.step()
with torch.no_grad():
    samples = euler(model, torch.randn(2000, 2, generator=gen), 100)
plot_samples(samples, title="samples from your flow");

# %%
check_flow_samples(target, samples)
