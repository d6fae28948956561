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
# # Exercises for chapter 10 — generator matching
#
# Four tasks on the jump process that follows the CondOT path without moving
# continuously: the time derivative of the conditional density, the jump
# intensity it dictates, the generalized-KL Bregman divergence that trains
# jump rates, and one step of the Markov superposition of a flow and jumps.
# The checks compare with a finite difference in $t$, with the forward
# equation on a grid, with the Bregman definition through autograd and with
# `fmlearn.generators`.
#
# **Prerequisites:** [chapter 10](../chapters/10_generator_matching.ipynb). **Run time:** under half a minute.

# %%
import math

import fmlearn as fm  # first: it makes torch's idle CPU threads sleep (README, "Threads")
import matplotlib.pyplot as plt
import torch

from fmlearn.exercises.checks_generators import (check_density_rate, check_generalized_kl, check_intensity,
                                                 check_superposed_step)
from fmlearn.generators import condot_density, condot_kernel_sample

_ = fm.seed_everything(0)  # seeds Python, NumPy and torch (it also returns a generator, unused here)

# %% [markdown]
# ## Task 1 — how fast the conditional density changes (3 points)
#
# Per coordinate, the CondOT path towards an endpoint $z$ is
# $p_t(x \mid z) = \mathcal N(x;\, t z, (1 - t)^2) = \varphi(\varepsilon) / (1 - t)$
# with $\varepsilon = (x - t z) / (1 - t)$ and $\varphi$ the standard normal
# density. Differentiate it in $t$ (note
# $d\varepsilon / dt = (\varepsilon - z) / (1 - t)$; the factor $1 / (1 - t)$
# depends on $t$ too) and write `density_rate(x, z, t)` returning
# $\partial_t p_t(x \mid z)$ for `x`, `z` of shape `(n, d)` and a float
# $0 \le t < 1$. `condot_density(x, z, t)` gives $p_t(x \mid z)$ itself.

# %% nbgrader={"grade": false, "grade_id": "density_rate", "locked": false, "schema_version": 3, "solution": true, "task": false}
def density_rate(x, z, t):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "density_rate_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_density_rate(density_rate)

# %% [markdown]
# ## Task 2 — the jump intensity (3 points)
#
# A jump process leaves $x$ at rate $\lambda_t(x)$ and lands at a point drawn
# from a kernel $J_t$. Its density obeys the forward equation
# $\partial_t p_t(x) = -p_t(x)\,\lambda_t(x) + J_t(x) \int p_t \lambda_t$:
# mass leaves each point, and what left is spread out again by $J_t$. To
# follow the path by jumps alone, *leave where the density falls and land
# where it rises*: $\lambda_t = [-\partial_t p_t]_+ / p_t$ and
# $J_t \propto [\partial_t p_t]_+$. Write `intensity(x, z, t)` returning
# $\lambda_t(x \mid z)$, per coordinate. Simplify with task 1 until $p_t$
# cancels: in the tails $p_t$ underflows to 0, and $0 / 0$ is `nan`.

# %% nbgrader={"grade": false, "grade_id": "intensity", "locked": false, "schema_version": 3, "solution": true, "task": false}
def intensity(x, z, t):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "intensity_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_intensity(intensity)

# %% [markdown]
# Where mass leaves and where it lands, for $z = 1.5$ at $t = 0.5$: the
# outflow $p_t \lambda_t$ sits in the tails and on the side away from $z$,
# where the narrowing, moving density falls; the inflow $[\partial_t p_t]_+$ near
# the new centre. The two areas are equal: no mass is lost.

# %%
grid = torch.linspace(-1.5, 3.0, 500, dtype=torch.float64)[:, None]
zz = torch.full_like(grid, 1.5)
rate = density_rate(grid, zz, 0.5)
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(grid, condot_density(grid, zz, 0.5), color="gray", label="$p_t(x | z)$")
ax.fill_between(grid[:, 0], 0, (condot_density(grid, zz, 0.5) * intensity(grid, zz, 0.5))[:, 0], alpha=0.5,
                color="tab:red", label=r"leaves: $p_t \lambda_t$")
ax.fill_between(grid[:, 0], 0, rate.clamp_min(0)[:, 0], alpha=0.5, color="tab:blue",
                label=r"lands: $[\partial_t p_t]_+$")
ax.set(title="the jumps of the CondOT path, z = 1.5, t = 0.5", xlabel="x", ylabel="density / rate")
ax.legend();

# %% [markdown]
# ## Task 3 — the generalized-KL Bregman divergence (2 points)
#
# Generator matching regresses a model's generator onto the conditional one
# with a Bregman divergence
# $D(a, b) = \Phi(a) - \Phi(b) - \langle \nabla\Phi(b), a - b \rangle$.
# $\Phi(a) = |a|^2$ gives the squared error of flow matching; jump rates are
# non-negative and need not sum to 1, and for them
# $\Phi(a) = \sum_i a_i \log a_i$. Work out $D$ for this $\Phi$ and write
# `generalized_kl(a, b)` for rates `a >= 0`, `b > 0` of shape `(n, k)`,
# returning one divergence per row, shape `(n,)`. Entries with $a_i = 0$
# follow $0 \log 0 = 0$.

