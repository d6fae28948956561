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
# # Exercises for chapter 7 — diffusion as a special case
#
# Three tasks: the score from the velocity on the CondOT path, one
# Euler–Maruyama step of the SDE family with the flow's marginals, and one
# Langevin step. The checks compare with the exact score of a Gaussian
# mixture and with the exact marginals of a Gaussian target.
#
# **Prerequisites:** chapter 7. **Run time:** under a minute.

# %%
import fmlearn as fm  # first: it makes torch's idle CPU threads sleep (README, "Threads")
import torch

from fmlearn.exercises import check_em_step, check_langevin_step, check_score_from_velocity

_ = fm.seed_everything(0)  # seeds Python, NumPy and torch (it also returns a generator, unused here)

# %% [markdown]
# ## Task 1 — the score from the velocity (3 points)
#
# On the CondOT path $x = t\,x_1 + (1 - t)\,x_0$ with $x_0 \sim \mathcal N(0, I)$,
# the marginal velocity is $u = \mathbb E[x_1 - x_0 \mid x]$ and the score is
# $\nabla \log p_t(x) = -\mathbb E[x_0 \mid x] / (1 - t)$ (Tweedie's formula).
# Eliminate $\mathbb E[x_1 \mid x]$ between the two linear relations and
# write `score_from_velocity(u, x, t)` for $0 < t < 1$ (`t` a float).

# %% nbgrader={"grade": false, "grade_id": "score_from_velocity", "locked": false, "schema_version": 3, "solution": true, "task": false}
def score_from_velocity(u, x, t):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "score_from_velocity_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_score_from_velocity(score_from_velocity)

# %% [markdown]
# ## Task 2 — one Euler–Maruyama step (3 points)
#
# For any noise scale $g \ge 0$, the SDE
# $dX = \big[u_t(X) + \tfrac{g^2}{2} s_t(X)\big]\,dt + g\,dW$ has the same
# marginals as the flow. Write one Euler–Maruyama step of size `h` from time
# `t`: `em_step(u, s, x, t, h, g, z)`, where `u(x, t)` and `s(x, t)` are the
# velocity and score and `z` is a standard normal tensor of `x`'s shape.
# The check also runs your step from $t = 0$ to $0.98$ on a Gaussian target
# and compares the samples with the exact marginal.

# %% nbgrader={"grade": false, "grade_id": "em_step", "locked": false, "schema_version": 3, "solution": true, "task": false}
def em_step(u, s, x, t, h, g, z):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "em_step_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_em_step(em_step)

# %% [markdown]
# ## Task 3 — a Langevin step (2 points)
#
# At a fixed time, Langevin dynamics $x \leftarrow x + \varepsilon\, s(x) + \sqrt{2\varepsilon}\, z$
# leaves the distribution with score $s$ (nearly) invariant: the corrector
# of chapter 7. Write `langevin(s, x, eps, z)` with `s(x)` the score.

# %% nbgrader={"grade": false, "grade_id": "langevin", "locked": false, "schema_version": 3, "solution": true, "task": false}
def langevin(s, x, eps, z):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "langevin_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_langevin_step(langevin)

# %% [markdown]
# ## Your sampler on the 11-mode mixture
#
# The exact velocity of chapter 1's mixture, your score, your Euler–Maruyama
# step with $g = 0.7$: every mode should get its share of the samples.

# %%
target = fm.GaussianMixture.symmetric_2d()
oracle = fm.MixtureOracle(target, fm.AffineGaussianPath("condot"))
gen = torch.Generator().manual_seed(0)
x = torch.randn(2000, 2, generator=gen, dtype=torch.float64)
steps = fm.budget(default=200, quick=100)
for i in range(steps - 1):  # stop one step short of t = 1, where the score of the CondOT path is undefined
    t = i / steps
    x = em_step(oracle.velocity, lambda y, t: score_from_velocity(oracle.velocity(y, t), y, t), x, t, 1 / steps, 0.7,
                torch.randn(x.shape, generator=gen, dtype=torch.float64))
share = fm.mode_fractions(target, x)
print("share per mode:", [f"{p:.3f}" for p in share.tolist()])
assert (share - 1 / 11).abs().max() < 0.03