# %% nbgrader={"grade": false, "grade_id": "generalized_kl", "locked": false, "schema_version": 3, "solution": true, "task": false}
def generalized_kl(a, b):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "generalized_kl_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_generalized_kl(generalized_kl)

# %% [markdown]
# Why a Bregman divergence: $D(a, b) = \Phi(a) - \Phi(b) - \langle \nabla\Phi(b), a - b\rangle$ is, apart
# from $\Phi(a)$ (which does not involve the model's output $b$), affine in its first argument. The
# model never sees $z$; at a point $x$ its target is the posterior average of
# the conditional rates, $\bar a = \sum_j w_j a_j$. Averaging the
# *conditional* loss gives the marginal loss plus a term free of $b$, so both
# have the same gradient in the model's output. With your divergence, for
# five conditional rate vectors and three guesses $b$:

# %%
gen = torch.Generator().manual_seed(1)
rates = 2 * torch.rand(5, 8, generator=gen, dtype=torch.float64)            # five conditional rate vectors
weights = torch.softmax(torch.randn(5, generator=gen, dtype=torch.float64), 0)  # their posterior weights
gaps = []
for _ in range(3):
    b = 2 * torch.rand(1, 8, generator=gen, dtype=torch.float64) + 0.1
    conditional = float(weights @ generalized_kl(rates, b.expand(5, 8)))
    marginal = float(generalized_kl((weights @ rates)[None], b)[0])
    gaps.append(conditional - marginal)
    print(f"conditional loss {conditional:.4f}, marginal loss {marginal:.4f}, gap {gaps[-1]:.10f}")
assert max(gaps) - min(gaps) < 1e-10

# %% [markdown]
# ## Task 4 — one step of the superposed sampler (4 points)
#
# Two processes whose generators satisfy the forward equation of the same
# path can be mixed: $a\,\mathcal L_\text{flow} + (1 - a)\,\mathcal L_\text{jump}$
# with $a \in [0, 1]$ satisfies it too (the equation is linear in the
# generator). Sample it by doing both parts in each step, in this order:
#
# 1. a flow Euler step with the velocity scaled by $a$: $x' = x + h\,a\,u_t(x)$;
# 2. at $x'$, still at time $t$, the intensity $\lambda = \lambda_t(x')$ scaled by $1 - a$: each
#    coordinate jumps with probability $1 - e^{-h (1 - a) \lambda}$ (the chance that a Poisson clock
#    of that rate rings at least once in $h$) to its landing point, and otherwise stays at $x'$.
#
# Write `superposed_step(velocity, intensity, x, t, h, a, uniforms, landing)`,
# with `velocity(x, t)` and `intensity(x, t)` functions returning `x`'s shape.
# `uniforms` (uniform on $[0, 1)$) decide the jumps: a coordinate jumps where
# its uniform is below its probability. `landing` holds the landing points,
# already drawn from the kernel. Both have `x`'s shape.

# %% nbgrader={"grade": false, "grade_id": "superposed_step", "locked": false, "schema_version": 3, "solution": true, "task": false}
def superposed_step(velocity, intensity, x, t, h, a, uniforms, landing):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "superposed_step_check", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
check_superposed_step(superposed_step)

# %% [markdown]
# ## Your sampler on the conditional processes
#
# Your intensity and your step, with the conditional velocity
# $(z - x) / (1 - t)$ and landing points drawn from the kernel
# $J_t \propto [\partial_t p_t]_+$, from $\mathcal N(0, 1)$ to $t = 0.9$ with
# steps uniform in $\log(1 - t)$: the jumps alone ($a = 0$), half and half,
# and the flow alone ($a = 1$) all end on the same Gaussian
# $\mathcal N(t z, (1 - t)^2)$. In chapter 10 a network learns the marginal
# intensity and kernel by minimising your generalized KL, and samples with
# this same step.

# %%
n, z0, t_end = fm.budget(default=20_000, quick=10_000), 1.5, 0.9
z = torch.full((n, 1), z0, dtype=torch.float64)
times = (1 - torch.exp(torch.linspace(0, math.log(1 - t_end), 101, dtype=torch.float64))).tolist()
fig, ax = plt.subplots(figsize=(7, 3.5))
for a in (0.0, 0.5, 1.0):
    x = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    for t0, t1 in zip(times[:-1], times[1:]):
        x = superposed_step(lambda y, s: (z - y) / (1 - s), lambda y, s: intensity(y, z, s), x, t0, t1 - t0, a,
                            torch.rand(x.shape, generator=gen, dtype=torch.float64), condot_kernel_sample(z, t0, gen))
    print(f"a = {a:.1f}: mean {float(x.mean()):.4f} (exact {t_end * z0:.4f}), std {float(x.std()):.4f} "
          f"(exact {1 - t_end:.4f})")
    assert abs(float(x.mean()) - t_end * z0) < 0.1 * (1 - t_end) and abs(float(x.std()) / (1 - t_end) - 1) < 0.06
    ax.hist(x[:, 0], bins=60, density=True, histtype="step", label=f"a = {a:g}")
grid = torch.linspace(1.0, 1.7, 200, dtype=torch.float64)[:, None]
ax.plot(grid, condot_density(grid, torch.full_like(grid, z0), t_end), "k--", label="exact N(t z, (1 - t)²)")
ax.set(title=f"jumps, flow and their superposition at t = {t_end}", xlabel="x", ylabel="density")
ax.legend();
